package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
)

// appLogin logs b in and lets the app set its session cookie; it returns
// the real value the app handed out.
func appLogin(t *testing.T, e *env, b *browser) string {
	t.Helper()
	b.login(e, "/app/")
	res := b.get(e.srv.URL+"/app/login", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("app login: got %d", res.StatusCode)
	}
	real := e.app.lastSession()
	for _, line := range res.Header.Values("Set-Cookie") {
		if strings.Contains(line, real) {
			t.Fatalf("the app's real cookie reached the browser: %q", line)
		}
	}
	return real
}

func TestSealedAppCookies(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	b.login(e, "/app/")
	res := b.get(e.srv.URL+"/app/login", nil)
	real := e.app.lastSession()
	var sealed *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "JSESSIONID" {
			sealed = c
		}
	}
	switch {
	case sealed == nil:
		t.Fatal("no JSESSIONID Set-Cookie")
	case sealed.Value == real || strings.Contains(sealed.Value, strings.TrimPrefix(real, "REAL-")):
		t.Fatalf("the browser got the real value")
	case !sealed.HttpOnly || sealed.Path != "/app" || sealed.SameSite != http.SameSiteStrictMode:
		t.Errorf("attributes: got %+v; want HttpOnly, Path=/app, SameSite=Strict kept", sealed)
	}
	if strings.Contains(res.body, real) || strings.Contains(strings.Join(res.Header.Values("Set-Cookie"), "\n"), real) {
		t.Error("the real value is in the response")
	}
	// Other cookies pass unchanged.
	if got := b.cookie(e, "/", "theme"); got != "dark" {
		t.Errorf("theme cookie: got %q; want dark", got)
	}
	// The upstream gets the real value back, and no gateway cookie.
	res = b.get(e.srv.URL+"/app/x", nil)
	cookie := seenBy(t, res).Header.Get("Cookie")
	if !strings.Contains(cookie, "JSESSIONID="+real) || !strings.Contains(cookie, "theme=dark") || strings.Contains(cookie, DefaultCookieName) {
		t.Errorf("upstream Cookie: got %q; want the real JSESSIONID and theme only", cookie)
	}

	// Another user's browser.
	other := e.browser(t)
	e.idp.setUser(user{Sub: "bob", SID: "sid-2"})
	other.login(e, "/app/")
	tests := []struct {
		name  string
		value string
	}{
		{"sealed under another session", sealed.Value},
		{"not sealed", real},
		{"tampered", sealed.Value[:len(sealed.Value)-2] + "AA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other.setCookie(e, &http.Cookie{Name: "JSESSIONID", Value: tt.value, Path: "/app"})
			res := other.get(e.srv.URL+"/app/x", nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status: got %d", res.StatusCode)
			}
			if got := seenBy(t, res).Header.Get("Cookie"); strings.Contains(got, "JSESSIONID") {
				t.Errorf("upstream Cookie: got %q; want no JSESSIONID", got)
			}
			var expired bool
			for _, c := range res.Cookies() {
				if c.Name == "JSESSIONID" && c.MaxAge < 0 && c.Path == "/app" {
					expired = true
				}
			}
			if !expired {
				t.Errorf("Set-Cookie: got %q; want JSESSIONID expired at Path=/app", res.Header.Values("Set-Cookie"))
			}
		})
	}
	t.Run("sealed for another route's app", func(t *testing.T) {
		// Two apps on one host, both with JSESSIONID: the cookie sealed for
		// /app must never reach the app behind /other.
		e := newEnv(t, func(c *Config) {
			c.Routes = append(c.Routes, Route{PathPrefix: "/other", Upstream: c.Routes[0].Upstream, Auth: AuthBrowser, AppSessionCookies: []string{"JSESSIONID"}})
		})
		b := e.browser(t)
		b.login(e, "/app/")
		res := b.get(e.srv.URL+"/app/login", nil)
		var sealed string
		for _, c := range res.Cookies() {
			if c.Name == "JSESSIONID" {
				sealed = c.Value
			}
		}
		if sealed == "" {
			t.Fatal("no sealed JSESSIONID")
		}
		b.setCookie(e, &http.Cookie{Name: "JSESSIONID", Value: sealed, Path: "/"})
		res = b.get(e.srv.URL+"/other/x", nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status: got %d", res.StatusCode)
		}
		if got := seenBy(t, res).Header.Get("Cookie"); strings.Contains(got, "JSESSIONID") {
			t.Errorf("upstream of /other got %q; want no JSESSIONID", got)
		}
	})
	t.Run("session id in the path", func(t *testing.T) {
		for _, p := range []string{"/app/x;jsessionid=" + real, "/app/x;JSESSIONID=abc", "/app/x%3Bjsessionid=abc"} {
			res := b.get(e.srv.URL+p, nil)
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: got %d; want 400", p, res.StatusCode)
			}
		}
	})
	t.Run("103 Early Hints", func(t *testing.T) {
		var interim []string
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				interim = append(interim, fmt.Sprint(code, h))
				return nil
			},
		})
		req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/app/hints", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if len(interim) != 1 || !strings.Contains(interim[0], "preload") || strings.Contains(interim[0], "REAL") {
			t.Errorf("1xx responses: got %q; want one 103 without the app's cookie", interim)
		}
	})
	t.Run("bearer request on an either route", func(t *testing.T) {
		e := newEnv(t, func(c *Config) {
			c.Routes[1].AppSessionCookies = []string{"JSESSIONID"}
			c.Routes[1].PathPrefix = "/app/login"
		})
		res := do(t, e.srv.Client(), "GET", e.srv.URL+"/app/login", http.Header{"Authorization": {"Bearer " + e.idp.accessToken(t, "bob")}})
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status: got %d", res.StatusCode)
		}
		for _, c := range res.Cookies() {
			if c.Name == "JSESSIONID" {
				t.Errorf("app cookie without a session reached the client: %+v", c)
			}
		}
	})
}

