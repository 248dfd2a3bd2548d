package logout

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// gtrAudience is the aud of the fixture's Universal Logout JWTs.
const gtrAudience = gatewayURL + UniversalLogoutPath

// gtrClaims are a valid Universal Logout JWT's claims at t0 from the
// strict issuer.
func (f *rxFixture) gtrClaims() map[string]any {
	return map[string]any{
		"iss": f.strict,
		"sub": "okta-universal-logout",
		"aud": gtrAudience,
		"iat": t0.Add(-5 * time.Second).Unix(),
		"exp": t0.Add(2 * time.Minute).Unix(),
		"jti": "gtr-1",
	}
}

func (f *rxFixture) gtrJWT(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return sign(tb, f.key, map[string]any{"alg": "ES256", "kid": keyID, "typ": "JWT"}, claims)
}

// issSubBody names sub of iss.
func issSubBody(iss, sub string) string {
	return `{"sub_id":{"format":"iss_sub","iss":"` + iss + `","sub":"` + sub + `"}}`
}

func gtrRequest(jwt, contentType, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, UniversalLogoutPath, strings.NewReader(body))
	if jwt != "" {
		r.Header.Set("Authorization", "Bearer "+jwt)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

func (f *rxFixture) gtr(t *testing.T, jwt, body string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	f.ul.ServeHTTP(w, gtrRequest(jwt, "application/json", body))
	return w
}

// TestUniversalLogoutIssSub: a valid request stores a sub revocation
// issued before now, audited with the caller as initiator, before the
// 204; credentials of the user issued before it are refused, later ones
// are not.
func TestUniversalLogoutIssSub(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-"})
	want := cache.Entry{Issuer: f.strict, Kind: cache.KindSub, Value: "alice"}
	w := &statusAtWrite{ResponseRecorder: httptest.NewRecorder(), check: func() bool {
		_, ok := f.store.Get(want.Issuer, want.Kind, want.Value)
		return ok
	}}
	f.ul.ServeHTTP(w, gtrRequest(f.gtrJWT(t, f.gtrClaims()), "application/json", issSubBody(f.strict, "alice")))
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("got %d %q; want 204 and no body", w.Code, w.Body.String())
	}
	if !w.held {
		t.Error("204 written before the revocation was stored")
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control: got %q; want no-store", got)
	}
	e, _ := f.store.Get(want.Issuer, want.Kind, want.Value)
	if !e.RevokedAt.Equal(t0) || e.Reason != "universal_logout" || !strings.HasPrefix(e.Initiator, "universal_logout:"+f.strict+" jti_sha256:") {
		t.Errorf("entry: got %+v; want revoked at %v, reason universal_logout, initiator universal_logout:%s ...", e, t0, f.strict)
	}
	if !e.ExpiresAt.Equal(t0.Add(time.Hour + 2*skew)) {
		t.Errorf("expires_at: got %v; want %v", e.ExpiresAt, t0.Add(time.Hour+2*skew))
	}
	before := cache.Credential{Issuer: f.strict, Sub: "alice", IssuedAt: t0.Add(-time.Minute)}
	later := cache.Credential{Issuer: f.strict, Sub: "alice", IssuedAt: t0.Add(skew + time.Second)}
	if !f.store.IsRevoked(&before) || f.store.IsRevoked(&later) {
		t.Errorf("IsRevoked: issued before %v, after %v; want true, false", f.store.IsRevoked(&before), f.store.IsRevoked(&later))
	}
	if got := counterValue(t, f.reg, "oidcgate_universal_logout_total", resultOK); got != 1 {
		t.Errorf("ok counter: got %v; want 1", got)
	}
	if strings.Contains(f.logs.String(), "alice") {
		t.Error("the log names the subject in clear")
	}
}

