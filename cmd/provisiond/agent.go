package main

// provisiond agent: the inspection agent. A discovery image fetches it from
// the daemon (GET /agent/ARCH), runs it with no flags, and it reports the
// machine's hardware (internal/inspect) once, with the session token the
// daemon put on the kernel command line.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/provisiond/provisiond/internal/ident"
	"github.com/provisiond/provisiond/internal/inspect"
	"github.com/provisiond/provisiond/internal/store"
)

// agentConfig is one run of the agent.
type agentConfig struct {
	url, mac, token string // from the flags, else the kernel command line
	root            string // where /proc and /sys are: "/" but in tests
	dryRun          bool
	// attempts and backoff are the retry policy: a freshly booted
	// machine's network may lag, and the daemon may be restarting.
	attempts int
	backoff  time.Duration // the first wait; each next doubles, up to maxBackoff
	client   *http.Client
}

const (
	agentAttempts = 6
	agentBackoff  = time.Second
	maxBackoff    = 10 * time.Second // 1+2+4+8+10 s: 25 s of waiting over 6 attempts
	agentTimeout  = 30 * time.Second // one attempt
)

func agentCommand() *command {
	return &command{
		name:    "agent",
		summary: "report this machine's hardware to the daemon that booted it (run inside the machine)",
		about: "Reads SMBIOS, CPUs, memory, disks and NICs from /sys and /proc and POSTs them\n" +
			"once to <url>/api/v1/machines/<mac>/hardware with the session token. A profile\n" +
			"with inspect: true puts provisiond.url=, provisiond.mac= and provisiond.token=\n" +
			"on the kernel command line, where the agent finds them; the flags override\n" +
			"them; without a MAC it takes BOOTIF=, else the one NIC with link. The daemon\n" +
			"serves this binary at /agent/amd64 and /agent/arm64 (or /agent/$(uname -m)).\n" +
			"Exits 0 once the daemon accepted the report, 1 if it refused it or could not\n" +
			"be reached in 6 attempts over about 25 s.",
		examples: []string{
			"provisiond agent",
			"provisiond agent --dry-run",
			"provisiond agent --url http://10.99.0.2:8080 --mac 52-54-00-12-34-56 --token TOKEN",
		},
		flags: func(fs *flagSet, c *cli) func([]string) error {
			cfg := agentConfig{attempts: agentAttempts, backoff: agentBackoff, client: &http.Client{Timeout: agentTimeout}}
			fs.StringVar(&cfg.url, "url", "", "base `URL` of the daemon (default: provisiond.url= on the kernel command line)")
			fs.StringVar(&cfg.mac, "mac", "", "`MAC` the machine is known by (default: provisiond.mac= on the kernel command line)")
			fs.StringVar(&cfg.token, "token", "", "session `TOKEN` (default: provisiond.token= on the kernel command line)")
			fs.StringVar(&cfg.root, "root", "/", "`DIR` holding the proc and sys trees to read")
			fs.BoolVar(&cfg.dryRun, "dry-run", false, "print the report as JSON and send nothing")
			return func(pos []string) error {
				if len(pos) != 0 {
					return usagef("agent takes no arguments, got %q", pos)
				}
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return runAgent(ctx, cfg, c.stdout, c.stderr)
			}
		},
	}
}

// runAgent collects the report and sends it, or prints it with --dry-run.
func runAgent(ctx context.Context, cfg agentConfig, stdout, stderr io.Writer) error {
	start := time.Now()
	hw, err := inspect.Collect(cfg.root)
	if err != nil {
		return fmt.Errorf("inspect the hardware: %w", err)
	}
	body, err := json.Marshal(hw)
	if err != nil {
		return fmt.Errorf("encode the report: %w", err)
	}
	collected := time.Since(start)
	if cfg.dryRun {
		var out bytes.Buffer
		_ = json.Indent(&out, body, "", "  ") // body is valid JSON: Marshal made it
		fmt.Fprintf(stderr, "report: %d bytes, collected in %s\n", len(body), collected.Round(time.Microsecond))
		_, err := fmt.Fprintln(stdout, out.String())
		return err
	}
	if err := cfg.fromCmdline(hw.NICs); err != nil {
		return err
	}
	target, err := cfg.target()
	if err != nil {
		return err
	}
	n, err := cfg.send(ctx, target, body, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reported the hardware to %s: %d bytes, collected in %s, sent in %s (attempt %d)\n",
		target, len(body), collected.Round(time.Microsecond), (time.Since(start) - collected).Round(time.Millisecond), n)
	return nil
}

