package logout

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// post sends body with Content-Type form to the fixture's Backchannel and
// records whether the store held want when the status was written.
func (f *rxFixture) post(t *testing.T, contentType, body string, want *cache.Credential) *statusAtWrite {
	t.Helper()
	r := bclRequest(body)
	r.Header.Set("Content-Type", contentType)
	w := &statusAtWrite{ResponseRecorder: httptest.NewRecorder(), check: func() bool {
		return want != nil && f.store.IsRevoked(want)
	}}
	f.bc.ServeHTTP(w, r)
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control: got %q; want no-store", got)
	}
	return w
}

const form = "application/x-www-form-urlencoded"

func TestBackchannelValid(t *testing.T) {
	before := t0.Add(-time.Minute) // iat of the sessions that must die
	later := t0.Add(skew + time.Second)
	tests := []struct {
		name   string
		issuer func(f *rxFixture) string
		claims func(f *rxFixture) map[string]any
		typ    string
		body   func(tok string) string
		ctype  string
		// kind and value of the one entry the logout must store.
		kind  cache.Kind
		value string
	}{
		{
			name:  "sid only",
			kind:  cache.KindSID,
			value: "sid-1",
		},
		{
			name:   "sub only: every session of the user",
			claims: func(f *rxFixture) map[string]any { return with(f.claims(), "sid", nil, "sub", "alice") },
			kind:   cache.KindSub,
			value:  "alice",
		},
		{
			name:   "sub and sid: that session only (§2.4)",
			claims: func(f *rxFixture) map[string]any { return with(f.claims(), "sub", "alice") },
			kind:   cache.KindSID,
			value:  "sid-1",
		},
		{
			name:   "Hydra-like: typ JWT, aud array, no exp, no sub",
			issuer: func(f *rxFixture) string { return f.hydra },
			claims: func(f *rxFixture) map[string]any {
				return with(f.claims(), "iss", f.hydra, "aud", []string{clientID}, "exp", nil)
			},
			typ:   "JWT",
			kind:  cache.KindSID,
			value: "sid-1",
		},
		{
			name:  "other parameters ignored, charset UTF-8",
			body:  func(tok string) string { return "state=x&logout_token=" + tok + "&foo=%20" },
			ctype: form + "; charset=UTF-8",
			kind:  cache.KindSID,
			value: "sid-1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newRxFixture(t, rxOptions{})
			iss := f.strict
			if tt.issuer != nil {
				iss = tt.issuer(f)
			}
			claims := f.claims()
			if tt.claims != nil {
				claims = tt.claims(f)
			}
			typ := "logout+jwt"
			if tt.typ != "" {
				typ = tt.typ
			}
			tok := sign(t, f.key, map[string]any{"alg": "ES256", "kid": keyID, "typ": typ}, claims)
			body := formBody(tok)
			if tt.body != nil {
				body = tt.body(tok)
			}
			ctype := form
			if tt.ctype != "" {
				ctype = tt.ctype
			}
			victim := &cache.Credential{Issuer: iss, IssuedAt: before}
			if tt.kind == cache.KindSID {
				victim.SID = tt.value
			} else {
				victim.Sub = tt.value
			}

			w := f.post(t, ctype, body, victim)

			if w.Code != http.StatusOK {
				t.Fatalf("status: got %d %s; want 200", w.Code, w.Body)
			}
			// The 200 is written only after the revocation is in the store.
			if !w.held {
				t.Error("store did not hold the revocation when the status was written")
			}
			if !f.store.IsRevoked(victim) {
				t.Errorf("%+v: got not revoked; want revoked", victim)
			}
			if got := f.store.Len(); got != 1 {
				t.Errorf("store entries: got %d; want 1", got)
			}
			e, ok := f.store.Get(iss, tt.kind, tt.value)
			if !ok {
				t.Fatalf("entry (%s, %s) not found", tt.kind, tt.value)
			}
			wantInit := "backchannel:" + iss + " jti_sha256:" + digestPrefix("jti-1")
			if e.Reason != "backchannel_logout" || e.Initiator != wantInit {
				t.Errorf("reason, initiator: got %q, %q; want backchannel_logout, %q", e.Reason, e.Initiator, wantInit)
			}
			// revoked_at is the token's iat (t0 - 5s), so that every delivery
			// of the token stores the same entry.
			iat := t0.Add(-5 * time.Second)
			if want := iat.Add(time.Hour + 2*skew); !e.RevokedAt.Equal(iat) || !e.ExpiresAt.Equal(want) {
				t.Errorf("revoked_at, expires_at: got %v, %v; want %v, %v", e.RevokedAt, e.ExpiresAt, iat, want)
			}
			// What the token did not name is untouched.
			others := []*cache.Credential{
				{Issuer: iss, SID: "sid-2", Sub: "alice", IssuedAt: before},
				{Issuer: iss, SID: "sid-3", Sub: "bob", IssuedAt: before},
			}
			if tt.kind == cache.KindSub {
				// A login after the logout survives a sub revocation.
				others[0].IssuedAt = later
			}
			for _, c := range others {
				if f.store.IsRevoked(c) {
					t.Errorf("%+v: got revoked; want untouched", c)
				}
			}
			if got := counterValue(t, f.reg, "oidcgate_backchannel_logout_total", resultOK); got != 1 {
				t.Errorf("ok counter: got %v; want 1", got)
			}
		})
	}
}

