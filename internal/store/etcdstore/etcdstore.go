// Package etcdstore is a store.Store on etcd, for the highly-available mode
// in which several provisiond instances share one inventory.
//
// Every write that must be atomic is one etcd transaction built the same
// way: read what it needs (one read-only Txn, so at one revision), decide
// in plain code, then commit Txn(If(ModRevision(each key read) == what was
// read)).Then(puts...). A failed compare means another writer got there
// first; the attempt is thrown away and re-run from a fresh read (Changes
// are documented as safe to re-run), at most maxAttempts times with
// jittered backoff. There is no locking and no consensus of our own: etcd's
// transactions are the only arbiter.
//
// Keys, all under Config.Prefix (P):
//
//	P/meta/schema              schema version, as in the bbolt store
//	P/meta/revision            empty; put by every transaction that writes a machine
//	                           or an event, so its ModRevision is Store.Revision
//	P/meta/events              eventLog JSON: the last Seq handed out, the oldest kept
//	P/machines/<mac>           store.Machine JSON
//	P/provisioning/<mac>       store.Provisioning JSON
//	P/uuids/<uuid>             canonical MAC: the UUID index
//	P/events/<seq, 20 digits>  store.Event JSON; zero-padded so key order is Seq order
//	P/secrets/<mac>/<name>     opaque blob
//	P/bind-ip/<ip>             store.Binding JSON: the MAC DHCP showed using ip
//	P/bind-mac/<mac>           store.Binding JSON: the UUID mac sent in DHCP
//	P/leases/<ip>              store.Lease JSON (leases.go)
//	P/lease-macs/<mac>         the IPv4 of the lease mac holds: the lease index
//	P/locks/<key>/<lease>      concurrency.Mutex of the Locker (locks.go)
//	P/git/leader/<lease>       concurrency.Election of the Git leader (election.go)
//	P/git/published            the commit the Git leader published (published.go)
//	P/git/rejected             the last commit it rejected
//
// Limits: every Change that returns events compares P/meta/events, so such
// Changes commit one at a time cluster-wide (the price of a gapless Seq in
// commit order); Changes without events contend only per machine. One
// transaction holds at most etcd's --max-txn-ops operations (128 by
// default), so a Change may return about 120 events at most. Range reads
// page at one revision: a compaction of that revision mid-read fails the
// read, which the caller may simply repeat.
//
// The rules on sightings, merges and Changes are package store's own
// (Machine.Sighting, Machine.Merge, CheckChange), as in every backend.
package etcdstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/provisiond/provisiond/internal/store"
)

// ErrContended is returned when a write lost its compare to other writers
// maxAttempts times in a row.
var ErrContended = errors.New("too many conflicting writers")

// errConflict is one lost compare: the attempt is re-run from a fresh read.
var errConflict = errors.New("conflict")

const (
	// maxAttempts bounds the re-runs of one write. Each lost attempt means
	// another writer committed, so the cluster as a whole always progresses;
	// 100 lets ~50 writers of one key all get through (the conformance suite
	// has 50) with room to spare.
	maxAttempts = 100
	// maxBackoff caps the jittered pause between attempts.
	maxBackoff = 20 * time.Millisecond
	// pageSize is how many keys a range read fetches at a time.
	pageSize = 512
	// maxTxnOps stays under etcd's default --max-txn-ops (128) for the
	// prunes, which split their deletes into transactions of this many
	// compares and operations at most.
	maxTxnOps = 120
	// ageCheckEvery is how often (in Seqs) the age cap is checked, as in
	// the bbolt store: it costs a read of the oldest events.
	ageCheckEvery = 64
	// schemaVersion is the layout this package writes and understands.
	schemaVersion = 1
	// defaultDialTimeout bounds Open when Config.DialTimeout is zero.
	defaultDialTimeout = 5 * time.Second
	// DefaultPrefix is used when Config.Prefix is empty.
	DefaultPrefix = "/provisiond"
)

// Config says which etcd cluster to use and where in it.
type Config struct {
	Endpoints []string // client URLs, e.g. https://10.0.0.1:2379
	// Prefix holds every key of this deployment (several may share one
	// cluster); default /provisiond. A trailing slash is dropped.
	Prefix string
	// Client TLS, all optional: CACert verifies the cluster, Cert and Key
	// authenticate this client. File paths.
	CACert, Cert, Key string
	// DialTimeout bounds Open's first contact with the cluster; default 5s.
	DialTimeout time.Duration
}

// Store is the etcd implementation of store.Store. It is safe for
// concurrent use, and any number of Stores (in any number of processes) may
// share one Prefix.
type Store struct {
	cli         *clientv3.Client
	prefix      string // no trailing slash
	maxEvents   int
	maxEventAge time.Duration
	clock       func() time.Time
	locks       *Locker // see locks.go
	revs        revisionCache
	contended   chan struct{}      // one slot: this instance's retries take turns (see retry)
	stopWatch   context.CancelFunc // ends watchRevision
	watchDone   chan struct{}
}

