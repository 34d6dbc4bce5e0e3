package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/api"
)

// serve runs s.Serve on a loopback port until the test ends and returns its
// address.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// dialFrom connects to addr from the loopback address from, so that one test
// can be several clients. Linux routes all of 127/8 to lo; elsewhere the test
// is skipped.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		if from != "127.0.0.1" && strings.Contains(err.Error(), "assign requested address") {
			t.Skipf("no loopback address %s here: %v", from, err)
		}
		t.Fatal(err)
	}
	return c
}

// healthFrom asks addr for /healthz over a new connection from the loopback
// address from, and returns the status or the error.
func healthFrom(t *testing.T, from, addr string) (int, error) {
	t.Helper()
	c := dialFrom(t, from, addr)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: provisiond\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// TestSlowBodies floods the server with requests whose bodies never come, or
// come a byte at a time: each connection is closed once the read timeout is
// up, and /healthz keeps answering another client meanwhile.
func TestSlowBodies(t *testing.T) {
	const readTimeout = time.Second
	core := newCore(t, "../../examples")
	addr := serve(t, New(Config{
		Core: core, AdvertiseURL: base, ReadTimeout: readTimeout,
		API: api.New(api.Config{Backend: core, Token: "operator-token"}),
	}))

	// 300 connections from 10 addresses, within the per-address limit:
	// the phone-home reads its body, /healthz does not (net/http reads it
	// after the answer, to reuse the connection).
	const flood = 300
	requests := []string{
		"POST /api/v1/machines/52-54-00-00-00-01/installed HTTP/1.1\r\nHost: provisiond\r\nAuthorization: Bearer x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
		"POST /healthz HTTP/1.1\r\nHost: provisiond\r\nContent-Length: 1000\r\n\r\n",
	}
	held := make([]time.Duration, flood)
	var wg sync.WaitGroup
	for i := range flood {
		c := dialFrom(t, fmt.Sprintf("127.0.0.%d", 10+i%10), addr)
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, requests[i%2]); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		closed := make(chan struct{})
		wg.Go(func() { // the server's answer, if any, then its close
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				held[i] = time.Hour // still open after 10 s
			} else {
				held[i] = time.Since(sent)
			}
			close(closed)
		})
		if i%4 < 2 {
			wg.Go(func() { // a byte every 100 ms until the server hangs up
				for {
					select {
					case <-closed:
						return
					case <-time.After(100 * time.Millisecond):
					}
					if _, err := c.Write([]byte("{")); err != nil {
						return
					}
				}
			})
		}
	}

	// Meanwhile, another client asks /healthz, each time on a new connection.
	flooded := make(chan struct{})
	go func() { wg.Wait(); close(flooded) }()
	checks := 0
	for done := false; !done; checks++ {
		if code, err := healthFrom(t, "127.0.0.2", addr); code != http.StatusOK {
			t.Errorf("/healthz during the flood = %d %v", code, err)
		}
		select {
		case <-flooded:
			done = true
		case <-time.After(50 * time.Millisecond):
		}
	}

	var longest time.Duration
	for i, d := range held {
		longest = max(longest, d)
		if d > readTimeout+5*time.Second {
			t.Errorf("connection %d (%q...) held for %v; want closed within the read timeout of %v", i, requests[i%2][:20], d, readTimeout)
		}
	}
	t.Logf("%d slow bodies: the longest held its connection for %v (read timeout %v); /healthz answered %d times meanwhile", flood, longest.Round(time.Millisecond), readTimeout, checks)
}

