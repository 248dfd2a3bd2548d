package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oidcgate/oidcgate/cache"
)

// traefik is how Traefik and Caddy describe a request.
func traefik(method, host, uri string) http.Header {
	return http.Header{"X-Forwarded-Method": {method}, "X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host": {host}, "X-Forwarded-Uri": {uri}}
}

// nginx is how nginx and ingress-nginx describe a request.
func nginx(method, rawURL string) http.Header {
	return http.Header{"X-Original-Method": {method}, "X-Original-Url": {rawURL}}
}

func with(h http.Header, kv ...string) http.Header {
	h = h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

// bearerFA is a gateway with bearer routes, one of them forward-auth only.
func bearerFA(t *testing.T, up *upstream, opt func(*Config)) (*httptest.Server, *testIssuer) {
	t.Helper()
	ti := newTestIssuer(t)
	cfg := Config{
		Routes: []Route{
			{PathPrefix: "/api", Upstream: up.URL, RequiredScopes: []string{"read"},
				Headers: map[string]string{"X-User": "sub", "X-Email": "email"}},
			{PathPrefix: "/api/admin", Upstream: up.URL, RequiredScopes: []string{"admin"},
				Headers: map[string]string{"X-User": "sub"}},
			{Host: "fa.example", PathPrefix: "/", Headers: map[string]string{"X-User": "sub"}},
			{PathPrefix: "/public", Upstream: up.URL, Auth: AuthNone},
		},
		Verifier: ti.v,
	}
	if opt != nil {
		opt(&cfg)
	}
	return serve(t, cfg), ti
}

func TestForwardAuthBearer(t *testing.T) {
	up := newUpstream(t)
	srv, ti := bearerFA(t, up, nil)
	valid := ti.token(t, testClaims{Sub: "alice", Scope: "read", Email: "alice@example.com", JTI: "j-valid"})
	revoked := ti.token(t, testClaims{Sub: "bob", Scope: "read", JTI: "j-revoked"})
	ti.revoke(t, "j-revoked")
	tampered := valid[:len(valid)-4] + "AAAA"
	bearer := func(tok string) string { return "Bearer " + tok }

	tests := []struct {
		name      string
		path      string // on the gateway; "" = /oauth2/auth
		header    http.Header
		want      int
		wantUser  string
		challenge string // a substring of WWW-Authenticate
	}{
		{"traefik valid", "", with(traefik("GET", "app.example", "/api/items?x=1"), "Authorization", bearer(valid)), 200, "alice", ""},
		{"nginx valid", "", with(nginx("POST", "https://app.example/api/items?x=1"), "Authorization", bearer(valid)), 200, "alice", ""},
		{"both families agree", "", with(traefik("GET", "app.example:443", "/api/x"), "X-Original-Method", "GET",
			"X-Original-Url", "https://APP.example/api/x", "Authorization", bearer(valid)), 200, "alice", ""},
		{"envoy path_prefix", "/oauth2/auth/api/items?x=1", http.Header{"Authorization": {bearer(valid)}}, 200, "alice", ""},
		{"client identity not echoed", "", with(traefik("GET", "app.example", "/api/x"), "Authorization", bearer(valid), "X-User", "mallory"), 200, "alice", ""},
		{"no token", "", traefik("GET", "app.example", "/api/x"), 401, "", `Bearer realm="oidcgate"`},
		{"basic scheme", "", with(traefik("GET", "app.example", "/api/x"), "Authorization", "Basic YTpi"), 401, "", `Bearer realm="oidcgate"`},
		{"tampered", "", with(traefik("GET", "app.example", "/api/x"), "Authorization", bearer(tampered)), 401, "", `error="invalid_token"`},
		{"revoked", "", with(traefik("GET", "app.example", "/api/x"), "Authorization", bearer(revoked)), 401, "", `error="invalid_token"`},
		{"malformed authorization", "", with(traefik("GET", "app.example", "/api/x"), "Authorization", "Bearer a b"), 401, "", `error="invalid_request"`},
		{"missing scope", "", with(traefik("GET", "app.example", "/api/admin/x"), "Authorization", bearer(valid)), 403, "", `error="insufficient_scope", error_description="the access token lacks a scope this resource requires", scope="admin"`},
		{"longest prefix, segment-aware", "", with(traefik("GET", "app.example", "/api/adminx"), "Authorization", bearer(valid)), 200, "alice", ""},
		{"forward-auth-only route", "", with(traefik("GET", "fa.example", "/anything"), "Authorization", bearer(valid)), 200, "alice", ""},
		{"auth none", "", traefik("GET", "app.example", "/public/x"), 200, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/oauth2/auth"
			}
			res := do(t, srv.Client(), http.MethodGet, srv.URL+path, tc.header)
			if res.StatusCode != tc.want {
				t.Fatalf("status: got %d %q; want %d", res.StatusCode, res.body, tc.want)
			}
			if got := res.Header.Get("X-User"); got != tc.wantUser {
				t.Errorf("X-User: got %q; want %q", got, tc.wantUser)
			}
			if got := res.Header.Get("WWW-Authenticate"); !strings.Contains(got, tc.challenge) || (tc.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate: got %q; want it to contain %q", got, tc.challenge)
			}
			if loc := res.Header.Get("Location"); loc != "" {
				t.Errorf("Location: got %q; /oauth2/auth never redirects", loc)
			}
		})
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("upstream hits: got %d; want 0 (forward-auth never proxies)", n)
	}
	// The forward-auth-only route is not proxied by the gateway itself.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/anything", nil)
	req.Host = "fa.example"
	req.Header.Set("Authorization", bearer(valid))
	if r, err := srv.Client().Do(req); err != nil || r.StatusCode != http.StatusNotFound {
		t.Errorf("proxying a forward-auth-only route: got %v %v; want 404", r, err)
	} else {
		r.Body.Close()
	}
}

