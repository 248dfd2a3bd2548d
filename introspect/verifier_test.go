package introspect

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

const hydraIssuer = "http://127.0.0.1:4444"

func standardJWKS(k *testKeys) []jwkSpec {
	return []jwkSpec{
		{pub: &k.rsa1.PublicKey, kid: "rs", alg: "RS256", use: "sig"},
		{pub: &k.rsa2.PublicKey, kid: "ps", alg: "PS256"},
		{pub: &k.ec256.PublicKey, kid: "es"},
		{pub: &k.ec384.PublicKey, kid: "es384", alg: "ES384"},
		{pub: k.ed.Public(), kid: "ed", alg: "EdDSA", key: k.ed, priv: true},
		{pub: &k.rsa2.PublicKey, kid: "enc", use: "enc"},
		{pub: &k.rsa2.PublicKey, kid: "ops", ops: []string{"encrypt"}},
	}
}

type fixture struct {
	keys  *testKeys
	idp   *idp
	clock *clocktest.Clock
	revs  *memRevocations
	reg   *prometheus.Registry
	v     *Verifier
}

// newFixture returns a Verifier trusting testIssuer (RS256, ES256, PS256,
// EdDSA; aud api) and a Hydra-like issuer (typ JWT, any aud), both with
// the standard key set; mod may change the config first.
func newFixture(tb testing.TB, mod func(*Config)) *fixture {
	tb.Helper()
	f := &fixture{keys: loadKeys(tb), clock: newClock(), revs: newRevocations(), reg: prometheus.NewRegistry()}
	f.idp = newIDP(tb, jwksJSON(tb, standardJWKS(f.keys)))
	cfg := Config{
		Issuers: []Issuer{{
			Issuer:          testIssuer,
			JWKSURI:         f.idp.jwksURL(),
			Audiences:       []string{"api", "other"},
			AccessTokenAlgs: []string{"RS256", "ES256", "PS256", "EdDSA"},
		}, {
			Issuer:                    hydraIssuer,
			JWKSURI:                   f.idp.jwksURL(),
			AccessTokenTypes:          []string{"JWT"},
			InsecureSkipAudienceCheck: true,
		}},
		Revocations: f.revs,
		Clock:       f.clock,
		Metrics:     f.reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)
	f.v = v
	return f
}

func hdr(alg, kid string) map[string]any {
	h := map[string]any{"alg": alg, "typ": "at+jwt"}
	if kid != "" {
		h["kid"] = kid
	}
	return h
}

