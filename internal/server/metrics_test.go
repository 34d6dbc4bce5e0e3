package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/metrics"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/testutil"
)

// A boot-once install profile whose config phones home, and one machine.
const (
	installProfiles = `kind: Profile
name: install
boot: {kernel: /assets/k}
config: {butane: install.bu}
once: true
---
kind: Machine
name: node1
match: {mac: "52:54:00:00:00:01"}
profile: install
`
	installButane = `variant: flatcar
version: 1.0.0
systemd:
  units:
    - name: phone-home.service
      enabled: true
      contents: |
        [Service]
        Type=oneshot
        ExecStart=/usr/bin/curl -fsS -X POST -H "Authorization: Bearer {{ .provisiond.token }}" {{ .provisiond.installed_url }}
        [Install]
        WantedBy=multi-user.target
`
	node1MAC  = "52:54:00:00:00:01"
	node1UUID = "4c4c4544-0042-3510-8052-b7c04f4e3232"
)

// installServer serves installProfiles with the API (for phone-home) and
// metrics, logging JSON into logs.
func installServer(t *testing.T, logs io.Writer) (*httptest.Server, *metrics.Metrics) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"p.yaml": installProfiles, "install.bu": installButane} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db := memstore.New(store.Options{})
	// What node1's DHCP showed: its UUID counts only from there.
	if err := db.Bind(context.Background(), store.Binding{MAC: node1MAC, UUID: node1UUID}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := metrics.New(metrics.Config{Machines: db, Logger: log})
	// Requests come from 127.0.0.1, which the neighbour table says is node1.
	nb := testutil.Neighbors{"127.0.0.1": node1MAC}
	core := boot.New(boot.Config{ProfilesDir: dir, AdvertiseURL: base, Store: db, Neighbors: nb, Observer: m, Logger: log})
	if err := core.Reload(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(New(Config{
		Core:         core,
		AdvertiseURL: base,
		Binaries:     fakeBinaries{},
		API:          api.New(api.Config{Backend: core, Token: "operator-token", Logger: log}),
		Metrics:      m,
		Logger:       log,
	}).Handler())
	t.Cleanup(ts.Close)
	return ts, m
}

// do sends one request and returns its status.
func do(t *testing.T, ts *httptest.Server, method, path, token string) (int, string) {
	t.Helper()
	hdr := map[string]string{}
	if token != "" {
		hdr["Authorization"] = "Bearer " + token
	}
	return send(t, ts, method, path, hdr)
}

// send sends one request with headers and returns its status and body.
func send(t *testing.T, ts *httptest.Server, method, path string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

var tokenParam = regexp.MustCompile(`token=([A-Z2-7]+)`)

// sessionToken is the token in the config URL of an /ipxe script.
func sessionToken(t *testing.T, script string) string {
	t.Helper()
	m := tokenParam.FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no token in\n%s", script)
	}
	return m[1]
}

// TestMetricsEndpoint drives real requests, then scrapes /metrics over HTTP
// the way Prometheus does: the counters moved, labelled by route pattern,
// and nothing a client sent (a MAC, a UUID, a path) became a label.
func TestMetricsEndpoint(t *testing.T) {
	ts, _ := installServer(t, io.Discard)
	ipxe := "/ipxe?mac=52-54-00-00-00-01&uuid=" + node1UUID
	steps := []struct {
		method, path, token string
		code                int
	}{
		{http.MethodGet, "/boot.ipxe?mac=52-54-00-00-00-01", "", 200},
		{http.MethodGet, "/ignition?mac=52-54-00-00-00-01", "", 403}, // no session yet
		{http.MethodGet, ipxe, "", 200},
		{http.MethodGet, "/ignition?mac=52-54-00-00-00-01", "", 403}, // no token
		{http.MethodGet, "/52:54:00:00:00:01", "", 404},
		{http.MethodGet, "/assets/52-54-00-00-00-01/" + node1UUID, "", 404},
		{http.MethodGet, "/api/v1/machines/52-54-00-00-00-01", "", 401},
		{http.MethodGet, "/api/v1/machines/52-54-00-00-00-01", "operator-token", 200},
		{http.MethodGet, "/healthz", "", 200},
	}
	for _, s := range steps {
		if code, body := do(t, ts, s.method, s.path, s.token); code != s.code {
			t.Fatalf("%s %s = %d %s; want %d", s.method, s.path, code, body, s.code)
		}
	}
	code, scrape := do(t, ts, http.MethodGet, "/metrics", "")
	if code != 200 {
		t.Fatalf("GET /metrics = %d\n%s", code, scrape)
	}
	for _, want := range []string{
		`provisiond_http_requests_total{code="200",route="/boot.ipxe"} 1`,
		`provisiond_http_requests_total{code="200",route="/ipxe"} 1`,
		`provisiond_http_requests_total{code="403",route="/ignition"} 2`,
		`provisiond_http_requests_total{code="404",route="unmatched"} 1`,
		`provisiond_http_requests_total{code="404",route="/assets/*"} 1`,
		`provisiond_http_requests_total{code="401",route="/api/v1/machines/{id}"} 1`,
		`provisiond_http_requests_total{code="200",route="/api/v1/machines/{id}"} 1`,
		`provisiond_http_request_duration_seconds_count{route="/ipxe"} 1`,
		`provisiond_configs_refused_total{reason="no-session"} 1`,
		`provisiond_configs_refused_total{reason="token-missing"} 1`,
		`provisiond_configs_refused_total{reason="already-served"} 0`,
		`provisiond_profile_reloads_total{result="ok"} 1`,
		`provisiond_machines{state="provisioning"} 1`,
		`provisiond_machines{state="wiped"} 0`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	for _, secret := range []string{node1MAC, "52-54-00-00-00-01", "525400000001", node1UUID, "node1"} {
		if strings.Contains(strings.ToLower(scrape), secret) {
			t.Errorf("scrape contains %q", secret)
		}
	}
	// The scrape itself is counted, for the next one.
	if _, again := do(t, ts, http.MethodGet, "/metrics", ""); !strings.Contains(again, `provisiond_http_requests_total{code="200",route="/metrics"} 1`) {
		t.Error("a scrape was not counted")
	}
}

// records parses JSON log lines.
func records(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %s: %v", sc.Bytes(), err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// TestBootStepLogs follows one machine through a whole HTTP boot (script,
// config, phone-home, then the next boot's binary) in JSON logs: each step has exactly one info line
// about it, with its message and the machine's mac, uuid and machine name, so
// `jq 'select(.mac=="52:54:00:00:00:01")'` tells the story.
func TestBootStepLogs(t *testing.T) {
	logs := &testutil.Buffer{}
	ts, _ := installServer(t, logs)
	logs.Take() // startup
	var token string
	for _, step := range []struct {
		name, msg string
		run       func() (int, string)
	}{
		{"script", "script: boot profile", func() (int, string) {
			code, body := do(t, ts, http.MethodGet, "/ipxe?mac=52-54-00-00-00-01&uuid="+node1UUID+"&arch=x86_64", "")
			if code == 200 {
				token = sessionToken(t, body)
			}
			return code, body
		}},
		{"config", "config served", func() (int, string) {
			return do(t, ts, http.MethodGet, "/ignition?mac=52-54-00-00-00-01&uuid="+node1UUID+"&token="+token, "")
		}},
		{"phone-home", "phone-home: installed", func() (int, string) {
			return do(t, ts, http.MethodPost, "/api/v1/machines/52-54-00-00-00-01/installed", token)
		}},
		// The next UEFI HTTP boot's first request names no machine: the
		// core puts the address to one.
		{"nbp", "ipxe binary served", func() (int, string) {
			return do(t, ts, http.MethodGet, "/nbp/ipxe.efi", "")
		}},
	} {
		t.Run(step.name, func(t *testing.T) {
			if code, body := step.run(); code != 200 {
				t.Fatalf("%s = %d %s", step.name, code, body)
			}
			var infos []map[string]any
			for _, rec := range records(t, logs.Take()) {
				if rec["level"] == "INFO" {
					infos = append(infos, rec)
				}
			}
			if len(infos) != 1 {
				t.Fatalf("%d info lines; want exactly one: %v", len(infos), infos)
			}
			rec := infos[0]
			if rec["msg"] != step.msg || rec["mac"] != node1MAC || rec["uuid"] != node1UUID || rec["machine"] != "node1" {
				t.Errorf("line %v; want msg %q with mac %s, uuid %s, machine node1", rec, step.msg, node1MAC, node1UUID)
			}
		})
	}
}