// TestUniversalLogoutUnauthenticated: every request that does not carry
// a valid, fresh JWT for this endpoint from a configured issuer is
// answered 401 with a challenge, and nothing is revoked.
func TestUniversalLogoutUnauthenticated(t *testing.T) {
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body := func(f *rxFixture) string { return issSubBody(f.strict, "alice") }
	cases := []struct {
		name string
		jwt  func(*rxFixture) string
	}{
		{"no Authorization", func(*rxFixture) string { return "" }},
		{"not a JWT", func(*rxFixture) string { return "f5641763544a7b24b08e4f74045" }},
		{"wrong aud", func(f *rxFixture) string {
			return f.gtrJWT(t, with(f.gtrClaims(), "aud", "https://gw.example/oauth2/backchannel-logout"))
		}},
		{"aud of the issuer's API", func(f *rxFixture) string { return f.gtrJWT(t, with(f.gtrClaims(), "aud", "api")) }},
		{"no aud", func(f *rxFixture) string { return f.gtrJWT(t, with(f.gtrClaims(), "aud", nil)) }},
		{"expired", func(f *rxFixture) string {
			return f.gtrJWT(t, with(f.gtrClaims(), "iat", t0.Add(-4*time.Minute).Unix(), "exp", t0.Add(-time.Minute).Unix()))
		}},
		{"no exp", func(f *rxFixture) string { return f.gtrJWT(t, with(f.gtrClaims(), "exp", nil)) }},
		{"long-lived", func(f *rxFixture) string {
			return f.gtrJWT(t, with(f.gtrClaims(), "exp", t0.Add(time.Hour).Unix()))
		}},
		{"no jti", func(f *rxFixture) string { return f.gtrJWT(t, with(f.gtrClaims(), "jti", nil)) }},
		{"wrong issuer", func(f *rxFixture) string {
			return f.gtrJWT(t, with(f.gtrClaims(), "iss", "https://evil.example"))
		}},
		{"bad signature", func(f *rxFixture) string {
			return sign(t, other, map[string]any{"alg": "ES256", "kid": keyID, "typ": "JWT"}, f.gtrClaims())
		}},
		{"alg none", func(f *rxFixture) string {
			jwt := f.gtrJWT(t, f.gtrClaims())
			h := b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
			return h + jwt[strings.Index(jwt, "."):strings.LastIndex(jwt, ".")] + "."
		}},
		{"alg HS256", func(f *rxFixture) string {
			return sign(t, f.key, map[string]any{"alg": "HS256", "kid": keyID, "typ": "JWT"}, f.gtrClaims())
		}},
		{"an access token", func(f *rxFixture) string {
			return sign(t, f.key, map[string]any{"alg": "ES256", "kid": keyID, "typ": "at+jwt"}, f.gtrClaims())
		}},
		{"a logout token", func(f *rxFixture) string {
			return f.gtrJWT(t, with(f.gtrClaims(), "events", map[string]any{bclEvent: map[string]any{}}))
		}},
		{"an ID token", func(f *rxFixture) string { return f.gtrJWT(t, with(f.gtrClaims(), "nonce", "n")) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newRxFixture(t, rxOptions{path: "-"})
			w := f.gtr(t, tc.jwt(f), body(f))
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("got %d %s; want 401", w.Code, w.Body.String())
			}
			if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
				t.Errorf("WWW-Authenticate: got %q; want a Bearer challenge", got)
			}
			if e := decodeError(t, w); e.Error != "invalid_token" {
				t.Errorf("error: got %q; want invalid_token", e.Error)
			}
			if n := f.store.Len(); n != 0 {
				t.Errorf("store holds %d entries; want none", n)
			}
		})
	}
}

