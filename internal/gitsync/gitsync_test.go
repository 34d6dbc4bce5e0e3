package gitsync

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/filemode"

	"github.com/provisiond/provisiond/internal/gitsync/gitsynctest"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/testutil"
)

const goodProfiles = `kind: Profile
name: p
boot: {kernel: /assets/v1}
---
kind: Machine
name: node1
match: {mac: "52:54:00:00:00:01"}
profile: p
`

// badProfiles names a profile that does not exist, on line 10.
const badProfiles = goodProfiles + `---
kind: Machine
name: node2
match: {mac: "52:54:00:00:00:02"}
profile: missing
`

// loader is a Load func over the real profiles loader that keeps what went live.
type loader struct {
	mu    sync.Mutex
	calls []string // commits handed over
	live  *profiles.Set
	dirs  []string
	// If set, a call says it entered and waits to be released.
	entered, release chan struct{}
}

func (l *loader) load(dir string, rev Revision) error {
	if l.entered != nil {
		l.entered <- struct{}{}
		<-l.release
	}
	set, err := profiles.Load(dir, profiles.LoadOptions{})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, rev.Commit)
	l.dirs = append(l.dirs, dir)
	if err != nil {
		return err
	}
	l.live = set
	return nil
}

func (l *loader) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls)
}

// newSyncer syncs url into a fresh state directory (or cfg.Dir) with l.
func newSyncer(t *testing.T, url string, l *loader, cfg Config) (*Syncer, *testutil.Buffer) {
	t.Helper()
	logs := &testutil.Buffer{}
	cfg.URL, cfg.Load, cfg.Logger = url, l.load, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "profiles-git")
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sync log:\n%s", logs.String())
		}
	})
	return s, logs
}

