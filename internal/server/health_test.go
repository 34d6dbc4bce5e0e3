package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
)

const healthProfiles = "kind: Profile\nname: p\nboot: {kernel: /assets/k}\n---\nkind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n"

// With Git, /healthz names the live commit, the rejected one with its
// file:line problems, and a fetch that failed.
func TestHealthGit(t *testing.T) {
	tree := func(commit, content string) string {
		dir := filepath.Join(t.TempDir(), commit)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	good := &boot.Revision{Commit: strings.Repeat("a", 40), Short: strings.Repeat("a", 12), Subject: "add n1"}
	bad := &boot.Revision{Commit: strings.Repeat("b", 40), Short: strings.Repeat("b", 12), Subject: "typo"}
	core := newCore(t, tree("plain", healthProfiles))
	ts := httptest.NewServer(New(Config{Core: core, AdvertiseURL: base}).Handler())
	t.Cleanup(ts.Close)

	type health struct {
		Status   string
		Profiles struct {
			Dir string
			Git *gitHealth
		}
	}
	check := func(name string) health {
		t.Helper()
		code, body, _ := get(t, ts, "/healthz")
		var h health
		if err := json.Unmarshal([]byte(body), &h); err != nil || code != 200 {
			t.Fatalf("%s: /healthz = %d %v\n%s", name, code, err, body)
		}
		return h
	}
	if h := check("plain directory"); h.Profiles.Git != nil || h.Status != "ok" {
		t.Errorf("plain directory: %+v; want no git section", h)
	}

	if err := core.LoadRevision(tree(good.Commit, healthProfiles), good); err != nil {
		t.Fatal(err)
	}
	err := core.LoadRevision(tree(bad.Commit, healthProfiles+"---\nkind: Machine\nname: n2\nmatch: {mac: \"52:54:00:00:00:02\"}\nprofile: nope\n"), bad)
	if err == nil {
		t.Fatal("the bad tree loaded")
	}
	core.RecordSync(context.Background(), boot.SyncStatus{Result: boot.SyncRejected, Remote: "https://git.example.com/p.git", Fetched: bad, Live: good, Tried: true, Err: err})
	h := check("rejected")
	g := h.Profiles.Git
	if h.Status != "degraded" || g == nil || g.LiveCommit != good.Commit || g.LiveSubject != "add n1" || g.RejectedCommit != bad.Commit ||
		len(g.RejectedErrs) != 1 || g.RejectedErrs[0] != `all.yaml:10: machine "n2" uses unknown profile "nope"` ||
		g.LastSyncResult != "rejected" || g.Remote != "https://git.example.com/p.git" || !strings.HasSuffix(h.Profiles.Dir, good.Commit) {
		t.Errorf("after a rejection: %+v %+v", h, g)
	}
	// The good commit's machine still boots.
	if code, body, _ := get(t, ts, "/ipxe?mac=52-54-00-00-00-01"); code != 200 || !strings.Contains(body, "/assets/k") {
		t.Errorf("/ipxe of n1 = %d\n%s", code, body)
	}

	// A good commit again: ok, the rejection stays on record.
	if err := core.LoadRevision(tree(strings.Repeat("c", 40), healthProfiles), &boot.Revision{Commit: strings.Repeat("c", 40), Short: "cccccccccccc"}); err != nil {
		t.Fatal(err)
	}
	core.RecordSync(context.Background(), boot.SyncStatus{Result: boot.SyncUpdated})
	if h := check("fixed"); h.Status != "ok" || h.Profiles.Git.RejectedCommit != bad.Commit || h.Profiles.Git.LiveCommit != strings.Repeat("c", 40) {
		t.Errorf("after the fix: %+v %+v", h, h.Profiles.Git)
	}

	// The remote went away: still serving, degraded, with the fetch's error.
	core.RecordSync(context.Background(), boot.SyncStatus{Result: boot.SyncError, Err: errors.New("list the refs of https://git.example.com/p.git: connection refused")})
	if h := check("fetch failed"); h.Status != "degraded" || !strings.Contains(h.Profiles.Git.LastSyncError, "connection refused") {
		t.Errorf("after a failed fetch: %+v %+v", h, h.Profiles.Git)
	}
}

// /healthz probes the store: which one, whether it answered and how fast. A
// store that does not answer (an etcd without quorum) makes it degraded.
func TestHealthStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(healthProfiles), 0o644); err != nil {
		t.Fatal(err)
	}
	var down error
	ts := httptest.NewServer(New(Config{Core: newCore(t, dir), AdvertiseURL: base, Store: StoreInfo{
		Backend: "etcd", Prefix: "/p",
		Probe: func(context.Context) store.Health {
			h := store.Health{Backend: "etcd", Err: down, Latency: 1500 * time.Microsecond, Endpoints: []store.EndpointHealth{
				{Endpoint: "http://10.0.0.1:2379", Member: "e0", Leader: "e1", Version: "3.6.16"},
				{Endpoint: "http://10.0.0.2:2379", Err: errors.New("context deadline exceeded")},
			}}
			if down == nil {
				h.Leader = "e1"
			}
			return h
		},
	}}).Handler())
	t.Cleanup(ts.Close)
	type health struct {
		Status string
		Store  storeHealth
	}
	get := func() (int, health) {
		t.Helper()
		code, body := do(t, ts, "GET", "/healthz", "")
		var h health
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("%v\n%s", err, body)
		}
		return code, h
	}
	code, h := get()
	if code != 200 || h.Status != "ok" || !h.Store.OK || h.Store.Backend != "etcd" || h.Store.Prefix != "/p" || h.Store.Leader != "e1" || h.Store.LatencyMS != 1.5 {
		t.Errorf("store answering: %d %+v", code, h)
	}
	want := []endpointHealth{
		{Endpoint: "http://10.0.0.1:2379", OK: true, Member: "e0", Leader: "e1", Version: "3.6.16"},
		{Endpoint: "http://10.0.0.2:2379", Error: "context deadline exceeded"},
	}
	if !reflect.DeepEqual(h.Store.Endpoints, want) {
		t.Errorf("endpoints:\n got %+v\nwant %+v", h.Store.Endpoints, want)
	}
	down = errors.New("etcdserver: request timed out")
	if code, h := get(); code != 200 || h.Status != "degraded" || h.Store.OK || h.Store.Error != down.Error() || h.Store.Leader != "" {
		t.Errorf("store down: %d %+v; want 200, degraded, the error, no leader", code, h)
	}
}