func TestVerify(t *testing.T) {
	f := newFixture(t, nil)
	k := f.keys
	c := baseClaims()
	rs := func(claims map[string]any) string { return signJWS(t, hdr("RS256", "rs"), claims, "RS256", k.rsa1) }
	valid := rs(c)
	parts := strings.Split(valid, ".")
	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hydra := with(c, "iss", hydraIssuer, "aud", []string{})
	hydraHdr := map[string]any{"alg": "RS256", "typ": "JWT", "kid": "rs"}

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"valid RS256", valid, nil},
		{"valid ES256", signJWS(t, hdr("ES256", "es"), c, "ES256", k.ec256), nil},
		{"valid PS256", signJWS(t, hdr("PS256", "ps"), c, "PS256", k.rsa2), nil},
		{"valid EdDSA", signJWS(t, hdr("EdDSA", "ed"), c, "EdDSA", k.ed), nil},
		{"valid RS256 without kid (one usable key)", signJWS(t, hdr("RS256", ""), c, "RS256", k.rsa1), nil},
		{"valid ES256 without kid (one usable key)", signJWS(t, hdr("ES256", ""), c, "ES256", k.ec256), nil},
		{"valid aud array", rs(with(c, "aud", []string{"x", "other"})), nil},
		{"valid typ application/at+jwt", signJWS(t, map[string]any{"alg": "RS256", "typ": "application/AT+JWT", "kid": "rs"}, c, "RS256", k.rsa1), nil},
		{"valid without nbf", rs(with(c, "nbf", nil)), nil},
		{"valid fractional exp", rs(with(c, "exp", float64(t0.Add(time.Minute).Unix())+0.5)), nil},
		{"valid Hydra-like typ JWT aud [] with per-issuer settings", signJWS(t, hydraHdr, hydra, "RS256", k.rsa1), nil},
		{"Hydra-like token for the strict issuer", signJWS(t, hydraHdr, with(hydra, "iss", testIssuer), "RS256", k.rsa1), ErrInvalidToken},
		{"Hydra-like aud [] with at+jwt for the strict issuer", rs(with(c, "aud", []string{})), ErrInvalidToken},
		{"at+jwt for the Hydra issuer (typ JWT only)", rs(hydra), ErrInvalidToken},
		{"expired", rs(with(c, "exp", t0.Add(-time.Second).Unix())), ErrExpired},
		{"expired exactly now", rs(with(c, "exp", t0.Unix())), ErrExpired},
		{"wrong iss", rs(with(c, "iss", "https://evil.example.com")), ErrInvalidToken},
		{"iss differs by a trailing slash", rs(with(c, "iss", testIssuer+"/")), ErrInvalidToken},
		{"iss not a string", rs(with(c, "iss", 1)), ErrInvalidToken},
		{"wrong aud", rs(with(c, "aud", "someone-else")), ErrInvalidToken},
		{"missing aud", rs(with(c, "aud", nil)), ErrInvalidToken},
		{"aud a number", rs(with(c, "aud", 5)), ErrInvalidToken},
		{"alg none", b64e([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + parts[1] + ".", ErrInvalidToken},
		{"alg none with a signature", b64e([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + parts[1] + "." + parts[2], ErrInvalidToken},
		{"HS256 keyed with the RSA public key PEM", signJWS(t, hdr("HS256", "rs"), c, "HS256", pubPEM), ErrInvalidToken},
		{"HS256 keyed with the RSA public key DER", signJWS(t, hdr("HS256", ""), c, "HS256", pubDER), ErrInvalidToken},
		{"RS256 signature, header ES256, RSA kid", signJWS(t, hdr("ES256", "rs"), c, "RS256", k.rsa1), ErrInvalidToken},
		{"RS256 signature, header ES256, EC kid", signJWS(t, hdr("ES256", "es"), c, "RS256", k.rsa1), ErrInvalidToken},
		{"ES256 signature, header RS256, EC kid", signJWS(t, hdr("RS256", "es"), c, "ES256", k.ec256), ErrInvalidToken},
		{"ES256 signature, header RS256, RSA kid", signJWS(t, hdr("RS256", "rs"), c, "ES256", k.ec256), ErrInvalidToken},
		{"PS256 signature under a key whose JWK alg is RS256", signJWS(t, hdr("PS256", "rs"), c, "PS256", k.rsa1), ErrInvalidToken},
		{"RS256 under a key whose JWK alg is PS256", signJWS(t, hdr("RS256", "ps"), c, "RS256", k.rsa2), ErrInvalidToken},
		{"key with use enc", signJWS(t, hdr("RS256", "enc"), c, "RS256", k.rsa2), ErrInvalidToken},
		{"key with key_ops without verify", signJWS(t, hdr("RS256", "ops"), c, "RS256", k.rsa2), ErrInvalidToken},
		{"ES384 not in the allow-list", signJWS(t, hdr("ES384", "es384"), c, "ES384", k.ec384), ErrInvalidToken},
		{"ES256 not allowed for the Hydra issuer's default list? (it is)", signJWS(t, map[string]any{"alg": "ES256", "typ": "JWT", "kid": "es"}, hydra, "ES256", k.ec256), nil},
		{"EdDSA not in the Hydra issuer's default list", signJWS(t, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "ed"}, hydra, "EdDSA", k.ed), ErrInvalidToken},
		{"unknown kid (refetch in cooldown)", signJWS(t, hdr("RS256", "nope"), c, "RS256", k.rsa1), ErrInvalidToken},
		{"signed by a key not in the set", signJWS(t, hdr("RS256", "rs"), c, "RS256", k.rsa2), ErrInvalidToken},
		{"tampered payload", parts[0] + "." + b64e(mustJSON(t, with(c, "sub", "admin"))) + "." + parts[2], ErrInvalidToken},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), ErrInvalidToken},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(rs(with(c, "jti", "other")), ".")[2], ErrInvalidToken},
		{"padded base64 payload", parts[0] + "." + parts[1] + "==." + parts[2], ErrInvalidToken},
		{"newline inside the payload (base64 decoders skip it)", parts[0] + "." + parts[1][:10] + "\n" + parts[1][10:] + "." + parts[2], ErrInvalidToken},
		{"CR inside the signature", parts[0] + "." + parts[1] + "." + parts[2][:5] + "\r" + parts[2][5:], ErrInvalidToken},
		{"future nbf", rs(with(c, "nbf", t0.Add(5*time.Minute).Unix())), ErrInvalidToken},
		{"future iat", rs(with(c, "iat", t0.Add(5*time.Minute).Unix())), ErrInvalidToken},
		{"lifetime too long", rs(with(c, "exp", t0.Add(24*time.Hour).Unix())), ErrInvalidToken},
		{"missing exp", rs(with(c, "exp", nil)), ErrInvalidToken},
		{"missing iat", rs(with(c, "iat", nil)), ErrInvalidToken},
		{"missing sub", rs(with(c, "sub", nil)), ErrInvalidToken},
		{"empty sub", rs(with(c, "sub", "")), ErrInvalidToken},
		{"exp a string", rs(with(c, "exp", "9999999999")), ErrInvalidToken},
		{"exp beyond year 9999", rs(with(c, "exp", 1e12)), ErrInvalidToken},
		{"scope not a string", rs(with(c, "scope", []string{"read"})), ErrInvalidToken},
		{"payload an array", parts[0] + "." + b64e([]byte(`[1]`)) + "." + parts[2], ErrInvalidToken},
		{"garbage", "garbage", ErrInvalidToken},
		{"empty", "", ErrInvalidToken},
		{"two dots only", "..", ErrInvalidToken},
		{"oversize", valid + "." + strings.Repeat("A", maxTokenBytes), ErrInvalidToken},
		{"oversize even with a valid prefix", strings.Repeat("A", maxTokenBytes+1), ErrInvalidToken},
		{"JWE-shaped 5 parts", parts[0] + ".." + parts[1] + "." + parts[2] + ".tag", ErrInvalidToken},
		{"JSON serialization", fmt.Sprintf(`{"payload":%q,"protected":%q,"signature":%q}`, parts[1], parts[0], parts[2]), ErrInvalidToken},
		{"wrong typ", signJWS(t, map[string]any{"alg": "RS256", "typ": "JWT", "kid": "rs"}, c, "RS256", k.rsa1), ErrInvalidToken},
		{"typ of a logout token", signJWS(t, map[string]any{"alg": "RS256", "typ": "logout+jwt", "kid": "rs"}, c, "RS256", k.rsa1), ErrInvalidToken},
		{"typ missing", signJWS(t, map[string]any{"alg": "RS256", "kid": "rs"}, c, "RS256", k.rsa1), ErrInvalidToken},
		{"typ not a string", signJWS(t, map[string]any{"alg": "RS256", "typ": 1, "kid": "rs"}, c, "RS256", k.rsa1), ErrInvalidToken},
		{"crit header", signJWS(t, map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": "rs", "crit": []string{"exp"}, "exp": 1}, c, "RS256", k.rsa1), ErrInvalidToken},
		{"b64 without crit", signJWS(t, map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": "rs", "b64": true}, c, "RS256", k.rsa1), ErrInvalidToken},
		{"b64 false", signJWS(t, map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": "rs", "b64": false, "crit": []string{"b64"}}, c, "RS256", k.rsa1), ErrInvalidToken},
		{"header alg in other case", signJWS(t, map[string]any{"ALG": "RS256", "typ": "at+jwt", "kid": "rs"}, c, "RS256", k.rsa1), ErrInvalidToken},
		{"jwk header names an attacker key", signJWS(t, map[string]any{"alg": "RS256", "typ": "at+jwt", "jwk": map[string]any{"kty": "RSA"}}, c, "RS256", k.rsa2), ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.v.Verify(t.Context(), tt.token)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got error %v; want nil", err)
				}
				if got.Subject != "alice" {
					t.Errorf("got sub %q; want alice", got.Subject)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v; want %v", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("got error %v; want it to wrap ErrInvalidToken too", err)
			}
			if got != nil {
				t.Errorf("got claims %+v with an error; want nil", got)
			}
			if len(tt.token) > 20 && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error %q contains the token", err)
			}
		})
	}
}

// TestVerifyRefusesOtherKindsOfJWT: under the Ory Hydra settings (typ
// JWT, any audience) the typ header and aud cannot tell an access token
// from the issuer's other JWTs; their claims must (RFC 8725 §3.11).
func TestVerifyRefusesOtherKindsOfJWT(t *testing.T) {
	f := newFixture(t, nil)
	k := f.keys
	jwtHdr := map[string]any{"alg": "RS256", "typ": "JWT", "kid": "rs"}
	// Another RP's ID token, as Hydra issues it (OpenID Connect Core §2).
	idToken := map[string]any{
		"iss": hydraIssuer, "sub": "alice", "aud": []string{"other-rp"}, "azp": "other-rp",
		"exp": t0.Add(10 * time.Minute).Unix(), "iat": t0.Add(-time.Minute).Unix(),
		"auth_time": t0.Add(-time.Minute).Unix(), "sid": "sid-1", "jti": "id-1",
		"nonce": "n-0S6_WzA2Mj", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
	}
	// A logout token with sub and exp (Back-Channel Logout 1.0 §2.4).
	logoutToken := map[string]any{
		"iss": hydraIssuer, "sub": "alice", "aud": []string{"other-rp"}, "sid": "sid-1", "jti": "lt-1", "client_id": "other-rp",
		"exp": t0.Add(2 * time.Minute).Unix(), "iat": t0.Add(-10 * time.Second).Unix(),
		"events": map[string]any{backchannelLogoutEvent: map[string]any{}},
	}
	tests := []struct {
		name   string
		claims map[string]any
		want   error
	}{
		{"another RP's ID token", idToken, ErrInvalidToken},
		{"ID token with nonce only", with(idToken, "at_hash", nil), ErrInvalidToken},
		{"ID token with at_hash only", with(idToken, "nonce", nil), ErrInvalidToken},
		{"nonce null", with(idToken, "at_hash", nil, "nonce", []any(nil)), ErrInvalidToken},
		{"logout token", logoutToken, ErrInvalidToken},
		{"SET-like events of another type", with(logoutToken, "events", map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{}}), ErrInvalidToken},
		// The same claims without the marks are an access token: the
		// refusals above come from the marks, nothing else.
		{"ID token claims without nonce and at_hash", with(idToken, "nonce", nil, "at_hash", nil), nil},
		{"logout token claims without events", with(logoutToken, "events", nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Verify(t.Context(), signJWS(t, jwtHdr, tt.claims, "RS256", k.rsa1))
			if !errors.Is(err, tt.want) && !(tt.want == nil && err == nil) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
		})
	}
	// Also for a strict issuer with typ at+jwt: the rule holds whatever
	// the settings.
	strict := with(idToken, "iss", testIssuer, "aud", "api")
	if _, err := f.v.Verify(t.Context(), signJWS(t, hdr("RS256", "rs"), strict, "RS256", k.rsa1)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("at+jwt with nonce for the strict issuer: got %v; want %v", err, ErrInvalidToken)
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	return string(b)
}

func TestVerifyClaims(t *testing.T) {
	f := newFixture(t, nil)
	c := with(baseClaims(), "aud", []string{"api", "x"}, "roles", []string{"a", "b"}, "n", 42, "ok", true, "obj", map[string]any{"a": 1})
	tok := signJWS(t, hdr("RS256", "rs"), c, "RS256", f.keys.rsa1)
	got, err := f.v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	want := Claims{
		Issuer: testIssuer, Subject: "alice", Audience: []string{"api", "x"},
		ExpiresAt: t0.Add(10 * time.Minute), IssuedAt: t0.Add(-time.Minute), NotBefore: t0.Add(-time.Minute),
		JTI: "jti-1", SID: "sid-1", ClientID: "client-1", Scopes: []string{"read", "write"},
	}
	if got.Issuer != want.Issuer || got.Subject != want.Subject || !slices.Equal(got.Audience, want.Audience) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.IssuedAt.Equal(want.IssuedAt) || !got.NotBefore.Equal(want.NotBefore) ||
		got.JTI != want.JTI || got.SID != want.SID || got.ClientID != want.ClientID || !slices.Equal(got.Scopes, want.Scopes) {
		t.Errorf("got %+v; want %+v", *got, want)
	}
	for _, name := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "client_id", "scope"} {
		if _, ok := got.Extra[name]; ok {
			t.Errorf("got %s in Extra; want it only in its field", name)
		}
	}
	if got.Extra["email"] != "alice@example.com" {
		t.Errorf("got Extra[email] %v; want alice@example.com", got.Extra["email"])
	}
	if !got.HasScopes([]string{"write"}) {
		t.Errorf("got HasScopes(write) false; want true")
	}

	claimTests := []struct {
		name   string
		want   string
		wantOK bool
	}{
		{"sub", "alice", true},
		{"iss", testIssuer, true},
		{"jti", "jti-1", true},
		{"sid", "sid-1", true},
		{"client_id", "client-1", true},
		{"scope", "read write", true},
		{"aud", "api x", true},
		{"exp", fmt.Sprint(t0.Add(10 * time.Minute).Unix()), true},
		{"iat", fmt.Sprint(t0.Add(-time.Minute).Unix()), true},
		{"email", "alice@example.com", true},
		{"roles", "a b", true},
		{"n", "42", true},
		{"ok", "true", true},
		{"obj", "", false},
		{"missing", "", false},
	}
	for _, tt := range claimTests {
		s, ok := got.Claim(tt.name)
		if s != tt.want || ok != tt.wantOK {
			t.Errorf("Claim(%q) = %q, %v; want %q, %v", tt.name, s, ok, tt.want, tt.wantOK)
		}
	}
}

