package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
	"github.com/oidcgate/oidcgate/logout"
)

// Prefix is where the CLI mounts the console, on the internal listener
// only.
const Prefix = "/admin/ui/"

// The cookies of the console, both scoped to Prefix.
const (
	// CookieName holds the sealed session.
	CookieName = "oidcgate_console"
	// signinCookie holds the CSRF token of the sign-in form (there is no
	// session yet to hold it).
	signinCookie = "oidcgate_console_signin"
)

// Session lifetime bounds.
const (
	defaultTTL = 15 * time.Minute
	maxTTL     = 12 * time.Hour
	minSecret  = 32
	// maxForm bounds a form body.
	maxForm = 64 << 10
)

// csp is the Content-Security-Policy of every page: nothing from another
// origin, no inline script or style, no framing.
const csp = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Store is the part of the revocation store the overview reads.
// *cache.Store and *cache.Redis satisfy it.
type Store interface {
	// Len is the number of entries stored.
	Len() int
	// Applied lists the replicas known to the store (with the entry's
	// application, unused here).
	Applied(ctx context.Context, issuer string, kind cache.Kind, value string) (cache.ApplyStatus, error)
}

var (
	_ Store = (*cache.Store)(nil)
	_ Store = (*cache.Redis)(nil)
)

// Config configures New.
type Config struct {
	// Auth checks the admin token at sign-in and on every request (a
	// token removed from the config ends its sessions). Required.
	Auth *logout.Authenticator
	// Secret keys the session cookie (HKDF-SHA256 → AES-256-GCM); at least
	// 32 bytes. Replicas behind one address need the same secret.
	// Required.
	Secret string
	// Secure marks the cookies Secure: set it when the console is reached
	// over https through a proxy (a request that came over TLS gets
	// Secure cookies anyway).
	Secure bool
	// TTL is the session lifetime from sign-in; 0 means 15 minutes, at
	// most 12 hours.
	TTL time.Duration
	// Revocations, Status and Keys are the admin API's handlers
	// (POST/GET /admin/revocations, /admin/revocations/status,
	// /admin/keys); the console calls them in process with the signed-in
	// token. Revocations and Status are required; a nil Keys hides the
	// API keys page.
	Revocations, Status, Keys http.Handler
	// Audit is the audit log; nil hides the audit page and chart.
	Audit *audit.Log
	// Store is the revocation store. Required.
	Store Store
	// Metrics is read for the overview (store sync state, outbox depth,
	// pending targets); nil shows none.
	Metrics prometheus.Gatherer
	// Issuers are the configured issuers, offered by the forms.
	Issuers []string
	// Clock is the time source; nil is the real clock.
	Clock clock.Clock
	// Logger receives refusals (never a token or cookie); nil discards.
	Logger *slog.Logger
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Auth == nil {
		errs = append(errs, errors.New("console: Auth: required"))
	}
	if len(c.Secret) < minSecret {
		errs = append(errs, fmt.Errorf("console: Secret: shorter than %d bytes", minSecret))
	}
	if c.TTL < 0 || c.TTL > maxTTL {
		errs = append(errs, fmt.Errorf("console: TTL: not between 0 and %s", maxTTL))
	}
	if c.Revocations == nil || c.Status == nil {
		errs = append(errs, errors.New("console: Revocations and Status: required"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("console: Store: required"))
	}
	return errors.Join(errs...)
}

// Console serves the pages under Prefix. It is safe for concurrent use.
type Console struct {
	cfg    Config
	seal   *sealer
	clk    clock.Clock
	log    *slog.Logger
	pages  map[string]*template.Template
	static map[string]staticFile
}

//go:embed templates/*.html static/*
var assets embed.FS

type staticFile struct {
	body        []byte
	contentType string
}

// New validates cfg and parses the templates. It starts nothing.
func New(cfg Config) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TTL == 0 {
		cfg.TTL = defaultTTL
	}
	s, err := newSealer(cfg.Secret, CookieName)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c := &Console{cfg: cfg, seal: s, clk: clock.Or(cfg.Clock), log: cfg.Logger, pages: map[string]*template.Template{}, static: map[string]staticFile{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	funcs := template.FuncMap{"has": func(p logout.Principal, r string) bool { return p.Roles.Has(logout.Role(r)) }}
	for _, name := range []string{"signin", "overview", "search", "revoke", "follow", "audit", "verify", "keys", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	for name, ct := range map[string]string{"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"} {
		b, err := assets.ReadFile("static/" + name)
		if err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
		c.static[name] = staticFile{body: b, contentType: ct}
	}
	return c, nil
}

// ServeHTTP serves the console. Pages other than sign-in need a session;
// without one (or with an expired or tampered cookie) a GET is sent to
// the sign-in page and a POST is refused the same way, with nothing done.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	path, ok := strings.CutPrefix(r.URL.Path, Prefix)
	if !ok {
		c.fail(w, r, nil, http.StatusNotFound, "No such page.")
		return
	}
	if name, ok := strings.CutPrefix(path, "static/"); ok {
		c.serveStatic(w, r, name)
		return
	}
	if path == "signin" {
		c.signin(w, r)
		return
	}
	v, p, ok := c.session(w, r)
	if !ok {
		return
	}
	rq := &request{w: w, r: r, p: p, csrf: v.CSRF, token: v.Token}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, rq, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if !sameToken(r.PostForm.Get("csrf"), v.CSRF) {
			c.log.LogAttrs(r.Context(), slog.LevelWarn, "console: POST refused: CSRF token missing or wrong", slog.String("admin", p.Name), slog.String("path", r.URL.Path))
			c.fail(w, r, rq, http.StatusForbidden, "The form's CSRF token is missing or wrong. Reload the page and try again.")
			return
		}
	}
	switch route := r.Method + " " + path; route {
	case "GET ", "HEAD ":
		c.overview(rq)
	case "GET search", "HEAD search":
		c.search(rq)
	case "GET revoke", "HEAD revoke":
		c.revokeForm(rq)
	case "POST revoke":
		c.revoke(rq)
	case "GET follow", "HEAD follow":
		c.follow(rq)
	case "GET status.json":
		c.statusJSON(rq)
	case "GET audit", "HEAD audit":
		c.auditPage(rq)
	case "POST audit/verify":
		c.verify(rq)
	case "GET keys", "HEAD keys":
		c.keysPage(rq)
	case "POST keys":
		c.createKey(rq)
	case "POST keys/rotate":
		c.rotateKey(rq)
	case "POST keys/revoke":
		c.revokeKey(rq)
	case "POST signout":
		c.signout(rq)
	default:
		c.fail(w, r, rq, http.StatusNotFound, "No such page.")
	}
}

// request is one signed-in request.
type request struct {
	w     http.ResponseWriter
	r     *http.Request
	p     logout.Principal
	csrf  string
	token string
}

func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request, name string) {
	f, ok := c.static[name]
	if !ok || r.Method != http.MethodGet && r.Method != http.MethodHead {
		c.fail(w, r, nil, http.StatusNotFound, "No such page.")
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Cache-Control", "private, max-age=300")
	_, _ = w.Write(f.body)
}

// session returns the request's session and principal, or sends the
// browser to the sign-in page (clearing a bad cookie) and returns false.
func (c *Console) session(w http.ResponseWriter, r *http.Request) (session, logout.Principal, bool) {
	reason := ""
	ck, err := r.Cookie(CookieName)
	if err == nil {
		v, err := c.seal.open(ck.Value, c.clk.Now())
		if err == nil {
			if p, ok := c.cfg.Auth.Token(v.Token); ok {
				return v, p, true
			}
			reason = "revoked"
		} else if errors.Is(err, errExpired) {
			reason = "expired"
		} else {
			reason = "invalid"
		}
		c.clearCookie(w, r, CookieName)
	}
	target := Prefix + "signin"
	if reason != "" {
		target += "?why=" + reason
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
	return session{}, logout.Principal{}, false
}

// setCookie sets a console cookie: HttpOnly, SameSite=Strict, scoped to
// Prefix, and Secure when configured or when r came over TLS.
func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: c.cfg.Secure || r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	c.setCookie(w, r, name, "", -1)
}

// signinPage is the data of the sign-in page.
type signinPage struct {
	CSRF    string
	Message string
}

var signinReasons = map[string]string{
	"expired":   "Your session expired. Sign in again.",
	"invalid":   "Your session is not valid. Sign in again.",
	"revoked":   "The token of your session is no longer accepted.",
	"signedout": "You are signed out.",
}

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		tok := randomToken()
		c.setCookie(w, r, signinCookie, tok, 600)
		c.render(w, r, http.StatusOK, "signin", nil, signinPage{CSRF: tok, Message: signinReasons[r.URL.Query().Get("why")]})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		ck, err := r.Cookie(signinCookie)
		if err != nil || r.ParseForm() != nil || !sameToken(r.PostForm.Get("csrf"), ck.Value) {
			c.log.LogAttrs(r.Context(), slog.LevelWarn, "console: sign-in refused: CSRF token missing or wrong")
			c.fail(w, r, nil, http.StatusForbidden, "The sign-in form's CSRF token is missing or wrong. Reload the page and try again.")
			return
		}
		tok := r.PostForm.Get("token")
		p, ok := c.cfg.Auth.Token(tok)
		if !ok {
			c.log.LogAttrs(r.Context(), slog.LevelWarn, "console: sign-in refused: unknown token")
			next := randomToken()
			c.setCookie(w, r, signinCookie, next, 600)
			c.render(w, r, http.StatusUnauthorized, "signin", nil, signinPage{CSRF: next, Message: "That token is not an admin token."})
			return
		}
		value, err := c.seal.seal(session{Token: tok, CSRF: randomToken(), Expires: c.clk.Now().Add(c.cfg.TTL).Unix()})
		if err != nil {
			c.fail(w, r, nil, http.StatusBadRequest, "That token is too long for a console session.")
			return
		}
		c.clearCookie(w, r, signinCookie)
		c.setCookie(w, r, CookieName, value, int(c.cfg.TTL/time.Second))
		c.log.LogAttrs(r.Context(), slog.LevelInfo, "console: signed in", slog.String("admin", p.Name), slog.String("roles", p.Roles.String()))
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		c.fail(w, r, nil, http.StatusMethodNotAllowed, "Method not allowed.")
	}
}

