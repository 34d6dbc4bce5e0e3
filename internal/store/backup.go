package store

// Backups: a backend-neutral snapshot of a store (Store.Dump), the file it
// is kept in (BackupWriter, BackupReader) and the checks every backend's
// Restore applies to what it loads (Restoring).
//
// The file is JSON Lines: a header line, one line per record, a trailer
// line with the counts. A file cut short has no trailer, or counts that
// disagree, and is refused whole.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sentinels of backup and restore.
var (
	// ErrNotEmpty refuses a restore into a store that already holds a
	// machine or an event: a restore would mix two inventories.
	ErrNotEmpty = errors.New("the store is not empty: restore needs an empty data dir or etcd prefix")
	// ErrBadBackup marks a backup file that is not one, is damaged or was
	// cut short.
	ErrBadBackup = errors.New("bad backup")
)

// The kinds of Record, in the order Dump yields them.
const (
	KindMeta         = "meta"         // Key MetaRevision or MetaEventSeq; Value a JSON number
	KindMachine      = "machine"      // Key the canonical MAC; Value Machine JSON
	KindProvisioning = "provisioning" // Key the canonical MAC; Value Provisioning JSON
	KindUUID         = "uuid"         // Key a canonical UUID; Value the JSON string of the MAC it resolves to
	KindEvent        = "event"        // Key the decimal Seq; Value Event JSON
	KindSecret       = "secret"       // Key "<mac>/<name>"; Value the opaque (sealed) blob
	KindBindIP       = "bind-ip"      // Key the canonical IP; Value Binding JSON
	KindBindMAC      = "bind-mac"     // Key the canonical MAC; Value Binding JSON
	// KindLease came after the first files of BackupVersion 1: a reader
	// without it refuses a file holding leases (unknown kind) rather than
	// dropping them, and files without leases read as before.
	KindLease = "lease" // Key the canonical IPv4; Value Lease JSON
)

// The keys of KindMeta records.
const (
	MetaRevision = "revision"  // the store's Revision at the snapshot
	MetaEventSeq = "event-seq" // the last event Seq handed out (events may have been trimmed since)
)

// kinds lists the record kinds in Dump order.
var kinds = [...]string{KindMeta, KindMachine, KindProvisioning, KindUUID, KindEvent, KindSecret, KindBindIP, KindBindMAC, KindLease}

// Record is one entry of a snapshot. Value is the record's JSON, except for
// KindSecret, whose Value is the blob byte for byte.
type Record struct {
	Kind  string
	Key   string
	Value []byte
}

// MetaRecord returns the KindMeta record of key with value n.
func MetaRecord(key string, n uint64) Record {
	return Record{Kind: KindMeta, Key: key, Value: strconv.AppendUint(nil, n, 10)}
}

// EventKey is the Key of an event's record.
func EventKey(seq uint64) string { return strconv.FormatUint(seq, 10) }

// Backup file format.
const (
	BackupFormat  = "provisiond-backup"
	BackupVersion = 1
	// maxBackupLine bounds one line of a backup: a record is a few KB at
	// most (a machine has at most MaxLabels labels of MaxName bytes).
	maxBackupLine = 16 << 20
)

// BackupHeader is a backup file's first line.
type BackupHeader struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	Backend string    `json:"backend"` // the store it was taken from: bolt, etcd, memory
}

// BackupSummary is a backup file's last line: what it holds, so that a
// reader can tell a whole file from a truncated one.
type BackupSummary struct {
	End      bool           `json:"end"`      // always true: marks the trailer
	Records  int            `json:"records"`  // lines between header and trailer
	Counts   map[string]int `json:"counts"`   // records by kind, meta included
	Revision uint64         `json:"revision"` // the store's revision at the snapshot
}

// String says what a backup holds, for the command line.
func (s BackupSummary) String() string {
	return fmt.Sprintf("%d machines, %d events, %d secrets, %d bindings, %d leases, revision %d",
		s.Counts[KindMachine], s.Counts[KindEvent], s.Counts[KindSecret], s.Counts[KindBindIP]+s.Counts[KindBindMAC], s.Counts[KindLease], s.Revision)
}

