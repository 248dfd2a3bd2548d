package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/oidcgate/oidcgate/clock"
	"github.com/oidcgate/oidcgate/gateway"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/logout"
)

// Demo settings: everything runs on loopback, nothing leaves the machine.
const (
	demoClientID      = "demo-gateway"
	demoAppCookie     = "DEMOSESSION"
	demoAudience      = "demo-api"
	demoTokenLifetime = 10 * time.Minute
	demoPreferredPub  = "127.0.0.1:8080"
	demoPreferredInt  = "127.0.0.1:9091"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--listen ADDR] [--internal-listen ADDR]", stderr)
	pub := fs.String("listen", demoPreferredPub, "gateway `address` (a free port is used if it is taken)")
	intl := fs.String("internal-listen", demoPreferredInt, "admin/metrics `address` (a free port is used if it is taken)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dataDir, err := os.MkdirTemp("", "oidcgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)

	issuer, err := startDemoIssuer()
	if err != nil {
		return err
	}
	defer issuer.close()
	app, err := startDemoApp()
	if err != nil {
		return err
	}
	defer app.close()

	adminToken, err := randomHex(24)
	if err != nil {
		return err
	}
	sessionSecret, err := randomHex(24)
	if err != nil {
		return err
	}
	listen := freeAddr(*pub)
	// Issuer and gateway share this machine's clock: a small skew lets a
	// user logged out by subject log in again a second later.
	skew := time.Second
	cfg := &Config{
		ClockSkew:      &skew,
		PublicURL:      "http://" + listen,
		Listen:         listen,
		InternalListen: freeAddr(*intl),
		DataDir:        dataDir,
		Issuers: []introspect.Issuer{{
			Issuer:           issuer.url,
			Audiences:        []string{demoAudience},
			ClientID:         demoClientID,
			ClientSecret:     introspect.Secret(issuer.clientSecret),
			MaxTokenLifetime: time.Hour,
		}},
		Session: gateway.SessionConfig{Secret: introspect.Secret(sessionSecret)},
		Routes: []gateway.Route{
			{PathPrefix: "/public", Upstream: app.url, Auth: gateway.AuthNone},
			{PathPrefix: "/app", Upstream: app.url, Auth: gateway.AuthBrowser,
				AppSessionCookies: []string{demoAppCookie},
				AppLogoutURL:      app.url + "/logout",
				Headers:           map[string]string{"X-User": "sub"}},
			{PathPrefix: "/", Upstream: app.url, Auth: gateway.AuthBearer,
				RequiredScopes: []string{"read"},
				Headers:        map[string]string{"X-User": "sub", "X-Scope": "scope"}},
		},
		Admin: logout.AdminConfig{Tokens: []logout.AdminToken{{Name: "demo", Token: introspect.Secret(adminToken), Roles: slices.Clone(logout.Roles)}}},
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	gw, err := newGateway(cfg, newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return err
	}
	pubURL := cfg.PublicURL
	intURL := "http://" + gw.intLn.Addr().String()
	issuer.setBackchannel(pubURL + logout.BackchannelPath)
	fmt.Fprintf(stdout, `oidcgate demo is running (Ctrl-C stops it).

  gateway:      %[1]s   (routes: /public -> no auth, /app -> browser login, / -> bearer token with scope "read")
  admin API:    %[2]s
  console:      %[2]s/admin/ui/   (sign in with the admin token below)
  demo issuer:  %[3]s   (an OpenID provider: login, RS256 tokens with aud %[4]q, back-channel logout)
  demo app:     %[5]s   (a legacy app with its own session cookie %[8]s)
  data_dir:     %[6]s   (the revocation store; removed on exit)

In a browser, the story this gateway exists for:

  1. open %[1]s/app and log in as bob at the demo issuer
     the app starts its own session; your browser only ever holds it sealed
  2. curl -s -X POST -d sub=bob %[3]s/backchannel-logout   # the IdP logs bob out everywhere
  3. reload %[1]s/app: the gateway sends you to log in again, and the
     app's own session is gone (the gateway called the app's logout URL)

With bearer tokens, in another shell:

  export OIDCGATE_ADMIN_URL=%[2]s OIDCGATE_ADMIN_TOKEN=%[7]s
  TOKEN=$(curl -s -X POST -d sub=alice %[3]s/token)
  curl -i -H "Authorization: Bearer $TOKEN" %[1]s/hello      # 200: the app greets alice
  go run ./cmd/oidcgate revoke --sub alice --reason "offboarded"
  curl -i -H "Authorization: Bearer $TOKEN" %[1]s/hello      # 401: revoked, on every request from now on
  curl -s -H "Authorization: Bearer $OIDCGATE_ADMIN_TOKEN" %[2]s/admin/revocations

`, pubURL, intURL, issuer.url, demoAudience, app.url, dataDir, adminToken, demoAppCookie)
	return gw.run(ctx)
}

