//go:build linux

package docs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/testutil"
)

const (
	blockTimeout  = 30 * time.Second // one block; every one takes well under a second
	daemonTimeout = 20 * time.Second // from exec to a healthy /healthz
	logWait       = 5 * time.Second  // for a log sample's lines to be written
)

// TestDocs runs every command block of README.md and docs/*.md, in order,
// against the real binary, and checks the sample outputs shown after them;
// see the package documentation.
func TestDocs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	testutil.RequireTools(t,
		testutil.Tool{Command: "bash", Package: "bash"},
		testutil.Tool{Command: "curl", Package: "curl"},
		testutil.Tool{Command: "git", Package: "git"},
		testutil.Tool{Command: "sed", Package: "sed"})
	bin := testutil.Binary(t)
	for _, path := range runnableDocs(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m, err := parseMarkdown(path)
			if err != nil {
				t.Fatal(err)
			}
			newSandbox(t, bin).runDoc(m)
		})
	}
}

// A sandbox is where one document runs: a reader's machine in a directory.
type sandbox struct {
	t      *testing.T
	root   string // stands for /: srv/, var/lib/ and etc/ are below it
	clone  string // the reader's checkout: examples/ and bin/provisiond
	state  string // the shell's working directory and exports between blocks
	addr   string // 127.0.0.1:PORT, where the document's daemon listens
	env    []string
	daemon *daemon
}

func newSandbox(t *testing.T, bin string) *sandbox {
	t.Helper()
	root := t.TempDir()
	s := &sandbox{
		t:     t,
		root:  root,
		clone: filepath.Join(root, "provisiond"),
		state: filepath.Join(root, ".doc-test"),
		addr:  testutil.FreeAddr(t),
	}
	home, shims := filepath.Join(root, "home"), filepath.Join(root, "shims")
	for _, d := range []string{"srv", "var/lib", "etc", "home", "shims", ".doc-test", "provisiond/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.CopyFS(filepath.Join(s.clone, "examples"), os.DirFS(filepath.Join(repoRoot, "examples"))); err != nil {
		t.Fatal(err)
	}
	failOpt := "fail-with-body" // curl 7.76 and later
	if exec.Command("curl", "--fail-with-body", "--version").Run() != nil {
		failOpt = "fail"
	}
	files := map[string]string{
		// sudo runs the command as the test's user: every path it is given
		// is in the sandbox, and the blocks that need real root are marked.
		filepath.Join(shims, "sudo"): "#!/bin/sh\ncase \"$1\" in -*) echo \"doc-test sudo: no options ($1)\" >&2; exit 2;; esac\nexec \"$@\"\n",
		// An HTTP error fails the block, as the reader would see it fail.
		filepath.Join(home, ".curlrc"): failOpt + "\nsilent\nshow-error\n",
		filepath.Join(s.state, "cwd"):  s.clone,
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, link := range []string{filepath.Join(shims, "provisiond"), filepath.Join(s.clone, "bin", "provisiond")} {
		if err := os.Symlink(bin, link); err != nil {
			t.Fatal(err)
		}
	}
	name := "doc-reader"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "PROVISIOND_"), strings.HasPrefix(k, "GIT_"), strings.HasPrefix(k, "CURL_"),
			k == "HOME", k == "PATH", k == "USER", k == "XDG_CONFIG_HOME", k == "LC_ALL":
			continue
		}
		s.env = append(s.env, kv)
	}
	s.env = append(s.env,
		"PATH="+shims+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+home, "CURL_HOME="+home, "USER="+name, "LC_ALL=C",
		// The CLI's default server is 127.0.0.1:8080: this is its rewrite.
		"PROVISIOND_SERVER=http://"+s.addr,
		// The reader's Git knows who they are.
		"GIT_AUTHOR_NAME=Doc Reader", "GIT_AUTHOR_EMAIL=reader@example.com",
		"GIT_COMMITTER_NAME=Doc Reader", "GIT_COMMITTER_EMAIL=reader@example.com",
		"GIT_CONFIG_NOSYSTEM=1")
	return s
}

