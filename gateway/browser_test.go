package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

func TestBrowserLogin(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	res := b.get(e.srv.URL+"/app/page?q=1&r=%2F%2Fx", nil)
	if res.StatusCode != http.StatusFound {
		t.Fatalf("status: got %d; want 302", res.StatusCode)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	for k, want := range map[string]string{
		"response_type": "code", "client_id": testClientID, "redirect_uri": e.srv.URL + "/oauth2/callback",
		"scope": "openid profile email", "code_challenge_method": "S256",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("authorization request %s: got %q; want %q", k, got, want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) != 43 {
			t.Errorf("authorization request %s: got %q; want 43 base64url characters", k, q.Get(k))
		}
	}
	res = b.login(e, "/app/page?q=1&r=%2F%2Fx")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("after login: got %d; want 200 (%s)", res.StatusCode, res.body)
	}
	s := seenBy(t, res)
	if s.URI != "/app/page?q=1&r=%2F%2Fx" {
		t.Errorf("upstream URI: got %q", s.URI)
	}
	for h, want := range map[string]string{"X-User": "alice", "X-Email": "alice@example.com", "X-Sid": "sid-1", "X-Iss": e.idp.URL, "Cookie": ""} {
		if got := s.Header.Get(h); got != want {
			t.Errorf("upstream %s: got %q; want %q", h, got, want)
		}
	}
	// Client-sent identity headers are replaced.
	res = b.get(e.srv.URL+"/app/x", http.Header{"X-User": {"mallory"}, "X_Email": {"m@evil"}})
	if s := seenBy(t, res); s.Header.Get("X-User") != "alice" || len(s.Header.Values("X_Email")) != 0 {
		t.Errorf("identity headers: got %v", s.Header)
	}
	// The session cookie's attributes.
	b2 := e.browser(t)
	res = b2.get(e.srv.URL+"/app/", nil)
	res = b2.get(res.Header.Get("Location"), nil)
	res = b2.get(res.Header.Get("Location"), nil)
	var found bool
	for _, c := range res.Cookies() {
		if c.Name == DefaultCookieName {
			found = true
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.MaxAge != int((8*time.Hour).Seconds()) {
				t.Errorf("session cookie: got %+v", c)
			}
		}
	}
	if !found {
		t.Error("no session cookie set at the callback")
	}
	if got := res.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("callback Cache-Control: got %q; want no-store", got)
	}
}

// TestLoginRecordsLiveSID: the login records (iss, sid), the record a
// front-channel logout is checked against; a login whose sid cannot be
// recorded is refused (that session could not be ended by one).
func TestLoginRecordsLiveSID(t *testing.T) {
	e := newEnv(t, nil)
	if live, _ := e.store.SIDLive(t.Context(), e.idp.URL, "sid-1"); live {
		t.Fatal("sid-1 live before any login")
	}
	if res := e.browser(t).login(e, "/app/"); res.StatusCode != http.StatusOK {
		t.Fatalf("login: got %d %s", res.StatusCode, res.body)
	}
	if live, err := e.store.SIDLive(t.Context(), e.idp.URL, "sid-1"); !live || err != nil {
		t.Errorf("after login: sid-1 live %v, %v; want true", live, err)
	}
	e.gw.liveSIDs = failingLiveSIDs{}
	b := e.browser(t)
	res := b.get(e.srv.URL+"/app/", nil)
	res = b.get(res.Header.Get("Location"), nil)
	if res = b.get(res.Header.Get("Location"), nil); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("callback with the record failing: got %d; want 503", res.StatusCode)
	}
	if b.cookie(e, "/", DefaultCookieName) != "" {
		t.Error("a session cookie was set although its sid was not recorded")
	}
}

type failingLiveSIDs struct{}

func (failingLiveSIDs) RecordSID(context.Context, string, string, time.Time) error {
	return errors.New("disk full")
}

