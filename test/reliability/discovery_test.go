//go:build linux

package reliability

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

const (
	discoveryMachines = 10_000
	discoveryClients  = 64
)

// TestConcurrentDiscovery discovers 10,000 never-seen MACs through /ipxe from
// 64 concurrent clients and checks that the inventory holds exactly those, all
// discovered. It reports throughput and /ipxe latency; it asserts no timing.
func TestConcurrentDiscovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	bin := testutil.Binary(t)
	profiles := t.TempDir()
	writeFile(t, filepath.Join(profiles, "profiles.yaml"), fmt.Sprintf(
		"kind: Profile\nname: discovery\nboot: {kernel: %s, args: [console=ttyS0]}\n---\nkind: Default\nprofile: discovery\n", discoveryKernel))
	dataDir := t.TempDir()
	d := startDaemon(t, bin, "", filepath.Join(t.TempDir(), "provisiond.log"), "--profiles", profiles, "--data-dir", dataDir)
	if _, err := d.waitHealthy(startTimeout); err != nil {
		t.Fatal(err)
	}
	token := apiToken(t, dataDir)

	macs := make([]string, discoveryMachines)
	for i := range macs {
		macs[i] = fmt.Sprintf("52:54:02:%02x:%02x:%02x", byte(i>>16), byte(i>>8), byte(i))
	}
	c := &http.Client{
		Timeout: 30 * time.Second,
		// At most one connection per client: the server admits 64 per address.
		Transport: &http.Transport{MaxIdleConns: 2 * discoveryClients, MaxIdleConnsPerHost: discoveryClients, MaxConnsPerHost: discoveryClients},
	}
	defer c.CloseIdleConnections()

	latencies := make([]time.Duration, len(macs))
	var next atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	start := time.Now()
	for range discoveryClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(macs) {
					return
				}
				t0 := time.Now()
				resp, err := c.Get(d.base + "/ipxe?mac=" + urlMAC(macs[i]))
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				latencies[i] = time.Since(t0)
				if err == nil && (resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "kernel "+d.base+discoveryKernel)) {
					err = fmt.Errorf("%s: %q", resp.Status, body)
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("/ipxe?mac=%s: %v", macs[i], err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	slices.Sort(latencies)
	t.Logf("%d discoveries from %d clients in %.2fs: %.0f/s; /ipxe latency p50 %v p99 %v max %v",
		len(macs), discoveryClients, elapsed.Seconds(), float64(len(macs))/elapsed.Seconds(),
		percentile(latencies, 0.50).Round(10*time.Microsecond), percentile(latencies, 0.99).Round(10*time.Microsecond),
		latencies[len(latencies)-1].Round(10*time.Microsecond))
	if len(failures) > 0 {
		t.Errorf("%d of %d /ipxe requests failed; first: %s", len(failures), len(macs), strings.Join(failures[:min(len(failures), 5)], "; "))
	}

	list, err := listMachines(c, d.base, token)
	if err != nil {
		t.Fatal(err)
	}
	var lost, wrong []string
	for _, mac := range macs {
		m, ok := list[mac]
		switch {
		case !ok:
			lost = append(lost, mac)
		case m.State != stateDiscovered || m.Profile != "discovery":
			wrong = append(wrong, fmt.Sprintf("%+v", m))
		}
	}
	if len(list) != len(macs) || len(lost) > 0 || len(wrong) > 0 {
		t.Errorf("the inventory holds %d machines, want exactly the %d discovered; %d lost (first %q), %d not discovered/discovery (first %q)",
			len(list), len(macs), len(lost), lost[:min(len(lost), 5)], len(wrong), wrong[:min(len(wrong), 5)])
	}

	_, errs := logProblems(d.log())
	for _, e := range errs[:min(len(errs), 10)] {
		t.Errorf("daemon logged an error: %s", e)
	}
	if err := d.stop(10 * time.Second); err != nil {
		t.Errorf("clean shutdown: %v", err)
	}
}
