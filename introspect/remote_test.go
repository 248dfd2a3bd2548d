package introspect

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// introspectionIdP is an RFC 7662 endpoint whose answer the test sets.
type introspectionIdP struct {
	srv   *httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	// answer returns status and body for a token; nil means active with
	// activeClaims.
	answer func(token string) (int, string)
	delay  time.Duration
	// lastForm and lastAuth are the last request's form and Basic user.
	lastForm url.Values
	lastUser string
	revoked  []string
	gate     chan struct{} // when not nil, each call waits for it
}

const (
	remoteClientID     = "gateway"
	remoteClientSecret = "gateway-secret-0123456789"
)

func newIntrospectionIdP(t *testing.T) *introspectionIdP {
	t.Helper()
	p := &introspectionIdP{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		p.calls.Add(1)
		_ = r.ParseForm()
		user, _, _ := r.BasicAuth()
		p.mu.Lock()
		p.lastForm, p.lastUser = r.PostForm, user
		answer, delay, gate := p.answer, p.delay, p.gate
		p.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		status, body := http.StatusOK, ""
		if answer != nil {
			status, body = answer(r.PostForm.Get("token"))
		} else {
			body = string(mustJSON(t, activeClaims()))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	})
	mux.HandleFunc("POST /revoke", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		p.mu.Lock()
		p.revoked = append(p.revoked, r.PostForm.Get("token"))
		p.mu.Unlock()
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *introspectionIdP) set(f func(p *introspectionIdP)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// activeClaims is an active answer for an opaque token at t0, as Hydra
// gives for a client_credentials token.
func activeClaims() map[string]any {
	return map[string]any{
		"active":     true,
		"iss":        testIssuer,
		"sub":        "svc-1",
		"client_id":  "svc-1",
		"aud":        []string{"api"},
		"scope":      "read write",
		"exp":        t0.Add(30 * time.Minute).Unix(),
		"iat":        t0.Add(-time.Minute).Unix(),
		"nbf":        t0.Add(-time.Minute).Unix(),
		"jti":        "opaque-jti-1",
		"token_type": "Bearer",
		"token_use":  "access_token",
	}
}

// remoteFixture is a Verifier whose issuer introspects at p, with a real
// revocation store.
type remoteFixture struct {
	v     *Verifier
	store *cache.Store
	clock *clocktest.Clock
	idp   *introspectionIdP
}

func newRemoteFixture(t *testing.T, change func(*Issuer)) *remoteFixture {
	t.Helper()
	p := newIntrospectionIdP(t)
	keys := loadKeys(t)
	jw := newIDP(t, jwksJSON(t, []jwkSpec{{pub: &keys.rsa1.PublicKey, kid: "r1", alg: "RS256"}}))
	clk := newClock()
	store, err := cache.Open(cache.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	is := Issuer{
		Issuer:                testIssuer,
		JWKSURI:               jw.jwksURL(),
		Audiences:             []string{"api"},
		ClientID:              remoteClientID,
		ClientSecret:          remoteClientSecret,
		IntrospectionEndpoint: p.srv.URL + "/introspect",
		MaxTokenLifetime:      time.Hour,
	}
	if change != nil {
		change(&is)
	}
	v, err := New(Config{Issuers: []Issuer{is}, Revocations: store, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return &remoteFixture{v: v, store: store, clock: clk, idp: p}
}

func TestRemoteActive(t *testing.T) {
	f := newRemoteFixture(t, nil)
	c, err := f.v.Verify(context.Background(), "opaque-token-1")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Subject != "svc-1" || c.ClientID != "svc-1" || c.JTI != "opaque-jti-1" || !c.HasScopes([]string{"read", "write"}) {
		t.Errorf("claims: got %+v", c)
	}
	if got := f.idp.lastForm.Get("token"); got != "opaque-token-1" {
		t.Errorf("token sent: got %q; want opaque-token-1", got)
	}
	if got := f.idp.lastForm.Get("token_type_hint"); got != "access_token" {
		t.Errorf("token_type_hint: got %q; want access_token", got)
	}
	if f.idp.lastUser != remoteClientID || f.idp.lastForm.Has("client_secret") {
		t.Errorf("client_secret_basic: got user %q, secret in form %v", f.idp.lastUser, f.idp.lastForm.Has("client_secret"))
	}
	for range 3 {
		if _, err := f.v.Verify(context.Background(), "opaque-token-1"); err != nil {
			t.Fatalf("cached Verify: %v", err)
		}
	}
	if got := f.idp.calls.Load(); got != 1 {
		t.Errorf("introspection calls: got %d; want 1 (then cached)", got)
	}
	// The cache lifetime is min(introspection_cache_ttl, exp - now): after
	// 1m (the default TTL) the issuer is asked again.
	f.clock.Advance(61 * time.Second)
	if _, err := f.v.Verify(context.Background(), "opaque-token-1"); err != nil {
		t.Fatalf("Verify after the TTL: %v", err)
	}
	waitCalls(t, f.idp, 2)
}

// waitCalls waits until the IdP has been called want times; ristretto's
// TTL expiry runs on its own goroutine.
func waitCalls(t *testing.T, p *introspectionIdP, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.calls.Load() != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := p.calls.Load(); got != want {
		t.Fatalf("introspection calls: got %d; want %d", got, want)
	}
}

func TestRemoteClientSecretPost(t *testing.T) {
	f := newRemoteFixture(t, func(i *Issuer) { i.IntrospectionAuthMethod = "client_secret_post" })
	if _, err := f.v.Verify(context.Background(), "opaque"); err != nil {
		t.Fatal(err)
	}
	if f.idp.lastUser != "" || f.idp.lastForm.Get("client_id") != remoteClientID || f.idp.lastForm.Get("client_secret") != remoteClientSecret {
		t.Errorf("client_secret_post: got basic user %q, form client_id %q", f.idp.lastUser, f.idp.lastForm.Get("client_id"))
	}
}

// TestRemoteMisbehavingIdP: nothing the IdP does wrong lets a token
// through; errors are never cached.
func TestRemoteMisbehavingIdP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		delay   time.Duration
		wantErr error // ErrUnavailable (503) or ErrInvalidToken (401)
		cached  bool  // a negative answer is cached; errors never are
	}{
		{"500", 500, `{"active":true}`, 0, ErrUnavailable, false},
		{"401 from the IdP", 401, `{"error":"invalid_client"}`, 0, ErrUnavailable, false},
		{"slow beyond the timeout", 200, `{"active":true}`, 2 * time.Second, ErrUnavailable, false},
		{"not JSON", 200, `<html>ok</html>`, 0, ErrInvalidToken, false},
		{"JSON array", 200, `[{"active":true}]`, 0, ErrInvalidToken, false},
		{"missing active", 200, `{"sub":"svc-1","exp":9999999999}`, 0, ErrInvalidToken, false},
		{"active as a string", 200, `{"active":"true","sub":"svc-1"}`, 0, ErrInvalidToken, false},
		{"active as a number", 200, `{"active":1}`, 0, ErrInvalidToken, false},
		{"inactive", 200, `{"active":false}`, 0, ErrInvalidToken, true},
		{"exp in the past", 200, `{"active":true,"aud":"api","exp":1000}`, 0, ErrInvalidToken, true},
		{"refresh token", 200, `{"active":true,"aud":"api","token_use":"refresh_token"}`, 0, ErrInvalidToken, true},
		{"DPoP-bound", 200, `{"active":true,"aud":"api","token_type":"DPoP"}`, 0, ErrInvalidToken, true},
		{"other audience", 200, `{"active":true,"aud":"other"}`, 0, ErrInvalidToken, true},
		{"other issuer", 200, `{"active":true,"aud":"api","iss":"https://evil.example"}`, 0, ErrInvalidToken, true},
		{"lifetime too long", 200, `{"active":true,"aud":"api","iat":1735787045,"exp":1735887045}`, 0, ErrInvalidToken, true},
		{"sub not a string", 200, `{"active":true,"aud":"api","sub":7}`, 0, ErrInvalidToken, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRemoteFixture(t, func(i *Issuer) { i.IntrospectionTimeout = 200 * time.Millisecond })
			f.idp.set(func(p *introspectionIdP) {
				p.answer = func(string) (int, string) { return tc.status, tc.body }
				p.delay = tc.delay
			})
			for range 2 {
				_, err := f.v.Verify(context.Background(), "opaque")
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Verify: got %v; want %v", err, tc.wantErr)
				}
			}
			want := int64(2)
			if tc.cached {
				want = 1
			}
			if got := f.idp.calls.Load(); got != want {
				t.Errorf("IdP calls for two requests: got %d; want %d", got, want)
			}
		})
	}
}

// TestRemoteSingleflight: 1,000 concurrent requests with one new opaque
// token cause exactly one call to the IdP.
func TestRemoteSingleflight(t *testing.T) {
	f := newRemoteFixture(t, nil)
	gate := make(chan struct{})
	f.idp.set(func(p *introspectionIdP) { p.gate = gate })
	const n = 1000
	var wg sync.WaitGroup
	var failed atomic.Int64
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		wg.Go(func() {
			started.Done()
			if _, err := f.v.Verify(context.Background(), "fresh-opaque-token"); err != nil {
				failed.Add(1)
			}
		})
	}
	started.Wait()
	// Let the one call through once it has arrived.
	deadline := time.Now().Add(5 * time.Second)
	for f.idp.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("failed requests: got %d; want 0", failed.Load())
	}
	if got := f.idp.calls.Load(); got != 1 {
		t.Errorf("IdP calls: got %d; want 1", got)
	}
}