func TestForwardAuthBadInput(t *testing.T) {
	up := newUpstream(t)
	srv, ti := bearerFA(t, up, func(c *Config) {
		c.Routes = append(c.Routes[:2], Route{Host: "fa.example", PathPrefix: "/", Headers: map[string]string{"X-User": "sub"}})
	})
	tok := "Bearer " + ti.token(t, testClaims{Sub: "alice", Scope: "read admin"})
	tests := []struct {
		name   string
		header http.Header
		want   int
		reason string
	}{
		{"nothing", http.Header{}, 400, "not described"},
		{"uri not a path", traefik("GET", "app.example", "https://evil.example/api"), 400, "X-Forwarded-Uri is not a path"},
		{"uri relative", traefik("GET", "app.example", "api/x"), 400, "X-Forwarded-Uri is not a path"},
		{"uri with fragment", traefik("GET", "app.example", "/api/x#f"), 400, "X-Forwarded-Uri is not a path"},
		{"uri with space", traefik("GET", "app.example", "/api/x y"), 400, "X-Forwarded-Uri is not a path"},
		{"uri too long", traefik("GET", "app.example", "/api/"+strings.Repeat("a", maxForwardedURI)), 400, "too long"},
		{"original url not absolute", nginx("GET", "/api/x"), 400, "X-Original-URL is not an absolute http(s) URL"},
		{"original url ftp", nginx("GET", "ftp://app.example/api/x"), 400, "X-Original-URL is not an absolute http(s) URL"},
		{"original url credentials", nginx("GET", "https://u:p@app.example/api/x"), 400, "X-Original-URL is not an absolute http(s) URL"},
		{"no method", http.Header{"X-Forwarded-Host": {"app.example"}, "X-Forwarded-Uri": {"/api/x"}}, 400, "method is not described"},
		{"bad method", traefik("GE T", "app.example", "/api/x"), 400, "X-Forwarded-Method is not a method"},
		{"no host", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/api/x"}}, 400, "host is not described"},
		{"two hosts", traefik("GET", "app.example, evil.example", "/api/x"), 400, "not one host name"},
		{"repeated header", with(traefik("GET", "app.example", "/api/x"), "X-Forwarded-Uri", "/public"), 400, "X-Forwarded-Uri is repeated"},
		{"bad proto", with(http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"app.example"}, "X-Forwarded-Uri": {"/api/x"}}, "X-Forwarded-Proto", "gopher"), 400, "X-Forwarded-Proto is not http or https"},
		{"families disagree on path", with(nginx("GET", "https://app.example/api/admin"), "X-Forwarded-Uri", "/public"), 400, "disagree on the path"},
		{"families disagree on host", with(nginx("GET", "https://app.example/api/x"), "X-Forwarded-Host", "fa.example"), 400, "disagree on the host"},
		{"families disagree on method", with(nginx("GET", "https://app.example/api/x"), "X-Forwarded-Method", "POST"), 400, "disagree on the method"},
		{"families disagree on scheme", with(nginx("GET", "https://app.example/api/x"), "X-Forwarded-Proto", "http"), 400, "disagree on the scheme"},
		{"dot segments", traefik("GET", "app.example", "/public/../api/x"), 400, "not canonical"},
		{"double slash", traefik("GET", "app.example", "//api/x"), 400, "not canonical"},
		{"backslash", traefik("GET", "app.example", "/api/x%5C..%5Cadmin"), 400, "ambiguous"},
		{"case variant of a stricter route", traefik("GET", "app.example", "/api/ADMIN"), 400, "ambiguous"},
		{"trailing dot", traefik("GET", "app.example", "/api/admin."), 400, "ambiguous"},
		{"encoded trailing space", traefik("GET", "app.example", "/api/admin%20"), 400, "ambiguous"},
		{"unknown host and path", traefik("GET", "other.example", "/elsewhere"), 403, "no route serves this host and path"},
		{"gateway's own path", traefik("GET", "app.example", "/oauth2/start"), 403, "no route serves this host and path"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, srv.Client(), http.MethodGet, srv.URL+"/oauth2/auth", with(tc.header, "Authorization", tok))
			if res.StatusCode != tc.want || !strings.Contains(res.body, tc.reason) {
				t.Errorf("got %d %q; want %d with %q", res.StatusCode, res.body, tc.want, tc.reason)
			}
			if res.Header.Get("X-User") != "" {
				t.Errorf("X-User on a refusal: %q", res.Header.Get("X-User"))
			}
		})
	}
}

