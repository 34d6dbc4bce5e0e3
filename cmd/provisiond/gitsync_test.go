package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/gitsync"
	"github.com/provisiond/provisiond/internal/gitsync/gitsynctest"
	"github.com/provisiond/provisiond/internal/metrics"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
	"github.com/provisiond/provisiond/internal/store/etcdstore/etcdtest"
	"github.com/provisiond/provisiond/internal/testutil"
)

// gitProfiles boots node1 with kernel /assets/<version>.
const gitProfiles = "kind: Profile\nname: p\nboot: {kernel: /assets/%s}\n---\nkind: Machine\nname: node1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n"

// gitTypo adds a Machine naming a missing profile, on line 10 of all.yaml.
const gitTypo = "---\nkind: Machine\nname: node2\nmatch: {mac: \"52:54:00:00:00:02\"}\nprofile: pp\n"

func profilesAt(version string, extra ...string) map[string]string {
	return map[string]string{"all.yaml": fmt.Sprintf(gitProfiles, version) + strings.Join(extra, "")}
}

// daemon is `provisiond serve` run in-process on loopback.
type daemon struct {
	base    string
	dataDir string
	logs    *testutil.Buffer
	cancel  context.CancelFunc
	done    chan error
}

// startDaemon runs serve with args (plus --http-addr) until it answers
// /healthz, or returns the error it stopped with.
func startDaemon(t *testing.T, dataDir string, args ...string) (*daemon, error) {
	t.Helper()
	addr := testutil.FreeAddr(t)
	cfg, err := parseServe(append([]string{"--data-dir", dataDir, "--http-addr", addr, "--trust-loopback"}, args...))
	if err != nil {
		return nil, err
	}
	d := &daemon{base: "http://" + addr, dataDir: dataDir, logs: &testutil.Buffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- serve(ctx, cfg, log) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logs.String())
		}
	})
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-d.done:
			d.done <- err
			return nil, err
		default:
		}
		if resp, err := http.Get(d.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d, nil
			}
		}
	}
	t.Fatalf("the daemon did not come up:\n%s", d.logs.String())
	return nil, nil
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case <-d.done:
		d.done <- nil
	case <-time.After(30 * time.Second):
		t.Error("the daemon did not stop")
	}
}

func (d *daemon) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(d.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (d *daemon) kernel(t *testing.T) string {
	t.Helper()
	_, s := d.get(t, "/ipxe?mac=52-54-00-00-00-01")
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "kernel ") {
			if i := strings.Index(l, "/assets/"); i >= 0 {
				return strings.Fields(l[i+len("/assets/"):])[0]
			}
		}
	}
	return ""
}

type gitHealthz struct {
	Status   string
	Profiles struct {
		Git struct {
			Remote         string
			LiveCommit     string   `json:"live_commit"`
			RejectedCommit string   `json:"rejected_commit"`
			RejectedErrors []string `json:"rejected_errors"`
			LastSyncResult string   `json:"last_sync_result"`
			LastSyncError  string   `json:"last_sync_error"`
			Instance       string
			Leader         *bool
			LeaderID       string `json:"leader_id"`
		}
	}
}

func (d *daemon) health(t *testing.T) gitHealthz {
	t.Helper()
	_, body := d.get(t, "/healthz")
	var h gitHealthz
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("/healthz: %v\n%s", err, body)
	}
	return h
}

func (d *daemon) token(t *testing.T) string {
	return readFile(t, filepath.Join(d.dataDir, "api-token"))
}

