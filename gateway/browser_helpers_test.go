package gateway

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/introspect/introspecttest"
)

const (
	testClientID     = "gateway"
	testClientSecret = "client secret: with / and %"
	testSecret       = "0123456789abcdef0123456789abcdef-current"
	testOldSecret    = "0123456789abcdef0123456789abcdef-retired"
)

// user is who the test IdP logs in next.
type user struct {
	Sub, SID, Email string
	// OID, when set, is the ID token's oid (Entra's user object id).
	OID string
	// EmailVerified is the ID token's email_verified; nil means true.
	EmailVerified any
}

// authRequest is what the IdP's authorization endpoint received.
type authRequest struct {
	state, nonce, challenge, redirectURI string
}

// oidcIdP is an OpenID provider on loopback: discovery, JWKS (a real RSA
// key), an authorization endpoint that logs in the configured user at
// once, a token endpoint that checks client_secret_basic, the code, the
// redirect_uri and the PKCE verifier, and an end_session endpoint.
type oidcIdP struct {
	*httptest.Server
	key   *rsa.PrivateKey
	clock *clocktest.Clock

	mu       sync.Mutex
	user     user
	codes    map[string]authRequest
	lastAuth authRequest
	// nonce, when set, replaces the nonce the ID token carries.
	nonce       string
	noEndSess   bool
	tokenCalls  atomic.Int64
	tokenErrors atomic.Int64
}

