package introspect

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// idClaims are valid ID-token claims at t0 for testIssuer and the gateway
// client.
func idClaims() map[string]any {
	return map[string]any{
		"iss":   testIssuer,
		"sub":   "alice",
		"aud":   testClientID,
		"exp":   t0.Add(5 * time.Minute).Unix(),
		"iat":   t0.Add(-10 * time.Second).Unix(),
		"nonce": "n-0123456789",
		"sid":   "sid-1",
	}
}

// TestVerifyIDToken has one case per check of OpenID Connect Core 1.0
// §3.1.3.7 that VerifyIDToken makes.
func TestVerifyIDToken(t *testing.T) {
	f := newLogoutFixture(t, nil)
	k := f.keys
	c := idClaims()
	hd := map[string]any{"alg": "RS256", "kid": "rs", "typ": "JWT"}
	rs := func(claims map[string]any) string { return signJWS(t, hd, claims, "RS256", k.rsa1) }
	valid := rs(c)
	parts := strings.Split(valid, ".")
	const nonce = "n-0123456789"

	tests := []struct {
		name   string
		issuer string // the issuer the login was sent to; "" means testIssuer
		token  string
		nonce  string
		want   error
	}{
		{"valid", "", valid, nonce, nil},
		{"valid without typ", "", signJWS(t, map[string]any{"alg": "RS256", "kid": "rs"}, c, "RS256", k.rsa1), nonce, nil},
		{"valid aud array with azp", "", rs(with(c, "aud", []string{testClientID, "api"}, "azp", testClientID)), nonce, nil},
		{"valid single aud with azp", "", rs(with(c, "azp", testClientID)), nonce, nil},
		{"valid no nonce sent, token has one", "", valid, "", nil},
		{"valid no nonce sent, token has none", "", rs(with(c, "nonce", nil)), "", nil},
		{"unknown claims ignored", "", rs(with(c, "amr", []string{"pwd"}, "x", 1)), nonce, nil},

		// Item 2: iss must be exactly the issuer the login was sent to.
		{"iss is another configured issuer", hydraIssuer, valid, nonce, ErrInvalidToken},
		{"asked issuer not configured", "https://evil.example.com", valid, nonce, ErrInvalidToken},
		{"iss unknown", "", rs(with(c, "iss", "https://evil.example.com")), nonce, ErrInvalidToken},
		{"iss with a trailing slash", "", rs(with(c, "iss", testIssuer+"/")), nonce, ErrInvalidToken},

		// Item 3: aud contains the client_id.
		{"aud another client", "", rs(with(c, "aud", "other")), nonce, ErrInvalidToken},
		{"aud missing", "", rs(with(c, "aud", nil)), nonce, ErrInvalidToken},
		{"aud array without the client", "", rs(with(c, "aud", []string{"a", "b"}, "azp", testClientID)), nonce, ErrInvalidToken},
		{"aud with an untrusted extra audience", "", rs(with(c, "aud", []string{testClientID, "evil"}, "azp", testClientID)), nonce, ErrInvalidToken},

		// Items 4-5: azp.
		{"several audiences without azp", "", rs(with(c, "aud", []string{testClientID, "api"})), nonce, ErrInvalidToken},
		{"azp another client", "", rs(with(c, "aud", []string{testClientID, "api"}, "azp", "api")), nonce, ErrInvalidToken},
		{"azp another client, single aud", "", rs(with(c, "azp", "api")), nonce, ErrInvalidToken},
		{"azp not a string", "", rs(with(c, "azp", 1)), nonce, ErrInvalidToken},

		// Items 6-7: signature, and alg exactly id_token_signed_response_alg.
		{"bad signature", "", signJWS(t, hd, c, "RS256", k.rsa2), nonce, ErrInvalidToken},
		{"payload changed", "", parts[0] + "." + b64e(mustJSON(t, with(c, "sub", "bob"))) + "." + parts[2], nonce, ErrInvalidToken},
		{"alg none", "", b64e([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".", nonce, ErrInvalidToken},
		{"HS256", "", signJWS(t, map[string]any{"alg": "HS256", "kid": "rs"}, c, "HS256", []byte("secret")), nonce, ErrInvalidToken},
		{"ES256 properly signed, RS256 registered", "", signJWS(t, map[string]any{"alg": "ES256", "kid": "es"}, c, "ES256", k.ec256), nonce, ErrInvalidToken},

		// Items 9-10: exp and iat.
		{"expired", "", rs(with(c, "exp", t0.Add(-time.Second).Unix())), nonce, ErrExpired},
		{"exp missing", "", rs(with(c, "exp", nil)), nonce, ErrInvalidToken},
		{"iat missing", "", rs(with(c, "iat", nil)), nonce, ErrInvalidToken},
		{"iat in the future", "", rs(with(c, "iat", t0.Add(time.Minute).Unix())), nonce, ErrInvalidToken},
		{"iat too long ago", "", rs(with(c, "iat", t0.Add(-25*time.Hour).Unix())), nonce, ErrExpired},
		{"lifetime longer than max_token_lifetime", "", rs(with(c, "exp", t0.Add(25*time.Hour).Unix())), nonce, ErrInvalidToken},

		// Item 11: nonce.
		{"nonce differs", "", valid, "n-other", ErrInvalidToken},
		{"nonce a prefix", "", valid, nonce[:5], ErrInvalidToken},
		{"nonce missing", "", rs(with(c, "nonce", nil)), nonce, ErrInvalidToken},
		{"nonce not a string", "", rs(with(c, "nonce", 5)), nonce, ErrInvalidToken},

		// OIDC Core §2: sub REQUIRED.
		{"sub missing", "", rs(with(c, "sub", nil)), nonce, ErrInvalidToken},

		// Explicitly typed JWTs of other kinds.
		{"typ at+jwt", "", signJWS(t, map[string]any{"alg": "RS256", "kid": "rs", "typ": "at+jwt"}, c, "RS256", k.rsa1), nonce, ErrInvalidToken},
		{"typ logout+jwt", "", signJWS(t, logoutHdr("logout+jwt"), c, "RS256", k.rsa1), nonce, ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss := tt.issuer
			if iss == "" {
				iss = testIssuer
			}
			got, err := f.v.VerifyIDToken(t.Context(), iss, tt.token, tt.nonce)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
			if err == nil && (got.Subject != "alice" || got.Issuer != testIssuer || got.SID != "sid-1") {
				t.Errorf("got %+v; want sub alice, iss %s, sid sid-1", got, testIssuer)
			}
		})
	}
}

func TestVerifyIDTokenWithoutClientID(t *testing.T) {
	f := newFixture(t, nil)
	tok := signJWS(t, map[string]any{"alg": "RS256", "kid": "rs"}, idClaims(), "RS256", f.keys.rsa1)
	if _, err := f.v.VerifyIDToken(t.Context(), testIssuer, tok, ""); err == nil {
		t.Fatal("got nil; want an error for an issuer without client_id")
	}
}