func (c *Console) signout(q *request) {
	c.clearCookie(q.w, q.r, CookieName)
	http.Redirect(q.w, q.r, Prefix+"signin?why=signedout", http.StatusSeeOther)
}

// page is what every signed-in page gets besides its own data.
type page struct {
	Title string
	P     *logout.Principal
	CSRF  string
	Audit bool
	Keys  bool
	Data  any
}

// render executes page name into a buffer first, so a template error is
// a clean 500 page rather than half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, q *request, data any) {
	pg := page{Title: name, Data: data, Audit: c.cfg.Audit != nil, Keys: c.cfg.Keys != nil}
	if q != nil {
		pg.P, pg.CSRF = &q.p, q.csrf
	}
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, pg); err != nil {
		c.log.LogAttrs(r.Context(), slog.LevelError, "console: page not rendered", slog.String("page", name), slog.Any("error", err))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "The page could not be rendered.\n")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// errorPage is the data of the error page.
type errorPage struct {
	Status  int
	Message string
}

// fail renders the error page with status and message (plain words,
// never an internal error).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, q *request, status int, message string) {
	c.render(w, r, status, "error", q, errorPage{Status: status, Message: message})
}

// need reports whether q's credential holds role; if not it logs the
// refusal and answers 403 naming the role.
func (c *Console) need(q *request, role logout.Role) bool {
	if q.p.Roles.Has(role) {
		return true
	}
	c.cfg.Auth.Refused(q.r, q.p, role)
	c.fail(q.w, q.r, q, http.StatusForbidden, fmt.Sprintf("Your admin token %q lacks the role %q needed here.", q.p.Name, role))
	return false
}