func TestBackchannelInvalid(t *testing.T) {
	f := newRxFixture(t, rxOptions{})
	c := f.claims()
	tok := func(claims map[string]any) string { return f.token(t, claims) }
	valid := tok(c)
	parts := strings.Split(valid, ".")
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 17<<10)

	tests := []struct {
		name  string
		ctype string
		body  string
	}{
		{"bad signature", form, formBody(sign(t, other, map[string]any{"alg": "ES256", "kid": keyID}, c))},
		{"payload changed", form, formBody(parts[0] + "." + b64.EncodeToString([]byte(`{"iss":"`+f.strict+`","sid":"x"}`)) + "." + parts[2])},
		{"alg none", form, formBody(b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".")},
		{"HS256", form, formBody(b64.EncodeToString([]byte(`{"alg":"HS256","kid":"k1"}`)) + "." + parts[1] + "." + parts[2])},
		{"wrong iss", form, formBody(tok(with(c, "iss", "https://evil.example")))},
		{"wrong aud", form, formBody(tok(with(c, "aud", "api")))},
		{"exp missing (strict issuer)", form, formBody(tok(with(c, "exp", nil)))},
		{"expired", form, formBody(tok(with(c, "exp", t0.Add(-time.Minute).Unix())))},
		{"iat missing", form, formBody(tok(with(c, "iat", nil)))},
		{"jti missing", form, formBody(tok(with(c, "jti", nil)))},
		{"events missing", form, formBody(tok(with(c, "events", nil)))},
		{"wrong event", form, formBody(tok(with(c, "events", map[string]any{"http://schemas.openid.net/event/x": map[string]any{}})))},
		{"event not an object", form, formBody(tok(with(c, "events", map[string]any{bclEvent: "yes"})))},
		{"nonce present", form, formBody(tok(with(c, "nonce", "n")))},
		{"neither sub nor sid", form, formBody(tok(with(c, "sid", nil)))},
		{"typ at+jwt", form, formBody(sign(t, f.key, map[string]any{"alg": "ES256", "kid": keyID, "typ": "at+jwt"}, c))},
		{"Hydra-like, iat too old without exp", form, formBody(tok(with(c, "iss", f.hydra, "exp", nil, "iat", t0.Add(-3*time.Minute).Unix())))},
		{"sid longer than the store allows", form, formBody(tok(with(c, "sid", strings.Repeat("s", cache.MaxValueLen+1))))},
		{"not a JWT", form, "logout_token=abc"},
		{"token longer than 16 KiB", form, formBody(tok(with(c, "pad", long)))},
		{"logout_token missing", form, "token=" + valid},
		{"logout_token empty", form, "logout_token="},
		{"logout_token twice", form, formBody(valid) + "&" + formBody(valid)},
		{"empty body", form, ""},
		{"malformed form", form, "logout_token=" + valid + "&x=%zz"},
		{"body over 64 KiB", form, formBody(valid) + "&pad=" + strings.Repeat("p", 64<<10)},
		{"JSON body", "application/json", `{"logout_token":"` + valid + `"}`},
		{"text/plain", "text/plain", formBody(valid)},
		{"no Content-Type", "", formBody(valid)},
		{"charset ISO-8859-1", form + "; charset=ISO-8859-1", formBody(valid)},
		{"Content-Type unparsable", "application/x-www-form-urlencoded; =", formBody(valid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counterValue(t, f.reg, "oidcgate_backchannel_logout_total", resultInvalid)
			w := f.post(t, tt.ctype, tt.body, nil)
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status: got %d %s; want 400", w.Code, w.Body)
			}
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error != "invalid_request" || e.Description == "" {
				t.Errorf("body: got %s (%v); want invalid_request with a description", w.Body, err)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type: got %q; want application/json", ct)
			}
			// The description is ours: nothing of the request in it.
			for _, p := range strings.FieldsFunc(tt.body, func(r rune) bool { return r == '.' || r == '=' || r == '&' }) {
				if len(p) > 8 && p != "logout_token" && strings.Contains(w.Body.String(), p) {
					t.Errorf("body %s echoes the request", w.Body)
				}
			}
			if got := f.store.Len(); got != 0 {
				t.Errorf("store entries: got %d; want 0", got)
			}
			if got := counterValue(t, f.reg, "oidcgate_backchannel_logout_total", resultInvalid); got != before+1 {
				t.Errorf("invalid counter: got %v; want %v", got, before+1)
			}
		})
	}
	// Nothing above was recorded in the replay cache: the valid token with
	// the same jti is accepted afterwards.
	if w := f.post(t, form, formBody(valid), nil); w.Code != http.StatusOK {
		t.Fatalf("valid token after the invalid ones: got %d %s; want 200", w.Code, w.Body)
	}
	for _, secret := range []string{valid, parts[1], "sid-1", "jti-1"} {
		if strings.Contains(f.logs.String(), secret) {
			t.Errorf("logs hold %.20q...: %s", secret, f.logs)
		}
	}
	if !strings.Contains(f.logs.String(), `"jti_sha256":"`+digestPrefix("jti-1")+`"`) {
		t.Errorf("logs lack the jti digest: %s", f.logs)
	}
}