// fromCmdline fills in url, mac and token not given as flags from the
// kernel command line under root. A MAC missing there too is pxelinux's
// BOOTIF=01-<mac>, else that of the one NIC of nics with link: the token
// says which machine it is anyway, and the daemon refuses any other.
func (cfg *agentConfig) fromCmdline(nics []store.NIC) error {
	if cfg.url != "" && cfg.mac != "" && cfg.token != "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(cfg.root, "proc/cmdline"))
	if err != nil {
		return fmt.Errorf("read the kernel command line: %w", err)
	}
	args := kernelArgs(string(b))
	if args["provisiond.mac"] == "" {
		args["provisiond.mac"] = fallbackMAC(args["BOOTIF"], nics)
	}
	for _, f := range []struct {
		v    *string
		name string
	}{{&cfg.url, "url"}, {&cfg.mac, "mac"}, {&cfg.token, "token"}} {
		if *f.v == "" {
			*f.v = args["provisiond."+f.name]
		}
		if *f.v == "" {
			return fmt.Errorf("no %s: provisiond.%s= is not on the kernel command line and --%s is not set (does the profile say inspect: true?)", f.name, f.name, f.name)
		}
	}
	return nil
}

// fallbackMAC is the MAC of BOOTIF (01-aa-bb-..., the 01 an Ethernet
// hardware type), else of the only NIC with link, else "".
func fallbackMAC(bootif string, nics []store.NIC) string {
	if m, ok := strings.CutPrefix(bootif, "01-"); ok {
		return m
	}
	var up []string
	for _, n := range nics {
		if n.Link {
			up = append(up, n.MAC)
		}
	}
	if len(up) == 1 {
		return up[0]
	}
	return ""
}

// kernelArgs parses a kernel command line into its key=value arguments. A
// value may be double-quoted, as the kernel allows: key="a b".
func kernelArgs(cmdline string) map[string]string {
	out := map[string]string{}
	var cur strings.Builder
	quoted := false
	flush := func() {
		if k, v, ok := strings.Cut(cur.String(), "="); ok {
			out[k] = v
		}
		cur.Reset()
	}
	for _, r := range cmdline {
		switch {
		case r == '"':
			quoted = !quoted
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			flush()
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return out
}

// target is the URL the report goes to.
func (cfg *agentConfig) target() (string, error) {
	u, err := url.Parse(cfg.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("daemon URL %q: want http://host[:port]", cfg.url)
	}
	mac, err := ident.MAC(cfg.mac)
	if err != nil {
		return "", fmt.Errorf("machine MAC: %w", err)
	}
	// Dashes, as on the kernel command line: nothing in them to escape.
	return strings.TrimSuffix(u.String(), "/") + "/api/v1/machines/" + strings.ReplaceAll(mac, ":", "-") + "/hardware", nil
}

// errRefused is a 4xx: sending the same report again cannot succeed.
var errRefused = errors.New("refused")

// send POSTs body to target until an attempt gets an answer that is not a
// network error or a 5xx (or 408, 429), waiting between attempts, and
// returns the number of the attempt that succeeded.
func (cfg *agentConfig) send(ctx context.Context, target string, body []byte, stderr io.Writer) (int, error) {
	wait := cfg.backoff
	var err error
	for n := 1; n <= cfg.attempts; n++ {
		if err = cfg.post(ctx, target, body); err == nil {
			return n, nil
		}
		if errors.Is(err, errRefused) || ctx.Err() != nil || n == cfg.attempts {
			break
		}
		fmt.Fprintf(stderr, "provisiond agent: attempt %d of %d: %v; retrying in %s\n", n, cfg.attempts, err, wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return n, fmt.Errorf("report the hardware: %w", ctx.Err())
		}
		wait = min(2*wait, maxBackoff)
	}
	return 0, fmt.Errorf("report the hardware to %s: %w", target, err)
}

// post makes one attempt.
func (cfg *agentConfig) post(ctx context.Context, target string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cfg.token)
	resp, err := cfg.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return nil
	case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return fmt.Errorf("%s: %s", resp.Status, reason(msg))
	default:
		return fmt.Errorf("%w: %s: %s", errRefused, resp.Status, reason(msg))
	}
}

// reason is what an error answer says, in one line: the API's
// {"error": "..."}, or the first line of a proxy's text.
func reason(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return e.Error
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}
