package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/api"
	"github.com/provisiond/provisiond/internal/store"
	"github.com/provisiond/provisiond/internal/store/boltstore"
	"github.com/provisiond/provisiond/internal/store/etcdstore"
	"github.com/provisiond/provisiond/internal/store/etcdstore/etcdtest"
	"github.com/provisiond/provisiond/internal/store/storetest"
)

// populatedBolt returns a bbolt store in a new data dir holding one of
// everything (storetest.Populate), and the dir.
func populatedBolt(t *testing.T) (*boltstore.DB, string) {
	t.Helper()
	dir := t.TempDir()
	db := openBolt(t, dir)
	storetest.Populate(t, db)
	return db, dir
}

func openBolt(t *testing.T, dataDir string) *boltstore.DB {
	t.Helper()
	db, err := boltstore.Open(filepath.Join(dataDir, "provisiond.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// serveBackup serves the API's backup route of db on loopback, as the
// daemon does, and returns the client flags that reach it.
func serveBackup(t *testing.T, db store.Store) []string {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "api-token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Mount("/api/v1", api.New(api.Config{Backup: api.StoreBackup{Store: db, Backend: backendBolt}, Token: testToken}))
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return []string{"--server", srv.URL, "--token-file", tokenFile}
}

func TestStoreBackupRestore(t *testing.T) {
	src, _ := populatedBolt(t)
	client := serveBackup(t, src)
	dir := t.TempDir()
	file := filepath.Join(dir, "provisiond.backup")

	code, out, errOut := runCmd(append([]string{"store", "backup", "--out", file}, client...)...)
	if code != 0 || !strings.HasPrefix(out, "wrote "+file+" (") || !strings.Contains(out, "3 machines, 3 events, 2 secrets, 3 bindings") {
		t.Fatalf("store backup: exit %d\n%s%s", code, out, errOut)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, %v; want mode 0600", fi, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	// Into a fresh data dir: the daemon's store reads as the original.
	dataDir := filepath.Join(t.TempDir(), "data")
	code, out, errOut = runCmd("store", "restore", "--in", file, "--data-dir", dataDir, "-o", "json")
	var res storeResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Counts[store.KindMachine] != 3 {
		t.Fatalf("store restore: exit %d\n%s%s", code, out, errOut)
	}
	restored := openBolt(t, dataDir)
	storetest.CheckSame(t, restored, src)

	// The daemon runs on it (holds the lock), and it is not empty either.
	code, _, errOut = runCmd("store", "restore", "--in", file, "--data-dir", dataDir)
	if code != 1 || !strings.Contains(errOut, "stop the daemon first") {
		t.Errorf("restore into a locked data dir: exit %d, %s", code, errOut)
	}
	restored.Close()
	code, _, errOut = runCmd("store", "restore", "--in", file, "--data-dir", dataDir)
	if code != 1 || !strings.Contains(errOut, "holds machines or events; restore into a new --data-dir") {
		t.Errorf("restore into a populated data dir: exit %d, %s", code, errOut)
	}
}

func TestStoreRestoreRefusesDamagedFile(t *testing.T) {
	src, _ := populatedBolt(t)
	var buf strings.Builder
	if _, err := store.Backup(context.Background(), src, backendBolt, &buf, time.Now()); err != nil {
		t.Fatal(err)
	}
	whole := buf.String()
	for _, tc := range []struct {
		name, content, want string
	}{
		{"truncated", whole[:strings.LastIndex(whole[:len(whole)-1], "\n")+1], "truncated: no trailer"},
		{"not a backup", `{"machines":[]}` + "\n", "not a provisiond backup"},
		{"newer", `{"format":"provisiond-backup","version":9}` + "\n", "use a newer provisiond"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, "backup", tc.content)
			dataDir := filepath.Join(t.TempDir(), "data")
			code, _, errOut := runCmd("store", "restore", "--in", file, "--data-dir", dataDir)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, %s; want 1 and %q", code, errOut, tc.want)
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("a refused file created the data dir: %v", err)
			}
		})
	}
}

func TestStoreBackupErrors(t *testing.T) {
	src, _ := populatedBolt(t)
	client := serveBackup(t, src)
	out := filepath.Join(t.TempDir(), "b")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no --out", append([]string{"store", "backup"}, client...), 2, "--out FILE is required"},
		{"wrong token", []string{"store", "backup", "--out", out, "--server", client[1], "--token-file", writeFile(t, "tok", "wrong")}, 1, "401 Unauthorized"},
		{"no daemon", []string{"store", "backup", "--out", out, "--server", "http://127.0.0.1:1", "--token-file", client[3]}, 1, "cannot reach provisiond"},
		{"restore without --in", []string{"store", "restore"}, 2, "--in FILE is required"},
		{"migrate without endpoints", []string{"store", "migrate"}, 2, "--store etcd needs --etcd-endpoints"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCmd(tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, %s; want %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed backup wrote %s: %v", out, err)
	}
}

func TestStoreMigrate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd member")
	}
	member := etcdtest.StartT(t)
	src, dataDir := populatedBolt(t)
	etcdFlags := []string{"--etcd-endpoints", member.Endpoint, "--etcd-prefix", "/migrated"}
	migrate := append([]string{"store", "migrate", "--data-dir", dataDir}, etcdFlags...)

	code, _, errOut := runCmd(migrate...)
	if code != 1 || !strings.Contains(errOut, filepath.Join(dataDir, "provisiond.db")+": ") || !strings.Contains(errOut, "stop the daemon first") {
		t.Errorf("migrate a data dir in use: exit %d, %s", code, errOut)
	}
	src.Close()
	code, out, errOut := runCmd(migrate...)
	if code != 0 || !strings.Contains(out, "into etcd "+member.Endpoint+" prefix /migrated: 3 machines, 3 events, 2 secrets") {
		t.Fatalf("store migrate: exit %d\n%s%s", code, out, errOut)
	}
	src = openBolt(t, dataDir)
	dst, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{member.Endpoint}, Prefix: "/migrated"}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	storetest.CheckSame(t, dst, src)
	src.Close()

	code, _, errOut = runCmd(migrate...)
	if code != 1 || !strings.Contains(errOut, "holds machines or events; restore into a new --etcd-prefix, or delete this one (etcdctl del --prefix /migrated/)") {
		t.Errorf("migrate into a populated prefix: exit %d, %s", code, errOut)
	}
	code, _, errOut = runCmd(append([]string{"store", "migrate", "--data-dir", filepath.Join(dataDir, "typo")}, etcdFlags...)...)
	if code != 1 || !strings.Contains(errOut, "no store at") {
		t.Errorf("migrate a missing data dir: exit %d, %s", code, errOut)
	}

	// A backup of the etcd store restores into another prefix.
	var buf strings.Builder
	if _, err := store.Backup(context.Background(), dst, backendEtcd, &buf, time.Now()); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, "backup", buf.String())
	code, out, errOut = runCmd("store", "restore", "--in", file, "--store", "etcd", "--etcd-endpoints", member.Endpoint, "--etcd-prefix", "/restored")
	if code != 0 || !strings.Contains(out, "3 machines") {
		t.Fatalf("store restore --store etcd: exit %d\n%s%s", code, out, errOut)
	}
	again, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: []string{member.Endpoint}, Prefix: "/restored"}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	storetest.CheckSame(t, again, dst)
}