func TestBackchannelMethod(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-"})
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions} {
		t.Run(m, func(t *testing.T) {
			r := httptest.NewRequest(m, BackchannelPath, strings.NewReader(formBody(f.token(t, f.claims()))))
			r.Header.Set("Content-Type", form)
			w := httptest.NewRecorder()
			f.bc.ServeHTTP(w, r)
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
				t.Errorf("got %d, Allow %q; want 405, POST", w.Code, w.Header().Get("Allow"))
			}
			if f.store.Len() != 0 {
				t.Errorf("store entries: got %d; want 0", f.store.Len())
			}
		})
	}
}

func TestBackchannelReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.db")
	f := newRxFixture(t, rxOptions{path: path})
	tok := f.token(t, with(f.claims(), "sid", nil, "sub", "alice"))
	if w := f.post(t, form, formBody(tok), nil); w.Code != http.StatusOK {
		t.Fatalf("first: got %d %s; want 200", w.Code, w.Body)
	}
	// A replay later must not move the sub revocation forward (that would
	// kill a session the user opened after the logout).
	f.clock.Advance(10 * time.Second)
	w := f.post(t, form, formBody(tok), nil)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "already received") {
		t.Fatalf("replay: got %d %s; want 400 already received", w.Code, w.Body)
	}
	e, _ := f.store.Get(f.strict, cache.KindSub, "alice")
	if iat := t0.Add(-5 * time.Second); !e.RevokedAt.Equal(iat) {
		t.Errorf("revoked_at after replay: got %v; want the token's iat %v", e.RevokedAt, iat)
	}
	if got := counterValue(t, f.reg, "oidcgate_backchannel_logout_total", resultReplayed); got != 1 {
		t.Errorf("replayed counter: got %v; want 1", got)
	}
	// The same jti from the other issuer is another token.
	h := f.token(t, with(f.claims(), "iss", f.hydra))
	if w := f.post(t, form, formBody(h), nil); w.Code != http.StatusOK {
		t.Errorf("same jti, other issuer: got %d %s; want 200", w.Code, w.Body)
	}
	// The replay cache is durable: a restarted gateway still refuses it.
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	g := newRxFixture(t, rxOptions{path: path})
	g.clock.Advance(20 * time.Second)
	if w := g.post(t, form, formBody(tok), nil); w.Code != http.StatusBadRequest {
		t.Errorf("replay after restart: got %d %s; want 400", w.Code, w.Body)
	}
}

