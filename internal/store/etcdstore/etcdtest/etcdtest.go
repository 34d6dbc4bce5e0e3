// Package etcdtest starts real etcd on loopback for the tests of everything
// that runs on etcd: a member in-process (etcd's own embed package), or a
// cluster of etcd processes that a test can kill and restart (cluster.go).
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Member is a single-member etcd cluster on loopback.
type Member struct {
	// Endpoint is its client URL.
	Endpoint string
	etcd     *embed.Etcd
	dir      string
}

// Start starts a member with free ports and a fresh data directory; Close
// stops it and removes the directory.
func Start() (*Member, error) {
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		return nil, err
	}
	e, err := start(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	return &Member{Endpoint: e.Config().AdvertiseClientUrls[0].String(), etcd: e, dir: dir}, nil
}

// StartT is Start for one test: it fails tb if the member does not start,
// and stops the member when tb ends.
func StartT(tb testing.TB) *Member {
	tb.Helper()
	m, err := Start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.Close)
	return m
}

// Close stops the member and removes its data.
func (m *Member) Close() {
	m.etcd.Close()
	os.RemoveAll(m.dir)
}

func start(dir string) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop()) // quiet, even at shutdown
	cfg.UnsafeNoFsync = true                                       // a throwaway member: durability buys nothing here
	var urls []url.URL
	for range 2 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		urls = append(urls, url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)})
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = urls[:1], urls[:1]
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = urls[1:], urls[1:]
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, errors.New("etcd not ready within 30s")
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
