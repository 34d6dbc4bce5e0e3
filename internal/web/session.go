package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/provisiond/provisiond/internal/boot"
)

const (
	cookieName = "provisiond_session"
	// maxSessions bounds memory against a script signing in in a loop; the
	// oldest session goes first.
	maxSessions = 1024
)

// session is one sign-in. Sessions live in memory: a restart signs everyone
// out, which is the safe failure.
type session struct {
	id      string
	CSRF    string // echoed by every form that changes something
	Name    string // who signed in, as they said; for the event log's actor
	created time.Time
	expires time.Time
	flash   *flash
}

// flash is a one-shot message shown on the next page, after a redirect.
type flash struct {
	OK   bool
	Text string
}

// sessions holds the live sign-ins.
type sessions struct {
	token []byte
	ttl   time.Duration
	now   func() time.Time

	mu   sync.Mutex
	byID map[string]*session
}

func newSessions(token string, ttl time.Duration) *sessions {
	return &sessions{token: []byte(token), ttl: ttl, now: time.Now, byID: map[string]*session{}}
}

// open checks the API token and starts a session.
func (ss *sessions) open(token, name string) (*session, bool) {
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), ss.token) != 1 {
		return nil, false
	}
	now := ss.now()
	s := &session{id: rand.Text(), CSRF: rand.Text(), Name: name, created: now, expires: now.Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for id, old := range ss.byID {
		if now.After(old.expires) {
			delete(ss.byID, id)
		}
	}
	for len(ss.byID) >= maxSessions {
		var oldest *session
		for _, o := range ss.byID {
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		delete(ss.byID, oldest.id)
	}
	ss.byID[s.id] = s
	return s, true
}

// get returns the live session with this id, or nil.
func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[id]
	if s == nil {
		return nil
	}
	if ss.now().After(s.expires) {
		delete(ss.byID, id)
		return nil
	}
	return s
}

func (ss *sessions) close(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, s.id)
}

func (ss *sessions) setFlash(s *session, f flash) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s.flash = &f
}

func (ss *sessions) takeFlash(s *session) *flash {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	f := s.flash
	s.flash = nil
	return f
}

type sessionKey struct{}

func sessionOf(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	return s
}

// requireSession sends a browser without a live session to sign in, and
// refuses any change that lacks the session's CSRF token or comes from
// another origin.
func (d *Dashboard) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s *session
		if c, err := r.Cookie(cookieName); err == nil {
			s = d.sessions.get(c.Value)
		}
		if s == nil {
			if r.Method != http.MethodGet || isFragment(r) {
				// Fragments and posts cannot follow a redirect to a form.
				http.Error(w, "signed out: sign in again", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if !sameOrigin(r) {
				d.log.Warn("dashboard post from another origin refused", "origin", r.Header.Get("Origin"), "path", r.URL.Path, "remote", r.RemoteAddr)
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) != 1 {
				d.log.Warn("dashboard post without a valid CSRF token refused", "path", r.URL.Path, "remote", r.RemoteAddr)
				http.Error(w, "missing or stale form token: reload the page and try again", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
	})
}

// isFragment reports a request for part of a page (a live refresh: the
// routes ending in /rows or /live), which a script fetches.
func isFragment(r *http.Request) bool {
	return strings.HasSuffix(r.URL.Path, "/rows") || strings.HasSuffix(r.URL.Path, "/live")
}

// sameOrigin checks the browser's Origin header (or Referer) against the
// Host it asked for; a request with neither comes from no browser page.
func sameOrigin(r *http.Request) bool {
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return true
	}
	u, err := url.Parse(src)
	return err == nil && u.Host == r.Host
}

// secure reports whether the browser reached us over HTTPS, directly or
// through a TLS-terminating proxy: then the cookie is Secure. Over plain HTTP
// a Secure cookie would never come back, so it is left off there.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if c, err := r.Cookie(cookieName); err == nil && d.sessions.get(c.Value) != nil {
		// Signed in already (a bookmark, the back button): no form to fill.
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	d.renderPage(w, r, http.StatusOK, "login.html", "Sign in", loginData{Next: next})
}

type loginData struct {
	Next  string
	Error string
	Name  string
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := safeNext(r.PostFormValue("next"))
	name := strings.TrimSpace(r.PostFormValue("name"))
	if !boot.ValidActorName(name) {
		d.renderPage(w, r, http.StatusBadRequest, "login.html", "Sign in",
			loginData{Next: next, Error: "Your name may have up to 32 letters, digits, dots, dashes and underscores.", Name: name})
		return
	}
	s, ok := d.sessions.open(r.PostFormValue("token"), name)
	if !ok {
		d.log.Warn("dashboard sign-in with a wrong token", "remote", r.RemoteAddr)
		d.renderPage(w, r, http.StatusUnauthorized, "login.html", "Sign in",
			loginData{Next: next, Error: "That is not the API token.", Name: name})
		return
	}
	d.log.Info("dashboard sign-in", "actor", actorOf(s, r))
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s.id, Path: "/",
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
		MaxAge: int(d.sessions.ttl.Seconds()),
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	d.sessions.close(sessionOf(r))
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

// safeNext keeps the post-sign-in redirect on this site: a path, with no
// scheme or host however a browser might read one in (browsers drop tabs
// and newlines and take "\\" for "/": "/\t/evil.example" is another site).
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(next, "/") ||
		strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\t\r\n") {
		return "/"
	}
	return next
}

// actorOf names who acts in the event log: "name/web@ip", or "web@ip".
func actorOf(s *session, r *http.Request) string {
	return boot.Actor(s.Name, "web", r.RemoteAddr)
}
