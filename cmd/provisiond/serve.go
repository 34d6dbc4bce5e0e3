package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/gitsync"
	"github.com/provisiond/provisiond/internal/grub"
	"github.com/provisiond/provisiond/internal/grubfiles"
	"github.com/provisiond/provisiond/internal/ipxe"
	"github.com/provisiond/provisiond/internal/leases"
	"github.com/provisiond/provisiond/internal/metrics"
	"github.com/provisiond/provisiond/internal/neigh"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/seal"
	"github.com/provisiond/provisiond/internal/server"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
	"github.com/provisiond/provisiond/internal/tftp"
	"github.com/provisiond/provisiond/internal/web"
)

// serveConfig is every serve flag, typed.
type serveConfig struct {
	ProfilesDir    string
	DataDir        string
	AssetsDir      string
	HTTPAddr       string
	AdvertiseURL   string
	DHCPInterface  string
	DHCPMode       dhcp.Mode
	ShimDir        string // "" when no profile boots through shim
	AgentDir       string // where the agent binaries of other architectures are; "": beside the executable
	TFTPAddr       string // "" when TFTP is off
	TFTPRoot       string
	IPXEDir        string
	ReloadDebounce time.Duration
	LogLevel       string
	LogFormat      string
	APITokenFile   string
	SecretKeyFile  string
	WipeProfile    string
	BMCTimeout     time.Duration
	BMCParallel    int
	Policy         boot.Policy
	TrustedProxies []netip.Prefix
	BindingTTL     time.Duration
	MaxDiscovered  int
	StallAfter     time.Duration
	Store          storeConfig

	// ProfilesGit and the rest follow a Git repository instead of ProfilesDir.
	ProfilesGit           string
	ProfilesGitRef        string
	ProfilesGitInterval   time.Duration
	ProfilesGitSSHKey     string
	ProfilesGitKnownHosts string
	ProfilesGitTokenFile  string

	// TFTPMaxTransfers and TFTPMaxPerClient cap the TFTP transfers in flight.
	TFTPMaxTransfers int
	TFTPMaxPerClient int
}

func serveCommand() *command {
	return &command{
		name:    "serve",
		summary: "run the daemon: the HTTP boot path, API and dashboard, and proxyDHCP and TFTP on --dhcp-interface",
		about: "Serves the profiles in --profiles (watched, reloaded on change) or in the Git\n" +
			"repository --profiles-git names (polled), keeping state, the generated API token\n" +
			"and the secret key in --data-dir. It stops on SIGINT or SIGTERM. Flags marked\n" +
			"RISK relax config secrecy; see the README before using one.",
		examples: []string{
			"provisiond serve --profiles ./profiles --data-dir ./data --http-addr :8080",
			"sudo provisiond serve --profiles /srv/profiles --data-dir /var/lib/provisiond --dhcp-interface eth0",
			"sudo provisiond serve --profiles /srv/profiles --data-dir /var/lib/provisiond --tftp-addr 10.99.0.2:69",
			"provisiond serve --profiles-git https://git.example.com/infra/profiles.git --profiles-git-token-file /etc/provisiond/git-token",
		},
		daemon: true,
		flags: func(fs *flagSet, c *cli) func([]string) error {
			cfg := declareServeFlags(fs)
			return func(pos []string) error {
				if err := cfg.finish(pos); err != nil {
					return err
				}
				return runServe(*cfg, c)
			}
		},
	}
}