// TestUniversalLogoutReplay: a JWT is used once; a replay later is a 401
// and does not apply the revocation again at a later time.
func TestUniversalLogoutReplay(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-"})
	jwt := f.gtrJWT(t, f.gtrClaims())
	if w := f.gtr(t, jwt, issSubBody(f.strict, "alice")); w.Code != http.StatusNoContent {
		t.Fatalf("first: got %d %s; want 204", w.Code, w.Body.String())
	}
	f.clock.Advance(30 * time.Second)
	for _, body := range []string{issSubBody(f.strict, "alice"), issSubBody(f.strict, "bob")} {
		w := f.gtr(t, jwt, body)
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("replay: got %d %s; want 401", w.Code, w.Body.String())
		}
	}
	if e, _ := f.store.Get(f.strict, cache.KindSub, "alice"); !e.RevokedAt.Equal(t0) {
		t.Errorf("revoked_at after a replay: got %v; want %v", e.RevokedAt, t0)
	}
	if _, ok := f.store.Get(f.strict, cache.KindSub, "bob"); ok {
		t.Error("a replayed JWT revoked another user")
	}
}

// TestUniversalLogoutRefused: malformed requests are 400, users the
// caller may not revoke 403, users the gateway does not know 404; none
// revokes anything, and each answers an OAuth error body.
func TestUniversalLogoutRefused(t *testing.T) {
	cases := []struct {
		name        string
		contentType string
		body        func(*rxFixture) string
		status      int
		code        string
	}{
		{"not an object", "application/json", func(*rxFixture) string { return `[{"sub_id":{}}]` }, 400, "invalid_request"},
		{"not JSON", "application/json", func(*rxFixture) string { return `sub_id=alice` }, 400, "invalid_request"},
		{"empty", "application/json", func(*rxFixture) string { return `` }, 400, "invalid_request"},
		{"no sub_id", "application/json", func(*rxFixture) string { return `{}` }, 400, "invalid_request"},
		{"unknown format", "application/json", func(*rxFixture) string {
			return `{"sub_id":{"format":"opaque","id":"00u1dnq5S0CfjlkpABCD"}}`
		}, 400, "invalid_request"},
		{"unknown member", "application/json", func(f *rxFixture) string {
			return `{"sub_id":{"format":"iss_sub","iss":"` + f.strict + `","sub":"alice"},"also":1}`
		}, 400, "invalid_request"},
		{"sub_id twice", "application/json", func(f *rxFixture) string {
			return `{"sub_id":{"format":"email","email":"a@x"},"sub_id":{"format":"iss_sub","iss":"` + f.strict + `","sub":"alice"}}`
		}, 400, "invalid_request"},
		{"trailing data", "application/json", func(f *rxFixture) string { return issSubBody(f.strict, "alice") + `{}` }, 400, "invalid_request"},
		{"too large", "application/json", func(f *rxFixture) string {
			return `{"sub_id":{"format":"iss_sub","iss":"` + f.strict + `","sub":"` + strings.Repeat("a", 64<<10) + `"}}`
		}, 400, "invalid_request"},
		{"form body", "application/x-www-form-urlencoded", func(f *rxFixture) string { return issSubBody(f.strict, "alice") }, 400, "invalid_request"},
		{"another issuer's user", "application/json", func(f *rxFixture) string { return issSubBody(f.hydra, "alice") }, 403, "access_denied"},
		{"unknown issuer", "application/json", func(*rxFixture) string { return issSubBody("https://elsewhere.example", "alice") }, 404, "invalid_request"},
		{"unknown email", "application/json", func(*rxFixture) string {
			return `{"sub_id":{"format":"email","email":"nobody@example.com"}}`
		}, 404, "invalid_request"},
		{"not an email address", "application/json", func(*rxFixture) string {
			return `{"sub_id":{"format":"email","email":"nobody"}}`
		}, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newRxFixture(t, rxOptions{path: "-"})
			w := httptest.NewRecorder()
			f.ul.ServeHTTP(w, gtrRequest(f.gtrJWT(t, f.gtrClaims()), tc.contentType, tc.body(f)))
			if w.Code != tc.status {
				t.Fatalf("got %d %s; want %d", w.Code, w.Body.String(), tc.status)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type: got %q; want application/json", got)
			}
			if e := decodeError(t, w); e.Error != tc.code || e.Description == "" {
				t.Errorf("error: got %+v; want %s with a description", e, tc.code)
			}
			if n := f.store.Len(); n != 0 {
				t.Errorf("store holds %d entries; want none", n)
			}
		})
	}
}

