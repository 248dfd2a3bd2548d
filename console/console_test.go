package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/logout"
)

const iss = "https://idp.example"

var t0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

// tokenOf is the fixture token of the credential named name; "all" has
// no roles listed (every role), the others the role they are named after.
func tokenOf(name string) string { return "console-" + name + "-0123456789abcdef0123456789abcdef" }

type fixture struct {
	srv   *httptest.Server
	store *cache.Store
	clock *clocktest.Clock
	logs  *strings.Builder
	audit *audit.Log
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	clk := clocktest.NewRealTimers(t0)
	store, err := cache.Open(cache.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	au, err := audit.Open(audit.Config{Path: filepath.Join(t.TempDir(), "audit.jsonl"), Replica: "test", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = au.Close() })
	logs := &strings.Builder{}
	admin := logout.AdminConfig{Tokens: []logout.AdminToken{{Name: "all", Token: introspect.Secret(tokenOf("all"))}}}
	for _, r := range logout.Roles {
		admin.Tokens = append(admin.Tokens, logout.AdminToken{Name: string(r), Token: introspect.Secret(tokenOf(string(r))), Roles: []logout.Role{r}})
	}
	reg := prometheus.NewRegistry()
	lcfg := logout.Config{
		Admin:     admin,
		Lifetimes: map[string]time.Duration{iss: time.Hour},
		ClockSkew: 30 * time.Second,
		Store:     &audit.Store{Store: store, Log: au, Clock: clk},
		Replays:   store,
		Clock:     clk,
		Logger:    slog.New(slog.NewTextHandler(&lockedWriter{b: logs}, nil)),
		Metrics:   reg,
	}
	a, err := logout.NewAdmin(lcfg)
	if err != nil {
		t.Fatal(err)
	}
	a.SetTargets(store, nil)
	keys, err := logout.NewKeyAdmin(logout.KeyAdminConfig{Config: lcfg, Records: store, Audit: au})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{
		Auth: a.Authenticator(), Secret: strings.Repeat("s", 32),
		Revocations: a, Status: a.StatusHandler(store, au), Keys: keys,
		Audit: au, Store: store, Metrics: reg, Issuers: []string{iss},
		Clock: clk, Logger: lcfg.Logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, store: store, clock: clk, logs: logs, audit: au}
}

// lockedWriter lets the handlers' goroutines log into one builder.
type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// browser is a client with a cookie jar that does not follow redirects.
func (f *fixture) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type resp struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values) resp {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	s := string(b)
	for _, leak := range []string{"goroutine ", "panic", ".go:"} {
		if strings.Contains(s, leak) {
			t.Errorf("%s %s: body shows %q: %s", method, u, leak, s)
		}
	}
	return resp{status: r.StatusCode, header: r.Header, body: s}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in %s", body)
	}
	return m[1]
}

// signIn signs c in with the token of name and returns the session's
// CSRF token.
func (f *fixture) signIn(t *testing.T, c *http.Client, name string) string {
	t.Helper()
	r := do(t, c, http.MethodGet, f.srv.URL+Prefix+"signin", nil)
	r = do(t, c, http.MethodPost, f.srv.URL+Prefix+"signin", url.Values{"csrf": {csrfOf(t, r.body)}, "token": {tokenOf(name)}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != Prefix {
		t.Fatalf("sign in as %s: %d %s", name, r.status, r.body)
	}
	r = do(t, c, http.MethodGet, f.srv.URL+Prefix, nil)
	if r.status != http.StatusOK {
		t.Fatalf("overview: %d %s", r.status, r.body)
	}
	return csrfOf(t, r.body)
}

func TestSignIn(t *testing.T) {
	f := newFixture(t)
	c := f.browser(t)
	r := do(t, c, http.MethodGet, f.srv.URL+Prefix, nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != Prefix+"signin" {
		t.Fatalf("signed out: got %d %q; want 303 to the sign-in page", r.status, r.header.Get("Location"))
	}
	r = do(t, c, http.MethodGet, f.srv.URL+Prefix+"signin", nil)
	if got := r.header.Get("Content-Security-Policy"); !strings.Contains(got, "default-src 'self'") {
		t.Errorf("CSP: got %q", got)
	}
	csrf := csrfOf(t, r.body)
	for name, form := range map[string]url.Values{
		"no CSRF":    {"token": {tokenOf("all")}},
		"wrong CSRF": {"csrf": {csrf + "x"}, "token": {tokenOf("all")}},
	} {
		if r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"signin", form); r.status != http.StatusForbidden {
			t.Errorf("sign-in, %s: got %d; want 403", name, r.status)
		}
	}
	r = do(t, c, http.MethodPost, f.srv.URL+Prefix+"signin", url.Values{"csrf": {csrf}, "token": {"not-a-token"}})
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "not an admin token") {
		t.Errorf("wrong token: got %d; want 401 with a message", r.status)
	}
	r = do(t, c, http.MethodGet, f.srv.URL+Prefix+"signin", nil)
	r = do(t, c, http.MethodPost, f.srv.URL+Prefix+"signin", url.Values{"csrf": {csrfOf(t, r.body)}, "token": {tokenOf("all")}})
	var ck string
	for _, v := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(v, CookieName+"=") {
			ck = v
		}
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/admin/ui/", "Max-Age=900"} {
		if !strings.Contains(ck, want) {
			t.Errorf("session cookie %q lacks %s", ck, want)
		}
	}
	if strings.Contains(ck, tokenOf("all")) || strings.Contains(f.logs.String(), tokenOf("all")) {
		t.Error("the token shows in the cookie or the logs")
	}
	if strings.Contains(f.logs.String(), strings.TrimPrefix(strings.SplitN(ck, ";", 2)[0], CookieName+"=")) {
		t.Error("the cookie value shows in the logs")
	}
}