// freeAddr returns preferred if it can be bound now, else a free loopback
// port, so the demo starts even where 8080 is taken. It returns the address
// actually bound, so that a preferred port 0 becomes a concrete port (two
// "127.0.0.1:0" flags must not end up as one address).
func freeAddr(preferred string) string {
	if ln, err := net.Listen("tcp", preferred); err == nil {
		defer ln.Close()
		return ln.Addr().String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return preferred
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// demoIssuer is a minimal OpenID provider: discovery, JWKS, a login page
// with the authorization code flow (PKCE), a token endpoint that also
// mints an access token for any subject it is given, and a button for
// back-channel logout. It exists only for the demo and is never part of
// serve: it checks little beyond what the demo needs.
type demoIssuer struct {
	url          string
	clientSecret string
	key          jwk.Key
	srv          *http.Server
	done         chan struct{}
	client       *http.Client
	clk          clock.Clock

	mu          sync.Mutex
	codes       map[string]demoCode
	backchannel string // the gateway's back-channel logout URL
}

// demoCode is an issued authorization code.
type demoCode struct {
	sub, nonce, challenge, redirect string
	expires                         time.Time
}

func startDemoIssuer() (*demoIssuer, error) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	key, err := jwk.Import(raw)
	if err != nil {
		return nil, err
	}
	if err := key.Set(jwk.KeyIDKey, "demo-1"); err != nil {
		return nil, err
	}
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		return nil, err
	}
	if err := pub.Set(jwk.AlgorithmKey, jwa.RS256()); err != nil {
		return nil, err
	}
	if err := pub.Set(jwk.KeyUsageKey, "sig"); err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	secret, err := randomHex(24)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &demoIssuer{
		url: "http://" + ln.Addr().String(), clientSecret: secret, key: key, done: make(chan struct{}),
		client: &http.Client{Timeout: 10 * time.Second}, codes: map[string]demoCode{}, clk: clock.Real(),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                d.url,
			"jwks_uri":                              d.url + "/jwks",
			"authorization_endpoint":                d.url + "/authorize",
			"token_endpoint":                        d.url + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"backchannel_logout_supported":          true,
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, set) })
	mux.HandleFunc("GET /authorize", d.loginPage)
	mux.HandleFunc("POST /authorize", d.login)
	mux.HandleFunc("POST /token", d.token)
	mux.HandleFunc("POST /backchannel-logout", d.logout)
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(d.done)
		_ = d.srv.Serve(ln)
	}()
	return d, nil
}

func (d *demoIssuer) setBackchannel(u string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.backchannel = u
}