// dashboard signs in to the dashboard with the daemon's token and returns
// the page at path.
func (d *daemon) dashboard(t *testing.T, path string) string {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(d.base+"/ui/login", url.Values{"name": {"tester"}, "token": {d.token(t)}, "next": {path}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s after signing in: %d\n%s", path, resp.StatusCode, b)
	}
	return string(b)
}

// sync is POST /api/v1/profiles/sync with the daemon's token.
func (d *daemon) sync(t *testing.T) (int, string) {
	t.Helper()
	return send(t, http.MethodPost, d.base+"/api/v1/profiles/sync", d.token(t))
}

// The webhook path end to end: a good commit is live; a bad one is rejected
// with file:line problems while node1 keeps booting the good commit's
// script and /healthz shows both; a revert and a later commit go live.
func TestServeProfilesGitWebhook(t *testing.T) {
	repo := gitsynctest.NewFileRepo(t)
	good := repo.Commit(t, "node1 boots v1", profilesAt("v1"))
	d, err := startDaemon(t, t.TempDir(), "--profiles-git", repo.URL(), "--profiles-git-interval", "1h")
	if err != nil {
		t.Fatal(err)
	}
	if k := d.kernel(t); k != "v1" {
		t.Fatalf("kernel %q; want v1", k)
	}
	// The start's sync put v1 live; the poller does not sync again at once.
	if h := d.health(t); h.Status != "ok" || h.Profiles.Git.LiveCommit != good || h.Profiles.Git.LastSyncResult != boot.SyncUpdated {
		t.Errorf("healthz %+v; want ok with %s live by the first sync", h, good)
	}

	bad := repo.Commit(t, "node2 boots pp", profilesAt("v2", gitTypo))
	code, body := d.sync(t)
	var res struct {
		Result   string
		Live     *gitsync.Revision
		Fetched  *gitsync.Revision
		Problems []struct {
			File    string
			Line    int
			Message string
		}
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil || code != http.StatusUnprocessableEntity || res.Result != "rejected" {
		t.Fatalf("sync of a bad commit = %d %v\n%s", code, err, body)
	}
	if res.Fetched.Commit != bad || res.Live.Commit != good || len(res.Problems) != 1 || res.Problems[0].File != "all.yaml" || res.Problems[0].Line != 10 {
		t.Errorf("rejection %+v", res)
	}
	// node1, from the good commit, still boots its script.
	if k := d.kernel(t); k != "v1" {
		t.Errorf("after a rejected commit node1 boots %q; want the good commit's v1", k)
	}
	h := d.health(t)
	if h.Status != "degraded" || h.Profiles.Git.LiveCommit != good || h.Profiles.Git.RejectedCommit != bad ||
		len(h.Profiles.Git.RejectedErrors) != 1 || h.Profiles.Git.RejectedErrors[0] != `all.yaml:10: machine "node2" uses unknown profile "pp"` {
		t.Errorf("healthz after the rejection: %+v", h)
	}
	// Asked again, the same commit is not loaded again.
	if code, _ := d.sync(t); code != http.StatusUnprocessableEntity {
		t.Errorf("second sync of the bad commit = %d", code)
	}
	if n := strings.Count(d.logs.String(), "profiles commit rejected"); n != 1 {
		t.Errorf("rejection logged %d times; want once", n)
	}

	// git revert, through the CLI.
	revert := repo.Revert(t, bad)
	code2, out, errOut := runCmd("profiles", "sync", "--server", d.base, "--token-file", filepath.Join(d.dataDir, "api-token"))
	if code2 != 0 || !strings.Contains(out, "result:   updated") || !strings.Contains(out, revert[:12]+` Revert "node2 boots pp"`) {
		t.Errorf("profiles sync = %d\n%s\n%s", code2, out, errOut)
	}
	if h := d.health(t); h.Status != "ok" || h.Profiles.Git.LiveCommit != revert || h.Profiles.Git.RejectedCommit != bad {
		t.Errorf("healthz after the revert: %+v", h)
	}

	// Latency: commit to served, through the webhook.
	repo.Commit(t, "node1 boots v3", profilesAt("v3"))
	start := time.Now()
	if code, body := d.sync(t); code != 200 || !strings.Contains(body, `"result": "updated"`) {
		t.Fatalf("sync = %d\n%s", code, body)
	}
	// The sync answers once the commit is live: the next request serves it.
	if k := d.kernel(t); k != "v3" {
		t.Fatalf("kernel %q after the sync answered; want v3", k)
	}
	t.Logf("commit to served through POST /api/v1/profiles/sync: %v", time.Since(start).Round(time.Millisecond))

	// The CLI on a rejected commit: problems, exit 1.
	repo.Commit(t, "typo again", profilesAt("v4", gitTypo))
	code2, out, errOut = runCmd("profiles", "sync", "--server", d.base, "--token-file", filepath.Join(d.dataDir, "api-token"))
	if code2 != 1 || !strings.Contains(out, "result:   rejected") || !strings.Contains(out, `  all.yaml:10: machine "node2" uses unknown profile "pp"`) ||
		!strings.Contains(errOut, "the commit does not validate; the live commit keeps serving") {
		t.Errorf("profiles sync of a bad commit = %d\n%s\n%s", code2, out, errOut)
	}

	_, metrics := d.get(t, "/metrics")
	live := d.health(t).Profiles.Git.LiveCommit
	for _, w := range []string{
		`provisiond_profile_syncs_total{result="updated"} 3`,
		`provisiond_profile_syncs_total{result="rejected"} 3`,
		`provisiond_profile_syncs_total{result="error"} 0`,
		`provisiond_profile_live_commit_info{commit="` + live[:12] + `"} 1`,
	} {
		if !strings.Contains(metrics, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if n := strings.Count(metrics, "provisiond_profile_live_commit_info{"); n != 1 {
		t.Errorf("%d live commit series; want 1", n)
	}
	req, _ := http.NewRequest(http.MethodGet, d.base+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+d.token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Count(string(evs), `"type": "profiles-live"`) != 3 || strings.Count(string(evs), `"type": "profiles-rejected"`) != 2 {
		t.Errorf("events:\n%s", evs)
	}
}

// Polling, then restarts: with the remote gone, or naming a rejected
// commit, a restart serves the last good tree; without one, start fails.
func TestServeProfilesGitPollAndRestart(t *testing.T) {
	repo := gitsynctest.NewFileRepo(t)
	repo.Commit(t, "v1", profilesAt("v1"))
	dataDir := t.TempDir()
	d, err := startDaemon(t, dataDir, "--profiles-git", repo.URL(), "--profiles-git-interval", "1s")
	if err != nil {
		t.Fatal(err)
	}
	v2 := repo.Commit(t, "v2", profilesAt("v2"))
	took := gitsynctest.WaitFor(context.Background(), t, 10*time.Second, "v2 served by polling", func() bool { return d.kernel(t) == "v2" })
	t.Logf("commit to served by polling every 1s: %v", took.Round(time.Millisecond))
	d.stop(t)

	// The remote is gone: the restart serves v2 and says the sync failed.
	moved := repo.Dir + ".moved"
	if err := os.Rename(repo.Dir, moved); err != nil {
		t.Fatal(err)
	}
	d, err = startDaemon(t, dataDir, "--profiles-git", repo.URL(), "--profiles-git-interval", "1h")
	if err != nil {
		t.Fatalf("restart without the remote: %v", err)
	}
	if k := d.kernel(t); k != "v2" {
		t.Errorf("restart without the remote serves %q; want the last good v2", k)
	}
	gitsynctest.WaitFor(context.Background(), t, 10*time.Second, "the failed sync in /healthz", func() bool {
		return d.health(t).Profiles.Git.LastSyncResult == boot.SyncError
	})
	if h := d.health(t); h.Status != "degraded" || h.Profiles.Git.LiveCommit != v2 || h.Profiles.Git.LastSyncError == "" {
		t.Errorf("healthz without the remote: %+v", h)
	}
	if !strings.Contains(d.logs.String(), `level=WARN msg="profiles sync failed; the live set keeps serving"`) {
		t.Errorf("no warning about the failed sync")
	}
	d.stop(t)

	// Back, but naming a commit that does not validate: v2 still serves.
	if err := os.Rename(moved, repo.Dir); err != nil {
		t.Fatal(err)
	}
	bad := repo.Commit(t, "typo", profilesAt("v3", gitTypo))
	d, err = startDaemon(t, dataDir, "--profiles-git", repo.URL(), "--profiles-git-interval", "1h")
	if err != nil {
		t.Fatalf("restart with a rejected head: %v", err)
	}
	gitsynctest.WaitFor(context.Background(), t, 10*time.Second, "the rejection in /healthz", func() bool {
		return d.health(t).Profiles.Git.RejectedCommit == bad
	})
	if k, h := d.kernel(t), d.health(t); k != "v2" || h.Status != "degraded" || h.Profiles.Git.LiveCommit != v2 {
		t.Errorf("restart with a rejected head: kernel %q, %+v", k, h)
	}
	d.stop(t)

	// Without a previous tree, the first sync must succeed.
	_, err = startDaemon(t, t.TempDir(), "--profiles-git", repo.URL())
	if err == nil || !strings.Contains(err.Error(), "at commit "+bad[:12]+" (typo) do not validate:\nall.yaml:10: machine \"node2\" uses unknown profile \"pp\"") {
		t.Errorf("first start on a rejected commit: %v", err)
	}
	_, err = startDaemon(t, t.TempDir(), "--profiles-git", "file://"+filepath.Join(t.TempDir(), "nothing.git"))
	if err == nil || !strings.Contains(err.Error(), "first sync of the profiles from file://") {
		t.Errorf("first start without the remote: %v", err)
	}
}

// Over http with a token file, as for GitHub or Gitea: a wrong token stops
// the first start with a clear error, and no token shows anywhere.
func TestServeProfilesGitToken(t *testing.T) {
	root := t.TempDir()
	repo := gitsynctest.NewRepo(t, filepath.Join(root, "profiles.git"))
	repo.Commit(t, "v1", profilesAt("v1"))
	const token = "gitea-token-3b1f0c9e7d5a"
	srv := gitsynctest.HTTPBackend(t, root, token)
	tokenFile := writeFile(t, "token", "not-"+token+"\n")
	url := srv.URL + "/profiles.git"

	_, err := startDaemon(t, t.TempDir(), "--profiles-git", url, "--profiles-git-token-file", tokenFile)
	if err == nil || !strings.Contains(err.Error(), "authentication required") || !strings.Contains(err.Error(), "check --profiles-git-token-file") || strings.Contains(err.Error(), token) {
		t.Fatalf("start with a wrong token: %v", err)
	}
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(t, t.TempDir(), "--profiles-git", url, "--profiles-git-token-file", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	_, health := d.get(t, "/healthz")
	_, sync := d.sync(t)
	for what, s := range map[string]string{"log": d.logs.String(), "healthz": health, "sync answer": sync} {
		if strings.Contains(s, token) {
			t.Errorf("the token is in the %s:\n%s", what, s)
		}
	}
	if !strings.Contains(sync, `"result": "unchanged"`) {
		t.Errorf("sync:\n%s", sync)
	}
}

func TestServeFlagsProfilesGit(t *testing.T) {
	key := writeFile(t, "key", "x")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"both", []string{"--profiles", "x", "--profiles-git", "https://h/p.git"}, "exclude each other"},
		{"neither", []string{}, "--profiles DIR or --profiles-git URL is required"},
		{"git flag without git", []string{"--profiles", "x", "--profiles-git-ref", "main"}, "need --profiles-git"},
		{"ssh without key", []string{"--profiles-git", "git@h:infra/p.git"}, "needs --profiles-git-ssh-key"},
		{"password in URL", []string{"--profiles-git", "https://bot:hunter2@h/p.git"}, "--profiles-git-token-file"},
		{"interval", []string{"--profiles-git", "https://h/p.git", "--profiles-git-interval", "10ms"}, "want 1s or more"},
		{"token for ssh", []string{"--profiles-git", "ssh://h/p.git", "--profiles-git-ssh-key", key, "--profiles-git-token-file", key}, "is for https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseServe(tc.args)
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("parseServe(%q) = %v; want a usage error with %q", tc.args, err, tc.want)
			}
		})
	}

	// Every flag can come from the environment.
	t.Setenv("PROVISIOND_PROFILES_GIT", "ssh://git@git.example.com/infra/profiles.git")
	t.Setenv("PROVISIOND_PROFILES_GIT_REF", "v1.2")
	t.Setenv("PROVISIOND_PROFILES_GIT_INTERVAL", "5m")
	t.Setenv("PROVISIOND_PROFILES_GIT_SSH_KEY", key)
	t.Setenv("PROVISIOND_PROFILES_GIT_KNOWN_HOSTS", "/etc/provisiond/known_hosts")
	cfg, err := parseServe([]string{"--http-addr", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProfilesGit != "ssh://git@git.example.com/infra/profiles.git" || cfg.ProfilesGitRef != "v1.2" || cfg.ProfilesGitInterval != 5*time.Minute ||
		cfg.ProfilesGitSSHKey != key || cfg.ProfilesGitKnownHosts != "/etc/provisiond/known_hosts" || cfg.ProfilesDir != "" {
		t.Errorf("config from env = %+v", cfg)
	}
	t.Setenv("PROVISIOND_PROFILES_GIT", "https://git.example.com/infra/profiles.git")
	t.Setenv("PROVISIOND_PROFILES_GIT_SSH_KEY", "")
	t.Setenv("PROVISIOND_PROFILES_GIT_KNOWN_HOSTS", "")
	t.Setenv("PROVISIOND_PROFILES_GIT_TOKEN_FILE", key)
	if cfg, err := parseServe([]string{"--http-addr", "127.0.0.1:0"}); err != nil || cfg.ProfilesGitTokenFile != key {
		t.Errorf("token file from env = %+v, %v", cfg, err)
	}
}

// The syncer's outcomes are the core's sync results.
func TestSyncResultNames(t *testing.T) {
	for o, r := range map[gitsync.Outcome]string{gitsync.Updated: boot.SyncUpdated, gitsync.Unchanged: boot.SyncUnchanged, gitsync.Rejected: boot.SyncRejected, gitsync.Failed: boot.SyncError} {
		if string(o) != r {
			t.Errorf("gitsync %q is boot %q", o, r)
		}
	}
}

// gitInstance is one provisiond instance's Git side on a shared etcd: its
// own store client, boot core and syncer, as serve wires them.
type gitInstance struct {
	name   string
	store  *etcdstore.Store
	core   *boot.Core
	syncer *gitsync.Syncer
	m      *metrics.Metrics
	logs   *testutil.Buffer
	stop   context.CancelFunc
	done   chan struct{}
}

// startGitInstance starts an instance as serve does: the first load, then
// Run. The interval is long: the test syncs the leader by hand.
func startGitInstance(t *testing.T, endpoint, prefix, repoURL, name string) *gitInstance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	es, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: []string{endpoint}, Prefix: prefix}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := &gitInstance{name: name, store: es, logs: &testutil.Buffer{}, stop: cancel, done: make(chan struct{}), m: metrics.New(metrics.Config{})}
	log := slog.New(slog.NewTextHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", name)
	cfg := serveConfig{ProfilesGit: repoURL, DataDir: t.TempDir(), ProfilesGitInterval: time.Hour, AdvertiseURL: "http://" + name + ".test:8080"}
	in.core = boot.New(boot.Config{AdvertiseURL: cfg.AdvertiseURL, Store: es, Logger: log})
	in.syncer, err = startGitSync(ctx, cfg, in.core, es, in.m, log)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		defer close(in.done)
		_ = in.syncer.Run(ctx)
	}()
	t.Cleanup(func() {
		in.stop()
		<-in.done
		_ = in.store.Close()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, in.logs.String())
		}
	})
	return in
}

