package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// authorize runs an authorization request at Hydra in b's browser and
// returns the query Hydra redirects to redirectURI with (code or error).
func (b *browser) authorize(t *testing.T, authURL, redirectURI string) url.Values {
	t.Helper()
	u := authURL
	for range 20 {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		resp, err := b.single.Do(req)
		if err != nil {
			t.Fatalf("%s: GET %s: %v", b.user, u, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode/100 != 3 || loc == "" {
			t.Fatalf("%s: GET %s: got %d %s; want a redirect", b.user, u, resp.StatusCode, body)
		}
		next, err := resp.Request.URL.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(next.String(), redirectURI) {
			return next.Query()
		}
		u = next.String()
	}
	t.Fatalf("%s: no redirect to %s after 20 hops", b.user, redirectURI)
	return nil
}

// tokenGrant posts form to Hydra's token endpoint as client c and
// returns the status and the decoded answer.
func (h *hydra) tokenGrant(t *testing.T, c hydraClient, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.issuer+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("hydra token: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out)
	return resp.StatusCode, out
}

// auditRecords reads the audit file's records.
func auditRecords(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r map[string]any
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// targetRecord returns the audit record of the final state of value's
// session authority target, if written.
func targetRecord(t *testing.T, path, value string) map[string]any {
	t.Helper()
	for _, r := range auditRecords(t, path) {
		if r["event"] != "target" {
			continue
		}
		ts, _ := r["targets"].([]any)
		for _, x := range ts {
			if m, _ := x.(map[string]any); m["value"] == value {
				return r
			}
		}
	}
	return nil
}

// TestHydraSessionAuthority: a revocation ends the user at the IdP too.
// Bob holds a gateway session and, through another client, a refresh
// token issued after a real login and consent (offline_access). `oidcgate
// revoke --sub bob` kills the gateway session, Hydra then refuses the
// refresh token and a silent (prompt=none) login, and verify-revocation
// lists the Hydra target done, with an audit record. A sid revocation
// ends that Hydra login session; Hydra's resulting back-channel logout is
// not sent back to Hydra.
func TestHydraSessionAuthority(t *testing.T) {
	requireBinary(t)
	h := startHydra(t, "jwt")
	app := newLegacyApp(t)
	cfg := gatewayConfig{dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	var gwClient hydraClient
	gw := startGatewayYAML(t, cfg, func(listen, internal string) string {
		public := "http://" + listen
		gwClient = h.createClient(t, map[string]any{
			"grant_types":                         []string{"authorization_code", "refresh_token"},
			"response_types":                      []string{"code"},
			"scope":                               "openid profile email",
			"redirect_uris":                       []string{public + "/oauth2/callback"},
			"backchannel_logout_uri":              public + "/oauth2/backchannel-logout",
			"backchannel_logout_session_required": true,
			"token_endpoint_auth_method":          "client_secret_basic",
		})
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
    insecure_logout_token_without_exp: true
    session_authority:
      type: hydra
      url: %q
routes:
  - path_prefix: /
    upstream: %q
    auth: browser
    headers: {X-User: sub, X-Sid: sid}
admin:
  tokens: [{name: e2e, token: "${E2E_ADMIN_TOKEN}"}]
audit:
  path: %q
`, listen, internal, public, cfg.dataDir, h.issuer, gwClient.ID, gwClient.Secret, h.admin, app.srv.URL, auditPath)
	})
	page := gw.public + "/app"

	// A second client of Hydra (a CLI, say) that is not behind the gateway.
	cb := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(cb.Close)
	redirect := cb.URL + "/cb"
	cli := h.createClient(t, map[string]any{
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      "openid offline_access",
		"redirect_uris":              []string{redirect},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	authURL := func(prompt string) string {
		q := url.Values{"client_id": {cli.ID}, "response_type": {"code"}, "scope": {"openid offline_access"},
			"redirect_uri": {redirect}, "state": {randHex(t, 8)}}
		if prompt != "" {
			q.Set("prompt", prompt)
		}
		return h.issuer + "/oauth2/auth?" + q.Encode()
	}

	bob := newBrowser(t, "bob")
	if v := bob.open(t, page); v.User != "bob" {
		t.Fatalf("bob's visit: got %+v", v)
	}
	got := bob.authorize(t, authURL(""), redirect)
	if got.Get("code") == "" {
		t.Fatalf("cli authorization: got %v; want a code", got)
	}
	status, tok := h.tokenGrant(t, cli, url.Values{"grant_type": {"authorization_code"}, "code": {got.Get("code")}, "redirect_uri": {redirect}})
	refresh, _ := tok["refresh_token"].(string)
	if status != http.StatusOK || refresh == "" {
		t.Fatalf("code exchange: got %d %v; want a refresh token", status, tok)
	}
	// The refresh token works (and rotates) before the revocation.
	status, tok = h.tokenGrant(t, cli, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if refresh, _ = tok["refresh_token"].(string); status != http.StatusOK || refresh == "" {
		t.Fatalf("refresh before the revocation: got %d %v; want 200", status, tok)
	}

	env := gw.cliEnv(cfg.adminToken)
	if code, out, errOut := runCLI(t, env, "revoke", "--sub", "bob", "--issuer", h.issuer, "--reason", "offboarding"); code != 0 {
		t.Fatalf("oidcgate revoke --sub bob: exit %d\n%s%s", code, out, errOut)
	}
	if status, err := bob.peek(page); err != nil || status == http.StatusOK {
		t.Errorf("bob's gateway session after the revocation: got %d %v; want refused", status, err)
	}
	var verify string
	if !waitFor(30*time.Second, func() bool {
		code, out, _ := runCLI(t, env, "verify-revocation", "--sub", "bob", "--issuer", h.issuer)
		verify = out
		return code == 0
	}) {
		t.Fatalf("verify-revocation --sub bob never exited 0; last output:\n%s", verify)
	}
	if !strings.Contains(verify, "session_authority") || !strings.Contains(verify, "done") || !strings.Contains(verify, "COMPLETE") {
		t.Errorf("verify-revocation output does not list the Hydra target done:\n%s", verify)
	}
	status, tok = h.tokenGrant(t, cli, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if status == http.StatusOK || tok["error"] != "invalid_grant" {
		t.Errorf("refresh after the revocation: got %d %v; want invalid_grant", status, tok)
	}
	if got := bob.authorize(t, authURL("none"), redirect); got.Get("error") != "login_required" {
		t.Errorf("prompt=none after the revocation: got %v; want error=login_required", got)
	}
	var rec map[string]any
	if !waitFor(10*time.Second, func() bool { rec = targetRecord(t, auditPath, "bob"); return rec != nil }) {
		t.Fatal("no audit record of the Hydra target of bob's revocation")
	}
	if o, _ := rec["outcome"].(map[string]any); o["state"] != "done" || o["kind"] != "session_authority" || rec["trigger"] != "admin" || rec["initiator"] != "admin:e2e" {
		t.Errorf("audit record: got %v; want a done session_authority target triggered by admin:e2e", rec)
	}

	// A sid revocation ends that one Hydra login session.
	alice := newBrowser(t, "alice")
	a1 := alice.open(t, page)
	if a1.SID == "" {
		t.Fatalf("alice's visit: got %+v; want a sid", a1)
	}
	if code, out, errOut := runCLI(t, env, "revoke", "--sid", a1.SID, "--issuer", h.issuer); code != 0 {
		t.Fatalf("oidcgate revoke --sid: exit %d\n%s%s", code, out, errOut)
	}
	if !waitFor(30*time.Second, func() bool {
		code, out, _ := runCLI(t, env, "verify-revocation", "--sid", a1.SID, "--issuer", h.issuer)
		verify = out
		return code == 0
	}) {
		t.Fatalf("verify-revocation --sid never exited 0; last output:\n%s", verify)
	}
	if got := alice.authorize(t, authURL("none"), redirect); got.Get("error") != "login_required" {
		t.Errorf("alice's prompt=none after the sid revocation: got %v; want error=login_required", got)
	}
	// Hydra's back-channel logout of that session reached the gateway
	// (recorded), and was not sent back: one call per admin revocation.
	if !waitFor(10*time.Second, func() bool {
		for _, r := range auditRecords(t, auditPath) {
			if r["event"] == "revocation" && r["trigger"] == "backchannel_logout" {
				return true
			}
		}
		return false
	}) {
		t.Fatal("no back-channel logout from Hydra was recorded")
	}
	if n := metricSum(t, gw, "oidcgate_session_authority_calls_total"); n != 2 {
		t.Errorf("session authority calls: got %v; want 2 (bob, alice's sid), none echoed", n)
	}
	if code, out, _ := runCLI(t, env, "verify-revocation", "--sid", a1.SID, "--issuer", h.issuer); code != 0 || strings.Count(out, "session_authority") != 1 {
		t.Errorf("verify-revocation --sid after Hydra's logout: exit %d; want 0 and one session_authority target:\n%s", code, out)
	}
}

// metricSum returns the sum of every series of the metric name on g's
// /metrics.
func metricSum(t *testing.T, g *gatewayProc, name string) float64 {
	t.Helper()
	r := do(t, g.client, http.MethodGet, g.internal+"/metrics", "", nil, nil)
	var sum float64
	for line := range strings.SplitSeq(string(r.body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		var v float64
		fields := strings.Fields(line)
		if _, err := fmt.Sscan(fields[len(fields)-1], &v); err == nil {
			sum += v
		}
	}
	return sum
}
