package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/store/etcdstore/etcdtest"
)

// Two instances on one etcd are one provisioning service: a session opened
// on one is honoured on the other, the config is served once between them,
// and a phone-home on one makes the other boot the machine from its disk.
func TestTwoInstancesShareEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member and two daemons")
	}
	member := etcdtest.StartT(t)
	profiles := t.TempDir()
	for name, body := range map[string]string{
		"p.yaml": "kind: Profile\nname: install\nonce: true\nboot: {kernel: /assets/k}\nconfig: {template: install.sh}\n" +
			"---\nkind: Machine\nname: n1\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: install\n",
		"install.sh": "#!/bin/sh\n# {{ .machine.name }}\n",
	} {
		if err := os.WriteFile(filepath.Join(profiles, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Every instance is given the same token and sealing key.
	shared := []string{"--profiles", profiles, "--store", "etcd", "--etcd-endpoints", member.Endpoint, "--etcd-prefix", "/test-two",
		"--api-token-file", writeFile(t, "api-token", "operator-token-of-the-cluster"), "--secret-key-file", filepath.Join(t.TempDir(), "secret-key")}
	a, err := startDaemon(t, t.TempDir(), shared...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := startDaemon(t, t.TempDir(), shared...)
	if err != nil {
		t.Fatal(err)
	}

	if _, h := b.get(t, "/healthz"); !strings.Contains(h, `"backend":"etcd"`) || !strings.Contains(h, `"prefix":"/test-two","ok":true`) {
		t.Errorf("/healthz does not report the etcd store answering: %s", h)
	}
	code, script := a.get(t, "/ipxe?mac=52-54-00-00-00-01")
	tok := regexp.MustCompile(`token=([A-Z2-7]+)`).FindStringSubmatch(script)
	if code != http.StatusOK || tok == nil {
		t.Fatalf("A /ipxe = %d\n%s", code, script)
	}
	if code, body := b.get(t, "/config?mac=52-54-00-00-00-01&token="+tok[1]); code != http.StatusOK || !strings.Contains(body, "# n1") {
		t.Fatalf("B /config with A's session = %d %q; want n1's config", code, body)
	}
	if code, body := a.get(t, "/config?mac=52-54-00-00-00-01&token="+tok[1]); code != http.StatusForbidden || !strings.Contains(body, "already-served") {
		t.Errorf("A /config after B served it = %d %q; want 403 already-served", code, body)
	}
	req, _ := http.NewRequest(http.MethodPost, b.base+"/api/v1/machines/52-54-00-00-00-01/installed", nil)
	req.Header.Set("Authorization", "Bearer "+tok[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("phone-home on B = %d %s", resp.StatusCode, body)
	}
	if code, script := a.get(t, "/ipxe?mac=52-54-00-00-00-01"); code != http.StatusOK || !strings.Contains(script, "\nexit") {
		t.Errorf("A /ipxe after the phone-home on B = %d\n%s\nwant the boot from disk", code, script)
	}
	// Both APIs show the same machine.
	for _, d := range []*daemon{a, b} {
		req, _ := http.NewRequest(http.MethodGet, d.base+"/api/v1/machines/n1", nil)
		req.Header.Set("Authorization", "Bearer operator-token-of-the-cluster")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"state": "installed"`) {
			t.Errorf("%s /api/v1/machines/n1 = %d %s; want installed", d.base, resp.StatusCode, body)
		}
	}
}

// The store flags refuse what cannot work before anything is created.
func TestStoreFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "sqlite"}, `--store "sqlite": want bolt or etcd`},
		{[]string{"--store", "etcd"}, "--store etcd needs --etcd-endpoints"},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:2379"}, "--etcd-endpoints needs --store etcd"},
		{[]string{"--etcd-cacert", "ca.pem", "--etcd-key", "k.pem"}, "--etcd-cacert and --etcd-key need --store etcd"},
		{[]string{"--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379", "--etcd-cert", "c.pem"}, "--etcd-cert and --etcd-key go together"},
	} {
		_, err := parseServe(append([]string{"--profiles", t.TempDir(), "--http-addr", "127.0.0.1:0"}, tc.args...))
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %q: %v; want %q", tc.args, err, tc.want)
		}
	}
}