func TestSessionExpiresAndTampered(t *testing.T) {
	f := newFixture(t)
	c := f.browser(t)
	f.signIn(t, c, "read")
	f.clock.Advance(16 * time.Minute)
	r := do(t, c, http.MethodGet, f.srv.URL+Prefix+"search", nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != Prefix+"signin?why=expired" {
		t.Errorf("expired: got %d %q; want 303 to signin?why=expired", r.status, r.header.Get("Location"))
	}
	u, _ := url.Parse(f.srv.URL + Prefix)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: CookieName, Value: "AAAA" + strings.Repeat("x", 80), Path: Prefix}})
	r = do(t, c, http.MethodGet, f.srv.URL+Prefix, nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != Prefix+"signin?why=invalid" {
		t.Errorf("tampered: got %d %q; want 303 to signin?why=invalid", r.status, r.header.Get("Location"))
	}
	// A POST without a session does nothing and goes to sign in.
	r = do(t, c, http.MethodPost, f.srv.URL+Prefix+"revoke", url.Values{"kind": {"sub"}, "value": {"x"}, "reason": {"r"}})
	if r.status != http.StatusSeeOther || f.store.Len() != 0 {
		t.Errorf("POST signed out: got %d, %d entries; want 303 and nothing stored", r.status, f.store.Len())
	}
}

