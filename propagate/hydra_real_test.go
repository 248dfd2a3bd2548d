package propagate_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/propagate"
)

// The connector is checked against a real Ory Hydra v2.3.0 (REAL-IDP.md),
// built by tools/hydra/build.sh like the e2e tests of cmd/oidcgate. The
// build needs a Go toolchain and the module proxy (or a warm cache): it
// never skips, the point is interop with an IdP nobody here wrote.

var (
	hydraOnce sync.Once
	hydraBin  string
	hydraErr  error
)

func hydraBinary(t *testing.T) string {
	t.Helper()
	hydraOnce.Do(func() {
		script, err := filepath.Abs(filepath.Join("..", "tools", "hydra", "build.sh"))
		if err != nil {
			hydraErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "bash", script)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			hydraErr = fmt.Errorf("building Ory Hydra with %s: %v\n%s", script, err, stderr.String())
			return
		}
		hydraBin = strings.TrimSpace(string(out))
	})
	if hydraErr != nil {
		t.Fatalf("hydra: %v", hydraErr)
	}
	return hydraBin
}

// realHydra is `hydra serve all` with an in-memory database on loopback,
// and the login/consent/logout app it delegates to, which logs in whoever
// the browser names in the X-Test-User header and remembers both.
type realHydra struct {
	public, admin string
	http          *http.Client
	bcl           chan string // logout tokens received by the client's back-channel logout URI
	bclURL        string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func startRealHydra(t *testing.T) *realHydra {
	t.Helper()
	bin := hydraBinary(t)
	pub, adm := freeAddr(t), freeAddr(t)
	for pub == adm {
		adm = freeAddr(t)
	}
	h := &realHydra{public: "http://" + pub, admin: "http://" + adm, http: &http.Client{Timeout: 10 * time.Second}, bcl: make(chan string, 16)}
	ui := httptest.NewServer(http.HandlerFunc(h.serveUI(t)))
	t.Cleanup(ui.Close)
	bcl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		select {
		case h.bcl <- r.PostForm.Get("logout_token"):
		default:
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(bcl.Close)
	h.bclURL = bcl.URL
	pubHost, pubPort, _ := strings.Cut(pub, ":")
	admHost, admPort, _ := strings.Cut(adm, ":")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = []string{
		"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "DSN=memory",
		"SECRETS_SYSTEM=" + randomHex(t, 32),
		"URLS_SELF_ISSUER=" + h.public,
		"URLS_LOGIN=" + ui.URL + "/login", "URLS_CONSENT=" + ui.URL + "/consent", "URLS_LOGOUT=" + ui.URL + "/logout",
		"SERVE_PUBLIC_HOST=" + pubHost, "SERVE_PUBLIC_PORT=" + pubPort,
		"SERVE_ADMIN_HOST=" + admHost, "SERVE_ADMIN_PORT=" + admPort,
		"LOG_LEVEL=warn",
	}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("hydra: start: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("hydra output:\n%s", out.String())
		}
	})
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := h.http.Get(h.admin + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case <-done:
			t.Fatalf("hydra exited during start:\n%s", out.String())
		case <-deadline.C:
			t.Fatalf("hydra: not ready after 60s:\n%s", out.String())
		case <-tick.C:
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (h *realHydra) serveUI(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var body map[string]any
		flow := strings.TrimPrefix(r.URL.Path, "/")
		switch flow {
		case "login":
			body = map[string]any{"subject": r.Header.Get("X-Test-User"), "remember": true, "remember_for": 3600}
		case "consent":
			var req struct {
				Scope []string `json:"requested_scope"`
			}
			if err := h.adminJSON(http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(q.Get("consent_challenge")), nil, &req); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			body = map[string]any{"grant_scope": req.Scope, "remember": true, "remember_for": 3600}
		case "logout":
		default:
			http.NotFound(w, r)
			return
		}
		var resp struct {
			RedirectTo string `json:"redirect_to"`
		}
		path := fmt.Sprintf("/admin/oauth2/auth/requests/%s/accept?%s_challenge=%s", flow, flow, url.QueryEscape(q.Get(flow+"_challenge")))
		if err := h.adminJSON(http.MethodPut, path, body, &resp); err != nil {
			t.Errorf("hydra ui %s: %v", flow, err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, resp.RedirectTo, http.StatusFound)
	}
}

func (h *realHydra) adminJSON(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, h.admin+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// form posts to the public token endpoint as client id:secret.
func (h *realHydra) token(t *testing.T, id, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.public+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("hydra token: %v", err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m)
	return resp.StatusCode, m
}

// browser is a user agent with its own cookie jar at Hydra.
type browser struct {
	user string
	c    *http.Client
}

func newBrowser(t *testing.T, user string) *browser {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &browser{user: user, c: &http.Client{
		Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// authorize runs an authorization request through the login and consent
// app and returns the query of the final redirect to redirectURI (code,
// or error).
func (b *browser) authorize(t *testing.T, h *realHydra, clientID, redirectURI string, extra url.Values) url.Values {
	t.Helper()
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "scope": {"openid offline_access"},
		"redirect_uri": {redirectURI}, "state": {randomHex(t, 8)}, "nonce": {randomHex(t, 8)}}
	for k, v := range extra {
		q[k] = v
	}
	next := h.public + "/oauth2/auth?" + q.Encode()
	for range 20 {
		if strings.HasPrefix(next, redirectURI) {
			u, err := url.Parse(next)
			if err != nil {
				t.Fatal(err)
			}
			return u.Query()
		}
		req, _ := http.NewRequest(http.MethodGet, next, nil)
		req.Header.Set("X-Test-User", b.user)
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatalf("browser: %v", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("browser: %s answered %d without a redirect: %s", next, resp.StatusCode, body)
		}
		next = loc.String()
	}
	t.Fatal("browser: too many redirects")
	return nil
}

// claims decodes a JWT's payload without verifying it (the test trusts
// the Hydra it started).
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHydraConnectorAgainstRealHydra(t *testing.T) {
	h := startRealHydra(t)
	const redirectURI = "http://127.0.0.1:1/cb"
	var app struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := h.adminJSON(http.MethodPost, "/admin/clients", map[string]any{
		"grant_types":                         []string{"authorization_code", "refresh_token", "client_credentials"},
		"response_types":                      []string{"code"},
		"scope":                               "openid offline_access",
		"redirect_uris":                       []string{redirectURI},
		"token_endpoint_auth_method":          "client_secret_basic",
		"backchannel_logout_uri":              h.bclURL,
		"backchannel_logout_session_required": true,
	}, &app); err != nil {
		t.Fatal(err)
	}
	auth, err := propagate.New(propagate.Config{Type: "hydra", URL: h.admin}, &http.Client{Timeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	// login signs user in through a browser and returns the refresh
	// token and the sid of the login session.
	login := func(user string) (*browser, string, string) {
		t.Helper()
		b := newBrowser(t, user)
		q := b.authorize(t, h, app.ID, redirectURI, nil)
		if q.Get("code") == "" {
			t.Fatalf("%s: authorization answered %v; want a code", user, q)
		}
		status, tok := h.token(t, app.ID, app.Secret, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {redirectURI}})
		rt, _ := tok["refresh_token"].(string)
		idt, _ := tok["id_token"].(string)
		if status != http.StatusOK || rt == "" || idt == "" {
			t.Fatalf("%s: code exchange: %d %v", user, status, tok)
		}
		sid, _ := claims(t, idt)["sid"].(string)
		if sid == "" {
			t.Fatalf("%s: ID token without sid", user)
		}
		// Silent login works while the SSO session lives.
		if q := b.authorize(t, h, app.ID, redirectURI, url.Values{"prompt": {"none"}}); q.Get("code") == "" {
			t.Fatalf("%s: prompt=none before revocation answered %v; want a code", user, q)
		}
		return b, rt, sid
	}
	refresh := func(rt string) (int, string) {
		status, tok := h.token(t, app.ID, app.Secret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		e, _ := tok["error"].(string)
		return status, e
	}

	t.Run("EndUser", func(t *testing.T) {
		b, rt, _ := login("bob")
		if err := auth.EndUser(ctx, "bob"); err != nil {
			t.Fatalf("EndUser = %v; want nil", err)
		}
		if status, e := refresh(rt); status != http.StatusBadRequest || e != "invalid_grant" {
			t.Errorf("refresh after EndUser = %d %q; want 400 invalid_grant", status, e)
		}
		if q := b.authorize(t, h, app.ID, redirectURI, url.Values{"prompt": {"none"}}); q.Get("error") != "login_required" {
			t.Errorf("prompt=none after EndUser = %v; want error=login_required", q)
		}
		// Idempotent, and an unknown subject is no error at Hydra.
		if err := auth.EndUser(ctx, "bob"); err != nil {
			t.Errorf("EndUser again = %v; want nil", err)
		}
		if err := auth.EndUser(ctx, "nobody-"+randomHex(t, 4)); err != nil {
			t.Errorf("EndUser(unknown) = %v; want nil", err)
		}
	})

	t.Run("EndSession", func(t *testing.T) {
		b, _, sid := login("alice")
		for len(h.bcl) > 0 {
			<-h.bcl
		}
		if err := auth.EndSession(ctx, sid); err != nil {
			t.Fatalf("EndSession = %v; want nil", err)
		}
		if q := b.authorize(t, h, app.ID, redirectURI, url.Values{"prompt": {"none"}}); q.Get("error") != "login_required" {
			t.Errorf("prompt=none after EndSession = %v; want error=login_required", q)
		}
		// Hydra tells the client's back-channel logout URI about it: the
		// loop the engine must not close by sending it back.
		select {
		case lt := <-h.bcl:
			if got, _ := claims(t, lt)["sid"].(string); got != sid {
				t.Errorf("back-channel logout sid = %q; want %q", got, sid)
			}
		case <-time.After(10 * time.Second):
			t.Error("no back-channel logout from Hydra after EndSession")
		}
		if err := auth.EndSession(ctx, sid); err != nil {
			t.Errorf("EndSession again = %v; want nil", err)
		}
	})

	t.Run("RevokeClient", func(t *testing.T) {
		status, tok := h.token(t, app.ID, app.Secret, url.Values{"grant_type": {"client_credentials"}})
		at, _ := tok["access_token"].(string)
		if status != http.StatusOK || at == "" {
			t.Fatalf("client_credentials: %d %v", status, tok)
		}
		active := func() bool {
			req, _ := http.NewRequest(http.MethodPost, h.admin+"/admin/oauth2/introspect", strings.NewReader(url.Values{"token": {at}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := h.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r struct {
				Active bool `json:"active"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&r)
			return r.Active
		}
		if !active() {
			t.Fatal("client token inactive before RevokeClient")
		}
		if err := auth.RevokeClient(ctx, app.ID); err != nil {
			t.Fatalf("RevokeClient = %v; want nil", err)
		}
		if active() {
			t.Error("client token still active after RevokeClient")
		}
	})
}
