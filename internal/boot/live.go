package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Live is the live profile set: it loads a directory, or a Git commit's tree
// (revision.go), and swaps the set in whole only if it validates, so the
// last good set keeps serving. It keeps the outcome of the latest reload and
// of the latest Git sync. Its zero value is not usable; call NewLive.
type Live struct {
	dir       string // what Reload loads: --profiles, or the live Git tree
	base      string
	log       *slog.Logger
	obs       Observer
	store     store.Store // the event log of Git syncs
	cache     *profiles.Cache
	cacheFile string
	wipe      string // the wipe profile's name; "" when wiping is off
	check     func(*profiles.Set) (problems, warnings profiles.Problems)
	set       atomic.Pointer[profiles.Set]
	status    atomic.Pointer[ReloadStatus]
	sync      atomic.Pointer[SyncStatus]
	mu        sync.Mutex // serialises reloads, and guards dir
	reloading atomic.Pointer[context.CancelCauseFunc]
}

// ReloadStatus is the outcome of the latest profile load.
type ReloadStatus struct {
	Time     time.Time
	Duration time.Duration
	Err      error // nil on success; profiles.Problems when validation failed
	// Live is the Git commit of the live set; nil when it came from a plain
	// directory (--profiles) or nothing is live yet.
	Live *Revision
	// Rejected is the last commit that failed to load since the start, kept
	// after a later commit went live; nil if none.
	Rejected *Rejection
}

// NewLive returns a Live with no profiles loaded; call Reload. It uses cfg's
// ProfilesDir, AdvertiseURL, Store, CacheFile, WipeProfile, Check, Observer
// and Logger.
func NewLive(cfg Config) *Live {
	l := &Live{
		dir:       cfg.ProfilesDir,
		base:      strings.TrimRight(cfg.AdvertiseURL, "/"),
		log:       cfg.logger(),
		obs:       cfg.observer(),
		store:     cfg.Store,
		cache:     profiles.NewCache(),
		cacheFile: cfg.CacheFile,
		wipe:      cfg.WipeProfile,
		check:     cfg.Check,
	}
	if l.cacheFile != "" {
		if err := l.cache.LoadFile(l.cacheFile); err != nil {
			l.log.Warn("translation cache unusable; translating everything", "error", err)
		}
	}
	return l
}

// loadHeap is the heap a profile load may grow to before the collector runs.
const loadHeap = 256 << 20

// loadGC switches the collector to a fixed heap ceiling for the duration of a
// load and returns the function that restores it. Butane translation allocates
// ~1 MiB of short-lived compressor state per machine; at the default GOGC a
// 10,000-machine load spends most of its time collecting it, while a ceiling
// collects rarely and bounds the peak. An operator's lower GOMEMLIMIT wins.
// Afterwards the garbage is handed back to the OS at once.
func loadGC() (restore func()) {
	limit := debug.SetMemoryLimit(-1)
	percent := debug.SetGCPercent(-1)
	debug.SetMemoryLimit(min(limit, loadHeap))
	return func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(percent)
		debug.FreeOSMemory()
	}
}

// errSuperseded is why a reload is cancelled when a newer one starts.
var errSuperseded = errors.New("superseded by a newer reload")

// Reload loads the profiles directory and, only if it validates, swaps it in
// whole. A failed reload leaves the last good set serving.
func (l *Live) Reload() error { return l.ReloadContext(context.Background()) }

