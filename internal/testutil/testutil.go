// Package testutil holds helpers shared by tests that run the real daemon.
package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// FreeAddr returns a loopback TCP address nothing listened on a moment ago, for
// a daemon the test starts with --http-addr.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Buffer is a bytes.Buffer safe for concurrent writers, such as a server's
// log handlers or a child process's output, while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Take returns what was written since the last Take, and forgets it.
func (b *Buffer) Take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.b.String()
	b.b.Reset()
	return s
}

// SilentAddr is a loopback TCP address that accepts connections and never
// answers, like a hung BMC or Git server; everything closes when the test ends.
func SilentAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	closed := false
	tb.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed { // accepted just as the test ended
				c.Close()
			} else {
				held = append(held, c)
			}
			mu.Unlock()
		}
	}()
	return l.Addr().String()
}

// Tool is a command a lab test needs and the Debian package that has it.
type Tool struct{ Command, Package string }

// Missing lists the tools not on PATH, as "command (package)".
func Missing(tools ...Tool) []string {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.Command); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", t.Command, t.Package))
		}
	}
	return missing
}

// RequireLab skips tb when something it needs is missing, or fails it when
// PROVISIOND_REQUIRE_LAB=1: CI sets it, so that a broken install cannot
// pass as a skip.
func RequireLab(tb testing.TB, missing ...string) {
	tb.Helper()
	if len(missing) == 0 {
		return
	}
	msg := "missing: " + strings.Join(missing, ", ")
	if os.Getenv("PROVISIOND_REQUIRE_LAB") == "1" {
		tb.Fatal(msg + " (PROVISIOND_REQUIRE_LAB=1)")
	}
	tb.Skip(msg)
}

// RequireTools is RequireLab for commands on PATH.
func RequireTools(tb testing.TB, tools ...Tool) {
	tb.Helper()
	RequireLab(tb, Missing(tools...)...)
}

// build is ./cmd/provisiond, built once per test binary by Binary.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary builds ./cmd/provisiond of this module once per test binary and
// returns its path, statically linked. It is built WITHOUT -race on purpose, even when the
// tests run under -race: the detector slows the daemon several times over,
// and the figures tests report must be the daemon's. (A -race in GOFLAGS
// would still reach it.) A package that calls it uses Main as its TestMain.
func Binary(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			build.err = fmt.Errorf("go env GOMOD: %v", err)
			return
		}
		if build.dir, err = os.MkdirTemp("", "provisiond-test-"); err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(build.dir, "provisiond")
		cmd := exec.Command("go", "build", "-o", build.path, "./cmd/provisiond")
		cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
		// Static, as make build's: the daemon serves its own executable as
		// the inspection agent (/agent/<arch>), which runs in machines that
		// have no libc.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/provisiond: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		tb.Fatal(build.err)
	}
	return build.path
}

// Main runs m's tests, then removes what Binary built:
// func TestMain(m *testing.M) { testutil.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// Neighbors is a map-backed neighbour table for the boot core's identity
// check: an address maps to the MAC on-link at it, "local" for this host,
// or "fail" for a lookup that fails; an address absent is routed.
type Neighbors map[string]string

// Lookup implements boot.Neighbors.
func (n Neighbors) Lookup(ip netip.Addr) (string, bool, error) {
	mac, ok := n[ip.Unmap().String()]
	switch {
	case mac == "fail":
		return "", false, errors.New("netlink dump interrupted")
	case mac == "local":
		return "", false, nil
	}
	return mac, ok, nil
}

// Local implements boot.Neighbors.
func (n Neighbors) Local(ip netip.Addr) bool { return n[ip.Unmap().String()] == "local" }
