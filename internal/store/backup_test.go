package store_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

var sample = []store.Record{
	store.MetaRecord(store.MetaRevision, 42),
	store.MetaRecord(store.MetaEventSeq, 7),
	{Kind: store.KindMachine, Key: "52:54:00:ab:cd:01", Value: []byte(`{"mac":"52:54:00:ab:cd:01","uuid":"8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2b","state":"ready","labels":{"rack":"r1"}}`)},
	{Kind: store.KindProvisioning, Key: "52:54:00:ab:cd:01", Value: []byte(`{"token_hash":"ab12"}`)},
	{Kind: store.KindUUID, Key: "8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2b", Value: []byte(`"52:54:00:ab:cd:01"`)},
	{Kind: store.KindEvent, Key: "7", Value: []byte(`{"seq":7,"time":"2026-03-01T12:00:00Z","mac":"52:54:00:ab:cd:01","type":"boot"}`)},
	{Kind: store.KindSecret, Key: "52:54:00:ab:cd:01/bmc", Value: []byte("\x00\xffsealed\n")},
	{Kind: store.KindBindIP, Key: "10.0.0.1", Value: []byte(`{"mac":"52:54:00:ab:cd:01","ip":"10.0.0.1","seen":"2026-03-01T12:00:00Z"}`)},
	{Kind: store.KindBindMAC, Key: "52:54:00:ab:cd:01", Value: []byte(`{"mac":"52:54:00:ab:cd:01","uuid":"8a0c4f2e-1b3d-4e5f-9a6b-7c8d9e0f1a2b","seen":"2026-03-01T12:00:00Z"}`)},
	{Kind: store.KindLease, Key: "10.0.0.5", Value: []byte(`{"ip":"10.0.0.5","mac":"52:54:00:ab:cd:01","network":"lab","expires":"2026-03-01T13:00:00Z","updated":"2026-03-01T12:00:00Z"}`)},
	{Kind: store.KindLease, Key: "10.0.0.6", Value: []byte(`{"ip":"10.0.0.6","network":"lab","expires":"2026-03-01T12:10:00Z","declined":true,"updated":"2026-03-01T12:00:00Z"}`)},
}

func writeSample(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := store.NewBackupWriter(&buf, "bolt", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sample {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != len(sample) || sum.Revision != 42 || sum.Counts[store.KindSecret] != 1 {
		t.Errorf("summary %+v", sum)
	}
	return buf.Bytes()
}

// readAll reads a backup file whole.
func readAll(b []byte) ([]store.Record, store.BackupSummary, error) {
	r, err := store.NewBackupReader(bytes.NewReader(b))
	if err != nil {
		return nil, store.BackupSummary{}, err
	}
	var rs []store.Record
	for rec, err := range r.Records() {
		if err != nil {
			return rs, store.BackupSummary{}, err
		}
		rs = append(rs, rec)
	}
	return rs, r.Summary(), nil
}

func TestBackupFileRoundTrip(t *testing.T) {
	b := writeSample(t)
	if !bytes.HasPrefix(b, []byte(`{"format":"provisiond-backup","version":1,"created":"2026-03-01T12:00:00Z","backend":"bolt"}`+"\n")) {
		t.Errorf("header:\n%s", b)
	}
	got, sum, err := readAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sample) {
		t.Fatalf("read %d records, want %d", len(got), len(sample))
	}
	for i := range sample {
		if got[i].Kind != sample[i].Kind || got[i].Key != sample[i].Key || !bytes.Equal(got[i].Value, sample[i].Value) {
			t.Errorf("record %d = %+v, want %+v", i, got[i], sample[i])
		}
	}
	if sum.Records != len(sample) || sum.Revision != 42 {
		t.Errorf("summary %+v", sum)
	}
}

func TestBackupFileRefused(t *testing.T) {
	good := writeSample(t)
	lines := strings.SplitAfter(string(good), "\n")
	trailer := len(lines) - 2 // the last element is "" after the final newline
	for _, tc := range []struct {
		name string
		file string
		want string
	}{
		{"empty", "", "empty"},
		{"not a backup", `{"machines":[]}` + "\n", "not a provisiond backup"},
		{"not JSON", "hello\n", "not a provisiond backup"},
		{"newer version", `{"format":"provisiond-backup","version":2}` + "\n", "version 2 is newer"},
		{"truncated before the trailer", strings.Join(lines[:trailer], ""), "truncated"},
		{"cut mid-line", string(good[:len(good)-40]), "line"},
		{"a record dropped", strings.Join(append(lines[:3:3], lines[4:]...), ""), "trailer counts"},
		{"garbage line", strings.Join(lines[:3], "") + "garbage\n" + strings.Join(lines[3:], ""), "line 4"},
		{"data after the trailer", string(good) + `{"kind":"meta"}` + "\n", "after the trailer"},
		{"bad key", strings.Replace(string(good), `"key":"10.0.0.1"`, `"key":"10.0.0.01"`, 1), "bind-ip"},
		{"unknown kind", strings.Replace(string(good), `"kind":"uuid"`, `"kind":"uuids"`, 1), "unknown record kind"},
		{"lease under another address", strings.Replace(string(good), `"key":"10.0.0.5"`, `"key":"10.0.0.7"`, 1), "lease"},
		{"declined lease with a mac", strings.Replace(string(good), `{"ip":"10.0.0.6",`, `{"ip":"10.0.0.6","mac":"52:54:00:ab:cd:02",`, 1), "lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readAll([]byte(tc.file))
			if !errors.Is(err, store.ErrBadBackup) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrBadBackup saying %q", err, tc.want)
			}
		})
	}
}

