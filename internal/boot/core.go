// Package boot is the policy core every protocol asks: given a machine's identity,
// what does it get now — a network boot or not, which iPXE script, which config.
// It owns the live profile Set and swaps it atomically on reload; protocol servers
// stay ignorant of profiles and state.
package boot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/ipxe"
	"github.com/provisiond/provisiond/internal/keylock"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Sentinels the protocol servers map to their own answers.
var (
	// ErrNoIdentity: the request names neither a usable MAC nor a UUID.
	ErrNoIdentity = errors.New("request names no usable mac or uuid")
	// ErrUnknownMachine: no Machine matches and there is no Default.
	ErrUnknownMachine = errors.New("unknown machine: no Machine matches it and there is no Default")
	// ErrNoConfig: the machine's profile serves no config of the kind asked for.
	ErrNoConfig = errors.New("the machine's profile has no config of this kind")
	// ErrNotLoaded: no profile set has loaded successfully yet.
	ErrNotLoaded = errors.New("no valid profiles loaded")
	// ErrNotFound: no machine in the inventory has this id.
	ErrNotFound = errors.New("no such machine")
	// ErrAmbiguous: a Machine name that several inventoried machines share.
	ErrAmbiguous = errors.New("ambiguous machine name")
	// ErrState: the machine's lifecycle state does not allow the operation.
	ErrState = errors.New("not allowed in this state")
	// ErrUnauthorized: a phone-home without this machine's current session token.
	ErrUnauthorized = errors.New("unauthorized")
)

// RefusedError is a script or config request that failed a secrecy check (HTTP 403).
type RefusedError struct {
	What   string // "script" or "config"
	Reason string // one of the Reason constants
}

func (e *RefusedError) Error() string { return e.What + " refused: " + e.Reason }

// Request identifies a machine asking for something. MAC and UUID are canonical
// (package ident); at least one must be set.
type Request struct {
	MAC    string
	UUID   string
	Arch   string            // e.g. x86_64, arm64, or a DHCP client arch such as efi-x86_64
	IP     string            // the requester's address, when known
	Labels map[string]string // extra selectors, e.g. from the query string
	Token  string            // the session token a config request presents
}

func (r Request) query() profiles.Query {
	return profiles.Query{MAC: r.MAC, UUID: r.UUID, Labels: r.Labels}
}

// Neighbors tells which MAC the kernel's neighbour table holds for an on-link
// requester, and which requesters are this host; internal/neigh implements it.
type Neighbors interface {
	// Lookup returns onLink false for routed, loopback and local addresses;
	// on-link with no usable entry is an error wrapping neigh.ErrNoEntry.
	Lookup(ip netip.Addr) (mac string, onLink bool, err error)
	// Local reports loopback and this host's own addresses.
	Local(ip netip.Addr) bool
}

// Config configures a Core.
type Config struct {
	// ProfilesDir is what Reload loads; "" when LoadRevision supplies the
	// trees (--profiles-git).
	ProfilesDir  string
	AdvertiseURL string      // base URL machines reach the HTTP server at, no trailing slash
	Store        store.Store // inventory, sessions and events; required
	// Neighbors identifies requesters (see verify.go); nil takes requests
	// at their word, for tests only.
	Neighbors Neighbors
	Policy    Policy // relaxations of the config secrecy checks
	// BindingTTL is how long a DHCP binding identifies a routed requester;
	// 0: DefaultBindingTTL.
	BindingTTL time.Duration
	// MaxDiscovered caps the machines kept that only were discovered, the
	// oldest pruned first; 0: DefaultMaxDiscovered.
	MaxDiscovered int
	// CacheFile persists rendered configs between runs so a restart does not
	// translate every machine's Butane again; "" keeps them in memory only.
	CacheFile string
	// BMC drives machines' BMCs; nil: power control is unavailable.
	BMC bmc.Controller
	// Secrets seals BMC credentials set through the API; nil: they cannot be set.
	Secrets Sealer
	// WipeProfile names the Profile a wiped machine boots; "" disables wipe.
	WipeProfile string
	// Locks serialises BMC operations per machine across instances sharing
	// the store; nil: an in-process lock per machine (one instance).
	Locks Locker
	// Observer is told of reloads, BMC operations and refusals, for metrics; nil: none.
	Observer Observer
	Logger   *slog.Logger // nil: discard
}