// rewrite moves a block's system paths into the sandbox and port 8080 to
// the daemon's.
func (s *sandbox) rewrite(text string) string {
	_, port, _ := net.SplitHostPort(s.addr)
	return strings.NewReplacer(
		"/srv/provisiond", s.root+"/srv/provisiond",
		"/var/lib/provisiond", s.root+"/var/lib/provisiond",
		"/etc/provisiond", s.root+"/etc/provisiond",
		"localhost:8080", "localhost:"+port,
		"127.0.0.1:8080", "127.0.0.1:"+port,
	).Replace(text)
}

// unrewrite turns the sandbox's paths in output back into the doc's.
func (s *sandbox) unrewrite(out string) string { return strings.ReplaceAll(out, s.root, "") }

var (
	hostCommand = regexp.MustCompile(`(^|[\s;&|(])(useradd|usermod|groupadd|systemctl|journalctl|apt-get|dnf|setcap|chown|chgrp|mount|modprobe|iptables)(\s|$)`)
	absPath     = regexp.MustCompile(`(^|[\s'"=(])(/[A-Za-z0-9_.][^\s'"):;|&]*)`)
)

// touchesHost says what in a (rewritten) script would reach beyond the
// sandbox, or "".
func (s *sandbox) touchesHost(script string) string {
	if m := hostCommand.FindStringSubmatch(script); m != nil {
		return "it runs " + m[2]
	}
	for _, m := range absPath.FindAllStringSubmatch(script, -1) {
		if p := m[2]; p != "/dev/null" && p != s.root && !strings.HasPrefix(p, s.root+"/") {
			return "it uses " + p
		}
	}
	return ""
}

// run runs a script like a reader's shell would, with bash -e -o pipefail,
// in the working directory and with the exports the blocks before left.
func (s *sandbox) run(script string) (string, error) {
	if why := s.touchesHost(script); why != "" {
		return "", fmt.Errorf("not run: %s, outside the sandbox; mark the block <!-- doc-test: skip (reason) --> if it cannot run here", why)
	}
	cwd, err := os.ReadFile(filepath.Join(s.state, "cwd"))
	if err != nil {
		return "", err
	}
	cwdFile, envFile := filepath.Join(s.state, "cwd"), filepath.Join(s.state, "env")
	wrapped := fmt.Sprintf("cd %q || exit 1\nif [ -f %q ]; then . %q; fi\nset -e -o pipefail\n%s\n__doc_test_rc=$?\npwd > %q\nexport -p > %q\nexit $__doc_test_rc\n",
		strings.TrimSpace(string(cwd)), envFile, envFile, script, cwdFile, envFile)
	path := filepath.Join(s.state, "block.sh")
	if err := os.WriteFile(path, []byte(wrapped), 0o644); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), blockTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = s.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after %v", blockTimeout)
	}
	return s.unrewrite(out.String()), err
}

// A result is what a sample is checked against: a block's output or the
// daemon's log.
type result struct {
	output    func() string
	unchecked []string
	log       bool // the daemon's log: lines may still be on their way
}

