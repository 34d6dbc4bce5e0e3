package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/testutil"
	"github.com/provisiond/provisiond/test/bmcsim"
)

// One bulk power-cycle of a 40-machine rack whose BMCs are real Redfish
// services driven by bmclib, 5 of them hung: every answering machine cycles,
// the hung ones fail with a timeout, and the API answers other requests
// throughout.
func TestBulkPowerWithHungBMCs(t *testing.T) {
	if testing.Short() {
		t.Skip("takes the BMC timeout")
	}
	const machines, hung, timeout = 40, 5, 3 * time.Second
	t.Setenv("PROVISIOND_TEST_BMC", "admin:rack-secret")
	var doc strings.Builder
	doc.WriteString("kind: Profile\nname: p\nboot: {kernel: /assets/k}\n")
	chassis := make([]*bmcsim.MemChassis, machines)
	for i := range machines {
		var addr string
		if i%(machines/hung) == 0 {
			addr = testutil.SilentAddr(t)
		} else {
			chassis[i] = bmcsim.NewMemChassis(i%2 == 0)
			_, addr = bmcsim.StartRedfish(t, chassis[i], "admin", "rack-secret")
		}
		fmt.Fprintf(&doc, "---\nkind: Machine\nname: n%02d\nmatch: {mac: \"52:54:00:00:01:%02x\"}\nlabels: {rack: r1}\nprofile: p\nbmc: {address: \"redfish://%s\", credentials: \"env:PROVISIOND_TEST_BMC\"}\n", i, i, addr)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rack.yaml"), []byte(doc.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	core := boot.New(boot.Config{ProfilesDir: dir, AdvertiseURL: "http://127.0.0.1:1", Store: db,
		BMC: bmc.New(bmc.Options{Timeout: timeout, Parallel: 16})})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	d := serveAPI(t, core)

	// Meanwhile, an operator keeps listing machines.
	stop := make(chan struct{})
	var slowest time.Duration
	var polls int
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			req, _ := http.NewRequest(http.MethodGet, d.url+"/api/v1/machines", nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("GET /machines during the bulk call: %v", err)
				return
			}
			resp.Body.Close()
			slowest = max(slowest, time.Since(start))
			polls++
		}
	}()

	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(d.args([]string{"power", "cycle", "-l", "rack=r1"}), &stdout, &stderr)
	wall := time.Since(start)
	close(stop)
	<-polled

	if code != 1 || !strings.Contains(stderr.String(), fmt.Sprintf("%d of %d machines failed", hung, machines)) {
		t.Fatalf("exit %d, stderr %q; want 1 and %d failures", code, stderr.String(), hung)
	}
	for i := range machines {
		name := fmt.Sprintf("n%02d", i)
		line := lineWith(stdout.String(), name+" ")
		if chassis[i] == nil {
			if !strings.Contains(line, "failed") || !strings.Contains(line, "did not answer in time") {
				t.Errorf("hung %s: %q; want a timeout", name, line)
			}
			continue
		}
		if on, _ := chassis[i].Power(); !on || len(chassis[i].Boots()) != 1 || !strings.Contains(line, " ok ") {
			t.Errorf("%s: on=%v boots=%d line %q; want it cycled (or, if it was off, powered on) once", name, on, len(chassis[i].Boots()), line)
		}
	}
	if wall > timeout+5*time.Second {
		t.Errorf("bulk call took %s; the hung BMCs should cost one timeout (%s), in parallel", wall, timeout)
	}
	if polls == 0 || slowest > time.Second {
		t.Errorf("GET /machines during the bulk call: %d polls, slowest %s", polls, slowest)
	}
	t.Logf("40 machines, 5 hung BMCs: bulk cycle took %s (BMC timeout %s); %d concurrent GET /machines, slowest %s",
		wall.Round(time.Millisecond), timeout, polls, slowest.Round(time.Microsecond))

	evs, err := db.Events(context.Background(), store.EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	powerEvents := slices.DeleteFunc(slices.Clone(evs), func(e store.Event) bool { return e.Type != boot.EventPower })
	if len(powerEvents) != machines {
		t.Errorf("%d power events; want one per machine", len(powerEvents))
	}
	for _, e := range evs {
		if strings.Contains(fmt.Sprint(e), "rack-secret") {
			t.Errorf("event shows the BMC password: %+v", e)
		}
	}
}

func lineWith(out, s string) string {
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, s) {
			return l
		}
	}
	return ""
}