func TestVerifyClientIDAndScopeFallbacks(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name       string
		claims     map[string]any
		wantClient string
		wantScopes []string
	}{
		{"client_id wins over azp", with(baseClaims(), "azp", "other"), "client-1", []string{"read", "write"}},
		{"azp when no client_id", with(baseClaims(), "client_id", nil, "azp", "spa"), "spa", []string{"read", "write"}},
		{"scp array when no scope", with(baseClaims(), "scope", nil, "scp", []string{"a", "b"}), "client-1", []string{"a", "b"}},
		{"scp string when no scope", with(baseClaims(), "scope", nil, "scp", "a b"), "client-1", []string{"a", "b"}},
		{"scope wins over scp", with(baseClaims(), "scp", []string{"admin"}), "client-1", []string{"read", "write"}},
		{"malformed scp grants nothing", with(baseClaims(), "scope", nil, "scp", 7), "client-1", nil},
		{"extra spaces in scope", with(baseClaims(), "scope", "  a   b "), "client-1", []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.v.Verify(t.Context(), signJWS(t, hdr("RS256", "rs"), tt.claims, "RS256", f.keys.rsa1))
			if err != nil {
				t.Fatal(err)
			}
			if got.ClientID != tt.wantClient {
				t.Errorf("got client_id %q; want %q", got.ClientID, tt.wantClient)
			}
			if !slices.Equal(got.Scopes, tt.wantScopes) {
				t.Errorf("got scopes %q; want %q", got.Scopes, tt.wantScopes)
			}
		})
	}
}

