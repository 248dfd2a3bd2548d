package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// legacyApp is an app that keeps its own session in a JSESSIONID cookie
// and knows nothing of OIDC: it trusts the user the gateway names on the
// first request, then only its cookie.
type legacyApp struct {
	srv      *httptest.Server
	mu       sync.Mutex
	sessions map[string]string // JSESSIONID -> user
	logouts  []string          // JSESSIONIDs its logout URL was called with
	hits     map[string]int    // requests served, by user
}

// appView is what the app answers on /app.
type appView struct {
	User       string `json:"user"`
	AppSession string `json:"app_session"`
	New        bool   `json:"new"`
	SID        string `json:"sid"`
	SawCookie  string `json:"saw_cookie"`
}

func newLegacyApp(t *testing.T) *legacyApp {
	t.Helper()
	a := &legacyApp{sessions: map[string]string{}, hits: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /app", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		v := appView{SID: r.Header.Get("X-Sid")}
		if c, err := r.Cookie("JSESSIONID"); err == nil {
			v.SawCookie = c.Value
			v.User = a.sessions[c.Value]
			v.AppSession = c.Value
		}
		if v.User == "" {
			v.User, v.New = r.Header.Get("X-User"), true
			b := make([]byte, 12)
			_, _ = rand.Read(b)
			v.AppSession = hex.EncodeToString(b)
			a.sessions[v.AppSession] = v.User
			http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: v.AppSession, Path: "/", HttpOnly: true})
		}
		a.hits[v.User]++
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if c, err := r.Cookie("JSESSIONID"); err == nil {
			delete(a.sessions, c.Value)
			a.logouts = append(a.logouts, c.Value)
		}
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *legacyApp) loggedOut(session string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.logouts, session)
}

func (a *legacyApp) hitsOf(user string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits[user]
}

// browser is a cookie jar and two clients on it: one that follows
// redirects (a user clicking through the login) and one that does not
// (to see the gateway's own answer). It names its user to the login app.
type browser struct {
	user   string
	jar    *cookiejar.Jar
	follow *http.Client
	single *http.Client
}

type userTransport struct {
	user string
	rt   http.RoundTripper
}

func (u userTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(userHeader, u.user)
	return u.rt.RoundTrip(r)
}