func TestBackupWriterRefusesBadValue(t *testing.T) {
	w, err := store.NewBackupWriter(&bytes.Buffer{}, "memory", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []store.Record{
		{Kind: "nope", Key: "x", Value: []byte("{}")},
		{Kind: store.KindMachine, Key: "x", Value: []byte("{")},
		{Kind: store.KindMeta, Key: store.MetaRevision, Value: []byte("-1")},
	} {
		if err := w.Write(r); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Write(%+v) = %v, want ErrInvalid", r, err)
		}
	}
}

// FuzzBackupReader: no input makes the reader panic, and whatever it
// accepts whole writes back to a file that reads the same.
func FuzzBackupReader(f *testing.F) {
	good := writeSample(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"format":"provisiond-backup","version":1}` + "\n" + `{"end":true,"records":0,"counts":{}}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, _, err := readAll(b)
		if err != nil {
			if !errors.Is(err, store.ErrBadBackup) {
				t.Fatalf("error not wrapping ErrBadBackup: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		w, err := store.NewBackupWriter(&buf, "fuzz", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if err := w.Write(r); err != nil {
				t.Fatalf("a record the reader accepted does not write: %v", err)
			}
		}
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
		again, _, err := readAll(buf.Bytes())
		if err != nil || len(again) != len(rs) {
			t.Fatalf("rewritten file: %d records, %v; want %d", len(again), err, len(rs))
		}
	})
}

// endless is a line that never ends: it counts what was read of it and
// gives up (an error, not a hang) after limit bytes.
type endless struct{ n, limit int }

func (e *endless) Read(p []byte) (int, error) {
	if e.n >= e.limit {
		return 0, errors.New("read the whole endless line: the reader does not bound a line")
	}
	for i := range p {
		p[i] = 'a'
	}
	e.n += len(p)
	return len(p), nil
}

// TestBackupReaderBoundsALine: a line that never ends (a damaged or hostile
// file) is refused as a bad backup after a bounded read, not buffered whole.
func TestBackupReaderBoundsALine(t *testing.T) {
	const bound = 16 << 20 // maxBackupLine
	line := &endless{limit: 4 * bound}
	header := `{"format":"provisiond-backup","version":1}` + "\n"
	r, err := store.NewBackupReader(io.MultiReader(strings.NewReader(header), line))
	if err != nil {
		t.Fatal(err)
	}
	for _, err = range r.Records() {
	}
	if !errors.Is(err, store.ErrBadBackup) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("err = %v, want ErrBadBackup at line 2", err)
	}
	if line.n > 2*bound {
		t.Errorf("read %d bytes of one line before refusing it, want about %d", line.n, bound)
	}
}

// TestBackupFileWithoutLeases: a file written before leases existed (same
// format version, no lease records) still reads whole.
func TestBackupFileWithoutLeases(t *testing.T) {
	file := `{"format":"provisiond-backup","version":1,"created":"2026-03-01T12:00:00Z","backend":"bolt"}
{"kind":"meta","key":"revision","value":3}
{"kind":"machine","key":"52:54:00:ab:cd:01","value":{"mac":"52:54:00:ab:cd:01","state":"ready"}}
{"kind":"bind-ip","key":"10.0.0.1","value":{"mac":"52:54:00:ab:cd:01","ip":"10.0.0.1","seen":"2026-03-01T12:00:00Z"}}
{"end":true,"records":3,"counts":{"bind-ip":1,"machine":1,"meta":1},"revision":3}
`
	rs, sum, err := readAll([]byte(file))
	if err != nil || len(rs) != 3 || sum.Counts[store.KindLease] != 0 {
		t.Errorf("read %d records, summary %+v, %v; want 3, no leases", len(rs), sum, err)
	}
}

// TestRestoringOneLeasePerAddressAndMAC: a backup, like a store, holds one
// lease per address and per MAC.
func TestRestoringOneLeasePerAddressAndMAC(t *testing.T) {
	lease := func(ip, mac string) store.Record {
		return store.Record{Kind: store.KindLease, Key: ip, Value: []byte(`{"ip":"` + ip + `","mac":"` + mac + `"}`)}
	}
	for name, second := range map[string]store.Record{
		"address": lease("10.0.0.5", "52:54:00:ab:cd:02"),
		"mac":     lease("10.0.0.6", "52:54:00:ab:cd:01"),
	} {
		var rs store.Restoring
		if _, err := rs.Check(lease("10.0.0.5", "52:54:00:ab:cd:01")); err != nil {
			t.Fatal(err)
		}
		if _, err := rs.Check(lease("10.0.0.7", "52:54:00:ab:cd:03")); err != nil {
			t.Fatalf("a lease of another address and MAC: %v", err)
		}
		if _, err := rs.Check(second); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("a second lease of one %s: err = %v, want ErrInvalid", name, err)
		}
	}
}