// RFC 9068 §2.2: jti and client_id are REQUIRED in a JWT access token;
// insecure_access_token_without_jti_client_id accepts tokens of an issuer
// that omits them.
func TestVerifyRFC9068RequiredClaims(t *testing.T) {
	for _, lax := range []bool{false, true} {
		f := newFixture(t, func(c *Config) { c.Issuers[0].InsecureAccessTokenWithoutJTIClientID = lax })
		hdr := map[string]any{"alg": "RS256", "typ": "at+jwt", "kid": "rs"}
		for _, drop := range []string{"jti", "client_id"} {
			_, err := f.v.Verify(t.Context(), signJWS(t, hdr, with(baseClaims(), drop, nil), "RS256", f.keys.rsa1))
			switch {
			case !lax && !errors.Is(err, ErrInvalidToken):
				t.Errorf("without %s: got %v; want ErrInvalidToken", drop, err)
			case lax && err != nil:
				t.Errorf("without %s, issuer setting on: got %v; want accepted", drop, err)
			}
		}
	}
}

func TestVerifyJWXBuiltToken(t *testing.T) {
	f := newFixture(t, nil)
	tok, err := jwt.NewBuilder().Issuer(testIssuer).Subject("alice").Audience([]string{"api"}).
		IssuedAt(t0.Add(-time.Minute)).Expiration(t0.Add(time.Minute)).JwtID("j").Claim("client_id", "c").Build()
	if err != nil {
		t.Fatal(err)
	}
	h := jws.NewHeaders()
	for k, v := range map[string]string{"kid": "es", "typ": "at+jwt"} {
		if err := h.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), f.keys.ec256, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.Verify(t.Context(), string(signed)); err != nil {
		t.Fatalf("got %v; want a jwx-signed ES256 token accepted", err)
	}
}

