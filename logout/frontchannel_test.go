package logout

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// get sends GET ?query to the fixture's Frontchannel and checks the
// headers every answer must have.
func (f *rxFixture) get(t *testing.T, method, query string, want *cache.Credential) *statusAtWrite {
	t.Helper()
	r := httptest.NewRequest(method, FrontchannelPath+"?"+query, nil)
	w := &statusAtWrite{ResponseRecorder: httptest.NewRecorder(), check: func() bool {
		return want != nil && f.store.IsRevoked(want)
	}}
	f.fc.ServeHTTP(w, r)
	for name, v := range map[string]string{
		"Cache-Control":           "no-cache, no-store",
		"Pragma":                  "no-cache",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Content-Security-Policy": "default-src 'none'",
		"X-Frame-Options":         "", // it must be framable by the OP
	} {
		if got := w.Header().Get(name); got != v {
			t.Errorf("%s: got %q; want %q", name, got, v)
		}
	}
	return w
}

// live records (iss, sid) as a live gateway session, as the gateway does
// at login.
func (f *rxFixture) live(t *testing.T, iss string, sids ...string) {
	t.Helper()
	for _, sid := range sids {
		if err := f.store.RecordSID(t.Context(), iss, sid, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFrontchannel(t *testing.T) {
	f := newRxFixture(t, rxOptions{})
	f.live(t, f.strict, "sid-1", "sid-2")
	victim := &cache.Credential{Issuer: f.strict, SID: "sid-1", Sub: "alice", IssuedAt: t0.Add(-time.Minute)}
	w := f.get(t, http.MethodGet, url.Values{"iss": {f.strict}, "sid": {"sid-1"}, "x": {"ignored"}}.Encode(), victim)
	if w.Code != http.StatusOK {
		t.Fatalf("got %d %s; want 200", w.Code, w.Body)
	}
	if !w.held {
		t.Error("store did not hold the revocation when the status was written")
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" || !strings.Contains(w.Body.String(), "<html>") {
		t.Errorf("got %q %q; want a small HTML page", ct, w.Body)
	}
	if !f.store.IsRevoked(victim) {
		t.Error("session not revoked")
	}
	if f.store.IsRevoked(&cache.Credential{Issuer: f.strict, SID: "sid-2", Sub: "alice", IssuedAt: t0.Add(-time.Minute)}) {
		t.Error("another session of the user was revoked")
	}
	e, _ := f.store.Get(f.strict, cache.KindSID, "sid-1")
	if e.Reason != "frontchannel_logout" || e.Initiator != "frontchannel:"+f.strict || !e.ExpiresAt.Equal(t0.Add(time.Hour+2*skew)) {
		t.Errorf("entry: got %+v; want reason frontchannel_logout, initiator frontchannel:<iss>, expiry t0+1h+2skew", e)
	}
	if strings.Contains(f.logs.String(), "sid-1") {
		t.Errorf("logs hold the sid: %s", f.logs)
	}
	// Repeating it is still a 200 (logout is idempotent).
	if w := f.get(t, http.MethodGet, "iss="+url.QueryEscape(f.strict)+"&sid=sid-1", nil); w.Code != http.StatusOK {
		t.Errorf("again: got %d; want 200", w.Code)
	}
}

func TestFrontchannelInvalid(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-"})
	iss := url.QueryEscape(f.strict)
	tests := []struct {
		name   string
		method string
		query  string
		want   int
	}{
		{"POST", http.MethodPost, "iss=" + iss + "&sid=s", http.StatusMethodNotAllowed},
		{"no parameters", http.MethodGet, "", http.StatusBadRequest},
		{"iss only", http.MethodGet, "iss=" + iss, http.StatusBadRequest},
		{"sid only", http.MethodGet, "sid=s", http.StatusBadRequest},
		{"sid empty", http.MethodGet, "iss=" + iss + "&sid=", http.StatusBadRequest},
		{"sid twice", http.MethodGet, "iss=" + iss + "&sid=a&sid=b", http.StatusBadRequest},
		{"iss twice", http.MethodGet, "iss=" + iss + "&iss=" + iss + "&sid=s", http.StatusBadRequest},
		{"unknown issuer", http.MethodGet, "iss=https%3A%2F%2Fevil.example&sid=s", http.StatusBadRequest},
		{"issuer with a trailing slash", http.MethodGet, "iss=" + iss + "%2F&sid=s", http.StatusBadRequest},
		{"sid too long", http.MethodGet, "iss=" + iss + "&sid=" + strings.Repeat("s", cache.MaxValueLen+1), http.StatusBadRequest},
		{"malformed query", http.MethodGet, "iss=" + iss + "&sid=s&x=%zz", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.get(t, tt.method, tt.query, nil)
			if w.Code != tt.want {
				t.Fatalf("got %d %s; want %d", w.Code, w.Body, tt.want)
			}
			if ct := w.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type: got %q; want text/plain", ct)
			}
			if tt.want == http.StatusMethodNotAllowed && w.Header().Get("Allow") != "GET" {
				t.Errorf("Allow: got %q; want GET", w.Header().Get("Allow"))
			}
			if strings.Contains(w.Body.String(), "evil") {
				t.Errorf("body echoes the request: %s", w.Body)
			}
			if f.store.Len() != 0 {
				t.Errorf("store entries: got %d; want 0", f.store.Len())
			}
		})
	}
}

func TestFrontchannelRateLimitAndFailure(t *testing.T) {
	flaky := &flakyStore{}
	f := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) {
		flaky.Store = c.Store
		c.Store = flaky
		c.Receivers = ReceiverConfig{RatePerSecond: 0.5, Burst: 1}
	}})
	f.live(t, f.strict, "a", "b")
	q := func(sid string) string { return url.Values{"iss": {f.strict}, "sid": {sid}}.Encode() }
	if w := f.get(t, http.MethodGet, q("a"), nil); w.Code != http.StatusOK {
		t.Fatalf("a: got %d; want 200", w.Code)
	}
	w := f.get(t, http.MethodGet, q("b"), nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("b: got %d, Retry-After %q; want 429, 2", w.Code, w.Header().Get("Retry-After"))
	}
	f.clock.Advance(2 * time.Second)
	flaky.fail.Store(true)
	if w := f.get(t, http.MethodGet, q("b"), nil); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("failing store: got %d; want 503 with Retry-After", w.Code)
	}
	if f.store.IsRevoked(&cache.Credential{Issuer: f.strict, SID: "b"}) {
		t.Error("b revoked although the write failed")
	}
	for result, want := range map[string]float64{resultOK: 1, resultRateLimited: 1, resultError: 1} {
		if got := counterValue(t, f.reg, "oidcgate_frontchannel_logout_total", result); got != want {
			t.Errorf("%s counter: got %v; want %v", result, got, want)
		}
	}
}

