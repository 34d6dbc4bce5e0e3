package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/provisiond/provisiond/internal/etcdmember"
	"github.com/provisiond/provisiond/internal/server"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
)

// storeConfig is where the inventory lives: bbolt in the data directory
// (one host), or etcd (several instances sharing one inventory).
type storeConfig struct {
	Backend     string // "bolt" or "etcd"
	Endpoints   []string
	Prefix      string
	CACert      string
	Cert        string
	Key         string
	DialTimeout time.Duration
	// Member is the etcd member serve embeds (serve only).
	Member memberConfig
	// backendGiven says --store was set, not defaulted: --etcd-name
	// changes the default, not an explicit choice.
	backendGiven bool
}

// Store backends, the values of --store.
const (
	backendBolt = "bolt"
	backendEtcd = "etcd"
)

// declareStoreFlags declares the flags that choose and reach the store, for
// serve and every command that opens the store itself.
func declareStoreFlags(fs *flagSet, c *storeConfig) {
	c.Backend = backendBolt
	fs.Var(backendFlag{c}, "store", "`BACKEND` holding the inventory, sessions and events: bolt (<data-dir>/provisiond.db, one instance) or etcd (shared by every instance given the same --etcd-endpoints and --etcd-prefix)")
	fs.Func("etcd-endpoints", "`URL[,URL...]` of the etcd cluster's client endpoints (--store etcd)", func(v string) error {
		c.Endpoints = nil
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				c.Endpoints = append(c.Endpoints, e)
			}
		}
		return nil
	})
	fs.StringVar(&c.Prefix, "etcd-prefix", etcdstore.DefaultPrefix, "key `PREFIX` of this deployment in etcd: deployments sharing a cluster use different ones")
	fs.StringVar(&c.CACert, "etcd-cacert", "", "CA certificate `FILE` that signed the etcd servers' certificates (TLS)")
	fs.StringVar(&c.Cert, "etcd-cert", "", "client certificate `FILE` for etcd (TLS client authentication)")
	fs.StringVar(&c.Key, "etcd-key", "", "client key `FILE` for etcd (TLS client authentication)")
	fs.DurationVar(&c.DialTimeout, "etcd-dial-timeout", 5*time.Second, "how long to wait for the etcd cluster at start")
}

// backendFlag is --store, noting that it was given.
type backendFlag struct{ c *storeConfig }

func (f backendFlag) String() string {
	if f.c == nil { // the flag package's probe for the zero value
		return ""
	}
	return f.c.Backend
}

func (f backendFlag) Set(v string) error {
	f.c.Backend, f.c.backendGiven = v, true
	return nil
}

// declareMemberFlags declares serve's flags of the embedded etcd member.
func declareMemberFlags(fs *flagSet, c *storeConfig) {
	m := &c.Member
	fs.StringVar(&m.Name, "etcd-name", "", "run an embedded etcd member named `NAME` (unique in its cluster), so that provisiond hosts form the etcd cluster themselves; implies --store etcd with --etcd-endpoints defaulting to --etcd-client-url")
	fs.StringVar(&m.PeerURL, "etcd-peer-url", "", "`URL` the member listens on for its peers and they reach it at, such as http://10.0.0.1:2380 (required with --etcd-name)")
	fs.StringVar(&m.ClientURL, "etcd-client-url", "http://127.0.0.1:2379", "`URL` the member listens on for clients and advertises; https serves with --etcd-cacert, --etcd-cert and --etcd-key")
	fs.StringVar(&m.InitialCluster, "etcd-initial-cluster", "", "every member of a new cluster as `NAME=URL[,NAME=URL...]` (peer URLs), this one included (default: this member alone); read only while the member's data dir is empty")
	fs.StringVar(&m.State, "etcd-initial-cluster-state", etcdmember.StateNew, "`STATE` of the cluster the member starts in: new (formed with --etcd-initial-cluster) or existing (joining a running cluster that added it)")
	fs.StringVar(&m.DataDir, "etcd-data-dir", "", "`DIR` of the member's data (default: <data-dir>/etcd)")
	fs.StringVar(&m.PeerCACert, "etcd-peer-cacert", "", "CA certificate `FILE`: peers must present a certificate it signed (https peer URLs)")
	fs.StringVar(&m.PeerCert, "etcd-peer-cert", "", "certificate `FILE` the member presents to its peers, as server and client")
	fs.StringVar(&m.PeerKey, "etcd-peer-key", "", "key `FILE` of --etcd-peer-cert")
}

