package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// tree writes content as p.yaml of a directory named after commit.
func tree(t *testing.T, commit, content string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), commit)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "p.yaml", content)
	return dir
}

func rev(c byte, subject string) *Revision {
	h := strings.Repeat(string(c), 40)
	return &Revision{Commit: h, Short: h[:12], Subject: subject, Ref: "refs/heads/main"}
}

// LoadRevision validates like Reload and swaps in the set and the directory
// only on success; the rejected commit is kept with its problems.
func TestLoadRevision(t *testing.T) {
	obs := &recordingObserver{}
	c, db := newCore(t, t.TempDir(), Config{Observer: obs, WipeProfile: "p"})
	req := Request{MAC: "52:54:00:00:00:01"}
	if _, _, err := c.Match(req); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("before a load: %v", err)
	}

	a, b, fix := rev('a', "add n1"), rev('b', "typo"), rev('c', "revert typo")
	goodDir := tree(t, a.Commit, good)
	if err := c.LoadRevision(goodDir, a); err != nil {
		t.Fatal(err)
	}
	badTree := strings.Replace(good, "profile: p", "profile: missing", 1)
	err := c.LoadRevision(tree(t, b.Commit, badTree), b)
	var probs profiles.Problems
	if !errors.As(err, &probs) || probs[0].String() != `p.yaml:5: machine "n1" uses unknown profile "missing"` {
		t.Fatalf("bad tree: %v", err)
	}
	st := c.Status()
	if st.Err == nil || st.Live == nil || st.Live.Commit != a.Commit || st.Rejected == nil || st.Rejected.Revision.Commit != b.Commit || st.Rejected.Err.Error() != err.Error() {
		t.Errorf("status after a rejection: %+v", st)
	}
	// The good commit's machine still boots, from the good tree.
	if res, set, err := c.Match(req); err != nil || res.Profile.Name != "p" || set.Dir != goodDir {
		t.Errorf("match after a rejection: %v %v", res, err)
	}
	// --wipe-profile is checked as Reload checks it.
	noWipe := strings.Replace(good, "name: p\n", "name: q\n", 1)
	noWipe = strings.Replace(noWipe, "profile: p", "profile: q", 1)
	if err := c.LoadRevision(tree(t, "d", noWipe), rev('d', "rename p")); err == nil || !strings.Contains(err.Error(), `--wipe-profile "p"`) {
		t.Errorf("a tree without the wipe profile: %v", err)
	}
	// Reload reads the live tree, and keeps its commit.
	if err := c.Reload(); err != nil || c.Status().Live.Commit != a.Commit {
		t.Errorf("Reload of the live tree: %v, %+v", err, c.Status().Live)
	}
	if err := c.LoadRevision(tree(t, fix.Commit, good), fix); err != nil {
		t.Fatal(err)
	}
	st = c.Status()
	if st.Err != nil || st.Live.Commit != fix.Commit || st.Rejected.Revision.Commit != rev('d', "").Commit {
		t.Errorf("status after the fix: %+v", st)
	}
	if !slices.Equal(obs.live, []string{a.Short, fix.Short}) {
		t.Errorf("live commits reported %v", obs.live)
	}

	// RecordSync keeps the last sync, counts it, and logs new commits as events.
	ctx := context.Background()
	c.RecordSync(ctx, SyncStatus{Result: SyncUnchanged, Fetched: fix, Live: fix})
	c.RecordSync(ctx, SyncStatus{Result: SyncRejected, Fetched: b, Live: fix, Tried: true, Err: err})
	c.RecordSync(ctx, SyncStatus{Result: SyncRejected, Fetched: b, Live: fix, Err: err}) // not tried again: no event
	c.RecordSync(ctx, SyncStatus{Result: SyncUpdated, Fetched: fix, Live: fix, Tried: true})
	c.RecordSync(ctx, SyncStatus{Result: SyncError, Live: fix, Err: errors.New("no route to host")})
	if s := c.Sync(); s == nil || s.Result != SyncError {
		t.Errorf("last sync %+v", s)
	}
	if !slices.Equal(obs.synced, []string{SyncUnchanged, SyncRejected, SyncRejected, SyncUpdated, SyncError}) {
		t.Errorf("syncs reported %v", obs.synced)
	}
	evs, err := db.Events(ctx, store.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Type+": "+e.Message)
	}
	want := []string{
		`profiles-rejected: profiles commit bbbbbbbbbbbb rejected (1 problem(s)): typo`,
		`profiles-live: profiles commit cccccccccccc live: revert typo`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := c.SyncProfiles(ctx); !errors.Is(err, ErrNoSync) {
		t.Errorf("the core's own SyncProfiles = %v; want ErrNoSync", err)
	}
}