// TestRemoteRevocationBeatsCache: whatever names the token — its hash,
// jti, sub, client or sid — a revocation refuses the cached result at
// once, without asking the IdP.
func TestRemoteRevocationBeatsCache(t *testing.T) {
	for _, tc := range []struct {
		kind  cache.Kind
		value string
	}{
		{cache.KindJTI, TokenHashID("opaque")},
		{cache.KindJTI, "opaque-jti-1"},
		{cache.KindSub, "svc-1"},
		{cache.KindClient, "svc-1"},
	} {
		t.Run(string(tc.kind)+"="+tc.value, func(t *testing.T) {
			f := newRemoteFixture(t, nil)
			if _, err := f.v.Verify(context.Background(), "opaque"); err != nil {
				t.Fatal(err)
			}
			now := f.clock.Now()
			if _, err := f.store.Revoke(context.Background(), cache.Entry{
				Issuer: testIssuer, Kind: tc.kind, Value: tc.value, RevokedAt: now, ExpiresAt: now.Add(time.Hour),
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.v.Verify(context.Background(), "opaque"); !errors.Is(err, ErrRevoked) {
				t.Fatalf("Verify after revocation: got %v; want ErrRevoked", err)
			}
			if got := f.idp.calls.Load(); got != 1 {
				t.Errorf("IdP calls: got %d; want 1", got)
			}
		})
	}
}

// TestRemoteJWTsStayLocal: without introspect_jwts a JWT is validated
// locally and never shown to the introspection endpoint; with it, it is.
func TestRemoteJWTsStayLocal(t *testing.T) {
	keys := loadKeys(t)
	tok := signJWS(t, map[string]any{"alg": "RS256", "kid": "r1", "typ": "at+jwt"}, baseClaims(), "RS256", keys.rsa1)
	f := newRemoteFixture(t, nil)
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("local JWT: %v", err)
	}
	if got := f.idp.calls.Load(); got != 0 {
		t.Errorf("IdP calls for a local JWT: got %d; want 0", got)
	}
	g := newRemoteFixture(t, func(i *Issuer) { i.IntrospectJWTs = true })
	if _, err := g.v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("introspected JWT: %v", err)
	}
	if got := g.idp.calls.Load(); got != 1 {
		t.Errorf("IdP calls with introspect_jwts: got %d; want 1", got)
	}
}