// ReloadContext is Reload, given up when ctx ends or a newer ReloadContext
// starts: the tree it was loading is outdated by then, and a load busy with a
// slow template must not hold up the next. A cancelled reload changes nothing.
func (l *Live) ReloadContext(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if prev := l.reloading.Swap(&cancel); prev != nil {
		(*prev)(errSuperseded)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.load(ctx, l.dir, nil)
}

// load loads dir, the tree of rev (nil: a plain directory), and swaps it in
// if it validates. l.mu is held.
func (l *Live) load(ctx context.Context, dir string, rev *Revision) error {
	defer loadGC()()
	start := time.Now()
	log := l.log.With("dir", dir)
	if rev != nil {
		log = log.With("commit", rev.Short)
	}
	set, err := profiles.Load(dir, profiles.LoadOptions{Context: ctx, Cache: l.cache, BaseURL: l.base})
	failed, cancelled := "profiles reload failed; last good set keeps serving", "profiles reload cancelled; last good set keeps serving"
	if l.set.Load() == nil { // the first load: there is no good set yet
		failed, cancelled = "profiles failed to load; nothing to serve", "profiles load cancelled; nothing to serve"
	}
	if err != nil && ctx.Err() != nil {
		// No verdict on the profiles: nothing to record or count.
		log.Info(cancelled, "cause", context.Cause(ctx), "duration", time.Since(start))
		return err
	}
	if err == nil && l.wipe != "" && set.Profiles[l.wipe] == nil {
		err = fmt.Errorf("--wipe-profile %q: no Profile of that name in %s", l.wipe, dir)
	}
	if err == nil && l.check != nil {
		// The set is not shared yet: its warnings may still grow.
		probs, warns := l.check(set)
		set.Warnings = append(set.Warnings, warns...)
		if len(probs) > 0 {
			err = probs
		}
	}
	st := &ReloadStatus{Time: time.Now(), Duration: time.Since(start), Err: err}
	if prev := l.status.Load(); prev != nil {
		st.Live, st.Rejected = prev.Live, prev.Rejected
	}
	if err != nil {
		var probs profiles.Problems
		if errors.As(err, &probs) {
			for _, p := range probs {
				log.Error("profile problem", "file", p.File, "line", p.Line, "msg", p.Msg, "at", p.String())
			}
		}
		log.Error(failed, "error_count", countProblems(err), "duration", st.Duration)
		if rev != nil {
			st.Rejected = &Rejection{Revision: *rev, Time: st.Time, Err: err}
		}
		l.status.Store(st)
		l.obs.Reloaded(st.Time, err)
		return err
	}
	if rev != nil {
		live := *rev
		st.Live = &live
	} else if dir != l.dir {
		st.Live = nil // reloading the live tree itself keeps its commit
	}
	l.dir = dir
	l.set.Store(set)
	l.status.Store(st)
	l.obs.Reloaded(st.Time, nil)
	if rev != nil {
		l.obs.LiveCommit(rev.Short)
	}
	if l.cacheFile != "" {
		if err := l.cache.SaveFile(l.cacheFile); err != nil {
			log.Warn("persist translation cache", "error", err)
		}
	}
	for _, w := range set.Warnings {
		log.Warn("profile warning", "file", w.File, "line", w.Line, "msg", w.Msg, "at", w.String())
	}
	log.Info("profiles loaded", "profiles", len(set.Profiles), "machines", len(set.Machines), "warnings", len(set.Warnings), "duration", st.Duration)
	return nil
}

func countProblems(err error) int {
	var probs profiles.Problems
	if errors.As(err, &probs) {
		return len(probs)
	}
	return 1
}

// Status returns the latest reload's outcome, or nil before the first.
func (l *Live) Status() *ReloadStatus { return l.status.Load() }

// Profiles returns the live set, or nil before the first successful load.
func (l *Live) Profiles() *profiles.Set { return l.set.Load() }

// Match finds what r matches in the live set.
func (l *Live) Match(r Request) (profiles.Result, *profiles.Set, error) {
	if r.MAC == "" && r.UUID == "" {
		return profiles.Result{}, nil, ErrNoIdentity
	}
	set := l.set.Load()
	if set == nil {
		return profiles.Result{}, nil, ErrNotLoaded
	}
	res, err := set.Match(r.query())
	if errors.Is(err, profiles.ErrNoMatch) {
		return res, set, ErrUnknownMachine
	}
	return res, set, err
}

// wipeProfile is the live set's wipe profile, or nil.
func (l *Live) wipeProfile() *profiles.Profile {
	set := l.set.Load()
	if l.wipe == "" || set == nil {
		return nil
	}
	return set.Profiles[l.wipe]
}

// WipeProfile names the live wipe profile; "" when wiping is off.
func (l *Live) WipeProfile() string {
	if p := l.wipeProfile(); p != nil {
		return p.Name
	}
	return ""
}
