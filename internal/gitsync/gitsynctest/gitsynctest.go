// Package gitsynctest makes real Git repositories for tests of the profiles
// sync: a bare repository on disk whose commits are written with go-git (no
// git binary), and, where the git binary is installed, loopback servers for
// it: git daemon (git://) and git http-backend (http://) behind basic auth.
package gitsynctest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/provisiond/provisiond/internal/testutil"
)

// Repo is a bare repository on disk with a main branch.
type Repo struct {
	Dir string // the bare repository

	mu    sync.Mutex
	repo  *git.Repository
	clock time.Time
}

// File is one tree entry a commit writes: a regular file unless Mode says
// otherwise (filemode.Executable, filemode.Symlink whose Content is the
// target, filemode.Submodule whose Content is a commit hash).
type File struct {
	Content string
	Mode    filemode.FileMode
}

// NewRepo creates a bare repository at dir whose HEAD names main.
func NewRepo(tb testing.TB, dir string) *Repo {
	tb.Helper()
	r, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{Bare: true, InitOptions: git.InitOptions{DefaultBranch: plumbing.Main}})
	if err != nil {
		tb.Fatal(err)
	}
	return &Repo{Dir: dir, repo: r, clock: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// URL is the repository's file:// URL.
func (r *Repo) URL() string { return "file://" + filepath.ToSlash(r.Dir) }

// Commit commits files (path -> content) as the whole tree on main and
// returns the commit's hash.
func (r *Repo) Commit(tb testing.TB, msg string, files map[string]string) string {
	tb.Helper()
	entries := map[string]File{}
	for p, c := range files {
		entries[p] = File{Content: c}
	}
	return r.CommitFiles(tb, msg, entries)
}

// CommitFiles is Commit with file modes.
func (r *Repo) CommitFiles(tb testing.TB, msg string, files map[string]File) string {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	tree, err := r.writeTree(files)
	if err != nil {
		tb.Fatal(err)
	}
	return r.commitTree(tb, msg, tree)
}

// Revert commits, on main, the tree of bad's parent, as `git revert bad`
// does when bad is the last commit.
func (r *Repo) Revert(tb testing.TB, bad string) string {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.repo.CommitObject(plumbing.NewHash(bad))
	if err != nil {
		tb.Fatal(err)
	}
	parent, err := c.Parent(0)
	if err != nil {
		tb.Fatal(err)
	}
	subject, _, _ := strings.Cut(c.Message, "\n")
	return r.commitTree(tb, fmt.Sprintf("Revert %q\n\nThis reverts commit %s.\n", subject, bad), parent.TreeHash)
}

func (r *Repo) commitTree(tb testing.TB, msg string, tree plumbing.Hash) string {
	tb.Helper()
	r.clock = r.clock.Add(time.Minute)
	sig := object.Signature{Name: "Alice Operator", Email: "alice@example.com", When: r.clock}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: tree}
	if head, err := r.repo.Reference(plumbing.Main, true); err == nil {
		c.ParentHashes = []plumbing.Hash{head.Hash()}
	}
	obj := r.repo.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		tb.Fatal(err)
	}
	h, err := r.repo.Storer.SetEncodedObject(obj)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.Main, h)); err != nil {
		tb.Fatal(err)
	}
	return h.String()
}

// writeTree stores files as a tree and returns its hash.
func (r *Repo) writeTree(files map[string]File) (plumbing.Hash, error) {
	t := &object.Tree{}
	subdirs := map[string]map[string]File{}
	for p, f := range files {
		dir, rest, nested := strings.Cut(p, "/")
		if nested {
			if subdirs[dir] == nil {
				subdirs[dir] = map[string]File{}
			}
			subdirs[dir][rest] = f
			continue
		}
		mode := f.Mode
		if mode == 0 {
			mode = filemode.Regular
		}
		var h plumbing.Hash
		if mode == filemode.Submodule {
			h = plumbing.NewHash(f.Content)
		} else {
			var err error
			if h, err = r.writeBlob([]byte(f.Content)); err != nil {
				return h, err
			}
		}
		t.Entries = append(t.Entries, object.TreeEntry{Name: p, Mode: mode, Hash: h})
	}
	for dir, fs := range subdirs {
		h, err := r.writeTree(fs)
		if err != nil {
			return h, err
		}
		t.Entries = append(t.Entries, object.TreeEntry{Name: dir, Mode: filemode.Dir, Hash: h})
	}
	sort.Sort(object.TreeEntrySorter(t.Entries))
	obj := r.repo.Storer.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.repo.Storer.SetEncodedObject(obj)
}