func TestOneIntrospectingIssuer(t *testing.T) {
	is := func(iss string) Issuer {
		return Issuer{Issuer: iss, Audiences: []string{"api"}, ClientID: "c", ClientSecret: "s", IntrospectionEndpoint: iss + "/introspect"}
	}
	err := Config{Issuers: []Issuer{is("https://a.example"), is("https://b.example")}, Revocations: newRevocations()}.Validate()
	want := "issuers[1].introspection_endpoint: only one issuer may introspect (issuers[0] does)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Validate: got %v; want it to contain %q", err, want)
	}
}

func FuzzIntrospectionResponse(f *testing.F) {
	for _, s := range []string{
		`{"active":true,"aud":"api","sub":"a","exp":1735790000}`,
		`{"active":false}`,
		`{"active":"true"}`,
		`{"active":true,"aud":["api"],"scope":"a b","iat":1,"exp":2}`,
		`[]`, `null`, `{"active":true,"token_use":"refresh_token"}`,
	} {
		f.Add([]byte(s))
	}
	v, err := New(Config{
		Issuers:     []Issuer{{Issuer: testIssuer, Audiences: []string{"api"}, ClientID: "c", ClientSecret: "s", IntrospectionEndpoint: "https://idp.example.com/i"}},
		Revocations: newRevocations(),
		Clock:       clocktest.New(t0),
	})
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := v.judgeIntrospection(v.remote.is, "tok", body)
		if err != nil {
			if r != nil {
				t.Fatalf("result and error both set")
			}
			return
		}
		if r.inactive != nil {
			return
		}
		// Accepted: it said active true, is not expired, names the audience.
		var m map[string]any
		if json.Unmarshal(body, &m) != nil || m["active"] != true {
			t.Fatalf("accepted an answer without active: true: %s", body)
		}
		if !r.claims.ExpiresAt.After(t0) {
			t.Fatalf("accepted an expired answer: %s", body)
		}
		if !audienceAccepted(v.remote.is, r.claims.Audience) {
			t.Fatalf("accepted another audience: %s", body)
		}
	})
}