// runDoc runs the document's blocks in order; see the package documentation.
func (s *sandbox) runDoc(m *markdown) {
	t := s.t
	var (
		prev                 *result // what a plain block right after is a sample of
		ran, skipped, checks int
	)
	defer func() {
		if t.Failed() && s.daemon != nil {
			t.Logf("daemon log:\n%s", s.daemonLog())
		}
	}()
	for _, it := range m.items {
		if d := it.run; d != nil {
			where := fmt.Sprintf("%s:%d", m.path, d.line)
			if out, err := s.run(s.rewrite(d.body)); err != nil {
				t.Fatalf("%s: hidden doc-test run (%s): %v\n--- script\n%s--- output\n%s", where, d.reason, err, d.body, out)
			}
			ran++
			prev = nil
			continue
		}
		f, d := it.fence, it.fence.dir
		where := fmt.Sprintf("%s:%d", m.path, f.line)
		sampleOf := prev
		prev = nil
		switch {
		case d != nil && d.verb == "skip":
			if !f.command() {
				t.Errorf("%s: doc-test skip on a %q block, which would not run anyway", where, f.lang)
			}
			t.Logf("%s: skipped (%s)", where, d.reason)
			skipped++

		case d != nil && d.verb == "daemon":
			if !f.command() {
				t.Fatalf("%s: doc-test daemon on a %q block", where, f.lang)
			}
			if err := s.startDaemon(f.body); err != nil {
				t.Fatalf("%s: the daemon this block starts: %v", where, err)
			}
			t.Logf("%s: daemon started (%s)", where, d.reason)
			prev = &result{output: s.daemonLog, unchecked: d.unchecked, log: true}

		case d != nil && d.verb == "write":
			target := s.rewrite(d.arg)
			if why := s.touchesHost(target); why != "" || !filepath.IsAbs(target) {
				t.Fatalf("%s: doc-test write %s: give an absolute path under /srv/provisiond, /var/lib/provisiond or /etc/provisiond", where, d.arg)
			}
			if err := os.WriteFile(target, []byte(f.body), 0o644); err != nil {
				t.Fatalf("%s: doc-test write: %v", where, err)
			}

		case d != nil && d.verb == "log":
			if !f.plain() {
				t.Fatalf("%s: doc-test log on a %q block: it marks a sample of the log", where, f.lang)
			}
			if s.daemon == nil {
				t.Fatalf("%s: doc-test log, but no daemon runs", where)
			}
			s.check(where, f.body, &result{output: s.daemonLog, unchecked: d.unchecked, log: true})
			checks++

		case f.command():
			script, sample := f.body, ""
			if f.lang == "console" {
				script, sample = splitConsole(f.body)
			}
			out, err := s.run(s.rewrite(script))
			if err != nil {
				t.Fatalf("%s: %v\n--- block\n%s--- output\n%s", where, err, script, out)
			}
			ran++
			prev = &result{output: func() string { return out }}
			if sample != "" {
				s.check(where, sample, prev)
				checks++
			}

		case f.plain() && f.adjacent && sampleOf != nil:
			s.check(where, f.body, sampleOf)
			checks++
		}
	}
	t.Logf("%s: %d blocks and hidden steps run, %d skipped, %d samples checked", m.path, ran, skipped, checks)
}