// cutProxy forwards loopback TCP connections to an address until cut: then
// every connection drops and new ones are refused, so that an instance
// behind it is dead as far as etcd can tell (its lease is neither renewed
// nor revoked) while its process lives on.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			if !p.track(c, u) {
				continue
			}
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	t.Cleanup(p.Cut)
	return p
}

func (p *cutProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, cs...)
	return true
}

// Cut drops every connection and refuses new ones.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// live is the commit the instance's core serves.
func (in *gitInstance) live() string {
	if st := in.core.Status(); st != nil && st.Live != nil {
		return st.Live.Commit
	}
	return ""
}

func (in *gitInstance) leads() bool {
	st := in.core.Sync()
	return st != nil && st.Leader
}

// publishedCommit is the commit etcd holds as published.
func publishedCommit(t *testing.T, s *etcdstore.Store) string {
	t.Helper()
	st, err := s.GitState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Published == nil {
		return ""
	}
	return st.Published.Commit
}

// Two instances on one etcd and one repository: the elected one syncs and
// publishes, the other loads exactly what was published, never a commit
// the leader rejected nor one it has not published yet (not even on an API
// sync); when the leader dies without resigning, the other takes over
// within the lease's TTL and syncs the next commit itself.
func TestGitClusterLeaderAndFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member and waits out a lease")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	member := etcdtest.StartT(t)
	repo := gitsynctest.NewFileRepo(t)
	a := repo.Commit(t, "a", profilesAt("a"))

	// one reaches etcd through a proxy the test cuts to kill it.
	toOne := newCutProxy(t, strings.TrimPrefix(member.Endpoint, "http://"))
	one := startGitInstance(t, "http://"+toOne.ln.Addr().String(), "/git-cluster", repo.URL(), "one")
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "one elected and A published", func() bool {
		return one.leads() && publishedCommit(t, one.store) == a
	})
	two := startGitInstance(t, member.Endpoint, "/git-cluster", repo.URL(), "two")
	if two.live() != a {
		t.Fatalf("two serves %q at start; want the published A %s", two.live(), a)
	}
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "two's status names one as leader", func() bool {
		st := two.core.Sync()
		return st != nil && !st.Leader && st.LeaderID == instanceID("http://one.test:8080") && st.Instance == instanceID("http://two.test:8080")
	})
	if got := promValue(t, one.m, "provisiond_git_leader"); got != 1 {
		t.Errorf("one's provisiond_git_leader = %v; want 1", got)
	}
	if got := promValue(t, two.m, "provisiond_git_leader"); got != 0 {
		t.Errorf("two's provisiond_git_leader = %v; want 0", got)
	}

	// B does not validate: the leader rejects it and never publishes it.
	b := repo.Commit(t, "b: typo", profilesAt("b", gitTypo))
	if res, err := one.syncer.Sync(ctx); res.Outcome != gitsync.Rejected || err == nil {
		t.Fatalf("leader's sync of B: %s %v; want rejected", res.Outcome, err)
	}
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "two's status shows the leader's rejection", func() bool {
		st := two.core.Sync()
		return st != nil && st.Result == boot.SyncRejected && st.Fetched != nil && st.Fetched.Commit == b
	})
	// An API sync on the follower reads the published commit, not the ref.
	res, err := gitBackend{Core: two.core, syncer: two.syncer}.SyncProfiles(ctx)
	if err != nil || res.Result != boot.SyncUnchanged || res.Live == nil || res.Live.Commit != a || res.Leader || res.LeaderID != instanceID("http://one.test:8080") {
		t.Errorf("follower's API sync with B at the ref: %+v %v; want unchanged on A, leader one", res, err)
	}
	if two.live() != a || one.live() != a || publishedCommit(t, one.store) != a {
		t.Fatalf("after B: one %s, two %s, published %s; want A %s everywhere", one.live(), two.live(), publishedCommit(t, one.store), a)
	}
	if st := two.core.Status(); st.Rejected != nil {
		t.Errorf("two tried to load %s; a follower never loads a commit the leader rejected", st.Rejected.Revision.Short)
	}

	// C validates, but until the leader syncs it is no one's to serve.
	c := repo.Commit(t, "c", profilesAt("c"))
	if res, err := (gitBackend{Core: two.core, syncer: two.syncer}).SyncProfiles(ctx); err != nil || res.Live == nil || res.Live.Commit != a {
		t.Errorf("follower's API sync before the leader published C: %+v %v; want A still", res, err)
	}
	if res, err := one.syncer.Sync(ctx); res.Outcome != gitsync.Updated || err != nil {
		t.Fatalf("leader's sync of C: %s %v; want updated", res.Outcome, err)
	}
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "two serves C", func() bool { return two.live() == c })
	if publishedCommit(t, two.store) != c || one.live() != c {
		t.Fatalf("after C: one %s, published %s; want C %s", one.live(), publishedCommit(t, two.store), c)
	}
	// Each instance records its going live, after the load.
	wentLive := map[string]bool{}
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "C's profiles-live events of both instances", func() bool {
		evs, err := two.store.Events(ctx, store.EventQuery{Type: boot.EventProfilesLive})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			wentLive[e.Fields["commit"]+" "+e.Fields["instance"]] = true
			if e.Fields["commit"] == b {
				t.Fatalf("event %q: B went live somewhere", e.Message)
			}
		}
		return wentLive[c+" "+instanceID("http://one.test:8080")] && wentLive[c+" "+instanceID("http://two.test:8080")]
	})

	// A published commit the follower cannot fetch (written past the
	// leader, as a buggy or foreign writer might): it keeps serving C and
	// says so, once in the event log; the leader's next sync heals it.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{member.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ghost := "0123456789abcdef0123456789abcdef01234567"
	if _, err := cli.Put(ctx, "/git-cluster/git/published", `{"commit":"`+ghost+`","ref":"refs/heads/main","leader":"nobody"}`); err != nil {
		t.Fatal(err)
	}
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "two's profiles-behind event", func() bool {
		evs, err := two.store.Events(ctx, store.EventQuery{Type: boot.EventProfilesBehind})
		return err == nil && len(evs) == 1 && evs[0].Fields["commit"] == ghost
	})
	if st := two.core.Sync(); two.live() != c || st.Result != boot.SyncError {
		t.Errorf("two with an unfetchable commit published: live %s, last sync %s; want C, error", two.live(), st.Result)
	}
	if res, err := one.syncer.Sync(ctx); err != nil || res.Outcome != gitsync.Unchanged || publishedCommit(t, one.store) != c {
		t.Errorf("the leader's sync: %s %v, published %s; want C published again", res.Outcome, err, publishedCommit(t, one.store))
	}

	// The leader dies: its lease outlives it until the TTL.
	d := repo.Commit(t, "d", profilesAt("d"))
	died := time.Now()
	toOne.Cut()
	took := gitsynctest.WaitFor(ctx, t, 3*etcdstore.GitLeaderTTL*time.Second, "two elected", two.leads)
	t.Logf("failover after the leader died: %v (lease TTL %ds)", took.Round(10*time.Millisecond), etcdstore.GitLeaderTTL)
	if took < (etcdstore.GitLeaderTTL-2)*time.Second {
		t.Errorf("two elected %v after the leader died; the lease should have kept it out for about %ds", took, etcdstore.GitLeaderTTL)
	}
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "the new leader syncs and publishes D", func() bool {
		return two.live() == d && publishedCommit(t, two.store) == d
	})
	t.Logf("D live on the new leader %v after the old one died", time.Since(died).Round(10*time.Millisecond))
	// The cut-off instance gives up when its client sees the lease run out
	// (at most about a second after etcd expired it), and keeps serving C.
	gitsynctest.WaitFor(ctx, t, 5*time.Second, "the cut-off instance to step down", func() bool { return !one.leads() })
	if one.live() != c {
		t.Errorf("the cut-off instance serves %s; want C %s", one.live(), c)
	}
	if got := promValue(t, two.m, "provisiond_git_leader"); got != 1 {
		t.Errorf("two's provisiond_git_leader = %v; want 1", got)
	}
}