// TestForwardAuthSameRoute checks that /oauth2/auth judges a request by
// the route the gateway would proxy it to: each route names itself in an
// identity header, and both answers must name the same route.
func TestForwardAuthSameRoute(t *testing.T) {
	up := newUpstream(t)
	ti := newTestIssuer(t)
	routes := []Route{
		{PathPrefix: "/", Headers: map[string]string{"X-R0": "sub"}},
		{PathPrefix: "/a", Headers: map[string]string{"X-R1": "sub"}},
		{PathPrefix: "/a/b", Headers: map[string]string{"X-R2": "sub"}},
		{Host: "h.example", PathPrefix: "/", Headers: map[string]string{"X-R3": "sub"}},
		{Host: "h.example", PathPrefix: "/a/b/c", Headers: map[string]string{"X-R4": "sub"}},
		{PathPrefix: "/a/b/c/d", Headers: map[string]string{"X-R5": "sub"}},
	}
	for i := range routes {
		routes[i].Upstream = up.URL
	}
	srv := serve(t, Config{Routes: routes, Verifier: ti.v})
	tok := "Bearer " + ti.token(t, testClaims{Sub: "alice"})
	routeOf := func(h http.Header) string {
		var names []string
		for k := range h {
			if strings.HasPrefix(k, "X-R") {
				names = append(names, k)
			}
		}
		return strings.Join(names, ",")
	}
	for _, host := range []string{"g.example", "h.example", "H.EXAMPLE.", "h.example:8443"} {
		for _, p := range []string{"/", "/a", "/ab", "/a/", "/a/b", "/a/bc", "/a/b;x", "/a/b/c", "/a/b/c/d", "/a/b/c/d/e", "/a%2Fb/c", "/x?a=/a/b"} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+p, nil)
			req.Host = host
			req.Header.Set("Authorization", tok)
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var proxied string
			if res.StatusCode == http.StatusOK {
				proxied = routeOf(seenBy(t, rawResponse{Response: res, body: readAll(t, res)}).Header)
			} else {
				res.Body.Close()
			}
			fa := do(t, srv.Client(), http.MethodGet, srv.URL+"/oauth2/auth", with(traefik("GET", host, p), "Authorization", tok))
			if fa.StatusCode != http.StatusOK || proxied == "" || routeOf(fa.Header) != proxied {
				t.Errorf("%s%s: proxied by %q (%d), forward-auth decided for %q (%d)", host, p, proxied, res.StatusCode, routeOf(fa.Header), fa.StatusCode)
			}
		}
	}
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestForwardAuthTrustedProxies(t *testing.T) {
	up := newUpstream(t)
	for _, tc := range []struct {
		trusted []string
		want    int
	}{
		{nil, 200},
		{[]string{"10.0.0.0/8", "::1"}, 403},
		{[]string{"10.0.0.0/8", "127.0.0.0/8"}, 200},
		{[]string{"127.0.0.1"}, 200},
	} {
		srv, ti := bearerFA(t, up, func(c *Config) { c.ForwardAuth.TrustedProxies = tc.trusted })
		tok := "Bearer " + ti.token(t, testClaims{Sub: "alice", Scope: "read"})
		res := do(t, srv.Client(), http.MethodGet, srv.URL+"/oauth2/auth", with(traefik("GET", "app.example", "/api/x"), "Authorization", tok))
		if res.StatusCode != tc.want {
			t.Errorf("trusted_proxies %v, from 127.0.0.1: got %d %q; want %d", tc.trusted, res.StatusCode, res.body, tc.want)
		}
		if tc.want == 403 && !strings.Contains(res.body, "trusted_proxies") {
			t.Errorf("refusal does not say why: %q", res.body)
		}
	}
}