func TestVerifyClockSkew(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ClockSkew = 30 * time.Second })
	rs := func(claims map[string]any) string {
		return signJWS(t, hdr("RS256", "rs"), claims, "RS256", f.keys.rsa1)
	}
	tests := []struct {
		name   string
		claims map[string]any
		want   error
	}{
		{"exp 29s ago", with(baseClaims(), "exp", t0.Add(-29*time.Second).Unix()), nil},
		{"exp 30s ago", with(baseClaims(), "exp", t0.Add(-30*time.Second).Unix()), ErrExpired},
		{"nbf in 30s", with(baseClaims(), "nbf", t0.Add(30*time.Second).Unix()), nil},
		{"nbf in 31s", with(baseClaims(), "nbf", t0.Add(31*time.Second).Unix()), ErrInvalidToken},
		{"iat in 30s", with(baseClaims(), "iat", t0.Add(30*time.Second).Unix()), nil},
		{"iat in 31s", with(baseClaims(), "iat", t0.Add(31*time.Second).Unix()), ErrInvalidToken},
		{"exp before iat", with(baseClaims(), "iat", t0.Add(20*time.Second).Unix(), "exp", t0.Add(10*time.Second).Unix()), ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.Verify(t.Context(), rs(tt.claims))
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyRevoked(t *testing.T) {
	c := baseClaims()
	tests := []struct {
		name   string
		kind   cache.Kind
		value  string
		at     time.Time
		claims map[string]any
		want   error
	}{
		{"jti", cache.KindJTI, "jti-1", t0, c, ErrRevoked},
		{"sid", cache.KindSID, "sid-1", t0, c, ErrRevoked},
		{"sub issued before", cache.KindSub, "alice", t0, c, ErrRevoked},
		{"client issued before", cache.KindClient, "client-1", t0, c, ErrRevoked},
		{"client via azp", cache.KindClient, "spa", t0, with(c, "client_id", nil, "azp", "spa"), ErrRevoked},
		{"sub issued after the revocation", cache.KindSub, "alice", t0.Add(-2 * time.Minute), c, nil},
		{"other jti", cache.KindJTI, "jti-2", t0, c, nil},
		{"same jti at another issuer", cache.KindJTI, "jti-1", t0, with(c, "iss", hydraIssuer), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			iss := testIssuer
			if tt.name == "same jti at another issuer" {
				iss = "https://someone-else.example.com"
			}
			h := hdr("RS256", "rs")
			if tt.claims["iss"] == hydraIssuer {
				h["typ"] = "JWT"
			}
			tok := signJWS(t, h, tt.claims, "RS256", f.keys.rsa1)
			// Verified and cached first, revoked afterwards: the cache hit
			// must not skip the check.
			if _, err := f.v.Verify(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			f.v.results.Wait()
			f.revs.revoke(tt.kind, iss, tt.value, tt.at)
			_, err := f.v.Verify(t.Context(), tok)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v; want %v and %v", err, tt.want, ErrInvalidToken)
			}
			if hits := testutil.ToFloat64(f.v.cacheHit); hits != 1 {
				t.Errorf("got %v cache hits; want 1", hits)
			}
		})
	}
}

func TestCache(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheMaxTTL = 5 * time.Minute })
	tok := func(exp time.Duration) string {
		return signJWS(t, hdr("ES256", "es"), with(baseClaims(), "exp", t0.Add(exp).Unix()), "ES256", f.keys.ec256)
	}
	keyOf := func(s string) uint64 { sum := sha256.Sum256([]byte(s)); return binary.LittleEndian.Uint64(sum[:8]) }

	t.Run("TTL is min(max, exp-now)", func(t *testing.T) {
		for _, tt := range []struct {
			exp, want time.Duration
		}{{2 * time.Minute, 2 * time.Minute}, {20 * time.Minute, 5 * time.Minute}} {
			s := tok(tt.exp)
			if _, err := f.v.Verify(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			f.v.results.Wait()
			ttl, ok := f.v.results.GetTTL(keyOf(s))
			if !ok || ttl > tt.want || ttl < tt.want-time.Minute {
				t.Errorf("exp in %v: got TTL %v, %v; want about %v", tt.exp, ttl, ok, tt.want)
			}
		}
	})

	t.Run("an entry past its lifetime on the injected clock is not used", func(t *testing.T) {
		clk := newClock()
		g := newFixture(t, func(c *Config) { c.Clock = clk })
		s := signJWS(t, hdr("RS256", "rs"), baseClaims(), "RS256", g.keys.rsa1)
		if _, err := g.v.Verify(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		g.v.results.Wait()
		clk.Advance(10 * time.Minute)
		_, err := g.v.Verify(t.Context(), s)
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("got %v; want ErrExpired", err)
		}
		// Ristretto's TTL runs on the wall clock; the entry's own deadline
		// on the injected clock turns the lookup into a miss.
		if hits, misses := testutil.ToFloat64(g.v.cacheHit), testutil.ToFloat64(g.v.cacheMiss); hits != 0 || misses != 2 {
			t.Errorf("got %v hits, %v misses; want 0, 2", hits, misses)
		}
	})

	t.Run("hit and miss metrics", func(t *testing.T) {
		g := newFixture(t, nil)
		s := signJWS(t, hdr("RS256", "rs"), baseClaims(), "RS256", g.keys.rsa1)
		for range 3 {
			if _, err := g.v.Verify(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			g.v.results.Wait()
		}
		if _, err := g.v.Verify(t.Context(), "bad"); err == nil {
			t.Fatal("got nil; want an error")
		}
		want := `
# HELP oidcgate_token_cache_total Verified-token cache lookups, by result (hit, miss).
# TYPE oidcgate_token_cache_total counter
oidcgate_token_cache_total{result="hit"} 2
oidcgate_token_cache_total{result="miss"} 2
`
		if err := testutil.GatherAndCompare(g.reg, strings.NewReader(want), "oidcgate_token_cache_total"); err != nil {
			t.Error(err)
		}
	})

	t.Run("a colliding 64-bit key is not a hit", func(t *testing.T) {
		g := newFixture(t, nil)
		s := signJWS(t, hdr("RS256", "rs"), baseClaims(), "RS256", g.keys.rsa1)
		forged := &result{claims: &Claims{Issuer: testIssuer, Subject: "mallory", ExpiresAt: t0.Add(time.Hour)}}
		g.v.results.SetWithTTL(keyOf(s), forged, 1, time.Hour)
		g.v.results.Wait()
		got, err := g.v.Verify(t.Context(), s)
		if err != nil {
			t.Fatal(err)
		}
		if got.Subject != "alice" {
			t.Errorf("got sub %q; want alice (the forged entry must not be served)", got.Subject)
		}
	})

	t.Run("invalid tokens are not cached", func(t *testing.T) {
		g := newFixture(t, nil)
		s := signJWS(t, hdr("RS256", "rs"), with(baseClaims(), "aud", "nope"), "RS256", g.keys.rsa1)
		for range 2 {
			if _, err := g.v.Verify(t.Context(), s); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v; want ErrInvalidToken", err)
			}
			g.v.results.Wait()
		}
		if hits := testutil.ToFloat64(g.v.cacheHit); hits != 0 {
			t.Errorf("got %v hits; want 0", hits)
		}
	})

	t.Run("works after Close", func(t *testing.T) {
		g := newFixture(t, nil)
		g.v.Close()
		g.v.Close()
		if _, err := g.v.Verify(t.Context(), signJWS(t, hdr("RS256", "rs"), baseClaims(), "RS256", g.keys.rsa1)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestUnknownKidCooldown(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Issuers = c.Issuers[:1]
		c.JWKSMinRefetchInterval = 30 * time.Second
	})
	valid := signJWS(t, hdr("RS256", "rs"), baseClaims(), "RS256", f.keys.rsa1)
	if _, err := f.v.Verify(t.Context(), valid); err != nil {
		t.Fatal(err)
	}
	flood := func(round int) {
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() {
				tok := signJWS(t, hdr("RS256", fmt.Sprintf("random-%d-%d", round, i)), baseClaims(), "RS256", f.keys.rsa1)
				_, err := f.v.Verify(t.Context(), tok)
				if !errors.Is(err, ErrInvalidToken) {
					t.Errorf("got %v; want ErrInvalidToken", err)
				}
			})
		}
		wg.Wait()
	}
	steps := []struct {
		advance time.Duration
		want    int64
	}{
		{time.Second, 1},      // within the cooldown of the first fetch
		{29 * time.Second, 2}, // 30s after it: one refetch for the whole flood
		{29 * time.Second, 2}, // 29s after the refetch
		{time.Second, 3},      // 30s after it
		{time.Millisecond, 3},
	}
	for n, s := range steps {
		f.clock.Advance(s.advance)
		flood(n)
		if got := f.idp.jwksHits.Load(); got != s.want {
			t.Fatalf("step %d: got %d JWKS fetches; want %d", n, got, s.want)
		}
	}
	want := fmt.Sprintf(`
# HELP oidcgate_jwks_refresh_total Key set fetches per issuer, by result (ok, error).
# TYPE oidcgate_jwks_refresh_total counter
oidcgate_jwks_refresh_total{issuer=%q,result="error"} 0
oidcgate_jwks_refresh_total{issuer=%q,result="ok"} 3
`, testIssuer, testIssuer)
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "oidcgate_jwks_refresh_total"); err != nil {
		t.Error(err)
	}
}

