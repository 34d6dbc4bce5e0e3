package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/memstore"
	"github.com/provisiond/provisiond/internal/store/storetest"
)

// backupFixture serves the API with only a store to back up.
func backupFixture(t *testing.T, b StoreBackup) *fixture {
	t.Helper()
	return serveAPI(t, Config{Backup: b, Token: apiToken})
}

func TestStoreBackup(t *testing.T) {
	db := memstore.New(store.Options{})
	storetest.Populate(t, db)
	f := backupFixture(t, StoreBackup{Store: db, Backend: "memory"})

	code, body := f.call(t, http.MethodGet, "/store/backup", apiToken, "")
	if code != http.StatusOK {
		t.Fatalf("GET /store/backup = %d %s", code, body)
	}
	restored := memstore.New(store.Options{})
	sum, err := store.RestoreFrom(context.Background(), restored, strings.NewReader(body))
	if err != nil {
		t.Fatalf("the backup does not restore: %v\n%s", err, body)
	}
	if sum.Counts[store.KindMachine] != 3 {
		t.Errorf("backup of %v", sum.Counts)
	}
	storetest.CheckSame(t, restored, db)

	resp, err := http.Get(f.srv.URL + "/api/v1/store/backup")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", resp.StatusCode)
	}

	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/v1/store/backup", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct, cd := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"); ct != "application/x-ndjson" ||
		!strings.HasPrefix(cd, `attachment; filename="provisiond-backup-`) {
		t.Errorf("Content-Type %q, Content-Disposition %q", ct, cd)
	}
}

// failingDumper fails before yielding anything.
type failingDumper struct{}

func (failingDumper) Dump(context.Context, func(store.Record) error) error {
	return errors.New("disk on fire")
}

func TestStoreBackupErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    StoreBackup
		code int
		want string
	}{
		{"no store", StoreBackup{}, http.StatusNotImplemented, "no store backup"},
		{"dump fails before the first byte", StoreBackup{Store: failingDumper{}, Backend: "bolt"}, http.StatusInternalServerError, "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := backupFixture(t, tc.b)
			code, body := f.call(t, http.MethodGet, "/store/backup", apiToken, "")
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Errorf("GET /store/backup = %d %s, want %d %q", code, body, tc.code, tc.want)
			}
		})
	}
}

// cutDumper passes on the first n records of its store, then fails.
type cutDumper struct {
	store.Dumper
	n int
}

func (d cutDumper) Dump(ctx context.Context, fn func(store.Record) error) error {
	n := 0
	return d.Dumper.Dump(ctx, func(r store.Record) error {
		if n++; n > d.n {
			return errors.New("disk on fire")
		}
		return fn(r)
	})
}

// A dump that fails once the answer has started cuts the stream short:
// the status is out, and the missing trailer makes the file refuse to
// restore rather than restore part of the store.
func TestStoreBackupCutShort(t *testing.T) {
	db := memstore.New(store.Options{})
	ctx := context.Background()
	for i := range 200 { // well over the writer's buffer, so bytes go out before the failure
		if _, err := db.AppendEvent(ctx, store.Event{Type: "boot", Message: fmt.Sprintf("event %d %0100d", i, i)}); err != nil {
			t.Fatal(err)
		}
	}
	f := backupFixture(t, StoreBackup{Store: cutDumper{Dumper: db, n: 150}, Backend: "memory"})
	code, body := f.call(t, http.MethodGet, "/store/backup", apiToken, "")
	if code != http.StatusOK || !strings.Contains(body, "event 100 ") {
		t.Fatalf("GET /store/backup = %d with %d bytes; want 200 and the records up to the failure", code, len(body))
	}
	if strings.Contains(body, "event 199 ") {
		t.Errorf("the backup went on past the failure")
	}
	if _, err := store.RestoreFrom(ctx, memstore.New(store.Options{}), strings.NewReader(body)); err == nil {
		t.Error("a backup cut short restores; want it refused")
	}
}
