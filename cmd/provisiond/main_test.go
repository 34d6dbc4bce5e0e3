package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// testHost is a host with no provisiond installed, so that no test talks to
// a daemon the machine running the tests may have.
var testHost = hostPaths{envFile: "/nonexistent/provisiond.env", dataDir: "/nonexistent"}

// parseServe reads serve's command line (and environment) into a config,
// as the serve command does before it runs.
func parseServe(args []string) (serveConfig, error) {
	fs := newFlagSet()
	cfg := declareServeFlags(fs)
	pos, err := fs.parse(args)
	if err != nil {
		return *cfg, err
	}
	err = cfg.finish(pos)
	return *cfg, err
}

func runCmd(args ...string) (int, string, string) {
	return runOn(testHost, args...)
}

// runOn runs the command line args on a host whose daemon keeps its
// settings at h.
func runOn(h hostPaths, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := (&cli{stdout: &out, stderr: &errb, host: h}).run(args)
	return code, out.String(), errb.String()
}

func TestValidateCommand(t *testing.T) {
	code, out, _ := runCmd("validate", "../../examples")
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("validate examples = %d %q; want 0 ok", code, out)
	}

	dir := t.TempDir()
	broken := "kind: Profile\nname: p\nboot: {kernel: /assets/k}\n---\nkind: Machine\nname: a\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n---\nkind: Machine\nname: b\nmatch: {mac: \"52-54-00-00-00-01\"}\nprofile: nope\n"
	if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd("validate", dir)
	want := []string{
		filepath.Join(dir, "all.yaml") + `:10: machine "b" claims MAC 52:54:00:00:00:01, already claimed by machine "a" at all.yaml:5`,
		filepath.Join(dir, "all.yaml") + `:10: machine "b" uses unknown profile "nope"`,
	}
	if code != 1 {
		t.Fatalf("validate broken = %d; want 1", code)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("validate output lacks %q:\n%s", w, out)
		}
	}
	if !strings.Contains(errOut, "2 problem(s)") {
		t.Errorf("stderr = %q; want a count", errOut)
	}
	if code, _, _ := runCmd("validate"); code != 2 {
		t.Errorf("validate without DIR = %d; want usage exit 2", code)
	}
}

