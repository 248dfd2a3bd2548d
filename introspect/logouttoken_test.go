package introspect

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testClientID is the gateway's client_id at both fixture issuers.
const testClientID = "gateway"

// newLogoutFixture is newFixture with client_id set at both issuers and
// logout tokens without exp allowed for the Hydra-like issuer only.
func newLogoutFixture(tb testing.TB, mod func(*Config)) *fixture {
	tb.Helper()
	return newFixture(tb, func(c *Config) {
		for i := range c.Issuers {
			c.Issuers[i].ClientID = testClientID
		}
		c.Issuers[1].InsecureLogoutTokenWithoutExp = true
		if mod != nil {
			mod(c)
		}
	})
}

// logoutClaims are valid logout-token claims at t0 for testIssuer
// (OpenID Connect Back-Channel Logout 1.0 §2.4).
func logoutClaims() map[string]any {
	return map[string]any{
		"iss":    testIssuer,
		"aud":    testClientID,
		"iat":    t0.Add(-10 * time.Second).Unix(),
		"exp":    t0.Add(2 * time.Minute).Unix(),
		"jti":    "lt-1",
		"sub":    "alice",
		"sid":    "sid-1",
		"events": map[string]any{backchannelLogoutEvent: map[string]any{}},
	}
}

func logoutHdr(typ string) map[string]any {
	h := map[string]any{"alg": "RS256", "kid": "rs"}
	if typ != "" {
		h["typ"] = typ
	}
	return h
}

// hydraLogoutClaims are shaped like Ory Hydra v2's logout tokens: aud an
// array, a sid, no sub and no exp (../shared/REAL-IDP.md).
func hydraLogoutClaims() map[string]any {
	return with(logoutClaims(), "iss", hydraIssuer, "aud", []string{testClientID}, "sub", nil, "exp", nil)
}