// declareServeFlags declares serve's flags on fs, into the config returned.
func declareServeFlags(fs *flagSet) *serveConfig {
	c := &serveConfig{DHCPMode: dhcp.ModeProxy}
	fs.StringVar(&c.ProfilesDir, "profiles", "", "profiles directory `DIR` (a Git checkout), watched for changes; this or --profiles-git is required")
	fs.StringVar(&c.ProfilesGit, "profiles-git", "", "follow the profiles in the Git repository at `URL` (https://, ssh://, user@host:path, git://, file://) instead of --profiles; synced into <data-dir>/profiles-git")
	fs.StringVar(&c.ProfilesGitRef, "profiles-git-ref", "", "branch, tag or full commit hash `REF` to follow (default: the remote's HEAD branch)")
	fs.DurationVar(&c.ProfilesGitInterval, "profiles-git-interval", gitsync.DefaultInterval, "how often to poll the repository; POST /api/v1/profiles/sync syncs at once")
	fs.StringVar(&c.ProfilesGitSSHKey, "profiles-git-ssh-key", "", "private key `FILE` (no passphrase) for an ssh repository URL; read at every fetch")
	fs.StringVar(&c.ProfilesGitKnownHosts, "profiles-git-known-hosts", "", "known_hosts `FILE` with the ssh server's host key (default: $SSH_KNOWN_HOSTS, ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts)")
	fs.StringVar(&c.ProfilesGitTokenFile, "profiles-git-token-file", "", "`FILE` holding the token (password) for an https repository URL, sent as the URL's user or \"git\"; read at every fetch")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "`DIR` for the state database and generated secrets")
	fs.StringVar(&c.AssetsDir, "assets", "", "`DIR` served at /assets/ (default: <data-dir>/assets)")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":8080", "HTTP listen address `ADDR`: host:port or :port")
	fs.StringVar(&c.AdvertiseURL, "advertise-url", "", "base `URL` machines reach the HTTP server at (default: derived from --dhcp-interface or --http-addr)")
	fs.StringVar(&c.DHCPInterface, "dhcp-interface", "", "network interface `NAME` for proxyDHCP (UDP 67, 4011) and TFTP (UDP 69); empty disables them (TFTP stays with --tftp-addr)")
	fs.Func("dhcp-mode", "`MODE` of the DHCP server on --dhcp-interface: proxy (boot information only, beside the site's DHCP server) or authoritative (the network's only DHCP server: addresses from the profiles' kind: Network) (default proxy)", func(v string) error {
		c.DHCPMode = dhcp.Mode(v)
		return c.DHCPMode.Check()
	})
	fs.StringVar(&c.ShimDir, "shim-dir", "", "`DIR` holding your distribution's signed shimx64.efi and grubx64.efi, served over TFTP to UEFI machines whose profile boots with loader: shim (Secure Boot)")
	fs.StringVar(&c.TFTPAddr, "tftp-addr", "", "UDP `ADDR` (host:port or :port) of the TFTP server (default: --dhcp-interface's address, port 69); set without --dhcp-interface it serves TFTP alone, for a site DHCP server that names this host as next-server")
	fs.StringVar(&c.TFTPRoot, "tftp-root", "", "optional `DIR` of extra files served over TFTP")
	fs.IntVar(&c.TFTPMaxTransfers, "tftp-max-transfers", tftp.DefaultMaxTransfers, "`N` TFTP transfers served at once; more are refused \"server busy\"")
	fs.IntVar(&c.TFTPMaxPerClient, "tftp-max-per-client", tftp.DefaultMaxPerClient, "`N` TFTP transfers served at once to one client IP")
	fs.StringVar(&c.IPXEDir, "ipxe-dir", "", "optional `DIR` whose undionly.kpxe, ipxe.efi or snp.efi replace the embedded builds")
	fs.DurationVar(&c.ReloadDebounce, "reload-debounce", 500*time.Millisecond, "quiet time after a profiles change before reloading")
	fs.StringVar(&c.LogLevel, "log-level", "info", "`LEVEL` of the log: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "`FORMAT` of the log: text or json")
	fs.StringVar(&c.APITokenFile, "api-token-file", "", "`FILE` holding the /api/v1 bearer token (default: <data-dir>/api-token, generated on first start)")
	fs.StringVar(&c.SecretKeyFile, "secret-key-file", "", "`FILE` holding the key that seals BMC credentials set through the API (default: <data-dir>/secret-key, generated on first start; back it up apart from the database)")
	fs.StringVar(&c.WipeProfile, "wipe-profile", "", "the `PROFILE` that provisiond machines wipe boots; empty disables wipe")
	fs.DurationVar(&c.BMCTimeout, "bmc-timeout", 30*time.Second, "time limit of one BMC operation (login, calls, logout)")
	fs.IntVar(&c.BMCParallel, "bmc-parallel", 16, "`N` BMCs talked to at once")
	fs.BoolVar(&c.Policy.AllowConfigWithoutToken, "allow-config-without-token", false, "RISK: serve /ignition and /config without the session token, to anyone who names a booting machine's MAC")
	fs.BoolVar(&c.Policy.AllowConfigRefetch, "allow-config-refetch", false, "RISK: serve a config more than once per provisioning, so a leaked config URL works until the session ends")
	fs.BoolVar(&c.Policy.SkipNeighborCheck, "skip-neighbor-check", false, "RISK: do not check that an on-link requester's IP resolves to the MAC it claims")
	fs.BoolVar(&c.Policy.TrustLoopback, "trust-loopback", false, "RISK: treat requesters on this host (loopback, its own addresses) as the machine they name, so any local process gets any config; for trying provisiond on one host (make run)")
	fs.BoolVar(&c.Policy.AllowUnbound, "allow-unbound-routed", false, "RISK: serve a routed requester that no DHCP binding names as the machine it claims (when relays do not forward DHCP to provisiond)")
	fs.Func("trusted-proxy", "`CIDR[,CIDR...]` of reverse proxies whose X-Forwarded-For gives the requester's address", func(v string) error {
		ps, err := parsePrefixes(v)
		c.TrustedProxies = ps
		return err
	})
	fs.DurationVar(&c.BindingTTL, "binding-ttl", boot.DefaultBindingTTL, "how long an address DHCP showed a machine using identifies that machine's routed requests")
	fs.DurationVar(&c.StallAfter, "stall-after", boot.DefaultStallAfter, "a provisioning machine whose boot takes no new step for this long is marked stalled (event, API, provisiond_machines_stalled)")
	fs.IntVar(&c.MaxDiscovered, "max-discovered", boot.DefaultMaxDiscovered, "`N` machines kept that were only discovered (no Machine claims them); beyond it the oldest are pruned")
	declareAgentFlags(fs, &c.AgentDir)
	declareStoreFlags(fs, &c.Store)
	declareMemberFlags(fs, &c.Store)
	return c
}

