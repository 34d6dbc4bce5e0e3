// Package metrics defines provisiond's Prometheus metrics and the registry
// /metrics serves.
//
// The protocol servers and the boot core never import Prometheus: each reports
// through a small hook of its own (dhcp.Config.OnPacket, tftp.Config.OnTransfer,
// boot.Observer, the server's Metrics), which *Metrics implements and
// cmd/provisiond wires. Every label value comes from a small fixed set, so no
// client can grow the series count: never a MAC, UUID, address or machine name.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/grub"
	"github.com/provisiond/provisiond/internal/ipxe"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/tftp"
)

// Fixed label values for what falls outside the known sets.
const (
	// FileOther is the TFTP file label of anything but the boot programs
	// and GRUB configs: assets, --tftp-root files and names that were not found.
	FileOther = "other"
	// FileGrubConfig labels every GRUB config (grub/...): one series, not
	// one per machine.
	FileGrubConfig = "grub-config"
	// ArchNone is the DHCP arch label of a packet not classified as a PXE client.
	ArchNone = "none"
	other    = "other"
)

// StateCounter counts the inventory by lifecycle state; every store.Store does.
type StateCounter interface {
	CountByState(ctx context.Context) (map[store.State]int, error)
}

// Config configures Metrics.
type Config struct {
	// Machines is counted at every scrape for provisiond_machines; nil leaves
	// that metric out.
	Machines StateCounter
	// Store is probed at every scrape for provisiond_store_*; nil leaves
	// those out.
	Store func(context.Context) store.Health
	// Logger gets scrape errors; nil discards.
	Logger *slog.Logger
}

// Metrics holds provisiond's metrics in a registry of its own (not the global
// default, so tests and several instances never collide). Safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	dhcpPackets    *prometheus.CounterVec
	tftpTransfers  *prometheus.CounterVec
	tftpBytes      *prometheus.CounterVec
	tftpDuration   *prometheus.HistogramVec
	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	reloads        *prometheus.CounterVec
	lastReload     prometheus.Gauge
	syncs          *prometheus.CounterVec
	liveCommit     *prometheus.GaugeVec
	liveMu         sync.Mutex // one live_commit series at a time
	gitLeader      prometheus.Gauge
	bmcOps         *prometheus.CounterVec
	bmcDuration    *prometheus.HistogramVec
	configsRefused *prometheus.CounterVec
	scriptsRefused *prometheus.CounterVec
	phoneRefused   *prometheus.CounterVec
	reportRefused  *prometheus.CounterVec
	pruned         prometheus.Counter
	stalled        prometheus.Gauge
}