func TestVerifyLogoutToken(t *testing.T) {
	f := newLogoutFixture(t, nil)
	k := f.keys
	c := logoutClaims()
	rs := func(claims map[string]any) string {
		return signJWS(t, logoutHdr("logout+jwt"), claims, "RS256", k.rsa1)
	}
	valid := rs(c)
	parts := strings.Split(valid, ".")
	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	event := func(v any) map[string]any { return map[string]any{backchannelLogoutEvent: v} }

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"valid sub and sid", valid, nil},
		{"valid sid only", rs(with(c, "sub", nil)), nil},
		{"valid sub only", rs(with(c, "sid", nil)), nil},
		{"valid aud array naming the client", rs(with(c, "aud", []string{"other", testClientID})), nil},
		{"valid typ application/logout+jwt", signJWS(t, logoutHdr("application/logout+jwt"), c, "RS256", k.rsa1), nil},
		{"valid typ JWT (Hydra, Keycloak)", signJWS(t, logoutHdr("JWT"), c, "RS256", k.rsa1), nil},
		{"valid without typ (§2.4 only recommends it)", signJWS(t, logoutHdr(""), c, "RS256", k.rsa1), nil},
		{"valid without kid (one RS256 key)", signJWS(t, map[string]any{"alg": "RS256", "typ": "logout+jwt"}, c, "RS256", k.rsa1), nil},
		{"unknown claims ignored", rs(with(c, "acr", "2", "extra", map[string]any{"x": []int{1}})), nil},
		{"other event members ignored", rs(with(c, "events", map[string]any{
			backchannelLogoutEvent: map[string]any{},
			"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{},
		})), nil},
		{"member object with content ignored", rs(with(c, "events", event(map[string]any{"reason": "x"}))), nil},
		{"valid one second before exp", rs(with(c, "exp", t0.Add(time.Second).Unix())), nil},

		// §2.6 item 3 (as ID tokens, OIDC Core §3.1.3.7 items 6-7, RFC 8725 §3.1).
		{"bad signature (other key)", signJWS(t, logoutHdr("logout+jwt"), c, "RS256", k.rsa2), ErrInvalidToken},
		{"bad signature (payload changed)", parts[0] + "." + b64e(mustJSON(t, with(c, "sub", "bob"))) + "." + parts[2], ErrInvalidToken},
		{"signature missing", parts[0] + "." + parts[1] + ".", ErrInvalidToken},
		{"alg none", b64e([]byte(`{"alg":"none","typ":"logout+jwt"}`)) + "." + parts[1] + ".", ErrInvalidToken},
		{"alg None", b64e([]byte(`{"alg":"None"}`)) + "." + parts[1] + "." + parts[2], ErrInvalidToken},
		{"HS256 keyed with the public key (PEM)", signJWS(t, map[string]any{"alg": "HS256", "kid": "rs"}, c, "HS256", pubPEM), ErrInvalidToken},
		{"HS256 keyed with the public key (DER)", signJWS(t, map[string]any{"alg": "HS256", "kid": "rs"}, c, "HS256", pubDER), ErrInvalidToken},
		{"ES256 properly signed, issuer registered RS256", signJWS(t, map[string]any{"alg": "ES256", "kid": "es"}, c, "ES256", k.ec256), ErrInvalidToken},
		{"PS256 properly signed, issuer registered RS256", signJWS(t, map[string]any{"alg": "PS256", "kid": "ps"}, c, "PS256", k.rsa2), ErrInvalidToken},
		{"RS256 header, PS256 signature", signJWS(t, logoutHdr("logout+jwt"), c, "PS256", k.rsa1), ErrInvalidToken},
		{"crit header", signJWS(t, map[string]any{"alg": "RS256", "kid": "rs", "crit": []string{"exp"}, "exp": 1}, c, "RS256", k.rsa1), ErrInvalidToken},

		// §2.6 item 4: iss, aud, iat, exp as for ID tokens.
		{"wrong iss", rs(with(c, "iss", "https://evil.example.com")), ErrInvalidToken},
		{"iss with a trailing slash", rs(with(c, "iss", testIssuer+"/")), ErrInvalidToken},
		{"iss missing", rs(with(c, "iss", nil)), ErrInvalidToken},
		{"wrong aud", rs(with(c, "aud", "someone-else")), ErrInvalidToken},
		{"aud is the access-token audience, not the client", rs(with(c, "aud", "api")), ErrInvalidToken},
		{"aud missing", rs(with(c, "aud", nil)), ErrInvalidToken},
		{"aud empty array", rs(with(c, "aud", []string{})), ErrInvalidToken},
		{"iat missing", rs(with(c, "iat", nil)), ErrInvalidToken},
		{"iat in the future", rs(with(c, "iat", t0.Add(time.Minute).Unix())), ErrInvalidToken},
		{"iat not a number", rs(with(c, "iat", "yesterday")), ErrInvalidToken},
		{"exp missing (§2.4 REQUIRED)", rs(with(c, "exp", nil)), ErrInvalidToken},
		{"expired", rs(with(c, "exp", t0.Add(-time.Second).Unix())), ErrExpired},
		{"expired exactly now", rs(with(c, "exp", t0.Unix())), ErrExpired},
		{"lifetime longer than max_token_lifetime", rs(with(c, "exp", t0.Add(25*time.Hour).Unix())), ErrInvalidToken},
		{"issued longer ago than max_token_lifetime", rs(with(c, "iat", t0.Add(-25*time.Hour).Unix(), "exp", t0.Add(time.Minute).Unix())), ErrExpired},

		// §2.4: jti REQUIRED.
		{"jti missing", rs(with(c, "jti", nil)), ErrInvalidToken},
		{"jti empty", rs(with(c, "jti", "")), ErrInvalidToken},
		{"jti not a string", rs(with(c, "jti", 7)), ErrInvalidToken},

		// §2.6 item 5: sub, sid or both.
		{"neither sub nor sid", rs(with(c, "sub", nil, "sid", nil)), ErrInvalidToken},
		{"sub and sid empty", rs(with(c, "sub", "", "sid", "")), ErrInvalidToken},
		{"sid not a string", rs(with(c, "sid", 1)), ErrInvalidToken},
		{"sub not a string", rs(with(c, "sub", []string{"alice"})), ErrInvalidToken},

		// §2.6 item 6, §2.4: events with the member, whose value is an object.
		{"events missing", rs(with(c, "events", nil)), ErrInvalidToken},
		{"wrong event member", rs(with(c, "events", map[string]any{"http://schemas.openid.net/event/backchannel-logout/": map[string]any{}})), ErrInvalidToken},
		{"only another event", rs(with(c, "events", map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": map[string]any{}})), ErrInvalidToken},
		{"events empty object", rs(with(c, "events", map[string]any{})), ErrInvalidToken},
		{"event member true", rs(with(c, "events", event(true))), ErrInvalidToken},
		{"event member a string", rs(with(c, "events", event("{}"))), ErrInvalidToken},
		{"event member an array", rs(with(c, "events", event([]any{}))), ErrInvalidToken},
		{"event member null", rs(with(c, "events", event(nil))), ErrInvalidToken},
		{"events an array", rs(with(c, "events", []string{backchannelLogoutEvent})), ErrInvalidToken},
		{"events a string", rs(with(c, "events", backchannelLogoutEvent)), ErrInvalidToken},
		{"events null", signJWS(t, logoutHdr("logout+jwt"), with(c, "events", map[string]any(nil)), "RS256", k.rsa1), ErrInvalidToken},

		// §2.6 item 7, §2.4: nonce prohibited.
		{"nonce present", rs(with(c, "nonce", "n-1")), ErrInvalidToken},
		{"nonce empty", rs(with(c, "nonce", "")), ErrInvalidToken},
		{"nonce null", signJWS(t, logoutHdr("logout+jwt"), with(c, "nonce", []string(nil)), "RS256", k.rsa1), ErrInvalidToken},

		// §4.1: explicitly typed JWTs of another kind are not logout tokens.
		{"typ at+jwt", signJWS(t, logoutHdr("at+jwt"), c, "RS256", k.rsa1), ErrInvalidToken},
		{"typ secevent+jwt", signJWS(t, logoutHdr("secevent+jwt"), c, "RS256", k.rsa1), ErrInvalidToken},
		{"typ JOSE", signJWS(t, logoutHdr("JOSE"), c, "RS256", k.rsa1), ErrInvalidToken},

		{"empty", "", ErrInvalidToken},
		{"too long", rs(with(c, "pad", strings.Repeat("x", maxTokenBytes))), ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt, err := f.v.VerifyLogoutToken(t.Context(), tt.token)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
			if err != nil {
				if lt != nil {
					t.Errorf("got a token with error %v", err)
				}
				if !errors.Is(err, ErrInvalidToken) {
					t.Errorf("got %v; want it to wrap ErrInvalidToken", err)
				}
				return
			}
			if lt.Issuer != testIssuer || lt.JTI != "lt-1" || (lt.Subject == "" && lt.SID == "") {
				t.Errorf("got %+v; want iss %s, jti lt-1 and a sub or sid", lt, testIssuer)
			}
		})
	}
}