// check fails the test for every line of sample that r's output lacks.
func (s *sandbox) check(where, sample string, r *result) {
	deadline := time.Now().Add(logWait)
	for {
		out := r.output()
		missing := unmatched(sample, out, r.unchecked)
		if len(missing) == 0 {
			return
		}
		if !r.log || time.Now().After(deadline) {
			s.t.Errorf("%s: the sample output does not match what provisiond printed; lines not found:\n\t%s\n--- printed\n%s",
				where, strings.Join(missing, "\n\t"), out)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemonLog is what the daemon logged so far, with the doc's paths.
func (s *sandbox) daemonLog() string { return s.unrewrite(s.daemon.logText()) }

// A daemon is the document's `provisiond serve`, in the background.
type daemon struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // valid once done is closed
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// startDaemon starts what the block says: `make run` (the serve command of
// the Makefile's run target, after the target's other commands) or its
// `provisiond serve` command. Either listens on the sandbox's loopback port,
// with --trust-loopback and without --dhcp-interface.
func (s *sandbox) startDaemon(block string) error {
	if s.daemon != nil {
		return errors.New("a second daemon in one document")
	}
	var serve string
	if strings.Contains(block, "make run") {
		prep, cmd, err := makeRun()
		if err != nil {
			return err
		}
		for _, p := range prep {
			if out, err := s.run(p); err != nil {
				return fmt.Errorf("make run: %s: %v\n%s", p, err, out)
			}
		}
		serve = cmd
	} else {
		joined := strings.ReplaceAll(block, "\\\n", " ")
		for _, l := range strings.Split(joined, "\n") {
			if strings.Contains(l, "provisiond serve ") {
				serve = l
				break
			}
		}
		if serve == "" {
			return errors.New("no make run and no provisiond serve command in it")
		}
	}
	serve = s.rewrite(adjustServe(serve, s.addr))
	if why := s.touchesHost(serve); why != "" {
		return fmt.Errorf("%s: %s, outside the sandbox", serve, why)
	}
	cwd, err := os.ReadFile(filepath.Join(s.state, "cwd"))
	if err != nil {
		return err
	}
	d := &daemon{logPath: filepath.Join(s.state, "daemon.log"), done: make(chan struct{})}
	logf, err := os.Create(d.logPath)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own descriptor
	d.cmd = exec.Command("bash", "-c", "exec "+serve)
	d.cmd.Dir = strings.TrimSpace(string(cwd))
	d.cmd.Env = s.env
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	s.daemon = d
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	s.t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
			s.t.Errorf("the daemon did not stop within 10 s of SIGTERM")
		}
	})
	c := &http.Client{Timeout: time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(daemonTimeout)
	for {
		select {
		case <-d.done:
			return fmt.Errorf("%s exited (%v):\n%s", serve, d.err, s.unrewrite(d.logText()))
		default:
		}
		if resp, err := c.Get("http://" + s.addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy within %v:\n%s", serve, daemonTimeout, s.unrewrite(d.logText()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// adjustServe makes a documented serve command runnable here: no sudo, no
// --dhcp-interface (proxyDHCP needs root and a real interface), the test's
// loopback --http-addr, and --trust-loopback, so that the test can stand in
// for machines from loopback.
func adjustServe(cmd, addr string) string {
	if i := strings.Index(cmd, " #"); i >= 0 {
		cmd = cmd[:i]
	}
	var out []string
	f := strings.Fields(cmd)
	for i := 0; i < len(f); i++ {
		switch a := f[i]; {
		case a == "sudo" && len(out) == 0:
		case a == "--dhcp-interface" || a == "--http-addr":
			i++ // and its value
		case strings.HasPrefix(a, "--dhcp-interface=") || strings.HasPrefix(a, "--http-addr="):
		case a == "--trust-loopback":
		default:
			out = append(out, a)
		}
	}
	return strings.Join(append(out, "--http-addr", addr, "--trust-loopback"), " ")
}

// makeRun reads the Makefile's run target: the commands before its serve
// command, and the serve command, with the Makefile's variables expanded.
func makeRun() (prep []string, serve string, err error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		return nil, "", err
	}
	assign := regexp.MustCompile(`^([A-Za-z_]+)\s*[:?]?=\s*(.*?)\s*$`)
	ref := regexp.MustCompile(`\$\((\w+)\)`)
	vars := map[string]string{}
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		if m := assign.FindStringSubmatch(l); m != nil {
			vars[m[1]] = m[2]
		}
		if strings.HasPrefix(l, "run:") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(l, "\t") {
			break
		}
		var undefined string
		cmd := ref.ReplaceAllStringFunc(strings.TrimPrefix(l, "\t"), func(r string) string {
			v, ok := vars[r[2:len(r)-1]]
			if !ok {
				undefined = r
			}
			return v
		})
		if undefined != "" {
			return nil, "", fmt.Errorf("Makefile run: %s: %s is not a plain variable", l, undefined)
		}
		if strings.Contains(cmd, " serve ") {
			serve = cmd
		} else {
			prep = append(prep, cmd)
		}
	}
	if serve == "" {
		return nil, "", errors.New("Makefile: no run target with a serve command")
	}
	return prep, serve, nil
}