// Core is the policy core. Its zero value is not usable; call New.
type Core struct {
	dir       string // what Reload loads: --profiles, or the live Git tree
	base      string
	log       *slog.Logger
	cache     *profiles.Cache
	set       atomic.Pointer[profiles.Set]
	status    atomic.Pointer[ReloadStatus]
	sync      atomic.Pointer[SyncStatus]
	mu        sync.Mutex // serialises reloads, and guards dir
	reloading atomic.Pointer[context.CancelCauseFunc]
	store     store.Store
	seen      *sightings
	neighbors Neighbors
	refusals  *refusals
	obs       Observer
	policy    Policy
	// bindingTTL and maxDiscovered: Config's, defaults filled in.
	bindingTTL    time.Duration
	maxDiscovered int
	cacheFile     string
	bmc           bmc.Controller
	secrets       Sealer
	wipe          string
	locks         Locker
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

// New returns a Core with no profiles loaded; call Reload.
func New(cfg Config) *Core {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Core{
		dir:           cfg.ProfilesDir,
		base:          strings.TrimRight(cfg.AdvertiseURL, "/"),
		log:           log,
		cache:         profiles.NewCache(),
		store:         cfg.Store,
		seen:          newSightings(cfg.Store),
		neighbors:     cfg.Neighbors,
		refusals:      newRefusals(),
		obs:           cfg.Observer,
		policy:        cfg.Policy,
		bindingTTL:    cmp.Or(cfg.BindingTTL, DefaultBindingTTL),
		maxDiscovered: cmp.Or(cfg.MaxDiscovered, DefaultMaxDiscovered),
		cacheFile:     cfg.CacheFile,
		bmc:           cfg.BMC,
		secrets:       cfg.Secrets,
		wipe:          cfg.WipeProfile,
		locks:         cfg.Locks,
	}
	if c.locks == nil {
		c.locks = keylock.New() // all a single instance needs
	}
	if c.bmc == nil {
		c.bmc = noBMC{}
	}
	if c.obs == nil {
		c.obs = noObserver{}
	}
	if c.cacheFile != "" {
		if err := c.cache.LoadFile(c.cacheFile); err != nil {
			log.Warn("translation cache unusable; translating everything", "error", err)
		}
	}
	return c
}

// Run records queued sightings and bindings in the store, flushes refusal
// counts and prunes what unauthenticated clients can grow, until ctx ends.
func (c *Core) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { c.seen.run(ctx, c.log.Warn) })
	wg.Go(func() { c.runRefusals(ctx) })
	wg.Go(func() { c.runPrune(ctx) })
	wg.Wait()
	return nil
}

// errSuperseded is why a reload is cancelled when a newer one starts.
var errSuperseded = errors.New("superseded by a newer reload")

// Reload loads the profiles directory and, only if it validates, swaps it in
// whole. A failed reload leaves the last good set serving.
func (c *Core) Reload() error { return c.ReloadContext(context.Background()) }

