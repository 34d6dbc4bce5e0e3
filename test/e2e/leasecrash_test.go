package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

const (
	crashRounds      = 3
	crashWorkers     = 8 // clients in DORA at once
	crashMinAcks     = 20
	crashMinLoad     = time.Second
	crashMaxLoad     = 3 * time.Second
	crashStepTimeout = time.Second // per DISCOVER or REQUEST
)

// TestAuthoritativeLeaseCrash SIGKILLs the authoritative DHCP server while
// relayed clients (relayClient, each a new MAC) run full DORA exchanges
// against it, crashRounds times on one data directory (and, for etcd, one
// etcd), restarting it after each kill. After every restart every address
// ACKed so far, to whichever round, must still be leased to the MAC it was
// ACKed to (GET /api/v1/leases), no address listed twice; each of those MACs
// DISCOVERing again must be offered that same address, and some of them,
// going through DORA again, ACKed it. An ACK is sent only once the lease is
// durable, so not one may be lost.
func TestAuthoritativeLeaseCrash(t *testing.T) {
	requireNetns(t)
	for _, store := range []string{"bolt", "etcd"} {
		t.Run(store, func(t *testing.T) {
			testLeaseCrash(t, store)
		})
	}
}

func testLeaseCrash(t *testing.T, store string) {
	l := newLab(t)
	loadNS := l.addLoadLink()
	spec := provisiondSpec{
		name: "provisiond", ns: l.Prov, addr: provAddr,
		profiles: writeNetworks(t, "", loadNetwork), assets: t.TempDir(), data: t.TempDir(),
		pxe: authoritativeOn("eth1"),
	}
	if store == "etcd" {
		url := l.startEtcd(l.addHost("etcd", etcdAddr), etcdAddr)
		spec.args = []string{"--store", "etcd", "--etcd-endpoints", url}
	}
	client := l.newRelayClient(loadNS, loadRelayAddr, loadProvAddr)
	acked := map[string]string{} // MAC -> the address ACKed to it
	var next atomic.Uint32       // of the MACs handed to clients
	var totalAcks, maybe int
	for round := range crashRounds {
		spec.name = fmt.Sprintf("provisiond-start%d", round+1)
		prov := l.serveProvisiond(spec)
		if round > 0 {
			checkLeasesKept(t, prov.api, client, acked, fmt.Sprintf("after kill %d", round))
		}
		r := crashLoad(t, client, prov.daemon, &next)
		for mac, ip := range r.acked {
			acked[mac] = ip
		}
		totalAcks += len(r.acked)
		maybe += r.unanswered
		for _, err := range r.errs {
			t.Errorf("round %d: %v", round+1, err)
		}
		t.Logf("round %d: SIGKILL after %.2f s of load: %d ACKs received before (%.0f DORA/s), %d REQUESTs unanswered (may or may not be leased)",
			round+1, r.took.Seconds(), len(r.acked), float64(len(r.acked))/r.took.Seconds(), r.unanswered)
	}
	spec.name = fmt.Sprintf("provisiond-start%d", crashRounds+1)
	prov := l.serveProvisiond(spec)
	checkLeasesKept(t, prov.api, client, acked, fmt.Sprintf("after kill %d", crashRounds))
	t.Logf("figure: lease durability (%s): %d SIGKILLs under DORA load, %d ACKed leases all kept (%d unanswered REQUESTs not counted)",
		store, crashRounds, totalAcks, maybe)
}

// crashRun is one round's load, until the daemon was killed.
type crashRun struct {
	acked      map[string]string // MAC -> ACKed address
	unanswered int               // REQUESTs sent that got no answer
	took       time.Duration     // from the load's start to the kill
	errs       []error           // answers no client may get (NAK, another address)
}

// crashLoad runs crashWorkers clients in DORA, each exchange with a new
// MAC, and SIGKILLs d after a random crashMinLoad to crashMaxLoad (and
// crashMinAcks ACKs), with exchanges in flight.
func crashLoad(t *testing.T, c *relayClient, d *daemon, next *atomic.Uint32) crashRun {
	t.Helper()
	r := crashRun{acked: map[string]string{}}
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	start := time.Now()
	for range crashWorkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				mac := crashMAC(next.Add(1))
				ip, err := dora(ctx, c, mac)
				mu.Lock()
				switch {
				case err == nil:
					r.acked[mac.String()] = ip
				case errors.Is(err, errNoAnswer) && ip == "":
				case errors.Is(err, errNoAnswer):
					r.unanswered++
				default:
					r.errs = append(r.errs, err)
				}
				mu.Unlock()
			}
		})
	}
	loadFor := crashMinLoad + rand.N(crashMaxLoad-crashMinLoad)
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		n := len(r.acked)
		mu.Unlock()
		if time.Since(start) >= loadFor && n >= crashMinAcks {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			t.Fatalf("only %d ACKs in 30 s of load: the server does not answer DORA (see its log)", n)
		}
	}
	d.crash(t)
	r.took = time.Since(start)
	// Exchanges in flight time out now; their late ACKs can no longer come.
	cancel()
	wg.Wait()
	return r
}