// A store probe that never answers by itself is cut at storeProbeTimeout:
// /healthz then says degraded, with the probe's error, instead of hanging.
func TestHealthStoreHung(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(healthProfiles), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(Config{Core: newCore(t, dir), AdvertiseURL: base, Store: StoreInfo{
		Backend: "etcd",
		Probe: func(ctx context.Context) store.Health {
			<-ctx.Done() // as an etcd client does with no endpoint answering
			return store.Health{Backend: "etcd", Err: ctx.Err()}
		},
	}}).Handler())
	t.Cleanup(ts.Close)
	start := time.Now()
	code, body := do(t, ts, "GET", "/healthz", "")
	took := time.Since(start)
	var h struct {
		Status string
		Store  storeHealth
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if code != http.StatusOK || h.Status != "degraded" || h.Store.OK || h.Store.Error != context.DeadlineExceeded.Error() {
		t.Errorf("/healthz with the store hung = %d %+v; want 200, degraded, the deadline", code, h)
	}
	if took < storeProbeTimeout || took > storeProbeTimeout+time.Second {
		t.Errorf("/healthz with the store hung took %v; want the probe cut at %v", took, storeProbeTimeout)
	}
}

// downStore is a store whose machine writes fail as etcd's do while it
// elects a leader.
type downStore struct{ store.Store }

func (downStore) Seen(context.Context, store.Machine, store.Change) (store.Machine, store.Provisioning, error) {
	return store.Machine{}, store.Provisioning{}, fmt.Errorf("etcdstore: machine: %w: etcdserver: leader changed", store.ErrUnavailable)
}

// A boot request the store cannot record fails closed with 503, which
// iPXE retries, and a body that says so without etcd's internals.
func TestStoreUnavailableIs503(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(healthProfiles), 0o644); err != nil {
		t.Fatal(err)
	}
	core := boot.New(boot.Config{ProfilesDir: dir, AdvertiseURL: base, Store: downStore{memstore.New(store.Options{})}})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(Config{Core: core, AdvertiseURL: base}).Handler())
	t.Cleanup(ts.Close)
	code, body := do(t, ts, "GET", "/ipxe?mac=52-54-00-00-00-01", "")
	if code != http.StatusServiceUnavailable || strings.Contains(body, "etcd") || strings.Contains(body, "token") {
		t.Errorf("/ipxe with the store down = %d %q; want 503 without internals or a token", code, body)
	}
}