// check refuses a store configuration that cannot work, before anything is
// created.
func (c storeConfig) check() error {
	etcdFlags := givenFlags(flagValue{"--etcd-endpoints", strings.Join(c.Endpoints, ",")},
		flagValue{"--etcd-cacert", c.CACert}, flagValue{"--etcd-cert", c.Cert}, flagValue{"--etcd-key", c.Key})
	switch {
	case c.Backend != backendBolt && c.Backend != backendEtcd:
		return usagef("--store %q: want bolt or etcd", c.Backend)
	case c.Backend == backendBolt && len(etcdFlags) > 0:
		return needFlag(etcdFlags, "--store etcd")
	case c.Backend == backendEtcd && len(c.Endpoints) == 0:
		return usagef("--store etcd needs --etcd-endpoints URL[,URL...], such as http://10.0.0.1:2379")
	case (c.Cert == "") != (c.Key == ""):
		return usagef("--etcd-cert and --etcd-key go together")
	case c.DialTimeout <= 0:
		return usagef("--etcd-dial-timeout %v: want a positive duration such as 5s", c.DialTimeout)
	}
	return nil
}

// flagValue is a flag's name, as typed, and its value ("": not given).
type flagValue struct{ name, value string }

// givenFlags returns the names of the flags in fl that were given, in order,
// so that an error names the settings (maybe PROVISIOND_ variables) at fault.
func givenFlags(fl ...flagValue) []string {
	var out []string
	for _, f := range fl {
		if f.value != "" {
			out = append(out, f.name)
		}
	}
	return out
}

// needFlag is the usage error of the flags given, which mean nothing
// without need.
func needFlag(given []string, need string) error {
	if len(given) == 1 {
		return usagef("%s needs %s", given[0], need)
	}
	return usagef("%s and %s need %s", strings.Join(given[:len(given)-1], ", "), given[len(given)-1], need)
}

// closingStore is a store the daemon closes when it stops.
type closingStore interface {
	store.Store
	Close() error
}

// open opens the configured store; dataDir holds the bbolt file.
func (c storeConfig) open(ctx context.Context, dataDir string) (closingStore, error) {
	if c.Backend == backendEtcd {
		s, err := etcdstore.Open(ctx, etcdstore.Config{
			Endpoints: c.Endpoints, Prefix: c.Prefix,
			CACert: c.CACert, Cert: c.Cert, Key: c.Key, DialTimeout: c.DialTimeout,
		}, store.Options{})
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return s, nil
	}
	db, err := boltstore.Open(filepath.Join(dataDir, "provisiond.db"), store.Options{})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w; several instances share one inventory with --store etcd", err)
	}
	if err != nil {
		return nil, err
	}
	return db, nil
}

// info is what /healthz reports of the store: etcd's own Health (every
// endpoint, the leader, a linearizable read), or for bbolt a read of its
// revision.
func (c storeConfig) info(db store.Store) server.StoreInfo {
	return server.StoreInfo{Backend: c.Backend, Prefix: c.prefix(), Probe: probe(c.Backend, db)}
}

// prefix is etcd's key prefix, "" for bbolt.
func (c storeConfig) prefix() string {
	if c.Backend == backendEtcd {
		return c.Prefix
	}
	return ""
}

// probe is the health check of db, for /healthz and the metrics.
func probe(backend string, db store.Store) func(context.Context) store.Health {
	if e, ok := db.(interface {
		Health(context.Context) store.Health
	}); ok {
		return e.Health
	}
	return func(ctx context.Context) store.Health {
		start := time.Now()
		_, err := db.Revision(ctx)
		return store.Health{Backend: backend, Err: err, Latency: time.Since(start)}
	}
}

// attrs are the log fields that say which store is in use; never a secret.
func (c storeConfig) attrs(dataDir string) []any {
	if c.Backend == backendEtcd {
		return []any{"backend", c.Backend, "endpoints", strings.Join(c.Endpoints, ","), "prefix", c.Prefix, "tls", c.CACert != "" || c.Cert != ""}
	}
	return []any{"backend", c.Backend, "path", filepath.Join(dataDir, "provisiond.db")}
}