var _ store.Store = (*Store)(nil)

// Open connects to the cluster in cfg and checks (stamping it if new) the
// schema under cfg.Prefix. It fails within cfg.DialTimeout if no endpoint
// answers. opts.Timeout is unused; the other Options are as for store.Open.
func Open(ctx context.Context, cfg Config, opts store.Options) (*Store, error) {
	opts = opts.WithDefaults()
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("etcdstore: open: no endpoints: %w", store.ErrInvalid)
	}
	prefix := strings.TrimRight(cfg.Prefix, "/")
	if cfg.Prefix == "" {
		prefix = DefaultPrefix
	}
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	where := fmt.Sprintf("etcd %s prefix %q", strings.Join(cfg.Endpoints, ","), prefix)
	tlsCfg, err := clientTLS(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: open %s: %w", where, err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: timeout,
		TLS:         tlsCfg,
		// No Context: the client outlives ctx, which bounds Open only.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: open %s: %w", where, err)
	}
	cli.KV = kv{cli.KV} // transient failures marked: see unavailable.go
	s := &Store{cli: cli, prefix: prefix, maxEvents: opts.MaxEvents, maxEventAge: opts.MaxEventAge, clock: opts.Clock, contended: make(chan struct{}, 1)}
	s.locks = newLocker(s)
	// The client dials lazily: the schema check is the first contact, and
	// the deadline keeps an unreachable cluster from hanging Open.
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.prepareSchemaRetrying(cctx); err != nil {
		_ = cli.Close() // the schema error is the one worth reporting
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("etcdstore: open %s: cluster unreachable within %s: %w", where, timeout, err)
		}
		return nil, fmt.Errorf("etcdstore: open %s: %w", where, err)
	}
	wctx, stop := context.WithCancel(context.Background())
	s.stopWatch, s.watchDone = stop, make(chan struct{})
	go func() {
		defer close(s.watchDone)
		s.watchRevision(wctx)
	}()
	return s, nil
}

// clientTLS builds the client's TLS config from cfg's files; nil if none.
func clientTLS(cfg Config) (*tls.Config, error) {
	if cfg.CACert == "" && cfg.Cert == "" && cfg.Key == "" {
		return nil, nil
	}
	if (cfg.Cert == "") != (cfg.Key == "") {
		return nil, fmt.Errorf("tls: cert and key go together: %w", store.ErrInvalid)
	}
	info := transport.TLSInfo{CertFile: cfg.Cert, KeyFile: cfg.Key, TrustedCAFile: cfg.CACert}
	c, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return c, nil
}

// schemaAttempt bounds one try of the schema check at Open. A cluster
// electing a new leader (its old one just died) loses requests forwarded
// to the dead one until etcd times them out, about 7 s later; short tries,
// repeated until the dial timeout, get through once the new leader is in
// (about 1-2 s), so an instance started during an election still starts.
const schemaAttempt = time.Second

// prepareSchemaRetrying runs prepareSchema in short attempts until one
// answers or ctx ends. Only an attempt that timed out or found the cluster
// unavailable is repeated: any other answer (a schema this binary cannot
// use, a refused request) ends it at once.
func (s *Store) prepareSchemaRetrying(ctx context.Context) error {
	for {
		actx, cancel := context.WithTimeout(ctx, schemaAttempt)
		err := s.prepareSchema(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !transient(err) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// prepareSchema stamps a fresh prefix and refuses a newer schema, in one
// transaction so that two instances starting together agree.
func (s *Store) prepareSchema(ctx context.Context) error {
	k := s.key("meta/schema")
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, strconv.Itoa(schemaVersion))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return fmt.Errorf("schema key vanished")
	}
	v, err := strconv.Atoi(string(kvs[0].Value))
	if err != nil || v < 1 {
		return fmt.Errorf("unreadable schema version %q: %w", kvs[0].Value, store.ErrInvalid)
	}
	if v > schemaVersion {
		return fmt.Errorf("%w: the prefix has schema version %d, this provisiond knows up to %d; run a newer provisiond", store.ErrSchemaTooNew, v, schemaVersion)
	}
	return nil
}

// Close closes the client. Its only write to the cluster is revoking the
// lease of the Locker's locks, if it took any, so they are free at once.
func (s *Store) Close() error {
	s.locks.closeLocks() // before the client goes, so the lease is revoked
	s.stopWatch()
	<-s.watchDone
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcdstore: close: %w", err)
	}
	return nil
}

// now is the store's UTC time, taken once per call so that a re-run
// attempt stores the same.
func (s *Store) now() time.Time { return s.clock().UTC() }