// finish checks the flags and fills in the defaults that depend on others.
// It reads the host's interfaces but creates nothing.
func (c *serveConfig) finish(pos []string) error {
	if len(pos) > 0 {
		return usagef("serve takes no arguments, got %q", pos[0])
	}
	if err := checkProfilesFlags(*c); err != nil {
		return err
	}
	if c.AssetsDir == "" {
		c.AssetsDir = filepath.Join(c.DataDir, "assets")
	}
	if c.SecretKeyFile == "" {
		c.SecretKeyFile = filepath.Join(c.DataDir, "secret-key")
	}
	switch {
	case c.BMCTimeout <= 0:
		return usagef("--bmc-timeout %v: want a positive duration such as 30s", c.BMCTimeout)
	case c.BMCParallel <= 0:
		return usagef("--bmc-parallel %d: want a positive count", c.BMCParallel)
	case c.BindingTTL <= 0:
		return usagef("--binding-ttl %v: want a positive duration such as 2h", c.BindingTTL)
	case c.StallAfter <= 0:
		return usagef("--stall-after %v: want a positive duration such as 10m", c.StallAfter)
	case c.MaxDiscovered <= 0:
		return usagef("--max-discovered %d: want a positive count", c.MaxDiscovered)
	case c.TFTPMaxTransfers <= 0:
		return usagef("--tftp-max-transfers %d: want a positive count", c.TFTPMaxTransfers)
	case c.TFTPMaxPerClient <= 0:
		return usagef("--tftp-max-per-client %d: want a positive count", c.TFTPMaxPerClient)
	}
	if c.DHCPMode == dhcp.ModeAuthoritative && c.DHCPInterface == "" {
		return usagef("--dhcp-mode authoritative needs --dhcp-interface: the interface on the machines' network to hand out addresses on")
	}
	if err := c.Store.finishMember(c.DataDir); err != nil {
		return err
	}
	if err := c.Store.check(); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil {
		return usagef("--http-addr %q: want host:port or :port, such as :8080", c.HTTPAddr)
	}
	var ifaceIP net.IP
	if c.DHCPInterface != "" {
		if ifaceIP, err = interfaceIPv4(c.DHCPInterface); err != nil {
			return err
		}
	}
	if c.AdvertiseURL == "" {
		adv, err := advertiseHost(host, ifaceIP)
		if err != nil {
			return fmt.Errorf("--advertise-url not given, and finding this host's address failed: %w", err)
		}
		c.AdvertiseURL = "http://" + net.JoinHostPort(adv, port)
	}
	if err := c.finishTFTPAddr(ifaceIP); err != nil {
		return err
	}
	c.AdvertiseURL = strings.TrimRight(c.AdvertiseURL, "/")
	if u, err := url.Parse(c.AdvertiseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--advertise-url %q: want an http(s) URL such as http://10.99.0.2:8080", c.AdvertiseURL)
	}
	return nil
}