func TestForwardAuthBrowser(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Routes = append(c.Routes,
			Route{PathPrefix: "/fa", Auth: AuthBrowser, Headers: map[string]string{"X-User": "sub", "X-Email": "email"}},
			Route{PathPrefix: "/fe", Auth: AuthEither, Headers: map[string]string{"X-User": "sub"}})
		c.ForwardAuth.AllowedRedirectHosts = []string{"other.example"}
	})
	host := strings.TrimPrefix(e.srv.URL, "http://")
	ask := func(b *browser, path, uri string, extra ...string) rawResponse {
		h := with(traefik("GET", host, uri), "X-Forwarded-Proto", "")
		h.Del("X-Forwarded-Proto")
		return b.get(e.srv.URL+path, with(h, extra...))
	}
	b := e.browser(t)

	// No session: 401 (never a redirect) on /oauth2/auth; the redirecting
	// variant sends a navigation to /oauth2/start with rd, and anything
	// else gets 401.
	if res := ask(b, pathAuth, "/fa/page?q=1", "Accept", "text/html"); res.StatusCode != 401 || res.Header.Get("Location") != "" {
		t.Errorf("no session: got %d to %q; want 401", res.StatusCode, res.Header.Get("Location"))
	}
	res := ask(b, pathAuthRedirect, "/fa/page?q=1", "Accept", "text/html")
	want := e.srv.URL + "/oauth2/start?rd=" + url.QueryEscape("/fa/page?q=1")
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != want {
		t.Errorf("redirecting variant: got %d to %q; want 302 to %q", res.StatusCode, res.Header.Get("Location"), want)
	}
	if res := ask(b, pathAuthRedirect, "/fa/page", "Accept", "application/json"); res.StatusCode != 401 {
		t.Errorf("redirecting variant, API call: got %d; want 401", res.StatusCode)
	}
	if res := ask(b, pathAuthRedirect, "/fe/page", "Accept", "text/html"); res.StatusCode != http.StatusFound {
		t.Errorf("redirecting variant, either route: got %d; want 302", res.StatusCode)
	}
	if res := ask(b, pathAuth, "/fe/page"); res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != challengeNoToken {
		t.Errorf("either route without credentials: got %d %q; want 401 with the bare challenge", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}

	// Log in through /oauth2/start as the ingress would send the browser,
	// then the cookie alone passes.
	res = b.get(want, nil)
	res = b.get(res.Header.Get("Location"), nil)
	res = b.get(res.Header.Get("Location"), nil)
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/fa/page?q=1" {
		t.Fatalf("callback: got %d to %q; want back at /fa/page?q=1", res.StatusCode, res.Header.Get("Location"))
	}
	res = ask(b, pathAuth, "/fa/page?q=1", "X-User", "mallory")
	if res.StatusCode != 200 || res.Header.Get("X-User") != "alice" || res.Header.Get("X-Email") != "alice@example.com" {
		t.Fatalf("with the session: got %d %v; want 200 with alice's identity", res.StatusCode, res.Header)
	}
	// A route with sealed app cookies needs the gateway in the data path.
	if res := ask(b, pathAuth, "/app/x"); res.StatusCode != 403 || !strings.Contains(res.body, "app cookies") {
		t.Errorf("app-cookie route through forward-auth: got %d %q; want 403", res.StatusCode, res.body)
	}
	// Revoked: the next decision is 401.
	e.revoke(t, cache.Entry{Issuer: e.idp.URL, Kind: cache.KindSub, Value: "alice", RevokedAt: e.clock.Now().Add(testSkew)})
	if res := ask(b, pathAuth, "/fa/page"); res.StatusCode != 401 || res.Header.Get("X-User") != "" {
		t.Errorf("after revocation: got %d %v; want 401", res.StatusCode, res.Header)
	}
}

