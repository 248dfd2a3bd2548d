package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestSignOut(t *testing.T) {
	tests := []struct {
		name      string
		allow     []string
		noEndSess bool
		post      string // post_logout_redirect_uri asked for
		wantPost  string // "" means PublicURL + "/"
	}{
		{"default", nil, false, "", ""},
		{"allowed", []string{"https://app.example/bye", "https://app.example/other"}, false, "https://app.example/other", "https://app.example/other"},
		{"not allowed: default", []string{"https://app.example/bye"}, false, "https://evil.example/", "https://app.example/bye"},
		{"no end_session_endpoint", []string{"https://app.example/bye"}, true, "", "https://app.example/bye"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Session.PostLogoutRedirectURIs = tt.allow })
			e.idp.mu.Lock()
			e.idp.noEndSess = tt.noEndSess
			e.idp.mu.Unlock()
			want := tt.wantPost
			if want == "" {
				want = e.srv.URL + "/"
			}
			b := e.browser(t)
			real := appLogin(t, e, b)
			oldSession := b.cookie(e, "/", DefaultCookieName)
			s, _ := e.gw.cookies.open(oldSession, true)
			target := e.srv.URL + "/oauth2/sign_out"
			if tt.post != "" {
				target += "?post_logout_redirect_uri=" + url.QueryEscape(tt.post)
			}
			res := b.get(target, nil)
			if res.StatusCode != http.StatusFound {
				t.Fatalf("sign_out: got %d; want 302 (%s)", res.StatusCode, res.body)
			}
			loc, err := url.Parse(res.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.noEndSess {
				if loc.String() != want {
					t.Errorf("Location: got %q; want %q", loc, want)
				}
			} else {
				q := loc.Query()
				if loc.Scheme+"://"+loc.Host+loc.Path != e.idp.URL+"/logout" || q.Get("x") != "1" ||
					q.Get("id_token_hint") != s.IDToken || s.IDToken == "" ||
					q.Get("client_id") != testClientID || q.Get("post_logout_redirect_uri") != want {
					t.Errorf("Location: got %q", loc)
				}
			}
			if b.cookie(e, "/", DefaultCookieName) != "" {
				t.Error("session cookie not cleared")
			}
			// The app's session dies too (through the store's subscription:
			// the app cookie's Path kept it from the sign-out request).
			if got := e.app.waitLogout(t); got != "JSESSIONID="+real {
				t.Errorf("app logout Cookie: got %q", got)
			}
			// A copy of the old cookie no longer works.
			b.setCookie(e, &http.Cookie{Name: DefaultCookieName, Value: oldSession})
			if res := b.get(e.srv.URL+"/app/", nil); res.StatusCode != http.StatusFound {
				t.Errorf("old session after sign_out: got %d; want 302", res.StatusCode)
			}
		})
	}
	t.Run("app cookie sent to sign_out", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Routes[0].PathPrefix = "/" })
		b := e.browser(t)
		b.login(e, "/")
		res := b.get(e.srv.URL+"/app/login", nil)
		if res.StatusCode != http.StatusOK {
			t.Fatal(res.StatusCode)
		}
		real := e.app.lastSession()
		// The app's cookie has Path=/app; send it to sign_out as a browser
		// would with Path=/.
		b.setCookie(e, &http.Cookie{Name: "JSESSIONID", Value: b.cookie(e, "/app/", "JSESSIONID"), Path: "/"})
		res = b.get(e.srv.URL+"/oauth2/sign_out", nil)
		if res.StatusCode != http.StatusFound {
			t.Fatal(res.StatusCode)
		}
		if got := e.app.waitLogout(t); got != "JSESSIONID="+real {
			t.Errorf("app logout Cookie: got %q", got)
		}
		e.app.noLogout(t, e)
	})
	t.Run("app cookies without app logout", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.Routes[0].PathPrefix, c.Routes[0].AppLogoutURL = "/", "" })
		b := e.browser(t)
		b.login(e, "/")
		b.get(e.srv.URL+"/app/login", nil)
		b.setCookie(e, &http.Cookie{Name: "JSESSIONID", Value: b.cookie(e, "/app/", "JSESSIONID"), Path: "/"})
		if res := b.get(e.srv.URL+"/oauth2/sign_out", nil); res.StatusCode != http.StatusFound {
			t.Errorf("sign_out: got %d; want 302", res.StatusCode)
		}
		if got := e.app.calls.Load(); got != 0 {
			t.Errorf("app logout calls: got %d; want 0", got)
		}
	})
	t.Run("without a session", func(t *testing.T) {
		e := newEnv(t, nil)
		res := e.browser(t).get(e.srv.URL+"/oauth2/sign_out", nil)
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != e.srv.URL+"/" {
			t.Errorf("got %d to %q; want 302 to the public URL", res.StatusCode, res.Header.Get("Location"))
		}
	})
}

// TestSignOutCrossSite: a link on another site must not sign the user out
// (logout CSRF); it gets a page whose button POSTs the same URL.
func TestSignOutCrossSite(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	appLogin(t, e, b)
	session := b.cookie(e, "/", DefaultCookieName)
	for _, site := range []string{"cross-site", "same-site"} {
		res := b.get(e.srv.URL+"/oauth2/sign_out?post_logout_redirect_uri=x", http.Header{"Sec-Fetch-Site": {site}})
		if res.StatusCode != http.StatusOK || !strings.Contains(res.body, `method="post"`) || !strings.Contains(res.body, "post_logout_redirect_uri=x") {
			t.Errorf("%s GET: got %d %q; want 200 and a POST form to the same URL", site, res.StatusCode, res.body)
		}
		if got := b.cookie(e, "/", DefaultCookieName); got != session {
			t.Fatalf("%s GET changed the session cookie", site)
		}
	}
	// Still signed in.
	if res := b.get(e.srv.URL+"/app/x", nil); res.StatusCode != http.StatusOK {
		t.Errorf("after cross-site sign_out links: got %d; want 200", res.StatusCode)
	}
	// The same-origin GET (a link on the app itself) signs out.
	if res := b.get(e.srv.URL+"/oauth2/sign_out", http.Header{"Sec-Fetch-Site": {"same-origin"}}); res.StatusCode != http.StatusFound {
		t.Errorf("same-origin GET: got %d; want 302", res.StatusCode)
	}
}
