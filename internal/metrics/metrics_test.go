package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sync/errgroup"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/dhcp"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/tftp"
)

// fakeCounter is a StateCounter with fixed counts, or a fixed error.
type fakeCounter struct {
	counts map[store.State]int
	err    error
}

func (f fakeCounter) CountByState(context.Context) (map[store.State]int, error) {
	return f.counts, f.err
}

// TestLint runs promlint over everything the registry exposes, with a value
// in every vector so that each metric is linted.
func TestLint(t *testing.T) {
	m := New(Config{Machines: fakeCounter{counts: map[store.State]int{store.StateReady: 1}}, Store: func(context.Context) store.Health {
		return store.Health{Backend: "etcd", Leader: "e0", Endpoints: []store.EndpointHealth{{Endpoint: "http://127.0.0.1:2379"}}}
	}})
	exercise(m)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	for _, c := range []prometheus.Collector{m.dhcpPackets, m.tftpTransfers, m.tftpBytes, m.tftpDuration, m.httpRequests,
		m.httpDuration, m.reloads, m.lastReload, m.syncs, m.liveCommit, m.bmcOps, m.bmcDuration, m.configsRefused, m.scriptsRefused, m.stalled} {
		problems, err := testutil.CollectAndLint(c)
		if err != nil || len(problems) > 0 {
			t.Errorf("CollectAndLint = %v, %v", problems, err)
		}
	}
}

// exercise reports one of everything.
func exercise(m *Metrics) {
	m.DHCPPacket(dhcp.Handled{Arch: "EFI x86-64", Outcome: dhcp.OutcomeOffer})
	m.TFTPTransfer(tftp.Transfer{File: "ipxe.efi", Bytes: 1000, Duration: time.Second})
	m.ObserveHTTP("/ipxe", 200, time.Millisecond)
	m.Reloaded(time.Unix(1700000000, 0), nil)
	m.Synced(boot.SyncUpdated)
	m.LiveCommit("0123456789ab")
	m.BMCOperation("cycle", time.Second, nil)
	m.Refused(&boot.RefusedError{What: "config", Reason: boot.ReasonNoToken})
	m.Refused(&boot.RefusedError{What: "script", Reason: boot.ReasonNeighbor})
	m.Stalled(1)
}

// Each New has a registry of its own: two never collide, and nothing lands
// in the global default registry.
func TestOwnRegistry(t *testing.T) {
	a, b := New(Config{}), New(Config{})
	a.ObserveHTTP("/ipxe", 200, 0)
	if got := testutil.ToFloat64(b.httpRequests.WithLabelValues("/ipxe", "200")); got != 0 {
		t.Errorf("a request counted in one instance shows in another: %v", got)
	}
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "provisiond_") {
			t.Errorf("%s is in the default registry", f.GetName())
		}
	}
}

