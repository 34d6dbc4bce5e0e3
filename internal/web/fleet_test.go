package web_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/bmc"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/server"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/web"
	"github.com/provisiond/provisiond/test/bmcsim"
)

const (
	testToken = "dashboard-test-token-0123456789"
	node1MAC  = "52:54:00:00:00:01"
	strayMAC  = "52:54:00:00:00:99"
)

// fleet is a provisiond HTTP side over a store and a real boot core, with node1's
// BMC a Redfish service that bmclib drives.
type fleet struct {
	url     string
	dir     string // the profiles directory
	db      store.Store
	core    *boot.Core
	chassis *bmcsim.MemChassis
}

// startFleet is a fleet over an in-memory store, with extra appended to its
// profiles.
func startFleet(t testing.TB, extra string) *fleet {
	t.Helper()
	return startFleetOn(t, extra, memstore.New(store.Options{}))
}

// boltStore is a real bbolt store, for the benchmarks, which measure it.
func boltStore(t testing.TB) *boltstore.DB {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(t.TempDir(), "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// startFleetOn is startFleet over db.
func startFleetOn(t testing.TB, extra string, db store.Store) *fleet {
	t.Helper()
	chassis := bmcsim.NewMemChassis(true)
	_, bmcAddr := bmcsim.StartRedfish(t, chassis, "admin", "bmc-secret")
	dir := t.TempDir()
	cred := filepath.Join(t.TempDir(), "node1-bmc")
	writeFile(t, cred, "admin:bmc-secret")
	writeFile(t, filepath.Join(dir, "fleet.yaml"), fmt.Sprintf(`kind: Profile
name: linux
once: true
boot: {kernel: /assets/vmlinuz, initrd: [/assets/initrd.img], args: [console=ttyS0]}
config: {template: install.sh}
---
kind: Profile
name: wipe
boot: {kernel: /assets/vmlinuz, args: [wipe]}
config: {template: install.sh}
---
kind: Profile
name: discovery
boot: {kernel: /assets/vmlinuz, args: [discovery]}
---
kind: Default
profile: discovery
---
kind: Machine
name: node1
match: {mac: "%s"}
labels: {rack: r1}
profile: linux
metadata: {hostname: node1.lab}
bmc: {address: "redfish://%s", credentials: "file:%s"}
%s`, node1MAC, bmcAddr, cred, extra))
	writeFile(t, filepath.Join(dir, "install.sh"), "#!/bin/sh\n# {{ .metadata.hostname }}\ncurl -X POST -H 'Authorization: Bearer {{ .provisiond.token }}' {{ .provisiond.installed_url }}\n")

	ts := httptest.NewUnstartedServer(nil)
	base := "http://" + ts.Listener.Addr().String()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	core := boot.New(boot.Config{
		ProfilesDir: dir, AdvertiseURL: base, Store: db, WipeProfile: "wipe",
		BMC:    bmc.New(bmc.Options{Timeout: 10 * time.Second}),
		Logger: log,
	})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = core.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	dash, err := web.New(web.Config{Backend: core, Token: testToken, PollInterval: 200 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = server.New(server.Config{
		Core: core, AdvertiseURL: base,
		API:       api.New(api.Config{Backend: core, Token: testToken}),
		Dashboard: dash.Routes,
	}).Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return &fleet{url: base, dir: dir, db: db, core: core, chassis: chassis}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// get is a machine's boot-path request.
func (f *fleet) get(t testing.TB, path string) string {
	t.Helper()
	res, err := http.Get(f.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, res.Status, body)
	}
	return string(body)
}

// install plays node1 through a whole install: its script, its config, and
// the phone-home the config tells it to send.
func (f *fleet) install(t testing.TB, mac string) {
	t.Helper()
	script := f.get(t, "/ipxe?mac="+mac+"&arch=x86_64")
	token := regexp.MustCompile(`token=([A-Z0-9]+)`).FindStringSubmatch(script)
	if token == nil {
		t.Fatalf("no session token in the script:\n%s", script)
	}
	config := f.get(t, "/config?mac="+mac+"&token="+token[1])
	m := regexp.MustCompile(`Bearer (\S+)' (\S+)`).FindStringSubmatch(config)
	if m == nil {
		t.Fatalf("no phone-home in the config:\n%s", config)
	}
	req, _ := http.NewRequest(http.MethodPost, m[2], nil)
	req.Header.Set("Authorization", "Bearer "+m[1])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("phone-home: %s", res.Status)
	}
}
