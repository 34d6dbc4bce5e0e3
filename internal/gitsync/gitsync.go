// Package gitsync keeps a local copy of a profiles Git repository and hands
// each new commit's tree to a loader. It fetches with go-git (https, ssh and
// git:// need no git binary; file:// runs git-upload-pack, as git itself
// does), exports the commit's files into a directory of their own, and
// remembers a commit the loader rejected so that it is not tried again until
// the ref moves on. Credentials come from files, read again at every fetch,
// and never appear in a log line, an error or a Result. Instances that share
// a Cluster (cluster.go) elect one to follow the ref; the others load
// exactly the commits it publishes.
package gitsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
)

// Revision names a commit of the profiles repository.
type Revision struct {
	Commit  string    // full hash
	Short   string    // first 12 hex digits
	Subject string    // first line of the message
	Author  string    // author name
	Time    time.Time // committer time
	Ref     string    // what was followed: refs/heads/main, refs/tags/v1, or the hash itself
}

// Outcome says what one sync did.
type Outcome string

// Outcomes of a sync.
const (
	Updated   Outcome = "updated"   // a new commit was loaded and is live
	Unchanged Outcome = "unchanged" // the ref still names the live commit
	Rejected  Outcome = "rejected"  // the ref names a commit the loader refused (now or before)
	Failed    Outcome = "error"     // the fetch or the export failed; nothing changed
)

// Result is the outcome of one sync.
type Result struct {
	Time     time.Time // start
	Duration time.Duration
	Outcome  Outcome
	Fetched  *Revision // the commit the ref names; nil when the fetch failed
	Live     *Revision // the live commit after the sync; nil if none
	// Tried: Fetched was new and handed to the loader in this sync. A
	// rejected commit is tried once; later syncs report it without a retry.
	// A follower (Config.Cluster) that fails to fetch a published commit
	// reports Tried at its first failure only.
	Tried bool
	Err   error // the fetch error, or the loader's error for a rejected commit
	Role  *Role // this instance's part in the cluster; nil without Config.Cluster
}

// Config configures a Syncer.
type Config struct {
	// URL of the repository: https://, http://, ssh://, user@host:path,
	// git:// or file://. A user name in it is used to log in; a password is
	// refused (use TokenFile).
	URL string
	// Ref is a branch, a tag or a full commit hash; "" follows the branch
	// the remote's HEAD names.
	Ref string
	// Dir holds the state: repo/ (a bare repository), trees/<commit>/ (the
	// exported trees) and live.json (the live commit, for Restore).
	Dir string
	// Interval is Run's poll period; 0 means one minute.
	Interval time.Duration
	// Timeout bounds one sync (list, fetch, export); 0 means two minutes.
	Timeout time.Duration
	// SSHKeyFile is the private key for ssh URLs (no passphrase).
	SSHKeyFile string
	// KnownHostsFile lists the ssh server's host keys; "" uses
	// $SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.
	// An unknown host is an error: host keys are always checked.
	KnownHostsFile string
	// TokenFile holds the password or token for http(s) URLs, sent with
	// basic auth as the URL's user, else "git".
	TokenFile string
	// Load is handed each new commit's exported tree; an error rejects the
	// commit and the previous one stays live. Required.
	Load func(dir string, rev Revision) error
	// OnSync, if set, is told every sync's Result (for status and metrics).
	OnSync func(Result)
	// Cluster, if set, shares the repository among instances (cluster.go):
	// only the elected one fetches the ref, and the others load the commits
	// it publishes. nil: this instance follows the ref on its own.
	Cluster Cluster
	Logger  *slog.Logger // nil: discard
}

// Defaults of Config.
const (
	DefaultInterval = time.Minute
	DefaultTimeout  = 2 * time.Minute
)

// maxRejected bounds the rejected commits remembered.
const maxRejected = 16

// Syncer follows one ref of one repository. Sync and Run may be called from
// any goroutine; one sync runs at a time.
type Syncer struct {
	cfg    Config
	log    *slog.Logger
	remote remote

	work sync.Mutex // serialises syncs and Restore: they own the fields below
	repo *git.Repository
	// newest is the last commit exported, kept on disk beside the live one.
	newest   string
	rejected map[string]error // commit -> the loader's error

	mu      sync.Mutex // guards the fields below
	live    *Revision
	life    context.Context // Run's; ends in-flight syncs when Run returns
	running *round
	next    *round
	synced  bool // a sync has run: Run need not start with one
	// inflight counts running rounds goroutines, which Run waits for.
	inflight sync.WaitGroup
	cluster  clusterRole
}