func TestBackchannelRateLimit(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) {
		c.Receivers = ReceiverConfig{RatePerSecond: 1, Burst: 2}
	}})
	send := func(iss, jti string) *statusAtWrite {
		return f.post(t, form, formBody(f.token(t, with(f.claims(), "iss", iss, "jti", jti, "sid", "sid-"+jti))), nil)
	}
	// Invalid tokens naming the issuer do not use up its budget.
	for range 5 {
		if w := f.post(t, form, formBody(f.token(t, with(f.claims(), "aud", "x"))), nil); w.Code != http.StatusBadRequest {
			t.Fatalf("invalid: got %d; want 400", w.Code)
		}
	}
	for _, jti := range []string{"a", "b"} {
		if w := send(f.strict, jti); w.Code != http.StatusOK {
			t.Fatalf("%s: got %d %s; want 200", jti, w.Code, w.Body)
		}
	}
	w := send(f.strict, "c")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("c: got %d, Retry-After %q; want 429, 1", w.Code, w.Header().Get("Retry-After"))
	}
	if f.store.IsRevoked(&cache.Credential{Issuer: f.strict, SID: "sid-c"}) {
		t.Error("rate-limited logout was stored")
	}
	// Another issuer has its own bucket.
	if w := send(f.hydra, "h"); w.Code != http.StatusOK {
		t.Errorf("other issuer: got %d; want 200", w.Code)
	}
	// A refused token was not recorded as seen: the OP may send it again.
	f.clock.Advance(time.Second)
	if w := send(f.strict, "c"); w.Code != http.StatusOK {
		t.Errorf("c after 1s: got %d %s; want 200", w.Code, w.Body)
	}
	if got := counterValue(t, f.reg, "oidcgate_backchannel_logout_total", resultRateLimited); got != 1 {
		t.Errorf("rate_limited counter: got %v; want 1", got)
	}
}

func TestBackchannelKeysUnavailable(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-"})
	f.jwksFail.Store(true)
	tok := f.token(t, f.claims())
	w := f.post(t, form, formBody(tok), nil)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "temporarily_unavailable") {
		t.Fatalf("got %d, Retry-After %q, %s; want 503 with Retry-After, temporarily_unavailable", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if f.store.Len() != 0 {
		t.Errorf("store entries: got %d; want 0", f.store.Len())
	}
	f.jwksFail.Store(false)
	f.clock.Advance(time.Second) // past the key-fetch cooldown
	if w := f.post(t, form, formBody(tok), nil); w.Code != http.StatusOK {
		t.Errorf("retry: got %d %s; want 200", w.Code, w.Body)
	}
	if got := counterValue(t, f.reg, "oidcgate_backchannel_logout_total", resultError); got != 1 {
		t.Errorf("error counter: got %v; want 1", got)
	}
}

// flakyStore is the real store whose Revoke fails while fail is set.
type flakyStore struct {
	Store
	fail atomic.Bool
}

func (s *flakyStore) Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error) {
	if s.fail.Load() {
		return cache.Entry{}, errors.New("disk on fire")
	}
	return s.Store.Revoke(ctx, e)
}

// TestBackchannelStoreFailure: a failed write is never a 200, and the
// OP's retry of the same token is processed, not refused as a replay.
func TestBackchannelStoreFailure(t *testing.T) {
	flaky := &flakyStore{}
	f := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) {
		flaky.Store = c.Store
		c.Store = flaky
	}})
	flaky.fail.Store(true)
	tok := f.token(t, f.claims())
	victim := &cache.Credential{Issuer: f.strict, SID: "sid-1"}
	if w := f.post(t, form, formBody(tok), victim); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("failing store: got %d %s; want 503 with Retry-After", w.Code, w.Body)
	}
	if f.store.IsRevoked(victim) {
		t.Fatal("revoked although the write failed")
	}
	flaky.fail.Store(false)
	if w := f.post(t, form, formBody(tok), victim); w.Code != http.StatusOK || !w.held {
		t.Fatalf("retry: got %d %s (held %v); want 200 after the write", w.Code, w.Body, w.held)
	}
	if w := f.post(t, form, formBody(tok), nil); w.Code != http.StatusBadRequest {
		t.Errorf("third delivery: got %d; want 400 (replay)", w.Code)
	}
}

type failingReplays struct{}

func (failingReplays) FirstSeen(context.Context, string, time.Time) (bool, error) {
	return false, cache.ErrReplayCacheFull
}