func TestKeyRotation(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Issuers = c.Issuers[:1] })
	if _, err := f.v.Verify(t.Context(), signJWS(t, hdr("RS256", "rs"), baseClaims(), "RS256", f.keys.rsa1)); err != nil {
		t.Fatal(err)
	}
	f.idp.set(func(p *idp) {
		p.jwks = jwksJSON(t, []jwkSpec{{pub: &f.keys.rsa2.PublicKey, kid: "rs-2", alg: "RS256"}})
	})
	rotated := signJWS(t, hdr("RS256", "rs-2"), baseClaims(), "RS256", f.keys.rsa2)
	if _, err := f.v.Verify(t.Context(), rotated); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("within the cooldown: got %v; want ErrInvalidToken", err)
	}
	f.clock.Advance(30 * time.Second)
	if _, err := f.v.Verify(t.Context(), rotated); err != nil {
		t.Fatalf("after the cooldown: got %v; want the new key fetched", err)
	}
	old := signJWS(t, hdr("RS256", "rs"), with(baseClaims(), "jti", "2"), "RS256", f.keys.rsa1)
	if _, err := f.v.Verify(t.Context(), old); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("retired key: got %v; want ErrInvalidToken", err)
	}
}

func TestNoKidAmbiguous(t *testing.T) {
	f := newFixture(t, nil)
	f.idp.set(func(p *idp) {
		p.jwks = jwksJSON(t, []jwkSpec{
			{pub: &f.keys.rsa1.PublicKey, kid: "a"},
			{pub: &f.keys.rsa2.PublicKey, kid: "b"},
			{pub: &f.keys.rsa1.PublicKey, kid: "dup"},
			{pub: &f.keys.rsa1.PublicKey, kid: "dup"},
		})
	})
	for _, kid := range []string{"", "dup"} {
		_, err := f.v.Verify(t.Context(), signJWS(t, hdr("RS256", kid), baseClaims(), "RS256", f.keys.rsa1))
		if !errors.Is(err, ErrInvalidToken) {
			t.Errorf("kid %q: got %v; want ErrInvalidToken", kid, err)
		}
	}
	if _, err := f.v.Verify(t.Context(), signJWS(t, hdr("RS256", "a"), baseClaims(), "RS256", f.keys.rsa1)); err != nil {
		t.Errorf("kid a: got %v; want nil", err)
	}
}

