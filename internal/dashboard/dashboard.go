// Package dashboard serves Salve's web UI under /ui/: server-rendered
// pages that read runs, runbooks, the audit log and the toil figures
// through the API server's services, and a small script that does every
// action (approve, reject, cancel, launch, dry-run plan) through the JSON
// API, so that each goes through the API's authorization, validation and
// auditing. Assets are embedded: no CDN, no build step.
package dashboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/salve-sre/salve/internal/api"
	"github.com/salve-sre/salve/internal/auth"
	"github.com/salve-sre/salve/internal/domain"
)

//go:embed templates/*.html static/*
var files embed.FS

// Options configures the dashboard.
type Options struct {
	// API holds every service the pages read from; required.
	API *api.Server
	// TemporalUI is the base URL of the Temporal Web UI, for links to a
	// run's history; "" = no links.
	TemporalUI string
	// Namespace is the Temporal namespace runs live in (for those links).
	Namespace string
	Log       *slog.Logger
}

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

// contentSecurityPolicy allows only the dashboard's own files: no inline
// script or style, so injected markup cannot run.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'"

type dashboard struct {
	o       Options
	log     *slog.Logger
	pages   map[string]*template.Template
	assets  map[string]asset
	logins  *loginLimiter
	now     func() time.Time
	nsOrDef string
}

type asset struct {
	body        []byte
	contentType string
	version     string // short content hash, for cache busting
}

