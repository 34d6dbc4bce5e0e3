package httperr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, http.StatusOK},
		{"bad request", fmt.Errorf("%w: mac %q", ErrBadRequest, "x"), http.StatusBadRequest},
		{"no identity", boot.ErrNoIdentity, http.StatusBadRequest},
		{"invalid", fmt.Errorf("%w: action", boot.ErrInvalid), http.StatusBadRequest},
		{"store invalid", fmt.Errorf("store: %w", store.ErrInvalid), http.StatusBadRequest},
		{"unauthorized", boot.ErrUnauthorized, http.StatusUnauthorized},
		{"refused", fmt.Errorf("wrapped: %w", &boot.RefusedError{What: "config", Reason: boot.ReasonBadToken}), http.StatusForbidden},
		{"not found", fmt.Errorf("machine %q: %w", "n9", boot.ErrNotFound), http.StatusNotFound},
		{"asset not found", ErrNotFound, http.StatusNotFound},
		{"unknown machine", boot.ErrUnknownMachine, http.StatusNotFound},
		{"no config", boot.ErrNoConfig, http.StatusNotFound},
		{"state", fmt.Errorf("store: machine x: %w", boot.ErrState), http.StatusConflict},
		{"ambiguous", boot.ErrAmbiguous, http.StatusConflict},
		{"busy", fmt.Errorf("%w: lock x: %w", boot.ErrBusy, context.DeadlineExceeded), http.StatusConflict},
		{"no bmc", boot.ErrNoBMC, http.StatusConflict},
		{"bmc config", boot.ErrBMCConfig, http.StatusConflict},
		{"no wipe profile", boot.ErrNoWipeProfile, http.StatusConflict},
		{"no sync", boot.ErrNoSync, http.StatusConflict},
		{"not loaded", boot.ErrNotLoaded, http.StatusServiceUnavailable},
		{"store timeout", fmt.Errorf("etcdstore: machine: %w", context.DeadlineExceeded), http.StatusServiceUnavailable},
		{"store unavailable", fmt.Errorf("etcdstore: machine: %w: etcdserver: leader changed", store.ErrUnavailable), http.StatusServiceUnavailable},
		{"store not found leaked", store.ErrNotFound, http.StatusInternalServerError},
		{"anything else", errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Status(tc.err); got != tc.want {
				t.Errorf("Status(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

// Answer hides a 5xx's internals from the client, and says how loud the
// log line is: errors for a 500, warnings for a store that is away.
func TestAnswer(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   int
		public string
		level  slog.Level
	}{
		{errors.New("open /var/lib/provisiond/x: disk on fire"), http.StatusInternalServerError, "internal error; see the server log", slog.LevelError},
		{fmt.Errorf("etcdstore: %w: etcdserver: leader changed", store.ErrUnavailable), http.StatusServiceUnavailable, "the store is unavailable for now; retry", slog.LevelWarn},
		{fmt.Errorf("machine: %w", context.DeadlineExceeded), http.StatusServiceUnavailable, "the store is unavailable for now; retry", slog.LevelWarn},
		{boot.ErrNotLoaded, http.StatusServiceUnavailable, boot.ErrNotLoaded.Error(), slog.LevelDebug},
		{fmt.Errorf("machine %q: %w", "n9", boot.ErrNotFound), http.StatusNotFound, `machine "n9": ` + boot.ErrNotFound.Error(), slog.LevelDebug},
	} {
		code, public, level := Answer(tc.err)
		if code != tc.code || public != tc.public || level != tc.level {
			t.Errorf("Answer(%v) = %d %q %v; want %d %q %v", tc.err, code, public, level, tc.code, tc.public, tc.level)
		}
	}
}
