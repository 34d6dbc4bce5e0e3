package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

// `provisiond store backup | restore | migrate`: a backup file of the whole
// store taken through the running daemon's API, loaded into an empty store,
// and a bbolt data dir copied into etcd. The file format is package store's
// (store.BackupWriter).

func storeCommand() *command {
	return &command{
		name:    "store",
		summary: "back up, restore or migrate the inventory, sessions, events and sealed secrets",
		about: "A backup is one file (JSON Lines) holding everything the store holds: machines,\n" +
			"provisioning sessions (token hashes), the event log, sealed BMC credentials and\n" +
			"DHCP bindings, as taken at one moment while the daemon runs. Keep it as you keep\n" +
			"the database, and the secret key (--secret-key-file) apart from it: the sealed\n" +
			"credentials open only with that key.",
		examples: []string{
			"provisiond store backup --out provisiond.backup",
			"provisiond store restore --in provisiond.backup --data-dir /var/lib/provisiond",
			"provisiond store migrate --data-dir /var/lib/provisiond --etcd-endpoints http://10.0.0.1:2379",
		},
		verbNoun: "verb",
		verbs: []*command{
			{
				name:    "backup",
				summary: "save a consistent snapshot of the running daemon's store into a file, through its API",
				about: "Works on either store (bolt or etcd) while the daemon serves. The file is\n" +
					"written as FILE.<random>.tmp with mode 0600 and renamed to FILE only once the\n" +
					"whole snapshot has arrived and checked out, so FILE is never a partial backup.",
				examples: []string{
					"provisiond store backup --out provisiond.backup",
					"provisiond store backup --out /srv/backup/provisiond-$(date +%F).backup --server http://10.0.0.2:8080",
				},
				flags: storeBackupFlags,
			},
			{
				name:    "restore",
				summary: "load a backup file into an empty store",
				about: "Opens the store itself, with the same flags and PROVISIOND_ variables as serve:\n" +
					"<data-dir>/provisiond.db, which must be new (a daemon running on a data dir holds\n" +
					"it locked), or with --store etcd the --etcd-prefix, which must hold no machine\n" +
					"and no event.\n" +
					"The whole file is checked before anything is written, so a damaged or cut-short\n" +
					"backup changes nothing. Event numbers, sessions and sealed secrets come back as\n" +
					"they were; give the daemon the same --secret-key-file as before.",
				examples: []string{
					"provisiond store restore --in provisiond.backup --data-dir /var/lib/provisiond",
					"provisiond store restore --in provisiond.backup --store etcd --etcd-endpoints http://10.0.0.1:2379",
				},
				flags: storeRestoreFlags,
			},
			{
				name:    "migrate",
				summary: "copy a bbolt data dir's store into etcd",
				about: "Copies <data-dir>/provisiond.db into the etcd cluster at --etcd-endpoints under\n" +
					"--etcd-prefix, which must hold no machine and no event, then checks that etcd\n" +
					"holds as many records of each kind. Stop the daemon first; afterwards start it\n" +
					"(and the others sharing the inventory) with --store etcd and the same --etcd-*\n" +
					"flags. The target is etcd whatever --store says.",
				examples: []string{
					"provisiond store migrate --data-dir /var/lib/provisiond --etcd-endpoints http://10.0.0.1:2379",
					"provisiond store migrate --data-dir ./data --etcd-endpoints https://10.0.0.1:2379,https://10.0.0.2:2379 --etcd-prefix /site-a --etcd-cacert ca.pem --etcd-cert client.pem --etcd-key client-key.pem",
				},
				flags: storeMigrateFlags,
			},
		},
	}
}

// storeResult is what a store command prints, for -o json too.
type storeResult struct {
	File     string         `json:"file,omitempty"`
	Bytes    int64          `json:"bytes,omitempty"`
	Target   string         `json:"target,omitempty"`
	Source   string         `json:"source,omitempty"` // the daemon, data dir or (restore) backend the store came from
	Taken    time.Time      `json:"taken,omitzero"`   // when the backup restored was taken
	Revision uint64         `json:"revision"`
	Counts   map[string]int `json:"counts"`
}

func (r storeResult) print(w io.Writer, o output, what string) error {
	sum := store.BackupSummary{Counts: r.Counts, Revision: r.Revision}
	return o.print(w, r, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "%s: %s\n", what, sum)
		return err
	})
}