func newBrowser(t *testing.T, user string) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := userTransport{user: user, rt: newClient(t).Transport}
	return &browser{
		user:   user,
		jar:    jar,
		follow: &http.Client{Jar: jar, Transport: tr, Timeout: 20 * time.Second},
		single: &http.Client{Jar: jar, Transport: tr, Timeout: 20 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// open GETs u through the whole login if needed and decodes the app's
// answer.
func (b *browser) open(t *testing.T, u string) appView {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := b.follow.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", b.user, u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v appView
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil {
		t.Fatalf("%s: GET %s: got %d %s; want the app's 200", b.user, u, resp.StatusCode, body)
	}
	return v
}

// peek GETs u without following redirects and returns the status.
func (b *browser) peek(u string) (int, error) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := b.single.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// cookie returns the value of the jar's cookie name for u.
func (b *browser) cookie(u, name string) string {
	pu, _ := url.Parse(u)
	for _, c := range b.jar.Cookies(pu) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// bclWitness sits between Hydra and the gateway's back-channel logout
// endpoint: it forwards each logout token, and the moment the gateway has
// answered — before Hydra gets the answer — it asks the gateway with the
// logged-out browser's cookies. That request must already be refused.
type bclWitness struct {
	srv    *httptest.Server
	target string // the gateway's /oauth2/backchannel-logout
	mu     sync.Mutex
	check  *browser // whose request is tried right after the 200
	page   string
	tokens []string
	seen   chan bclSeen
}

type bclSeen struct {
	gatewayStatus int
	afterStatus   int // the browser's request right after the gateway's answer
	err           error
}

func newBCLWitness(t *testing.T) *bclWitness {
	w := &bclWitness{seen: make(chan bclSeen, 8)}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		tok := r.PostForm.Get("logout_token")
		w.mu.Lock()
		w.tokens = append(w.tokens, tok)
		check, page, target := w.check, w.page, w.target
		w.mu.Unlock()
		resp, err := http.PostForm(target, url.Values{"logout_token": {tok}})
		if err != nil {
			w.seen <- bclSeen{err: err}
			http.Error(rw, err.Error(), http.StatusBadGateway)
			return
		}
		resp.Body.Close()
		s := bclSeen{gatewayStatus: resp.StatusCode}
		if check != nil {
			s.afterStatus, s.err = check.peek(page)
		}
		w.seen <- s
		rw.WriteHeader(resp.StatusCode)
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// TestHydraBackchannelLogout is the product's reason to exist, end to end:
// users log in through the gateway at Ory Hydra, the legacy app keeps its
// own sessions, and when Hydra ends a session it sends a back-channel
// logout that kills the app session at once — already refused when the
// gateway answers Hydra, the app's logout URL called with its real cookie.
func TestHydraBackchannelLogout(t *testing.T) {
	requireBinary(t)
	h := startHydra(t, "jwt")
	app := newLegacyApp(t)
	witness := newBCLWitness(t)
	cfg := gatewayConfig{dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	var client hydraClient
	render := func(dataDir string, insecureNoExp bool) func(listen, internal string) string {
		return func(listen, internal string) string {
			public := "http://" + listen
			if client.ID == "" {
				client = h.createClient(t, map[string]any{
					"grant_types":                         []string{"authorization_code", "refresh_token"},
					"response_types":                      []string{"code"},
					"scope":                               "openid profile email",
					"redirect_uris":                       []string{public + "/oauth2/callback"},
					"post_logout_redirect_uris":           []string{public + "/"},
					"backchannel_logout_uri":              witness.srv.URL + "/bcl",
					"backchannel_logout_session_required": true,
					"token_endpoint_auth_method":          "client_secret_basic",
				})
				witness.mu.Lock()
				witness.target = public + "/oauth2/backchannel-logout"
				witness.mu.Unlock()
			}
			return fmt.Sprintf(`listen: %q
internal_listen: %q
public_url: %q
data_dir: %q
clock_skew: 2s
session:
  secret: "e2e-session-secret-0123456789abcdefghij"
  max_age: 1h
issuers:
  - issuer: %q
    client_id: %q
    client_secret: %q
    audiences: [api]
    access_token_types: [JWT]
    max_token_lifetime: 2h
    # Hydra's logout tokens have no exp (REAL-IDP.md).
    insecure_logout_token_without_exp: %t
routes:
  - path_prefix: /
    upstream: %q
    auth: browser
    app_session_cookies: [JSESSIONID]
    app_logout_url: %q
    headers: {X-User: sub, X-Sid: sid}
admin:
  tokens: [{name: e2e, token: "${E2E_ADMIN_TOKEN}"}]
`, listen, internal, public, dataDir, h.issuer, client.ID, client.Secret, insecureNoExp, app.srv.URL, app.srv.URL+"/logout")
		}
	}
	gw := startGatewayYAML(t, cfg, render(cfg.dataDir, true))
	page := gw.public + "/app"

	// Log in: the app sees alice, starts its own session; the browser
	// holds only a sealed form of the app's cookie.
	alice := newBrowser(t, "alice")
	a1 := alice.open(t, page)
	if a1.User != "alice" || !a1.New || a1.SID == "" {
		t.Fatalf("alice's first visit: got %+v; want a new app session for alice with a sid", a1)
	}
	if sealed := alice.cookie(page, "JSESSIONID"); sealed == "" || sealed == a1.AppSession || strings.Contains(sealed, a1.AppSession) {
		t.Fatalf("browser's JSESSIONID: got %q; want a sealed value that is not the app's %q", sealed, a1.AppSession)
	}
	if again := alice.open(t, page); again.AppSession != a1.AppSession || again.New {
		t.Fatalf("alice's second visit: got %+v; want app session %s again", again, a1.AppSession)
	}
	oldSealed := alice.cookie(page, "JSESSIONID")
	bob := newBrowser(t, "bob")
	b1 := bob.open(t, page)

	// Hydra ends alice's session and sends the back-channel logout itself.
	witness.mu.Lock()
	witness.check, witness.page = alice, page
	witness.mu.Unlock()
	aliceHits := app.hitsOf("alice")
	h.logoutSession(t, a1.SID)
	var seen bclSeen
	select {
	case seen = <-witness.seen:
	case <-time.After(20 * time.Second):
		t.Fatal("Hydra sent no back-channel logout within 20s")
	}
	if seen.err != nil || seen.gatewayStatus != http.StatusOK {
		t.Fatalf("back-channel logout: gateway answered %d (%v); want 200", seen.gatewayStatus, seen.err)
	}
	if seen.afterStatus == http.StatusOK {
		t.Fatalf("alice's request right after the gateway's 200: got 200; want refused (a redirect to log in)")
	}
	if got := app.hitsOf("alice"); got != aliceHits {
		t.Errorf("app requests as alice after the logout: got %d more; want 0", got-aliceHits)
	}
	if !waitFor(10*time.Second, func() bool { return app.loggedOut(a1.AppSession) }) {
		t.Errorf("the app's logout URL was not called with alice's real cookie")
	}

	// Bob is untouched.
	if v := bob.open(t, page); v.AppSession != b1.AppSession || v.User != "bob" {
		t.Errorf("bob after alice's logout: got %+v; want his session %s", v, b1.AppSession)
	}

	// Alice logs in again: a new app session, never the old one, even when
	// the old sealed cookie is put back.
	a2 := alice.open(t, page)
	if a2.User != "alice" || a2.AppSession == a1.AppSession || a2.SawCookie == a1.AppSession {
		t.Errorf("alice after logging in again: got %+v; want a new app session", a2)
	}
	pu, _ := url.Parse(page)
	alice.jar.SetCookies(pu, []*http.Cookie{{Name: "JSESSIONID", Value: oldSealed, Path: "/"}})
	if a3 := alice.open(t, page); a3.SawCookie == a1.AppSession || a3.AppSession == a1.AppSession {
		t.Errorf("old sealed cookie under the new session: the app got %q; want it stripped", a3.SawCookie)
	}

	// A sub-only logout ends every session of that user (Keycloak's "log
	// out all sessions"): bob on two browsers, both gone.
	bob2 := newBrowser(t, "bob")
	b2 := bob2.open(t, page)
	if r := gw.revoke(t, map[string]string{"sub": "bob", "issuer": h.issuer}); r.status != http.StatusCreated {
		t.Fatalf("revoke sub bob: got %d %s", r.status, r.body)
	}
	for i, br := range []*browser{bob, bob2} {
		if status, err := br.peek(page); err != nil || status == http.StatusOK {
			t.Errorf("bob's browser %d after revoking sub: got %d %v; want refused", i+1, status, err)
		}
	}
	for _, s := range []string{b1.AppSession, b2.AppSession} {
		if !waitFor(10*time.Second, func() bool { return app.loggedOut(s) }) {
			t.Errorf("app logout not called for bob's app session %s", s)
		}
	}

	// The same logout token, without exp, is refused by a gateway whose
	// issuer does not allow it (strict by default).
	witness.mu.Lock()
	tok := witness.tokens[0]
	witness.mu.Unlock()
	strictDir := t.TempDir()
	strict := startGatewayYAML(t, gatewayConfig{dataDir: strictDir, adminToken: cfg.adminToken}, render(strictDir, false))
	r := do(t, strict.client, http.MethodPost, strict.public+"/oauth2/backchannel-logout", "",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"invalid_request"`) {
		t.Errorf("Hydra's exp-less logout token at a strict gateway: got %d %s; want 400 invalid_request", r.status, r.body)
	}
	// The answer does not say why; the log does.
	if !waitFor(5*time.Second, func() bool { return strings.Contains(strict.stderr.String(), "exp missing") }) {
		t.Errorf("strict gateway's log does not name the missing exp:\n%s", strict.stderr.String())
	}
}