// TestFrontchannelFlood: 10,000 forged requests with made-up sids, from
// one address and from many, store nothing, write no log line, and leave
// the OP's real logouts working (issue 20, item 3).
func TestFrontchannelFlood(t *testing.T) {
	f := newRxFixture(t, rxOptions{mod: func(c *Config) {
		c.Receivers = ReceiverConfig{RatePerSecond: 1, Burst: 5}
	}})
	f.live(t, f.strict, "real-1", "real-2")
	logsBefore := f.logs.Len()
	send := func(addr, sid string) int {
		r := httptest.NewRequest(http.MethodGet, FrontchannelPath+"?"+url.Values{"iss": {f.strict}, "sid": {sid}}.Encode(), nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		f.fc.ServeHTTP(w, r)
		return w.Code
	}
	codes := map[int]int{}
	for i := range 10_000 {
		// Half from one address, half from 5,000 addresses (IPv4 and
		// IPv6 hosts in distinct /64s).
		addr := "198.51.100.7:4242"
		if i%2 == 1 {
			addr = fmt.Sprintf("[2001:db8:%x:%x::1]:443", i/256, i%256)
			if i%4 == 1 {
				addr = fmt.Sprintf("10.%d.%d.%d:80", i/65536, (i/256)%256, i%256)
			}
		}
		codes[send(addr, fmt.Sprintf("made-up-%d-%s", i, strings.Repeat("x", 1000)))]++
	}
	if codes[http.StatusOK]+codes[http.StatusTooManyRequests] != 10_000 {
		t.Fatalf("answers: %v; want only 200 and 429", codes)
	}
	if codes[http.StatusTooManyRequests] == 0 {
		t.Errorf("answers: %v; want the one busy address limited", codes)
	}
	if n := f.store.Len(); n != 0 {
		t.Errorf("store: %d entries after the flood; want 0", n)
	}
	if got := counterValue(t, f.reg, "oidcgate_frontchannel_logout_total", resultUnknownSID); got != float64(codes[http.StatusOK]) {
		t.Errorf("unknown_sid counter: got %v; want %d", got, codes[http.StatusOK])
	}
	if f.logs.Len() != logsBefore {
		t.Errorf("the flood wrote log lines: %s", f.logs.String()[logsBefore:])
	}
	// The OP's real logouts, from a user's browser, still work: the
	// issuer's bucket was never touched by made-up sids.
	for _, sid := range []string{"real-1", "real-2"} {
		if code := send("203.0.113.9:5555", sid); code != http.StatusOK {
			t.Fatalf("real logout %s: got %d; want 200", sid, code)
		}
		if !f.store.IsRevoked(&cache.Credential{Issuer: f.strict, SID: sid}) {
			t.Errorf("real logout %s: not revoked", sid)
		}
	}
	// Even from the flooding address once its bucket has refilled.
	f.live(t, f.strict, "real-3")
	f.clock.Advance(time.Minute)
	if code := send("198.51.100.7:4242", "real-3"); code != http.StatusOK || !f.store.IsRevoked(&cache.Credential{Issuer: f.strict, SID: "real-3"}) {
		t.Errorf("real logout from the flooding address after a minute: got %d; want 200 and revoked", code)
	}
}

func TestFrontchannelSourceLimit(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) {
		c.Receivers = ReceiverConfig{SourceRatePerSecond: 1, SourceBurst: 2}
	}})
	send := func(addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, FrontchannelPath+"?iss="+url.QueryEscape(f.strict)+"&sid=x", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		f.fc.ServeHTTP(w, r)
		return w
	}
	for i, tt := range []struct {
		addr string
		want int
	}{
		{"192.0.2.1:1", 200}, {"192.0.2.1:2", 200}, {"192.0.2.1:3", 429},
		{"192.0.2.2:1", 200},                                                         // another IPv4 host
		{"[2001:db8::1]:1", 200}, {"[2001:db8::2]:1", 200}, {"[2001:db8::3]:1", 429}, // one /64
		{"[2001:db8:0:1::1]:1", 200},  // the next /64
		{"[::ffff:192.0.2.1]:4", 429}, // IPv4-mapped is the same host
	} {
		w := send(tt.addr)
		if w.Code != tt.want {
			t.Errorf("request %d from %s: got %d; want %d", i, tt.addr, w.Code, tt.want)
		}
		if tt.want == 429 && w.Header().Get("Retry-After") != "1" {
			t.Errorf("request %d: Retry-After %q; want 1", i, w.Header().Get("Retry-After"))
		}
	}
	f.clock.Advance(time.Second)
	if w := send("192.0.2.1:9"); w.Code != 200 {
		t.Errorf("after a second: got %d; want 200", w.Code)
	}
}