// A good commit goes live; a bad one is rejected once with file:line
// problems while the good one stays live; a revert goes live.
func TestSyncLifecycle(t *testing.T) {
	repo := gitsynctest.NewFileRepo(t)
	good := repo.Commit(t, "node1 boots p", map[string]string{"all.yaml": goodProfiles, "butane/readme.txt": "x"})
	l := &loader{}
	s, logs := newSyncer(t, repo.URL(), l, Config{})
	ctx := context.Background()

	type step struct {
		name    string
		commit  func() string // pushes a commit and returns it; nil pushes nothing
		outcome Outcome
		tried   bool
		live    *string // the live commit afterwards
		loads   int     // loader calls so far
	}
	var bad, revert string
	for _, st := range []step{
		{name: "first sync", outcome: Updated, tried: true, live: &good, loads: 1},
		{name: "nothing new", outcome: Unchanged, live: &good, loads: 1},
		{name: "bad commit", commit: func() string {
			bad = repo.Commit(t, "node2 boots a typo", map[string]string{"all.yaml": badProfiles})
			return bad
		}, outcome: Rejected, tried: true, live: &good, loads: 2},
		{name: "bad commit again: not retried", outcome: Rejected, live: &good, loads: 2},
		{name: "revert", commit: func() string {
			revert = repo.Revert(t, bad)
			return revert
		}, outcome: Updated, tried: true, live: &revert, loads: 3},
	} {
		t.Run(st.name, func(t *testing.T) {
			want := ""
			if st.commit != nil {
				want = st.commit()
			}
			res, err := s.Sync(ctx)
			if res.Outcome != st.outcome || res.Tried != st.tried {
				t.Fatalf("Sync = %s tried=%v, %v; want %s tried=%v", res.Outcome, res.Tried, err, st.outcome, st.tried)
			}
			if (err != nil) != (st.outcome == Rejected) {
				t.Errorf("err = %v", err)
			}
			if want != "" && (res.Fetched == nil || res.Fetched.Commit != want) {
				t.Errorf("fetched %+v; want %s", res.Fetched, want)
			}
			if res.Live == nil || res.Live.Commit != *st.live || s.Live().Commit != *st.live {
				t.Errorf("live %+v; want %s", res.Live, *st.live)
			}
			if n := l.count(); n != st.loads {
				t.Errorf("loader called %d times; want %d", n, st.loads)
			}
		})
	}

	// The rejection carries the loader's problems, file:line.
	res, err := s.Sync(ctx)
	_ = res
	if err != nil {
		t.Fatal(err)
	}
	var probs profiles.Problems
	s.work.Lock()
	rejErr := s.rejected[bad]
	s.work.Unlock()
	if !errors.As(rejErr, &probs) || len(probs) != 1 || probs[0].String() != `all.yaml:10: machine "node2" uses unknown profile "missing"` {
		t.Errorf("rejection = %v; want all.yaml:10: unknown profile", rejErr)
	}
	if got := strings.Count(logs.String(), "profiles commit rejected"); got != 1 {
		t.Errorf("the rejection is logged %d times; want once", got)
	}
	// The live set is the revert's, from a tree of its own.
	if l.live == nil || l.live.Machine("node1") == nil || l.live.Machine("node2") != nil {
		t.Errorf("live set machines %v; want node1 only", l.live.Machines)
	}
	rev := s.Live()
	if rev.Short != revert[:12] || rev.Ref != "refs/heads/main" || !strings.HasPrefix(rev.Subject, `Revert "node2 boots a typo"`) || rev.Author != "Alice Operator" {
		t.Errorf("live revision %+v", rev)
	}
	// Trees: the live one and the newest; the good and bad ones are gone.
	trees, err := os.ReadDir(s.treesDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range trees {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{revert}) {
		t.Errorf("trees %v; want only the live %s", names, revert)
	}
	if got := gitsynctest.Paths(t, s.treeDir(revert)); !slices.Equal(got, []string{"all.yaml", "butane/readme.txt"}) {
		t.Errorf("exported files %v", got)
	}
}

// The ref may be a branch, a tag (annotated or not), a full ref name or a
// commit hash; the default follows the remote's HEAD.
func TestSyncRefs(t *testing.T) {
	repo := gitsynctest.NewFileRepo(t)
	first := repo.Commit(t, "first", map[string]string{"all.yaml": goodProfiles})
	second := repo.Commit(t, "second", map[string]string{"all.yaml": goodProfiles, "more.yaml": "kind: Default\nprofile: p\n"})
	repo.Branch(t, "staging", first)
	repo.Tag(t, "v1", first, false)
	repo.Tag(t, "v2", first, true)
	for _, tc := range []struct {
		ref, commit, label, err string
	}{
		{ref: "", commit: second, label: "refs/heads/main"},
		{ref: "main", commit: second, label: "refs/heads/main"},
		{ref: "staging", commit: first, label: "refs/heads/staging"},
		{ref: "refs/heads/staging", commit: first, label: "refs/heads/staging"},
		{ref: "v1", commit: first, label: "refs/tags/v1"},
		{ref: "v2", commit: first, label: "refs/tags/v2"},
		{ref: first, commit: first, label: first},
		{ref: "nope", err: `--profiles-git-ref "nope": no such branch or tag`},
		{ref: strings.Repeat("ab", 20), err: "is not on any branch or tag"},
	} {
		t.Run(cmp.Or(tc.ref, "HEAD"), func(t *testing.T) {
			s, _ := newSyncer(t, repo.URL(), &loader{}, Config{Ref: tc.ref})
			res, err := s.Sync(context.Background())
			if tc.err != "" {
				if res.Outcome != Failed || err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Sync = %s, %v; want an error with %q", res.Outcome, err, tc.err)
				}
				return
			}
			if err != nil || res.Outcome != Updated || res.Fetched.Commit != tc.commit || res.Fetched.Ref != tc.label {
				t.Fatalf("Sync = %s %+v, %v; want %s at %s", res.Outcome, res.Fetched, err, tc.commit, tc.label)
			}
		})
	}
}

