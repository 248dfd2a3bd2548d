package logout

import (
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

func TestFrontchannel(t *testing.T) {
	f := newRxFixture(t, rxOptions{})
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
	q := func(sid string) string { return url.Values{"iss": {f.strict}, "sid": {sid}}.Encode() }
	if w := f.get(t, http.MethodGet, q("a"), nil); w.Code != http.StatusOK {
		t.Fatalf("a: got %d; want 200", w.Code)
	}
	w := f.get(t, http.MethodGet, q("b"), nil)
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" {
		t.Fatalf("b: got %d, Retry-After %q; want 429, 2", w.Code, w.Header().Get("Retry-After"))
	}
	f.clock.Add(2 * time.Second)
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
