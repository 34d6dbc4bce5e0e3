// Package web serves the operator's dashboard: the machines table at /, a
// machine's page with its events, what /ipxe would serve it now and its
// actions, the event log at /ui/events, the profiles and the machines using
// them at /ui/profiles, and the profiles' reload status on every page. Pages
// are rendered on the server from embedded templates, CSS and a little JS (no
// CDN: provisioning VLANs are often air-gapped). Signing in takes the API
// token and keeps a cookie session; every action carries the session's CSRF
// token. Handlers parse, ask the Backend (the boot core) and render; they
// decide nothing.
package web

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/provisiond/provisiond/internal/boot"
	"github.com/provisiond/provisiond/internal/httperr"
	"github.com/provisiond/provisiond/internal/profiles"
	"github.com/provisiond/provisiond/internal/store"
)

// Backend is what the dashboard asks; *boot.Core implements it.
type Backend interface {
	Machines(ctx context.Context) ([]store.Machine, error)
	Machine(ctx context.Context, id string) (store.Machine, error)
	Events(ctx context.Context, q store.EventQuery) ([]store.Event, error)
	NextBoot(ctx context.Context, id string) (boot.NextBoot, error)
	Reprovision(ctx context.Context, id, actor, reason string, power bool) (store.Machine, *boot.PowerResult, error)
	Wipe(ctx context.Context, id, actor, reason string, power bool) (store.Machine, *boot.PowerResult, error)
	Power(ctx context.Context, id, action, actor string) boot.PowerResult
	PowerStatus(ctx context.Context, id string) boot.PowerResult
	Revision(ctx context.Context) (uint64, error)
	CheckBMC(ctx context.Context, id string) (boot.BMCInfo, error)
	WipeProfile() string
	// Stalled reports a provisioning machine whose boot stopped progressing.
	Stalled(mac string) (boot.Stall, bool)
	Status() *boot.ReloadStatus
	Sync() *boot.SyncStatus
	Profiles() *profiles.Set
}