// TestBackchannelReplayCacheFailure: the revocation is stored before the
// replay check, so a failing replay cache costs only the replay check.
func TestBackchannelReplayCacheFailure(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) { c.Replays = failingReplays{} }})
	if w := f.post(t, form, formBody(f.token(t, f.claims())), nil); w.Code != http.StatusOK {
		t.Fatalf("got %d %s; want 200", w.Code, w.Body)
	}
	if f.store.Len() != 1 {
		t.Errorf("store entries: got %d; want 1", f.store.Len())
	}
}

func TestReceiverConfig(t *testing.T) {
	tests := []struct {
		name         string
		cfg          Config
		needVerifier bool
		want         []string
	}{
		{"empty, back-channel", Config{}, true, []string{
			"store: required",
			"lifetimes: at least one issuer is required to receive logouts",
			"verifier: required",
			"replays: required",
		}},
		{"empty, front-channel", Config{}, false, []string{
			"store: required",
			"lifetimes: at least one issuer is required to receive logouts",
		}},
		{"bad receivers", Config{
			Lifetimes: map[string]time.Duration{issA: time.Hour, strings.Repeat("i", maxReceiverIssuerLen+1): time.Hour},
			Store:     &flakyStore{},
			Receivers: ReceiverConfig{RatePerSecond: -1, Burst: -1},
		}, false, []string{
			"receivers.rate_per_second: not a finite, non-negative number",
			"receivers.burst: negative",
			"lifetimes: an issuer is longer than 448 bytes, too long to name as a logout's initiator",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := messages(tt.cfg.validateReceiver(tt.needVerifier))
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
	if _, err := NewBackchannel(Config{}); err == nil {
		t.Error("NewBackchannel(Config{}): got nil; want an error")
	}
	// Config.Validate (NewAdmin) also judges receivers.
	cfg := Config{Admin: tokens("ops", tokOps), Store: &flakyStore{}, Receivers: ReceiverConfig{Burst: -1}}
	if got := messages(cfg.Validate()); strings.Join(got, "\n") != "receivers.burst: negative" {
		t.Errorf("Validate: got %q; want receivers.burst: negative", got)
	}
}

// TestBackchannelIssuerWithoutLifetime: a token the verifier accepts from
// an issuer this receiver has no lifetime for is refused, not stored with
// a wrong expiry.
func TestBackchannelIssuerWithoutLifetime(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) {
		c.Lifetimes = map[string]time.Duration{fixedIssuerBase: time.Hour}
	}})
	tok := f.token(t, with(f.claims(), "iss", f.hydra))
	if w := f.post(t, form, formBody(tok), nil); w.Code != http.StatusBadRequest {
		t.Fatalf("got %d %s; want 400", w.Code, w.Body)
	}
	if f.store.Len() != 0 {
		t.Errorf("store entries: got %d; want 0", f.store.Len())
	}
}

func TestLimiter(t *testing.T) {
	clock := clocktest.NewRealTimers(t0)
	l := newLimiter([]string{issA}, 2, 3, clock.Now)
	tests := []struct {
		name    string
		advance time.Duration
		issuer  string
		want    bool
		wait    time.Duration
	}{
		{"burst 1", 0, issA, true, 0},
		{"burst 2", 0, issA, true, 0},
		{"burst 3", 0, issA, true, 0},
		{"empty", 0, issA, false, 500 * time.Millisecond},
		{"refilled one after 0.5s", 500 * time.Millisecond, issA, true, 0},
		{"empty again", 0, issA, false, 500 * time.Millisecond},
		{"refill capped at burst", time.Hour, issA, true, 0},
		{"unknown issuer", 0, "https://unknown.example", false, 0},
	}
	for _, tt := range tests {
		clock.Advance(tt.advance)
		ok, wait := l.allow(tt.issuer)
		if ok != tt.want || wait != tt.wait {
			t.Errorf("%s: got %v, %v; want %v, %v", tt.name, ok, wait, tt.want, tt.wait)
		}
	}
	if len(l.buckets) != 1 {
		t.Errorf("buckets: got %d; want 1 (unknown issuers add none)", len(l.buckets))
	}
	for n := range 3 {
		if ok, _ := l.allow(issA); ok != (n < 2) {
			t.Errorf("after the cap, token %d: got %v; want %v", n, ok, n < 2)
		}
	}
}
