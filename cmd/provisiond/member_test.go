package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// Three provisiond hosts and nothing else: three serve processes, each
// running an etcd member, form the cluster their store lives in. A sighting
// on one is in another's API; with one killed, the other two still serve
// and write.
func TestThreeInstancesFormTheirCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three daemons")
	}
	bin := testutil.Binary(t)
	profiles := t.TempDir()
	if err := os.WriteFile(filepath.Join(profiles, "p.yaml"), []byte("kind: Profile\nname: live\nboot: {kernel: /assets/k}\n---\nkind: Default\nprofile: live\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const token = "operator-token-of-the-cluster"
	shared := []string{"--profiles", profiles, "--trust-loopback", "--log-level", "warn",
		"--api-token-file", writeFile(t, "api-token", token), "--secret-key-file", filepath.Join(t.TempDir(), "secret-key")}
	const n = 3
	peers := make([]string, n)
	var initial []string
	for i := range n {
		peers[i] = "http://" + testutil.FreeAddr(t)
		initial = append(initial, fmt.Sprintf("e%d=%s", i, peers[i]))
	}
	hosts := make([]*host, n)
	for i := range n {
		hosts[i] = &host{base: "http://" + testutil.FreeAddr(t), args: append(slices.Clone(shared),
			"--data-dir", t.TempDir(), "--http-addr", "", "--etcd-name", fmt.Sprintf("e%d", i),
			"--etcd-peer-url", peers[i], "--etcd-client-url", "http://"+testutil.FreeAddr(t),
			"--etcd-initial-cluster", strings.Join(initial, ","))}
		hosts[i].args[slices.Index(hosts[i].args, "--http-addr")+1] = strings.TrimPrefix(hosts[i].base, "http://")
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, h := range hosts {
		h.start(t, bin)
		wg.Go(func() { h.waitHealthy(t, time.Minute) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("three instances formed their cluster and answer in %v", time.Since(start).Round(time.Millisecond))

	sighted := func(h *host, mac string) {
		t.Helper()
		if code, body := h.get(t, "/ipxe?mac="+mac, ""); code != http.StatusOK {
			t.Fatalf("%s /ipxe?mac=%s = %d %s", h.base, mac, code, body)
		}
	}
	known := func(h *host, mac string) {
		t.Helper()
		if code, body := h.get(t, "/api/v1/machines/"+mac, token); code != http.StatusOK || !strings.Contains(body, strings.ReplaceAll(mac, "-", ":")) {
			t.Errorf("%s /api/v1/machines/%s = %d %s; want the machine", h.base, mac, code, body)
		}
	}
	sighted(hosts[0], "52-54-00-00-00-01")
	known(hosts[2], "52-54-00-00-00-01")

	hosts[0].kill(t)
	start = time.Now()
	for _, h := range hosts[1:] {
		h.waitHealthy(t, 30*time.Second) // a linearizable read: a leader among the two left
	}
	t.Logf("two instances answer %v after the third's kill", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	sighted(hosts[1], "52-54-00-00-00-02")
	sighted(hosts[2], "52-54-00-00-00-03")
	t.Logf("two sightings written after the kill in %v", time.Since(start).Round(time.Millisecond))
	for _, h := range hosts[1:] {
		for _, mac := range []string{"52-54-00-00-00-01", "52-54-00-00-00-02", "52-54-00-00-00-03"} {
			known(h, mac)
		}
	}
}

// host is one provisiond serve process.
type host struct {
	base string
	args []string
	cmd  *exec.Cmd
	logs testutil.Buffer
	done chan struct{}
}

func (h *host) start(t *testing.T, bin string) {
	t.Helper()
	h.cmd = exec.Command(bin, append([]string{"serve"}, h.args...)...)
	h.cmd.Stdout, h.cmd.Stderr = &h.logs, &h.logs
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.done = make(chan struct{})
	go func() {
		_ = h.cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() {
		h.kill(t)
		if t.Failed() {
			t.Logf("%s log:\n%s", h.base, h.logs.String())
		}
	})
}

// kill sends SIGKILL, a host's crash, and waits for the exit.
func (h *host) kill(t *testing.T) {
	_ = h.cmd.Process.Kill()
	<-h.done
}

// waitHealthy waits until /healthz answers 200: the store (a linearizable
// etcd read) works.
func (h *host) waitHealthy(t *testing.T, limit time.Duration) {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-h.done:
			t.Errorf("%s exited before answering", h.base)
			return
		default:
		}
		if resp, err := client.Get(h.base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Errorf("%s /healthz not OK within %v", h.base, limit)
}

func (h *host) get(t *testing.T, path, token string) (int, string) {
	t.Helper()
	return send(t, http.MethodGet, h.base+path, token)
}

// send sends a bodiless request to url, with token as its bearer token if
// not "", and returns the answer's status and body.
func send(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The member flags refuse what cannot work, each in one clear line, and
// --etcd-name makes etcd through this member the default store.
func TestMemberFlags(t *testing.T) {
	const peer = "http://127.0.0.1:2380"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd-name", "e0"}, "--etcd-name needs --etcd-peer-url URL"},
		{[]string{"--etcd-peer-url", peer}, "--etcd-peer-url needs --etcd-name, which runs the embedded etcd member"},
		{[]string{"--etcd-data-dir", "d", "--etcd-initial-cluster", "e0=" + peer, "--etcd-peer-key", "k.pem"}, "--etcd-initial-cluster, --etcd-data-dir and --etcd-peer-key need --etcd-name, which runs"},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", peer, "--store", "bolt"}, "cannot go with --store bolt"},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", "127.0.0.1:2380"}, `--etcd-peer-url "127.0.0.1:2380": want a URL such as http://10.0.0.1:2380`},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", peer, "--etcd-client-url", "http://127.0.0.1"}, `--etcd-client-url "http://127.0.0.1": want a URL such as http://10.0.0.1:2379`},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", peer, "--etcd-initial-cluster", "e1=http://10.0.0.2:2380,e2=http://10.0.0.3:2380"}, "lacks this member, --etcd-name e0"},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", peer, "--etcd-initial-cluster", "e0=http://10.0.0.1:2380,e1=http://10.0.0.2:2380"}, "gives e0=http://10.0.0.1:2380, but --etcd-peer-url is http://127.0.0.1:2380"},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", peer, "--etcd-initial-cluster", "e0=" + peer + ",e1"}, "want NAME=URL[,NAME=URL...]"},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", peer, "--etcd-initial-cluster", "e0=" + peer + ",e0=http://10.0.0.2:2380"}, "names e0 twice"},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", peer, "--etcd-initial-cluster-state", "old"}, `"old": want new or existing`},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", "https://127.0.0.1:2380"}, "https needs --etcd-peer-cacert, --etcd-peer-cert and --etcd-peer-key"},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", peer, "--etcd-peer-cert", "c.pem"}, "--etcd-peer-cacert, --etcd-peer-cert and --etcd-peer-key go together"},
		{[]string{"--etcd-name", "e0", "--etcd-peer-url", peer, "--etcd-peer-cacert", "ca.pem", "--etcd-peer-cert", "c.pem", "--etcd-peer-key", "k.pem"}, "with --etcd-peer-cacert, --etcd-peer-cert and --etcd-peer-key, use https"},
	} {
		_, err := parseServe(append([]string{"--profiles", t.TempDir(), "--http-addr", "127.0.0.1:0"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errUsage) {
			t.Errorf("serve %q: %v; want a usage error with %q", tc.args, err, tc.want)
		}
	}

	data := t.TempDir()
	cfg, err := parseServe([]string{"--profiles", t.TempDir(), "--http-addr", "127.0.0.1:0", "--data-dir", data, "--etcd-name", "e0", "--etcd-peer-url", peer})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Store
	if s.Backend != backendEtcd || !slices.Equal(s.Endpoints, []string{"http://127.0.0.1:2379"}) || s.Member.DataDir != filepath.Join(data, "etcd") || s.Member.InitialCluster != "e0="+peer || s.Member.State != "new" {
		t.Errorf("defaults with --etcd-name: %+v", s)
	}
	cfg, err = parseServe([]string{"--profiles", t.TempDir(), "--http-addr", "127.0.0.1:0", "--etcd-name", "e0", "--etcd-peer-url", peer, "--store", "etcd", "--etcd-endpoints", "http://10.0.0.1:2379,http://10.0.0.2:2379"})
	if err != nil || len(cfg.Store.Endpoints) != 2 {
		t.Errorf("--etcd-endpoints given with --etcd-name: %v, %v; want them kept", cfg.Store.Endpoints, err)
	}
}