func TestVerifyLogoutTokenFields(t *testing.T) {
	f := newLogoutFixture(t, nil)
	tok := signJWS(t, logoutHdr("logout+jwt"), with(logoutClaims(), "aud", []string{testClientID, "x"}), "RS256", f.keys.rsa1)
	lt, err := f.v.VerifyLogoutToken(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	want := LogoutToken{
		Issuer: testIssuer, Subject: "alice", SID: "sid-1", JTI: "lt-1",
		IssuedAt: t0.Add(-10 * time.Second), ExpiresAt: t0.Add(2 * time.Minute),
	}
	if lt.Issuer != want.Issuer || lt.Subject != want.Subject || lt.SID != want.SID || lt.JTI != want.JTI ||
		!lt.IssuedAt.Equal(want.IssuedAt) || !lt.ExpiresAt.Equal(want.ExpiresAt) ||
		strings.Join(lt.Audience, ",") != testClientID+",x" {
		t.Errorf("got %+v; want %+v with aud [%s x]", *lt, want, testClientID)
	}
}

// TestVerifyLogoutTokenWithoutExp covers Issuer.InsecureLogoutTokenWithoutExp:
// a logout token without exp is accepted only from the issuer that has it
// on, and only while its iat is recent.
func TestVerifyLogoutTokenWithoutExp(t *testing.T) {
	h := logoutClaims()
	hydra := hydraLogoutClaims()
	tests := []struct {
		name   string
		claims map[string]any
		skew   time.Duration
		want   error
	}{
		{"Hydra-like, iat 10s ago", hydra, 0, nil},
		{"Hydra-like, iat exactly 2m ago", with(hydra, "iat", t0.Add(-2*time.Minute).Unix()), 0, nil},
		{"Hydra-like, iat 2m1s ago", with(hydra, "iat", t0.Add(-2*time.Minute-time.Second).Unix()), 0, ErrExpired},
		{"Hydra-like, iat 2m20s ago within 30s skew", with(hydra, "iat", t0.Add(-2*time.Minute-20*time.Second).Unix()), 30 * time.Second, nil},
		{"Hydra-like, iat an hour ago", with(hydra, "iat", t0.Add(-time.Hour).Unix()), 0, ErrExpired},
		{"Hydra-like, iat missing", with(hydra, "iat", nil), 0, ErrInvalidToken},
		{"Hydra-like, iat in the future", with(hydra, "iat", t0.Add(time.Minute).Unix()), 0, ErrInvalidToken},
		{"Hydra-like with exp is checked as usual", with(hydra, "exp", t0.Add(-time.Second).Unix()), 0, ErrExpired},
		{"Hydra-like with a valid exp", with(hydra, "exp", t0.Add(time.Minute).Unix()), 0, nil},
		{"no exp from the strict issuer", with(h, "exp", nil), 0, ErrInvalidToken},
		{"Hydra-like token claiming the strict issuer", with(hydra, "iss", testIssuer), 0, ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newLogoutFixture(t, func(c *Config) { c.ClockSkew = tt.skew })
			tok := signJWS(t, logoutHdr("JWT"), tt.claims, "RS256", f.keys.rsa1)
			lt, err := f.v.VerifyLogoutToken(t.Context(), tok)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
			if err == nil && tt.claims["exp"] == nil && !lt.ExpiresAt.IsZero() {
				t.Errorf("ExpiresAt: got %v; want zero", lt.ExpiresAt)
			}
		})
	}
}

