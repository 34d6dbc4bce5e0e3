package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/ipxe"
	"github.com/provisiond/provisiond/internal/metrics"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/testutil"
)

// headServer serves installProfiles with the real iPXE binaries, an assets
// tree holding the profile's kernel, the API and metrics, and returns the
// store behind it and what it logged.
func headServer(t *testing.T) (*httptest.Server, store.Store, *bytes.Buffer) {
	t.Helper()
	dir, assetsDir := t.TempDir(), t.TempDir()
	for name, content := range map[string]string{"p.yaml": installProfiles, "install.bu": installButane} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(assetsDir, "k"), bytes.Repeat([]byte("kernel "), 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(assetsDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	bins, err := ipxe.NewBinaries("")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	db := memstore.New(store.Options{})
	m := metrics.New(metrics.Config{Machines: db, Logger: log})
	// Requests come from 127.0.0.1, which the neighbour table says is node1.
	core := boot.New(boot.Config{ProfilesDir: dir, AdvertiseURL: base, Store: db,
		Neighbors: testutil.Neighbors{"127.0.0.1": node1MAC}, Observer: m, Logger: log})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(Config{
		Core:         core,
		AdvertiseURL: base,
		Assets:       root,
		Binaries:     bins,
		API:          api.New(api.Config{Backend: core, Token: "operator-token", Logger: log}),
		Metrics:      m,
		Logger:       log,
	}).Handler())
	t.Cleanup(ts.Close)
	return ts, db, &logs
}

// answer is what one request got.
type answer struct {
	code   int
	header http.Header
	body   []byte
}

func request(t *testing.T, ts *httptest.Server, method, path string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, body}
}

// HEAD is answered on every GET route as GET is, without the body: UEFI HTTP
// Boot firmware HEADs its NBP first and stops at anything but 200.
func TestHeadAnswersLikeGet(t *testing.T) {
	ts, _, _ := headServer(t)
	auth := []string{"Authorization", "Bearer operator-token"}
	for _, tc := range []struct {
		name, path string
		header     []string
		code       int
		// length: HEAD's Content-Length is the GET body's length. Not for
		// answers that change between two requests or are compressed.
		length bool
	}{
		{"x86-64 UEFI NBP", "/nbp/ipxe.efi", nil, 200, true},
		{"arm64 UEFI NBP", "/nbp/snp.efi", nil, 200, true},
		{"BIOS NBP", "/nbp/undionly.kpxe", nil, 200, true},
		{"NBP range", "/nbp/ipxe.efi", []string{"Range", "bytes=0-99"}, 206, true},
		{"unknown NBP", "/nbp/evil.efi", nil, 404, true},
		{"asset", "/assets/k", nil, 200, true},
		{"asset range", "/assets/k", []string{"Range", "bytes=10-19"}, 206, true},
		{"asset traversal", "/assets/../../etc/passwd", nil, 404, true},
		{"asset encoded traversal", "/assets/%2e%2e/%2e%2e/etc/passwd", nil, 404, true},
		{"asset backslash", "/assets/..%5c..%5cetc%5cpasswd", nil, 404, true},
		{"missing asset", "/assets/nope", nil, 404, true},
		{"chain script", "/boot.ipxe", nil, 200, true},
		{"chain script naming its machine", "/boot.ipxe?mac=" + node1MAC, nil, 200, true},
		{"health", "/healthz", nil, 200, true},
		{"metrics", "/metrics", nil, 200, false},
		{"API with the token", "/api/v1/profiles", auth, 200, true},
		{"API without the token", "/api/v1/machines", nil, 401, true},
		{"API, POST-only route", "/api/v1/power", auth, 405, false}, // the message names the method
		{"no route", "/nope", nil, 404, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			get := request(t, ts, http.MethodGet, tc.path, tc.header...)
			head := request(t, ts, http.MethodHead, tc.path, tc.header...)
			if get.code != tc.code || head.code != tc.code {
				t.Fatalf("GET %s = %d, HEAD = %d; want %d for both", tc.path, get.code, head.code, tc.code)
			}
			if len(head.body) != 0 {
				t.Errorf("HEAD %s sent a %d-byte body", tc.path, len(head.body))
			}
			if g, h := get.header.Get("Content-Type"), head.header.Get("Content-Type"); g != h {
				t.Errorf("Content-Type: GET %q, HEAD %q", g, h)
			}
			if !tc.length {
				return
			}
			if cl := head.header.Get("Content-Length"); cl != strconv.Itoa(len(get.body)) {
				t.Errorf("HEAD %s: Content-Length %q, want the GET body's %d bytes", tc.path, cl, len(get.body))
			}
		})
	}
	// The real binaries, at their real size.
	efi := request(t, ts, http.MethodHead, "/nbp/ipxe.efi")
	if n, _ := strconv.Atoi(efi.header.Get("Content-Length")); n < 100<<10 {
		t.Errorf("HEAD /nbp/ipxe.efi: Content-Length %d, want ipxe.efi's size", n)
	}
	if ct := efi.header.Get("Content-Type"); ct != "application/efi" {
		t.Errorf("HEAD /nbp/ipxe.efi: Content-Type %q, want application/efi", ct)
	}
}

