//go:build linux

package reliability

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

func TestMain(m *testing.M) { testutil.Main(m) }

// daemon is one run of `provisiond serve`.
type daemon struct {
	cmd     *exec.Cmd
	base    string // http://127.0.0.1:PORT
	logPath string // stdout and stderr
	started time.Time
	done    chan struct{} // closed once the process has exited
	waitErr error         // valid after done
}

// startDaemon starts `provisiond serve` with args (--profiles, --data-dir,
// the store's flags) on addr, a fresh loopback port if "", logging to
// logPath. A restarted instance keeps its addr, so clients and the URLs in
// its scripts stay valid. The process dies with the test (Pdeathsig) and is
// killed in t.Cleanup.
func startDaemon(t *testing.T, bin, addr, logPath string, args ...string) *daemon {
	t.Helper()
	if addr == "" {
		addr = testutil.FreeAddr(t)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child holds its own descriptor
	d := &daemon{base: "http://" + addr, logPath: logPath, done: make(chan struct{})}
	d.cmd = exec.Command(bin, append([]string{"serve",
		"--http-addr", addr, "--advertise-url", d.base,
		"--trust-loopback",             // the test is every machine, from loopback
		"--max-discovered", "1000000"}, // durability, not the cap, is under test
		args...)...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d.started = time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start provisiond: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.kill)
	return d
}

// kill SIGKILLs the daemon (if it still runs) and waits until it is gone.
func (d *daemon) kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// stop asks the daemon to shut down (SIGTERM) and waits up to timeout.
func (d *daemon) stop(timeout time.Duration) error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return d.waitErr
	case <-time.After(timeout):
		d.kill()
		return fmt.Errorf("did not exit within %v of SIGTERM", timeout)
	}
}

// log returns what the daemon has written so far.
func (d *daemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// waitHealthy polls /healthz until it answers 200 with status ok and returns
// how long the daemon took from exec to healthy. The daemon exiting first,
// or the timeout, is an error carrying its log and the last answer.
func (d *daemon) waitHealthy(timeout time.Duration) (time.Duration, error) {
	// More than the daemon's own 2 s bound on its store probe: how slow
	// /healthz may be is not this wait's question.
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-d.done:
			return 0, fmt.Errorf("provisiond exited before it was healthy (%v); its log:\n%s", d.waitErr, d.log())
		default:
		}
		code, body, err := call(c, http.MethodGet, d.base+"/healthz", "")
		var h struct{ Status string }
		if err == nil && code == http.StatusOK && json.Unmarshal([]byte(body), &h) == nil && h.Status == "ok" {
			return time.Since(d.started), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("provisiond not healthy within %v (last /healthz: %d %v %.500s); its log:\n%s", timeout, code, err, body, d.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logProblems returns the daemon's log lines at level WARN and ERROR.
func logProblems(log string) (warns, errs []string) {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		switch line := sc.Text(); {
		case strings.Contains(line, "level=ERROR"):
			errs = append(errs, line)
		case strings.Contains(line, "level=WARN"):
			warns = append(warns, line)
		}
	}
	return warns, errs
}

// apiToken reads the token the daemon generated in its data dir on first start.
func apiToken(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "api-token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// apiMachine is the part of the API's machine object the tests check.
type apiMachine struct {
	MAC     string `json:"mac"`
	State   string `json:"state"`
	Machine string `json:"machine"`
	Profile string `json:"profile"`
}

// listMachines returns the machines GET /api/v1/machines lists with a record
// in the store, by MAC: not those Git declares that were never seen (state
// declared), which the store does not hold.
func listMachines(c *http.Client, base, token string) (map[string]apiMachine, error) {
	code, body, err := call(c, http.MethodGet, base+"/api/v1/machines", token)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/machines: %d: %s", code, strings.TrimSpace(body))
	}
	var list struct{ Machines []apiMachine }
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, fmt.Errorf("GET /api/v1/machines: %v", err)
	}
	out := make(map[string]apiMachine, len(list.Machines))
	for _, m := range list.Machines {
		if m.State == "declared" {
			continue
		}
		if _, dup := out[m.MAC]; dup {
			return nil, fmt.Errorf("GET /api/v1/machines lists %s twice", m.MAC)
		}
		out[m.MAC] = m
	}
	return out, nil
}

// isRefused reports whether err is a connection that never reached a server,
// as opposed to a request cut off in flight.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// call sends a bodiless request, with the bearer token if not "", and
// returns the complete answer; a transport error or a body cut short is err.
func call(c *http.Client, method, url, bearer string) (int, string, error) {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, "", err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, string(body), nil
}
