package boltstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisiond/provisiond/internal/store"

	bolt "go.etcd.io/bbolt"
)

// mustOpen opens a fresh DB under tb.TempDir() and closes it at cleanup, like
// bbolt's btesting.MustCreateDB.
func mustOpen(tb testing.TB, opts store.Options) *DB {
	tb.Helper()
	db, err := Open(filepath.Join(tb.TempDir(), "data", "provisiond.db"), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Error(err)
		}
	})
	return db
}

// mustSeen records a sighting or fails the test.
func mustSeen(tb testing.TB, db *DB, m store.Machine) store.Machine {
	tb.Helper()
	got, _, err := db.Seen(context.Background(), m, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "provisiond.db")
	db, err := Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustSeen(t, db, store.Machine{MAC: "52:54:00:ab:cd:01"})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		mode os.FileMode
	}{
		{name: "dir", path: filepath.Dir(path), mode: 0o700 | os.ModeDir},
		{name: "file", path: path, mode: 0o600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := os.Stat(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tc.mode {
				t.Errorf("mode = %v, want %v", fi.Mode(), tc.mode)
			}
		})
	}

	// Reopening finds the data and the schema stamp.
	db, err = Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Machine(context.Background(), "52:54:00:ab:cd:01"); err != nil {
		t.Errorf("after reopen: %v", err)
	}
	err = db.bdb.View(func(tx *bolt.Tx) error {
		if got := string(bucket(tx, bucketMeta).Get([]byte(keySchema))); got != "1" {
			t.Errorf("schema = %q, want 1", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "provisiond.db")
	first, err := Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	second, err := Open(path, store.Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		second.Close()
		t.Fatal("second Open succeeded while the first holds the lock")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("err = %v, want store.ErrLocked", err)
	}
	want := "open store " + path + ": locked by another process (is another provisiond running on this data dir?)"
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}

func TestOpenSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "provisiond.db")
	db, err := Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = db.bdb.Update(func(tx *bolt.Tx) error {
		return bucket(tx, bucketMeta).Put([]byte(keySchema), []byte("99"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path, store.Options{})
	if !errors.Is(err, store.ErrSchemaTooNew) {
		if err == nil {
			db.Close()
		}
		t.Fatalf("err = %v, want store.ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "schema version 99") {
		t.Errorf("err = %q, want it to name the version found", err)
	}

	// The refused open must not have downgraded the stamp.
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	err = bdb.View(func(tx *bolt.Tx) error {
		if got := string(bucket(tx, bucketMeta).Get([]byte(keySchema))); got != "99" {
			t.Errorf("schema = %q after refused open, want 99", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestContextCanceled(t *testing.T) {
	db := mustOpen(t, store.Options{})
	const mac = "52:54:00:ab:cd:01"
	mustSeen(t, db, store.Machine{MAC: mac})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	noop := func(*store.Machine, *store.Provisioning) ([]store.Event, error) { return nil, nil }
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Seen", func() error { _, _, err := db.Seen(ctx, store.Machine{MAC: mac}, nil); return err }},
		{"Update", func() error { _, _, err := db.Update(ctx, mac, noop); return err }},
		{"store.Machine", func() error { _, err := db.Machine(ctx, mac); return err }},
		{"Machines", func() error { _, err := db.Machines(ctx); return err }},
		{"store.Provisioning", func() error { _, err := db.Provisioning(ctx, mac); return err }},
		{"AppendEvent", func() error { _, err := db.AppendEvent(ctx, store.Event{Type: "x"}); return err }},
		{"Events", func() error { _, err := db.Events(ctx, store.EventQuery{}); return err }},
		{"PutSecret", func() error { return db.PutSecret(ctx, mac, "bmc", []byte("x")) }},
		{"Secret", func() error { _, err := db.Secret(ctx, mac, "bmc"); return err }},
		{"DeleteSecret", func() error { return db.DeleteSecret(ctx, mac, "bmc") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	db := mustOpen(t, store.Options{})
	ctx := context.Background()
	if err := db.PutSecret(ctx, "52-54-00-AB-CD-01", "bmc", []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSecret(ctx, "52:54:00:ab:cd:01", "empty", []byte{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, mac, secret string
		want              string
		wantErr           error
	}{
		{name: "other MAC spelling", mac: "525400ABCD01", secret: "bmc", want: "sealed"},
		{name: "empty blob", mac: "52:54:00:ab:cd:01", secret: "empty", want: ""},
		{name: "unknown name", mac: "52:54:00:ab:cd:01", secret: "nope", wantErr: store.ErrNotFound},
		{name: "unknown MAC", mac: "52:54:00:00:00:02", secret: "bmc", wantErr: store.ErrNotFound},
		{name: "empty name", mac: "52:54:00:ab:cd:01", secret: "", wantErr: store.ErrInvalid},
		{name: "bad MAC", mac: "nope", secret: "bmc", wantErr: store.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := db.Secret(ctx, tc.mac, tc.secret)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if string(got) != tc.want {
				t.Errorf("blob = %q, want %q", got, tc.want)
			}
		})
	}
	if err := db.DeleteSecret(ctx, "525400abcd01", "bmc"); err != nil {
		t.Fatalf("DeleteSecret: %v", err)
	}
	if _, err := db.Secret(ctx, "52:54:00:ab:cd:01", "bmc"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Secret after delete: err = %v, want store.ErrNotFound", err)
	}
	if err := db.DeleteSecret(ctx, "52:54:00:ab:cd:01", "bmc"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteSecret: err = %v, want store.ErrNotFound", err)
	}
}
