package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

// templateProfiles writes a profiles tree whose profile p, used by machines
// n0..n(machines-1), renders tmpl as a plain template t.txt.
func templateProfiles(t *testing.T, dir, tmpl string, machines int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("kind: Profile\nname: p\nboot: {kernel: /assets/k}\nconfig: {template: t.txt}\n")
	for i := range machines {
		fmt.Fprintf(&b, "---\nkind: Machine\nname: n%d\nmatch: {mac: \"52:54:00:00:%02x:%02x\"}\nprofile: p\n", i, i>>8, i&0xff)
	}
	// The template first, so that a watching daemon reloads with both.
	for name, content := range map[string]string{"t.txt": tmpl, "all.yaml": b.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A template that would loop for ever or exhaust memory fails validate within
// seconds, at its file and line.
func TestValidateTemplateBombs(t *testing.T) {
	for name, tc := range map[string]struct{ tmpl, want string }{
		"range":  {"ok\n{{range 9223372036854775807}}{{end}}\n", "t.txt:2: template passed the"},
		"printf": {"ok\n\n{{range 9223372036854775807}}{{printf \"%9999999d\" 1}}{{end}}\n", "t.txt:3: printf: width or precision 9999999 passes the limit of 4096"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			templateProfiles(t, dir, tc.tmpl, 100)
			start := time.Now()
			code, out, errOut := runCmd("validate", dir)
			took := time.Since(start)
			if code != 1 || !strings.HasPrefix(out, filepath.Join(dir, tc.want)) || !strings.Contains(errOut, "1 problem(s)") {
				t.Errorf("validate = %d\n%s%s\nwant 1 and one problem %s", code, out, errOut, tc.want)
			}
			if took > 5*time.Second {
				t.Errorf("validate took %v", took)
			}
			t.Logf("validate rejected the %s bomb in %v: %s", name, took.Round(time.Millisecond), strings.TrimSpace(out))
		})
	}
}

// SIGTERM stops the daemon promptly while it loads profiles, at start and on
// a reload; a template bomb on reload is refused, and later reloads proceed.
func TestBinaryStopsMidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := testutil.Binary(t)
	// Legitimate but slow: 2000 renders of ~0.1 s, minutes in all.
	const slow = "{{range 200000}}{{end}}{{.machine.name}}"
	start := func(dir string) (*exec.Cmd, *testutil.Buffer, string) {
		t.Helper()
		var logs testutil.Buffer
		addr := testutil.FreeAddr(t)
		cmd := exec.Command(bin, "serve", "--profiles", dir, "--data-dir", t.TempDir(), "--http-addr", addr, "--reload-debounce", "100ms")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("daemon log:\n%s", logs.String())
			}
		})
		return cmd, &logs, "http://" + addr
	}
	// waitLog waits for the n-th what in the log.
	waitLog := func(logs *testutil.Buffer, what string, n int) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); strings.Count(logs.String(), what) < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %q in the log", what)
			}
		}
	}
	// The watch starts after the daemon says it is starting: an edit made
	// before is not seen, so the first one is repeated until it is.
	firstEdit := func(logs *testutil.Buffer, edit func(), what string) {
		t.Helper()
		for range 5 {
			edit()
			// Long enough for a reload to end, rather than be superseded.
			for range 150 {
				if strings.Contains(logs.String(), what) {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		t.Fatalf("the daemon did not reload: no %q in the log", what)
	}
	stop := func(cmd *exec.Cmd) {
		t.Helper()
		sent := time.Now()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case err := <-exited:
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				t.Errorf("daemon exited with %v after SIGTERM; want 0", err)
			}
			t.Logf("daemon exited %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
		case <-time.After(3 * time.Second):
			t.Fatal("daemon still running 3 s after SIGTERM")
		}
	}

	// The first load.
	dir := t.TempDir()
	templateProfiles(t, dir, slow, 2000)
	cmd, logs, _ := start(dir)
	time.Sleep(500 * time.Millisecond)
	stop(cmd)
	if out := logs.String(); !strings.Contains(out, "profiles load cancelled; nothing to serve") || strings.Contains(out, "provisiond starting") {
		t.Errorf("SIGTERM did not stop the first load")
	}

	// A reload: a bomb is refused while the last good set serves, the next
	// edit still reloads, a newer edit supersedes a slow reload, and SIGTERM
	// during one stops the daemon.
	dir = t.TempDir()
	templateProfiles(t, dir, "v1 {{.machine.name}}", 1)
	cmd, logs, base := start(dir)
	waitLog(logs, "provisiond starting", 1)
	firstEdit(logs, func() { templateProfiles(t, dir, "v2\n{{range 9223372036854775807}}{{end}}", 1) }, "t.txt:2: template passed the")
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var health struct {
		Status   string
		Profiles struct {
			LastReloadErrors []string `json:"last_reload_errors"`
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || health.Status != "degraded" || len(health.Profiles.LastReloadErrors) != 1 ||
		!strings.HasPrefix(health.Profiles.LastReloadErrors[0], "t.txt:2: template passed the") {
		t.Errorf("/healthz after a refused reload = %d %+v, %v; want 200 degraded, naming t.txt:2", resp.StatusCode, health, err)
	}
	templateProfiles(t, dir, "v3 {{.machine.name}}", 1)
	waitLog(logs, "profiles loaded", 2)
	cancelled, superseded := strings.Count(logs.String(), "profiles reload cancelled"), strings.Count(logs.String(), "superseded by a newer reload")
	templateProfiles(t, dir, slow, 2000)
	time.Sleep(500 * time.Millisecond)
	templateProfiles(t, dir, slow+"\n", 2000)
	waitLog(logs, "superseded by a newer reload", superseded+1)
	time.Sleep(300 * time.Millisecond)
	stop(cmd)
	// At least two cancelled: a write of the two files can fall on both sides
	// of the debounce and start one more reload that the next supersedes.
	if out := logs.String(); strings.Count(out, "profiles reload cancelled") < cancelled+2 || strings.Count(out, "profiles loaded") != 2 {
		t.Errorf("want the superseded reload and the one SIGTERM stopped logged as cancelled, neither as loaded:\n%s", out)
	}
}
