package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Ory Hydra v2.3.0 is the third-party OpenID provider of the interop tests
// (REAL-IDP.md). tools/hydra/build.sh builds it once into a cache outside
// the repository and prints its path; .ci/run calls it before the tests.

// hydraStartTimeout bounds Hydra's start (migrations of the in-memory
// database take a few seconds).
const hydraStartTimeout = 60 * time.Second

var (
	hydraBinOnce sync.Once
	hydraBinPath string
	hydraBinErr  error
)

// hydraBinary returns the Hydra binary, building it on first use. Without
// a Go toolchain or module proxy the build fails: the test then fails with
// the build's output (it never skips: the interop tests are the point).
func hydraBinary(t *testing.T) string {
	t.Helper()
	hydraBinOnce.Do(func() {
		script, err := filepath.Abs(filepath.Join("..", "..", "tools", "hydra", "build.sh"))
		if err != nil {
			hydraBinErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "bash", script)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			hydraBinErr = fmt.Errorf("building Ory Hydra with %s: %v\n%s", script, err, stderr.String())
			return
		}
		hydraBinPath = strings.TrimSpace(string(out))
	})
	if hydraBinErr != nil {
		t.Fatalf("hydra: %v", hydraBinErr)
	}
	return hydraBinPath
}

// hydra is a running `hydra serve all` on loopback with an in-memory
// database, plus the login, consent and logout app it delegates to: that
// app logs in whoever the browser names in its userHeader.
type hydra struct {
	issuer string // the public URL, also the issuer
	admin  string // the admin URL
	client *http.Client
}

// userHeader is how a test browser tells the login app who it is.
const userHeader = "X-E2E-User"

// startHydra starts Hydra with access tokens of the given strategy
// ("opaque" or "jwt") and stops it at t's end.
func startHydra(t *testing.T, accessTokens string) *hydra {
	t.Helper()
	bin := hydraBinary(t)
	public, admin := freeLoopbackAddr(t), freeLoopbackAddr(t)
	h := &hydra{issuer: "http://" + public, admin: "http://" + admin, client: newClient(t)}
	ui := httptest.NewServer(http.HandlerFunc(h.serveUI(t)))
	t.Cleanup(ui.Close)
	pubHost, pubPort, _ := strings.Cut(public, ":")
	admHost, admPort, _ := strings.Cut(admin, ":")
	env := []string{
		"HOME=" + t.TempDir(),
		"PATH=" + os.Getenv("PATH"),
		"DSN=memory",
		"SECRETS_SYSTEM=" + randHex(t, 32),
		"URLS_SELF_ISSUER=" + h.issuer,
		"URLS_LOGIN=" + ui.URL + "/login",
		"URLS_CONSENT=" + ui.URL + "/consent",
		"URLS_LOGOUT=" + ui.URL + "/logout",
		"SERVE_PUBLIC_HOST=" + pubHost,
		"SERVE_PUBLIC_PORT=" + pubPort,
		"SERVE_ADMIN_HOST=" + admHost,
		"SERVE_ADMIN_PORT=" + admPort,
		"STRATEGIES_ACCESS_TOKEN=" + accessTokens,
		"LOG_LEVEL=warn",
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = env
	var out syncBuffer
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
	ready := waitFor(hydraStartTimeout, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		r, err := send(h.client, http.MethodGet, h.admin+"/health/ready", "", nil, nil)
		return err == nil && r.status == http.StatusOK
	})
	select {
	case <-done:
		t.Fatalf("hydra exited during start:\n%s", out.String())
	default:
	}
	if !ready {
		t.Fatalf("hydra: not ready after %s:\n%s", hydraStartTimeout, out.String())
	}
	return h
}