// crashMAC is the n-th client's MAC (locally administered).
func crashMAC(n uint32) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xc0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// dora runs one DORA exchange for mac and returns the ACKed address. An
// exchange that got no OFFER returns errNoAnswer and ip ""; one whose
// REQUEST got no answer errNoAnswer and the address it asked for.
func dora(ctx context.Context, c *relayClient, mac net.HardwareAddr) (ip string, err error) {
	step, cancel := context.WithTimeout(ctx, crashStepTimeout)
	offer, err := c.discover(step, mac)
	cancel()
	if err != nil {
		return "", err
	}
	offered := offer.YourIPAddr.String()
	step, cancel = context.WithTimeout(ctx, crashStepTimeout)
	defer cancel()
	reply, err := c.request(step, offer)
	if err != nil {
		return offered, err
	}
	switch {
	case reply.MessageType() != dhcpv4.MessageTypeAck:
		return "", fmt.Errorf("REQUEST of %s for offered %s answered %s %q", mac, offered, reply.MessageType(), reply.Message())
	case !reply.YourIPAddr.Equal(offer.YourIPAddr):
		return "", fmt.Errorf("%s offered %s, then ACKed %s", mac, offered, reply.YourIPAddr)
	}
	return offered, nil
}

// checkLeasesKept checks, after a restart, that every address in acked is
// still leased to its MAC, that each such MAC is offered it again, and that
// a few of them get it ACKed again.
func checkLeasesKept(t *testing.T, api *apiClient, c *relayClient, acked map[string]string, when string) {
	t.Helper()
	table := fetchLeases(t, api)
	var lost []string
	for mac, ip := range acked {
		if l, ok := table[mac]; !ok || l.IP != ip || l.State != "active" {
			lost = append(lost, fmt.Sprintf("%s ACKed %s, now %v", mac, ip, l))
		}
	}
	slices.Sort(lost)
	if len(lost) > 0 {
		t.Errorf("%s: %d of %d ACKed leases lost or changed: %v", when, len(lost), len(acked), lost[:min(len(lost), 20)])
	}

	macs := make([]string, 0, len(acked))
	for mac := range acked {
		macs = append(macs, mac)
	}
	slices.Sort(macs)
	var mu sync.Mutex
	var wrong []string
	work := make(chan string)
	var wg sync.WaitGroup
	for range crashWorkers {
		wg.Go(func() {
			for mac := range work {
				hw, _ := net.ParseMAC(mac)
				ctx, cancel := context.WithTimeout(context.Background(), 3*crashStepTimeout)
				offer, err := c.discover(ctx, hw)
				cancel()
				if err == nil && offer.YourIPAddr.String() == acked[mac] {
					continue
				}
				mu.Lock()
				if err != nil {
					wrong = append(wrong, err.Error())
				} else {
					wrong = append(wrong, fmt.Sprintf("%s holds %s, offered %s", mac, acked[mac], offer.YourIPAddr))
				}
				mu.Unlock()
			}
		})
	}
	for _, mac := range macs {
		work <- mac
	}
	close(work)
	wg.Wait()
	if len(wrong) > 0 {
		t.Errorf("%s: %d of %d DISCOVERs of a MAC that holds a lease were not offered its address: %v", when, len(wrong), len(macs), wrong[:min(len(wrong), 20)])
	}

	for _, mac := range macs[:min(len(macs), 10)] {
		hw, _ := net.ParseMAC(mac)
		ctx, cancel := context.WithTimeout(context.Background(), 3*crashStepTimeout)
		ip, err := dora(ctx, c, hw)
		cancel()
		if err != nil || ip != acked[mac] {
			t.Errorf("%s: DORA again of %s (holding %s): ACKed %q, %v", when, mac, acked[mac], ip, err)
		}
	}
	t.Logf("%s: %d leases listed; %d ACKed so far all checked, re-offered, 10 re-ACKed", when, len(table), len(acked))
}
