package etcdmember_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/provisiond/provisiond/internal/etcdmember"
	"github.com/provisiond/provisiond/internal/testutil"
)

// cluster is the configs of n members on free loopback ports.
func cluster(t *testing.T, n int, scheme string) []etcdmember.Config {
	t.Helper()
	var cfgs []etcdmember.Config
	var initial []string
	for i := range n {
		c := etcdmember.Config{
			Name:         fmt.Sprintf("e%d", i),
			DataDir:      filepath.Join(t.TempDir(), "etcd"),
			PeerURL:      scheme + "://" + testutil.FreeAddr(t),
			ClientURL:    "http://" + testutil.FreeAddr(t),
			ReadyTimeout: 30 * time.Second,
		}
		initial = append(initial, c.Name+"="+c.PeerURL)
		cfgs = append(cfgs, c)
	}
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(initial, ",")
	}
	return cfgs
}

// startAll starts the members at once, as three hosts booting would.
func startAll(t *testing.T, cfgs []etcdmember.Config) []*etcdmember.Member {
	t.Helper()
	members := make([]*etcdmember.Member, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Go(func() { members[i], errs[i] = etcdmember.Start(context.Background(), c) })
	}
	wg.Wait()
	for i, m := range members {
		if m != nil {
			t.Cleanup(m.Close)
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	return members
}

func client(t *testing.T, endpoint string, tlsc *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, TLS: tlsc, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestAlone: a member with no --initial-cluster is a cluster of one.
func TestAlone(t *testing.T) {
	cfg := cluster(t, 1, "http")[0]
	cfg.InitialCluster = ""
	m := startAll(t, []etcdmember.Config{cfg})[0]
	if m.ClientURL() != cfg.ClientURL {
		t.Errorf("ClientURL = %s, want %s", m.ClientURL(), cfg.ClientURL)
	}
	ctx := context.Background()
	cli := client(t, m.ClientURL(), nil)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
}

// TestThreeFormACluster: three members started together elect a leader; a
// write through one is read through another; with one closed, the other
// two still write; the closed one, restarted on its data dir, catches up.
func TestThreeFormACluster(t *testing.T) {
	cfgs := cluster(t, 3, "http")
	start := time.Now()
	ms := startAll(t, cfgs)
	t.Logf("three members ready in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := client(t, ms[0].ClientURL(), nil).Put(ctx, "k", "from e0"); err != nil {
		t.Fatal(err)
	}
	if r, err := client(t, ms[2].ClientURL(), nil).Get(ctx, "k"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "from e0" {
		t.Fatalf("Get through e2 = %v, %v; want e0's write", r, err)
	}

	ms[0].Close()
	c1 := client(t, ms[1].ClientURL(), nil)
	var err error
	for range 50 { // a write in flight to a dead leader is lost: retry while they elect
		if _, err = c1.Put(ctx, "k", "without e0"); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Put with e0 closed: %v", err)
	}

	restarted := cfgs[0]
	restarted.InitialCluster, restarted.State = "", "" // ignored: the data dir knows its cluster
	again, err := etcdmember.Start(ctx, restarted)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	c0 := client(t, again.ClientURL(), nil)
	if r, err := c0.Get(ctx, "k"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "without e0" {
		t.Fatalf("Get through the restarted e0 = %v, %v; want the write made without it", r, err)
	}
}

// TestPeersUnreachable: a member whose peers are down gives up after
// ReadyTimeout and names them; etcd's own warnings reach the slog logger.
func TestPeersUnreachable(t *testing.T) {
	cfg := cluster(t, 3, "http")[0]
	cfg.ReadyTimeout = 2 * time.Second
	var logs testutil.Buffer
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	start := time.Now()
	_, err := etcdmember.Start(context.Background(), cfg)
	if took := time.Since(start); err == nil || took > 10*time.Second {
		t.Fatalf("Start = %v after %v; want an error after about 2s", err, took)
	}
	for _, want := range []string{"within 2s", "peers unreachable", "e1 (", "e2 (", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if log := logs.String(); !strings.Contains(log, `"level":"WARN"`) || !strings.Contains(log, `"component":"etcd"`) || strings.Contains(log, `"level":"INFO"`) {
		t.Errorf("want etcd's warnings, and nothing less, in the log; got:\n%s", log)
	}
}

// TestStartCancelled: Start returns when its context ends.
func TestStartCancelled(t *testing.T) {
	cfg := cluster(t, 2, "http")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := etcdmember.Start(ctx, cfg); err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("Start = %v; want the context's error", err)
	}
}

// TestBadConfig: what etcd refuses is refused before anything listens.
func TestBadConfig(t *testing.T) {
	cfg := cluster(t, 1, "http")[0]
	cfg.InitialCluster = "other=" + cfg.PeerURL
	if _, err := etcdmember.Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "e0") {
		t.Fatalf("Start with itself missing from the initial cluster = %v; want an error naming e0", err)
	}
}

// TestTLS: with peer TLS, members form a cluster only with peers whose
// certificate the CA signed; with client TLS, only clients with such a
// certificate get in.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	good := newCA(t, dir, "good")
	rogue := newCA(t, dir, "rogue")

	t.Run("peers", func(t *testing.T) {
		cfgs := cluster(t, 2, "https")
		for i := range cfgs {
			cfgs[i].PeerTLS = good.issue(t, cfgs[i].Name)
		}
		ms := startAll(t, cfgs)
		if _, err := client(t, ms[1].ClientURL(), nil).Put(context.Background(), "k", "v"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("rogue peer", func(t *testing.T) {
		cfgs := cluster(t, 2, "https")
		cfgs[0].PeerTLS = good.issue(t, "e0")
		cfgs[1].PeerTLS = rogue.issue(t, "e1")
		cfgs[1].PeerTLS.CACert = good.cert // trusts e0, but e0 does not trust it
		for i := range cfgs {
			cfgs[i].ReadyTimeout = 3 * time.Second
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, c := range cfgs {
			wg.Go(func() {
				m, err := etcdmember.Start(context.Background(), c)
				if m != nil {
					m.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err == nil {
				t.Errorf("e%d formed a cluster with a peer the CA did not sign", i)
			} else {
				t.Log(err)
			}
		}
	})
	t.Run("clients", func(t *testing.T) {
		cfg := cluster(t, 1, "http")[0]
		cfg.ClientURL = "https://" + testutil.FreeAddr(t)
		cfg.ClientTLS = good.issue(t, "server")
		m := startAll(t, []etcdmember.Config{cfg})[0]
		ctx := context.Background()
		withCert := good.clientTLS(t, good.issue(t, "client"))
		if _, err := client(t, m.ClientURL(), withCert).Put(ctx, "k", "v"); err != nil {
			t.Fatalf("client with a certificate: %v", err)
		}
		noCert := good.clientTLS(t, etcdmember.TLSFiles{CACert: good.cert})
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := client(t, m.ClientURL(), noCert).Put(short, "k", "v"); err == nil {
			t.Fatal("client without a certificate could write")
		}
	})
}

// ca is a test certificate authority writing PEM files into dir.
type ca struct {
	dir, cert string
	tmpl      *x509.Certificate
	key       *ecdsa.PrivateKey
}

func newCA(t *testing.T, dir, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c := &ca{dir: dir, cert: filepath.Join(dir, name+"-ca.pem"), tmpl: tmpl, key: key}
	writePEM(t, c.cert, "CERTIFICATE", der)
	return c
}

var serial = big.NewInt(100)

// issue makes a certificate for 127.0.0.1, good for both ends of TLS (etcd
// peers dial each other with the same certificate they serve).
func (c *ca) issue(t *testing.T, name string) etcdmember.TLSFiles {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Add(serial, big.NewInt(1))
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).Set(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.tmpl, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(c.dir, fmt.Sprintf("%s-%s", filepath.Base(c.cert), serial))
	f := etcdmember.TLSFiles{CACert: c.cert, Cert: base + ".pem", Key: base + "-key.pem"}
	writePEM(t, f.Cert, "CERTIFICATE", der)
	writePEM(t, f.Key, "PRIVATE KEY", keyDER)
	return f
}

func (c *ca) clientTLS(t *testing.T, f etcdmember.TLSFiles) *tls.Config {
	t.Helper()
	cfg, err := transport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CACert}.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