// promValue is the value of the unlabelled metric name in m.
func promValue(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// Two daemons on one etcd following one repository: /healthz, /metrics and
// the sync API say which one leads; an API sync on the other reports the
// published commit and the leader; a leader that stops hands over at once.
func TestServeProfilesGitCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member and two daemons")
	}
	member := etcdtest.StartT(t)
	repo := gitsynctest.NewFileRepo(t)
	v1 := repo.Commit(t, "v1", profilesAt("v1"))
	shared := []string{"--profiles-git", repo.URL(), "--store", "etcd", "--etcd-endpoints", member.Endpoint, "--etcd-prefix", "/test-git"}
	a, err := startDaemon(t, t.TempDir(), shared...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "a to lead", func() bool {
		g := a.health(t).Profiles.Git
		return g.Leader != nil && *g.Leader
	})
	b, err := startDaemon(t, t.TempDir(), shared...)
	if err != nil {
		t.Fatal(err)
	}
	aID := a.health(t).Profiles.Git.Instance
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "b's /healthz to name a as leader", func() bool {
		g := b.health(t).Profiles.Git
		return g.Leader != nil && !*g.Leader && g.LeaderID == aID && g.LiveCommit == v1
	})
	for _, c := range []struct {
		d    *daemon
		want string
	}{{a, "provisiond_git_leader 1"}, {b, "provisiond_git_leader 0"}} {
		if _, m := c.d.get(t, "/metrics"); !strings.Contains(m, c.want+"\n") {
			t.Errorf("/metrics of %s lacks %q", c.d.base, c.want)
		}
	}

	// v2 is at the ref, but a has not synced it: b's sync does not take it.
	repo.Commit(t, "v2", profilesAt("v2"))
	code, body := b.sync(t)
	var res struct {
		Result   string
		Live     struct{ Commit string }
		Leader   *bool
		LeaderID string `json:"leader_id"`
	}
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if code != http.StatusOK || res.Result != "unchanged" || res.Live.Commit != v1 || res.Leader == nil || *res.Leader || res.LeaderID != aID {
		t.Errorf("b's POST /profiles/sync = %d %s; want unchanged on v1, leader a", code, body)
	}
	if page := b.dashboard(t, "/ui/profiles"); !strings.Contains(page, `<dd id="git-leader">no: <code>`+aID+`</code> follows Git`) {
		t.Errorf("b's profiles page does not name a as the leader:\n%s", page)
	}
	if k := b.kernel(t); k != "v1" {
		t.Errorf("b boots node1 with %q; want v1 until the leader publishes v2", k)
	}
	if code, body := a.sync(t); code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil || res.Result != "updated" || !*res.Leader {
		t.Fatalf("a's sync = %d %s", code, body)
	}
	gitsynctest.WaitFor(ctx, t, 10*time.Second, "b to boot v2", func() bool { return b.kernel(t) == "v2" })

	stopped := time.Now()
	a.stop(t)
	took := gitsynctest.WaitFor(ctx, t, 10*time.Second, "b to lead after a stopped", func() bool {
		g := b.health(t).Profiles.Git
		return g.Leader != nil && *g.Leader
	})
	t.Logf("b led %v after a's stop began (%v after it returned)", time.Since(stopped).Round(time.Millisecond), took.Round(time.Millisecond))
	if took > etcdstore.GitLeaderTTL*time.Second/2 {
		t.Errorf("b led %v after a stopped; a resignation should hand over at once", took)
	}
}