// One address gets at most maxConnsPerIP connections at once; the ones over
// are told so and closed at once, while other addresses are served, and
// it gets its share back as its connections close. A trusted proxy, which
// carries many clients' requests, is not limited.
func TestConnectionsPerAddress(t *testing.T) {
	const flooder, proxy = "127.0.0.3", "127.0.0.4"
	addr := serve(t, New(Config{Core: newCore(t, "../../examples"), AdvertiseURL: base,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix(proxy + "/32")}}))
	const extra = 20
	conns := make([]net.Conn, 2*(maxConnsPerIP+extra))
	for i := range conns {
		conns[i] = dialFrom(t, []string{flooder, proxy}[i%2], addr)
		t.Cleanup(func() { conns[i].Close() })
	}
	// None sent anything: an admitted connection waits for its request
	// (ReadHeaderTimeout is 10 s), a refused one reads the 503 and EOF.
	refused := make([]bool, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return // timeout: admitted
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusServiceUnavailable || err != nil || string(body) != "too many connections from your address\r\n" {
				t.Errorf("a refused connection read %d %q %v", resp.StatusCode, body, err)
			}
			refused[i] = true
		})
	}
	if code, err := healthFrom(t, "127.0.0.2", addr); code != http.StatusOK {
		t.Errorf("/healthz from another address = %d %v; want 200", code, err)
	}
	wg.Wait()
	n := map[string]int{}
	for i, r := range refused {
		if r {
			n[[]string{flooder, proxy}[i%2]]++
		}
	}
	if n[flooder] != extra || n[proxy] != 0 {
		t.Errorf("refused %d connections of the flooder's and %d of the proxy's %d each; want %d over the limit of %d and none",
			n[flooder], n[proxy], maxConnsPerIP+extra, extra, maxConnsPerIP)
	}

	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, err := healthFrom(t, flooder, addr)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz from the flooding address once its connections closed = %d %v; want 200", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The read timeout bounds reading requests, not answering them: a download
// slower than it runs to its end, and a handler busy for longer keeps its
// context.
func TestLongAnswersOutliveReadTimeout(t *testing.T) {
	const readTimeout = 500 * time.Millisecond
	dir := t.TempDir()
	const size = 32 << 20 // more than the sockets' buffers hold
	f, err := os.Create(filepath.Join(dir, "image"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(3 * readTimeout)
		if err := r.Context().Err(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	addr := serve(t, New(Config{Core: newCore(t, "../../examples"), AdvertiseURL: base, Assets: root, API: slow, ReadTimeout: readTimeout}))

	t.Run("download", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.1", addr)
		defer c.Close()
		_ = c.(*net.TCPConn).SetReadBuffer(64 << 10)
		if _, err := io.WriteString(c, "GET /assets/image HTTP/1.1\r\nHost: provisiond\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var n int64
		for {
			m, err := io.CopyN(io.Discard, resp.Body, 1<<20)
			n += m
			if err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond) // 20 MB/s at most
		}
		if took := time.Since(start); resp.StatusCode != 200 || n != size || took < 2*readTimeout {
			t.Fatalf("download = %d, %d of %d bytes in %v; want all of it, slower than the read timeout of %v", resp.StatusCode, n, size, took, readTimeout)
		}
	})
	t.Run("busy handler", func(t *testing.T) {
		c := dialFrom(t, "127.0.0.1", addr)
		defer c.Close()
		if _, err := io.WriteString(c, "GET /api/v1/slow HTTP/1.1\r\nHost: provisiond\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("a handler busy for %v = %d %s; want its context alive", 3*readTimeout, resp.StatusCode, body)
		}
	})
}

// chi refuses a method it does not know before /api/v1 sees the request;
// the API still answers it, 401 without a token like everything else.
func TestUnknownMethodUnderAPI(t *testing.T) {
	ts, _ := installServer(t, io.Discard)
	for _, tc := range []struct {
		method, path, token string
		code                int
	}{
		{"PROPFIND", "/api/v1/machines", "", 401},
		{"PROPFIND", "/api/v1/secrets", "", 401},
		{"PROPFIND", "/api/v1", "", 401},
		{"PROPFIND", "/api/v1/machines", "operator-token", 405},
		{"PROPFIND", "/api/v1x", "", 405}, // not under /api/v1
		{"PROPFIND", "/healthz", "", 405},
	} {
		if code, body := do(t, ts, tc.method, tc.path, tc.token); code != tc.code {
			t.Errorf("%s %s (token %q) = %d %s; want %d", tc.method, tc.path, tc.token, code, body, tc.code)
		}
	}
}