func TestExplainCommand(t *testing.T) {
	code, out, errOut := runCmd("explain", "../../examples", "--mac", "52:54:00:00:00:02")
	if code != 0 {
		t.Fatalf("explain = %d %s", code, errOut)
	}
	for _, w := range []string{"machine:  node2 (machines.yaml:", "profile:  fcos-live", "matches mac 52:54:00:00:00:02", "initrd --name fedora-coreos-live-rootfs.x86_64.img"} {
		if !strings.Contains(out, w) {
			t.Errorf("explain output lacks %q:\n%s", w, out)
		}
	}
	if code, _, _ := runCmd("explain", "../../examples"); code != 2 {
		t.Errorf("explain without --mac = %d; want 2", code)
	}
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("PROVISIOND_PROFILES", "/srv/profiles")
	t.Setenv("PROVISIOND_HTTP_ADDR", "127.0.0.1:9999")
	cfg, err := parseServe([]string{"--data-dir", "/tmp/d"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProfilesDir != "/srv/profiles" || cfg.HTTPAddr != "127.0.0.1:9999" || cfg.AdvertiseURL != "http://127.0.0.1:9999" || cfg.AssetsDir != "/tmp/d/assets" {
		t.Fatalf("config from env = %+v", cfg)
	}
	// A flag on the command line beats the environment.
	cfg, err = parseServe([]string{"--profiles", "/x"})
	if err != nil || cfg.ProfilesDir != "/x" {
		t.Fatalf("flag over env = %+v, %v", cfg, err)
	}
}

// TestBinaryHotReload starts the real binary, edits a profile on disk and sees the
// change served; then a broken edit leaves the last good set serving.
func TestBinaryHotReload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := testutil.Binary(t)
	profiles := t.TempDir()
	write := func(content string) {
		t.Helper()
		// Write then rename, as git checkout does.
		tmp := filepath.Join(profiles, ".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(profiles, "all.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	const good = "kind: Profile\nname: p\nboot: {kernel: /assets/%s}\n---\nkind: Machine\nname: a\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n"
	write(fmt.Sprintf(good, "v1"))

	addr := testutil.FreeAddr(t)
	var logs testutil.Buffer
	dataDir := t.TempDir()
	cmd := exec.Command(bin, "serve", "--profiles", profiles, "--data-dir", dataDir, "--http-addr", addr, "--reload-debounce", "200ms", "--trust-loopback")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	script := func() string {
		resp, err := http.Get(base + "/ipxe?mac=52-54-00-00-00-01")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(what string, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < 15*time.Second {
			if cond() {
				return time.Since(start)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s", what)
		return 0
	}
	waitFor("first script", func() bool { return strings.Contains(script(), "/assets/v1") })

	write(fmt.Sprintf(good, "v2"))
	took := waitFor("edited profile to be served", func() bool { return strings.Contains(script(), "/assets/v2") })
	t.Logf("edit to served: %v (target: under 2 s)", took)

	write(fmt.Sprintf(good, "v3") + "---\nkind: Machine\nname: b\nmatch: {mac: \"52:54:00:00:00:01\"}\nprofile: p\n")
	var health struct {
		Status   string
		Profiles struct {
			LastReloadErrors []string `json:"last_reload_errors"`
		}
	}
	waitFor("failed reload in /healthz", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&health) == nil && health.Status == "degraded"
	})
	if len(health.Profiles.LastReloadErrors) != 1 || !strings.HasPrefix(health.Profiles.LastReloadErrors[0], "all.yaml:10: ") {
		t.Errorf("healthz errors = %q; want one all.yaml:10: problem", health.Profiles.LastReloadErrors)
	}
	if s := script(); !strings.Contains(s, "/assets/v2") {
		t.Errorf("after a broken edit /ipxe = %q; want the last good (v2) script", s)
	}
	if !strings.Contains(logs.String(), "all.yaml:10:") {
		t.Errorf("the reload error is not logged with file:line")
	}
	// Prometheus scrapes without a token; the failed reload is counted.
	if resp, err := http.Get(base + "/metrics"); err != nil {
		t.Error(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `provisiond_profile_reloads_total{result="error"} 1`) ||
			!strings.Contains(string(b), `provisiond_machines{state="provisioning"} 1`) {
			t.Errorf("GET /metrics = %d:\n%s", resp.StatusCode, b)
		}
	}

	// A second daemon on the same data dir fails fast and says why.
	start := time.Now()
	out, err := exec.Command(bin, "serve", "--profiles", profiles, "--data-dir", dataDir, "--http-addr", "127.0.0.1:0").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "is another provisiond running on this data dir?") {
		t.Errorf("second daemon on the same data dir: %v\n%s\nwant exit 1 naming the lock", err, out)
	}
	t.Logf("second daemon gave up after %v", time.Since(start).Round(time.Millisecond))
	if strings.Contains(logs.String(), "api-token") && strings.Contains(logs.String(), readFile(t, filepath.Join(dataDir, "api-token"))) {
		t.Error("the daemon logged its API token")
	}
	key := filepath.Join(dataDir, "secret-key")
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret key file: %v, %v; want one generated with mode 0600", fi, err)
	} else if strings.Contains(logs.String(), readFile(t, key)) || !strings.Contains(logs.String(), key) {
		t.Error("the daemon logged its secret key, or not where it is")
	}

	// A --wipe-profile that names no Profile is refused at start.
	out, err = exec.Command(bin, "serve", "--profiles", "../../examples", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--wipe-profile", "nope").CombinedOutput()
	if !errors.As(err, &exit) || !strings.Contains(string(out), `--wipe-profile "nope": no Profile of that name`) {
		t.Errorf("serve --wipe-profile nope: %v\n%s", err, out)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestServeFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, // no --profiles
		{"--profiles", "x", "--http-addr", "8080"}, // not host:port
		{"--profiles", "x", "--advertise-url", "ftp://h"},
		{"--profiles", "x", "extra"},
	} {
		if _, err := parseServe(args); !errors.Is(err, errUsage) {
			t.Errorf("parseServe(%q) = %v; want a usage error", args, err)
		}
	}
}

func TestMain(m *testing.M) { testutil.Main(m) }

// A labels-only Machine whose profile has a config loads, with a warning
// that its config will never be served: labels identify no one.
func TestValidateWarnsLabelsOnlyConfig(t *testing.T) {
	dir := t.TempDir()
	docs := "kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {template: t.sh}\n---\nkind: Profile\nname: plain\nboot: {kernel: /assets/k}\n" +
		"---\nkind: Machine\nname: rack\nmatch: {labels: {rack: r1}}\nprofile: p\n---\nkind: Machine\nname: rack2\nmatch: {labels: {rack: r2}}\nprofile: plain\n"
	for name, body := range map[string]string{"all.yaml": docs, "t.sh": "#!/bin/sh\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := runCmd("validate", dir)
	want := "warning: " + filepath.Join(dir, "all.yaml") + `:10: machine "rack" is matched by labels only`
	if code != 0 || !strings.Contains(out, want) || strings.Contains(out, `"rack2"`) || !strings.Contains(out, "ok: ") {
		t.Errorf("validate = %d\n%s\nwant 0, ok, and one warning starting %q", code, out, want)
	}
}

// A duration default reads as an operator writes it, and only zero units go.
func TestDefaultTextDurations(t *testing.T) {
	for d, want := range map[time.Duration]string{
		500 * time.Millisecond: "500ms", 30 * time.Second: "30s", time.Minute: "1m", 10 * time.Minute: "10m",
		90 * time.Second: "1m30s", 2 * time.Hour: "2h", 70 * time.Minute: "1h10m", time.Hour + 30*time.Second: "1h0m30s",
	} {
		fs := newFlagSet()
		fs.Duration("d", d, "")
		if got := defaultText(fs.Lookup("d")); got != want {
			t.Errorf("defaultText(%v) = %q; want %q", d, got, want)
		}
	}
}