func TestSeveralTabsLogIn(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	var authorize []string
	for _, p := range []string{"/app/one", "/app/two"} {
		res := b.get(e.srv.URL+p, nil)
		authorize = append(authorize, res.Header.Get("Location"))
	}
	// The second tab finishes first.
	for i, want := range []string{"/app/two", "/app/one"} {
		res := b.get(authorize[1-i], nil)
		res = b.get(res.Header.Get("Location"), nil)
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != want {
			t.Errorf("tab %d: got %d to %q; want 302 to %q (%s)", i, res.StatusCode, res.Header.Get("Location"), want, res.body)
		}
	}
}

func TestLoginRefused(t *testing.T) {
	tests := []struct {
		name       string
		tamper     func(e *env, b *browser, callback *url.URL)
		wantStatus int
	}{
		{"state mismatch", func(e *env, b *browser, cb *url.URL) {
			q := cb.Query()
			q.Set("state", randomToken())
			cb.RawQuery = q.Encode()
		}, http.StatusBadRequest},
		{"no login cookie (callback replayed in another browser)", func(e *env, b *browser, cb *url.URL) {
			*b = *e.browser(b.t)
		}, http.StatusBadRequest},
		{"login state expired", func(e *env, b *browser, cb *url.URL) { e.clock.Advance(11 * time.Minute) }, http.StatusBadRequest},
		{"nonce mismatch", func(e *env, b *browser, cb *url.URL) {
			e.idp.mu.Lock()
			e.idp.nonce = randomToken()
			e.idp.mu.Unlock()
		}, http.StatusForbidden},
		{"PKCE verifier mismatch", func(e *env, b *browser, cb *url.URL) {
			e.idp.mu.Lock()
			code := cb.Query().Get("code")
			ar := e.idp.codes[code]
			ar.challenge = randomToken()
			e.idp.codes[code] = ar
			e.idp.mu.Unlock()
		}, http.StatusBadGateway},
		{"other issuer (RFC 9207)", func(e *env, b *browser, cb *url.URL) {
			q := cb.Query()
			q.Set("iss", "https://evil.example")
			cb.RawQuery = q.Encode()
		}, http.StatusBadRequest},
		{"no iss though the IdP always sends it (RFC 9207 §2.4)", func(e *env, b *browser, cb *url.URL) {
			q := cb.Query()
			q.Del("iss")
			cb.RawQuery = q.Encode()
		}, http.StatusBadRequest},
		{"error from the IdP", func(e *env, b *browser, cb *url.URL) {
			q := cb.Query()
			q.Del("code")
			q.Set("error", "access_denied")
			cb.RawQuery = q.Encode()
		}, http.StatusForbidden},
		{"code of one login with the state of another", func(e *env, b *browser, cb *url.URL) {
			// The second login's state and cookie are valid, but the code
			// is bound to the first login's PKCE challenge.
			other := b.get(e.srv.URL+"/oauth2/start?rd=/app/", nil)
			if other.StatusCode != http.StatusFound {
				b.t.Fatal(other.StatusCode)
			}
			q := cb.Query()
			st, _ := url.Parse(other.Header.Get("Location"))
			q.Set("state", st.Query().Get("state"))
			cb.RawQuery = q.Encode()
		}, http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			b := e.browser(t)
			res := b.get(e.srv.URL+"/app/", nil)
			res = b.get(res.Header.Get("Location"), nil)
			cb, err := url.Parse(res.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			tt.tamper(e, b, cb)
			before := e.app.hits.Load()
			res = b.get(cb.String(), nil)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("callback: got %d; want %d (%s)", res.StatusCode, tt.wantStatus, res.body)
			}
			if b.cookie(e, "/", DefaultCookieName) != "" {
				t.Error("a session cookie was set")
			}
			res = b.get(e.srv.URL+"/app/", nil)
			if res.StatusCode != http.StatusFound || e.app.hits.Load() != before {
				t.Errorf("after a refused login: got %d and %d upstream hits; want 302 and none", res.StatusCode, e.app.hits.Load()-before)
			}
		})
	}
}