// Config wires the dashboard.
type Config struct {
	Backend Backend
	Token   string // the API token; signing in takes it. Required.
	Logger  *slog.Logger
	// SessionTTL is how long a sign-in lasts; default 12h.
	SessionTTL time.Duration
	// PollInterval is how often open pages ask for fresh rows; default 3s.
	PollInterval time.Duration
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Dashboard is the web UI. Register its routes with Routes.
type Dashboard struct {
	b        Backend
	log      *slog.Logger
	sessions *sessions
	tmpl     *template.Template
	poll     time.Duration
	static   map[string]asset // by name, e.g. "app.css"
}

// asset is an embedded static file, addressed by a content hash so browsers
// may cache it for good.
type asset struct {
	body  []byte
	hash  string
	ctype string
}

// New parses the templates and fingerprints the static files.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Token == "" {
		return nil, fmt.Errorf("web: no API token")
	}
	d := &Dashboard{
		b:        cfg.Backend,
		log:      cfg.Logger,
		sessions: newSessions(cfg.Token, cmp.Or(cfg.SessionTTL, 12*time.Hour)),
		poll:     cmp.Or(cfg.PollInterval, 3*time.Second),
		static:   map[string]asset{},
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	err := fs.WalkDir(staticFS, "static", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		body, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		d.static[path.Base(p)] = asset{body: body, hash: hex.EncodeToString(sum[:6]), ctype: mime.TypeByExtension(path.Ext(p))}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: static files: %w", err)
	}
	d.tmpl, err = template.New("").Funcs(template.FuncMap{
		"static":    d.staticURL,
		"when":      when,
		"stamp":     stamp,
		"labels":    formatLabels,
		"plural":    plural,
		"lines":     lines,
		"stateCSS":  func(s store.State) string { return "state-" + string(s) },
		"declared":  func(m store.Machine) bool { return m.State == store.StateDeclared },
		"machineID": machineID,
		"choice":    filterChoice,
		"hwsum":     boot.Summary,
		"bytes":     boot.Bytes,
		// stalled is the machine's stall, or nil: the badge of a boot that
		// stopped progressing (serve --stall-after).
		"stalled": func(mac string) *boot.Stall {
			if st, ok := cfg.Backend.Stalled(mac); ok {
				return &st
			}
			return nil
		},
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	return d, nil
}

// Routes registers the dashboard on r: / and everything under /ui/.
func (d *Dashboard) Routes(r chi.Router) {
	r.Group(func(r chi.Router) {
		r.Use(securityHeaders, middleware.Compress(5, "text/html", "text/css", "text/javascript"))
		r.Get("/ui/static/{name}", d.serveStatic)
		r.Get("/ui/login", d.loginPage)
		r.Post("/ui/login", d.login)
		r.Group(func(r chi.Router) {
			r.Use(d.requireSession)
			r.Get("/", d.machinesPage)
			r.Get("/ui/machines/rows", d.machineRows)
			r.Get("/ui/events", d.eventsPage)
			r.Get("/ui/events/rows", d.eventRows)
			r.Get("/ui/profiles", d.profilesPage)
			r.Get("/ui/machines/{id}", d.machinePage)
			r.Get("/ui/machines/{id}/live", d.machineLive)
			r.Get("/ui/machines/{id}/confirm", d.confirmPage)
			r.Post("/ui/machines/{id}/action", d.action)
			r.Post("/ui/logout", d.logout)
		})
	})
}

// securityHeaders keeps pages out of frames and scripts to our own files.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		// same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null"
		// on form posts, which the origin check must refuse.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

func (d *Dashboard) staticURL(name string) string {
	return "/ui/static/" + name + "?v=" + d.static[name].hash
}

func (d *Dashboard) serveStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := d.static[chi.URLParam(r, "name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	if r.URL.Query().Get("v") == a.hash {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	}
	_, _ = w.Write(a.body)
}

// page is what every full page's layout needs.
type page struct {
	Title    string
	Nav      string   // the page's template without .html, to mark its entry in the navigation
	Session  *session // nil on the sign-in page
	Profiles profileStatus
	Flash    *flash
	Poll     int // milliseconds
	Body     any // the page's own data
}

// profileStatus is the banner: the live set and the last reload's result.
type profileStatus struct {
	Loaded   bool
	LoadedAt time.Time
	Profiles int
	Machines int
	Live     *boot.Revision // the live set's Git commit; nil for a plain directory
	Git      bool           // the profiles come from Git: fixes are commits, not edits
	Failed   bool
	FailedAt time.Time
	Rejected *boot.Revision // the commit that failed, when it came from Git
	Problems []string       // file:line: message
}

func (d *Dashboard) profileStatus() profileStatus {
	var ps profileStatus
	if set := d.b.Profiles(); set != nil {
		ps.Loaded, ps.LoadedAt = true, set.LoadedAt
		ps.Profiles, ps.Machines = len(set.Profiles), len(set.Machines)
	}
	st := d.b.Status()
	ps.Git = boot.UsesGit(st, d.b.Sync())
	if st == nil {
		return ps
	}
	ps.Live = st.Live
	if st.Err != nil {
		ps.Failed, ps.FailedAt = true, st.Time
		ps.Problems = profiles.Lines(st.Err)
		if r := st.Rejected; r != nil && r.Time.Equal(st.Time) { // this failure was a Git commit
			rev := r.Revision
			ps.Rejected = &rev
		}
	}
	return ps
}

// filterSelect is what the "filter-select" template draws: the drop-down
// of query parameter Name, offering Options with Selected chosen.
type filterSelect struct {
	Name, Label string
	Options     any // a slice of strings or string kinds (store.State)
	Selected    string
}

func filterChoice(name, label string, options any, selected string) filterSelect {
	return filterSelect{Name: name, Label: label, Options: options, Selected: selected}
}

// render executes a named template into a buffer first, so a template error
// becomes a clean 500 instead of half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var buf bytes.Buffer
	if err := d.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		d.log.Error("render dashboard page", "template", name, "path", r.URL.Path, "error", err)
		http.Error(w, "internal error; see the server log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// renderPage renders a full page with the layout's shared parts filled in.
func (d *Dashboard) renderPage(w http.ResponseWriter, r *http.Request, code int, name, title string, body any) {
	s := sessionOf(r)
	p := page{Title: title, Nav: strings.TrimSuffix(name, ".html"), Session: s, Profiles: d.profileStatus(), Poll: int(d.poll.Milliseconds()), Body: body}
	if s != nil {
		p.Flash = d.sessions.takeFlash(s)
	}
	d.render(w, r, code, name, p)
}

// failPage shows an error inside the layout, for errors a user can act on.
func (d *Dashboard) failPage(w http.ResponseWriter, r *http.Request, err error) {
	code, public := d.answer(r, err)
	d.renderPage(w, r, code, "error.html", http.StatusText(code), public)
}

// answer is the status and the text a page or a refresh shows of err, as
// internal/httperr says for every HTTP layer; it logs err.
func (d *Dashboard) answer(r *http.Request, err error) (int, string) {
	code, public, level := httperr.Answer(err)
	d.log.Log(r.Context(), level, "dashboard request failed", "path", r.URL.Path, "status", code, "error", err)
	return code, public
}

// when is a time as the page first shows it; app.js turns it into "3m ago".
// Pages render absolute times so that a refreshed fragment is byte-identical
// while nothing changed, and its ETag holds.
func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// lines splits a script into its lines, so that a line too long for the
// screen wraps under itself instead of running off it (see .script in app.css).
func lines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// plural is "1 machine", "2 machines".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