// serveUI is the login, consent and logout app: it accepts every request
// through Hydra's admin API, logging in the user the browser names.
func (h *hydra) serveUI(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var (
			redirect string
			err      error
		)
		q := r.URL.Query()
		switch r.URL.Path {
		case "/login":
			user := r.Header.Get(userHeader)
			if user == "" {
				http.Error(w, "no "+userHeader, http.StatusBadRequest)
				return
			}
			redirect, err = h.accept(r.Context(), "login", q.Get("login_challenge"), map[string]any{
				"subject": user, "remember": true, "remember_for": 3600,
			})
		case "/consent":
			var req struct {
				Scope    []string `json:"requested_scope"`
				Audience []string `json:"requested_access_token_audience"`
				Subject  string   `json:"subject"`
			}
			if err = h.adminJSON(r.Context(), http.MethodGet, "/admin/oauth2/auth/requests/consent?consent_challenge="+url.QueryEscape(q.Get("consent_challenge")), nil, &req); err == nil {
				redirect, err = h.accept(r.Context(), "consent", q.Get("consent_challenge"), map[string]any{
					"grant_scope":                 req.Scope,
					"grant_access_token_audience": req.Audience,
					"session": map[string]any{"id_token": map[string]any{
						"email":          req.Subject + "@example.test",
						"email_verified": true,
					}},
				})
			}
		case "/logout":
			redirect, err = h.accept(r.Context(), "logout", q.Get("logout_challenge"), nil)
		default:
			http.NotFound(w, r)
			return
		}
		if err != nil {
			t.Errorf("hydra ui %s: %v", r.URL.Path, err)
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		http.Redirect(w, r, redirect, http.StatusFound)
	}
}

// accept accepts a login, consent or logout challenge and returns where
// Hydra sends the browser next.
func (h *hydra) accept(ctx context.Context, flow, challenge string, body map[string]any) (string, error) {
	var resp struct {
		RedirectTo string `json:"redirect_to"`
	}
	path := fmt.Sprintf("/admin/oauth2/auth/requests/%s/accept?%s_challenge=%s", flow, flow, url.QueryEscape(challenge))
	if err := h.adminJSON(ctx, http.MethodPut, path, body, &resp); err != nil {
		return "", err
	}
	if resp.RedirectTo == "" {
		return "", fmt.Errorf("%s accept: no redirect_to", flow)
	}
	return resp.RedirectTo, nil
}

// adminJSON calls Hydra's admin API with a JSON body (nil: none) and
// decodes a JSON answer into out (nil: ignored). A status ≥ 300 is an
// error carrying the body.
func (h *hydra) adminJSON(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.admin+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// hydraClient is an OAuth 2.0 client registered at Hydra.
type hydraClient struct {
	ID     string `json:"client_id"`
	Secret string `json:"client_secret"`
}

// createClient registers a client; spec holds the fields of Hydra's
// POST /admin/clients (grant_types, redirect_uris, ...).
func (h *hydra) createClient(t *testing.T, spec map[string]any) hydraClient {
	t.Helper()
	var c hydraClient
	if err := h.adminJSON(context.Background(), http.MethodPost, "/admin/clients", spec, &c); err != nil {
		t.Fatalf("hydra: create client: %v", err)
	}
	if c.ID == "" || c.Secret == "" {
		t.Fatalf("hydra: create client: got id %q and a secret of %d bytes; want both", c.ID, len(c.Secret))
	}
	return c
}

// clientCredentials gets an access token for c with the client
// credentials grant (client_secret_basic).
func (h *hydra) clientCredentials(t *testing.T, c hydraClient, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	req, err := http.NewRequest(http.MethodPost, h.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("hydra: token: %v", err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &tok) != nil || tok.AccessToken == "" {
		t.Fatalf("hydra: token: status %d: %s", resp.StatusCode, b)
	}
	return tok.AccessToken
}

// logoutSession ends Hydra's login session sid through the admin API;
// Hydra then sends the back-channel logout to every client of the session
// that registered a backchannel_logout_uri, before it answers.
func (h *hydra) logoutSession(t *testing.T, sid string) {
	t.Helper()
	if err := h.adminJSON(context.Background(), http.MethodDelete, "/admin/oauth2/auth/sessions/login?sid="+url.QueryEscape(sid), nil, nil); err != nil {
		t.Fatalf("hydra: end session: %v", err)
	}
}

// TestHydraHarness checks the harness on its own: Hydra starts, a client
// gets an opaque token, and Hydra's introspection knows it.
func TestHydraHarness(t *testing.T) {
	requireBinary(t)
	h := startHydra(t, "opaque")
	c := h.createClient(t, map[string]any{
		"grant_types":                []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
		"scope":                      "api",
	})
	tok := h.clientCredentials(t, c, "api")
	var got struct {
		Active   bool   `json:"active"`
		ClientID string `json:"client_id"`
	}
	req, err := http.NewRequest(http.MethodPost, h.admin+"/admin/oauth2/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !got.Active || got.ClientID != c.ID {
		t.Fatalf("introspection: got active=%v client_id=%q; want true, %q", got.Active, got.ClientID, c.ID)
	}
}