func TestMachines(t *testing.T) {
	m := New(Config{Machines: fakeCounter{counts: map[store.State]int{store.StateReady: 3, store.StateInstalled: 2}}})
	want := `
# HELP provisiond_machines Machines in the inventory, by lifecycle state (every state, 0 included).
# TYPE provisiond_machines gauge
provisiond_machines{state="discovered"} 0
provisiond_machines{state="installed"} 2
provisiond_machines{state="provisioning"} 0
provisiond_machines{state="ready"} 3
provisiond_machines{state="wiped"} 0
provisiond_machines{state="wiping"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "provisiond_machines"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(newMachineCollector(fakeCounter{}), "provisiond_machines"); n != len(store.States()) {
		t.Errorf("an empty inventory gives %d series; want one per state", n)
	}
}

// A store that fails leaves its metric out of the scrape, logged; the rest
// is still served.
func TestMachinesStoreError(t *testing.T) {
	var logs bytes.Buffer
	m := New(Config{Machines: fakeCounter{err: errors.New("disk on fire")}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	m.ObserveHTTP("/ipxe", 200, 0)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `provisiond_http_requests_total{code="200",route="/ipxe"} 1`) || strings.Contains(body, "provisiond_machines{") {
		t.Errorf("scrape = %d:\n%s", rec.Code, body)
	}
	if !strings.Contains(logs.String(), "disk on fire") {
		t.Errorf("the store's error was not logged: %q", logs.String())
	}
}

func TestDHCP(t *testing.T) {
	m := New(Config{})
	m.DHCPPacket(dhcp.Handled{Outcome: dhcp.OutcomeMalformed})
	m.DHCPPacket(dhcp.Handled{Arch: "Intel x86PC", Outcome: dhcp.OutcomeOffer})
	m.DHCPPacket(dhcp.Handled{Arch: "Intel x86PC", Outcome: dhcp.OutcomeOffer})
	for _, tc := range []struct {
		arch, outcome string
		want          float64
	}{
		{ArchNone, "malformed", 1},
		{"Intel x86PC", "offer", 2},
	} {
		if got := testutil.ToFloat64(m.dhcpPackets.WithLabelValues(tc.arch, tc.outcome)); got != tc.want {
			t.Errorf("dhcp packets %s/%s = %v; want %v", tc.arch, tc.outcome, got, tc.want)
		}
	}
}

// The TFTP file label takes the boot programs' names, one value for every
// GRUB config and one other value, whatever names clients ask for.
func TestTFTPFileBounded(t *testing.T) {
	m := New(Config{})
	m.TFTPTransfer(tftp.Transfer{File: "/undionly.kpxe", Bytes: 100, Duration: time.Second})
	m.TFTPTransfer(tftp.Transfer{File: "snp.efi", Bytes: 50, Duration: time.Second})
	m.TFTPTransfer(tftp.Transfer{File: "./undionly.kpxe", Bytes: 100, Duration: time.Second}) // served as undionly.kpxe, so counted as it
	for i := range 1000 {
		m.TFTPTransfer(tftp.Transfer{File: fmt.Sprintf("random-%d", i), Err: fmt.Errorf("open: %w", fs.ErrNotExist)})
		// GRUB asks with a leading slash, one config per machine.
		m.TFTPTransfer(tftp.Transfer{File: fmt.Sprintf("/grub/machines/52:54:00:00:%02x:%02x.cfg", i/256, i%256), Bytes: 10})
	}
	m.TFTPTransfer(tftp.Transfer{File: "shimx64.efi", Bytes: 10})
	m.TFTPTransfer(tftp.Transfer{File: "grubx64.efi", Bytes: 10})
	if n := testutil.CollectAndCount(m.tftpTransfers); n != 6 {
		t.Errorf("%d transfer series after 1000 random names and 1000 GRUB configs; want 6", n)
	}
	if got := testutil.ToFloat64(m.tftpTransfers.WithLabelValues(FileGrubConfig, "ok")); got != 1000 {
		t.Errorf("grub-config/ok = %v; want 1000", got)
	}
	if got := testutil.ToFloat64(m.tftpTransfers.WithLabelValues(FileOther, "not_found")); got != 1000 {
		t.Errorf("other/not_found = %v; want 1000", got)
	}
	if got := testutil.ToFloat64(m.tftpBytes.WithLabelValues("undionly.kpxe", "ok")); got != 200 {
		t.Errorf("undionly.kpxe bytes = %v; want 200", got)
	}
}

// A request refused by a TFTP cap counts as busy, apart from the errors a
// flood's refusals would otherwise bury.
func TestTFTPBusy(t *testing.T) {
	m := New(Config{})
	m.TFTPTransfer(tftp.Transfer{File: "ipxe.efi", Err: fmt.Errorf("%w: 50 transfers in flight", tftp.ErrBusy)})
	m.TFTPTransfer(tftp.Transfer{File: "ipxe.efi", Err: errors.New("sending block 3: timeout")})
	for _, outcome := range []string{"busy", "error"} {
		if got := testutil.ToFloat64(m.tftpTransfers.WithLabelValues("ipxe.efi", outcome)); got != 1 {
			t.Errorf("ipxe.efi/%s = %v; want 1", outcome, got)
		}
	}
}

func TestHTTP(t *testing.T) {
	m := New(Config{})
	m.ObserveHTTP("/api/v1/machines/{id}", 404, 2*time.Millisecond)
	m.ObserveHTTP("/api/v1/machines/{id}", 200, 3*time.Millisecond)
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues("/api/v1/machines/{id}", "404")); got != 1 {
		t.Errorf("404s = %v", got)
	}
	if n := testutil.CollectAndCount(m.httpDuration); n != 1 {
		t.Errorf("%d latency series; want one per route", n)
	}
}

func TestReloads(t *testing.T) {
	m := New(Config{})
	at := time.Unix(1700000000, 500_000_000)
	m.Reloaded(at, nil)
	m.Reloaded(at.Add(time.Hour), errors.New("bad yaml"))
	if ok, failed := testutil.ToFloat64(m.reloads.WithLabelValues("ok")), testutil.ToFloat64(m.reloads.WithLabelValues("error")); ok != 1 || failed != 1 {
		t.Errorf("reloads ok %v, error %v; want 1 and 1", ok, failed)
	}
	if got := testutil.ToFloat64(m.lastReload); got != 1700000000.5 {
		t.Errorf("last successful reload = %v; want the successful one's time", got)
	}
}

// Syncs are counted by result; the live commit is one series, replaced.
func TestSyncs(t *testing.T) {
	m := New(Config{})
	if n := testutil.CollectAndCount(m.syncs); n != 4 {
		t.Errorf("%d sync series before any sync; want the 4 results at 0", n)
	}
	for _, r := range []string{boot.SyncUpdated, boot.SyncUnchanged, boot.SyncUnchanged, boot.SyncRejected, boot.SyncError, "bogus"} {
		m.Synced(r)
	}
	for r, want := range map[string]float64{"updated": 1, "unchanged": 2, "rejected": 1, "error": 1, "other": 1} {
		if got := testutil.ToFloat64(m.syncs.WithLabelValues(r)); got != want {
			t.Errorf("syncs{result=%q} = %v; want %v", r, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.liveCommit); n != 0 {
		t.Errorf("%d live commit series before any commit", n)
	}
	for _, c := range []string{"0123456789ab", "ba9876543210", "not-a-hash\n{}"} {
		m.LiveCommit(c)
	}
	want := `
# HELP provisiond_profile_live_commit_info 1 for the abbreviated hash of the Git commit whose profiles are live (--profiles-git); one series, replaced when another commit goes live.
# TYPE provisiond_profile_live_commit_info gauge
provisiond_profile_live_commit_info{commit="other"} 1
`
	if err := testutil.CollectAndCompare(m.liveCommit, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	m.LiveCommit("ba9876543210")
	if n := testutil.CollectAndCount(m.liveCommit); n != 1 || testutil.ToFloat64(m.liveCommit.WithLabelValues("ba9876543210")) != 1 {
		t.Errorf("%d live commit series; want one, the last", n)
	}
}

func TestBMC(t *testing.T) {
	m := New(Config{})
	for _, tc := range []struct {
		action string
		err    error
		label  string
		result string
	}{
		{"cycle", nil, "cycle", "ok"},
		{"on", fmt.Errorf("log in: %w", bmc.ErrAuth), "on", "auth"},
		{"status", fmt.Errorf("read: %w", bmc.ErrTimeout), "status", "timeout"},
		{"status", context.DeadlineExceeded, "status", "timeout"},
		{"wipe", fmt.Errorf("dial: %w", bmc.ErrUnreachable), "wipe", "unreachable"},
		{"reprovision", errors.New("HTTP 500"), "reprovision", "other"},
		{"made-up", nil, "other", "ok"},
	} {
		before := testutil.ToFloat64(m.bmcOps.WithLabelValues(tc.label, tc.result))
		m.BMCOperation(tc.action, time.Second, tc.err)
		if got := testutil.ToFloat64(m.bmcOps.WithLabelValues(tc.label, tc.result)); got != before+1 {
			t.Errorf("BMCOperation(%s, %v) did not count as %s/%s", tc.action, tc.err, tc.label, tc.result)
		}
	}
}

func TestRefused(t *testing.T) {
	m := New(Config{})
	// Every reason is there from the start.
	if n := testutil.CollectAndCount(m.configsRefused); n != 8 {
		t.Errorf("%d config refusal series before any; want 8", n)
	}
	m.Refused(&boot.RefusedError{What: "config", Reason: boot.ReasonRefetch})
	m.Refused(&boot.RefusedError{What: "phone-home", Reason: boot.ReasonUnbound})
	m.Refused(&boot.RefusedError{What: "config", Reason: "something new"})
	m.Refused(&boot.RefusedError{What: "script", Reason: boot.ReasonNeighbor})
	for _, tc := range []struct {
		c      *prometheus.CounterVec
		reason string
	}{
		{m.configsRefused, boot.ReasonRefetch},
		{m.configsRefused, "other"},
		{m.scriptsRefused, boot.ReasonNeighbor},
		{m.phoneRefused, boot.ReasonUnbound},
	} {
		if got := testutil.ToFloat64(tc.c.WithLabelValues(tc.reason)); got != 1 {
			t.Errorf("%s = %v; want 1", tc.reason, got)
		}
	}
}

// The stalled gauge is what the core last counted, not a sum of reports.
func TestStalled(t *testing.T) {
	m := New(Config{})
	m.Stalled(3)
	m.Stalled(2)
	want := `
# HELP provisiond_machines_stalled Machines in provisioning whose boot took no new step for --stall-after, as this instance saw their boots; updated every 30 s.
# TYPE provisiond_machines_stalled gauge
provisiond_machines_stalled 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "provisiond_machines_stalled"); err != nil {
		t.Error(err)
	}
}

