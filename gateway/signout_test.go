package gateway

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// post sends a form POST with the given headers through the browser.
func (b *browser) post(target string, form url.Values, header http.Header) rawResponse {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return rawResponse{Response: res, body: string(body)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// signOut clicks the sign-out page's button as an older browser would:
// GET the page, then POST its form (CSRF token, no Origin).
func (b *browser) signOut(target string) rawResponse {
	b.t.Helper()
	page := b.get(target, nil)
	m := csrfField.FindStringSubmatch(page.body)
	if page.StatusCode != http.StatusOK || m == nil {
		b.t.Fatalf("sign-out page: got %d %q; want 200 and a form with a CSRF token", page.StatusCode, page.body)
	}
	return b.post(target, url.Values{"csrf": {m[1]}}, nil)
}

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
			res := b.signOut(target)
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
		res = b.signOut(e.srv.URL + "/oauth2/sign_out")
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
		if res := b.signOut(e.srv.URL + "/oauth2/sign_out"); res.StatusCode != http.StatusFound {
			t.Errorf("sign_out: got %d; want 302", res.StatusCode)
		}
		if got := e.app.calls.Load(); got != 0 {
			t.Errorf("app logout calls: got %d; want 0", got)
		}
	})
	t.Run("without a session", func(t *testing.T) {
		e := newEnv(t, nil)
		res := e.browser(t).post(e.srv.URL+"/oauth2/sign_out", nil, nil)
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != e.srv.URL+"/" {
			t.Errorf("got %d to %q; want 302 to the public URL", res.StatusCode, res.Header.Get("Location"))
		}
	})
}

// TestSignOutCSRF: nothing but a POST from this origin, or one carrying
// the confirmation page's token, signs the user out (logout CSRF).
func TestSignOutCSRF(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	appLogin(t, e, b)
	session := b.cookie(e, "/", DefaultCookieName)
	target := e.srv.URL + "/oauth2/sign_out?post_logout_redirect_uri=x"
	stillIn := func(what string) {
		t.Helper()
		if got := b.cookie(e, "/", DefaultCookieName); got != session {
			t.Fatalf("%s changed the session cookie", what)
		}
		if res := b.get(e.srv.URL+"/app/x", nil); res.StatusCode != http.StatusOK {
			t.Fatalf("after %s: got %d; want 200 (still signed in)", what, res.StatusCode)
		}
	}
	// A GET only asks, whatever its fetch metadata says (none: an older
	// browser following a link or loading an image elsewhere).
	var token string
	for _, site := range []string{"", "cross-site", "same-site", "same-origin", "none"} {
		h := http.Header{}
		if site != "" {
			h.Set("Sec-Fetch-Site", site)
		}
		res := b.get(target, h)
		m := csrfField.FindStringSubmatch(res.body)
		if res.StatusCode != http.StatusOK || m == nil || !strings.Contains(res.body, `method="post"`) ||
			!strings.Contains(res.body, "post_logout_redirect_uri=x") {
			t.Fatalf("GET (Sec-Fetch-Site %q): got %d %q; want 200 and a POST form to the same URL", site, res.StatusCode, res.body)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("page CSP: got %q; want frame-ancestors 'none'", csp)
		}
		token = m[1]
		stillIn("GET with Sec-Fetch-Site " + site)
	}
	other := e.browser(t)
	appLogin(t, e, other)
	otherToken := csrfField.FindStringSubmatch(other.get(target, nil).body)[1]
	for _, tt := range []struct {
		name   string
		form   url.Values
		header http.Header
	}{
		{"no Origin, no token", nil, nil},
		{"no Origin, bad token", url.Values{"csrf": {"AAAA"}}, nil},
		{"no Origin, another session's token", url.Values{"csrf": {otherToken}}, nil},
		{"Origin null, no token", nil, http.Header{"Origin": {"null"}}},
		{"cross-site Origin", nil, http.Header{"Origin": {"https://evil.example"}}},
		{"cross-site Origin with the token", url.Values{"csrf": {token}}, http.Header{"Origin": {"https://evil.example"}}},
		{"same-site sibling Origin", nil, http.Header{"Origin": {strings.Replace(e.srv.URL, "127.0.0.1", "localhost", 1)}}},
		{"same-site fetch metadata with the token", url.Values{"csrf": {token}}, http.Header{"Sec-Fetch-Site": {"same-site"}}},
	} {
		res := b.post(target, tt.form, tt.header)
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s: got %d; want 403", tt.name, res.StatusCode)
		}
		stillIn("POST " + tt.name)
	}
	// The page's own POST from this origin signs out.
	if res := b.post(target, nil, http.Header{"Origin": {e.srv.URL}}); res.StatusCode != http.StatusFound {
		t.Errorf("same-origin POST: got %d; want 302", res.StatusCode)
	}
	if b.cookie(e, "/", DefaultCookieName) != "" {
		t.Error("session cookie not cleared")
	}
	// And so does an older browser's POST that carries the token.
	if res := other.post(target, url.Values{"csrf": {otherToken}}, nil); res.StatusCode != http.StatusFound {
		t.Errorf("POST with the token: got %d; want 302", res.StatusCode)
	}
}
