package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/provisiond/provisiond/internal/store"
)

// StoreBackup is what GET /store/backup snapshots: the daemon's store and
// the name of its backend (bolt, etcd) for the backup's header. A zero
// StoreBackup answers 501.
type StoreBackup struct {
	Store   store.Dumper
	Backend string
}

// errNoBackup answers a backup request when the API was given no store.
var errNoBackup = errors.New("this provisiond serves no store backup")

// storeBackup streams a backup file of the store (store.BackupWriter's
// format). Once the first bytes are out the status is sent: a later
// failure cuts the stream short, and the missing trailer tells the client
// so (store.BackupReader refuses the file).
func (a *api) storeBackup(b StoreBackup) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if b.Store == nil {
			writeError(w, http.StatusNotImplemented, errNoBackup)
			return
		}
		now := time.Now().UTC()
		sw := &startWriter{w: w, start: func() {
			h := w.Header()
			h.Set("Content-Type", "application/x-ndjson")
			h.Set("Cache-Control", "no-store")
			h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="provisiond-backup-%s.ndjson"`, now.Format("20060102T150405Z")))
			w.WriteHeader(http.StatusOK)
		}}
		sum, err := store.Backup(r.Context(), b.Store, b.Backend, sw, now)
		if err != nil {
			if !sw.started {
				a.fail(w, r, err)
				return
			}
			a.log.Error("store backup cut short", "remote", r.RemoteAddr, "error", err)
			return
		}
		a.log.Info("store backup", "remote", r.RemoteAddr, "records", sum.Records, "machines", sum.Counts[store.KindMachine],
			"events", sum.Counts[store.KindEvent], "revision", sum.Revision)
	}
}

// startWriter calls start before the first byte goes out, so that an
// error found before then can still be answered with a status of its own.
type startWriter struct {
	w       io.Writer
	start   func()
	started bool
}

func (s *startWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.start()
	}
	return s.w.Write(p)
}

// backupHead refuses HEAD on the backup, which the server's GET-for-HEAD
// middleware would otherwise answer by taking a whole snapshot and dropping
// it.
func backupHead(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", http.MethodGet)
	writeError(w, http.StatusMethodNotAllowed, errors.New("HEAD not allowed: GET takes the backup"))
}
