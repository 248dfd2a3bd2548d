package introspect

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

const (
	appID     = "app-1"
	appSecret = "app-1-secret-0123456789"
)

// serverFixture is a Server in front of a remote fixture (one issuer that
// validates JWTs locally and introspects opaque tokens).
type serverFixture struct {
	*remoteFixture
	srv  *Server
	http *httptest.Server
	jwt  string // a valid access token (jti jti-1)
}

func newServerFixture(t *testing.T, store Revoker) *serverFixture {
	t.Helper()
	return newServerFixtureWith(t, store, nil)
}

// newServerFixtureWith is newServerFixture with change applied to the
// issuer's config.
func newServerFixtureWith(t *testing.T, store Revoker, change func(*Issuer)) *serverFixture {
	t.Helper()
	f := newRemoteFixture(t, change)
	if store == nil {
		store = f.store
	}
	s, err := NewServer(ServerConfig{
		Clients:  []Client{{ClientID: appID, ClientSecret: appSecret}},
		Verifier: f.v,
		Store:    store,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/introspect", s.ServeIntrospect)
	mux.HandleFunc("/revoke", s.ServeRevoke)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	keys := loadKeys(t)
	tok := signJWS(t, map[string]any{"alg": "RS256", "kid": "r1", "typ": "at+jwt"}, baseClaims(), "RS256", keys.rsa1)
	return &serverFixture{remoteFixture: f, srv: s, http: hs, jwt: tok}
}

// post sends form to path with Basic credentials (user "" sends none).
func (f *serverFixture) post(t *testing.T, path, user, pass string, form url.Values) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.http.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestIntrospectActiveJWT(t *testing.T) {
	f := newServerFixture(t, nil)
	status, hdr, body := f.post(t, "/introspect", appID, appSecret, url.Values{"token": {f.jwt}, "token_type_hint": {"refresh_token"}})
	if status != http.StatusOK {
		t.Fatalf("status: got %d; want 200 (%s)", status, body)
	}
	if got := hdr.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control: got %q; want no-store", got)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"active": true, "scope": "read write", "client_id": "client-1", "sub": "alice",
		"aud": []any{"api"}, "iss": testIssuer, "exp": float64(t0.Add(10 * time.Minute).Unix()),
		"iat": float64(t0.Add(-time.Minute).Unix()), "nbf": float64(t0.Add(-time.Minute).Unix()),
		"jti": "jti-1", "token_type": "Bearer", "sid": "sid-1",
	}
	for k, w := range want {
		if g, _ := json.Marshal(got[k]); string(g) != string(mustJSON(t, w)) {
			t.Errorf("%s: got %s; want %s", k, g, mustJSON(t, w))
		}
	}
}

func TestIntrospectActiveOpaque(t *testing.T) {
	f := newServerFixture(t, nil)
	_, _, body := f.post(t, "/introspect", appID, appSecret, url.Values{"token": {"opaque-1"}})
	var got struct {
		Active   bool   `json:"active"`
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || !got.Active || got.ClientID != "svc-1" {
		t.Errorf("opaque: got %s; want active for svc-1", body)
	}
}

// TestIntrospectInactive: every token that is not good gets exactly
// {"active":false}.
func TestIntrospectInactive(t *testing.T) {
	f := newServerFixture(t, nil)
	keys := loadKeys(t)
	expired := signJWS(t, map[string]any{"alg": "RS256", "kid": "r1", "typ": "at+jwt"},
		with(baseClaims(), "exp", t0.Add(-time.Minute).Unix(), "jti", "jti-old"), "RS256", keys.rsa1)
	revoked := signJWS(t, map[string]any{"alg": "RS256", "kid": "r1", "typ": "at+jwt"},
		with(baseClaims(), "jti", "jti-revoked"), "RS256", keys.rsa1)
	now := f.clock.Now()
	if _, err := f.store.Revoke(context.Background(), cache.Entry{Issuer: testIssuer, Kind: cache.KindJTI, Value: "jti-revoked", RevokedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f.idp.set(func(p *introspectionIdP) {
		p.answer = func(string) (int, string) { return 200, `{"active":false}` }
	})
	for name, tok := range map[string]string{
		"expired": expired, "revoked": revoked, "garbage": "a.b.c", "unknown opaque": "nope",
		"tampered": f.jwt[:len(f.jwt)-4] + "AAAA", "huge": strings.Repeat("x", 20000),
	} {
		status, hdr, body := f.post(t, "/introspect", appID, appSecret, url.Values{"token": {tok}})
		if status != http.StatusOK || strings.TrimSpace(body) != `{"active":false}` || hdr.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: got %d %q (Cache-Control %q); want 200 {\"active\":false} no-store", name, status, body, hdr.Get("Cache-Control"))
		}
	}
}

func TestIntrospectCallerAuth(t *testing.T) {
	f := newServerFixture(t, nil)
	form := url.Values{"token": {f.jwt}}
	for _, tc := range []struct {
		name, user, pass string
	}{
		{"no credentials", "", ""},
		{"wrong secret", appID, "wrong-secret-0123456789"},
		{"unknown client", "nobody", appSecret},
	} {
		status, _, body := f.post(t, "/introspect", tc.user, tc.pass, form)
		if status != http.StatusUnauthorized || strings.Contains(body, `"active":true`) {
			t.Errorf("%s: got %d %s; want 401", tc.name, status, body)
		}
	}
	// A bearer token is not a caller credential here.
	req, _ := http.NewRequest(http.MethodPost, f.http.URL+"/introspect", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+f.jwt)
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bearer caller: got %d; want 401", resp.StatusCode)
	}
	// A bearer token in the form or query is not a caller credential
	// either, even with a (wrong) Basic header.
	keys := loadKeys(t)
	other := signJWS(t, map[string]any{"alg": "RS256", "kid": "r1", "typ": "at+jwt"}, with(baseClaims(), "jti", "jti-other"), "RS256", keys.rsa1)
	for _, target := range []string{"/introspect", "/introspect?access_token=" + url.QueryEscape(other)} {
		form := url.Values{"token": {f.jwt}}
		if !strings.Contains(target, "?") {
			form.Set("access_token", other)
		}
		req, _ := http.NewRequest(http.MethodPost, f.http.URL+target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("nobody", "wrong")
		resp, err := f.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || strings.Contains(string(b), `"active":true`) {
			t.Errorf("access_token as caller credential (%s): got %d %s; want refused", target, resp.StatusCode, b)
		}
	}
	// token is required, once.
	for name, form := range map[string]url.Values{"no token": {"token_type_hint": {"access_token"}}, "empty token": {"token": {""}}, "two tokens": {"token": {f.jwt, "x"}}} {
		if status, _, body := f.post(t, "/introspect", appID, appSecret, form); status != http.StatusBadRequest {
			t.Errorf("%s: got %d %s; want 400 invalid_request", name, status, body)
		}
	}
	// GET is refused (RFC 7662 §2.1).
	resp, err = f.http.Client().Get(f.http.URL + "/introspect?token=" + url.QueryEscape(f.jwt))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), `"active":true`) {
		t.Errorf("GET: got %d %s; want 400", resp.StatusCode, b)
	}
}

func TestRevokeJWT(t *testing.T) {
	f := newServerFixture(t, nil)
	if _, err := f.v.Verify(context.Background(), f.jwt); err != nil {
		t.Fatal(err)
	}
	status, _, body := f.post(t, "/revoke", appID, appSecret, url.Values{"token": {f.jwt}})
	if status != http.StatusOK {
		t.Fatalf("revoke: got %d %s; want 200", status, body)
	}
	if _, err := f.v.Verify(context.Background(), f.jwt); !errors.Is(err, ErrRevoked) {
		t.Errorf("Verify after /revoke: got %v; want ErrRevoked", err)
	}
	if e, ok := f.store.Get(testIssuer, cache.KindJTI, "jti-1"); !ok || e.Initiator != "rfc7009:"+appID {
		t.Errorf("store: jti-1 entry %+v, %v; want one with initiator rfc7009:%s", e, ok, appID)
	}
	_, _, body = f.post(t, "/introspect", appID, appSecret, url.Values{"token": {f.jwt}})
	if strings.TrimSpace(body) != `{"active":false}` {
		t.Errorf("introspect after /revoke: got %s", body)
	}
}

func TestRevokeOpaque(t *testing.T) {
	f := newServerFixture(t, nil)
	if _, err := f.v.Verify(context.Background(), "opaque-1"); err != nil {
		t.Fatal(err)
	}
	status, _, body := f.post(t, "/revoke", appID, appSecret, url.Values{"token": {"opaque-1"}})
	if status != http.StatusOK {
		t.Fatalf("revoke: got %d %s; want 200", status, body)
	}
	if _, err := f.v.Verify(context.Background(), "opaque-1"); !errors.Is(err, ErrRevoked) {
		t.Errorf("Verify after /revoke: got %v; want ErrRevoked", err)
	}
	if _, ok := f.store.Get(testIssuer, cache.KindJTI, TokenHashID("opaque-1")); !ok {
		t.Errorf("store: no entry for the token's hash")
	}
	// No revocation_endpoint in discovery here: a refresh token cannot be
	// revoked by the gateway.
	status, _, body = f.post(t, "/revoke", appID, appSecret, url.Values{"token": {"refresh-1"}, "token_type_hint": {"refresh_token"}})
	if status != http.StatusBadRequest || !strings.Contains(body, `"unsupported_token_type"`) {
		t.Errorf("refresh token: got %d %s; want 400 unsupported_token_type", status, body)
	}
}

func TestRevokeUnknownAndBadRequests(t *testing.T) {
	f := newServerFixture(t, nil)
	for name, tok := range map[string]string{"forged JWT": f.jwt[:len(f.jwt)-4] + "AAAA", "garbage JWT": "a.b.c"} {
		status, _, body := f.post(t, "/revoke", appID, appSecret, url.Values{"token": {tok}})
		if status != http.StatusOK {
			t.Errorf("%s: got %d %s; want 200 (RFC 7009 §2.2)", name, status, body)
		}
	}
	if n := f.store.Len(); n != 0 {
		t.Errorf("store entries after unknown tokens: got %d; want 0", n)
	}
	if status, _, _ := f.post(t, "/revoke", appID, appSecret, url.Values{"token_type_hint": {"access_token"}}); status != http.StatusBadRequest {
		t.Errorf("no token: got %d; want 400", status)
	}
	if status, _, _ := f.post(t, "/revoke", appID, "wrong-secret-0123456789", url.Values{"token": {f.jwt}}); status != http.StatusUnauthorized {
		t.Errorf("wrong secret: got %d; want 401", status)
	}
	if n := f.store.Len(); n != 0 {
		t.Errorf("store entries after refused calls: got %d; want 0", n)
	}
}

// RFC 7009 §2.2: "invalid tokens do not cause an error response"; a token
// the gateway cannot parse, with no issuer to introspect it, is invalid,
// not of an unsupported type.
func TestRevokeUnparsableTokenIs200(t *testing.T) {
	f := newServerFixtureWith(t, nil, func(is *Issuer) { is.IntrospectionEndpoint = "" })
	for _, tok := range []string{"opaque-unknown", "a.b", "not a token at all"} {
		for _, hint := range []string{"", "access_token"} {
			form := url.Values{"token": {tok}}
			if hint != "" {
				form.Set("token_type_hint", hint)
			}
			status, _, body := f.post(t, "/revoke", appID, appSecret, form)
			if status != http.StatusOK {
				t.Errorf("%q hint %q: got %d %s; want 200 (RFC 7009 §2.2)", tok, hint, status, body)
			}
		}
	}
	if n := f.store.Len(); n != 0 {
		t.Errorf("store entries after unparsable tokens: got %d; want 0", n)
	}
}

// failingStore refuses every revocation, as a store that lost its disk.
type failingStore struct{}

func (failingStore) Revoke(context.Context, cache.Entry) (cache.Entry, error) {
	return cache.Entry{}, cache.ErrClosed
}

func TestRevokeStoreFailureIsNot200(t *testing.T) {
	f := newServerFixture(t, failingStore{})
	status, _, body := f.post(t, "/revoke", appID, appSecret, url.Values{"token": {f.jwt}})
	if status != http.StatusServiceUnavailable {
		t.Errorf("store failure: got %d %s; want 503", status, body)
	}
}

func TestServerConfigValidate(t *testing.T) {
	err := ServerConfig{Clients: []Client{{ClientID: "a:b", ClientSecret: "short"}, {ClientID: "a:b", ClientSecret: "0123456789abcdef"}}}.Validate()
	for _, want := range []string{
		"introspection_clients[0].client_id: must not contain ':' or control characters",
		"introspection_clients[0].client_secret: at least 16 characters",
		"introspection_clients[1].client_id: duplicate of introspection_clients[0]",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: got %v; want it to contain %q", err, want)
		}
	}
}