// loginPage is the IdP's login form; it posts back to the same URL.
func (d *demoIssuer) loginPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><title>demo issuer</title>
<h1>demo issuer: log in</h1>
<form method="post" action="%s"><label>user <input name="sub" value="bob"></label> <button>log in</button></form>
`, html.EscapeString(r.URL.RequestURI()))
}

// login "authenticates" whoever is named and redirects to the client with
// a code (RFC 6749 §4.1.2), only to the demo gateway's callback.
func (d *demoIssuer) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	sub := r.PostForm.Get("sub")
	redirect := q.Get("redirect_uri")
	if sub == "" || q.Get("client_id") != demoClientID || q.Get("code_challenge_method") != "S256" ||
		!strings.HasPrefix(redirect, "http://127.0.0.1:") || !strings.HasSuffix(redirect, "/oauth2/callback") {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	code, err := randomHex(16)
	if err != nil {
		http.Error(w, "no randomness", http.StatusInternalServerError)
		return
	}
	d.mu.Lock()
	for c, v := range d.codes {
		if d.clk.Now().After(v.expires) {
			delete(d.codes, c)
		}
	}
	d.codes[code] = demoCode{sub: sub, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: redirect, expires: d.clk.Now().Add(time.Minute)}
	d.mu.Unlock()
	back := url.Values{"code": {code}, "state": {q.Get("state")}, "iss": {d.url}}
	http.Redirect(w, r, redirect+"?"+back.Encode(), http.StatusFound)
}

// token is the token endpoint: the authorization code grant for the
// gateway, and, without grant_type, a bare access token for the subject
// in the form (so that TOKEN=$(curl ...) works in a shell).
func (d *demoIssuer) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.PostForm.Get("grant_type") == "authorization_code" {
		d.exchange(w, r)
		return
	}
	sub := cmp.Or(r.PostForm.Get("sub"), "alice")
	scope := cmp.Or(r.PostForm.Get("scope"), "read")
	signed, err := d.sign("at+jwt", sub, []string{demoAudience}, demoTokenLifetime, map[string]any{"client_id": "demo-client", "scope": scope})
	if err != nil {
		http.Error(w, "cannot sign token", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "%s\n", signed)
}

// exchange redeems a code (RFC 6749 §4.1.3, RFC 7636 §4.6) for an ID token
// and an access token.
func (d *demoIssuer) exchange(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != demoClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(d.clientSecret)) != 1 {
		w.WriteHeader(http.StatusUnauthorized)
		writeJSON(w, map[string]string{"error": "invalid_client"})
		return
	}
	code := r.PostForm.Get("code")
	d.mu.Lock()
	c, found := d.codes[code]
	delete(d.codes, code)
	d.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !found || d.clk.Now().After(c.expires) || c.redirect != r.PostForm.Get("redirect_uri") ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]string{"error": "invalid_grant"})
		return
	}
	sid, err := randomHex(12)
	if err != nil {
		http.Error(w, "no randomness", http.StatusInternalServerError)
		return
	}
	idToken, err := d.sign("JWT", c.sub, []string{demoClientID}, demoTokenLifetime, map[string]any{"nonce": c.nonce, "sid": sid, "name": c.sub})
	if err != nil {
		http.Error(w, "cannot sign token", http.StatusInternalServerError)
		return
	}
	access, err := d.sign("at+jwt", c.sub, []string{demoAudience}, demoTokenLifetime, map[string]any{"client_id": demoClientID, "scope": "read", "sid": sid})
	if err != nil {
		http.Error(w, "cannot sign token", http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]any{"access_token": access, "id_token": idToken, "token_type": "Bearer", "expires_in": int(demoTokenLifetime.Seconds())})
}

// logout sends the gateway an OpenID Connect Back-Channel Logout 1.0
// token for every session of the subject in the form (a sub-only token),
// and says what the gateway answered.
func (d *demoIssuer) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil || r.PostForm.Get("sub") == "" {
		http.Error(w, "want a form with sub", http.StatusBadRequest)
		return
	}
	tok, err := d.sign("logout+jwt", r.PostForm.Get("sub"), []string{demoClientID}, 2*time.Minute, map[string]any{
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	})
	if err != nil {
		http.Error(w, "cannot sign token", http.StatusInternalServerError)
		return
	}
	d.mu.Lock()
	target := d.backchannel
	d.mu.Unlock()
	resp, err := d.client.PostForm(target, url.Values{"logout_token": {tok}})
	if err != nil {
		http.Error(w, "back-channel logout failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "back-channel logout of %s sent to %s: gateway answered %s\n", r.PostForm.Get("sub"), target, resp.Status)
}

// sign makes a token of the demo issuer.
func (d *demoIssuer) sign(typ, sub string, aud []string, life time.Duration, extra map[string]any) (string, error) {
	jti, err := randomHex(16)
	if err != nil {
		return "", err
	}
	now := d.clk.Now()
	b := jwt.NewBuilder().Issuer(d.url).Subject(sub).Audience(aud).
		IssuedAt(now).NotBefore(now).Expiration(now.Add(life)).JwtID(jti)
	for k, v := range extra {
		b = b.Claim(k, v)
	}
	tok, err := b.Build()
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, typ); err != nil {
		return "", err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), d.key, jws.WithProtectedHeaders(hdr)))
	return string(signed), err
}

func (d *demoIssuer) close() {
	_ = d.srv.Close()
	<-d.done
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// demoApp is the legacy app behind the gateway: it trusts the identity
// headers the gateway sets, and under /app it keeps its own session in a
// cookie, as legacy apps do, with a logout URL that ends it.
type demoApp struct {
	url string
	srv *http.Server
	clk clock.Clock

	mu       sync.Mutex
	sessions map[string]demoAppSession
}

type demoAppSession struct {
	user  string
	since time.Time
}

func startDemoApp() (*demoApp, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &demoApp{url: "http://" + ln.Addr().String(), sessions: map[string]demoAppSession{}, clk: clock.Real()}
	mux := http.NewServeMux()
	mux.HandleFunc("/app/", a.serveApp)
	mux.HandleFunc("/app", a.serveApp)
	mux.HandleFunc("POST /logout", a.logout)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get("X-User")
		msg := "hello, anonymous visitor"
		if user != "" {
			msg = "hello, " + user
		}
		writeJSON(w, map[string]string{
			"app":     "demo legacy app",
			"message": msg,
			"path":    r.URL.Path,
			"scope":   r.Header.Get("X-Scope"),
			"via":     strings.Join(r.Header.Values("X-Forwarded-For"), ","),
		})
	})
	a.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: mux}
	go func() {
		if err := a.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "demo app:", err)
		}
	}()
	return a, nil
}

// serveApp shows the app's own session, starting one for the user the
// gateway names when the browser has none.
func (a *demoApp) serveApp(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	id, s, fresh := "", demoAppSession{}, false
	if c, err := r.Cookie(demoAppCookie); err == nil {
		id, s = c.Value, a.sessions[c.Value]
	}
	if s.user == "" {
		var err error
		if id, err = randomHex(8); err != nil {
			http.Error(w, "no randomness", http.StatusInternalServerError)
			return
		}
		s, fresh = demoAppSession{user: r.Header.Get("X-User"), since: a.clk.Now()}, true
		a.sessions[id] = s
		http.SetCookie(w, &http.Cookie{Name: demoAppCookie, Value: id, Path: "/app", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
	writeJSON(w, map[string]any{
		"app":         "demo legacy app",
		"message":     "hello, " + s.user,
		"app_session": id,
		"new_session": fresh,
		"since":       s.since.Format(time.RFC3339),
	})
}

// logout ends the app session named by the request's cookie; the gateway
// calls it when that user's gateway session is revoked.
func (a *demoApp) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(demoAppCookie); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
		fmt.Fprintf(os.Stderr, "demo app: session %s ended by the gateway\n", c.Value)
	}
	w.WriteHeader(http.StatusNoContent)
}

// close stops the demo app.
func (a *demoApp) close() { _ = a.srv.Close() }