// HEAD writes nothing: not the machine a /boot.ipxe names, not a session
// for /ipxe, not a config fetch for /ignition or /config, which refuse it.
func TestHeadHasNoSideEffects(t *testing.T) {
	ts, db, logs := headServer(t)
	ctx := context.Background()
	revision := func() uint64 {
		t.Helper()
		rev, err := db.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	unchanged := func(what string, before uint64) {
		t.Helper()
		if after := revision(); after != before {
			t.Errorf("%s wrote to the store: revision %d -> %d", what, before, after)
		}
	}
	refused := func(path string) {
		t.Helper()
		a := request(t, ts, http.MethodHead, path)
		if a.code != http.StatusMethodNotAllowed || a.header.Get("Allow") != http.MethodGet {
			t.Errorf("HEAD %s = %d, Allow %q; want 405, Allow GET", path, a.code, a.header.Get("Allow"))
		}
	}

	rev := revision()
	if a := request(t, ts, http.MethodHead, "/boot.ipxe?mac="+node1MAC); a.code != 200 {
		t.Fatalf("HEAD /boot.ipxe = %d", a.code)
	}
	refused("/ipxe?mac=" + node1MAC)
	// The backup (a whole snapshot for nothing): 405, behind the token still.
	if a := request(t, ts, http.MethodHead, "/api/v1/store/backup", "Authorization", "Bearer operator-token"); a.code != http.StatusMethodNotAllowed || a.header.Get("Allow") != http.MethodGet {
		t.Errorf("HEAD /api/v1/store/backup = %d, Allow %q; want 405, Allow GET", a.code, a.header.Get("Allow"))
	}
	if a := request(t, ts, http.MethodHead, "/api/v1/store/backup"); a.code != http.StatusUnauthorized {
		t.Errorf("HEAD /api/v1/store/backup without the token = %d, want 401", a.code)
	}
	refused("/ignition?mac=" + node1MAC + "&token=AAAA")
	refused("/config?mac=" + node1MAC)
	unchanged("HEAD before any GET", rev)
	if _, err := db.Machine(ctx, node1MAC); err == nil {
		t.Error("HEAD /boot.ipxe recorded the machine it names")
	}

	// A session, opened by GET: HEAD /ignition with its token neither serves
	// nor counts the config, which GET then still gets once.
	path := bootPath(t, ts, node1MAC)
	rev = revision()
	refused(path)
	unchanged("HEAD "+path, rev)
	if p, err := db.Provisioning(ctx, node1MAC); err != nil || p.TokenHash == "" || p.ConfigFetches != 0 {
		t.Errorf("after HEAD %s: provisioning %+v, %v; want the session open, no config fetch", path, p, err)
	}
	if strings.Contains(logs.String(), "config served") {
		t.Errorf("HEAD %s logged a config served:\n%s", path, logs)
	}
	if a := request(t, ts, http.MethodGet, path); a.code != 200 || !bytes.Contains(a.body, []byte(`"ignition"`)) {
		t.Errorf("GET %s after the HEAD = %d %.200s; want the config", path, a.code, a.body)
	}
	if p, err := db.Provisioning(ctx, node1MAC); err != nil || p.ConfigFetches != 1 {
		t.Errorf("after GET %s: provisioning %+v, %v; want 1 config fetch", path, p, err)
	}
}