func TestFrontchannelOff(t *testing.T) {
	f := newRxFixture(t, rxOptions{path: "-", mod: func(c *Config) { c.FrontchannelOff = []string{fixedIssuerBase + hydraPath} }})
	f.live(t, f.hydra, "h-1")
	f.live(t, f.strict, "s-1")
	if w := f.get(t, http.MethodGet, url.Values{"iss": {f.hydra}, "sid": {"h-1"}}.Encode(), nil); w.Code != http.StatusNotFound {
		t.Errorf("issuer with front-channel off: got %d; want 404", w.Code)
	}
	if f.store.Len() != 0 {
		t.Error("an issuer with front-channel off revoked a session")
	}
	if w := f.get(t, http.MethodGet, url.Values{"iss": {f.strict}, "sid": {"s-1"}}.Encode(), nil); w.Code != http.StatusOK || f.store.Len() != 1 {
		t.Errorf("other issuer: got %d, %d entries; want 200, 1", w.Code, f.store.Len())
	}
	_, err := NewFrontchannel(Config{Lifetimes: map[string]time.Duration{f.strict: time.Hour}, Store: f.store, LiveSIDs: f.store, FrontchannelOff: []string{"https://nope"}})
	if err == nil || !strings.Contains(err.Error(), "frontchannel_off[0]: not a configured issuer") {
		t.Errorf("unknown issuer in FrontchannelOff: got %v", err)
	}
	if _, err := NewFrontchannel(Config{Lifetimes: map[string]time.Duration{f.strict: time.Hour}, Store: f.store}); err == nil || !strings.Contains(err.Error(), "live_sids: required") {
		t.Errorf("no LiveSIDs: got %v", err)
	}
}

