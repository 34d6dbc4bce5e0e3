package boltstore

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

func mustAppend(tb testing.TB, db *DB, e store.Event) store.Event {
	tb.Helper()
	got, err := db.AppendEvent(context.Background(), e)
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

// stepClock returns a clock starting at t0 that moves on by step at each reading.
func stepClock(t0 time.Time, step time.Duration) func() time.Time {
	var mu sync.Mutex
	next := t0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t := next
		next = next.Add(step)
		return t
	}
}

func TestAppendEvent(t *testing.T) {
	db := mustOpen(t, store.Options{})
	before := time.Now()
	e1 := mustAppend(t, db, store.Event{MAC: "52-54-00-AB-CD-01", Type: "discovered"})
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	e2 := mustAppend(t, db, store.Event{Type: "reload", Time: at})
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"sequence starts at 1", e1.Seq == 1},
		{"sequence increases", e2.Seq == 2},
		{"MAC is canonicalised", e1.MAC == testMAC},
		{"the store stamps the time", !e1.Time.Before(before) && !e1.Time.After(time.Now())},
		{"a caller's time is not trusted", !e2.Time.Equal(at) && !e2.Time.Before(e1.Time)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Errorf("e1 %+v, e2 %+v", e1, e2)
			}
		})
	}
	if _, err := db.AppendEvent(context.Background(), store.Event{MAC: "nope", Type: "x"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("bad MAC: err = %v, want store.ErrInvalid", err)
	}
}

func TestEvents(t *testing.T) {
	t0 := time.Now().UTC().Add(-time.Hour)
	db := mustOpen(t, store.Options{Clock: stepClock(t0, time.Minute)})
	const other = "52:54:00:00:00:02"
	// seq: 1 testMAC t0, 2 other t0+1m, 3 testMAC t0+2m, 4 none t0+3m, 5 testMAC t0+4m
	// types: t u t t u
	for i, mac := range []string{testMAC, other, testMAC, "", testMAC} {
		mustAppend(t, db, store.Event{MAC: mac, Type: []string{"t", "u"}[i%3%2]})
	}
	for _, tc := range []struct {
		name    string
		q       store.EventQuery
		want    []uint64
		wantErr error
	}{
		{name: "all", q: store.EventQuery{}, want: []uint64{1, 2, 3, 4, 5}},
		{name: "by MAC", q: store.EventQuery{MAC: "52-54-00-ab-cd-01"}, want: []uint64{1, 3, 5}},
		{name: "by other MAC", q: store.EventQuery{MAC: other}, want: []uint64{2}},
		{name: "since is inclusive", q: store.EventQuery{Since: t0.Add(2 * time.Minute)}, want: []uint64{3, 4, 5}},
		{name: "after seq", q: store.EventQuery{AfterSeq: 3}, want: []uint64{4, 5}},
		{name: "after last seq", q: store.EventQuery{AfterSeq: 5}},
		{name: "after max seq", q: store.EventQuery{AfterSeq: ^uint64(0)}},
		{name: "limit", q: store.EventQuery{Limit: 2}, want: []uint64{1, 2}},
		{name: "combined", q: store.EventQuery{MAC: testMAC, Since: t0.Add(time.Minute), AfterSeq: 1, Limit: 1}, want: []uint64{3}},
		{name: "newest first", q: store.EventQuery{Newest: true}, want: []uint64{5, 4, 3, 2, 1}},
		{name: "newest of a machine, limited", q: store.EventQuery{MAC: testMAC, Newest: true, Limit: 2}, want: []uint64{5, 3}},
		{name: "newest after seq", q: store.EventQuery{AfterSeq: 3, Newest: true}, want: []uint64{5, 4}},
		{name: "before seq", q: store.EventQuery{BeforeSeq: 3}, want: []uint64{1, 2}},
		{name: "newest before seq: the next older page", q: store.EventQuery{BeforeSeq: 4, Newest: true, Limit: 2}, want: []uint64{3, 2}},
		{name: "newest before a seq past the end", q: store.EventQuery{BeforeSeq: 99, Newest: true}, want: []uint64{5, 4, 3, 2, 1}},
		{name: "newest before the first", q: store.EventQuery{BeforeSeq: 1, Newest: true}},
		{name: "between", q: store.EventQuery{AfterSeq: 1, BeforeSeq: 5, Newest: true}, want: []uint64{4, 3, 2}},
		{name: "by type", q: store.EventQuery{Type: "u"}, want: []uint64{2, 5}},
		{name: "by type and MAC, newest first", q: store.EventQuery{Type: "t", MAC: testMAC, Newest: true}, want: []uint64{3, 1}},
		{name: "unknown MAC", q: store.EventQuery{MAC: "52:54:00:00:00:99"}},
		{name: "bad MAC", q: store.EventQuery{MAC: "nope"}, wantErr: store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es, err := db.Events(context.Background(), tc.q)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got := seqs(es); !slices.Equal(got, tc.want) {
				t.Errorf("seqs = %v, want %v", got, tc.want)
			}
		})
	}
}

