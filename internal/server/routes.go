// Package server assembles every HTTP route provisiond serves on its one listener:
// the boot path machines use (/boot.ipxe, /ipxe, /ignition, /config, /assets, /nbp)
// and the operator's (/healthz, /api/v1, and /metrics for Prometheus, which like
// /healthz needs no token). Handlers parse the request, ask the boot core and
// render its answer; they decide nothing. Every request is counted by route.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/provisiond/provisiond/internal/boot"
)

// Files opens named read-only files, such as the embedded iPXE binaries.
type Files interface {
	Open(name string) (io.ReadSeeker, int64, error)
}

// Config wires a Server.
type Config struct {
	Core         *boot.Core
	AdvertiseURL string       // base URL machines reach us at, no trailing slash
	Assets       *os.Root     // --assets; nil serves no assets
	Binaries     Files        // iPXE binaries for UEFI HTTP Boot at /nbp/; nil serves none
	API          http.Handler // mounted at /api/v1; nil serves no API
	Metrics      Metrics      // counts requests and serves /metrics; nil: neither
	// Dashboard registers the web UI's routes (/ and /ui/); nil serves none.
	Dashboard func(chi.Router)
	Logger    *slog.Logger
}

// Server is provisiond's HTTP side.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
}

// New builds the router.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	r := chi.NewRouter()
	if cfg.Metrics != nil {
		r.Use(observe(cfg.Metrics)) // outermost, so a recovered panic counts as its 500
	}
	r.Use(middleware.Recoverer)
	r.Get("/boot.ipxe", s.chainScript)
	r.Get("/ipxe", s.machineScript)
	r.Get("/ignition", s.config(true))
	r.Get("/config", s.config(false))
	r.Get("/assets/*", s.assets)
	r.Head("/assets/*", s.assets)
	r.Get("/nbp/{name}", s.binary)
	r.Get("/healthz", s.health)
	if cfg.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", cfg.Metrics.Handler())
	}
	if cfg.API != nil {
		r.Mount("/api/v1", cfg.API)
	}
	if cfg.Dashboard != nil {
		cfg.Dashboard(r)
	}
	s.handler = r
	return s
}

// Handler returns the router, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve serves on l until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(shutdown); err != nil {
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	}
}

// ListenAndServe listens on addr and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", addr, err)
	}
	s.log.Info("http listening", "addr", l.Addr().String())
	return s.Serve(ctx, l)
}

// fail answers with a one-line reason and the status the error's sentinel maps
// to; anything unexpected is a 500 and logged.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, boot.ErrNoIdentity), errors.Is(err, errBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, boot.ErrUnknownMachine), errors.Is(err, boot.ErrNoConfig), errors.Is(err, errNotFound):
		code = http.StatusNotFound
	case errors.Is(err, boot.ErrNotLoaded):
		code = http.StatusServiceUnavailable
	case errors.As(err, new(*boot.RefusedError)):
		code = http.StatusForbidden
	}
	if code == http.StatusInternalServerError {
		s.log.Error("http request failed", "path", r.URL.Path, "error", err)
	} else {
		s.log.Debug("http request refused", "path", r.URL.Path, "status", code, "error", err)
	}
	http.Error(w, err.Error(), code)
}

var (
	errBadRequest = errors.New("bad request")
	errNotFound   = errors.New("not found")
)
