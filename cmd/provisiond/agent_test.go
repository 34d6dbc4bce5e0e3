package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/inspect"
	"github.com/provisiond/provisiond/internal/store"
)

// agentRoot is a machine's /proc and /sys, a small one, with cmdline as its
// kernel command line.
func agentRoot(t *testing.T, cmdline string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range map[string]string{
		"proc/cmdline":                     cmdline + "\n",
		"proc/cpuinfo":                     "processor\t: 0\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t: 0\n",
		"proc/meminfo":                     "MemTotal:        1485428 kB\n",
		"proc/sys/kernel/arch":             "x86_64\n",
		"sys/class/dmi/id/product_serial":  "ACME-0001\n",
		"sys/block/vda/size":               "20971520\n",
		"sys/block/vda/serial":             "disk-a\n",
		"sys/block/vda/device/vendor":      "0x1af4\n",
		"sys/class/net/ens3/address":       "52:54:00:12:34:56\n",
		"sys/class/net/ens3/carrier":       "1\n",
		"sys/class/net/ens3/device/vendor": "0x1af4\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// hardwareAPI is the daemon's POST /api/v1/machines/{id}/hardware as the
// agent must call it: it checks the method, path, token and body, and
// answers with the statuses given in turn, then 200.
type hardwareAPI struct {
	t        *testing.T
	path     string
	token    string
	want     store.Hardware
	statuses []int
	calls    atomic.Int32
}

func (h *hardwareAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(h.calls.Add(1))
	if r.Method != http.MethodPost || r.URL.Path != h.path {
		h.t.Errorf("%s %s, want POST %s", r.Method, r.URL.Path, h.path)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+h.token {
		h.t.Errorf("Authorization %q, want Bearer %s", got, h.token)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		h.t.Errorf("Content-Type %q", ct)
	}
	var got store.Hardware
	if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
		h.t.Errorf("body: %v", err)
	}
	if !reflect.DeepEqual(got, h.want) {
		h.t.Errorf("reported %+v\nwant %+v", got, h.want)
	}
	switch {
	case n <= len(h.statuses) && h.statuses[n-1] < 500:
		// The API's errors are JSON.
		w.WriteHeader(h.statuses[n-1])
		_, _ = io.WriteString(w, `{"error": "answer `+http.StatusText(h.statuses[n-1])+`"}`)
		return
	case n <= len(h.statuses):
		// A proxy's are text.
		http.Error(w, "answer "+http.StatusText(h.statuses[n-1]), h.statuses[n-1])
		return
	}
	_, _ = io.WriteString(w, `{"mac":"52:54:00:12:34:56"}`)
}

// newHardwareAPI serves a hardwareAPI expecting root's hardware.
func newHardwareAPI(t *testing.T, root, mac, token string, statuses ...int) (*httptest.Server, *hardwareAPI) {
	t.Helper()
	want, err := inspect.Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	h := &hardwareAPI{t: t, path: "/api/v1/machines/" + mac + "/hardware", token: token, want: want, statuses: statuses}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts, h
}

// Run with no flags, as a discovery image does: all it needs is on the
// kernel command line.
func TestAgentReportsFromCmdline(t *testing.T) {
	h := &hardwareAPI{}
	ts := httptest.NewUnstartedServer(h)
	ts.Start()
	t.Cleanup(ts.Close)
	root := agentRoot(t, "console=ttyS0 provisiond.url="+ts.URL+" provisiond.mac=52-54-00-12-34-56 provisiond.token=s3ss10n quiet")
	want, err := inspect.Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	*h = hardwareAPI{t: t, path: "/api/v1/machines/52-54-00-12-34-56/hardware", token: "s3ss10n", want: want}
	code, out, errOut := runCmd("agent", "--root", root)
	if code != 0 || h.calls.Load() != 1 {
		t.Fatalf("exit %d after %d requests; stdout %q stderr %q", code, h.calls.Load(), out, errOut)
	}
	body, _ := json.Marshal(want)
	if !strings.Contains(out, "reported the hardware to "+ts.URL+"/api/v1/machines/52-54-00-12-34-56/hardware: ") ||
		!strings.Contains(out, " bytes, collected in ") || !strings.Contains(out, "(attempt 1)") {
		t.Errorf("stdout %q, want what was sent, its size and time", out)
	}
	if want.System.Serial != "ACME-0001" || len(want.Disks) != 1 || len(want.NICs) != 1 || len(body) < 100 {
		t.Errorf("fixture read as %s", body)
	}
}

// Flags override the kernel command line; a MAC in any spelling is sent
// with dashes.
func TestAgentFlagsOverrideCmdline(t *testing.T) {
	root := agentRoot(t, "provisiond.url=http://192.0.2.1:1 provisiond.mac=52-54-00-00-00-99 provisiond.token=stale")
	ts, h := newHardwareAPI(t, root, "52-54-00-12-34-56", "fresh")
	code, out, errOut := runCmd("agent", "--root", root, "--url", ts.URL+"/", "--mac", "52:54:00:12:34:56", "--token", "fresh")
	if code != 0 || h.calls.Load() != 1 {
		t.Fatalf("exit %d after %d requests; stdout %q stderr %q", code, h.calls.Load(), out, errOut)
	}
}

// A refusal (4xx) is final: one request, exit 1, the daemon's reason shown.
func TestAgentRefusedIsNotRetried(t *testing.T) {
	root := agentRoot(t, "")
	ts, h := newHardwareAPI(t, root, "52-54-00-12-34-56", "wrong", http.StatusUnauthorized)
	code, _, errOut := runCmd("agent", "--root", root, "--url", ts.URL, "--mac", "52-54-00-12-34-56", "--token", "wrong")
	if code != 1 || h.calls.Load() != 1 || !strings.Contains(errOut, "401 Unauthorized: answer Unauthorized") {
		t.Errorf("exit %d after %d requests, stderr %q; want 1 after 1, with the daemon's answer", code, h.calls.Load(), errOut)
	}
}

// 5xx answers and a daemon not yet reachable are retried with backoff.
func TestAgentRetries(t *testing.T) {
	root := agentRoot(t, "")
	cfg := agentConfig{root: root, mac: "52-54-00-12-34-56", token: "tok", attempts: 6, backoff: 20 * time.Millisecond, client: &http.Client{Timeout: 5 * time.Second}}

	t.Run("5xx then success", func(t *testing.T) {
		ts, h := newHardwareAPI(t, root, "52-54-00-12-34-56", "tok", http.StatusServiceUnavailable, http.StatusInternalServerError)
		c := cfg
		c.url = ts.URL
		var out, errOut bytes.Buffer
		if err := runAgent(context.Background(), c, &out, &errOut); err != nil || h.calls.Load() != 3 {
			t.Fatalf("runAgent = %v after %d requests; stderr %q", err, h.calls.Load(), errOut.String())
		}
		if !strings.Contains(errOut.String(), "attempt 1 of 6: 503 Service Unavailable: answer Service Unavailable; retrying in 20ms") ||
			!strings.Contains(errOut.String(), "attempt 2 of 6: 500 Internal Server Error") || !strings.Contains(out.String(), "(attempt 3)") {
			t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
		}
	})

	t.Run("network comes up late", func(t *testing.T) {
		// A port nothing listens on yet: connection refused, as before
		// the daemon (or the machine's route to it) is up.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		ts, h := newHardwareAPI(t, root, "52-54-00-12-34-56", "tok")
		ts.Close()
		up := make(chan *httptest.Server, 1)
		time.AfterFunc(50*time.Millisecond, func() {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				up <- nil
				return
			}
			late := httptest.NewUnstartedServer(h)
			late.Listener.Close()
			late.Listener = l
			late.Start()
			up <- late
		})
		t.Cleanup(func() {
			if late := <-up; late != nil {
				late.Close()
			}
		})
		c := cfg
		c.url = "http://" + addr
		var out, errOut bytes.Buffer
		if err := runAgent(context.Background(), c, &out, &errOut); err != nil || h.calls.Load() != 1 {
			t.Fatalf("runAgent = %v after %d requests; stderr %q", err, h.calls.Load(), errOut.String())
		}
		if !strings.Contains(errOut.String(), "connection refused; retrying in") {
			t.Errorf("stderr %q, want the refused attempts", errOut.String())
		}
	})

	t.Run("gives up", func(t *testing.T) {
		ts, h := newHardwareAPI(t, root, "52-54-00-12-34-56", "tok", 502, 502, 502, 502, 502, 502, 502)
		c := cfg
		c.url, c.attempts, c.backoff = ts.URL, 3, time.Millisecond
		err := runAgent(context.Background(), c, io.Discard, io.Discard)
		if err == nil || h.calls.Load() != 3 || !strings.Contains(err.Error(), "502 Bad Gateway") {
			t.Errorf("runAgent = %v after %d requests; want the last 502 after 3", err, h.calls.Load())
		}
	})
}

// Without the kernel arguments, it says which are missing and why they
// may be.
func TestAgentNeedsCmdline(t *testing.T) {
	root := agentRoot(t, "console=ttyS0 provisiond.mac=52-54-00-12-34-56")
	code, _, errOut := runCmd("agent", "--root", root)
	want := "provisiond agent: no url: provisiond.url= is not on the kernel command line and --url is not set (does the profile say inspect: true?)\n"
	if code != 1 || errOut != want {
		t.Errorf("exit %d, stderr %q; want 1, %q", code, errOut, want)
	}
	for _, tc := range []struct{ args, want string }{
		{"--url ftp://x --mac 52-54-00-12-34-56 --token t", `daemon URL "ftp://x": want http://host[:port]`},
		{"--url http://x --mac nope --token t", `machine MAC: mac "nope": invalid identity`},
	} {
		if code, _, errOut := runCmd(append([]string{"agent", "--root", root}, strings.Fields(tc.args)...)...); code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("agent %s: exit %d, stderr %q; want 1 and %q", tc.args, code, errOut, tc.want)
		}
	}
	// /proc not mounted in the initramfs: said so before anything is sent.
	if code, _, errOut := runCmd("agent", "--root", t.TempDir(), "--url", "http://x"); code != 1 || !strings.Contains(errOut, "(are /proc and /sys mounted?)") {
		t.Errorf("empty root: exit %d, stderr %q", code, errOut)
	}
}

