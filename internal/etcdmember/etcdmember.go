// Package etcdmember runs an embedded etcd member (etcd's own embed
// package) inside provisiond, so that three provisiond hosts form the etcd
// cluster their shared store lives in, with no etcd to run beside them.
package etcdmember

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Cluster states, the values of Config.State.
const (
	StateNew      = embed.ClusterStateFlagNew
	StateExisting = embed.ClusterStateFlagExisting
)

// DefaultReadyTimeout bounds Start's wait for the cluster when
// Config.ReadyTimeout is zero: long enough to start the other hosts by hand.
const DefaultReadyTimeout = 2 * time.Minute

// Config describes the member.
type Config struct {
	Name    string // unique in the cluster, e.g. the host's name
	DataDir string // the member's raft log and database
	// PeerURL and ClientURL are listened on and advertised as they are:
	// the peer URL is how the other members reach this one.
	PeerURL, ClientURL string
	// InitialCluster is NAME=PEERURL[,NAME=PEERURL...] naming every member,
	// this one included; empty means a cluster of this member alone. Like
	// State, it is read only when DataDir holds no member yet.
	InitialCluster string
	State          string // StateNew (default) or StateExisting (joining a running cluster)
	// PeerTLS secures the traffic between members (https peer URLs):
	// each presents Cert and accepts only peers whose certificate CACert
	// signed. ClientTLS does the same on the client URL.
	PeerTLS, ClientTLS TLSFiles
	ReadyTimeout       time.Duration // default DefaultReadyTimeout
	Logger             *slog.Logger  // etcd's warnings and errors; nil discards
}

// TLSFiles are PEM file paths; all empty means plain http.
type TLSFiles struct {
	CACert, Cert, Key string
}

func (f TLSFiles) info() transport.TLSInfo {
	if f == (TLSFiles{}) {
		return transport.TLSInfo{}
	}
	return transport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CACert, ClientCertAuth: true}
}

// Member is a running etcd member.
type Member struct {
	etcd  *embed.Etcd
	close sync.Once // etcd's Close panics when called twice
}

// Start starts the member and waits until it has joined a cluster with a
// leader and serves clients. When the cluster does not form within
// ReadyTimeout, the error says which peers could not be reached.
func Start(ctx context.Context, cfg Config) (*Member, error) {
	ec, err := embedConfig(cfg)
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %s: %w", cfg.Name, err)
	}
	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return &Member{etcd: e}, nil
	case err := <-e.Err():
		abort(e)
		return nil, fmt.Errorf("etcd member %s: %w", cfg.Name, err)
	case <-ctx.Done():
		abort(e)
		return nil, fmt.Errorf("etcd member %s: %w", cfg.Name, context.Cause(ctx))
	case <-timer.C:
		why := unreachable(ctx, cfg.Name, ec.InitialCluster)
		abort(e)
		return nil, fmt.Errorf("etcd member %s: no cluster with a leader within %v: %s", cfg.Name, timeout, why)
	}
}

// abort stops a member that never became ready. etcd's Close alone would
// wait forever: it waits for the client servers, which start only when the
// member is ready or its raft loop has stopped, and it stops that loop later.
func abort(e *embed.Etcd) {
	e.Server.HardStop()
	e.Close()
}

// ClientURL is the URL the member serves clients on.
func (m *Member) ClientURL() string { return m.etcd.Config().AdvertiseClientUrls[0].String() }

// Err delivers an error that stopped the member after it started.
func (m *Member) Err() <-chan error { return m.etcd.Err() }

// Close stops the member: it leaves its peers without a goodbye, as a
// crash would, but with its data flushed. Later calls do nothing.
func (m *Member) Close() { m.close.Do(m.etcd.Close) }

func embedConfig(cfg Config) (*embed.Config, error) {
	peer, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL %q: %w", cfg.PeerURL, err)
	}
	client, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd client URL %q: %w", cfg.ClientURL, err)
	}
	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	}
	if cfg.State != "" {
		ec.ClusterState = cfg.State
	}
	ec.PeerTLSInfo, ec.ClientTLSInfo = cfg.PeerTLS.info(), cfg.ClientTLS.info()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(slogCore{log: log.With("component", "etcd")}))
	if err := ec.Validate(); err != nil {
		return nil, fmt.Errorf("etcd member %s: %w", cfg.Name, err)
	}
	return ec, nil
}

// unreachable says which of the other members' peer addresses refuse a
// TCP connection now: the usual reason a new cluster does not form.
func unreachable(ctx context.Context, self, initialCluster string) string {
	var down, up []string
	for _, m := range strings.Split(initialCluster, ",") {
		name, raw, _ := strings.Cut(m, "=")
		u, err := url.Parse(raw)
		if name == self || err != nil {
			continue
		}
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			down = append(down, fmt.Sprintf("%s (%v)", name, err))
			continue
		}
		c.Close()
		up = append(up, name)
	}
	switch {
	case len(down) > 0:
		return "peers unreachable: " + strings.Join(down, ", ")
	case len(up) > 0:
		return "every peer (" + strings.Join(up, ", ") + ") accepts connections: check their logs (TLS, a data dir from another cluster, a different --initial-cluster)"
	}
	return "a member alone should be its own leader: check the data dir"
}
