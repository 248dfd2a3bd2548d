package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestHydraIntrospection runs the built binary against Ory Hydra issuing
// opaque access tokens: the gateway introspects them at Hydra, proxies,
// answers /introspect for them, sees a revocation at Hydra after its
// cache lifetime and one at its own /revoke at once.
func TestHydraIntrospection(t *testing.T) {
	requireBinary(t)
	h := startHydra(t, "opaque")
	up := newUpstream(t)
	gwClient := h.createClient(t, map[string]any{
		"grant_types":                []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	svc := h.createClient(t, map[string]any{
		"grant_types":                []string{"client_credentials"},
		"token_endpoint_auth_method": "client_secret_basic",
		"scope":                      "api",
	})
	const cacheTTL = 2 * time.Second
	cfg := gatewayConfig{dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	appSecret := randHex(t, 16)
	gw := startGatewayYAML(t, cfg, func(listen, internal string) string {
		return fmt.Sprintf(`listen: %q
internal_listen: %q
data_dir: %q
clock_skew: 1s
issuers:
  - issuer: %q
    # Hydra's client_credentials tokens carry aud: [] (REAL-IDP.md).
    insecure_skip_audience_check: true
    client_id: %q
    client_secret: %q
    introspection_endpoint: %q
    introspection_cache_ttl: %s
    max_token_lifetime: 2h
routes:
  - path_prefix: /
    upstream: %q
    required_scopes: [api]
    headers: {X-User: sub, X-Client: client_id}
admin:
  tokens: [{name: e2e, token: "${E2E_ADMIN_TOKEN}"}]
introspection_clients:
  - {client_id: app, client_secret: %q}
`, listen, internal, cfg.dataDir, h.issuer, gwClient.ID, gwClient.Secret,
			h.admin+"/admin/oauth2/introspect", cacheTTL, up.srv.URL, appSecret)
	})

	introspectAt := func(tok string) map[string]any {
		t.Helper()
		r := do(t, gw.client, http.MethodPost, gw.internal+"/introspect", "",
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {basic("app", appSecret)}},
			strings.NewReader(url.Values{"token": {tok}}.Encode()))
		var m map[string]any
		if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &m) != nil {
			t.Fatalf("/introspect: got %d %s", r.status, r.body)
		}
		return m
	}

	// An opaque token from Hydra: introspected, proxied as its client.
	tok := h.clientCredentials(t, svc, "api")
	if strings.Count(tok, ".") == 2 {
		t.Fatalf("Hydra issued a JWT; want an opaque token")
	}
	r := gw.get(t, "/hello", tok, nil)
	if r.status != http.StatusOK {
		t.Fatalf("opaque token through the gateway: got %d %s; want 200", r.status, r.body)
	}
	var e echo
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatal(err)
	}
	if got := e.Header.Get("X-Client"); got != svc.ID {
		t.Errorf("X-Client: got %q; want %q", got, svc.ID)
	}
	if m := introspectAt(tok); m["active"] != true || m["client_id"] != svc.ID || m["iss"] != h.issuer {
		t.Errorf("/introspect: got %v; want active for %s from %s", m, svc.ID, h.issuer)
	}

	// Revoked at Hydra: refused once the cached answer has expired.
	form := url.Values{"token": {tok}}
	rv := do(t, gw.client, http.MethodPost, h.issuer+"/oauth2/revoke", "",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {basic(svc.ID, svc.Secret)}},
		strings.NewReader(form.Encode()))
	if rv.status != http.StatusOK {
		t.Fatalf("revoke at Hydra: got %d %s", rv.status, rv.body)
	}
	revokedAt := time.Now()
	if !waitFor(cacheTTL+10*time.Second, func() bool { return gw.get(t, "/hello", tok, nil).status == http.StatusUnauthorized }) {
		t.Fatalf("a token revoked at Hydra is still accepted %s later (cache TTL %s)", time.Since(revokedAt), cacheTTL)
	}
	if m := introspectAt(tok); len(m) != 1 || m["active"] != false {
		t.Errorf("/introspect of the revoked token: got %v; want exactly {active: false}", m)
	}

	// Revoked at the gateway's /revoke: refused at once, by the proxy and
	// by /introspect, although the answer from Hydra is still cached.
	tok2 := h.clientCredentials(t, svc, "api")
	if r := gw.get(t, "/hello", tok2, nil); r.status != http.StatusOK {
		t.Fatalf("second token: got %d; want 200", r.status)
	}
	rv = do(t, gw.client, http.MethodPost, gw.internal+"/revoke", "",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Authorization": {basic("app", appSecret)}},
		strings.NewReader(url.Values{"token": {tok2}}.Encode()))
	if rv.status != http.StatusOK {
		t.Fatalf("/revoke: got %d %s", rv.status, rv.body)
	}
	if r := gw.get(t, "/hello", tok2, nil); r.status != http.StatusUnauthorized {
		t.Errorf("right after /revoke: got %d; want 401", r.status)
	}
	if m := introspectAt(tok2); m["active"] != false {
		t.Errorf("/introspect right after /revoke: got %v", m)
	}

	// A client revocation refuses every token issued to it before.
	tok3 := h.clientCredentials(t, svc, "api")
	if r := gw.get(t, "/hello", tok3, nil); r.status != http.StatusOK {
		t.Fatalf("third token: got %d; want 200", r.status)
	}
	if r := gw.revoke(t, map[string]string{"client_id": svc.ID, "issuer": h.issuer}); r.status != http.StatusCreated {
		t.Fatalf("admin revoke client: got %d %s", r.status, r.body)
	}
	if r := gw.get(t, "/hello", tok3, nil); r.status != http.StatusUnauthorized {
		t.Errorf("token of a revoked client: got %d; want 401", r.status)
	}
}

// basic is an HTTP Basic Authorization value (RFC 6749 §2.3.1 encoding).
func basic(id, secret string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return req.Header.Get("Authorization")
}