// TestFrontchannelWithoutISS: with FrontchannelWithoutISS (Entra sends
// sid without iss), a request with only sid is taken for that issuer's —
// a live sid is revoked, any other stores nothing; without it, such a
// request is refused.
func TestFrontchannelWithoutISS(t *testing.T) {
	f := newRxFixture(t, rxOptions{mod: func(c *Config) { c.FrontchannelWithoutISS = fixedIssuerBase }})
	f.live(t, f.strict, "sid-1")
	victim := &cache.Credential{Issuer: f.strict, SID: "sid-1", Sub: "alice", IssuedAt: t0.Add(-time.Minute)}
	if w := f.get(t, http.MethodGet, "sid=sid-1", victim); w.Code != http.StatusOK || !w.held {
		t.Fatalf("sid without iss: got %d %s (revoked when answered: %v); want 200 after the revocation", w.Code, w.Body, w.held)
	}
	if w := f.get(t, http.MethodGet, "sid=sid-unknown", nil); w.Code != http.StatusOK {
		t.Fatalf("unknown sid without iss: got %d; want 200", w.Code)
	}
	if _, ok := f.store.Get(f.strict, cache.KindSID, "sid-unknown"); ok {
		t.Error("a sid of no live session was revoked")
	}
	// An iss that is sent is never replaced, even an empty one.
	if w := f.get(t, http.MethodGet, "iss=&sid=sid-1", nil); w.Code != http.StatusBadRequest {
		t.Errorf("empty iss: got %d; want 400", w.Code)
	}

	off := newRxFixture(t, rxOptions{})
	off.live(t, off.strict, "sid-1")
	if w := off.get(t, http.MethodGet, "sid=sid-1", nil); w.Code != http.StatusBadRequest {
		t.Errorf("sid without iss, setting off: got %d; want 400", w.Code)
	}
	if n := off.store.Len(); n != 0 {
		t.Errorf("setting off: store holds %d entries; want none", n)
	}
}

// TestNewFrontchannelWithoutISS: the implied issuer must be configured
// and have front-channel logout on.
func TestNewFrontchannelWithoutISS(t *testing.T) {
	base := Config{Lifetimes: map[string]time.Duration{issA: time.Hour}, Store: openStore(t), LiveSIDs: openStore(t)}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"not configured", func(c *Config) { c.FrontchannelWithoutISS = issB }, "frontchannel_without_iss: not a configured issuer"},
		{"front-channel off", func(c *Config) { c.FrontchannelWithoutISS, c.FrontchannelOff = issA, []string{issA} }, "frontchannel_without_iss: front-channel logout is off"},
	} {
		c := base
		tt.mod(&c)
		if _, err := NewFrontchannel(c); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v; want an error with %q", tt.name, err, tt.want)
		}
	}
}
