// Package server assembles every HTTP route provisiond serves on its one listener:
// the boot path machines use (/boot.ipxe, /ipxe, /ignition, /config, /assets, /nbp,
// /agent) and the operator's (/healthz, /api/v1, and /metrics for Prometheus, which like
// /healthz needs no token). Handlers parse the request, ask the boot core and
// render its answer; they decide nothing. Every request is counted by route.
package server

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/httperr"
	"github.com/provisiond/provisiond/internal/profiles"
)

// Files opens named read-only files, such as the embedded iPXE binaries.
type Files interface {
	Open(name string) (io.ReadSeeker, int64, error)
}

// Booter is what the server asks the boot core; *boot.Core implements it.
type Booter interface {
	// Chained records a /boot.ipxe request that names its machine.
	Chained(ctx context.Context, r boot.Request) error
	// Script is the iPXE script /ipxe serves r.
	Script(ctx context.Context, r boot.Request) (string, error)
	// Config is the config /ignition (ignition) or /config serves r.
	Config(ctx context.Context, r boot.Request, ignition bool) (*profiles.Rendered, []byte, error)
	// Identify puts an address to a machine for the log lines of requests
	// that name none.
	Identify(ctx context.Context, ip netip.Addr) boot.Identity
	// AssetFetch queues a step of the boot timeline: the requester at ip
	// fetched path from /assets with outcome. It must never block.
	AssetFetch(ip netip.Addr, path, outcome string)
	// Status, Profiles and Sync are what /healthz reports of the profiles.
	Status() *boot.ReloadStatus
	Profiles() *profiles.Set
	Sync() *boot.SyncStatus
}

// Config wires a Server.
type Config struct {
	Core         Booter
	AdvertiseURL string       // base URL machines reach us at, no trailing slash
	Assets       *os.Root     // --assets; nil serves no assets
	Binaries     Files        // iPXE binaries for UEFI HTTP Boot at /nbp/; nil serves none
	Agents       Agents       // inspection agent binaries at /agent/{arch}; the zero value serves none
	API          http.Handler // mounted at /api/v1; nil serves no API
	Metrics      Metrics      // counts requests and serves /metrics; nil: neither
	// Dashboard registers the web UI's routes (/ and /ui/); nil serves none.
	Dashboard func(chi.Router)
	// Store is what /healthz reports of the store; the zero value reports nothing.
	Store StoreInfo
	// TrustedProxies are reverse proxies whose X-Forwarded-For names the
	// requester (--trusted-proxy); nil trusts none.
	TrustedProxies []netip.Prefix
	Logger         *slog.Logger
	// ReadTimeout bounds reading a whole request, headers and body, in
	// Serve; 0 is defaultReadTimeout.
	ReadTimeout time.Duration
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
	r.Use(fromProxies(cfg.TrustedProxies))
	if cfg.API != nil {
		r.Use(unknownMethodsTo("/api/v1", cfg.API))
	}
	// HEAD runs the GET handler of any route without a HEAD route of its
	// own, mounted routers included (their auth too); net/http sends the
	// headers and drops the body. UEFI HTTP Boot firmware HEADs its NBP
	// before the GET and stops at anything but 200.
	r.Use(middleware.GetHead)
	r.Get("/boot.ipxe", s.chainScript)
	r.Get("/ipxe", s.machineScript)
	r.Get("/ignition", s.config(true))
	r.Get("/config", s.config(false))
	for _, p := range []string{"/ipxe", "/ignition", "/config"} {
		r.Head(p, noHead)
	}
	r.Get("/assets/*", s.assets)
	r.Get("/nbp/{name}", s.binary)
	r.Get("/agent/{arch}", s.agent)
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

// Limits of Serve's connections: no client may hold one, or a descriptor,
// for longer than it takes to send a request or to read the answer.
const (
	// readHeaderTimeout: a request line and headers are a few hundred bytes.
	readHeaderTimeout = 10 * time.Second
	// defaultReadTimeout bounds reading a whole request, body included: a
	// client dribbling a body used to hold its connection for minutes. The
	// largest body anyone sends is the API's 64 KiB of JSON; 20 s allows
	// 3 KiB/s. Responses are not bounded: net/http lifts the read deadline
	// once the body is read, and there is deliberately no WriteTimeout, so a
	// slow download of a 500 MB image runs to its end.
	defaultReadTimeout = 20 * time.Second
	// idleTimeout closes keep-alive connections idle this long: each holds a
	// descriptor, and iPXE, browsers and Prometheus reconnect for nothing.
	idleTimeout = 30 * time.Second
	// maxHeaderBytes: requests here are a URL and a few short headers (nginx
	// allows 32 KiB); the 1 MiB default let each connection make us buffer
	// a megabyte.
	maxHeaderBytes = 64 << 10
)

// Serve serves on l until ctx ends, then shuts down gracefully. Each remote
// address but a trusted proxy's may hold maxConnsPerIP connections at once.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       cmp.Or(s.cfg.ReadTimeout, defaultReadTimeout),
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	l = limitPerIP(l, maxConnsPerIP, s.cfg.TrustedProxies, s.log)
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

// fail answers with a one-line reason and the status httperr maps the error
// to; anything unexpected is a 500 and logged.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, public, level := httperr.Answer(err)
	s.log.Log(r.Context(), level, "http request failed", "path", r.URL.Path, "status", code, "error", err)
	http.Error(w, public, code)
}

// noHead refuses HEAD on the routes whose GET is not safe: /ipxe opens a
// session and issues its token, /ignition and /config serve the one-boot
// config and count the fetch. A HEAD answered like GET would have to do the
// same, as the status depends on it; one answered without would promise a
// 200 that the GET may refuse. Nothing needs it: firmware HEADs only the NBP
// (/nbp/), iPXE never sends HEAD.
func noHead(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", http.MethodGet)
	http.Error(w, "HEAD not allowed: GET here starts or serves a boot", http.StatusMethodNotAllowed)
}

// chiRoutes reports whether chi routes method. It answers any other
// (PROPFIND, BREW) with a bare 405 before a mounted router sees the request.
func chiRoutes(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// unknownMethodsTo hands requests under prefix with a method chi does not
// route straight to h, so that h answers them like any other: the API, 401
// without a token, whatever the path.
func unknownMethodsTo(prefix string, h http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !chiRoutes(r.Method) && (r.URL.Path == prefix || strings.HasPrefix(r.URL.Path, prefix+"/")) {
				h.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