// The revision is the database's, not the process's: it survives a reopen
// and goes on growing, so every reader of the file agrees on it (storetest
// checks when it moves).
func TestRevisionPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "provisiond.db")
	ctx := context.Background()
	db, err := Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustSeen(t, db, store.Machine{MAC: testMAC})
	mustAppend(t, db, store.Event{Type: "t"})
	before, err := db.Revision(ctx)
	if err != nil || before < 2 {
		t.Fatalf("revision %d, %v after two writes", before, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(path, store.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if got, err := db.Revision(ctx); got != before || err != nil {
		t.Fatalf("revision after reopening %d, %v; want %d", got, err, before)
	}
	mustSeen(t, db, store.Machine{MAC: testMAC, Arch: "bios"})
	if got, _ := db.Revision(ctx); got <= before {
		t.Errorf("revision %d after a write; want more than %d", got, before)
	}
}

func TestEventCap(t *testing.T) {
	old := time.Now().UTC().Add(-2 * time.Hour)
	for _, tc := range []struct {
		name    string
		opts    store.Options
		old     int // events appended first, timestamped 2h ago
		fresh   int // events appended after, timestamped now
		wantMax int // the log never holds more than this
		wantMin int // and the newest ones are kept
		noOld   bool
	}{
		{name: "by count", opts: store.Options{MaxEvents: 100}, fresh: 300, wantMax: 100, wantMin: 99},
		{name: "by count, trimming in batches", opts: store.Options{MaxEvents: 400}, fresh: 1000, wantMax: 400, wantMin: 396},
		{name: "by age", opts: store.Options{MaxEventAge: time.Hour}, old: 100, fresh: 2 * ageCheckEvery, wantMax: 2 * ageCheckEvery, wantMin: 2 * ageCheckEvery, noOld: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each append waits for an fsync; let them overlap
			var appended atomic.Int64
			tc.opts.Clock = func() time.Time {
				if appended.Load() < int64(tc.old) {
					return old
				}
				return time.Now()
			}
			db := mustOpen(t, tc.opts)
			var last store.Event
			for i := range tc.old + tc.fresh {
				last = mustAppend(t, db, store.Event{Type: "t"})
				appended.Add(1)
				if n := countEvents(t, db); n > tc.wantMax {
					t.Fatalf("after %d appends the log holds %d events, cap %d", i+1, n, tc.wantMax)
				}
			}
			es, err := db.Events(context.Background(), store.EventQuery{})
			if err != nil {
				t.Fatal(err)
			}
			if len(es) < tc.wantMin || es[len(es)-1].Seq != last.Seq {
				t.Errorf("kept %d events ending at %d, want at least %d ending at %d", len(es), es[len(es)-1].Seq, tc.wantMin, last.Seq)
			}
			for _, e := range es {
				if tc.noOld && e.Time.Equal(old) {
					t.Fatalf("event %d older than MaxEventAge survived", e.Seq)
				}
			}
		})
	}
}

// countEvents counts keys without decoding, so checking after every append stays cheap.
func countEvents(tb testing.TB, db *DB) int {
	tb.Helper()
	n := 0
	err := db.bdb.View(func(tx *bolt.Tx) error {
		c := bucket(tx, bucketEvents).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func seqs(es []store.Event) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

// An event that no longer decodes at the head of the log must not make the age
// check, and so every 64th append after it, fail.
func TestEventCapSurvivesUndecodableHead(t *testing.T) {
	db := mustOpen(t, store.Options{MaxEventAge: time.Hour})
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		b := bucket(tx, bucketEvents)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(seqKey(seq), []byte("not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 * ageCheckEvery {
		mustAppend(t, db, store.Event{Type: "t"})
	}
	if n := countEvents(t, db); n != 2*ageCheckEvery {
		t.Fatalf("%d events; want the %d appended, the undecodable one trimmed", n, 2*ageCheckEvery)
	}
}