// TestUniversalLogoutEmail: an email subject revokes, as sub
// revocations, the users of the caller's issuer whose verified email a
// login recorded (compared case-insensitively) — never another issuer's;
// an email no login recorded is 404; a directory that cannot answer 422.
func TestUniversalLogoutEmail(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) { c.Emails = c.Store.(*cache.Store) }})
	ctx := context.Background()
	for _, o := range []cache.EmailOwner{{Issuer: f.strict, Sub: "alice"}, {Issuer: f.strict, Sub: "alice-2"}, {Issuer: f.hydra, Sub: "alice-h"}} {
		if err := f.store.RecordEmail(ctx, "alice@example.com", o, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	w := f.gtr(t, f.gtrJWT(t, f.gtrClaims()), `{"sub_id":{"format":"email","email":"Alice@Example.COM"}}`)
	if w.Code != http.StatusNoContent {
		t.Fatalf("got %d %s; want 204", w.Code, w.Body)
	}
	for _, sub := range []string{"alice", "alice-2"} {
		if e, ok := f.store.Get(f.strict, cache.KindSub, sub); !ok || !e.RevokedAt.Equal(t0) || e.Reason != "universal_logout" {
			t.Errorf("sub %s: got %+v, %v; want revoked at %v", sub, e, ok, t0)
		}
	}
	if _, ok := f.store.Get(f.hydra, cache.KindSub, "alice-h"); ok {
		t.Error("a user of another issuer was revoked")
	}
	session := cache.Credential{Issuer: f.strict, Sub: "alice", SID: "s-1", SessionID: cache.SessionDigest("gw-1"), IssuedAt: t0.Add(-time.Minute)}
	if !f.store.IsRevoked(&session) {
		t.Error("alice's session survived")
	}

	w = f.gtr(t, f.gtrJWT(t, with(f.gtrClaims(), "jti", "gtr-2")), `{"sub_id":{"format":"email","email":"bob@example.com"}}`)
	if w.Code != http.StatusNotFound {
		t.Errorf("unknown email: got %d %s; want 404", w.Code, w.Body)
	}

	down := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) { c.Emails = downDirectory{} }})
	w = down.gtr(t, down.gtrJWT(t, down.gtrClaims()), `{"sub_id":{"format":"email","email":"alice@example.com"}}`)
	if w.Code != http.StatusUnprocessableEntity {
		t.Errorf("directory down: got %d %s; want 422", w.Code, w.Body)
	}
}

type downDirectory struct{}

func (downDirectory) EmailOwners(context.Context, string) ([]cache.EmailOwner, error) {
	return nil, errors.New("redis unreachable")
}

// TestUniversalLogoutStoreFailure: a failed write is a 422, never a 204.
func TestUniversalLogoutStoreFailure(t *testing.T) {
	flaky := &flakyStore{}
	f := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) {
		flaky.Store = c.Store
		c.Store = flaky
	}})
	flaky.fail.Store(true)
	w := f.gtr(t, f.gtrJWT(t, f.gtrClaims()), issSubBody(f.strict, "alice"))
	if w.Code != http.StatusUnprocessableEntity {
		t.Fatalf("got %d %s; want 422", w.Code, w.Body.String())
	}
	flaky.fail.Store(false)
	w = f.gtr(t, f.gtrJWT(t, with(f.gtrClaims(), "jti", "gtr-2")), issSubBody(f.strict, "alice"))
	if w.Code != http.StatusNoContent {
		t.Fatalf("retry with a new JWT: got %d %s; want 204", w.Code, w.Body.String())
	}
}

// TestUniversalLogoutMethod: only POST.
func TestUniversalLogoutMethod(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-"})
	w := httptest.NewRecorder()
	f.ul.ServeHTTP(w, httptest.NewRequestWithContext(context.Background(), http.MethodGet, UniversalLogoutPath, nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodPost {
		t.Errorf("got %d Allow %q; want 405 Allow POST", w.Code, w.Header().Get("Allow"))
	}
}