// Symlinks and submodules are not exported, with a warning each.
func TestExportSkipsSymlinksAndSubmodules(t *testing.T) {
	repo := gitsynctest.NewFileRepo(t)
	repo.CommitFiles(t, "links", map[string]gitsynctest.File{
		"all.yaml":         {Content: goodProfiles},
		"secret.yaml":      {Content: "/etc/shadow", Mode: filemode.Symlink},
		"vendor/lib":       {Content: strings.Repeat("1", 40), Mode: filemode.Submodule},
		"scripts/hook.sh":  {Content: "#!/bin/sh\n", Mode: filemode.Executable},
		"butane/escape.bu": {Content: "../../../../etc/passwd", Mode: filemode.Symlink},
	})
	l := &loader{}
	s, logs := newSyncer(t, repo.URL(), l, Config{})
	res, err := s.Sync(context.Background())
	if err != nil || res.Outcome != Updated {
		t.Fatalf("Sync = %s, %v", res.Outcome, err)
	}
	dir := s.treeDir(res.Fetched.Commit)
	if got := gitsynctest.Paths(t, dir); !slices.Equal(got, []string{"all.yaml", "scripts/hook.sh"}) {
		t.Errorf("exported %v; want only the regular files", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "scripts/hook.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("executable exported as %v, %v", fi.Mode(), err)
	}
	for _, w := range []string{"symlink skipped", "path=secret.yaml", "path=butane/escape.bu", "submodule skipped", "path=vendor/lib"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs.String())
		}
	}
}

// Syncs asked for during a sync wait for the next one, which they share.
func TestSyncCoalesces(t *testing.T) {
	repo := gitsynctest.NewFileRepo(t)
	repo.Commit(t, "first", map[string]string{"all.yaml": goodProfiles})
	l := &loader{entered: make(chan struct{}), release: make(chan struct{})}
	var mu sync.Mutex
	var rounds []Result
	s, _ := newSyncer(t, repo.URL(), l, Config{})
	s.cfg.OnSync = func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		rounds = append(rounds, r)
	}
	ctx := context.Background()
	first := make(chan Result)
	go func() { r, _ := s.Sync(ctx); first <- r }()
	// The first sync is in the loader; everything after it has to wait.
	<-l.entered
	later := make(chan Result, 5)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); r, _ := s.Sync(ctx); later <- r }()
	}
	// A caller that gives up does not stop the sync it waited for.
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Sync(gone); !errors.Is(err, context.Canceled) {
		t.Errorf("Sync with a cancelled context = %v", err)
	}
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "6 callers waiting for the next sync", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.next != nil && s.next.waiters == 6
	})
	close(l.release)
	if r := <-first; r.Outcome != Updated {
		t.Fatalf("first = %s", r.Outcome)
	}
	wg.Wait()
	close(later)
	var times []time.Time
	for r := range later {
		if r.Outcome != Unchanged {
			t.Errorf("queued sync = %s; want unchanged", r.Outcome)
		}
		times = append(times, r.Time)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rounds) != 2 {
		t.Fatalf("%d syncs ran; want 2 (the first, and one for all that waited)", len(rounds))
	}
	for _, tm := range times {
		if !tm.Equal(rounds[1].Time) {
			t.Errorf("a waiting caller got a sync of %v; want the shared one of %v", tm, rounds[1].Time)
		}
	}
}

