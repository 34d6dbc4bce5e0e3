package boltstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/store/storetest"
)

// TestRestoreAllOrNothing: a restore that fails after every record was
// written (a read error at the end of the file, a bad last record) leaves
// the file as it was, even across a reopen, and a retry then succeeds.
func TestRestoreAllOrNothing(t *testing.T) {
	ctx := context.Background()
	src := memstore.New(store.Options{})
	storetest.Populate(t, src)
	var rs []store.Record
	if err := src.Dump(ctx, func(r store.Record) error { rs = append(rs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("read error at the end of the file")
	for _, tc := range []struct {
		name string
		last func(yield func(store.Record, error) bool)
		want error
	}{
		{"source error", func(yield func(store.Record, error) bool) { yield(store.Record{}, boom) }, boom},
		{"bad record", func(yield func(store.Record, error) bool) {
			yield(store.Record{Kind: store.KindMachine, Key: "x", Value: []byte(`{}`)}, nil)
		}, store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "provisiond.db")
			db, err := boltstore.Open(path, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			before, err := store.Count(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Restore(ctx, func(yield func(store.Record, error) bool) {
				for _, r := range rs {
					if !yield(r, nil) {
						return
					}
				}
				tc.last(yield)
			})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Restore = %v, want %v", err, tc.want)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db, err = boltstore.Open(path, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			after, err := store.Count(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if after.String() != before.String() || after.Records != before.Records {
				t.Errorf("after a failed restore the file holds %v (%d records), want %v (%d) as before",
					after, after.Records, before, before.Records)
			}
			if err := db.Restore(ctx, func(yield func(store.Record, error) bool) {
				for _, r := range rs {
					if !yield(r, nil) {
						return
					}
				}
			}); err != nil {
				t.Fatalf("Restore after a failed one: %v", err)
			}
			storetest.CheckSame(t, db, src)
		})
	}
}