// --dry-run prints the report and sends nothing: no URL is needed.
func TestAgentDryRun(t *testing.T) {
	root := agentRoot(t, "")
	code, out, errOut := runCmd("agent", "--root", root, "--dry-run")
	if code != 0 || !strings.HasPrefix(errOut, "report: ") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var got store.Hardware
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not the report: %v\n%s", err, out)
	}
	if want, _ := inspect.Collect(root); !reflect.DeepEqual(got, want) {
		t.Errorf("printed %+v, want %+v", got, want)
	}
}

func TestAgentKernelArgs(t *testing.T) {
	got := kernelArgs(`BOOT_IMAGE=/vmlinuz  provisiond.url=http://10.0.0.2:8080 "quoted=a b" provisiond.token="t k" ro` + "\n")
	want := map[string]string{"BOOT_IMAGE": "/vmlinuz", "provisiond.url": "http://10.0.0.2:8080", "quoted": "a b", "provisiond.token": "t k"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kernelArgs = %v, want %v", got, want)
	}
	nics := []store.NIC{{MAC: "aa:aa:aa:aa:aa:01", Link: true}, {MAC: "aa:aa:aa:aa:aa:02"}}
	for _, tc := range []struct {
		bootif string
		nics   []store.NIC
		want   string
	}{
		{"01-52-54-00-12-34-56", nics, "52-54-00-12-34-56"},
		{"", nics, "aa:aa:aa:aa:aa:01"},
		{"", append(nics, store.NIC{MAC: "aa:aa:aa:aa:aa:03", Link: true}), ""}, // which one? say none
	} {
		if got := fallbackMAC(tc.bootif, tc.nics); got != tc.want {
			t.Errorf("fallbackMAC(%q) = %q, want %q", tc.bootif, got, tc.want)
		}
	}
}

// serve serves its own executable for its architecture and looks for the
// others in --agent-dir, then beside it.
func TestAgentFiles(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	a := agentFiles("/srv/agents")
	if a.Self != exe || a.Arch != runtime.GOARCH {
		t.Errorf("Self, Arch = %q, %q; want %q, %q", a.Self, a.Arch, exe, runtime.GOARCH)
	}
	if want := []string{"/srv/agents", filepath.Dir(exe)}; !reflect.DeepEqual(a.Dirs, want) {
		t.Errorf("Dirs = %q, want %q", a.Dirs, want)
	}
	if a := agentFiles(""); len(a.Dirs) != 1 {
		t.Errorf("no --agent-dir: Dirs = %q, want the executable's directory", a.Dirs)
	}
}