func TestReturnPathOnStart(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct{ rd, want string }{
		{"/app/x?y=1", "/app/x?y=1"},
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/"},
		{"https://evil.example/", "/"},
		{"javascript:alert(1)", "/"},
		{"/\t/evil.example", "/"},
		{"/app/\r\nSet-Cookie:x=1", "/"},
		{"", "/"},
		{"app", "/"},
		{"/%2F%2Fevil.example", "/"},
		{"/app/%2e%2e/x", "/app/%2e%2e/x"},
	}
	for _, tt := range tests {
		t.Run(tt.rd, func(t *testing.T) {
			b := e.browser(t)
			res := b.get(e.srv.URL+"/oauth2/start?rd="+url.QueryEscape(tt.rd), nil)
			if res.StatusCode != http.StatusFound {
				t.Fatalf("start: got %d", res.StatusCode)
			}
			res = b.get(res.Header.Get("Location"), nil)
			res = b.get(res.Header.Get("Location"), nil)
			if got := res.Header.Get("Location"); got != tt.want {
				t.Errorf("return: got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestSafeReturnPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/", "/"},
		{"/a/b?c=d&e=%2F", "/a/b?c=d&e=%2F"},
		{"//evil", "/"},
		{"/\\evil", "/"},
		{"/a\\b", "/"},
		{"http://evil", "/"},
		{"/a#frag", "/"},
		{"/a b", "/"},
		{"/a\x00", "/"},
		{"/a\x7f", "/"},
		{"/é", "/"},
		{"/" + strings.Repeat("a", maxReturnPath), "/"},
		{"/a:b", "/a:b"},
		{"/%zz", "/"},
	}
	for _, tt := range tests {
		if got := safeReturnPath(tt.in); got != tt.want {
			t.Errorf("safeReturnPath(%q): got %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestNotANavigation(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name       string
		method     string
		path       string
		header     http.Header
		wantStatus int
		wantChall  string
	}{
		{"navigation", "GET", "/app/", http.Header{"Accept": {"text/html,application/xhtml+xml,*/*;q=0.8"}, "Sec-Fetch-Mode": {"navigate"}}, 302, ""},
		{"no hints", "GET", "/app/", nil, 302, ""},
		{"XHR", "GET", "/app/", http.Header{"X-Requested-With": {"XMLHttpRequest"}}, 401, ""},
		{"JSON", "GET", "/app/", http.Header{"Accept": {"application/json"}}, 401, ""},
		{"JSON or HTML", "GET", "/app/", http.Header{"Accept": {"application/json, text/html"}}, 302, ""},
		{"fetch", "GET", "/app/", http.Header{"Sec-Fetch-Mode": {"cors"}}, 401, ""},
		{"POST", "POST", "/app/", nil, 401, ""},
		{"either route XHR", "GET", "/api/", http.Header{"X-Requested-With": {"XMLHttpRequest"}}, 401, `Bearer realm="oidcgate"`},
		{"either route navigation", "GET", "/api/", nil, 302, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, e.browser(t).client, tt.method, e.srv.URL+tt.path, tt.header)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d; want %d", res.StatusCode, tt.wantStatus)
			}
			if got := res.Header.Get("WWW-Authenticate"); got != tt.wantChall {
				t.Errorf("WWW-Authenticate: got %q; want %q", got, tt.wantChall)
			}
			if tt.wantStatus == 401 && !strings.Contains(res.body, "login_required") {
				t.Errorf("body: got %q", res.body)
			}
		})
	}
}

func TestEitherMode(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	tok := e.idp.accessToken(t, "bob")
	tests := []struct {
		name       string
		browser    *browser
		auth       string
		wantStatus int
		wantUser   string
	}{
		{"bearer", e.browser(t), "Bearer " + tok, 200, "bob"},
		{"bad bearer is not sent to login", e.browser(t), "Bearer abc", 401, ""},
		{"bearer wins over a session", b, "Bearer " + tok, 200, "bob"},
		{"session", b, "", 200, "alice"},
		{"nothing", e.browser(t), "", 302, ""},
	}
	b.login(e, "/app/")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.auth != "" {
				h.Set("Authorization", tt.auth)
			}
			res := tt.browser.get(e.srv.URL+"/api/x", h)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (%s)", res.StatusCode, tt.wantStatus, res.body)
			}
			if tt.wantUser != "" {
				if got := seenBy(t, res).Header.Get("X-User"); got != tt.wantUser {
					t.Errorf("X-User: got %q; want %q", got, tt.wantUser)
				}
			}
		})
	}
}

