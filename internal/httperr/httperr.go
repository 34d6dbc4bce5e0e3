// Package httperr is the one mapping from the boot core's errors to HTTP
// statuses, shared by the boot path (internal/server), the API and the
// dashboard, so that an error means the same status wherever it surfaces.
package httperr

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/store"
)

// Sentinels for what the HTTP layers find themselves, before asking the core.
var (
	// ErrBadRequest: a malformed request (a query parameter, a body).
	ErrBadRequest = errors.New("bad request")
	// ErrNotFound: nothing at this path (an asset, a binary).
	ErrNotFound = errors.New("not found")
)

// Status is the HTTP status err answers with; 500 for anything unexpected,
// which the caller logs and does not show. The classes:
//   - 400: the request itself is wrong;
//   - 401, 403: the requester may not (a phone-home without its token, a
//     config or script request that failed a secrecy check);
//   - 404: no such machine, or nothing it boots of that kind;
//   - 409: the request conflicts with the machine's state or configuration.
//     ErrBusy is one too: another operation holds the machine's BMC lock,
//     and the same request later may succeed. It is not 503, which says
//     this server is unwell and invites a load balancer to retry the same
//     request on another instance, where it meets the same lock;
//   - 503: nothing to answer with yet (no profiles loaded), or the store did
//     not answer in time or is unavailable for now (etcd without a leader).
func Status(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrBadRequest), errors.Is(err, boot.ErrNoIdentity), errors.Is(err, boot.ErrInvalid),
		errors.Is(err, store.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, boot.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.As(err, new(*boot.RefusedError)):
		return http.StatusForbidden
	case errors.Is(err, ErrNotFound), errors.Is(err, boot.ErrNotFound), errors.Is(err, boot.ErrUnknownMachine),
		errors.Is(err, boot.ErrNoConfig):
		return http.StatusNotFound
	case errors.Is(err, boot.ErrState), errors.Is(err, boot.ErrAmbiguous), errors.Is(err, boot.ErrBusy),
		errors.Is(err, boot.ErrNoBMC), errors.Is(err, boot.ErrBMCConfig), errors.Is(err, boot.ErrNoWipeProfile),
		errors.Is(err, boot.ErrNoSync):
		return http.StatusConflict
	case errors.Is(err, boot.ErrNotLoaded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Answer is what an HTTP layer says of err: its status, the text the
// client may read, and how loud the server's own log line is. A 5xx text
// says what the client can do, never the internals (an etcd error's words,
// a file path): those go to the log only.
func Answer(err error) (code int, public string, level slog.Level) {
	code = Status(err)
	switch {
	case code == http.StatusInternalServerError:
		return code, "internal error; see the server log", slog.LevelError
	case code == http.StatusServiceUnavailable && !errors.Is(err, boot.ErrNotLoaded):
		return code, "the store is unavailable for now; retry", slog.LevelWarn
	}
	return code, err.Error(), slog.LevelDebug
}