// TestVerifyLogoutTokenRegisteredAlg checks that the only alg accepted is
// the issuer's id_token_signed_response_alg, whatever else its key set
// holds (§2.6 item 3, OIDC Core §3.1.3.7 item 7).
func TestVerifyLogoutTokenRegisteredAlg(t *testing.T) {
	f := newLogoutFixture(t, func(c *Config) { c.Issuers[0].IDTokenSignedResponseAlg = "ES256" })
	k := f.keys
	c := logoutClaims()
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"ES256 registered and used", signJWS(t, map[string]any{"alg": "ES256", "kid": "es", "typ": "logout+jwt"}, c, "ES256", k.ec256), nil},
		{"RS256 properly signed", signJWS(t, logoutHdr("logout+jwt"), c, "RS256", k.rsa1), ErrInvalidToken},
		{"EdDSA properly signed", signJWS(t, map[string]any{"alg": "EdDSA", "kid": "ed"}, c, "EdDSA", k.ed), ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.v.VerifyLogoutToken(t.Context(), tt.token)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyLogoutTokenKeysUnavailable(t *testing.T) {
	f := newLogoutFixture(t, nil)
	f.idp.set(func(p *idp) { p.status = 500 })
	tok := signJWS(t, logoutHdr("logout+jwt"), logoutClaims(), "RS256", f.keys.rsa1)
	if _, err := f.v.VerifyLogoutToken(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v; want ErrUnavailable", err)
	}
}

// logoutFuzzSeeds are valid and near-valid logout tokens for the fixture.
func logoutFuzzSeeds(tb testing.TB, k *testKeys) []string {
	c := logoutClaims()
	valid := signJWS(tb, logoutHdr("logout+jwt"), c, "RS256", k.rsa1)
	p := strings.Split(valid, ".")
	return []string{
		valid,
		signJWS(tb, logoutHdr("JWT"), hydraLogoutClaims(), "RS256", k.rsa1),
		signJWS(tb, logoutHdr("logout+jwt"), with(c, "nonce", "n"), "RS256", k.rsa1),
		signJWS(tb, logoutHdr("logout+jwt"), with(c, "events", map[string]any{backchannelLogoutEvent: true}), "RS256", k.rsa1),
		signJWS(tb, map[string]any{"alg": "ES256", "kid": "es"}, c, "ES256", k.ec256),
		signJWS(tb, map[string]any{"alg": "HS256", "kid": "rs"}, c, "HS256", []byte("secret")),
		b64e([]byte(`{"alg":"none"}`)) + "." + p[1] + ".",
		p[0] + "." + p[1] + "." + p[2] + "." + p[2] + ".x",
		"",
		"a.b.c",
	}
}

// FuzzVerifyLogoutToken checks that VerifyLogoutToken never panics and
// accepts only tokens signed RS256 (both issuers' registered alg) by a test
// key, with the claims §2.4 requires.
func FuzzVerifyLogoutToken(f *testing.F) {
	fx := newLogoutFixture(f, nil)
	for _, s := range logoutFuzzSeeds(f, fx.keys) {
		f.Add(s)
	}
	pubs := []crypto.PublicKey{&fx.keys.rsa1.PublicKey, &fx.keys.rsa2.PublicKey, &fx.keys.ec256.PublicKey, fx.keys.ed.Public()}
	f.Fuzz(func(t *testing.T, raw string) {
		lt, err := fx.v.VerifyLogoutToken(context.Background(), raw)
		if err != nil {
			if lt != nil {
				t.Fatalf("got a token with error %v", err)
			}
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("got %v; want ErrInvalidToken or ErrUnavailable", err)
			}
			return
		}
		alg, ok := independentlyVerified(raw, pubs)
		if !ok || alg != "RS256" {
			t.Fatalf("accepted a token not signed RS256 by a test key (alg %q): %q", alg, raw)
		}
		if lt.JTI == "" || (lt.Subject == "" && lt.SID == "") || lt.IssuedAt.IsZero() {
			t.Fatalf("accepted a token without jti, sub/sid or iat: %+v", lt)
		}
		if lt.ExpiresAt.IsZero() && lt.Issuer != hydraIssuer {
			t.Fatalf("accepted a token without exp from %s", lt.Issuer)
		}
	})
}