func TestReturnTarget(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ForwardAuth.AllowedRedirectHosts = []string{"App.Example"} })
	pub := e.srv.URL
	for _, tc := range []struct{ rd, want string }{
		{"/x?y=1", "/x?y=1"},
		{"", "/"},
		{"//evil.example/x", "/"},
		{pub + "/x?y=1", pub + "/x?y=1"},
		{"https://app.example/x", "https://app.example/x"},
		{"http://app.example:8443/x?q", "http://app.example:8443/x?q"},
		{"https://APP.EXAMPLE./x", "https://APP.EXAMPLE./x"},
		{"https://evil.example/x", "/"},
		{"https://app.example.evil.example/x", "/"},
		{"https://app.example@evil.example/x", "/"},
		{"https://u:p@app.example/x", "/"},
		{"javascript://app.example/%0aalert(1)", "/"},
		{"ftp://app.example/x", "/"},
		{"https://app.example\\@evil.example/", "/"},
		{"https://app.example/x#frag", "/"},
		{"https://app.example/x\ty", "/"},
		{"https:app.example/x", "/"},
		{"https://app.example//evil.example", "/"},
	} {
		if got := e.gw.returnTarget(tc.rd); got != tc.want {
			t.Errorf("returnTarget(%q): got %q; want %q", tc.rd, got, tc.want)
		}
	}
}

func TestStartReturn(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"rd=/app/x?a=1&b=2", "/app/x?a=1&b=2"},
		{"rd=%2Fapp%2Fx%3Fa%3D1%26b%3D2", "/app/x?a=1&b=2"},
		{"rd=https%3A%2F%2Fapp.example%2Fx", "https://app.example/x"},
		{"x=1&rd=/y", "/y"},
		{"rd=//evil.example", "//evil.example"},
		{"", ""},
	} {
		if got := startReturn(tc.raw); got != tc.want {
			t.Errorf("startReturn(%q): got %q; want %q", tc.raw, got, tc.want)
		}
	}
}

func FuzzDescribe(f *testing.F) {
	f.Add("GET", "app.example", "/api/x?y=1", "", "", "")
	f.Add("", "", "", "GET", "https://app.example/api/x", "/oauth2/auth")
	f.Add("GET", "app.example", "/a", "POST", "https://b.example/b", "/oauth2/auth/c?d")
	f.Add("G", "[::1]:80", "//x/../y", "", "http://[::1/x", "/oauth2/auth/%2e%2e/x")
	f.Fuzz(func(t *testing.T, method, host, uri, omethod, ourl, path string) {
		u, err := url.Parse("http://gw.example" + path)
		if err != nil {
			return
		}
		r := &http.Request{Method: http.MethodGet, URL: u, Host: "gw.example", Header: http.Header{}}
		for k, v := range map[string]string{"X-Forwarded-Method": method, "X-Forwarded-Host": host,
			"X-Forwarded-Uri": uri, "X-Original-Method": omethod, "X-Original-Url": ourl} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		o, ferr := describe(r)
		if ferr != nil {
			if ferr.status != 400 || ferr.reason == "" {
				t.Fatalf("refusal %d %q", ferr.status, ferr.reason)
			}
			return
		}
		if o.method == "" || o.host == "" || o.url == nil || !strings.HasPrefix(o.url.Path, "/") {
			t.Fatalf("accepted an incomplete description: %+v", o)
		}
		if strings.ContainsAny(o.host, ", /\\@") {
			t.Fatalf("accepted host %q", o.host)
		}
	})
}