// New returns Metrics registered with the Go and process collectors.
func New(cfg Config) *Metrics {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: log,
		dhcpPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_dhcp_packets_total",
			Help: "DHCP packets read by the DHCP server, by client architecture (IANA name, none if not a network boot client) and outcome (offer, ack, nak, release, decline, inform, exhausted: no free address, ignored, declined: another server owns the client, malformed, error).",
		}, []string{"arch", "outcome"}),
		tftpTransfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_tftp_transfers_total",
			Help: "TFTP read requests finished, by file (an iPXE binary, or other) and outcome (ok, probe: a UEFI size probe the client ended after learning the size, not_found, denied, busy: refused by --tftp-max-transfers or --tftp-max-per-client, error).",
		}, []string{"file", "outcome"}),
		tftpBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_tftp_sent_bytes_total",
			Help: "Bytes of files sent over TFTP, by file and outcome.",
		}, []string{"file", "outcome"}),
		tftpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "provisiond_tftp_transfer_duration_seconds",
			Help: "Wall time of TFTP read requests, by file and outcome.",
			// An iPXE binary is ~1 MiB: a fraction of a second on a LAN, long with loss.
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"file", "outcome"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_http_requests_total",
			Help: "HTTP requests answered, by route pattern (unmatched for none) and status code.",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "provisiond_http_request_duration_seconds",
			Help: "Time to answer HTTP requests, body included, by route pattern.",
			// A script takes milliseconds, a kernel or initrd from /assets up to minutes.
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"route"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_profile_reloads_total",
			Help: "Profile directory loads, by result (ok, error). A failed load leaves the last good set serving.",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisiond_profile_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last profile load that went live.",
		}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_profile_syncs_total",
			Help: "Syncs with the profiles' Git repository (--profiles-git), by result: updated (a new commit went live), unchanged, rejected (the ref names a commit that does not validate; counted at every sync until it moves), error (the fetch failed).",
		}, []string{"result"}),
		liveCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "provisiond_profile_live_commit_info",
			Help: "1 for the abbreviated hash of the Git commit whose profiles are live (--profiles-git); one series, replaced when another commit goes live.",
		}, []string{"commit"}),
		gitLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisiond_git_leader",
			Help: "1 while this instance follows the profiles' Git repository itself: always with --profiles-git alone, the elected leader with --store etcd (the others load the commits it publishes); 0 otherwise.",
		}),
		bmcOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_bmc_operations_total",
			Help: "Conversations with BMCs, by action (on, off, soft, cycle, reset, status, reprovision, wipe) and result (ok, auth, timeout, unreachable, other).",
		}, []string{"action", "result"}),
		bmcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "provisiond_bmc_operation_duration_seconds",
			Help: "Wall time of conversations with BMCs, waiting for a slot included, by action.",
			// A BMC login alone can take seconds; --bmc-timeout defaults to 30 s.
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120},
		}, []string{"action"}),
		configsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_configs_refused_total",
			Help: "Config requests (/ignition, /config) refused by a secrecy check, by reason.",
		}, []string{"reason"}),
		scriptsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_scripts_refused_total",
			Help: "Script requests (/ipxe, /boot.ipxe naming a machine) refused by a secrecy check, by reason.",
		}, []string{"reason"}),
		phoneRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_phone_homes_refused_total",
			Help: "Phone-homes (POST /api/v1/machines/{id}/installed with a session token) refused, by reason.",
		}, []string{"reason"}),
		reportRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "provisiond_hardware_reports_refused_total",
			Help: "Hardware reports (POST /api/v1/machines/{id}/hardware with a session token) refused, by reason.",
		}, []string{"reason"}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "provisiond_discovered_pruned_total",
			Help: "Only-discovered machines deleted, oldest first, because there were more than --max-discovered.",
		}),
		stalled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "provisiond_machines_stalled",
			Help: "Machines in provisioning whose boot took no new step for --stall-after, as this instance saw their boots; updated every 30 s.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.dhcpPackets, m.tftpTransfers, m.tftpBytes, m.tftpDuration,
		m.httpRequests, m.httpDuration, m.reloads, m.lastReload, m.syncs, m.liveCommit, m.gitLeader,
		m.bmcOps, m.bmcDuration, m.configsRefused, m.scriptsRefused, m.phoneRefused, m.reportRefused, m.pruned, m.stalled,
	)
	if cfg.Machines != nil {
		m.reg.MustRegister(newMachineCollector(cfg.Machines))
	}
	if cfg.Store != nil {
		m.reg.MustRegister(newStoreCollector(cfg.Store))
	}
	// Series that exist from the start, so rate() and alerts see a zero
	// rather than nothing.
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	for _, r := range syncResults() {
		m.syncs.WithLabelValues(r)
	}
	for _, r := range refusalReasons() {
		m.configsRefused.WithLabelValues(r)
	}
	for _, r := range identityReasons() {
		m.scriptsRefused.WithLabelValues(r)
		m.phoneRefused.WithLabelValues(r)
	}
	m.phoneRefused.WithLabelValues(boot.ReasonBadToken)
	return m
}

// Registry is the registry /metrics serves, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// maxScrapes bounds concurrent scrapes: /metrics needs no token, and each
// reads the whole inventory.
const maxScrapes = 4

// Handler serves the registry in the Prometheus exposition formats. A
// collector that fails (the store) is logged and left out; the rest is served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg,
		MaxRequestsInFlight: maxScrapes,
	})
}

// DHCPPacket counts one packet; it is dhcp.Config.OnPacket.
func (m *Metrics) DHCPPacket(h dhcp.Handled) {
	arch := h.Arch
	if arch == "" {
		arch = ArchNone
	}
	m.dhcpPackets.WithLabelValues(arch, string(h.Outcome)).Inc()
}

// TFTPTransfer counts one finished transfer; cmd/provisiond calls it from
// tftp.Config.OnTransfer.
func (m *Metrics) TFTPTransfer(t tftp.Transfer) {
	file, outcome := tftpFile(t.File), t.Outcome()
	m.tftpTransfers.WithLabelValues(file, outcome).Inc()
	m.tftpBytes.WithLabelValues(file, outcome).Add(float64(t.Bytes))
	m.tftpDuration.WithLabelValues(file, outcome).Observe(t.Duration.Seconds())
}

