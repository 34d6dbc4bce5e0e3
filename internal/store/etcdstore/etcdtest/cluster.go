package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster is n real etcd processes (test/etcdserver) on loopback, for tests
// that kill and restart members: what an in-process member cannot show.
type Cluster struct {
	tb      testing.TB
	bin     string
	initial string // --initial-cluster
	members []*member
	mu      sync.Mutex // guards each member's proc and exited
}

type member struct {
	name, dir    string
	client, peer string        // URLs
	proc         *exec.Cmd     // nil while not running
	exited       chan struct{} // closed when proc has been waited for
}

// readyTimeout bounds the wait for a member (or the whole cluster) to answer.
const readyTimeout = 30 * time.Second

// StartCluster starts n members named e0..e<n-1>, each with its own data
// directory under tb.TempDir() and its log in <dir>/etcd.log, waits until
// every member serves a linearizable read (so there is a leader), and stops
// them all when the test ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("StartCluster(%d): want at least one member", n)
	}
	c := &Cluster{tb: tb, bin: Binary(tb)}
	root := tb.TempDir()
	var initial []string
	for i := range n {
		m := &member{name: fmt.Sprintf("e%d", i), dir: filepath.Join(root, fmt.Sprintf("e%d", i))}
		ports, err := freePorts(2)
		if err != nil {
			tb.Fatal(err)
		}
		m.client = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		m.peer = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		if err := os.Mkdir(m.dir, 0o700); err != nil {
			tb.Fatal(err)
		}
		initial = append(initial, m.name+"="+m.peer)
		c.members = append(c.members, m)
	}
	c.initial = strings.Join(initial, ",")
	tb.Cleanup(c.stopAll) // registered after TempDir: runs before the directories go
	for i := range c.members {
		if err := c.spawn(i, "new"); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for i := range c.members {
		if err := c.waitReady(ctx, i); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// Endpoints are the client URLs of all members, running or not.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.client)
	}
	return eps
}

// Endpoint is member i's client URL.
func (c *Cluster) Endpoint(i int) string { return c.members[i].client }

// Running reports whether member i's process is up (started and not exited).
func (c *Cluster) Running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[i]
	if m.proc == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to member i, a crash with no goodbye to its peers, and
// waits for the process to exit.
func (c *Cluster) Kill(i int) {
	c.tb.Helper()
	c.mu.Lock()
	m := c.members[i]
	proc, exited := m.proc, m.exited
	m.proc = nil
	c.mu.Unlock()
	if proc == nil {
		c.tb.Fatalf("etcd %s: Kill of a member that is not running", m.name)
	}
	_ = proc.Process.Kill() // fails only if it already exited: fine
	<-exited
}

// Start restarts member i on its data directory and waits until it serves
// a linearizable read.
func (c *Cluster) Start(i int) {
	c.tb.Helper()
	if c.Running(i) {
		c.tb.Fatalf("etcd %s: Start of a member that is running", c.members[i].name)
	}
	if err := c.spawn(i, "existing"); err != nil {
		c.tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := c.waitReady(ctx, i); err != nil {
		c.tb.Fatal(err)
	}
}

// Leader is the index of the member the running members name as leader.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	cli, err := newClient(c.Endpoints())
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	ids := map[uint64]int{}
	var leader uint64
	var errs []error
	for i, m := range c.members {
		if !c.Running(i) {
			continue
		}
		st, err := cli.Status(ctx, m.client)
		if err != nil {
			errs = append(errs, fmt.Errorf("status of etcd %s: %w", m.name, err))
			continue
		}
		ids[st.Header.MemberId] = i
		if st.Leader != 0 {
			leader = st.Leader
		}
	}
	if i, ok := ids[leader]; ok && leader != 0 {
		return i, nil
	}
	return 0, fmt.Errorf("no running etcd member is the leader: %w", errors.Join(errs...))
}

// spawn starts member i's process with the given --initial-cluster-state.
func (c *Cluster) spawn(i int, state string) error {
	m := c.members[i]
	logf, err := os.OpenFile(filepath.Join(m.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(c.bin,
		"--name", m.name,
		"--data-dir", filepath.Join(m.dir, "data"),
		"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", state,
		"--initial-cluster-token", "etcdtest",
		"--log-level", "warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd %s: %w", m.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // a killed member's exit status says nothing new
		close(exited)
	}()
	c.mu.Lock()
	m.proc, m.exited = cmd, exited
	c.mu.Unlock()
	return nil
}

// waitReady waits until member i serves a linearizable read, which needs
// a leader and the member caught up with it.
func (c *Cluster) waitReady(ctx context.Context, i int) error {
	m := c.members[i]
	cli, err := newClient([]string{m.client})
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(attempt, "etcdtest-ready")
		cancel()
		if err == nil {
			return nil
		}
		if !c.Running(i) {
			return fmt.Errorf("etcd %s exited at start:\n%s", m.name, c.logTail(i))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd %s not answering within %v (%v):\n%s", m.name, readyTimeout, err, c.logTail(i))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail is the end of member i's log, for a failure message.
func (c *Cluster) logTail(i int) string {
	b, err := os.ReadFile(filepath.Join(c.members[i].dir, "etcd.log"))
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stopAll kills every running member and waits for it.
func (c *Cluster) stopAll() {
	for i := range c.members {
		if c.Running(i) {
			c.Kill(i)
		}
	}
}

func newClient(endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// freePorts are n distinct loopback ports nothing listened on a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for len(ports) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// etcdBuild is test/etcdserver built once per test binary.
var etcdBuild struct {
	once sync.Once
	path string
	err  error
}

// Binary builds test/etcdserver (from the module holding the test's
// working directory) once per test binary. It lands at one fixed path per
// user, renamed into place, so concurrent test binaries never see a partial
// file and nothing is left behind but that one binary.
func Binary(tb testing.TB) string {
	tb.Helper()
	etcdBuild.once.Do(func() {
		etcdBuild.path, etcdBuild.err = buildEtcd()
	})
	if etcdBuild.err != nil {
		tb.Fatal(etcdBuild.err)
	}
	return etcdBuild.path
}

func buildEtcd() (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("provisiond-etcdserver-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	tmp.Close()
	cmd := exec.Command("go", "build", "-o", tmp.Name(), "./test/etcdserver")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("go build ./test/etcdserver in %s: %w\n%s", root, err, out)
	}
	path := filepath.Join(dir, "etcd")
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return path, nil
}