func TestRevokeFollowAndXSS(t *testing.T) {
	f := newFixture(t)
	c := f.browser(t)
	csrf := f.signIn(t, c, "all")
	reason := `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	form := url.Values{"kind": {"sub"}, "value": {"alice"}, "issuer": {iss}, "reason": {reason}}
	for name, tok := range map[string]string{"no CSRF": "", "wrong CSRF": csrf[:len(csrf)-1] + "A"} {
		f2 := url.Values{}
		for k, v := range form {
			f2[k] = v
		}
		if tok != "" {
			f2.Set("csrf", tok)
		}
		if r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"revoke", f2); r.status != http.StatusForbidden {
			t.Errorf("%s: got %d; want 403", name, r.status)
		}
	}
	if f.store.Len() != 0 {
		t.Fatalf("%d entries after refused POSTs; want none", f.store.Len())
	}
	form.Set("csrf", csrf)
	r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"revoke", form)
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), Prefix+"follow?") {
		t.Fatalf("revoke: got %d %q %s", r.status, r.header.Get("Location"), r.body)
	}
	e, ok := f.store.Get(iss, cache.KindSub, "alice")
	if !ok || e.Initiator != "admin:all" || e.Reason != reason {
		t.Fatalf("entry: %+v %v; want alice by admin:all with the reason", e, ok)
	}
	for _, page := range []string{r.header.Get("Location"), Prefix + "search?kind=sub&value=alice", Prefix + "audit"} {
		r := do(t, c, http.MethodGet, f.srv.URL+page, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", page, r.status, r.body)
		}
		if strings.Contains(r.body, "<script>alert") || strings.Contains(r.body, "<img src=x") {
			t.Errorf("%s renders the reason as markup: %s", page, r.body)
		}
		if !strings.Contains(r.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s does not show the reason as text: %s", page, r.body)
		}
	}
	r = do(t, c, http.MethodGet, f.srv.URL+Prefix+"status.json?kind=sub&value=alice&issuer="+url.QueryEscape(iss), nil)
	if r.status != http.StatusOK || !strings.Contains(r.body, `"complete":true`) {
		t.Errorf("status.json: got %d %s; want complete", r.status, r.body)
	}
	r = do(t, c, http.MethodPost, f.srv.URL+Prefix+"audit/verify", url.Values{"csrf": {csrf}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "Intact") {
		t.Errorf("verify: got %d %s; want intact", r.status, r.body)
	}
}

// TestRoles: each page needs its role; a read token sees no revoke form
// and a forged POST (with its own valid CSRF token) is 403 and does
// nothing.
func TestRoles(t *testing.T) {
	f := newFixture(t)
	pages := map[string]logout.Role{"search": logout.RoleRead, "revoke": logout.RoleRevoke, "audit": logout.RoleAudit, "keys": logout.RoleKeys, "follow?kind=sub&value=a": logout.RoleRead}
	for _, holder := range []string{"read", "revoke", "keys", "audit"} {
		c := f.browser(t)
		csrf := f.signIn(t, c, holder)
		for page, role := range pages {
			r := do(t, c, http.MethodGet, f.srv.URL+Prefix+page, nil)
			if holder == string(role) {
				if r.status != http.StatusOK {
					t.Errorf("%s on %s: got %d %s", holder, page, r.status, r.body)
				}
				continue
			}
			if r.status != http.StatusForbidden || !strings.Contains(r.body, "lacks the role &#34;"+string(role)+"&#34;") {
				t.Errorf("%s on %s: got %d; want 403 naming %s: %s", holder, page, r.status, role, r.body)
			}
		}
		overview := do(t, c, http.MethodGet, f.srv.URL+Prefix, nil)
		if got := strings.Contains(overview.body, `id="nav-revoke"`); got != (holder == "revoke") {
			t.Errorf("%s: revoke link shown: %v", holder, got)
		}
		if holder == "revoke" {
			// A revoke-only token stores the revocation and is told
			// that following it needs read.
			r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"revoke", url.Values{"csrf": {csrf}, "kind": {"sub"}, "value": {"zoe"}, "reason": {"r"}})
			if r.status != http.StatusOK || !strings.Contains(r.body, "needs the read role") {
				t.Errorf("revoke by a revoke-only token: got %d %s", r.status, r.body)
			}
			if _, ok := f.store.Get(iss, cache.KindSub, "zoe"); !ok {
				t.Error("zoe not revoked")
			}
		}
		if holder == "read" {
			r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"revoke", url.Values{"csrf": {csrf}, "kind": {"sub"}, "value": {"bob"}, "reason": {"forged"}})
			if _, revoked := f.store.Get(iss, cache.KindSub, "bob"); r.status != http.StatusForbidden || revoked {
				t.Errorf("forged POST by read: got %d, bob revoked %v; want 403, not revoked", r.status, revoked)
			}
			if !strings.Contains(f.logs.String(), "role missing") {
				t.Error("the refusal is not logged")
			}
			r = do(t, c, http.MethodPost, f.srv.URL+Prefix+"keys", url.Values{"csrf": {csrf}, "owner": {"x"}})
			if r.status != http.StatusForbidden {
				t.Errorf("forged key POST by read: got %d; want 403", r.status)
			}
		}
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	c := f.browser(t)
	csrf := f.signIn(t, c, "all")
	long := strings.Repeat("a", 5000)
	tests := []struct {
		page string
		want int
	}{
		{"search?kind=sub&value=" + long, http.StatusBadRequest},
		{"search?kind=sub&value=%ff%fe%00", http.StatusBadRequest},
		{"search?kind=email&value=a", http.StatusBadRequest},
		{"search?kind=sub&value=a&value=b", http.StatusBadRequest},
		{"search?kind=sub&value=a&issuer=https://evil", http.StatusBadRequest},
		{"search?kind=sub&value=%3Cscript%3E", http.StatusOK},
		{"search?kind=session&value=" + strings.Repeat("%00", 100), http.StatusOK},
		{"audit?cursor=99999999999999999999999999", http.StatusBadRequest},
		{"audit?cursor=18446744073709551615", http.StatusOK},
		{"audit?cursor=-1", http.StatusBadRequest},
		{"audit?since=yesterday", http.StatusBadRequest},
		{"audit?sub=" + long, http.StatusBadRequest},
		{"follow?kind=sub&value=" + long, http.StatusBadRequest},
		{"keys?owner=" + long, http.StatusBadRequest},
		{"nope", http.StatusNotFound},
		{"static/nope.js", http.StatusNotFound},
	}
	for _, tt := range tests {
		if r := do(t, c, http.MethodGet, f.srv.URL+Prefix+tt.page, nil); r.status != tt.want {
			t.Errorf("%.80s: got %d; want %d: %.300s", tt.page, r.status, tt.want, r.body)
		}
	}
	for name, form := range map[string]url.Values{
		"no reason":  {"kind": {"sub"}, "value": {"x"}},
		"no value":   {"kind": {"sub"}, "reason": {"r"}},
		"bad kind":   {"kind": {"email"}, "value": {"x"}, "reason": {"r"}},
		"long value": {"kind": {"sub"}, "value": {long}, "reason": {"r"}},
		"bad issuer": {"kind": {"sub"}, "value": {"x"}, "reason": {"r"}, "issuer": {"https://evil"}},
	} {
		form.Set("csrf", csrf)
		if r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"revoke", form); r.status != http.StatusBadRequest {
			t.Errorf("revoke, %s: got %d; want 400: %.300s", name, r.status, r.body)
		}
	}
	if f.store.Len() != 0 {
		t.Errorf("%d entries after bad revocations; want none", f.store.Len())
	}
	big := url.Values{"csrf": {csrf}, "value": {strings.Repeat("v", maxForm)}}
	if r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"revoke", big); r.status != http.StatusBadRequest {
		t.Errorf("oversized form: got %d; want 400", r.status)
	}
}

func TestKeys(t *testing.T) {
	f := newFixture(t)
	c := f.browser(t)
	csrf := f.signIn(t, c, "keys")
	r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"keys", url.Values{"csrf": {csrf}, "owner": {"batch"}, "scopes": {"read write"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, `id="new-key">oag_`) {
		t.Fatalf("create: got %d %s", r.status, r.body)
	}
	id := regexp.MustCompile(`name="id" value="([^"]+)"`).FindStringSubmatch(r.body)
	if id == nil {
		t.Fatalf("no key listed: %s", r.body)
	}
	r = do(t, c, http.MethodPost, f.srv.URL+Prefix+"keys/rotate", url.Values{"csrf": {csrf}, "id": {id[1]}, "grace": {"1m"}})
	if r.status != http.StatusOK || !strings.Contains(r.body, `id="new-key">oag_`) {
		t.Errorf("rotate: got %d %s", r.status, r.body)
	}
	r = do(t, c, http.MethodPost, f.srv.URL+Prefix+"keys/revoke", url.Values{"csrf": {csrf}, "id": {id[1]}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "revoked") {
		t.Errorf("revoke: got %d %s", r.status, r.body)
	}
	for _, bad := range []string{"", "../x", "a/b"} {
		if r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"keys/revoke", url.Values{"csrf": {csrf}, "id": {bad}}); r.status != http.StatusBadRequest {
			t.Errorf("revoke id %q: got %d; want 400", bad, r.status)
		}
	}
	if r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"keys/revoke", url.Values{"csrf": {csrf}, "id": {"nosuchkey"}}); r.status != http.StatusNotFound {
		t.Errorf("unknown id: got %d; want 404", r.status)
	}
}

// TestVerifyBrokenChain: the verify action names the first broken record
// of a log edited on disk.
func TestVerifyBrokenChain(t *testing.T) {
	f := newFixture(t)
	c := f.browser(t)
	csrf := f.signIn(t, c, "audit")
	for _, sub := range []string{"alice", "bob", "carol"} {
		r := audit.RecordOf(audit.EventRevocation, cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: sub, RevokedAt: t0, Initiator: "admin:all"})
		if err := f.audit.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(f.audit.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.audit.Path(), []byte(strings.Replace(string(b), `"bob"`, `"eve"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r := do(t, c, http.MethodPost, f.srv.URL+Prefix+"audit/verify", url.Values{"csrf": {csrf}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "Broken: the first broken record is") || !strings.Contains(r.body, "audit.jsonl:2: edited") {
		t.Errorf("verify of an edited log: got %d %s; want the first broken record: line 2, edited", r.status, r.body)
	}
}