// A fetch failure changes nothing, and a restart serves the last live tree
// without the remote.
func TestRestoreWithoutRemote(t *testing.T) {
	repo := gitsynctest.NewFileRepo(t)
	good := repo.Commit(t, "good", map[string]string{"all.yaml": goodProfiles})
	dir := filepath.Join(t.TempDir(), "profiles-git")
	s, _ := newSyncer(t, repo.URL(), &loader{}, Config{Dir: dir})
	if _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The remote goes away.
	if err := os.Rename(repo.Dir, repo.Dir+".moved"); err != nil {
		t.Fatal(err)
	}
	gone := repo.URL()
	l := &loader{}
	s2, logs := newSyncer(t, gone, l, Config{Dir: dir})
	rev, err := s2.Restore()
	if err != nil || rev == nil || rev.Commit != good || rev.Subject != "good" {
		t.Fatalf("Restore = %+v, %v; want %s", rev, err, good)
	}
	if l.live == nil || l.live.Machine("node1") == nil {
		t.Fatal("the restored tree was not loaded")
	}
	res, err := s2.Sync(context.Background())
	if err == nil || res.Outcome != Failed || res.Fetched != nil || res.Live == nil || res.Live.Commit != good {
		t.Fatalf("Sync without the remote = %s %+v, %v; want error with %s live", res.Outcome, res.Live, err, good)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"profiles sync failed; the live set keeps serving\"") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}

	// Another repository's tree is not restored.
	s4, _ := newSyncer(t, gone+"-elsewhere", &loader{}, Config{Dir: dir})
	if rev, err := s4.Restore(); rev != nil || err != nil {
		t.Errorf("Restore for another URL = %+v, %v; want nothing", rev, err)
	}

	// A state directory that never synced has nothing to restore.
	s3, _ := newSyncer(t, gone, &loader{}, Config{})
	if rev, err := s3.Restore(); rev != nil || err != nil {
		t.Errorf("Restore of nothing = %+v, %v", rev, err)
	}
}

func TestNewRefuses(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"password in URL", Config{URL: "https://bob:hunter2@git.example.com/p.git"}, "put the token in --profiles-git-token-file"},
		{"ssh without key", Config{URL: "ssh://git@git.example.com/p.git"}, "needs --profiles-git-ssh-key"},
		{"scp-like without key", Config{URL: "git@git.example.com:infra/p.git"}, "needs --profiles-git-ssh-key"},
		{"token for ssh", Config{URL: "git@git.example.com:infra/p.git", SSHKeyFile: key, TokenFile: key}, "token-file is for https"},
		{"key for https", Config{URL: "https://git.example.com/p.git", SSHKeyFile: key}, "ssh-key is for ssh"},
		{"known hosts for git", Config{URL: "git://git.example.com/p.git", KnownHostsFile: key}, "known-hosts is for ssh"},
		{"ftp", Config{URL: "ftp://git.example.com/p.git"}, `scheme "ftp"`},
		{"local path", Config{URL: "/srv/profiles.git"}, "want an https://"},
		{"no host", Config{URL: "https:///p.git"}, "without a host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Dir, tc.cfg.Load = t.TempDir(), func(string, Revision) error { return nil }
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v; want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestScrub(t *testing.T) {
	err := errors.New(`Get "https://bot:tok3n@h/p.git/info/refs": tok3n refused`)
	got := scrub(err, []string{"tok3n"})
	if strings.Contains(got.Error(), "tok3n") || !strings.Contains(got.Error(), "https://h/p.git") || !errors.Is(got, err) {
		t.Errorf("scrub = %q", got)
	}
	if plain := errors.New("plain"); scrub(plain, []string{"x"}) != plain {
		t.Error("an error without secrets is not kept as is")
	}
}

// Run returns only after the round it started is done: a commit that was
// loaded is also recorded for Restore, even when the daemon stops while
// the load runs (a stop in between restarted on the commit before).
func TestRunWaitsForItsRound(t *testing.T) {
	repo := gitsynctest.NewFileRepo(t)
	good := repo.Commit(t, "good", map[string]string{"all.yaml": goodProfiles})
	dir := filepath.Join(t.TempDir(), "profiles-git")
	l := &loader{entered: make(chan struct{}), release: make(chan struct{})}
	s, _ := newSyncer(t, repo.URL(), l, Config{Dir: dir, Interval: time.Hour})
	ctx, stop := context.WithCancel(context.Background())
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		_ = s.Run(ctx)
	}()
	<-l.entered // the first round is loading
	stop()
	select {
	case <-returned:
		t.Fatal("Run returned while its round was loading a commit")
	case <-time.After(100 * time.Millisecond):
	}
	close(l.release)
	<-returned
	s2, _ := newSyncer(t, repo.URL(), &loader{}, Config{Dir: dir})
	if rev, err := s2.Restore(); err != nil || rev == nil || rev.Commit != good {
		t.Fatalf("Restore after the stop = %+v, %v; want %s", rev, err, good)
	}
}
