package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

const timelineMAC = "52:54:00:00:00:01"

// timelineServer serves a profile booting /assets/os/vmlinuz and a 32 MiB
// /assets/os/initrd.img, the kernel missing from the assets directory; the
// core runs, and its machine n1 is bound to 127.0.0.1, where the test's
// requests come from.
func timelineServer(t *testing.T) (*httptest.Server, *boot.Core, store.Store, string) {
	t.Helper()
	dir, assets := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("kind: Profile\nname: p\nboot: {kernel: /assets/os/vmlinuz, initrd: [/assets/os/initrd.img]}\n"+
		"---\nkind: Profile\nname: q\nboot: {kernel: /assets/os/vmlinuz}\n---\nkind: Machine\nname: n1\nmatch: {mac: \""+timelineMAC+"\"}\nprofile: p\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(assets, "os"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(assets, "os", "initrd.img"), make([]byte, 32<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(assets)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	db := memstore.New(store.Options{})
	core := boot.New(boot.Config{ProfilesDir: dir, AdvertiseURL: base, Store: db})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = core.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := db.Bind(ctx, store.Binding{MAC: timelineMAC, IP: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(Config{Core: core, AdvertiseURL: base, Assets: root}).Handler())
	t.Cleanup(ts.Close)
	return ts, core, db, assets
}

// assetSteps lists the machine's asset events as "type path outcome" once
// they include want's last, in the order written.
func assetSteps(t *testing.T, db store.Store, want []string) []string {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		es, err := db.Events(context.Background(), store.EventQuery{MAC: timelineMAC})
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, e := range es {
			switch e.Type {
			case boot.EventBootStep:
				got = append(got, fmt.Sprintf("%s %s %s %s", e.Type, e.Fields["detail"], e.Fields["outcome"], e.Fields["kind"]))
			case boot.EventAssetMissing:
				got = append(got, fmt.Sprintf("%s %s %s", e.Type, e.Fields["path"], e.Fields["kind"]))
			}
		}
		if slices.Contains(got, want[len(want)-1]) {
			break
		}
	}
	return got
}

// Each fetch from /assets by a known machine is a step of its boot: a 404
// once however often iPXE retries, with its asset-missing event, a download
// started and completed, one the client broke off; a HEAD is none.
func TestAssetTimeline(t *testing.T) {
	ts, core, db, _ := timelineServer(t)
	for range 5 {
		if code, _, _ := get(t, ts, "/assets/os/vmlinuz"); code != 404 {
			t.Fatalf("missing kernel: %d", code)
		}
	}
	if a := request(t, ts, http.MethodHead, "/assets/os/initrd.img"); a.code != 200 {
		t.Fatalf("HEAD initrd: %d", a.code)
	}
	if code, body, _ := get(t, ts, "/assets/os/initrd.img"); code != 200 || len(body) != 32<<20 {
		t.Fatalf("initrd: %d, %d bytes", code, len(body))
	}
	// A client that reads the headers and goes away.
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /assets/os/initrd.img HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("broken-off download: %v", err)
	}
	c.Close()

	want := []string{
		"boot-step os/vmlinuz 404 kernel", "asset-missing os/vmlinuz kernel",
		"boot-step os/initrd.img started initrd", "boot-step os/initrd.img completed initrd",
		"boot-step os/initrd.img aborted initrd",
	}
	got := assetSteps(t, db, want)
	// Nothing more comes: a marker step queued now is recorded after
	// anything still queued.
	core.Step(timelineMAC, boot.Step{Name: boot.StepAgent, Detail: "marker", Outcome: "ok"})
	got = assetSteps(t, db, []string{"boot-step marker ok "})
	if got = got[:len(got)-1]; !reflect.DeepEqual(got, want) {
		t.Errorf("asset timeline:\n%q\nwant\n%q", got, want)
	}
}

// The hook /assets adds: what a request pays for its boot timeline.
func BenchmarkAssetHook(b *testing.B) {
	s := &Server{cfg: Config{Core: boot.New(boot.Config{Store: memstore.New(store.Options{})})}}
	r := httptest.NewRequest(http.MethodGet, "/assets/os/vmlinuz", nil)
	b.ReportAllocs()
	for b.Loop() {
		s.assetStep(r, "os/vmlinuz", boot.AssetStarted)
	}
}

// /healthz lists the profiles' assets missing from --assets, each with the
// profiles naming it, and an empty list once they are there.
func TestHealthAssetsMissing(t *testing.T) {
	ts, _, _, assets := timelineServer(t)
	check := func() []boot.MissingFile {
		t.Helper()
		code, body, _ := get(t, ts, "/healthz")
		var h struct {
			Status        string
			AssetsMissing *[]boot.MissingFile `json:"assets_missing"`
		}
		if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 || h.Status != "ok" || h.AssetsMissing == nil {
			t.Fatalf("/healthz = %d %v\n%s", code, err, body)
		}
		return *h.AssetsMissing
	}
	want := []boot.MissingFile{{Path: "/assets/os/vmlinuz", Profiles: []string{"p", "q"}}}
	if got := check(); !reflect.DeepEqual(got, want) {
		t.Errorf("assets_missing = %+v; want %+v", got, want)
	}
	if err := os.WriteFile(filepath.Join(assets, "os", "vmlinuz"), []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := check(); len(got) != 0 {
		t.Errorf("assets_missing with every file there = %+v", got)
	}
	// Without an assets directory there is nothing to say.
	plain := httptest.NewServer(New(Config{Core: newCore(t, "../../examples"), AdvertiseURL: base}).Handler())
	defer plain.Close()
	if _, body, _ := get(t, plain, "/healthz"); strings.Contains(body, "assets_missing") {
		t.Errorf("/healthz without --assets names assets:\n%s", body)
	}
}