// ReloadContext is Reload, given up when ctx ends or a newer ReloadContext
// starts: the tree it was loading is outdated by then, and a load busy with a
// slow template must not hold up the next. A cancelled reload changes nothing.
func (c *Core) ReloadContext(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if prev := c.reloading.Swap(&cancel); prev != nil {
		(*prev)(errSuperseded)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.load(ctx, c.dir, nil)
}

// load loads dir, the tree of rev (nil: a plain directory), and swaps it in
// if it validates. c.mu is held.
func (c *Core) load(ctx context.Context, dir string, rev *Revision) error {
	defer loadGC()()
	start := time.Now()
	log := c.log.With("dir", dir)
	if rev != nil {
		log = log.With("commit", rev.Short)
	}
	set, err := profiles.Load(dir, profiles.LoadOptions{Context: ctx, Cache: c.cache, BaseURL: c.base})
	failed, cancelled := "profiles reload failed; last good set keeps serving", "profiles reload cancelled; last good set keeps serving"
	if c.set.Load() == nil { // the first load: there is no good set yet
		failed, cancelled = "profiles failed to load; nothing to serve", "profiles load cancelled; nothing to serve"
	}
	if err != nil && ctx.Err() != nil {
		// No verdict on the profiles: nothing to record or count.
		log.Info(cancelled, "cause", context.Cause(ctx), "duration", time.Since(start))
		return err
	}
	if err == nil && c.wipe != "" && set.Profiles[c.wipe] == nil {
		err = fmt.Errorf("--wipe-profile %q: no Profile of that name in %s", c.wipe, dir)
	}
	st := &ReloadStatus{Time: time.Now(), Duration: time.Since(start), Err: err}
	if prev := c.status.Load(); prev != nil {
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
		c.status.Store(st)
		c.obs.Reloaded(st.Time, err)
		return err
	}
	if rev != nil {
		live := *rev
		st.Live = &live
	} else if dir != c.dir {
		st.Live = nil // reloading the live tree itself keeps its commit
	}
	c.dir = dir
	c.set.Store(set)
	c.status.Store(st)
	c.obs.Reloaded(st.Time, nil)
	if rev != nil {
		c.obs.LiveCommit(rev.Short)
	}
	if c.cacheFile != "" {
		if err := c.cache.SaveFile(c.cacheFile); err != nil {
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
func (c *Core) Status() *ReloadStatus { return c.status.Load() }

// Profiles returns the live set, or nil before the first successful load.
func (c *Core) Profiles() *profiles.Set { return c.set.Load() }

// Match finds what r matches in the live set.
func (c *Core) Match(r Request) (profiles.Result, *profiles.Set, error) {
	if r.MAC == "" && r.UUID == "" {
		return profiles.Result{}, nil, ErrNoIdentity
	}
	set := c.set.Load()
	if set == nil {
		return profiles.Result{}, nil, ErrNotLoaded
	}
	res, err := set.Match(r.query())
	if errors.Is(err, profiles.ErrNoMatch) {
		return res, set, ErrUnknownMachine
	}
	return res, set, err
}

// PXEAnswer is the core's answer to a proxyDHCP request.
type PXEAnswer struct {
	Boot    bool   // offer a network boot; false: stay silent
	Machine string // the Machine matched, "" if none: the offer's log line names it
}

// BootPXE tells the proxyDHCP whether to offer a network boot: only machines that
// have a profile, so provisiond stays silent towards machines another server owns.
// A DHCP packet carries no labels, so while labels-only Machines exist an
// unmatched machine is booted too: its iPXE request may present their labels.
func (c *Core) BootPXE(ctx context.Context, r Request) (PXEAnswer, error) {
	res, set, err := c.Sighted(ctx, r)
	switch {
	case err == nil:
		a := PXEAnswer{Boot: true}
		if res.Machine != nil {
			a.Machine = res.Machine.Name
		}
		return a, nil
	case errors.Is(err, ErrUnknownMachine):
		return PXEAnswer{Boot: set.HasLabelled()}, nil
	case errors.Is(err, ErrNotLoaded):
		return PXEAnswer{}, nil
	default:
		return PXEAnswer{}, err
	}
}

// Script returns the iPXE script machine r boots now, and records the visit
// before answering: a machine with a profile gets a new provisioning session
// whose token the script's config URL carries, or, if it is an installed
// machine on a boot-once profile, the script that boots its disk.
func (c *Core) Script(ctx context.Context, r Request) (string, error) {
	// Checked before anything is recorded: another host must not even
	// rewrite what the inventory says about a machine.
	r, err := c.authenticate(ctx, r, "script")
	if err != nil {
		return "", err
	}
	res, _, err := c.Match(r)
	if errors.Is(err, ErrNoIdentity) || errors.Is(err, ErrNotLoaded) {
		return "", err
	}
	if err != nil {
		m, _, serr := c.record(ctx, r, res, sighted)
		if serr != nil {
			return "", serr
		}
		c.log.Info("script refused: no profile for this machine", append(machineAttrs(known(r, m), res), "error", err)...)
		return "", err
	}
	token := newToken()
	var plan bootPlan
	m, _, err := c.record(ctx, r, res, planBoot(res, c.wipeProfile(), hashToken(token), time.Now().UTC(), &plan))
	if err != nil {
		return "", err
	}
	log := c.log.With(machineAttrs(known(r, m), res)...)
	if plan.local {
		log.Info("script: boot from disk", "state", m.State)
	} else {
		log.Info("script: boot profile", "state", m.State, "boots", plan.profile.Name)
	}
	return c.scriptFor(res, plan, r, token), nil
}

// record writes a sighting of r and applies fn in the same transaction.
func (c *Core) record(ctx context.Context, r Request, res profiles.Result, fn store.Change) (store.Machine, store.Provisioning, error) {
	if r.MAC == "" {
		// The store keys machines by MAC: a UUID-only request can only update a
		// machine already seen with its MAC.
		m, p, err := c.store.Update(ctx, r.UUID, fn)
		if errors.Is(err, store.ErrNotFound) {
			return m, p, fmt.Errorf("%w: the uuid is not in the inventory yet, so the request needs a mac", ErrNoIdentity)
		}
		return m, p, err
	}
	return c.store.Seen(ctx, c.sightingOf(r, res), fn)
}

// sightingOf is what a request tells the inventory about its machine.
func (c *Core) sightingOf(r Request, res profiles.Result) store.Machine {
	m := store.Machine{MAC: r.MAC, UUID: r.UUID, Arch: r.Arch, LastIP: r.IP}
	if res.Profile != nil {
		m.Profile = res.Profile.Name
	}
	if res.Machine != nil {
		m.Name = res.Machine.Name
		m.Labels = res.Machine.AllLabels()
	}
	return m
}

// machineAttrs are the log fields that let an operator grep one machine's
// boot: mac, uuid and machine on every line, "" where unknown.
func machineAttrs(r Request, res profiles.Result) []any {
	name := ""
	if res.Machine != nil {
		name = res.Machine.Name
	}
	attrs := Identity{MAC: r.MAC, UUID: r.UUID, Machine: name}.Attrs()
	if res.Profile != nil {
		attrs = append(attrs, "profile", res.Profile.Name)
	}
	return attrs
}

// known fills in, for log lines, the identities a request left out from its
// stored machine: a request naming only a UUID still logs the MAC.
func known(r Request, m store.Machine) Request {
	r.MAC, r.UUID = cmp.Or(r.MAC, m.MAC), cmp.Or(r.UUID, m.UUID)
	return r
}

// Explain renders the decision for r for humans: why it matched and its script.
func (c *Core) Explain(r Request) (profiles.Result, string, error) {
	res, _, err := c.Match(r)
	if err != nil {
		return res, "", err
	}
	return res, ipxe.BootScript(c.bootFor(res, r, "TOKEN")), nil
}

// bootFor assembles kernel, initrds and args, adding the config URL the
// profile's config kind calls for, with the session token.
func (c *Core) bootFor(res profiles.Result, r Request, token string) ipxe.Boot {
	p := res.Profile
	b := ipxe.Boot{
		Comment: describe(res),
		Kernel:  c.assetURL(p.Boot.Kernel),
		Args:    append([]string(nil), p.Boot.Args...),
	}
	for _, i := range p.Boot.Initrd {
		b.Initrds = append(b.Initrds, c.assetURL(i))
	}
	switch kind, _ := p.Config.Source(); kind {
	case profiles.ConfigButane, profiles.ConfigIgnition:
		b.ConfigURL = c.configURL("/ignition", r, token)
		b.Args = append(b.Args, "ignition.config.url="+b.ConfigURL)
	case profiles.ConfigTalos:
		b.ConfigURL = c.configURL("/config", r, token)
		b.Args = append(b.Args, "talos.config="+b.ConfigURL)
	case profiles.ConfigTemplate:
		b.ConfigURL = c.configURL("/config", r, token) // the profile's args name it as ${config-url}
	}
	return b
}

// Chained records a /boot.ipxe request that names its machine, once the
// requester is proven to be that machine (see verify.go); a refusal is the
// answer. The script itself is the same for everyone.
func (c *Core) Chained(ctx context.Context, r Request) error {
	r, err := c.authenticate(ctx, r, "script")
	if err != nil {
		return err
	}
	_, _, _ = c.Sighted(ctx, r) // who asks matters, not what matches
	return nil
}

// Sighted matches r and queues a record of it that nothing waits for: DHCP and
// /boot.ipxe must answer at once, and the machine's /ipxe request records it
// synchronously anyway. r must be what was observed (DHCP) or verified.
func (c *Core) Sighted(ctx context.Context, r Request) (profiles.Result, *profiles.Set, error) {
	res, set, err := c.Match(r)
	if !errors.Is(err, ErrNoIdentity) && !errors.Is(err, ErrNotLoaded) {
		c.seen.record(ctx, c.sightingOf(r, res))
	}
	return res, set, err
}

func describe(res profiles.Result) string {
	if res.Machine != nil {
		return "machine " + res.Machine.Name + ", profile " + res.Profile.Name
	}
	return "no machine matches, Default profile " + res.Profile.Name
}

// assetURL turns a profile's boot reference into a URL the machine can fetch.
func (c *Core) assetURL(ref string) string {
	if strings.HasPrefix(ref, profiles.AssetPrefix) {
		return c.base + ref
	}
	return ref
}

// configURL names the machine by its own identities, so the config server can
// match it exactly as the script server did.
func (c *Core) configURL(path string, r Request, token string) string {
	q := url.Values{}
	if r.MAC != "" {
		q.Set("mac", strings.ReplaceAll(r.MAC, ":", "-"))
	}
	if r.UUID != "" {
		q.Set("uuid", r.UUID)
	}
	q.Set("token", token)
	return c.base + path + "?" + q.Encode()
}

// Config returns the config body of the machine r. ignition selects /ignition
// (Butane and Ignition profiles) versus /config (Talos and generic templates).
// Configs may hold secrets, so r must come from the machine itself, during
// the session its /ipxe script opened, with that session's token, and by
// default only once; see Policy.
func (c *Core) Config(ctx context.Context, r Request, ignition bool) (*profiles.Rendered, []byte, error) {
	r, err := c.authenticate(ctx, r, "config")
	if err != nil {
		return nil, nil, err
	}
	r.Labels = nil // anyone can send labels: they never select a config
	res, set, err := c.Match(r)
	if err != nil {
		return nil, nil, err
	}
	key := cmp.Or(r.MAC, r.UUID)
	// One read of the machine and its session serves both the choice of
	// profile and, below, the first judgement of the token. An unknown
	// machine has no session: it is refused below.
	stored, err := c.store.Machine(ctx, key)
	inInventory := err == nil
	var session store.Provisioning
	switch {
	case inInventory:
		if session, err = c.store.Provisioning(ctx, key); err != nil {
			return nil, nil, err
		}
		// The config of the profile the session's script booted, by the
		// decision /ipxe made: a machine being wiped booted the wipe profile.
		if plan := c.peek(stored, session, res); !plan.local {
			res.Profile = plan.profile
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, nil, err
	}
	kind, _ := res.Profile.Config.Source()
	if kind == profiles.ConfigNone || kind.Ignition() != ignition {
		return nil, nil, fmt.Errorf("profile %s: %w", res.Profile.Name, ErrNoConfig)
	}
	out, err := set.Config(res, r.query())
	if err != nil {
		return nil, nil, fmt.Errorf("render config for profile %s: %w", res.Profile.Name, err)
	}
	if out == nil {
		return nil, nil, fmt.Errorf("profile %s: %w", res.Profile.Name, ErrNoConfig)
	}
	// Judged on a read first, so that a storm of bad tokens costs no writes;
	// then again in the transaction, which a concurrent fetch may have beaten.
	refused := ReasonNoSession
	if inInventory {
		refused = admit(session, r.Token, c.policy)
	}
	var m store.Machine
	if refused == "" {
		m, _, err = c.store.Update(ctx, key, admitConfig(r.Token, c.policy, time.Now().UTC(), &refused))
		if errors.Is(err, store.ErrNotFound) {
			refused = ReasonNoSession
		} else if err != nil {
			return nil, nil, err
		}
	}
	if refused != "" {
		return nil, nil, c.refuse(ctx, r, &RefusedError{What: "config", Reason: refused})
	}
	c.log.Info("config served", append(machineAttrs(known(r, m), res), "kind", string(kind), "ip", r.IP)...)
	return out, out.For(strings.ReplaceAll(m.MAC, ":", "-"), r.Token), nil
}