// New returns the dashboard's handler for everything under /ui/.
func New(o Options) (http.Handler, error) {
	if o.API == nil {
		return nil, errors.New("dashboard: Options.API is required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	d := &dashboard{o: o, log: o.Log, logins: newLoginLimiter(), now: time.Now, nsOrDef: o.Namespace}
	if d.nsOrDef == "" {
		d.nsOrDef = "default"
	}
	if err := d.loadAssets(); err != nil {
		return nil, err
	}
	if err := d.parseTemplates(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/static/{file}", d.static)
	mux.HandleFunc("GET /ui/login", d.loginForm)
	mux.HandleFunc("POST /ui/login", d.login)
	mux.HandleFunc("GET /ui/logout", d.logout)
	mux.HandleFunc("POST /ui/logout", d.logout)
	mux.Handle("GET /ui/{$}", d.page(d.overview))
	mux.Handle("GET /ui/runs", d.page(d.runList))
	mux.Handle("GET /ui/runs/{id...}", d.page(d.runDetail))
	mux.Handle("GET /ui/approvals", d.page(d.approvals))
	mux.Handle("GET /ui/runbooks", d.page(d.runbookList))
	mux.Handle("GET /ui/runbooks/{name}", d.page(d.runbookDetail))
	mux.Handle("GET /ui/audit", d.page(d.auditLog))
	mux.Handle("GET /ui/slos", d.page(d.sloList))
	mux.Handle("GET /ui/slos/{name}", d.page(d.sloDetail))
	mux.Handle("GET /ui/backtest", d.page(d.backtestView))
	mux.Handle("GET /ui/incidents/{key...}", d.page(d.incident))
	mux.Handle("/ui/", d.page(d.notFound))
	return securityHeaders(mux), nil
}

// securityHeaders adds the headers every dashboard answer carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

func (d *dashboard) loadAssets() error {
	d.assets = map[string]asset{}
	entries, err := fs.ReadDir(files, "static")
	if err != nil {
		return fmt.Errorf("dashboard assets: %w", err)
	}
	for _, e := range entries {
		b, err := files.ReadFile("static/" + e.Name())
		if err != nil {
			return fmt.Errorf("dashboard asset %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		ct := "application/octet-stream"
		switch path.Ext(e.Name()) {
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		d.assets[e.Name()] = asset{body: b, contentType: ct, version: hex.EncodeToString(sum[:6])}
	}
	return nil
}

// static serves an embedded asset. A request naming the current version
// (?v=) may be cached for a year; others must revalidate.
func (d *dashboard) static(w http.ResponseWriter, r *http.Request) {
	a, ok := d.assets[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", `"`+a.version+`"`)
	if r.URL.Query().Get("v") == a.version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if match := r.Header.Get("If-None-Match"); match == `"`+a.version+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(a.body)
}

// staticURL is the versioned URL of an asset.
func (d *dashboard) staticURL(name string) string {
	return Prefix + "static/" + name + "?v=" + d.assets[name].version
}

// view is what every page's layout needs.
type view struct {
	Title string
	Nav   string // active navigation item
	User  auth.Principal
	// Role is the user's role name; CanOperate is true for operator and
	// admin (viewers see no action buttons: the API refuses them anyway).
	Role       string
	CanOperate bool
	LoggedIn   bool
	CSS, JS    string
	Icon       string
	Page       any
}

// page wraps a page handler: it requires a valid session and gives the
// handler the caller.
func (d *dashboard) page(h func(w http.ResponseWriter, r *http.Request, v *view)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := d.session(r)
		if !ok {
			if _, err := r.Cookie(api.SessionCookie); err == nil {
				d.clearSession(w, r) // ended, expired, or its token removed
			}
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		v := &view{User: p, Role: p.Role.String(), CanOperate: p.Can(auth.RoleOperator), LoggedIn: true}
		h(w, r, v)
	})
}

// session returns the holder of the request's session cookie.
func (d *dashboard) session(r *http.Request) (auth.Principal, bool) {
	p, err := d.o.API.SessionPrincipal(r)
	if err != nil || !p.Can(auth.RoleViewer) {
		return auth.Principal{}, false
	}
	return p, true
}

// render writes a page inside the layout. Rendering goes to a buffer
// first, so a template error is a clean 500, never half a page.
func (d *dashboard) render(w http.ResponseWriter, code int, name string, v *view) {
	t, ok := d.pages[name]
	if !ok {
		http.Error(w, "no such page template: "+name, http.StatusInternalServerError)
		return
	}
	v.CSS, v.JS, v.Icon = d.staticURL("app.css"), d.staticURL("app.js"), d.staticURL("favicon.svg")
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		d.log.Error("render dashboard page", "page", name, "error", err)
		http.Error(w, "cannot render the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// errorPage is a page that says what went wrong.
type errorPage struct {
	Code    int
	Heading string
	Message string
}

func (d *dashboard) fail(w http.ResponseWriter, v *view, code int, heading, msg string) {
	v.Title = heading
	v.Page = errorPage{Code: code, Heading: heading, Message: msg}
	d.render(w, code, "error", v)
}

func (d *dashboard) notFound(w http.ResponseWriter, r *http.Request, v *view) {
	d.fail(w, v, http.StatusNotFound, "Not found", "There is no dashboard page at "+r.URL.Path+".")
}

// loginPage is the login form's data.
type loginPage struct {
	Next  string
	Error string
}

func (d *dashboard) loginForm(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if _, ok := d.session(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	msg := ""
	if d.o.API.Auth == nil {
		msg = "No API tokens are configured on this server: add auth.tokens to its config (salve token create prints an entry)."
	}
	d.render(w, http.StatusOK, "login", &view{Title: "Sign in", Page: loginPage{Next: next, Error: msg}})
}

// login checks the token from the form and keeps it in an HTTP-only
// cookie. The token is never logged.
func (d *dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot read the form", http.StatusBadRequest)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	again := func(code int, msg string) {
		d.render(w, code, "login", &view{Title: "Sign in", Page: loginPage{Next: next, Error: msg}})
	}
	// A login form posted from another site would sign the victim in as
	// the attacker (login CSRF): browsers say where a form comes from.
	if !sameOrigin(r) {
		again(http.StatusForbidden, "This sign-in form was sent from another site; open the dashboard directly and sign in again.")
		return
	}
	ip := clientIP(r)
	if !d.logins.allowed(ip, d.now()) {
		again(http.StatusTooManyRequests, "Too many failed sign-ins from your address; wait a few minutes and try again.")
		return
	}
	if d.o.API.Auth == nil {
		again(http.StatusUnauthorized, "No API tokens are configured on this server: add auth.tokens to its config (salve token create prints an entry).")
		return
	}
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	p, err := d.o.API.Auth.Token(tok)
	if err != nil || !p.Can(auth.RoleViewer) {
		d.logins.failed(ip, d.now())
		d.auditDenied(r, ip)
		msg := "That token is not valid: it is unknown, revoked, or not an API token (create one with: salve token create --role viewer --subject NAME)."
		if tok == "" {
			msg = "Paste an API token."
		}
		again(http.StatusUnauthorized, msg)
		return
	}
	d.logins.succeeded(ip)
	if d.o.API.Sessions == nil {
		again(http.StatusServiceUnavailable, "This server keeps no dashboard sessions; use the API with your token.")
		return
	}
	// The cookie holds a random session ID, never the token: signing out
	// ends the session on every replica.
	id, err := d.o.API.Sessions.Create(r.Context(), auth.Session{TokenSHA256: auth.HashToken(tok), Subject: p.Subject, Expires: d.now().Add(auth.SessionTTL)})
	if err != nil {
		d.log.Error("dashboard sign-in: store the session", "error", err)
		again(http.StatusServiceUnavailable, "Cannot start a session now (the session store does not answer); try again shortly.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     api.SessionCookie,
		Value:    id,
		Path:     "/",
		MaxAge:   int(auth.SessionTTL.Seconds()),
		HttpOnly: true,
		Secure:   d.o.API.SecureRequest(r),
		SameSite: http.SameSiteStrictMode,
	})
	d.log.Info("dashboard sign-in", "subject", p.Subject, "role", p.Role.String(), "remote", ip)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (d *dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(api.SessionCookie); err == nil && c.Value != "" && d.o.API.Sessions != nil {
		if err := d.o.API.Sessions.Delete(r.Context(), c.Value); err != nil {
			d.log.Error("dashboard sign-out: end the session", "error", err)
			http.Error(w, "cannot end the session now (the session store does not answer); try again", http.StatusServiceUnavailable)
			return
		}
	}
	d.clearSession(w, r)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

func (d *dashboard) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: api.SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: d.o.API.SecureRequest(r), SameSite: http.SameSiteStrictMode})
}

// auditDenied records a failed sign-in like the API records a refusal,
// at most once a second, so a flood of guesses cannot flood the log.
func (d *dashboard) auditDenied(r *http.Request, ip string) {
	rec := d.o.API.Recorder
	if rec == nil || !d.logins.auditAllowed(d.now()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	ev := domain.AuditEvent{
		ID:      "ui/" + domain.ActionAuthDenied + "/" + randomHex(12),
		Time:    d.now().UTC(),
		Actor:   domain.Actor{Kind: domain.ActorUser, Name: "anonymous"},
		Action:  domain.ActionAuthDenied,
		Outcome: "401",
		Error:   "dashboard sign-in with an invalid token",
		Detail:  map[string]string{"method": r.Method, "path": r.URL.EscapedPath(), "remote": ip},
	}
	if err := rec.Record(ctx, ev); err != nil {
		d.log.Error("audit dashboard sign-in refusal", "error", err)
	}
}

// safeNext returns next when it is a path of the dashboard on this site,
// else /ui/: the login form never redirects elsewhere.
func safeNext(next string) string {
	const home = "/ui/"
	if next == "" || strings.ContainsAny(next, "\\\r\n\t") || strings.HasPrefix(next, "//") {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return home
	}
	clean := path.Clean(u.Path)
	if !strings.HasPrefix(u.Path, home) || clean != "/ui" && !strings.HasPrefix(clean, home) {
		return home
	}
	if strings.HasPrefix(u.Path, "/ui/login") || strings.HasPrefix(u.Path, "/ui/logout") {
		return home
	}
	return u.RequestURI()
}

// sameOrigin reports whether a form post comes from this site, by the
// Sec-Fetch-Site or Origin headers browsers send; requests without either
// (old browsers, scripts) are let through: the token itself is the proof.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// loginLimiter slows down token guessing: after maxFails failed sign-ins
// from one address within loginWindow, that address must wait.
type loginLimiter struct {
	mu        sync.Mutex
	fails     map[string]*failures
	lastAudit time.Time
}

type failures struct {
	n     int
	since time.Time
}

const (
	maxFails    = 10
	loginWindow = 5 * time.Minute
	maxTracked  = 10000
)

func newLoginLimiter() *loginLimiter { return &loginLimiter{fails: map[string]*failures{}} }

func (l *loginLimiter) allowed(ip string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[ip]
	if f == nil || now.Sub(f.since) > loginWindow {
		return true
	}
	return f.n < maxFails
}

func (l *loginLimiter) failed(ip string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) >= maxTracked {
		for k, f := range l.fails {
			if now.Sub(f.since) > loginWindow {
				delete(l.fails, k)
			}
		}
	}
	f := l.fails[ip]
	if f == nil || now.Sub(f.since) > loginWindow {
		if len(l.fails) >= maxTracked {
			return // full of recent failures: the audit log still sees them, rate-limited
		}
		f = &failures{since: now}
		l.fails[ip] = f
	}
	f.n++
}

func (l *loginLimiter) succeeded(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, ip)
}

func (l *loginLimiter) auditAllowed(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastAudit) < time.Second {
		return false
	}
	l.lastAudit = now
	return true
}