func TestRevokedSession(t *testing.T) {
	tests := []struct {
		name  string
		entry func(e *env, sessionID string) cache.Entry
	}{
		{"session id", func(e *env, id string) cache.Entry {
			return cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest(id)}
		}},
		{"iss and sid", func(e *env, _ string) cache.Entry {
			return cache.Entry{Issuer: e.idp.URL, Kind: cache.KindSID, Value: "sid-1"}
		}},
		{"iss and sub issued before", func(e *env, _ string) cache.Entry {
			return cache.Entry{Issuer: e.idp.URL, Kind: cache.KindSub, Value: "alice"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			b, other := e.browser(t), e.browser(t)
			b.login(e, "/app/")
			e.idp.setUser(user{Sub: "bob", SID: "sid-2"})
			other.login(e, "/app/")
			s, ok := e.gw.cookies.open(b.cookie(e, "/", DefaultCookieName), true)
			if !ok {
				t.Fatal("session cookie does not open")
			}
			e.clock.Advance(time.Minute)
			e.revoke(t, tt.entry(e, s.ID))
			before := e.app.hits.Load()
			if res := b.get(e.srv.URL+"/app/", nil); res.StatusCode != http.StatusFound {
				t.Errorf("revoked session: got %d; want 302 to login", res.StatusCode)
			}
			if res := b.get(e.srv.URL+"/app/", http.Header{"Accept": {"application/json"}}); res.StatusCode != http.StatusUnauthorized {
				t.Errorf("revoked session, XHR: got %d; want 401", res.StatusCode)
			}
			if got := e.app.hits.Load() - before; got != 0 {
				t.Errorf("upstream hits with a revoked session: got %d; want 0", got)
			}
			if res := other.get(e.srv.URL+"/app/", nil); res.StatusCode != http.StatusOK {
				t.Errorf("other user's session: got %d; want 200", res.StatusCode)
			}
			// Logging in again (after the clock skew) works.
			e.clock.Advance(testSkew + time.Second)
			e.idp.setUser(user{Sub: "alice", SID: "sid-3"})
			if res := b.login(e, "/app/"); res.StatusCode != http.StatusOK {
				t.Errorf("login after revocation: got %d; want 200", res.StatusCode)
			}
		})
	}
	t.Run("login within the skew of a sub revocation", func(t *testing.T) {
		e := newEnv(t, nil)
		e.revoke(t, cache.Entry{Issuer: e.idp.URL, Kind: cache.KindSub, Value: "alice"})
		b := e.browser(t)
		res := b.get(e.srv.URL+"/app/", nil)
		res = b.get(res.Header.Get("Location"), nil)
		res = b.get(res.Header.Get("Location"), nil)
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("callback: got %d; want 403 (no redirect loop)", res.StatusCode)
		}
	})
	t.Run("expired session", func(t *testing.T) {
		e := newEnv(t, nil)
		b := e.browser(t)
		b.login(e, "/app/")
		e.clock.Advance(8*time.Hour + time.Second)
		if res := b.get(e.srv.URL+"/app/", nil); res.StatusCode != http.StatusFound {
			t.Errorf("expired session: got %d; want 302", res.StatusCode)
		}
	})
}