// TestLogoutFuzzCorpusAccepted keeps the committed valid seeds valid, so
// that the fuzzer mutates tokens that pass every check.
func TestLogoutFuzzCorpusAccepted(t *testing.T) {
	fx := newLogoutFixture(t, nil)
	for _, name := range []string{"valid-sub-sid", "hydra-no-exp"} {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzVerifyLogoutToken", name))
		if err != nil {
			t.Fatal(err)
		}
		_, lit, _ := strings.Cut(strings.TrimSpace(string(b)), "\nstring(")
		raw, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := fx.v.VerifyLogoutToken(t.Context(), raw); err != nil {
			t.Errorf("%s: got %v; want accepted", name, err)
		}
	}
}

// BenchmarkVerifyLogoutToken is a full RS256 logout-token verification
// (nothing is cached). Run with -cpu=1 for the tokens/s of one core.
func BenchmarkVerifyLogoutToken(b *testing.B) {
	f := newLogoutFixture(b, nil)
	tok := signJWS(b, logoutHdr("logout+jwt"), logoutClaims(), "RS256", f.keys.rsa1)
	ctx := context.Background()
	if _, err := f.v.VerifyLogoutToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.VerifyLogoutToken(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyLogoutTokenRefusesSET proves that a Shared Signals SET posted
// to the back-channel logout endpoint is refused, even when it names a
// configured issuer, this client and a sub or sid.
func TestVerifyLogoutTokenRefusesSET(t *testing.T) {
	f := newLogoutFixture(t, nil)
	set := with(logoutClaims(), "events", map[string]any{EventSessionRevoked: map[string]any{}}, "exp", nil)
	tests := []struct {
		name   string
		hdr    map[string]any
		claims map[string]any
	}{
		{"typ secevent+jwt", logoutHdr("secevent+jwt"), set},
		{"typ secevent+jwt with the logout event", logoutHdr("secevent+jwt"), logoutClaims()},
		{"no typ, CAEP event", logoutHdr(""), with(set, "exp", logoutClaims()["exp"])},
		{"typ JWT, CAEP event", logoutHdr("JWT"), with(set, "exp", logoutClaims()["exp"])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt, err := f.v.VerifyLogoutToken(t.Context(), signJWS(t, tt.hdr, tt.claims, "RS256", f.keys.rsa1))
			if lt != nil || !errors.Is(err, ErrInvalidToken) {
				t.Errorf("got %+v, %v; want ErrInvalidToken", lt, err)
			}
		})
	}
}