func (r *Repo) writeBlob(b []byte) (plumbing.Hash, error) {
	obj := r.repo.Storer.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(b); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.repo.Storer.SetEncodedObject(obj)
}

// Tag points tag name at commit: lightweight, or annotated with a message.
func (r *Repo) Tag(tb testing.TB, name, commit string, annotated bool) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	h := plumbing.NewHash(commit)
	if annotated {
		r.clock = r.clock.Add(time.Minute)
		tag := &object.Tag{Name: name, Tagger: object.Signature{Name: "Alice Operator", Email: "alice@example.com", When: r.clock},
			Message: "release " + name + "\n", TargetType: plumbing.CommitObject, Target: h}
		obj := r.repo.Storer.NewEncodedObject()
		if err := tag.Encode(obj); err != nil {
			tb.Fatal(err)
		}
		var err error
		if h, err = r.repo.Storer.SetEncodedObject(obj); err != nil {
			tb.Fatal(err)
		}
	}
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewTagReferenceName(name), h)); err != nil {
		tb.Fatal(err)
	}
}

// Branch points branch name at commit.
func (r *Repo) Branch(tb testing.TB, name, commit string) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(name), plumbing.NewHash(commit))); err != nil {
		tb.Fatal(err)
	}
}

// NewFileRepo is a bare repository under tb's temporary directory, for a
// file:// remote. go-git fetches file:// with git-upload-pack, so it skips
// (or fails, under PROVISIOND_REQUIRE_LAB) without git.
func NewFileRepo(tb testing.TB) *Repo {
	tb.Helper()
	RequireGit(tb)
	return NewRepo(tb, filepath.Join(tb.TempDir(), "profiles.git"))
}

// RequireGit skips tb, or fails it with PROVISIOND_REQUIRE_LAB=1, unless
// the git binary is installed: go-git's file:// transport runs
// git-upload-pack, and the servers here are git's own.
func RequireGit(tb testing.TB) string {
	tb.Helper()
	testutil.RequireTools(tb, testutil.Tool{Command: "git", Package: "git"})
	p, _ := exec.LookPath("git")
	return p
}

// Daemon serves the repositories under base with `git daemon` on loopback
// until tb ends, and returns its git:// base URL.
func Daemon(tb testing.TB, base string) string {
	tb.Helper()
	gitBin := RequireGit(tb)
	_, port, _ := net.SplitHostPort(testutil.FreeAddr(tb))
	var out bytes.Buffer
	cmd := exec.Command(gitBin, "daemon", "--reuseaddr", "--base-path="+base, "--export-all",
		"--port="+port, "--listen=127.0.0.1", "--informative-errors", base)
	cmd.Stdout, cmd.Stderr = &out, &out
	// A group of its own: the daemon forks a child per connection, and all
	// of them end with the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	addr := net.JoinHostPort("127.0.0.1", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return "git://" + addr
		}
		select {
		case <-exited:
			tb.Fatalf("git daemon exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("git daemon does not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// HTTPServer is git http-backend behind basic auth, on loopback.
type HTTPServer struct {
	URL string // base URL; repositories are at URL/<name relative to the root>

	mu       sync.Mutex
	refusals int
}

// Refusals counts requests refused for a wrong or missing token.
func (s *HTTPServer) Refusals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refusals
}

// HTTPBackend serves the repositories under root with `git http-backend`
// (smart HTTP, through net/http/cgi) to clients whose basic auth password is
// token, until tb ends.
func HTTPBackend(tb testing.TB, root, token string) *HTTPServer {
	tb.Helper()
	gitBin := RequireGit(tb)
	s := &HTTPServer{}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, ok := r.BasicAuth()
		if !ok || pass != token {
			s.mu.Lock()
			s.refusals++
			s.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="profiles"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Paths lists the files under dir, relative and slash-separated, sorted.
func Paths(tb testing.TB, dir string) []string {
	tb.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, path.Clean(filepath.ToSlash(rel)))
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// WaitFor polls cond every 10 ms until it holds or timeout passes, and
// returns how long it took; tb fails on timeout.
func WaitFor(ctx context.Context, tb testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout || ctx.Err() != nil {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
