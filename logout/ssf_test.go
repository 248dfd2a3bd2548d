package logout

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/introspect/introspecttest"
)

const (
	transmitter = "https://ssf.example.com"
	ssfAudience = "https://gateway.example.com/ssf"
	ssfKeyID    = "rs"
	setType     = "application/secevent+jwt"
)

// ssfFixture is an SSF receiver on a real introspect.SETVerifier (keys
// from an httptest JWKS server) and a real cache.Store (bbolt in
// t.TempDir() unless path is "-"), revoking for issA and issB (1h each).
type ssfFixture struct {
	key      *rsa.PrivateKey
	other    *rsa.PrivateKey
	jwksFail atomic.Bool
	clock    *clocktest.Clock
	store    *cache.Store
	rx       *SSF
	reg      *prometheus.Registry
	logs     *bytes.Buffer
}

type ssfOptions struct {
	path string // "" a bbolt file in t.TempDir(), "-" memory
	auth introspect.Secret
	// issuers is the transmitter's allow-list; nil means issA and issB.
	issuers []string
	mod     func(*Config)
}

func newSSFFixture(tb testing.TB, o ssfOptions) *ssfFixture {
	tb.Helper()
	if o.issuers == nil {
		o.issuers = []string{issA, issB}
	}
	f := &ssfFixture{key: introspecttest.RSA("rsa1"), other: introspecttest.RSA("rsa2"), clock: clocktest.NewRealTimers(t0), reg: prometheus.NewRegistry(), logs: new(bytes.Buffer)}
	pub, err := jwk.Import(&f.key.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	if err := pub.Set(jwk.KeyIDKey, ssfKeyID); err != nil {
		tb.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		tb.Fatal(err)
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.jwksFail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	tb.Cleanup(srv.Close)

	path := ""
	switch o.path {
	case "":
		path = filepath.Join(tb.TempDir(), "revocations.db")
	case "-":
	default:
		path = o.path
	}
	s, err := cache.Open(cache.Config{Path: path, Clock: f.clock, ClockSkew: skew})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	f.store = s

	v, err := introspect.NewSETVerifier(introspect.SETConfig{
		Transmitters:           []introspect.Transmitter{{Issuer: transmitter, JWKSURI: srv.URL, Audience: ssfAudience, AuthorizationHeader: o.auth, Issuers: o.issuers}},
		ClockSkew:              skew,
		Clock:                  f.clock,
		JWKSMinRefetchInterval: time.Nanosecond,
	})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config{
		Lifetimes: map[string]time.Duration{issA: time.Hour, issB: time.Hour},
		ClockSkew: skew,
		Store:     s,
		SETs:      v,
		Replays:   s,
		Clock:     f.clock,
		Logger:    slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:   f.reg,
	}
	if o.mod != nil {
		o.mod(&cfg)
	}
	if f.rx, err = NewSSF(cfg); err != nil {
		tb.Fatal(err)
	}
	return f
}

// signRS256 makes an RS256 compact JWS with the standard library.
func signRS256(tb testing.TB, key *rsa.PrivateKey, hdr, claims map[string]any) string {
	tb.Helper()
	hb, err := json.Marshal(hdr)
	if err != nil {
		tb.Fatal(err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	d := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	if err != nil {
		tb.Fatal(err)
	}
	return input + "." + b64.EncodeToString(sig)
}

func setHeader() map[string]any {
	return map[string]any{"alg": "RS256", "kid": ssfKeyID, "typ": "secevent+jwt"}
}

// setClaims are a valid SET's claims at t0.
func setClaims(event string, sub map[string]any) map[string]any {
	return map[string]any{
		"iss":    transmitter,
		"aud":    ssfAudience,
		"iat":    t0.Add(-5 * time.Second).Unix(),
		"jti":    "set-1",
		"sub_id": sub,
		"events": map[string]any{event: map[string]any{}},
	}
}

func (f *ssfFixture) set(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return signRS256(tb, f.key, setHeader(), claims)
}

func ssfRequest(contentType, body, auth string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, SSFPath, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	return r
}

func (f *ssfFixture) push(t *testing.T, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	f.rx.ServeHTTP(w, r)
	return w
}

// entries returns every stored entry, compared by (issuer, kind, value,
// revoked_at).
func (f *ssfFixture) entries(t *testing.T) []cache.Entry {
	t.Helper()
	es, _, err := f.store.List(t.Context(), cache.ListOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(es, func(a, b cache.Entry) int {
		return strings.Compare(a.Issuer+string(a.Kind)+a.Value, b.Issuer+string(b.Kind)+b.Value)
	})
	return es
}

func ssfCounter(t *testing.T, reg *prometheus.Registry, event, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "oidcgate_ssf_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["event"] == event && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// subject identifiers of each format.
var (
	subIssSub  = map[string]any{"format": "iss_sub", "iss": issA, "sub": "alice"}
	subEmail   = map[string]any{"format": "email", "email": "alice@example.com"}
	subOpaque  = map[string]any{"format": "opaque", "id": "u-42"}
	subComplex = map[string]any{"format": "complex",
		"user":    map[string]any{"format": "iss_sub", "iss": issA, "sub": "alice"},
		"session": map[string]any{"format": "opaque", "id": "sid-9"},
	}
)

// want is one expected entry.
type want struct {
	iss   string
	kind  cache.Kind
	value string
	at    time.Time
}

func TestSSFEvents(t *testing.T) {
	userOnlyComplex := map[string]any{"format": "complex", "user": subEmail}
	sessionOnlyComplex := map[string]any{"format": "complex", "session": map[string]any{"format": "iss_sub", "iss": issB, "sub": "sid-7"}}
	opaqueSessionOnly := map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": "sid-8"}}
	everyIssuer := func(kind cache.Kind, value string, at time.Time) []want {
		return []want{{issA, kind, value, at}, {issB, kind, value, at}}
	}
	ts := t0.Add(-10 * time.Minute)
	type tc struct {
		name  string
		event string
		sub   map[string]any
		extra map[string]any // event payload
		want  []want
	}
	var tests []tc
	for _, ev := range []string{introspect.EventSessionRevoked, introspect.EventCredentialChange, introspect.EventAccountDisabled, introspect.EventAccountPurged, introspect.EventCredentialCompromise} {
		short := ev[strings.LastIndex(ev, "/")+1:]
		// Every entry carries the event's time, so that the same SET always
		// stores the same entries.
		at := ts
		userWant := []want{{issA, cache.KindSub, "alice", at}}
		complexWant := userWant
		if ev == introspect.EventSessionRevoked {
			complexWant = []want{{issA, cache.KindSID, "sid-9", at}}
		}
		payload := map[string]any{"event_timestamp": ts.Unix()}
		tests = append(tests,
			tc{short + "/iss_sub", ev, subIssSub, payload, userWant},
			tc{short + "/email", ev, subEmail, payload, everyIssuer(cache.KindSub, "alice@example.com", at)},
			tc{short + "/opaque", ev, subOpaque, payload, everyIssuer(cache.KindSub, "u-42", at)},
			tc{short + "/complex", ev, subComplex, payload, complexWant},
			tc{short + "/complex user only", ev, userOnlyComplex, payload, everyIssuer(cache.KindSub, "alice@example.com", at)},
			tc{short + "/complex session only", ev, sessionOnlyComplex, payload, []want{{issB, cache.KindSID, "sid-7", at}}},
			tc{short + "/complex opaque session only", ev, opaqueSessionOnly, payload, everyIssuer(cache.KindSID, "sid-8", at)},
			tc{short + "/unconfigured issuer", ev, map[string]any{"format": "iss_sub", "iss": "https://other.example", "sub": "alice"}, payload, nil},
		)
	}
	tests = append(tests,
		tc{"unknown event", "https://schemas.example.com/event/other", subIssSub, nil, nil},
		tc{"credential-change without event_timestamp uses iat", introspect.EventCredentialChange, subIssSub, map[string]any{}, []want{{issA, cache.KindSub, "alice", t0.Add(-5 * time.Second)}}},
		tc{"credential-change in the future is clamped to now", introspect.EventCredentialChange, subIssSub, map[string]any{"event_timestamp": t0.Add(time.Hour).Unix()}, []want{{issA, cache.KindSub, "alice", t0}}},
		tc{"credential-change older than every token", introspect.EventCredentialChange, subIssSub, map[string]any{"event_timestamp": t0.Add(-26 * time.Hour).Unix()}, nil},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSSFFixture(t, ssfOptions{path: "-"})
			c := setClaims(tt.event, tt.sub)
			if tt.extra != nil {
				c["events"] = map[string]any{tt.event: tt.extra}
			}
			w := f.push(t, ssfRequest(setType, f.set(t, c), ""))
			if w.Code != http.StatusAccepted || w.Body.Len() != 0 {
				t.Fatalf("got %d %q; want 202 with an empty body", w.Code, w.Body)
			}
			got := f.entries(t)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries %+v; want %+v", len(got), got, tt.want)
			}
			for i, e := range got {
				wt := tt.want[i]
				if e.Issuer != wt.iss || e.Kind != wt.kind || e.Value != wt.value || !e.RevokedAt.Equal(wt.at) {
					t.Errorf("entry %d: got (%s %s %s %v); want (%s %s %s %v)", i, e.Issuer, e.Kind, e.Value, e.RevokedAt, wt.iss, wt.kind, wt.value, wt.at)
				}
				if e.Reason != "ssf" || e.Initiator != "ssf:"+transmitter+" jti_sha256:"+digestPrefix("set-1") {
					t.Errorf("entry %d: got reason %q, initiator %q", i, e.Reason, e.Initiator)
				}
			}
			result := resultOK
			if tt.want == nil {
				result = resultIgnored
			}
			label := eventOther
			if l, ok := eventLabels[tt.event]; ok {
				label = l
			}
			if got := ssfCounter(t, f.reg, label, result); got != 1 {
				t.Errorf("oidcgate_ssf_events_total{%s,%s}: got %v; want 1", label, result, got)
			}
		})
	}
}

// TestSSFRevokesCredentials checks the entries against the credentials
// they must (and must not) revoke.
func TestSSFRevokesCredentials(t *testing.T) {
	f := newSSFFixture(t, ssfOptions{})
	w := f.push(t, ssfRequest(setType, f.set(t, setClaims(introspect.EventSessionRevoked, subComplex)), ""))
	if w.Code != http.StatusAccepted {
		t.Fatalf("got %d %s; want 202", w.Code, w.Body)
	}
	for _, tt := range []struct {
		name string
		c    cache.Credential
		want bool
	}{
		{"the session", cache.Credential{Issuer: issA, Sub: "alice", SID: "sid-9", IssuedAt: t0.Add(-time.Minute)}, true},
		{"another session of the user", cache.Credential{Issuer: issA, Sub: "alice", SID: "sid-10", IssuedAt: t0.Add(-time.Minute)}, false},
		{"the sid at another issuer", cache.Credential{Issuer: issB, Sub: "alice", SID: "sid-9", IssuedAt: t0.Add(-time.Minute)}, false},
	} {
		if got := f.store.IsRevoked(&tt.c); got != tt.want {
			t.Errorf("%s: got revoked=%v; want %v", tt.name, got, tt.want)
		}
	}
	w = f.push(t, ssfRequest(setType, f.set(t, with(setClaims(introspect.EventAccountDisabled, subIssSub), "jti", "set-2")), ""))
	if w.Code != http.StatusAccepted {
		t.Fatalf("got %d %s; want 202", w.Code, w.Body)
	}
	if !f.store.IsRevoked(&cache.Credential{Issuer: issA, Sub: "alice", SID: "sid-10", IssuedAt: t0.Add(-time.Minute)}) {
		t.Error("account-disabled: a token issued before is not revoked")
	}
	if f.store.IsRevoked(&cache.Credential{Issuer: issA, Sub: "alice", IssuedAt: t0.Add(time.Hour)}) {
		t.Error("account-disabled: a token issued an hour later is revoked")
	}
}

func TestSSFRefused(t *testing.T) {
	const auth = "Bearer ssf-push-0123456789abcdef"
	f := newSSFFixture(t, ssfOptions{auth: auth})
	c := setClaims(introspect.EventSessionRevoked, subIssSub)
	valid := f.set(t, c)
	p := strings.Split(valid, ".")
	bclToken := signRS256(t, f.key, map[string]any{"alg": "RS256", "kid": ssfKeyID, "typ": "logout+jwt"},
		with(c, "sub_id", nil, "sub", "alice", "sid", "sid-1", "exp", t0.Add(time.Minute).Unix(), "events", map[string]any{bclEvent: map[string]any{}}))
	tests := []struct {
		name   string
		r      *http.Request
		status int
		code   string
	}{
		{"bad signature", ssfRequest(setType, p[0]+"."+p[1]+"."+b64.EncodeToString(bytes.Repeat([]byte{1}, 256)), auth), 400, "invalid_key"},
		{"signed by another key", ssfRequest(setType, signRS256(t, f.other, setHeader(), c), auth), 400, "invalid_key"},
		{"wrong iss", ssfRequest(setType, f.set(t, with(c, "iss", "https://evil.example")), auth), 400, "invalid_issuer"},
		{"wrong aud", ssfRequest(setType, f.set(t, with(c, "aud", "https://other.example")), auth), 400, "invalid_audience"},
		{"wrong content type", ssfRequest("application/jwt", valid, auth), 400, "invalid_request"},
		{"form content type", ssfRequest("application/x-www-form-urlencoded", "logout_token="+valid, auth), 400, "invalid_request"},
		{"no content type", ssfRequest("", valid, auth), 400, "invalid_request"},
		{"sub present", ssfRequest(setType, f.set(t, with(c, "sub", "alice")), auth), 400, "invalid_request"},
		{"exp present", ssfRequest(setType, f.set(t, with(c, "exp", t0.Add(time.Hour).Unix())), auth), 400, "invalid_request"},
		{"missing typ", ssfRequest(setType, signRS256(t, f.key, map[string]any{"alg": "RS256", "kid": ssfKeyID}, c), auth), 400, "invalid_request"},
		{"logout token pushed as a SET", ssfRequest(setType, bclToken, auth), 400, "invalid_request"},
		{"empty body", ssfRequest(setType, "", auth), 400, "invalid_request"},
		{"body too large", ssfRequest(setType, strings.Repeat("a", maxSETBody+1), auth), 400, "invalid_request"},
		{"no Authorization", ssfRequest(setType, valid, ""), 401, "authentication_failed"},
		{"wrong Authorization", ssfRequest(setType, valid, "Bearer nope"), 401, "authentication_failed"},
		{"Authorization with a suffix", ssfRequest(setType, valid, auth+"x"), 401, "authentication_failed"},
		{"GET", httptest.NewRequest(http.MethodGet, SSFPath, nil), 405, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.push(t, tt.r)
			if w.Code != tt.status {
				t.Fatalf("got %d %s; want %d", w.Code, w.Body, tt.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("got Content-Type %q; want application/json", ct)
			}
			var body struct {
				Err         string `json:"err"`
				Description string `json:"description"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Err != tt.code || body.Description == "" {
				t.Errorf("got body %s; want err %s with a description", w.Body, tt.code)
			}
			if tt.status == http.StatusUnauthorized && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("got WWW-Authenticate %q; want a Bearer challenge", w.Header().Get("WWW-Authenticate"))
			}
			if n := f.store.Len(); n != 0 {
				t.Errorf("store: got %d entries; want 0", n)
			}
		})
	}
	if strings.Contains(f.logs.String(), p[1]) || strings.Contains(f.logs.String(), "ssf-push-0123") {
		t.Error("the logs hold a SET or the Authorization header")
	}
	if w := f.push(t, ssfRequest(setType+"; charset=utf-8", valid, auth)); w.Code != http.StatusAccepted {
		t.Errorf("valid push: got %d %s; want 202", w.Code, w.Body)
	}
}

// TestSSFReplay: a SET delivered twice is acted on once; the second
// delivery is acknowledged (202) without touching the store.
func TestSSFReplay(t *testing.T) {
	f := newSSFFixture(t, ssfOptions{})
	raw := f.set(t, setClaims(introspect.EventAccountDisabled, subIssSub))
	if w := f.push(t, ssfRequest(setType, raw, "")); w.Code != http.StatusAccepted {
		t.Fatalf("first: got %d %s; want 202", w.Code, w.Body)
	}
	before := f.entries(t)
	f.clock.Advance(10 * time.Minute)
	if w := f.push(t, ssfRequest(setType, raw, "")); w.Code != http.StatusAccepted || w.Body.Len() != 0 {
		t.Fatalf("replay: got %d %q; want 202 with an empty body", w.Code, w.Body)
	}
	after := f.entries(t)
	if len(after) != 1 || !after[0].RevokedAt.Equal(before[0].RevokedAt) {
		t.Errorf("replay changed the store: got %+v; want %+v", after, before)
	}
	if got := ssfCounter(t, f.reg, "account_disabled", resultReplayed); got != 1 {
		t.Errorf("replayed counter: got %v; want 1", got)
	}
	// Another jti is another event.
	if w := f.push(t, ssfRequest(setType, f.set(t, with(setClaims(introspect.EventAccountDisabled, subIssSub), "jti", "set-2", "iat", t0.Add(9*time.Minute).Unix())), "")); w.Code != http.StatusAccepted {
		t.Fatalf("new jti: got %d; want 202", w.Code)
	}
	if e := f.entries(t); !e[0].RevokedAt.Equal(t0.Add(9 * time.Minute)) {
		t.Errorf("new jti: got revoked_at %v; want its iat %v", e[0].RevokedAt, t0.Add(9*time.Minute))
	}
}

// TestSSFDurableBefore202: the 202 is written only after the store holds
// the revocation.
func TestSSFDurableBefore202(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.db")
	f := newSSFFixture(t, ssfOptions{path: path})
	victim := &cache.Credential{Issuer: issA, Sub: "alice", IssuedAt: t0.Add(-time.Minute)}
	w := &statusAtWrite{ResponseRecorder: httptest.NewRecorder(), check: func() bool { return f.store.IsRevoked(victim) }}
	f.rx.ServeHTTP(w, ssfRequest(setType, f.set(t, setClaims(introspect.EventCredentialCompromise, subIssSub)), ""))
	if w.Code != http.StatusAccepted || !w.held {
		t.Fatalf("got %d (held %v); want 202 after the write", w.Code, w.held)
	}
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := cache.Open(cache.Config{Path: path, Clock: f.clock, ClockSkew: skew})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.IsRevoked(victim) {
		t.Error("the revocation did not survive a restart")
	}
}

func TestSSFStoreFailure(t *testing.T) {
	flaky := &flakyStore{}
	f := newSSFFixture(t, ssfOptions{path: "-", mod: func(c *Config) {
		flaky.Store = c.Store
		c.Store = flaky
	}})
	flaky.fail.Store(true)
	raw := f.set(t, setClaims(introspect.EventAccountPurged, subEmail))
	if w := f.push(t, ssfRequest(setType, raw, "")); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("failing store: got %d %s; want 503 with Retry-After", w.Code, w.Body)
	}
	if n := f.store.Len(); n != 0 {
		t.Fatalf("store: got %d entries; want 0", n)
	}
	flaky.fail.Store(false)
	if w := f.push(t, ssfRequest(setType, raw, "")); w.Code != http.StatusAccepted {
		t.Fatalf("retry: got %d %s; want 202", w.Code, w.Body)
	}
	if n := f.store.Len(); n != 2 {
		t.Errorf("store: got %d entries; want 2 (one per issuer)", n)
	}
	if got := ssfCounter(t, f.reg, "account_purged", resultError); got != 1 {
		t.Errorf("error counter: got %v; want 1", got)
	}
}

func TestSSFUnavailable(t *testing.T) {
	f := newSSFFixture(t, ssfOptions{path: "-"})
	f.jwksFail.Store(true)
	if w := f.push(t, ssfRequest(setType, f.set(t, setClaims(introspect.EventAccountDisabled, subIssSub)), "")); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("keys down: got %d %s; want 503", w.Code, w.Body)
	}
	if f.store.Len() != 0 {
		t.Error("the store changed")
	}
	// A replay cache that cannot answer does not stop the revocation (the
	// entries are the same however often the SET is processed).
	g := newSSFFixture(t, ssfOptions{path: "-", mod: func(c *Config) { c.Replays = failingReplays{} }})
	if w := g.push(t, ssfRequest(setType, g.set(t, setClaims(introspect.EventAccountDisabled, subIssSub)), "")); w.Code != http.StatusAccepted {
		t.Fatalf("replay cache down: got %d %s; want 202", w.Code, w.Body)
	}
	if g.store.Len() != 1 {
		t.Errorf("replay cache down: store entries %d; want 1", g.store.Len())
	}
}

func TestSSFRateLimit(t *testing.T) {
	f := newSSFFixture(t, ssfOptions{path: "-", mod: func(c *Config) { c.Receivers = ReceiverConfig{RatePerSecond: 1, Burst: 1} }})
	push := func(jti string) int {
		return f.push(t, ssfRequest(setType, f.set(t, with(setClaims(introspect.EventAccountDisabled, subIssSub), "jti", jti)), "")).Code
	}
	if got := push("a"); got != http.StatusAccepted {
		t.Fatalf("first: got %d; want 202", got)
	}
	if got := push("b"); got != http.StatusTooManyRequests {
		t.Fatalf("second: got %d; want 429", got)
	}
	f.clock.Advance(time.Second)
	if got := push("b"); got != http.StatusAccepted {
		t.Fatalf("after a second, the refused SET again: got %d; want 202", got)
	}
}

// TestSETPostedAsLogoutToken: a SET sent to the back-channel logout
// endpoint by a configured issuer is refused and changes nothing.
func TestSETPostedAsLogoutToken(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-"})
	base := f.claims()
	for _, tt := range []struct {
		name string
		typ  string
		c    map[string]any
	}{
		{"typ secevent+jwt", "secevent+jwt", with(base, "events", map[string]any{introspect.EventSessionRevoked: map[string]any{}})},
		{"typ secevent+jwt with the logout event", "secevent+jwt", base},
		{"typ JWT, CAEP event", "JWT", with(base, "events", map[string]any{introspect.EventSessionRevoked: map[string]any{}}, "sub_id", subIssSub)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok := sign(t, f.key, map[string]any{"alg": "ES256", "kid": keyID, "typ": tt.typ}, tt.c)
			if w := f.post(t, form, formBody(tok), nil); w.Code != http.StatusBadRequest {
				t.Fatalf("got %d %s; want 400", w.Code, w.Body)
			}
			if n := f.store.Len(); n != 0 {
				t.Errorf("store: got %d entries; want 0", n)
			}
		})
	}
}

func TestNewSSFValidates(t *testing.T) {
	_, err := NewSSF(Config{ClockSkew: -1})
	if err == nil {
		t.Fatal("got nil; want an error")
	}
	for _, w := range []string{"store: required", "sets: required", "replays: required", "lifetimes: at least one", "clock_skew: negative"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("got %q; want it to contain %q", err, w)
		}
	}
}

// seenReplays answers every key as already seen: what a replica finds
// when another replica recorded the jti but failed to store the
// revocation.
type seenReplays struct{}

func (seenReplays) FirstSeen(context.Context, string, time.Time) (bool, error) { return false, nil }

// TestSSFRetryAfterFailureElsewhere: a jti recorded by an attempt that
// stored nothing is not taken for a replay: the revocation is made.
func TestSSFRetryAfterFailureElsewhere(t *testing.T) {
	f := newSSFFixture(t, ssfOptions{path: "-", mod: func(c *Config) { c.Replays = seenReplays{} }})
	raw := f.set(t, setClaims(introspect.EventAccountDisabled, subIssSub))
	if w := f.push(t, ssfRequest(setType, raw, "")); w.Code != http.StatusAccepted {
		t.Fatalf("got %d %s; want 202", w.Code, w.Body)
	}
	if got := f.entries(t); len(got) != 1 || got[0].Value != "alice" {
		t.Fatalf("entries: got %+v; want alice's sub revoked", got)
	}
	// Now it is stored: the same SET again is a replay.
	if w := f.push(t, ssfRequest(setType, raw, "")); w.Code != http.StatusAccepted {
		t.Fatalf("replay: got %d", w.Code)
	}
	if got := ssfCounter(t, f.reg, "account_disabled", resultReplayed); got != 1 {
		t.Errorf("replayed counter: got %v; want 1", got)
	}
}

// TestSSFIssuerAllowList: a transmitter revokes only the users of the
// issuers it is allowed (issue 20, item 10); an event naming another
// configured issuer is refused with access_denied and stores nothing.
func TestSSFIssuerAllowList(t *testing.T) {
	const event = introspect.EventAccountDisabled
	subB := map[string]any{"format": "iss_sub", "iss": issB, "sub": "bob"}
	tests := []struct {
		name    string
		sub     map[string]any
		status  int
		wantErr string
		want    []want
	}{
		{"user of the allowed issuer", subIssSub, http.StatusAccepted, "", []want{{issA, cache.KindSub, "alice", t0.Add(-5 * time.Second)}}},
		{"user of another configured issuer", subB, http.StatusBadRequest, "access_denied", nil},
		{"session of another configured issuer", map[string]any{"format": "complex", "session": subB}, http.StatusBadRequest, "access_denied", nil},
		{"complex subject: user of another issuer, opaque session", map[string]any{"format": "complex", "user": subB, "session": map[string]any{"format": "opaque", "id": "s"}}, http.StatusBadRequest, "access_denied", nil},
		{"email: revoked under the allowed issuer only", subEmail, http.StatusAccepted, "", []want{{issA, cache.KindSub, "alice@example.com", t0.Add(-5 * time.Second)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSSFFixture(t, ssfOptions{path: "-", issuers: []string{issA}})
			w := f.push(t, ssfRequest(setType, f.set(t, setClaims(event, tt.sub)), ""))
			if w.Code != tt.status {
				t.Fatalf("got %d %s; want %d", w.Code, w.Body, tt.status)
			}
			if tt.wantErr != "" {
				var body setErrorBody
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Err != tt.wantErr || w.Header().Get("Content-Type") != "application/json" {
					t.Errorf("body %s (%s): want {\"err\":%q}", w.Body, w.Header().Get("Content-Type"), tt.wantErr)
				}
				if strings.Contains(w.Body.String(), "bob") {
					t.Errorf("body quotes the subject: %s", w.Body)
				}
			}
			got := f.entries(t)
			if len(got) != len(tt.want) {
				t.Fatalf("entries: got %+v; want %+v", got, tt.want)
			}
			for i, e := range got {
				if w := tt.want[i]; e.Issuer != w.iss || e.Kind != w.kind || e.Value != w.value || !e.RevokedAt.Equal(w.at) {
					t.Errorf("entry %d: got %+v; want %+v", i, e, w)
				}
			}
		})
	}
}

func TestSSFIssuerAllowListConfig(t *testing.T) {
	configured := []string{issA, issB}
	tests := []struct {
		name string
		t    introspect.Transmitter
		want []string
		err  string
	}{
		{"transmitter is a configured issuer", introspect.Transmitter{Issuer: issA}, []string{issA}, ""},
		{"listed", introspect.Transmitter{Issuer: transmitter, Issuers: []string{issB}}, []string{issB}, ""},
		{"third party without a list", introspect.Transmitter{Issuer: transmitter}, nil, "issuers: required"},
		{"unknown issuer listed", introspect.Transmitter{Issuer: transmitter, Issuers: []string{issA, "https://nope"}}, nil, "issuers[1]: not a configured issuer"},
		{"duplicate", introspect.Transmitter{Issuer: transmitter, Issuers: []string{issA, issA}}, nil, "issuers[1]: duplicate of issuers[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.t.AllowedIssuers(configured)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %v; want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