func storeBackupFlags(fs *flagSet, c *cli) func([]string) error {
	cf := addClientFlags(fs, c)
	out := fs.String("out", "", "backup `FILE` to write (required); replaced only by a whole backup")
	return func(pos []string) error {
		if len(pos) != 0 {
			return usagef("store backup takes no arguments, got %q", pos)
		}
		if *out == "" {
			return usagef("--out FILE is required")
		}
		cl, err := cf.client()
		if err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		cl.ctx = ctx
		res, err := backupTo(cl, *out)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		return res.print(c.stdout, *cf.out, fmt.Sprintf("wrote %s (%s)", *out, boot.Bytes(uint64(res.Bytes))))
	}
}

// backupTo saves the daemon's backup as out: into a temporary file beside
// it, read back through store.BackupReader as it arrives (a stream cut
// short has no trailer), synced, then renamed over out.
func backupTo(cl *apiClient, out string) (storeResult, error) {
	body, err := cl.stream("/store/backup")
	if err != nil {
		return storeResult{}, err
	}
	defer body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".*.tmp") // mode 0600
	if err != nil {
		return storeResult{}, fmt.Errorf("write backup: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n := &countingWriter{w: tmp}
	_, sum, err := checkBackup(io.TeeReader(body, n))
	if err != nil {
		return storeResult{}, fmt.Errorf("the backup from %s: %w", cl.server, err)
	}
	if err := tmp.Sync(); err != nil {
		return storeResult{}, fmt.Errorf("write backup %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return storeResult{}, fmt.Errorf("write backup %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return storeResult{}, fmt.Errorf("write backup: %w", err)
	}
	done = true
	return storeResult{File: out, Bytes: n.n, Source: cl.server, Revision: sum.Revision, Counts: sum.Counts}, nil
}

// checkBackup reads a whole backup file, checking every record and the
// trailer, and returns its header and summary.
func checkBackup(r io.Reader) (store.BackupHeader, store.BackupSummary, error) {
	br, err := store.NewBackupReader(r)
	if err != nil {
		return store.BackupHeader{}, store.BackupSummary{}, err
	}
	for _, err := range br.Records() {
		if err != nil {
			return store.BackupHeader{}, store.BackupSummary{}, err
		}
	}
	return br.Header(), br.Summary(), nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// stream GETs path and returns the body of a 200 answer, unread and
// unbounded: a backup may be larger than do's limit, and is not one JSON
// value. Other answers come back as *apiError, as from do.
func (c *apiClient) stream(path string) (io.ReadCloser, error) {
	req, err := c.request(http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	hc := *c.http
	hc.Timeout = 0 // the download takes as long as it takes; Ctrl-C ends it
	resp, err := c.send(&hc, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return nil, c.failure(resp, b)
}

func storeRestoreFlags(fs *flagSet, c *cli) func([]string) error {
	var sc storeConfig
	declareStoreFlags(fs, &sc)
	dataDir := fs.String("data-dir", "./data", "`DIR` of the bbolt store (--store bolt), as serve's")
	in := fs.String("in", "", "backup `FILE` to load (required)")
	out := addOutputFlag(fs)
	return func(pos []string) error {
		if len(pos) != 0 {
			return usagef("store restore takes no arguments, got %q", pos)
		}
		if *in == "" {
			return usagef("--in FILE is required")
		}
		if err := sc.check(); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		res, err := restoreFile(ctx, sc, *dataDir, *in)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		what := fmt.Sprintf("restored %s (taken %s from %s) into %s", *in, res.Taken.Local().Format(time.RFC3339), res.Source, res.Target)
		return res.print(c.stdout, *out, what)
	}
}

// restoreFile checks the whole file, then loads it into the configured
// store and checks that the store holds what the file does.
func restoreFile(ctx context.Context, sc storeConfig, dataDir, in string) (storeResult, error) {
	f, err := os.Open(in)
	if err != nil {
		return storeResult{}, err
	}
	defer f.Close()
	header, _, err := checkBackup(f)
	if err != nil {
		return storeResult{}, fmt.Errorf("%s: %w", in, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return storeResult{}, err
	}
	db, err := openStore(ctx, sc, dataDir)
	if err != nil {
		return storeResult{}, err
	}
	defer db.Close()
	sum, err := store.RestoreFrom(ctx, db, f)
	if err != nil {
		return storeResult{}, restoreError(sc, dataDir, err)
	}
	if err := checkCounts(ctx, db, sum); err != nil {
		return storeResult{}, err
	}
	return storeResult{File: in, Target: describeStore(sc, dataDir), Source: header.Backend, Taken: header.Created,
		Revision: sum.Revision, Counts: sum.Counts}, nil
}

// openStore opens a store a restore or migration writes (or a migration
// reads), saying what to do about a running daemon.
func openStore(ctx context.Context, sc storeConfig, dataDir string) (closingStore, error) {
	db, err := sc.open(ctx, dataDir)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%s: %w; stop the daemon first", describeStore(sc, dataDir), store.ErrLocked)
	}
	return db, err
}

// restoreError says what to do about a store that is not empty.
func restoreError(sc storeConfig, dataDir string, err error) error {
	if !errors.Is(err, store.ErrNotEmpty) {
		return err
	}
	if sc.Backend == backendEtcd {
		return fmt.Errorf("%s holds machines or events; restore into a new --etcd-prefix, or delete this one (etcdctl del --prefix %s/): %w",
			describeStore(sc, dataDir), strings.TrimRight(sc.Prefix, "/"), store.ErrNotEmpty)
	}
	return fmt.Errorf("%s holds machines or events; restore into a new --data-dir: %w", describeStore(sc, dataDir), store.ErrNotEmpty)
}

// checkCounts checks that db holds as many records of each kind as sum says
// went in (meta records aside: the store keeps its own).
func checkCounts(ctx context.Context, db store.Store, sum store.BackupSummary) error {
	got, err := store.Count(ctx, db)
	if err != nil {
		return err
	}
	data := func(c map[string]int) map[string]int {
		c = maps.Clone(c)
		delete(c, store.KindMeta)
		return c
	}
	if !maps.Equal(data(got.Counts), data(sum.Counts)) {
		return fmt.Errorf("the store holds %v after loading %v; check it before use", data(got.Counts), data(sum.Counts))
	}
	return nil
}

func describeStore(sc storeConfig, dataDir string) string {
	if sc.Backend == backendEtcd {
		return fmt.Sprintf("etcd %s prefix %s", strings.Join(sc.Endpoints, ","), sc.Prefix)
	}
	return filepath.Join(dataDir, "provisiond.db")
}

func storeMigrateFlags(fs *flagSet, c *cli) func([]string) error {
	var sc storeConfig
	declareStoreFlags(fs, &sc)
	dataDir := fs.String("data-dir", "./data", "`DIR` holding the bbolt store to copy (provisiond.db)")
	out := addOutputFlag(fs)
	return func(pos []string) error {
		if len(pos) != 0 {
			return usagef("store migrate takes no arguments, got %q", pos)
		}
		sc.Backend = backendEtcd
		if err := sc.check(); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		res, err := migrate(ctx, sc, *dataDir)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		return res.print(c.stdout, *out, fmt.Sprintf("copied %s into %s", res.Source, res.Target))
	}
}

// migrate copies the bbolt store in dataDir into etcd and checks the counts.
func migrate(ctx context.Context, sc storeConfig, dataDir string) (storeResult, error) {
	path := filepath.Join(dataDir, "provisiond.db")
	// Open would create an empty database: a mistyped --data-dir must not
	// migrate nothing, successfully.
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return storeResult{}, fmt.Errorf("no store at %s; --data-dir is the directory serve was given", path)
	}
	src, err := openStore(ctx, storeConfig{Backend: backendBolt}, dataDir)
	if err != nil {
		return storeResult{}, err
	}
	defer src.Close()
	dst, err := openStore(ctx, sc, dataDir)
	if err != nil {
		return storeResult{}, err
	}
	defer dst.Close()
	sum, err := store.Copy(ctx, dst, src)
	if err != nil {
		return storeResult{}, restoreError(sc, dataDir, err)
	}
	if err := checkCounts(ctx, dst, sum); err != nil {
		return storeResult{}, err
	}
	return storeResult{Source: path, Target: describeStore(sc, dataDir), Revision: sum.Revision, Counts: sum.Counts}, nil
}