// finishTFTPAddr checks --tftp-addr, or defaults it to port 69 on
// --dhcp-interface's address. The proxyDHCP names that address as the TFTP
// server, so with it TFTP may listen only there (or on all addresses).
func (c *serveConfig) finishTFTPAddr(ifaceIP net.IP) error {
	if c.TFTPAddr == "" {
		if ifaceIP != nil {
			c.TFTPAddr = net.JoinHostPort(ifaceIP.String(), "69")
		}
		return nil
	}
	host, port, err := net.SplitHostPort(c.TFTPAddr)
	if err != nil || port == "" {
		return usagef("--tftp-addr %q: want host:port or :port, such as 10.99.0.2:69", c.TFTPAddr)
	}
	ip := net.ParseIP(host)
	switch {
	case host != "" && (ip == nil || ip.To4() == nil):
		return usagef("--tftp-addr %q: want an IPv4 address as host (TFTP serves IPv4 only), such as 10.99.0.2:69", c.TFTPAddr)
	case ifaceIP != nil && host != "" && !ip.IsUnspecified() && !ip.Equal(ifaceIP):
		return usagef("--tftp-addr %q: the proxyDHCP on --dhcp-interface %s names %s as TFTP server; listen there, or on :%s", c.TFTPAddr, c.DHCPInterface, ifaceIP, port)
	}
	return nil
}

// interfaceIPv4 is --dhcp-interface's IPv4 address, which proxyDHCP names
// itself by, with errors that name the flag.
func interfaceIPv4(name string) (net.IP, error) {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil, usagef("--dhcp-interface %q: no such network interface on this host (ip -br link lists them)", name)
	}
	ip, err := dhcp.InterfaceIPv4(name)
	if errors.Is(err, dhcp.ErrNoIPv4) {
		return nil, fmt.Errorf("--dhcp-interface %q has no global IPv4 address; proxyDHCP and TFTP need one to answer from", name)
	}
	if err != nil {
		return nil, fmt.Errorf("--dhcp-interface %q: %w", name, err)
	}
	return ip, nil
}

