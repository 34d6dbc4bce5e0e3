package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/provisiond/provisiond/internal/etcdmember"
)

// memberConfig is the etcd member serve embeds with --etcd-name, so that
// provisiond hosts form the etcd cluster of their shared store themselves.
type memberConfig struct {
	Name           string
	PeerURL        string
	ClientURL      string
	InitialCluster string
	State          string
	DataDir        string
	PeerCACert     string
	PeerCert       string
	PeerKey        string
}

// finishMember checks the member flags and, with --etcd-name, makes the
// store default to etcd through this member. It runs before check.
func (c *storeConfig) finishMember(dataDir string) error {
	m := &c.Member
	if m.Name == "" {
		given := givenFlags(
			flagValue{"--etcd-peer-url", m.PeerURL}, flagValue{"--etcd-initial-cluster", m.InitialCluster}, flagValue{"--etcd-data-dir", m.DataDir},
			flagValue{"--etcd-peer-cacert", m.PeerCACert}, flagValue{"--etcd-peer-cert", m.PeerCert}, flagValue{"--etcd-peer-key", m.PeerKey})
		if len(given) > 0 {
			return needFlag(given, "--etcd-name, which runs the embedded etcd member")
		}
		return nil
	}
	if c.backendGiven && c.Backend == backendBolt {
		return usagef("--etcd-name runs an etcd member for --store etcd; it cannot go with --store bolt")
	}
	c.Backend = backendEtcd
	if len(c.Endpoints) == 0 {
		c.Endpoints = []string{m.ClientURL}
	}
	if m.DataDir == "" {
		m.DataDir = filepath.Join(dataDir, "etcd")
	}
	peerTLS := m.PeerCACert != "" || m.PeerCert != "" || m.PeerKey != ""
	switch {
	case m.PeerURL == "":
		return usagef("--etcd-name needs --etcd-peer-url URL, the address the other members reach this one at, such as http://10.0.0.1:2380")
	case m.State != etcdmember.StateNew && m.State != etcdmember.StateExisting:
		return usagef("--etcd-initial-cluster-state %q: want new or existing", m.State)
	case peerTLS && (m.PeerCACert == "" || m.PeerCert == "" || m.PeerKey == ""):
		return usagef("%s go together", peerTLSFlags)
	}
	if err := checkMemberURL("--etcd-peer-url", m.PeerURL, "2380", peerTLS, peerTLSFlags); err != nil {
		return err
	}
	if err := checkMemberURL("--etcd-client-url", m.ClientURL, "2379", c.CACert != "" && c.Cert != "", "--etcd-cacert, --etcd-cert and --etcd-key"); err != nil {
		return err
	}
	if m.InitialCluster == "" {
		m.InitialCluster = m.Name + "=" + m.PeerURL
	}
	return checkInitialCluster(*m, peerTLS)
}

const peerTLSFlags = "--etcd-peer-cacert, --etcd-peer-cert and --etcd-peer-key"

// checkMemberURL wants an http(s)://host:port URL (port is the example's);
// https exactly when the TLS flags named by tlsFlags are given.
func checkMemberURL(flag, raw, port string, tls bool, tlsFlags string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" || u.Hostname() == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
		return usagef("%s %q: want a URL such as http://10.0.0.1:%s", flag, raw, port)
	}
	switch {
	case u.Scheme == "https" && !tls:
		return usagef("%s %q: https needs %s", flag, raw, tlsFlags)
	case u.Scheme == "http" && tls:
		return usagef("%s %q: with %s, use https", flag, raw, tlsFlags)
	}
	return nil
}

// checkInitialCluster wants NAME=URL[,NAME=URL...] with distinct names,
// this member among them at its --etcd-peer-url.
func checkInitialCluster(m memberConfig, peerTLS bool) error {
	seen := map[string]string{}
	for _, e := range strings.Split(m.InitialCluster, ",") {
		name, u, ok := strings.Cut(strings.TrimSpace(e), "=")
		if !ok || name == "" {
			return usagef("--etcd-initial-cluster %q: want NAME=URL[,NAME=URL...], such as e0=http://10.0.0.1:2380,e1=http://10.0.0.2:2380", m.InitialCluster)
		}
		if _, dup := seen[name]; dup {
			return usagef("--etcd-initial-cluster names %s twice", name)
		}
		if err := checkMemberURL("--etcd-initial-cluster "+name, u, "2380", peerTLS, peerTLSFlags); err != nil {
			return err
		}
		seen[name] = u
	}
	switch u, ok := seen[m.Name]; {
	case !ok:
		return usagef("--etcd-initial-cluster %q lacks this member, --etcd-name %s", m.InitialCluster, m.Name)
	case strings.TrimSuffix(u, "/") != strings.TrimSuffix(m.PeerURL, "/"):
		return usagef("--etcd-initial-cluster gives %s=%s, but --etcd-peer-url is %s: the other members would look for it elsewhere", m.Name, u, m.PeerURL)
	}
	return nil
}

// errMemberFailed: the embedded etcd member stopped while serving.
var errMemberFailed = errors.New("etcd member failed")

// startMember starts the embedded member, when there is one, and waits for
// its cluster. The context returned ends when the member fails, which
// stops the daemon; stop closes the member.
func (c storeConfig) startMember(ctx context.Context, log *slog.Logger) (context.Context, func(), error) {
	m := c.Member
	if m.Name == "" {
		return ctx, func() {}, nil
	}
	log.Info("etcd member starting", "name", m.Name, "peer_url", m.PeerURL, "client_url", m.ClientURL, "initial_cluster", m.InitialCluster, "state", m.State, "data_dir", m.DataDir)
	cfg := etcdmember.Config{
		Name: m.Name, DataDir: m.DataDir, PeerURL: m.PeerURL, ClientURL: m.ClientURL,
		InitialCluster: m.InitialCluster, State: m.State, Logger: log,
		PeerTLS: etcdmember.TLSFiles{CACert: m.PeerCACert, Cert: m.PeerCert, Key: m.PeerKey},
	}
	if strings.HasPrefix(m.ClientURL, "https:") {
		cfg.ClientTLS = etcdmember.TLSFiles{CACert: c.CACert, Cert: c.Cert, Key: c.Key}
	}
	member, err := etcdmember.Start(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	log.Info("etcd member ready", "name", m.Name, "client_url", member.ClientURL())
	ctx, cancel := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case err, ok := <-member.Err():
			if ok {
				log.Error("etcd member failed; stopping", "name", m.Name, "error", err)
				cancel(fmt.Errorf("%w: %s: %w", errMemberFailed, m.Name, err))
			}
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		cancel(errors.New("stopping"))
		<-watched
		member.Close()
	}, nil
}
