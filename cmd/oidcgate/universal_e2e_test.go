package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/logout"
)

// TestUniversalLogoutE2E drives the built binary: an OpenID provider (the
// demo issuer, its own RSA key) logs bob in through the gateway — the
// legacy app keeps its own session, the browser holds it sealed — and
// mints bob a bearer token; then it POSTs a Global Token Revocation for
// bob, authenticated by an RS256 JWT it signed for the endpoint. The 204
// comes only once bob's browser session, sealed app cookie and bearer
// token are all refused; the app's logout URL is called with its real
// cookie; the audit record names the caller's issuer; a replayed or
// wrongly addressed JWT is 401 and changes nothing; alice is untouched.
func TestUniversalLogoutE2E(t *testing.T) {
	requireBinary(t)
	idp, err := startDemoIssuer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.close)
	app, err := startDemoApp()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.close)
	cfg := gatewayConfig{dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	auditPath := filepath.Join(cfg.dataDir, "audit.jsonl")
	gw := startGatewayYAML(t, cfg, func(listen, internal string) string {
		return fmt.Sprintf(`listen: %q
internal_listen: %q
public_url: %q
data_dir: %q
clock_skew: 1s
session:
  secret: "e2e-session-secret-0123456789abcdefghij"
  max_age: 1h
issuers:
  - issuer: %q
    client_id: %q
    client_secret: %q
    audiences: [%q]
    max_token_lifetime: 1h
routes:
  - path_prefix: /app
    upstream: %q
    auth: browser
    app_session_cookies: [%s]
    app_logout_url: %q
    headers: {X-User: sub}
  - path_prefix: /
    upstream: %q
    auth: bearer
    headers: {X-User: sub}
admin:
  tokens: [{name: e2e, token: "${E2E_ADMIN_TOKEN}"}]
audit:
  path: %q
`, listen, internal, "http://"+listen, cfg.dataDir, idp.url, demoClientID, idp.clientSecret, demoAudience,
			app.url, demoAppCookie, app.url+"/logout", app.url, auditPath)
	})
	page := gw.public + "/app"
	endpoint := gw.public + logout.UniversalLogoutPath

	// bob logs in through the gateway at the issuer; the app starts its
	// own session, which the browser holds only sealed.
	bob := newBrowser(t, "bob")
	bobApp := demoLogin(t, bob, page, "bob")
	if sealed := bob.cookie(page, demoAppCookie); sealed == "" || strings.Contains(sealed, bobApp) {
		t.Fatalf("bob's %s cookie: got %q; want the sealed form of %q", demoAppCookie, sealed, bobApp)
	}
	alice := newBrowser(t, "alice")
	aliceApp := demoLogin(t, alice, page, "alice")
	bobToken, err := idp.sign("at+jwt", "bob", []string{demoAudience}, demoTokenLifetime, map[string]any{"client_id": demoClientID, "scope": "read"})
	if err != nil {
		t.Fatal(err)
	}
	if r := gw.get(t, "/hello", bobToken, nil); r.status != http.StatusOK {
		t.Fatalf("bob's bearer token before: got %d %s; want 200", r.status, r.body)
	}

	gtr := func(jwt, body string) response {
		t.Helper()
		return do(t, gw.client, http.MethodPost, endpoint, jwt, http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
	}
	assertion := func(aud string) string {
		t.Helper()
		jwt, err := idp.sign("JWT", "universal-logout", []string{aud}, 2*time.Minute, nil)
		if err != nil {
			t.Fatal(err)
		}
		return jwt
	}
	body := `{"sub_id":{"format":"iss_sub","iss":"` + idp.url + `","sub":"bob"}}`

	// Unauthenticated, or a JWT for another endpoint: 401, nothing revoked.
	for name, jwt := range map[string]string{"no JWT": "", "wrong aud": assertion(gw.public + logout.BackchannelPath)} {
		if r := gtr(jwt, body); r.status != http.StatusUnauthorized {
			t.Errorf("%s: got %d %s; want 401", name, r.status, r.body)
		}
	}
	if status, err := bob.peek(page); err != nil || status != http.StatusOK {
		t.Fatalf("bob after refused requests: got %d %v; want still logged in", status, err)
	}

	jwt := assertion(endpoint)
	if r := gtr(jwt, body); r.status != http.StatusNoContent {
		t.Fatalf("global token revocation: got %d %s; want 204", r.status, r.body)
	}
	// Refused at once: the 204 came after the revocation was durable.
	if status, err := bob.peek(page); err != nil || status != http.StatusFound {
		t.Errorf("bob's browser after the 204: got %d %v; want 302 to log in", status, err)
	}
	if r := gw.get(t, "/hello", bobToken, nil); r.status != http.StatusUnauthorized {
		t.Errorf("bob's bearer token after the 204: got %d; want 401", r.status)
	}
	if !waitFor(10*time.Second, func() bool { return !app.alive(bobApp) }) {
		t.Errorf("the app's session %s was not ended through its logout URL", bobApp)
	}
	if !app.alive(aliceApp) {
		t.Error("alice's app session was ended")
	}
	if v := alice.open(t, page); v.AppSession != aliceApp {
		t.Errorf("alice after bob's revocation: got %+v; want her session %s", v, aliceApp)
	}

	// The same JWT again, even for another user: 401, nothing revoked.
	if r := gtr(jwt, `{"sub_id":{"format":"iss_sub","iss":"`+idp.url+`","sub":"alice"}}`); r.status != http.StatusUnauthorized {
		t.Errorf("replayed JWT: got %d %s; want 401", r.status, r.body)
	}
	if status, err := alice.peek(page); err != nil || status != http.StatusOK {
		t.Errorf("alice after a replayed JWT: got %d %v; want still logged in", status, err)
	}
	if r := gtr(assertion(endpoint), `{"sub_id":{"format":"opaque","id":"00u1"}}`); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"invalid_request"`) {
		t.Errorf("unknown subject format: got %d %s; want 400 invalid_request", r.status, r.body)
	}

	rec := universalRecord(t, auditPath, "bob")
	if rec.Trigger != audit.TriggerUniversalLogout || rec.Reason != "universal_logout" || !strings.HasPrefix(rec.Initiator, "universal_logout:"+idp.url+" jti_sha256:") {
		t.Errorf("audit record: got trigger %q, reason %q, initiator %q; want universal_logout by %s", rec.Trigger, rec.Reason, rec.Initiator, idp.url)
	}
}

// demoLogin logs user in at the demo issuer through the gateway's page
// and returns the app session the app started.
func demoLogin(t *testing.T, b *browser, page, user string) string {
	t.Helper()
	resp, err := b.follow.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasSuffix(resp.Request.URL.Path, "/authorize") {
		t.Fatalf("open %s: got %d at %s; want the issuer's login form", page, resp.StatusCode, resp.Request.URL)
	}
	resp, err = b.follow.PostForm(resp.Request.URL.String(), url.Values{"sub": {user}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v struct {
		AppSession string `json:"app_session"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil || v.AppSession == "" {
		t.Fatalf("log in %s: got %d %s; want the app with a session", user, resp.StatusCode, body)
	}
	return v.AppSession
}

// alive reports whether the demo app still holds session id.
func (a *demoApp) alive(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.sessions[id]
	return ok
}

// universalRecord returns the revocation record of sub in the audit log.
func universalRecord(t *testing.T, path, sub string) audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec audit.Record
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Event == audit.EventRevocation && len(rec.Targets) == 1 && rec.Targets[0].Value == sub {
			return rec
		}
	}
	t.Fatalf("no revocation record of %s in %s", sub, path)
	return audit.Record{}
}
