package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// signRS256 signs header and payload with key, by hand: SETs are not
// JWTs that jwx's builder makes without a sub.
func signRS256(t *testing.T, key *rsa.PrivateKey, header, payload map[string]any) string {
	t.Helper()
	unsigned := strings.TrimSuffix(handToken(t, header, payload, nil), ".")
	d := sha256.Sum256([]byte(unsigned))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + b64.EncodeToString(sig)
}

// TestE2ESSF runs the built binary with a Shared Signals transmitter: a
// CAEP session-revoked SET for one of alice's sessions makes the bearer
// tokens of that session refused, and only those.
func TestE2ESSF(t *testing.T) {
	iss := newTestIssuer(t)
	tx := newTestIssuer(t) // the transmitter: its JWKS signs the SETs
	up := newUpstream(t)
	const audience = "https://gateway.example/ssf"
	pushAuth := "Bearer " + randHex(t, 16)
	cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: randHex(t, 24)}
	gw := startGatewayYAML(t, cfg, func(listen, internal string) string {
		return cfg.configYAML(listen, internal) + fmt.Sprintf(`ssf:
  transmitters:
    - issuer: %q
      jwks_uri: %q
      audience: %q
      authorization_header: %q
      issuers: [%q]
`, tx.url, tx.url+"/jwks", audience, pushAuth, iss.url)
	})

	// Access tokens of two sessions of alice.
	withSID := func(sid string) string {
		claims := iss.spec(t, "alice").claims()
		claims["sid"] = sid
		return signRS256(t, iss.rsaKey, map[string]any{"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"}, claims)
	}
	tokS1, tokS2 := withSID("s1"), withSID("s2")
	for _, tok := range []string{tokS1, tokS2} {
		if r := gw.get(t, "/app", tok, nil); r.status != http.StatusOK {
			t.Fatalf("before the SET: got %d %s; want 200", r.status, r.body)
		}
	}

	set := signRS256(t, tx.rsaKey, map[string]any{"alg": "RS256", "kid": "rsa-1", "typ": "secevent+jwt"}, map[string]any{
		"iss": tx.url,
		"aud": audience,
		"iat": time.Now().Unix(),
		"jti": randHex(t, 8),
		"sub_id": map[string]any{"format": "complex",
			"user":    map[string]any{"format": "iss_sub", "iss": iss.url, "sub": "alice"},
			"session": map[string]any{"format": "opaque", "id": "s1"},
		},
		"events": map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{
			"event_timestamp": time.Now().Unix(),
		}},
	})
	push := func(contentType, auth, body string) response {
		h := http.Header{"Content-Type": {contentType}}
		if auth != "" {
			h.Set("Authorization", auth)
		}
		return do(t, gw.client, http.MethodPost, gw.internal+"/ssf/events", "", h, strings.NewReader(body))
	}

	// Refused pushes change nothing.
	if r := push("application/secevent+jwt", "Bearer wrong", set); r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), `"err":"authentication_failed"`) {
		t.Fatalf("wrong Authorization: got %d %s; want 401 authentication_failed", r.status, r.body)
	}
	if r := push("application/jwt", pushAuth, set); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"err":"invalid_request"`) {
		t.Fatalf("wrong content type: got %d %s; want 400 invalid_request", r.status, r.body)
	}
	if r := gw.get(t, "/app", tokS1, nil); r.status != http.StatusOK {
		t.Fatalf("after refused pushes: got %d; want 200", r.status)
	}

	if r := push("application/secevent+jwt", pushAuth, set); r.status != http.StatusAccepted || len(r.body) != 0 {
		t.Fatalf("SET: got %d %q; want 202 with an empty body", r.status, r.body)
	}
	if r := gw.get(t, "/app", tokS1, nil); r.status != http.StatusUnauthorized {
		t.Errorf("session s1 after the SET: got %d; want 401", r.status)
	}
	if r := gw.get(t, "/app", tokS2, nil); r.status != http.StatusOK {
		t.Errorf("session s2 after the SET: got %d; want 200", r.status)
	}
	// A retried delivery is acknowledged and not acted on again.
	if r := push("application/secevent+jwt", pushAuth, set); r.status != http.StatusAccepted {
		t.Errorf("replayed SET: got %d %s; want 202", r.status, r.body)
	}
	metrics := string(do(t, gw.client, http.MethodGet, gw.internal+"/metrics", "", nil, nil).body)
	for _, want := range []string{
		`oidcgate_ssf_events_total{event="session_revoked",result="ok"} 1`,
		`oidcgate_ssf_events_total{event="session_revoked",result="replayed"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if r := do(t, gw.client, http.MethodPost, gw.public+"/ssf/events", "", http.Header{"Content-Type": {"application/secevent+jwt"}}, strings.NewReader(set)); r.status == http.StatusAccepted {
		t.Errorf("public listener: got 202; want /ssf/events only on the internal listener")
	}
}
