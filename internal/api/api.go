// Package api serves /api/v1: the machine inventory, lifecycle actions and the
// event log as JSON, behind a bearer token. Handlers parse, ask the Backend
// (the boot core) and render; openapi.yaml documents every route.
package api

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/httperr"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Backend is what the API asks; *boot.Core implements it.
type Backend interface {
	Machines(ctx context.Context) ([]store.Machine, error)
	Machine(ctx context.Context, id string) (store.Machine, error)
	Provisioning(ctx context.Context, id string) (store.Provisioning, error)
	// Stalled reports a provisioning machine whose boot stopped progressing.
	Stalled(mac string) (boot.Stall, bool)
	Reprovision(ctx context.Context, id, actor, reason string, power bool) (store.Machine, *boot.PowerResult, error)
	Wipe(ctx context.Context, id, actor, reason string, power bool) (store.Machine, *boot.PowerResult, error)
	// Installed is the phone-home; from is the requester's address, which
	// must be the machine's unless viaAPI.
	Installed(ctx context.Context, id, token, note, from string, viaAPI bool) (store.Machine, error)
	// ReportHardware stores the inspection agent's report, under
	// Installed's identity rules.
	ReportHardware(ctx context.Context, id, token string, hw store.Hardware, from string, viaAPI bool) (store.Machine, error)
	PowerStatus(ctx context.Context, id string) boot.PowerResult
	Power(ctx context.Context, id, action, actor string) boot.PowerResult
	BulkPower(ctx context.Context, req boot.BulkRequest) ([]boot.PowerResult, error)
	MachineBMC(ctx context.Context, id string) (boot.BMCInfo, error)
	SetBMC(ctx context.Context, id, address, user, password, actor string) (boot.BMCInfo, error)
	DeleteBMC(ctx context.Context, id, actor string) error
	Events(ctx context.Context, q store.EventQuery) ([]store.Event, error)
	Status() *boot.ReloadStatus
	Profiles() *profiles.Set
	// Sync is the last sync with the profiles' Git repository; nil without one.
	Sync() *boot.SyncStatus
	// SyncProfiles syncs with the profiles' Git repository now;
	// boot.ErrNoSync when the profiles are a plain directory.
	SyncProfiles(ctx context.Context) (boot.SyncStatus, error)
}

// Config wires the API.
type Config struct {
	Backend Backend
	Backup  StoreBackup // what GET /store/backup snapshots
	Leases  LeaseLister // what GET /leases lists; nil answers 501
	Token   string      // the operator's bearer token; required
	Logger  *slog.Logger
}

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI 3 document describing the routes.
func OpenAPI() []byte { return openAPI }

type api struct {
	b     Backend
	token []byte
	log   *slog.Logger
}

// New returns the /api/v1 handler, to be mounted at /api/v1.
func New(cfg Config) http.Handler {
	a := &api{b: cfg.Backend, token: []byte(cfg.Token), log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	r := chi.NewRouter()
	// A machine phones home, and its agent reports its hardware, with its
	// own session token, not the operator's.
	r.Post("/machines/{id}/installed", a.installed)
	r.Post("/machines/{id}/hardware", a.reportHardware)
	r.Group(func(r chi.Router) {
		r.Use(a.authenticate)
		r.Get("/openapi.yaml", serveOpenAPI)
		r.Get("/machines", a.listMachines)
		r.Get("/machines/{id}", a.getMachine)
		r.Post("/machines/{id}/reprovision", a.reprovision)
		r.Post("/machines/{id}/wipe", a.wipe)
		r.Get("/machines/{id}/power", a.powerStatus)
		r.Post("/machines/{id}/power", a.power)
		r.Get("/machines/{id}/bmc", a.getBMC)
		r.Put("/machines/{id}/bmc", a.putBMC)
		r.Delete("/machines/{id}/bmc", a.deleteBMC)
		r.Post("/power", a.bulkPower)
		r.Get("/events", a.events)
		r.Get("/profiles", a.profiles)
		r.Post("/profiles/sync", a.syncProfiles)
		r.Get("/store/backup", a.storeBackup(cfg.Backup))
		r.Get("/leases", a.leases(cfg.Leases))
		r.Head("/store/backup", backupHead)
	})
	// Without the token, a missing route or method is the same 401 as a
	// protected one: a 404 or 405 would tell a caller which paths exist.
	r.NotFound(a.operatorOnly(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no route %s %s", r.Method, r.URL.Path))
	}))
	r.MethodNotAllowed(a.operatorOnly(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s", r.Method, r.URL.Path))
	}))
	return r
}

// operatorOnly answers 401 instead of calling next unless r carries the
// operator's token. Unlike authenticate it logs nothing: scanners probing
// random paths would flood the log.
func (a *api) operatorOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.operator(r) {
			writeError(w, http.StatusUnauthorized, errUnauthorized)
			return
		}
		next(w, r)
	}
}

var errUnauthorized = errors.New("unauthorized: send Authorization: Bearer <token>")

// bearer returns the request's bearer token, or "".
func bearer(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// operator reports whether r carries the API token.
func (a *api) operator(r *http.Request) bool {
	t := bearer(r)
	return t != "" && subtle.ConstantTimeCompare([]byte(t), a.token) == 1
}

// authenticate admits only the operator's token. The refusal is the same for
// every route and id, so it tells a caller nothing about what exists.
func (a *api) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.operator(r) {
			a.log.Warn("api request without a valid token", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, errUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPI)
}

type errorJSON struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "a -> b" reads better than "a -\u003e b"; nothing here is HTML
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, errorJSON{Error: err.Error()})
}

// fail answers with the status httperr maps err to; anything unexpected is
// a 500, logged, with a body that does not leak internals.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, public, level := httperr.Answer(err)
	a.log.Log(r.Context(), level, "api request failed", "method", r.Method, "path", r.URL.Path, "status", code, "error", err)
	if code == http.StatusUnauthorized {
		public = errUnauthorized.Error() // the same words whatever failed
	}
	writeError(w, code, errors.New(public))
}

// maxBody bounds request bodies: they are a few short fields.
const maxBody = 64 << 10

// decodeBody reads an optional JSON body into v. Unknown fields are an error:
// a typo must not be silently ignored.
func decodeBody(r *http.Request, v any) error { return decodeBodyLimit(r, v, maxBody) }

// decodeBodyLimit is decodeBody for a body of at most limit bytes.
func decodeBodyLimit(r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: request body: %v", httperr.ErrBadRequest, err)
	}
	// Token, not More: More misses a stray '}' or ']' after the value.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: request body: more than one JSON value", httperr.ErrBadRequest)
	}
	return nil
}