// tftpFile is the file label: the iPXE binaries by name, everything else
// FileOther, so that clients asking for random names add no series.
func tftpFile(requested string) string {
	name, err := tftp.Resolve(requested) // the name served, as the server resolves it
	if err != nil {
		return FileOther
	}
	switch name {
	case ipxe.UndionlyKPXE, ipxe.IPXEEFI, ipxe.SNPEFI, dhcp.ShimNBP, grub.Loader:
		return name
	}
	if strings.HasPrefix(name, "grub/") {
		return FileGrubConfig
	}
	return FileOther
}

// ObserveHTTP counts one answered request. route is the router's pattern
// ("/api/v1/machines/{id}"), never the path, which a client chooses.
func (m *Metrics) ObserveHTTP(route string, code int, took time.Duration) {
	m.httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(took.Seconds())
}

// Reloaded implements boot.Observer.
func (m *Metrics) Reloaded(at time.Time, err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.lastReload.Set(float64(at.UnixNano()) / 1e9)
}

// syncResults are the sync result label's values; anything else is "other".
func syncResults() [4]string {
	return [...]string{boot.SyncUpdated, boot.SyncUnchanged, boot.SyncRejected, boot.SyncError}
}

// Synced implements boot.Observer.
func (m *Metrics) Synced(result string) {
	for _, r := range syncResults() {
		if r == result {
			m.syncs.WithLabelValues(r).Inc()
			return
		}
	}
	m.syncs.WithLabelValues(other).Inc()
}

// LiveCommit implements boot.Observer. The old commit's series goes, so the
// metric stays one series however many commits go live.
func (m *Metrics) LiveCommit(short string) {
	if !isHex(short) || len(short) > 40 {
		short = other
	}
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	m.liveCommit.Reset()
	m.liveCommit.WithLabelValues(short).Set(1)
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return s != ""
}

// GitLeader sets provisiond_git_leader: whether this instance follows the
// profiles' Git repository itself.
func (m *Metrics) GitLeader(leader bool) {
	m.gitLeader.Set(bool01(leader))
}

// BMCOperation implements boot.Observer.
func (m *Metrics) BMCOperation(action string, took time.Duration, err error) {
	switch bmc.Action(action) {
	case bmc.On, bmc.Off, bmc.Soft, bmc.Cycle, bmc.Reset, "status", "reprovision", "wipe":
	default:
		action = other
	}
	m.bmcOps.WithLabelValues(action, bmcResult(err)).Inc()
	m.bmcDuration.WithLabelValues(action).Observe(took.Seconds())
}

// bmcResult classes a BMC error by what an operator does about it.
func bmcResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, bmc.ErrAuth):
		return "auth"
	case errors.Is(err, bmc.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, bmc.ErrUnreachable):
		return "unreachable"
	}
	return other
}

// identityReasons are the refusals of the requester's identity, for
// every kind of request.
func identityReasons() []string {
	return []string{boot.ReasonNeighbor, boot.ReasonLocal, boot.ReasonUnbound, boot.ReasonBindMAC}
}

// refusalReasons are the reason label's values; anything else is "other".
func refusalReasons() []string {
	return append(identityReasons(), boot.ReasonNoSession, boot.ReasonNoToken, boot.ReasonBadToken, boot.ReasonRefetch)
}

// Refused implements boot.Observer.
func (m *Metrics) Refused(e *boot.RefusedError) {
	reason := other
	for _, r := range refusalReasons() {
		if e.Reason == r {
			reason = r
		}
	}
	switch e.What {
	case "script":
		m.scriptsRefused.WithLabelValues(reason).Inc()
	case "phone-home":
		m.phoneRefused.WithLabelValues(reason).Inc()
	case "hardware-report":
		m.reportRefused.WithLabelValues(reason).Inc()
	default:
		m.configsRefused.WithLabelValues(reason).Inc()
	}
}

// Pruned implements boot.Observer.
func (m *Metrics) Pruned(n int) { m.pruned.Add(float64(n)) }

// Stalled implements boot.Observer.
func (m *Metrics) Stalled(n int) { m.stalled.Set(float64(n)) }

var _ boot.Observer = (*Metrics)(nil)

// machineCollector reads the inventory's state counts at scrape time, so the
// gauge cannot drift from the store.
type machineCollector struct {
	src  StateCounter
	desc *prometheus.Desc
}

func newMachineCollector(src StateCounter) machineCollector {
	return machineCollector{src: src, desc: prometheus.NewDesc("provisiond_machines",
		"Machines in the inventory, by lifecycle state (every state, 0 included).", []string{"state"}, nil)}
}

func (c machineCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c machineCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	counts, err := c.src.CountByState(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, st := range store.States() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}
