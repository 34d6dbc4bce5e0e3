package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/boot"
)

// gitBackend is the core with a scripted Git sync, as cmd/provisiond wraps
// it with --profiles-git.
type gitBackend struct {
	*boot.Core
	next boot.SyncStatus
}

func (g *gitBackend) SyncProfiles(ctx context.Context) (boot.SyncStatus, error) {
	g.Core.RecordSync(ctx, g.next)
	return g.next, nil
}

// serveBackend mounts the API over b on a fixture's server in place of the core.
func (f *fixture) serveBackend(t *testing.T, b Backend) {
	t.Helper()
	r := chi.NewRouter()
	r.Mount("/api/v1", New(Config{Backend: b, Token: apiToken}))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	f.srv = srv
	doc := loadDoc(t)
	doc.Servers = openapi3.Servers{{URL: srv.URL + "/api/v1"}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	f.router = router
}

// loadTree writes the test profiles plus extra into a tree directory and
// loads it as rev.
func (f *fixture) loadTree(t *testing.T, rev *boot.Revision, extra string) error {
	t.Helper()
	dir := filepath.Join(t.TempDir(), rev.Commit)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "cfg.txt", "x\n")
	writeFile(t, dir, "p.yaml", testProfiles+extra)
	return f.core.LoadRevision(dir, rev)
}

func TestProfilesSync(t *testing.T) {
	f := newFixture(t)
	// Without --profiles-git the core answers for itself.
	if code, body := f.call(t, "POST", "/profiles/sync", apiToken, ""); code != 409 || !strings.Contains(body, "no --profiles-git configured") {
		t.Fatalf("sync without git = %d %s", code, body)
	}
	if code, _ := f.call(t, "POST", "/profiles/sync", "", ""); code != 401 {
		t.Errorf("sync without a token = %d; want 401", code)
	}

	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	good := &boot.Revision{Commit: strings.Repeat("a1", 20), Short: "a1a1a1a1a1a1", Subject: "add node1", Author: "Alice", Time: at, Ref: "refs/heads/main"}
	bad := &boot.Revision{Commit: strings.Repeat("b2", 20), Short: "b2b2b2b2b2b2", Subject: "typo", Author: "Bob", Time: at.Add(time.Minute), Ref: "refs/heads/main"}
	if err := f.loadTree(t, good, ""); err != nil {
		t.Fatal(err)
	}
	loadErr := f.loadTree(t, bad, "---\nkind: Machine\nname: x\nmatch: {mac: \"52:54:00:00:00:09\"}\nprofile: nope\n")
	if loadErr == nil {
		t.Fatal("the bad tree loaded")
	}
	g := &gitBackend{Core: f.core}
	f.serveBackend(t, g)
	remote := "https://git.example.com/infra/profiles.git"
	for _, tc := range []struct {
		name     string
		st       boot.SyncStatus
		code     int
		contains []string
	}{
		{name: "unchanged", st: boot.SyncStatus{Result: boot.SyncUnchanged, Fetched: good, Live: good}, code: 200,
			contains: []string{`"result": "unchanged"`, `"commit": "` + good.Commit, `"subject": "add node1"`}},
		{name: "rejected", st: boot.SyncStatus{Result: boot.SyncRejected, Fetched: bad, Live: good, Tried: true, Err: loadErr}, code: 422,
			contains: []string{`"result": "rejected"`, `"file": "p.yaml"`, `"line": 20`, `uses unknown profile \"nope\"`}},
		{name: "fetch failed", st: boot.SyncStatus{Result: boot.SyncError, Live: good, Err: errors.New("list the refs of " + remote + ": authentication required")}, code: 502,
			contains: []string{`"result": "error"`, `"fetched": null`, "authentication required"}},
		{name: "updated", st: boot.SyncStatus{Result: boot.SyncUpdated, Fetched: good, Live: good, Tried: true}, code: 200,
			contains: []string{`"result": "updated"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.st.Remote, tc.st.Time = remote, at
			g.next = tc.st
			code, body := f.call(t, "POST", "/profiles/sync", apiToken, "")
			if code != tc.code {
				t.Fatalf("POST /profiles/sync = %d; want %d\n%s", code, tc.code, body)
			}
			for _, w := range tc.contains {
				if !strings.Contains(body, w) {
					t.Errorf("answer lacks %s:\n%s", w, body)
				}
			}
		})
	}

	// GET /profiles shows the live commit, the rejected one with its
	// problems, and the last sync.
	g.next = boot.SyncStatus{Result: boot.SyncRejected, Remote: remote, Fetched: bad, Live: good, Err: loadErr, Time: at}
	f.call(t, "POST", "/profiles/sync", apiToken, "")
	code, body := f.call(t, "GET", "/profiles", apiToken, "")
	var got profilesJSON
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
		t.Fatalf("GET /profiles = %d %v\n%s", code, err, body)
	}
	gs := got.Git
	if gs == nil || gs.Remote != remote || gs.Live == nil || gs.Live.Commit != good.Commit ||
		gs.Rejected == nil || gs.Rejected.Commit != bad.Commit || len(gs.Rejected.Problems) != 1 || gs.Rejected.Problems[0].String() != `p.yaml:20: machine "x" uses unknown profile "nope"` ||
		gs.LastSync == nil || gs.LastSync.Result != "rejected" {
		t.Errorf("git status:\n%s", body)
	}
	if got.Reload == nil || got.Reload.OK {
		t.Errorf("reload %+v; want the rejected load", got.Reload)
	}
	// The rejection and the core's event log.
	code, body = f.call(t, "GET", "/events", apiToken, "")
	if code != 200 || !strings.Contains(body, `"type": "profiles-rejected"`) || !strings.Contains(body, "profiles commit b2b2b2b2b2b2 rejected (1 problem(s)): typo") {
		t.Errorf("events:\n%s", body)
	}
}