func newOIDCIdP(t testing.TB, clk *clocktest.Clock) *oidcIdP {
	t.Helper()
	p := &oidcIdP{key: introspecttest.RSA("rsa1"), clock: clk, codes: map[string]authRequest{}, user: user{Sub: "alice", SID: "sid-1", Email: "alice@example.com"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		doc := map[string]any{
			"issuer": p.URL, "jwks_uri": p.URL + "/jwks",
			"authorization_endpoint": p.URL + "/authorize", "token_endpoint": p.URL + "/token",
			"authorization_response_iss_parameter_supported": true,
		}
		p.mu.Lock()
		if !p.noEndSess {
			doc["end_session_endpoint"] = p.URL + "/logout?x=1"
		}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		pub := p.key.PublicKey
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("response_type") != "code" || q.Get("client_id") != testClientID || q.Get("code_challenge_method") != "S256" ||
			!strings.Contains(" "+q.Get("scope")+" ", " openid ") {
			http.Error(w, "bad authorization request", http.StatusBadRequest)
			return
		}
		ar := authRequest{state: q.Get("state"), nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirectURI: q.Get("redirect_uri")}
		code := randomToken()
		p.mu.Lock()
		p.codes[code] = ar
		p.lastAuth = ar
		p.mu.Unlock()
		http.Redirect(w, r, ar.redirectURI+"?"+url.Values{"code": {code}, "state": {ar.state}, "iss": {p.URL}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		p.tokenCalls.Add(1)
		fail := func(msg string) {
			p.tokenErrors.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant", "error_description": msg})
		}
		id, secret, ok := r.BasicAuth()
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if !ok || id != testClientID || secret != testClientSecret {
			fail("client authentication")
			return
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "authorization_code" {
			fail("grant_type")
			return
		}
		p.mu.Lock()
		ar, ok := p.codes[r.PostForm.Get("code")]
		delete(p.codes, r.PostForm.Get("code"))
		u, nonceOverride := p.user, p.nonce
		p.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		switch {
		case !ok:
			fail("unknown code")
			return
		case r.PostForm.Get("redirect_uri") != ar.redirectURI:
			fail("redirect_uri")
			return
		case base64.RawURLEncoding.EncodeToString(sum[:]) != ar.challenge:
			// RFC 7636 §4.6.
			fail("code_verifier")
			return
		}
		nonce := ar.nonce
		if nonceOverride != "" {
			nonce = nonceOverride
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": "opaque", "token_type": "Bearer", "expires_in": 300,
			"id_token": p.idToken(t, u, nonce),
		})
	})
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

// sign returns a compact RS256 JWS of claims.
func (p *oidcIdP) sign(t testing.TB, typ string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"k1","typ":"`+typ+`"}`)) +
		"." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, p.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func (p *oidcIdP) idToken(t testing.TB, u user, nonce string) string {
	now := p.clock.Now()
	c := map[string]any{
		"iss": p.URL, "aud": testClientID, "sub": u.Sub, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"nonce": nonce, "name": "Test " + u.Sub,
	}
	if u.SID != "" {
		c["sid"] = u.SID
	}
	if u.OID != "" {
		c["oid"] = u.OID
	}
	if u.Email != "" {
		c["email"] = u.Email
		c["email_verified"] = true
		if u.EmailVerified != nil {
			c["email_verified"] = u.EmailVerified
		}
	}
	return p.sign(t, "JWT", c)
}

// accessToken mints an RFC 9068 access token for the either routes.
func (p *oidcIdP) accessToken(t testing.TB, sub string) string {
	now := p.clock.Now()
	return p.sign(t, "at+jwt", map[string]any{
		"iss": p.URL, "aud": "api", "sub": sub, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"jti": rand.Text(), "client_id": "client-1",
	})
}

func (p *oidcIdP) setUser(u user) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = u
}

// app is the upstream legacy app: /app/login sets its own session cookie
// JSESSIONID to a fresh real value; every other path echoes the request;
// POST /logout records the app logout calls and ends the session (unless
// ignoreLogout); /whoami answers 200 to a live session, else 401.
type app struct {
	*upstream
	mu           sync.Mutex
	sessions     []string        // real JSESSIONID values handed out
	ended        map[string]bool // real values whose session ended
	ignoreLogout atomic.Bool     // the logout endpoint does nothing
	logouts      chan string     // Cookie fields of logout calls
	fail         atomic.Int64    // answer 500 to this many logout calls first
	calls        atomic.Int64    // logout calls received
}

func newApp(t testing.TB) *app {
	t.Helper()
	a := &app{upstream: &upstream{}, logouts: make(chan string, 16), ended: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		switch r.URL.Path {
		case "/logout":
			a.calls.Add(1)
			if a.fail.Add(-1) >= 0 {
				http.Error(w, "busy", http.StatusInternalServerError)
				return
			}
			if c, err := r.Cookie("JSESSIONID"); err == nil && !a.ignoreLogout.Load() {
				a.mu.Lock()
				a.ended[c.Value] = true
				a.mu.Unlock()
			}
			a.logouts <- r.Header.Get("Cookie")
			return
		case "/whoami":
			a.mu.Lock()
			c, err := r.Cookie("JSESSIONID")
			live := err == nil && slices.Contains(a.sessions, c.Value) && !a.ended[c.Value]
			a.mu.Unlock()
			if !live {
				http.Error(w, "who are you?", http.StatusUnauthorized)
				return
			}
		case "/app/hints":
			w.Header().Set("Set-Cookie", "JSESSIONID=REAL-hint; Path=/")
			w.Header().Set("Link", "</x.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Set-Cookie")
		case "/app/login":
			v := "REAL-" + randomToken()
			a.mu.Lock()
			a.sessions = append(a.sessions, v)
			a.mu.Unlock()
			http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: v, Path: "/app", SameSite: http.SameSiteStrictMode})
			http.SetCookie(w, &http.Cookie{Name: "theme", Value: "dark", Path: "/"})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{URI: r.RequestURI, Host: r.Host, Header: r.Header})
	}))
	t.Cleanup(a.Close)
	return a
}

// lastSession is the latest real JSESSIONID the app handed out.
func (a *app) lastSession() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sessions) == 0 {
		return ""
	}
	return a.sessions[len(a.sessions)-1]
}

// waitLogout returns the Cookie field of the next app logout call.
func (a *app) waitLogout(t testing.TB) string {
	t.Helper()
	select {
	case c := <-a.logouts:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no app logout call")
		return ""
	}
}

// noLogout asserts no app logout call is pending after the gateway's
// queue drained.
func (a *app) noLogout(t testing.TB, e *env) {
	t.Helper()
	e.gw.Close()
	select {
	case c := <-a.logouts:
		t.Errorf("unexpected app logout call with %q", c)
	default:
	}
}

// env is a gateway with browser routes in front of app, logging in at
// idp, with a real bbolt-backed store, all on a shared fake clock.
type env struct {
	clock *clocktest.Clock
	idp   *oidcIdP
	app   *app
	store *cache.Store
	v     *introspect.Verifier
	gw    *Gateway
	srv   *httptest.Server
	reg   *prometheus.Registry
	logs  *syncBuffer
	cfg   Config
}

const testSkew = 30 * time.Second

func newEnv(t testing.TB, opt func(*Config)) *env {
	t.Helper()
	e := &env{clock: clocktest.NewRealTimers(testNow), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	e.idp = newOIDCIdP(t, e.clock)
	e.app = newApp(t)
	var err error
	e.store, err = cache.Open(cache.Config{Path: filepath.Join(t.TempDir(), "revocations.db"), Clock: e.clock, ClockSkew: testSkew})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.store.Close() })
	e.v, err = introspect.New(introspect.Config{
		Issuers: []introspect.Issuer{{
			Issuer: e.idp.URL, Audiences: []string{"api"}, ClientID: testClientID,
			ClientSecret: testClientSecret, AccessTokenAlgs: []string{"RS256"},
		}},
		Revocations: e.store,
		HTTPClient:  e.idp.Client(),
		Clock:       e.clock,
		ClockSkew:   testSkew,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.v.Close)
	var handler atomic.Pointer[Gateway]
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.Load().ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	e.cfg = Config{
		PublicURL: e.srv.URL,
		Session:   SessionConfig{Secret: testSecret, Issuer: e.idp.URL, MaxAge: 8 * time.Hour},
		Login:     Login{ClientID: testClientID, ClientSecret: testClientSecret},
		ClockSkew: testSkew,
		AppLogout: AppLogoutConfig{Backoff: time.Millisecond, DrainTimeout: 5 * time.Second},
		Routes: []Route{
			{PathPrefix: "/app", Upstream: e.app.URL, Auth: AuthBrowser,
				AppSessionCookies: []string{"JSESSIONID"}, AppLogoutURL: e.app.URL + "/logout",
				Headers: map[string]string{"X-User": "sub", "X-Email": "email", "X-Sid": "sid", "X-Iss": "iss"}},
			{PathPrefix: "/api", Upstream: e.app.URL, Auth: AuthEither, Headers: map[string]string{"X-User": "sub"}},
			{PathPrefix: "/public", Upstream: e.app.URL, Auth: AuthNone},
		},
		Verifier:   e.v,
		IDTokens:   e.v,
		Sessions:   e.store,
		LiveSIDs:   e.store,
		HTTPClient: e.idp.Client(),
		Clock:      e.clock,
		Metrics:    e.reg,
		Logger:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if opt != nil {
		opt(&e.cfg)
	}
	e.gw, err = New(e.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	run(t, e.gw)
	handler.Store(e.gw)
	return e
}

// browser is a user agent: a cookie jar, redirects followed by hand.
type browser struct {
	t      testing.TB
	client *http.Client
	jar    *cookiejar.Jar
}

func (e *env) browser(t testing.TB) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := e.srv.Client()
	return &browser{t: t, jar: jar, client: &http.Client{
		Transport:     c.Transport,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) get(target string, header http.Header) rawResponse {
	b.t.Helper()
	return do(b.t, b.client, http.MethodGet, target, header)
}

// login navigates to path, follows the login through the IdP and returns
// the final response (at path again).
func (b *browser) login(e *env, path string) rawResponse {
	b.t.Helper()
	res := b.get(e.srv.URL+path, nil)
	if res.StatusCode != http.StatusFound || !strings.HasPrefix(res.Header.Get("Location"), e.idp.URL+"/authorize?") {
		b.t.Fatalf("GET %s: got %d to %q; want 302 to the IdP", path, res.StatusCode, res.Header.Get("Location"))
	}
	res = b.get(res.Header.Get("Location"), nil)
	if res.StatusCode != http.StatusFound {
		b.t.Fatalf("authorize: got %d (%s)", res.StatusCode, res.body)
	}
	res = b.get(res.Header.Get("Location"), nil)
	if res.StatusCode != http.StatusFound {
		b.t.Fatalf("callback: got %d (%s)", res.StatusCode, res.body)
	}
	if got := res.Header.Get("Location"); got != path {
		b.t.Fatalf("callback redirect: got %q; want %q", got, path)
	}
	return b.get(e.srv.URL+path, nil)
}

// cookie returns the jar's value of name for the gateway.
func (b *browser) cookie(e *env, path, name string) string {
	u, _ := url.Parse(e.srv.URL + path)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setCookie(e *env, c *http.Cookie) {
	u, _ := url.Parse(e.srv.URL + "/")
	b.jar.SetCookies(u, []*http.Cookie{c})
}

// revoke writes e to the store, as the logout package or the admin API
// would.
func (e *env) revoke(t testing.TB, entry cache.Entry) {
	t.Helper()
	if entry.RevokedAt.IsZero() {
		entry.RevokedAt = e.clock.Now()
	}
	if entry.ExpiresAt.IsZero() {
		entry.ExpiresAt = entry.RevokedAt.Add(24 * time.Hour)
	}
	if _, err := e.store.Revoke(context.Background(), entry); err != nil {
		t.Fatal(err)
	}
}