// round is one sync and everyone waiting for it.
type round struct {
	done    chan struct{}
	res     Result
	err     error
	waiters int // callers of Sync waiting for it
}

// New checks cfg and returns a Syncer. It touches neither the network nor
// the disk.
func New(cfg Config) (*Syncer, error) {
	if cfg.Load == nil {
		return nil, errors.New("gitsync: no Load func")
	}
	if cfg.Dir == "" {
		return nil, errors.New("gitsync: no state directory")
	}
	r, err := parseRemote(cfg.URL)
	if err != nil {
		return nil, err
	}
	if err := r.checkCredentials(cfg); err != nil {
		return nil, err
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("remote", r.url)
	if r.cleartextToken(cfg) {
		log.Warn("--profiles-git-token-file is sent over plain http; use https")
	}
	return &Syncer{cfg: cfg, log: log, remote: r, rejected: map[string]error{}, life: context.Background()}, nil
}

// Remote is the repository URL without credentials, for logs and status.
func (s *Syncer) Remote() string { return s.remote.url }

// Ref is the ref as configured; "" follows the remote's HEAD.
func (s *Syncer) Ref() string { return s.cfg.Ref }

// Live returns the live commit, or nil before one loaded.
func (s *Syncer) Live() *Revision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return clone(s.live)
}