func TestUnavailable(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Issuers = c.Issuers[:1] })
	f.idp.set(func(p *idp) { p.status = http.StatusServiceUnavailable })
	valid := signJWS(t, hdr("RS256", "rs"), baseClaims(), "RS256", f.keys.rsa1)

	_, err := f.v.Verify(t.Context(), valid)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("no keys yet: got %v; want ErrUnavailable only", err)
	}
	if err := f.v.Ready(t.Context()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "status 503") {
		t.Fatalf("Ready: got %v; want ErrUnavailable naming status 503", err)
	}
	if got := f.idp.jwksHits.Load(); got != 1 {
		t.Errorf("got %d fetches; want 1 (Ready within the cooldown does not fetch)", got)
	}
	// A token from an unknown issuer is a bad credential even now.
	if _, err := f.v.Verify(t.Context(), signJWS(t, hdr("RS256", "rs"), with(baseClaims(), "iss", "https://x.example"), "RS256", f.keys.rsa1)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("unknown issuer: got %v; want ErrInvalidToken", err)
	}

	f.idp.set(func(p *idp) { p.status = http.StatusOK })
	f.clock.Advance(30 * time.Second)
	if err := f.v.Ready(t.Context()); err != nil {
		t.Fatalf("Ready after recovery: got %v; want nil", err)
	}
	if _, err := f.v.Verify(t.Context(), valid); err != nil {
		t.Fatalf("after recovery: got %v; want nil", err)
	}

	// A failed refresh keeps the previous keys; an unknown kid while the
	// source fails cannot be decided.
	f.idp.set(func(p *idp) { p.status = http.StatusInternalServerError })
	f.clock.Advance(30 * time.Second)
	_, err = f.v.Verify(t.Context(), signJWS(t, hdr("RS256", "new"), baseClaims(), "RS256", f.keys.rsa1))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown kid while the JWKS fails: got %v; want ErrUnavailable", err)
	}
	if _, err := f.v.Verify(t.Context(), signJWS(t, hdr("RS256", "rs"), with(baseClaims(), "jti", "x"), "RS256", f.keys.rsa1)); err != nil {
		t.Fatalf("known kid while the JWKS fails: got %v; want the previous keys used", err)
	}
	if got := testutil.ToFloat64(f.v.refreshes.WithLabelValues(testIssuer, "error")); got != 2 {
		t.Errorf("got %v error refreshes; want 2", got)
	}
}