// checkProfilesFlags requires exactly one source of profiles: a directory, or
// a Git repository with its own flags.
func checkProfilesFlags(c serveConfig) error {
	switch {
	case c.ProfilesDir != "" && c.ProfilesGit != "":
		return usagef("--profiles and --profiles-git exclude each other (also as PROVISIOND_PROFILES and PROVISIOND_PROFILES_GIT): with --profiles-git the profiles are the synced tree under <data-dir>/profiles-git")
	case c.ProfilesDir == "" && c.ProfilesGit == "":
		return usagef("--profiles DIR or --profiles-git URL is required")
	case c.ProfilesGit == "" && (c.ProfilesGitRef != "" || c.ProfilesGitSSHKey != "" || c.ProfilesGitKnownHosts != "" || c.ProfilesGitTokenFile != ""):
		return usagef("--profiles-git-ref, --profiles-git-ssh-key, --profiles-git-known-hosts and --profiles-git-token-file need --profiles-git")
	case c.ProfilesGit == "":
		return nil
	case c.ProfilesGitInterval < time.Second:
		return usagef("--profiles-git-interval %v: want 1s or more", c.ProfilesGitInterval)
	}
	return checkGitFlags(c)
}

// parsePrefixes reads a comma-separated list of CIDRs; a bare address is a
// /32 or /128.
func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/24 or an address", f)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// newDHCP makes the DHCP server (67, 4011) on --dhcp-interface, in
// --dhcp-mode, and returns what runs it: with the lease allocator's upkeep
// when it hands out addresses.
func newDHCP(cfg serveConfig, core *boot.Core, db store.Leases, m *metrics.Metrics, log *slog.Logger) ([]func(context.Context) error, error) {
	ip, err := dhcp.InterfaceIPv4(cfg.DHCPInterface)
	if err != nil {
		return nil, err
	}
	dc := dhcp.Config{
		Interface:    cfg.DHCPInterface,
		Mode:         cfg.DHCPMode,
		ServerIP:     ip,
		AdvertiseURL: cfg.AdvertiseURL,
		Booter:       dhcpBooter{core},
		Binder:       dhcpBooter{core},
		Logger:       log,
		OnPacket:     m.DHCPPacket,
	}
	var runs []func(context.Context) error
	if cfg.DHCPMode == dhcp.ModeAuthoritative {
		alloc := leases.New(db, leases.Options{Logger: log})
		dc.Addresses = &liveAddresses{Allocator: alloc, profiles: core.Profiles}
		runs = append(runs, alloc.Run)
	}
	srv, err := dhcp.New(dc)
	if err != nil {
		return nil, err
	}
	return append(runs, srv.ListenAndServe), nil
}

// newTFTP makes the TFTP server on --tftp-addr and returns what runs it.
func newTFTP(cfg serveConfig, core *boot.Core, binaries *ipxe.Binaries, m *metrics.Metrics, log *slog.Logger) (func(context.Context) error, error) {
	transfers := tftpTransfers{identify: core.Identify, step: core.Step, count: m.TFTPTransfer, log: log}
	// GRUB fetches its config and the kernel and initrds over TFTP (see
	// loader: shim); the per-machine config is rendered when asked for.
	dirs := []tftp.Dir{{Path: cfg.AssetsDir, Prefix: profiles.AssetPrefix[1:]}}
	if cfg.ShimDir != "" {
		dirs = append(dirs, tftp.Dir{Path: cfg.ShimDir, TopLevel: true})
	}
	tftpd, err := tftp.New(tftp.Config{Dynamic: grubfiles.New(core, log), Files: binaries, Dirs: dirs, Root: cfg.TFTPRoot,
		Logger: log, OnTransfer: transfers.done, MaxTransfers: cfg.TFTPMaxTransfers, MaxPerClient: cfg.TFTPMaxPerClient})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return tftpd.ListenAndServe(ctx, cfg.TFTPAddr) }, nil
}

