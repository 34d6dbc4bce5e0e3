package api

import (
	"context"
	"errors"
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