// Revision implements store.Store: the ModRevision of P/meta/revision,
// which every transaction writing a machine or an event puts (and nothing
// else does). etcd revisions are cluster-wide and only grow, so it is the
// same for every client and moves exactly with those commits; 0 before the
// first. While the revision watch is established it answers from it (see
// revisionCache), without a round trip.
func (s *Store) Revision(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if rev, ok := s.revs.get(); ok {
		return rev, nil
	}
	resp, err := s.cli.Get(ctx, s.revisionKey())
	if err != nil {
		return 0, fmt.Errorf("etcdstore: revision: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return uint64(resp.Kvs[0].ModRevision), nil
}

// bumpRevision is the operation every machine or event transaction includes.
func (s *Store) bumpRevision() clientv3.Op { return clientv3.OpPut(s.revisionKey(), "") }

// Keys, as in the layout of the package comment.

func (s *Store) key(rel string) string        { return s.prefix + "/" + rel }
func (s *Store) dir(name string) string       { return s.prefix + "/" + name + "/" }
func (s *Store) revisionKey() string          { return s.key("meta/revision") }
func (s *Store) eventLogKey() string          { return s.key("meta/events") }
func (s *Store) machineKey(mac string) string { return s.dir("machines") + mac }
func (s *Store) provKey(mac string) string    { return s.dir("provisioning") + mac }
func (s *Store) uuidKey(uuid string) string   { return s.dir("uuids") + uuid }
func (s *Store) eventKey(seq uint64) string   { return s.dir("events") + fmt.Sprintf("%020d", seq) }
func (s *Store) secretDir(mac string) string  { return s.dir("secrets") + mac + "/" }
func (s *Store) bindIPKey(ip string) string   { return s.dir("bind-ip") + ip }
func (s *Store) bindMACKey(mac string) string { return s.dir("bind-mac") + mac }

// retry runs attempt until it returns anything but errConflict, at most
// maxAttempts times, pausing a random while (growing with the attempts)
// between runs so that contending writers spread out.
//
// A first attempt runs at once; after a conflict, this instance's retries
// take turns (s.contended): writes that return events all compare the one
// event-log key, so under load retrying together only makes them lose to
// each other again (measured: 16 concurrent boots through one instance
// cost 17 attempts per boot instead of 3). In turn, a retry loses only to
// other instances' writes.
func (s *Store) retry(ctx context.Context, attempt func() error) error {
	err := attempt()
	if !errors.Is(err, errConflict) {
		return err
	}
	select {
	case s.contended <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.contended }()
	for i := 1; ; i++ {
		if i >= maxAttempts {
			return fmt.Errorf("%w: gave up after %d attempts", ErrContended, maxAttempts)
		}
		pause := rand.N(min(time.Duration(i)*time.Millisecond, maxBackoff))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		if err := attempt(); !errors.Is(err, errConflict) {
			return err
		}
	}
}

// unchanged compares a key's ModRevision with the one read (0: absent).
func unchanged(key string, modRev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(key), "=", modRev)
}

// commit runs Txn(If(cmps)).Then(ops); a failed compare is errConflict.
func (s *Store) commit(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op) error {
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return errConflict
	}
	s.committed(resp, ops)
	return nil
}

// scan calls fn with each key-value in [from, end) in key order (descending
// if desc), a page at a time, all pages at the revision of the first; fn
// returns false to stop. It returns the revision read at.
func (s *Store) scan(ctx context.Context, from, end string, desc bool, rev int64, fn func(kv *mvccpb.KeyValue) (bool, error), opts ...clientv3.OpOption) (int64, error) {
	order := clientv3.SortAscend
	if desc {
		order = clientv3.SortDescend
	}
	for from < end {
		o := append([]clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize),
			clientv3.WithSort(clientv3.SortByKey, order), clientv3.WithRev(rev)}, opts...)
		resp, err := s.cli.Get(ctx, from, o...)
		if err != nil {
			return rev, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			more, err := fn(kv)
			if err != nil || !more {
				return rev, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if desc {
			end = last
		} else {
			from = last + "\x00"
		}
	}
	return rev, nil
}

// scanDir is scan over every key under dir, ascending, at the current revision.
func (s *Store) scanDir(ctx context.Context, dir string, fn func(kv *mvccpb.KeyValue) (bool, error), opts ...clientv3.OpOption) error {
	_, err := s.scan(ctx, dir, clientv3.GetPrefixRangeEnd(dir), false, 0, fn, opts...)
	return err
}

// getJSON decodes the value of the first kv of a range response into v;
// it returns the key's ModRevision, 0 (and v untouched) if absent.
func getJSON(kvs []*mvccpb.KeyValue, v any) (int64, error) {
	if len(kvs) == 0 {
		return 0, nil
	}
	if err := json.Unmarshal(kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", kvs[0].Key, err)
	}
	return kvs[0].ModRevision, nil
}

// allJSON decodes every value under dir, in key order.
func allJSON[T any](ctx context.Context, s *Store, dir string) ([]T, error) {
	var all []T
	err := s.scanDir(ctx, dir, func(kv *mvccpb.KeyValue) (bool, error) {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return false, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		all = append(all, v)
		return true, nil
	})
	return all, err
}

func putJSON(key string, v any) (clientv3.Op, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return clientv3.Op{}, err
	}
	return clientv3.OpPut(key, string(b)), nil
}