// BenchmarkScrape is one Prometheus scrape of /metrics over HTTP with 10,000
// machines in a real bbolt store: the cost of provisiond_machines dominates.
func BenchmarkScrape(b *testing.B) {
	db, err := boltstore.Open(filepath.Join(b.TempDir(), "provisiond.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	states := store.States()
	// Concurrent writers share fsyncs, as a discovery storm does.
	var g errgroup.Group
	g.SetLimit(64)
	for i := range 10_000 {
		g.Go(func() error {
			_, _, err := db.Seen(context.Background(), store.Machine{
				MAC:   fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff),
				UUID:  fmt.Sprintf("00000000-0000-4000-8000-%012x", i),
				Arch:  "efi-x86_64",
				Name:  fmt.Sprintf("node%d", i),
				State: states[i%len(states)], Labels: map[string]string{"rack": "r1"},
			}, nil)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	m := New(Config{Machines: db})
	exercise(m)
	ts := httptest.NewServer(m.Handler())
	defer ts.Close()
	scrape := func() string {
		resp, err := ts.Client().Get(ts.URL + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("scrape: %d, %v", resp.StatusCode, err)
		}
		return string(body)
	}
	if body := scrape(); !strings.Contains(body, `provisiond_machines{state="wiped"} 1666`) {
		b.Fatalf("scrape lacks the machine counts:\n%s", body)
	}
	b.ReportAllocs()
	for b.Loop() {
		scrape()
	}
}