func clone(r *Revision) *Revision {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// Run syncs now (unless a sync already ran, such as the first one at
// start) and then every Interval until ctx ends; Sync adds syncs on demand.
// A failed sync is logged and retried at the next tick.
//
// With Config.Cluster, Run campaigns to lead: the leader runs that loop and
// publishes each commit it makes live; meanwhile, and whenever another
// instance leads, Run loads each commit the leader publishes.
//
// Run returns only once no round is running: a round that loaded a commit
// also records it for Restore, and a daemon that stopped between the two
// would restart on the commit before.
func (s *Syncer) Run(ctx context.Context) error {
	defer s.inflight.Wait()
	if s.cfg.Cluster != nil {
		return s.runCluster(ctx)
	}
	return s.loop(ctx)
}

// loop syncs now unless a sync ran, then every Interval until ctx ends.
func (s *Syncer) loop(ctx context.Context) error {
	s.mu.Lock()
	s.life = ctx
	synced := s.synced
	s.mu.Unlock()
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	if !synced {
		_, _ = s.Sync(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_, _ = s.Sync(ctx)
	}
}

// Sync fetches the ref and loads its commit if it is new, and returns what
// happened. Concurrent calls coalesce: while a sync runs, callers wait for
// the next one, which starts when it ends and which they all share, so a
// webhook burst costs at most two fetches and each caller sees a fetch that
// began after its call. The error is Result.Err for a failed or rejected
// sync, or ctx's if the caller gave up waiting (the sync goes on).
//
// With Config.Cluster, only the leader fetches the ref: another instance
// reads the published commit afresh and loads it if it is not live yet
// (see syncFollower).
func (s *Syncer) Sync(ctx context.Context) (Result, error) {
	if s.cfg.Cluster != nil && !s.leading() {
		return s.syncFollower(ctx)
	}
	s.mu.Lock()
	r := s.next
	switch {
	case s.running == nil:
		r = &round{done: make(chan struct{})}
		s.running = r
		s.inflight.Add(1)
		go func() {
			defer s.inflight.Done()
			s.rounds(r)
		}()
	case r == nil:
		r = &round{done: make(chan struct{})}
		s.next = r
	}
	r.waiters++
	s.mu.Unlock()
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// rounds runs r, then whichever round queued up meanwhile, until none did.
func (s *Syncer) rounds(r *round) {
	for r != nil {
		s.mu.Lock()
		life := s.life
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(life, s.cfg.Timeout)
		r.res, r.err = s.sync(ctx, nil)
		cancel()
		close(r.done)
		s.mu.Lock()
		s.synced = true
		r, s.next = s.next, nil
		s.running = r
		s.mu.Unlock()
	}
}

// sync is one round: fetch, compare, export, load, tidy up. It follows
// the ref, or with pub the published commit of a Cluster's leader.
func (s *Syncer) sync(ctx context.Context, pub *Published) (Result, error) {
	s.work.Lock()
	defer s.work.Unlock()
	res := Result{Time: time.Now()}
	s.attempt(ctx, &res, pub)
	res.Duration = time.Since(res.Time)
	res.Live = s.Live()
	if pub == nil {
		s.share(ctx, res)
	}
	return s.finish(res)
}

// finish reports res, in the log and to OnSync, and returns it.
func (s *Syncer) finish(res Result) (Result, error) {
	res.Role = s.role()
	s.report(res)
	if s.cfg.OnSync != nil {
		s.cfg.OnSync(res)
	}
	if res.Outcome == Failed || res.Outcome == Rejected {
		return res, res.Err
	}
	return res, nil
}

func (s *Syncer) attempt(ctx context.Context, res *Result, pub *Published) {
	fail := func(err error) {
		res.Outcome, res.Err = Failed, err
	}
	want := s.cfg.Ref
	if pub != nil {
		want = pub.Commit
	}
	commit, ref, err := s.fetch(ctx, want)
	if err != nil {
		fail(err)
		if pub != nil {
			s.fetchFailed(res, pub)
		}
		return
	}
	if pub != nil {
		ref = pub.Ref // what the leader follows, not the hash
	}
	rev := revisionOf(commit, ref)
	res.Fetched = &rev
	if live := s.Live(); live != nil && live.Commit == rev.Commit {
		res.Outcome = Unchanged
		return
	}
	if err, ok := s.rejected[rev.Commit]; ok {
		res.Outcome, res.Err = Rejected, err
		return
	}
	if pub == nil && !s.followsRef() {
		// The term ended during the fetch: a follower serves only what the
		// leader published.
		fail(errors.New("no longer leading the profiles sync: not loading the ref's commit, which is not published"))
		return
	}
	dir, err := s.export(commit)
	if err != nil {
		fail(err)
		return
	}
	s.newest = rev.Commit
	res.Tried = true
	if err := s.cfg.Load(dir, rev); err != nil {
		if len(s.rejected) >= maxRejected {
			clear(s.rejected)
		}
		s.rejected[rev.Commit] = err
		res.Outcome, res.Err = Rejected, err
		s.prune()
		return
	}
	s.setLive(rev)
	res.Outcome = Updated
}

// setLive records rev as live, in memory and on disk for Restore, and
// removes the trees no longer needed.
func (s *Syncer) setLive(rev Revision) {
	s.mu.Lock()
	s.live = &rev
	s.mu.Unlock()
	if err := writeLive(s.cfg.Dir, s.remote.url, rev); err != nil {
		s.log.Warn("record the live profiles commit; a restart without the remote will not find it", "commit", rev.Short, "error", err)
	}
	s.prune()
}

// report logs a sync: changes at info, rejections once, failures at every
// try, nothing new at debug.
func (s *Syncer) report(res Result) {
	ref := s.cfg.Ref
	if ref == "" {
		ref = "HEAD"
	}
	attrs := []any{"ref", ref, "duration", res.Duration.Round(time.Millisecond)}
	if res.Fetched != nil {
		attrs = append(attrs, "commit", res.Fetched.Short, "subject", res.Fetched.Subject)
	}
	if res.Live != nil {
		attrs = append(attrs, "live", res.Live.Short)
	}
	switch {
	case res.Outcome == Updated:
		s.log.Info("profiles commit live", append(attrs, "author", res.Fetched.Author)...)
	case res.Outcome == Rejected && res.Tried:
		s.log.Error("profiles commit rejected; the live set keeps serving and the commit is not retried", append(attrs, "error", res.Err)...)
	case res.Outcome == Failed:
		s.log.Warn("profiles sync failed; the live set keeps serving", append(attrs, "error", res.Err)...)
	default:
		s.log.Debug("profiles sync: nothing new", append(attrs, "result", string(res.Outcome))...)
	}
}

// Restore loads the tree that was live when the daemon last ran, if Dir
// holds one from the same repository URL, so that a restart serves it without
// reaching the remote. It returns nil, nil when there is none. Call it
// before Sync and Run.
func (s *Syncer) Restore() (*Revision, error) {
	s.work.Lock()
	defer s.work.Unlock()
	rev, err := readLive(s.cfg.Dir, s.remote.url)
	if err != nil || rev == nil {
		return nil, err
	}
	dir := s.treeDir(rev.Commit)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("last live profiles tree: %w", err)
	}
	if err := s.cfg.Load(dir, *rev); err != nil {
		return nil, fmt.Errorf("last live profiles commit %s: %w", rev.Short, err)
	}
	s.mu.Lock()
	s.live = rev
	s.mu.Unlock()
	s.prune()
	return clone(rev), nil
}

func (s *Syncer) treesDir() string { return filepath.Join(s.cfg.Dir, "trees") }

func (s *Syncer) treeDir(commit string) string { return filepath.Join(s.treesDir(), commit) }