func TestKeySetSources(t *testing.T) {
	k := loadKeys(t)
	good := jwksJSON(t, standardJWKS(k))
	tests := []struct {
		name      string
		discovery bool
		setup     func(p *idp)
		wantErr   string // "" means Ready succeeds
	}{
		{"jwks_uri", false, nil, ""},
		{"discovery", true, nil, ""},
		{"discovery names another issuer", true, func(p *idp) { p.discIssuer = "https://evil.example.com" }, "does not match the configured issuer"},
		{"discovery jwks_uri over plain http", true, func(p *idp) { p.discJWKS = "http://keys.example.com/jwks" }, "must use https"},
		{"status 404", false, func(p *idp) { p.status = http.StatusNotFound }, "status 404"},
		{"not JSON", false, func(p *idp) { p.ctype = "text/html" }, "not JSON"},
		{"jwk-set+json accepted", false, func(p *idp) { p.ctype = "application/jwk-set+json" }, ""},
		{"too large", false, func(p *idp) {
			p.jwks = append([]byte(`{"keys":[],"x":"`), strings.Repeat("a", maxDocumentBytes)+`"}`...)
		}, "larger than"},
		{"single JWK, not a set", false, func(p *idp) { p.jwks = jwksJSON(t, standardJWKS(k)[:1])[8 : len(jwksJSON(t, standardJWKS(k)[:1]))-1] }, "not a JWK Set"},
		{"no usable key", false, func(p *idp) { p.jwks = jwksJSON(t, []jwkSpec{{pub: &k.rsa1.PublicKey, use: "enc"}}) }, "no usable signing key"},
		{"unknown key types are skipped", false, func(p *idp) {
			p.jwks = append([]byte(`{"keys":[{"kty":"ML-DSA","kid":"pq","pub":"AAAA"},`), good[len(`{"keys":[`):]...)
		}, ""},
		{"not JSON body", false, func(p *idp) { p.jwks = []byte("<html>") }, "not a JWK Set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newIDP(t, good)
			if tt.setup != nil {
				p.set(tt.setup)
			}
			is := Issuer{Issuer: p.srv.URL, Audiences: []string{"api"}}
			if !tt.discovery {
				is.JWKSURI = p.jwksURL()
			}
			v, err := New(Config{Issuers: []Issuer{is}, Revocations: newRevocations(), Clock: newClock()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(v.Close)
			err = v.Ready(t.Context())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got %v; want nil", err)
				}
				tok := signJWS(t, hdr("RS256", "rs"), with(baseClaims(), "iss", p.srv.URL), "RS256", k.rsa1)
				if _, err := v.Verify(t.Context(), tok); err != nil {
					t.Fatalf("Verify: got %v; want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v; want ErrUnavailable containing %q", err, tt.wantErr)
			}
			if tt.discovery && p.discHits.Load() != 1 {
				t.Errorf("got %d discovery fetches; want 1", p.discHits.Load())
			}
		})
	}
}

func TestRedirectsRefused(t *testing.T) {
	k := loadKeys(t)
	p := newIDP(t, jwksJSON(t, standardJWKS(k)))
	redirect := newIDP(t, nil)
	redirect.srv.Config.Handler = http.RedirectHandler(p.jwksURL(), http.StatusFound)
	v, err := New(Config{
		Issuers:     []Issuer{{Issuer: testIssuer, JWKSURI: redirect.srv.URL + "/jwks", Audiences: []string{"api"}}},
		Revocations: newRevocations(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	if err := v.Ready(t.Context()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "status 302") {
		t.Fatalf("got %v; want ErrUnavailable with status 302", err)
	}
}

func TestRun(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Issuers = c.Issuers[:1]
		c.JWKSRefreshInterval = time.Millisecond
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.v.Run(ctx) }()
	if err := f.v.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-f.idp.served
	if got := f.idp.jwksHits.Load(); got != 1 {
		t.Fatalf("got %d fetches; want 1 (Run and Ready share one fetch, the ticks wait for the cooldown)", got)
	}
	f.clock.Advance(30 * time.Second)
	<-f.idp.served // a tick after the cooldown refreshes
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: got %v; want nil", err)
	}
	if got := f.idp.jwksHits.Load(); got != 2 {
		t.Errorf("got %d fetches; want 2", got)
	}
}

func TestNewRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		v, err := New(Config{
			Issuers:     []Issuer{{Issuer: testIssuer, Audiences: []string{"api"}}},
			Revocations: newRevocations(),
			Metrics:     reg,
		})
		if err != nil {
			t.Fatalf("got %v; want a second Verifier to share the metrics", err)
		}
		v.Close()
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		err  error
		want string
		is   []error
	}{
		{invalid("aud does not name an accepted audience"), "introspect: invalid token: aud does not name an accepted audience", []error{ErrInvalidToken}},
		{expired("expired"), "introspect: invalid token: expired", []error{ErrInvalidToken, ErrExpired}},
		{errRevoked, "introspect: invalid token: revoked", []error{ErrInvalidToken, ErrRevoked}},
	}
	for _, tt := range tests {
		if tt.err.Error() != tt.want {
			t.Errorf("got %q; want %q", tt.err, tt.want)
		}
		for _, target := range tt.is {
			if !errors.Is(tt.err, target) {
				t.Errorf("%q: got errors.Is(%v) false; want true", tt.err, target)
			}
		}
		if errors.Is(tt.err, ErrUnavailable) {
			t.Errorf("%q wraps ErrUnavailable; want not", tt.err)
		}
	}
}

func TestCancelledCallerDoesNotFailSharedFetch(t *testing.T) {
	k := loadKeys(t)
	body := jwksJSON(t, standardJWKS(k))
	entered, release := make(chan struct{}), make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			close(entered)
		}
		<-release
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	v, err := New(Config{
		Issuers:     []Issuer{{Issuer: testIssuer, JWKSURI: srv.URL, Audiences: []string{"api"}}},
		Revocations: newRevocations(),
		Clock:       newClock(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	tok := signJWS(t, hdr("RS256", "rs"), baseClaims(), "RS256", k.rsa1)

	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { _, err := v.Verify(ctx, tok); first <- err }()
	<-entered
	second := make(chan error, 1)
	go func() { _, err := v.Verify(t.Context(), tok); second <- err }()
	cancel()
	if err := <-first; !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: got %v; want ErrUnavailable and context.Canceled", err)
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("waiting caller: got %v; want the shared fetch to succeed", err)
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("got %d fetches; want 1", got)
	}
}