// line is one record as a file line. Value is embedded JSON, or for a
// secret a JSON string of the blob in base64.
type line struct {
	Kind  string          `json:"kind"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// BackupWriter writes a backup file: NewBackupWriter writes the header,
// Write one record, Close the trailer.
type BackupWriter struct {
	w   *bufio.Writer
	sum BackupSummary
}

// NewBackupWriter writes the header of a backup of a backend store, taken at created.
func NewBackupWriter(w io.Writer, backend string, created time.Time) (*BackupWriter, error) {
	bw := &BackupWriter{w: bufio.NewWriter(w), sum: newSummary()}
	h := BackupHeader{Format: BackupFormat, Version: BackupVersion, Created: created.UTC(), Backend: backend}
	if err := bw.line(h); err != nil {
		return nil, fmt.Errorf("write backup header: %w", err)
	}
	return bw, nil
}

func (bw *BackupWriter) line(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := bw.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return nil
}

// Write appends r. It refuses a record of an unknown kind or whose value is
// not what its kind holds, so that a file it wrote always reads back.
func (bw *BackupWriter) Write(r Record) error {
	v, err := encodeValue(r)
	if err != nil {
		return fmt.Errorf("write backup record %s %q: %w", r.Kind, r.Key, err)
	}
	if err := bw.line(line{Kind: r.Kind, Key: r.Key, Value: v}); err != nil {
		return fmt.Errorf("write backup record %s %q: %w", r.Kind, r.Key, err)
	}
	bw.sum.add(r)
	return nil
}

func newSummary() BackupSummary { return BackupSummary{End: true, Counts: map[string]int{}} }

// add counts r, a checked record.
func (s *BackupSummary) add(r Record) {
	s.Records++
	s.Counts[r.Kind]++
	if r.Kind == KindMeta && r.Key == MetaRevision {
		s.Revision, _ = strconv.ParseUint(string(r.Value), 10, 64) // checked already
	}
}

// Close writes the trailer and flushes; it returns what the file holds.
// It does not close the underlying writer.
func (bw *BackupWriter) Close() (BackupSummary, error) {
	if err := bw.line(bw.sum); err != nil {
		return BackupSummary{}, fmt.Errorf("write backup trailer: %w", err)
	}
	if err := bw.w.Flush(); err != nil {
		return BackupSummary{}, fmt.Errorf("write backup: %w", err)
	}
	return bw.sum, nil
}

func encodeValue(r Record) (json.RawMessage, error) {
	if !slices.Contains(kinds[:], r.Kind) {
		return nil, fmt.Errorf("unknown kind: %w", ErrInvalid)
	}
	if r.Kind == KindSecret {
		return json.Marshal(r.Value) // base64
	}
	if r.Kind == KindMeta {
		if _, err := strconv.ParseUint(string(r.Value), 10, 64); err != nil {
			return nil, fmt.Errorf("meta value %.32q: %w", r.Value, ErrInvalid)
		}
	}
	if !json.Valid(r.Value) {
		return nil, fmt.Errorf("value is not JSON: %w", ErrInvalid)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, r.Value); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// BackupReader reads a backup file written by BackupWriter.
type BackupReader struct {
	sc     *bufio.Scanner
	header BackupHeader
	n      int // lines read, for messages
	sum    BackupSummary
	done   bool
}

// NewBackupReader reads and checks the header of a backup file.
func NewBackupReader(r io.Reader) (*BackupReader, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxBackupLine)
	br := &BackupReader{sc: sc}
	b, err := br.next()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: the file is empty", ErrBadBackup)
	}
	if err != nil {
		return nil, err
	}
	var h BackupHeader
	if json.Unmarshal(b, &h) != nil || h.Format != BackupFormat {
		return nil, fmt.Errorf("%w: not a provisiond backup (the first line has no \"format\":%q)", ErrBadBackup, BackupFormat)
	}
	if h.Version > BackupVersion {
		return nil, fmt.Errorf("%w: backup format version %d is newer than this provisiond reads (%d); use a newer provisiond", ErrBadBackup, h.Version, BackupVersion)
	}
	if h.Version < 1 {
		return nil, fmt.Errorf("%w: backup format version %d", ErrBadBackup, h.Version)
	}
	br.header = h
	return br, nil
}

// next returns the next line, io.EOF at the end of the input.
func (br *BackupReader) next() ([]byte, error) {
	if !br.sc.Scan() {
		if err := br.sc.Err(); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrBadBackup, br.n+1, err)
		}
		return nil, io.EOF
	}
	br.n++
	return br.sc.Bytes(), nil
}

// Header is the file's header.
func (br *BackupReader) Header() BackupHeader { return br.header }

// Summary is the file's trailer, once Records has ended without an error.
func (br *BackupReader) Summary() BackupSummary { return br.sum }

// Records yields the records in file order, then checks the trailer: a
// file without one (cut short), with lines after it, or whose counts differ
// from the records read ends with an error wrapping ErrBadBackup. It can be
// ranged over once.
func (br *BackupReader) Records() iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		if br.done {
			yield(Record{}, errors.New("backup records already read"))
			return
		}
		br.done = true
		got := newSummary()
		for {
			b, err := br.next()
			if errors.Is(err, io.EOF) {
				yield(Record{}, fmt.Errorf("%w: truncated: no trailer after %d records", ErrBadBackup, got.Records))
				return
			}
			if err != nil {
				yield(Record{}, err)
				return
			}
			var l struct {
				line
				BackupSummary
			}
			if err := json.Unmarshal(b, &l); err != nil {
				yield(Record{}, fmt.Errorf("%w: line %d: %w", ErrBadBackup, br.n, err))
				return
			}
			if l.End {
				if err := br.trailer(l.BackupSummary, got); err != nil {
					yield(Record{}, err)
				}
				return
			}
			r, err := decodeLine(l.line)
			if err != nil {
				yield(Record{}, fmt.Errorf("%w: line %d: %w", ErrBadBackup, br.n, err))
				return
			}
			got.add(r)
			if !yield(r, nil) {
				return
			}
		}
	}
}

// trailer checks the trailer sum against what was read, and that nothing follows it.
func (br *BackupReader) trailer(sum, got BackupSummary) error {
	if sum.Records != got.Records || !maps.Equal(sum.Counts, got.Counts) || sum.Revision != got.Revision {
		return fmt.Errorf("%w: the trailer counts %d records %v at revision %d, the file holds %d %v at %d",
			ErrBadBackup, sum.Records, sum.Counts, sum.Revision, got.Records, got.Counts, got.Revision)
	}
	if _, err := br.next(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: line %d: data after the trailer", ErrBadBackup, br.n)
	}
	br.sum = sum
	return nil
}

func decodeLine(l line) (Record, error) {
	r := Record{Kind: l.Kind, Key: l.Key, Value: l.Value}
	if l.Kind == KindSecret {
		if err := json.Unmarshal(l.Value, &r.Value); err != nil {
			return Record{}, fmt.Errorf("secret %q: %w", l.Key, err)
		}
	}
	if _, err := CheckRecord(r); err != nil {
		return Record{}, err
	}
	return r, nil
}

// CheckRecord checks that r is a record a store can hold: a known kind, a
// canonical key, and a value that decodes to what the kind holds and
// agrees with the key. It returns r's meta value for a KindMeta record.
func CheckRecord(r Record) (uint64, error) {
	bad := func(format string, a ...any) (uint64, error) {
		return 0, fmt.Errorf("%s %.64q: %s: %w", r.Kind, r.Key, fmt.Sprintf(format, a...), ErrInvalid)
	}
	decode := func(v any) error { return json.Unmarshal(r.Value, v) }
	canonMAC := func(s string) bool { m, err := CanonicalMAC(s); return err == nil && m == s }
	switch r.Kind {
	case KindMeta:
		n, err := strconv.ParseUint(string(r.Value), 10, 64)
		if err != nil || (r.Key != MetaRevision && r.Key != MetaEventSeq) {
			return bad("want %s or %s with a number", MetaRevision, MetaEventSeq)
		}
		return n, nil
	case KindMachine:
		var m Machine
		if err := decode(&m); err != nil {
			return bad("%v", err)
		}
		if !canonMAC(r.Key) || m.MAC != r.Key || !m.State.Valid() {
			return bad("machine %q in state %q", m.MAC, m.State)
		}
		if u, err := CanonicalUUID(m.UUID); m.UUID != "" && (err != nil || u != m.UUID) {
			return bad("uuid %q", m.UUID)
		}
	case KindProvisioning:
		var p Provisioning
		if err := decode(&p); err != nil || !canonMAC(r.Key) {
			return bad("not a MAC's provisioning: %v", err)
		}
	case KindUUID:
		var mac string
		if u, err := CanonicalUUID(r.Key); err != nil || u != r.Key {
			return bad("not a canonical UUID")
		}
		if err := decode(&mac); err != nil || !canonMAC(mac) {
			return bad("not a canonical MAC")
		}
	case KindEvent:
		var e Event
		if err := decode(&e); err != nil {
			return bad("%v", err)
		}
		if e.Seq == 0 || EventKey(e.Seq) != r.Key || (e.MAC != "" && !canonMAC(e.MAC)) {
			return bad("event %d of %q", e.Seq, e.MAC)
		}
	case KindSecret:
		mac, name, _ := strings.Cut(r.Key, "/")
		if !canonMAC(mac) || name == "" {
			return bad("want <mac>/<name>")
		}
	case KindBindIP:
		var b Binding
		if ip, err := CanonicalIP(r.Key); err != nil || ip != r.Key || decode(&b) != nil || b.IP != r.Key || !canonMAC(b.MAC) {
			return bad("not a binding of this address")
		}
	case KindBindMAC:
		var b Binding
		if !canonMAC(r.Key) || decode(&b) != nil || b.MAC != r.Key {
			return bad("not a binding of this MAC")
		}
	case KindLease:
		var l Lease
		if err := decode(&l); err != nil {
			return bad("%v", err)
		}
		if c, err := l.Canonical(); err != nil || c != l || l.IP != r.Key {
			return bad("not a canonical lease of this address: %v", err)
		}
	default:
		return 0, fmt.Errorf("unknown record kind %.32q: %w", r.Kind, ErrInvalid)
	}
	return 0, nil
}

// Restoring is what a backend's Restore keeps while loading: Check each
// record; at the end, write Revision and LastSeq with the last records.
type Restoring struct {
	Revision uint64 // the backup's revision
	LastSeq  uint64 // the last Seq handed out: the greater of the meta and the newest event
	FirstSeq uint64 // the oldest event restored; 0 if none
	// leases holds the addresses and MACs of the leases checked: a backup
	// holds one lease per address and per MAC, as a store does.
	leases map[string]bool
}

// Check checks r (CheckRecord) and notes what it says of the store's
// meta. It reports whether the backend writes r: meta records are not
// written as they are, the backend applies Revision and LastSeq instead.
func (rs *Restoring) Check(r Record) (bool, error) {
	n, err := CheckRecord(r)
	if err != nil {
		return false, err
	}
	switch r.Kind {
	case KindMeta:
		if r.Key == MetaRevision {
			rs.Revision = n
		} else {
			rs.LastSeq = max(rs.LastSeq, n)
		}
		return false, nil
	case KindEvent:
		seq, _ := strconv.ParseUint(r.Key, 10, 64) // checked by CheckRecord
		rs.LastSeq = max(rs.LastSeq, seq)
		if rs.FirstSeq == 0 || seq < rs.FirstSeq {
			rs.FirstSeq = seq
		}
	case KindLease:
		var l Lease
		_ = json.Unmarshal(r.Value, &l) // checked by CheckRecord
		if rs.leases == nil {
			rs.leases = map[string]bool{}
		}
		// An address and a MAC never read alike (a MAC has colons), so one
		// set holds both.
		for _, k := range []string{l.IP, l.MAC} {
			if k != "" && rs.leases[k] {
				return false, fmt.Errorf("%s %.64q: a second lease of %s: %w", r.Kind, r.Key, k, ErrInvalid)
			}
			rs.leases[k] = true
		}
	}
	return true, nil
}

// Dumper is the part of a Store a backup needs.
type Dumper interface {
	Dump(ctx context.Context, fn func(Record) error) error
}

// Backup writes a consistent snapshot of s, a backend store, to w.
func Backup(ctx context.Context, s Dumper, backend string, w io.Writer, now time.Time) (BackupSummary, error) {
	bw, err := NewBackupWriter(w, backend, now)
	if err != nil {
		return BackupSummary{}, err
	}
	if err := s.Dump(ctx, bw.Write); err != nil {
		return BackupSummary{}, fmt.Errorf("backup: %w", err)
	}
	return bw.Close()
}

// RestoreFrom loads the backup file in r into s, which must be empty.
func RestoreFrom(ctx context.Context, s Store, r io.Reader) (BackupSummary, error) {
	br, err := NewBackupReader(r)
	if err != nil {
		return BackupSummary{}, err
	}
	if err := s.Restore(ctx, br.Records()); err != nil {
		return BackupSummary{}, err
	}
	return br.Summary(), nil
}

// Copy loads a snapshot of src into dst, which must be empty, without a
// file in between, and returns what it copied.
func Copy(ctx context.Context, dst, src Store) (BackupSummary, error) {
	sum := newSummary()
	records := func(yield func(Record, error) bool) {
		stopped := errors.New("stopped")
		err := src.Dump(ctx, func(r Record) error {
			sum.add(r)
			if !yield(r, nil) {
				return stopped // Restore failed: it has its own error
			}
			return nil
		})
		if err != nil && !errors.Is(err, stopped) {
			yield(Record{}, fmt.Errorf("dump: %w", err))
		}
	}
	if err := dst.Restore(ctx, records); err != nil {
		return BackupSummary{}, err
	}
	return sum, nil
}

// Count dumps s and counts its records by kind, to check a restore or a copy.
func Count(ctx context.Context, s Store) (BackupSummary, error) {
	sum := newSummary()
	err := s.Dump(ctx, func(r Record) error {
		sum.add(r)
		return nil
	})
	if err != nil {
		return BackupSummary{}, fmt.Errorf("count: %w", err)
	}
	return sum, nil
}