func TestAppLogoutOnRevocation(t *testing.T) {
	tests := []struct {
		name  string
		entry func(e *env, sessionID string) cache.Entry
	}{
		{"session id", func(_ *env, id string) cache.Entry {
			return cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest(id)}
		}},
		{"iss and sid", func(e *env, _ string) cache.Entry {
			return cache.Entry{Issuer: e.idp.URL, Kind: cache.KindSID, Value: "sid-1"}
		}},
		{"iss and sub", func(e *env, _ string) cache.Entry {
			return cache.Entry{Issuer: e.idp.URL, Kind: cache.KindSub, Value: "alice"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			b := e.browser(t)
			real := appLogin(t, e, b)
			other := e.browser(t)
			e.idp.setUser(user{Sub: "bob", SID: "sid-2"})
			appLogin(t, e, other)
			e.app.fail.Store(2) // two 500s, then success
			s, _ := e.gw.cookies.open(b.cookie(e, "/", DefaultCookieName), true)
			e.revoke(t, tt.entry(e, s.ID))
			if got := e.app.waitLogout(t); got != "JSESSIONID="+real {
				t.Errorf("logout Cookie: got %q; want JSESSIONID=%s", got, real)
			}
			// The revoked session's cookies are refused and no second call
			// is made by the lazy path.
			if res := b.get(e.srv.URL+"/app/x", nil); res.StatusCode != http.StatusFound {
				t.Errorf("after revocation: got %d; want 302", res.StatusCode)
			}
			e.app.noLogout(t, e)
			if got := e.app.calls.Load(); got != 3 {
				t.Errorf("logout attempts: got %d; want 3", got)
			}
			if got := logoutCount(t, e.reg, outcomeOK); got != 1 {
				t.Errorf("oidcgate_app_logout_total{outcome=ok}: got %v; want 1", got)
			}
			if strings.Contains(e.logs.String(), real) {
				t.Error("the log holds the app's cookie")
			}
		})
	}
	t.Run("sub revoked before a later login", func(t *testing.T) {
		e := newEnv(t, nil)
		b := e.browser(t)
		e.clock.Advance(-time.Hour) // the login is an hour before the revocation
		appLogin(t, e, b)
		e.clock.Advance(time.Hour)
		later := e.browser(t)
		e.clock.Advance(time.Hour)
		appLogin(t, e, later)
		e.revoke(t, cache.Entry{Issuer: e.idp.URL, Kind: cache.KindSub, Value: "alice", RevokedAt: e.clock.Now().Add(-30 * time.Minute)})
		e.app.waitLogout(t)
		e.app.noLogout(t, e)
	})
	t.Run("failing app", func(t *testing.T) {
		e := newEnv(t, nil)
		b := e.browser(t)
		appLogin(t, e, b)
		e.app.fail.Store(100)
		s, _ := e.gw.cookies.open(b.cookie(e, "/", DefaultCookieName), true)
		e.revoke(t, cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest(s.ID)})
		e.gw.Close()
		if got := e.app.calls.Load(); got != defaultLogoutAttempts {
			t.Errorf("attempts: got %d; want %d", got, defaultLogoutAttempts)
		}
		if got := logoutCount(t, e.reg, outcomeFailed); got != 1 {
			t.Errorf("oidcgate_app_logout_total{outcome=failed}: got %v; want 1", got)
		}
	})
}

// TestAppLogoutLazy: a replica that never saw the session (a restart)
// calls app logout when the revoked session's app cookie comes back.
func TestAppLogoutLazy(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	real := appLogin(t, e, b)
	sealedApp := b.cookie(e, "/app/", "JSESSIONID")
	// The replica restarts: its registry is gone.
	e.gw.Close()
	restarted, err := New(func() Config { c := e.cfg; c.Metrics = prometheus.NewRegistry(); return c }())
	if err != nil {
		t.Fatal(err)
	}
	run(t, restarted)
	var served atomic.Int64
	e.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		restarted.ServeHTTP(w, r)
	})
	s, _ := e.gw.cookies.open(b.cookie(e, "/", DefaultCookieName), true)
	e.revoke(t, cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest(s.ID)})
	res := b.get(e.srv.URL+"/app/x", nil)
	if res.StatusCode != http.StatusFound || served.Load() != 1 {
		t.Fatalf("revoked session: got %d; want 302", res.StatusCode)
	}
	if got := e.app.waitLogout(t); got != "JSESSIONID="+real {
		t.Errorf("lazy logout Cookie: got %q", got)
	}
	var expired bool
	for _, c := range res.Cookies() {
		if c.Name == "JSESSIONID" && c.MaxAge < 0 {
			expired = true
		}
	}
	if !expired {
		t.Errorf("Set-Cookie: got %q; want JSESSIONID expired", res.Header.Values("Set-Cookie"))
	}
	// The browser kept its copy of the cookies: deduplicated.
	b.setCookie(e, &http.Cookie{Name: DefaultCookieName, Value: sealWith(t, testSecret, &s)})
	b.setCookie(e, &http.Cookie{Name: "JSESSIONID", Value: sealedApp, Path: "/app"})
	if res := b.get(e.srv.URL+"/app/x", nil); res.StatusCode != http.StatusFound {
		t.Errorf("second request: got %d; want 302", res.StatusCode)
	}
	restarted.Close()
	select {
	case c := <-e.app.logouts:
		t.Errorf("second lazy call with %q", c)
	default:
	}
}

func logoutCount(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "oidcgate_app_logout_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