// advertiseHost picks the address machines will reach us at: the DHCP interface's
// IPv4 address, else the host of --http-addr, else this host's first global IPv4.
func advertiseHost(host string, ifaceIP net.IP) (string, error) {
	if ifaceIP != nil {
		return ifaceIP.String(), nil
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return host, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("list addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "127.0.0.1", nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

func runServe(cfg serveConfig, c *cli) error {
	log, err := newLogger(c.stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	for _, w := range envWarnings(os.Environ(), knownEnv(commandTable())) {
		log.Warn("environment variable ignored", "detail", w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serve(ctx, cfg, log)
}

// serve runs the daemon until ctx ends or a piece fails, and logs when it
// is asked to stop and when it has.
func serve(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	stopping := make(chan time.Time, 1)
	stopLog := context.AfterFunc(ctx, func() {
		log.Info("provisiond stopping", "cause", context.Cause(ctx))
		stopping <- time.Now()
	})
	err := runDaemon(ctx, cfg, log)
	if !stopLog() { // ctx ended: the line above was logged, or is being
		log.Info("provisiond stopped", "took", time.Since(<-stopping).Round(time.Millisecond))
	}
	return err
}

// checkInputs refuses paths that name nothing, before serve creates any
// file: a typo must not leave a data dir with a fresh token and key behind.
func checkInputs(cfg serveConfig) error {
	for _, d := range []struct{ flag, path string }{{"--profiles", cfg.ProfilesDir}, {"--tftp-root", cfg.TFTPRoot}, {"--ipxe-dir", cfg.IPXEDir}, {"--shim-dir", cfg.ShimDir}, {"--agent-dir", cfg.AgentDir}} {
		if d.path != "" {
			if err := checkDir(d.flag, d.path); err != nil {
				return err
			}
		}
	}
	if cfg.ShimDir != "" {
		if err := checkShimDir(cfg.ShimDir); err != nil {
			return err
		}
	}
	if cfg.APITokenFile != "" {
		if _, err := readToken(cfg.APITokenFile); err != nil {
			return fmt.Errorf("--api-token-file: %w", err)
		}
	}
	return nil
}

// checkDir says what is wrong with the directory path, which what names
// (a flag, "profiles directory"), in a line.
func checkDir(what, path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s %s: no such directory", what, path)
	case err != nil:
		return fmt.Errorf("%s %s: %w", what, path, errors.Unwrap(err))
	case !fi.IsDir():
		return fmt.Errorf("%s %s: not a directory", what, path)
	}
	return nil
}

// runDaemon wires the pieces and runs them until ctx ends or one fails.
func runDaemon(ctx context.Context, cfg serveConfig, log *slog.Logger) error {
	if err := checkInputs(cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := os.MkdirAll(cfg.AssetsDir, 0o755); err != nil {
		return fmt.Errorf("create assets dir: %w", err)
	}
	assets, err := os.OpenRoot(cfg.AssetsDir)
	if err != nil {
		return fmt.Errorf("open assets dir: %w", err)
	}
	defer assets.Close()
	binaries, err := ipxe.NewBinaries(cfg.IPXEDir)
	if err != nil {
		return err
	}
	// The embedded etcd member, if any, outlives the store: started first, stopped last.
	ctx, stopMember, err := cfg.Store.startMember(ctx, log)
	if err != nil {
		return err
	}
	defer stopMember()
	db, err := cfg.Store.open(ctx, cfg.DataDir)
	if err != nil {
		return err
	}
	defer db.Close()
	log.Info("store opened", cfg.Store.attrs(cfg.DataDir)...)
	token, err := apiToken(cfg, log)
	if err != nil {
		return err
	}
	secrets, created, err := seal.LoadOrCreate(cfg.SecretKeyFile)
	if err != nil {
		return err
	}
	if created {
		log.Info("generated the key that seals BMC credentials; back it up apart from the database", "path", cfg.SecretKeyFile)
	}

	// BMC operations take a per-machine lock: in etcd when instances share
	// the inventory there, else (nil) in this process.
	var locks boot.Locker
	if es, ok := db.(*etcdstore.Store); ok {
		locks = es.Locker()
	}
	m := metrics.New(metrics.Config{Machines: db, Store: probe(cfg.Store.Backend, db), Logger: log})
	core := boot.New(boot.Config{
		ProfilesDir:   cfg.ProfilesDir,
		AdvertiseURL:  cfg.AdvertiseURL,
		Store:         db,
		Neighbors:     neigh.New(),
		Policy:        cfg.Policy,
		BindingTTL:    cfg.BindingTTL,
		MaxDiscovered: cfg.MaxDiscovered,
		CacheFile:     filepath.Join(cfg.DataDir, "translations.cache"),
		BMC:           bmc.New(bmc.Options{Timeout: cfg.BMCTimeout, Parallel: cfg.BMCParallel, Logger: log}),
		Secrets:       secrets,
		WipeProfile:   cfg.WipeProfile,
		Check:         withAssetCheck(servingCheck(cfg.DHCPMode, cfg.DHCPInterface != "", cfg.ShimDir != ""), assets.FS(), log),
		StallAfter:    cfg.StallAfter,
		Locks:         locks,
		Observer:      m,
		Logger:        log,
	})
	if cfg.Policy != (boot.Policy{}) {
		log.Warn("config secrecy checks relaxed by flag", "allow_config_without_token", cfg.Policy.AllowConfigWithoutToken,
			"allow_config_refetch", cfg.Policy.AllowConfigRefetch, "skip_neighbor_check", cfg.Policy.SkipNeighborCheck,
			"trust_loopback", cfg.Policy.TrustLoopback, "allow_unbound_routed", cfg.Policy.AllowUnbound)
	}
	// The first load must succeed: serving nothing while claiming to be up helps no one.
	var syncer *gitsync.Syncer
	var backend interface {
		api.Backend
		web.Backend
	} = core
	profilesFrom := cfg.ProfilesDir
	if cfg.ProfilesGit != "" {
		if syncer, err = startGitSync(ctx, cfg, core, db, m, log); err != nil {
			return err
		}
		backend, profilesFrom = gitBackend{Core: core, syncer: syncer}, syncer.Remote()
	} else if err := core.ReloadContext(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped during the first load: a shutdown, not a failure
		}
		var probs profiles.Problems
		if errors.As(err, &probs) {
			return fmt.Errorf("profiles in %s do not validate:\n%w", cfg.ProfilesDir, err)
		}
		return err
	}
	log.Info("provisiond starting", "version", version, "advertise_url", cfg.AdvertiseURL, "profiles", profilesFrom, "assets", cfg.AssetsDir, "data_dir", cfg.DataDir)

	dash, err := web.New(web.Config{Backend: backend, Token: token, Logger: log})
	if err != nil {
		return err
	}
	srv := server.New(server.Config{
		Core:         core,
		AdvertiseURL: cfg.AdvertiseURL,
		Assets:       assets,
		Binaries:     binaries,
		Agents:       agentFiles(cfg.AgentDir),
		API: api.New(api.Config{Backend: backend, Backup: api.StoreBackup{Store: db, Backend: cfg.Store.Backend}, Leases: db,
			Token: token, Logger: log}),
		Metrics:        m,
		Dashboard:      dash.Routes,
		TrustedProxies: cfg.TrustedProxies,
		Store:          cfg.Store.info(db),
		Logger:         log,
	})
	// Every piece is made before any runs: a piece that cannot be made
	// must not leave the others running on a store about to close.
	runs := []func(context.Context) error{core.Run, func(ctx context.Context) error { return srv.ListenAndServe(ctx, cfg.HTTPAddr) }}
	if cfg.DHCPInterface != "" {
		dhcpRuns, err := newDHCP(cfg, core, db, m, log)
		if err != nil {
			return err
		}
		runs = append(runs, dhcpRuns...)
	}
	if cfg.TFTPAddr != "" {
		run, err := newTFTP(cfg, core, binaries, m, log)
		if err != nil {
			return err
		}
		runs = append(runs, run)
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, run := range runs {
		g.Go(func() error { return run(ctx) })
	}
	if syncer != nil {
		g.Go(func() error { return syncer.Run(ctx) })
	} else {
		g.Go(func() error {
			// Each reload runs beside the watch, so that the next change
			// supersedes it instead of waiting for it.
			return profiles.Watch(ctx, cfg.ProfilesDir, cfg.ReloadDebounce, log, func() {
				g.Go(func() error { _ = core.ReloadContext(ctx); return nil })
			})
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// A member that failed stopped the daemon: a failure, so that systemd's
	// Restart=on-failure brings it back.
	if cause := context.Cause(ctx); errors.Is(cause, errMemberFailed) {
		return cause
	}
	return nil
}

// shimFiles are what --shim-dir must hold: the signed first stage the
// firmware loads, and the signed GRUB it loads from the same directory.
var shimFiles = []string{dhcp.ShimNBP, grub.Loader}

// checkShimDir says which of shimFiles dir lacks, with where distributions
// keep them.
func checkShimDir(dir string) error {
	for _, name := range shimFiles {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err == nil && fi.Mode().IsRegular() {
			continue
		}
		return fmt.Errorf("--shim-dir %s: no file %s: copy your distribution's signed shim as shimx64.efi and its signed network GRUB as grubx64.efi "+
			"(Debian and Ubuntu: /usr/lib/shim/shimx64.efi.signed and /usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed; "+
			"Fedora: shimx64.efi and grubx64.efi from the shim-x64 and grub2-efi-x64 packages under /boot/efi/EFI/fedora)", dir, name)
	}
	return nil
}

// servingCheck judges a profile set against how serve runs: its DHCP mode
// and whether the proxyDHCP runs (neither a loader: shim nor a loader: uki
// profile boots behind it), whether there is a --shim-dir for such profiles, and whether the
// allocator takes the set's address plan.
func servingCheck(mode dhcp.Mode, proxy, shimDir bool) func(*profiles.Set) (problems, warnings profiles.Problems) {
	return func(set *profiles.Set) (profiles.Problems, profiles.Problems) {
		probs, warns := set.CheckDHCP(string(mode), proxy)
		for _, name := range slices.Sorted(maps.Keys(set.Profiles)) {
			p := set.Profiles[name]
			switch {
			case p.Boot.Loader == profiles.LoaderShim && !shimDir:
				probs = append(probs, profiles.Problem{File: p.Pos.File, Line: p.Pos.Line,
					Msg: fmt.Sprintf("profile %s boots with loader: shim, but serve has no --shim-dir holding the signed shimx64.efi and grubx64.efi", name)})
			case p.Boot.Loader == profiles.LoaderUKI && mode != dhcp.ModeAuthoritative:
				// Its tokenless session opens on the firmware's REQUEST to
				// this server; behind a proxy or a site DHCP server naming
				// us, that REQUEST goes elsewhere and the config is refused.
				probs = append(probs, profiles.Problem{File: p.Pos.File, Line: p.Pos.Line,
					Msg: fmt.Sprintf("profile %s boots with loader: uki, which provisiond offers with --dhcp-mode authoritative only", name)})
			}
		}
		if mode == dhcp.ModeAuthoritative {
			if _, err := addressPlan(set); err != nil {
				probs = append(probs, profiles.Problem{Msg: err.Error()})
			}
		}
		return probs, warns
	}
}

// withAssetCheck is check, and a warning logged for each profile asset
// missing under the assets directory (assets) at every load: the set still
// loads, since the file may arrive later, and /healthz keeps listing it.
// One line per file, not per profile, and outside the set's warnings,
// which are the profiles' own.
func withAssetCheck(check func(*profiles.Set) (profiles.Problems, profiles.Problems), assets fs.FS, log *slog.Logger) func(*profiles.Set) (profiles.Problems, profiles.Problems) {
	return func(set *profiles.Set) (profiles.Problems, profiles.Problems) {
		for _, f := range boot.MissingFiles(set, assets) {
			log.Warn("profile asset missing: machines booting it get 404 and retry", "path", f.Path, "profiles", strings.Join(f.Profiles, ","))
		}
		return check(set)
	}
}
