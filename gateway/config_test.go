package gateway

import (
	"strings"
	"testing"

	"github.com/oidcgate/oidcgate/introspect"
)

func TestValidate(t *testing.T) {
	ok := Route{PathPrefix: "/api", Upstream: "https://app.internal:8443/base"}
	with := func(f func(r *Route)) Config {
		r := ok
		f(&r)
		return Config{Routes: []Route{r}}
	}
	// browser is a valid config with a browser route, changed by f.
	browser := func(f func(c *Config)) Config {
		c := Config{
			PublicURL: "https://gw.example",
			Session:   SessionConfig{Secret: testSecret, Issuer: "https://idp.example"},
			Login:     Login{ClientID: "gw", ClientSecret: "s"},
			Routes: []Route{{PathPrefix: "/app", Upstream: "http://app", Auth: AuthBrowser,
				AppSessionCookies: []string{"JSESSIONID"}, AppLogoutURL: "http://app/logout"}},
		}
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // every message, in order; nil = valid
	}{
		{"valid", Config{Routes: []Route{ok}}, nil},
		{"empty", Config{}, nil},
		{"defaults", Config{Routes: []Route{{Upstream: "http://app"}}}, nil},
		{"all fields", with(func(r *Route) {
			r.Host, r.Auth, r.RequiredScopes = "api.example.com", AuthBearer, []string{"read", "urn:x:write"}
			r.Headers = map[string]string{"X-User": "sub", "X_Email": "email"}
		}), nil},
		{"ipv6 host", with(func(r *Route) { r.Host = "[::1]" }), nil},
		{"negative limit", Config{MaxAuthorizationBytes: -1}, []string{"max_authorization_bytes: must not be negative"}},
		{"host with port", with(func(r *Route) { r.Host = "api.example.com:443" }),
			[]string{"routes[0].host: must be a host name without scheme, port or path"}},
		{"host with scheme", with(func(r *Route) { r.Host = "https://api" }),
			[]string{"routes[0].host: must be a host name without scheme, port or path"}},
		{"prefix without slash", with(func(r *Route) { r.PathPrefix = "api" }),
			[]string{`routes[0].path_prefix: must start with "/"`}},
		{"prefix not clean", with(func(r *Route) { r.PathPrefix = "/a/../b" }),
			[]string{`routes[0].path_prefix: must be a clean path (no "." or ".." segments, "//", "%", "?", "#", ";" or "\")`}},
		{"prefix double slash", with(func(r *Route) { r.PathPrefix = "//a" }),
			[]string{`routes[0].path_prefix: must be a clean path (no "." or ".." segments, "//", "%", "?", "#", ";" or "\")`}},
		{"prefix encoded", with(func(r *Route) { r.PathPrefix = "/a%2Fb" }),
			[]string{`routes[0].path_prefix: must be a clean path (no "." or ".." segments, "//", "%", "?", "#", ";" or "\")`}},
		{"prefix reserved", with(func(r *Route) { r.PathPrefix = "/oauth2/x" }),
			[]string{"routes[0].path_prefix: /oauth2 is reserved for the gateway"}},
		{"prefix reserved root", with(func(r *Route) { r.PathPrefix = "/oauth2/" }),
			[]string{"routes[0].path_prefix: /oauth2 is reserved for the gateway"}},
		{"prefix reserved in another case", with(func(r *Route) { r.PathPrefix = "/OAuth2" }),
			[]string{"routes[0].path_prefix: /oauth2 is reserved for the gateway"}},
		{"prefix with trailing dot", with(func(r *Route) { r.PathPrefix = "/admin." }),
			[]string{"routes[0].path_prefix: must not have a segment ending in '.' or white space, control characters or fullwidth forms"}},
		{"prefix with trailing space", with(func(r *Route) { r.PathPrefix = "/admin /x" }),
			[]string{"routes[0].path_prefix: must not have a segment ending in '.' or white space, control characters or fullwidth forms"}},
		{"prefixes differing by case", Config{Routes: []Route{ok, {PathPrefix: "/API", Upstream: "http://app"}}},
			[]string{"routes[1]: same host and path_prefix as routes[0]"}},
		{"prefix sharing letters with reserved", with(func(r *Route) { r.PathPrefix = "/oauth2x" }), nil},
		{"upstream relative", with(func(r *Route) { r.Upstream = "/app" }),
			[]string{"routes[0].upstream: not an absolute URL"}},
		{"forward-auth only", Config{Routes: []Route{{PathPrefix: "/api", Headers: map[string]string{"X-User": "sub"}}}}, nil},
		{"forward-auth only with app cookies", browser(func(c *Config) { c.Routes[0].Upstream, c.Routes[0].AppLogoutURL = "", "" }),
			[]string{"routes[0].app_session_cookies: needs an upstream: a forward-auth-only route cannot seal app cookies (the gateway is not in the data path)"}},
		{"forward_auth valid", Config{ForwardAuth: ForwardAuthConfig{GRPCListen: "127.0.0.1:9191",
			AllowedRedirectHosts: []string{"app.example.com"}, TrustedProxies: []string{"10.0.0.0/8", "::1", "192.0.2.7"}}}, nil},
		{"forward_auth invalid", Config{ForwardAuth: ForwardAuthConfig{GRPCListen: "9191",
			AllowedRedirectHosts: []string{"https://app.example.com", ""}, TrustedProxies: []string{"10.0.0.0/33", "localhost", "fe80::1%eth0"}}}, []string{
			`forward_auth.grpc_listen: not a host:port address: "9191"`,
			"forward_auth.allowed_redirect_hosts[0]: must be a host name without scheme, port or path",
			"forward_auth.allowed_redirect_hosts[1]: must be a host name without scheme, port or path",
			`forward_auth.trusted_proxies[0]: not an IP address or CIDR range: "10.0.0.0/33"`,
			`forward_auth.trusted_proxies[1]: not an IP address or CIDR range: "localhost"`,
			`forward_auth.trusted_proxies[2]: not an IP address or CIDR range: "fe80::1%eth0"`,
		}},
		{"upstream no host", with(func(r *Route) { r.Upstream = "http:///x" }),
			[]string{"routes[0].upstream: not an absolute URL"}},
		{"upstream scheme", with(func(r *Route) { r.Upstream = "ftp://app" }),
			[]string{"routes[0].upstream: scheme must be http or https"}},
		{"upstream credentials", with(func(r *Route) { r.Upstream = "http://u:p@app" }),
			[]string{"routes[0].upstream: must not contain credentials"}},
		{"upstream query", with(func(r *Route) { r.Upstream = "http://app/?a=b" }),
			[]string{"routes[0].upstream: must not have a query or fragment"}},
		{"auth browser", with(func(r *Route) { r.Auth = AuthBrowser }), []string{
			"public_url: required when a route uses browser or either auth",
			"session.secret: required when a route uses browser or either auth",
			"session.issuer: required when a route uses browser or either auth",
			"login.client_id: required when a route uses browser or either auth",
			"login.client_secret: required when a route uses browser or either auth",
		}},
		{"auth browser configured", browser(func(c *Config) {}), nil},
		{"auth either configured", browser(func(c *Config) { c.Routes[0].Auth, c.Routes[0].RequiredScopes = AuthEither, []string{"read"} }), nil},
		{"auth unknown", with(func(r *Route) { r.Auth = "Bearer" }),
			[]string{`routes[0].auth: unknown mode "Bearer" (want bearer, browser, either or none)`}},
		{"scopes on none", with(func(r *Route) { r.Auth, r.RequiredScopes = AuthNone, []string{"read"} }),
			[]string{"routes[0].required_scopes: needs auth bearer or either"}},
		{"scopes on browser", browser(func(c *Config) { c.Routes[0].RequiredScopes = []string{"read"} }),
			[]string{"routes[0].required_scopes: needs auth bearer or either"}},
		{"bad scope", with(func(r *Route) { r.RequiredScopes = []string{"read", "a b", ""} }),
			[]string{"routes[0].required_scopes[1]: not a valid scope token (RFC 6749 §3.3)",
				"routes[0].required_scopes[2]: not a valid scope token (RFC 6749 §3.3)"}},
		{"app cookies on bearer", with(func(r *Route) { r.AppSessionCookies = []string{"JSESSIONID"} }),
			[]string{"routes[0].app_session_cookies: needs auth browser or either"}},
		{"app logout without cookies", browser(func(c *Config) { c.Routes[0].AppSessionCookies, c.Routes[0].AppLogoutURL = nil, "http://app/logout" }),
			[]string{"routes[0].app_logout_url: needs app_session_cookies"}},
		{"app verify", browser(func(c *Config) { c.Routes[0].AppVerify = &AppVerify{Path: "/whoami", Expect: []int{401, 302}} }), nil},
		{"app verify without logout", browser(func(c *Config) {
			c.Routes[0].AppLogoutURL = ""
			c.Routes[0].AppVerify = &AppVerify{Path: "whoami?x=1", Expect: []int{99, 600}}
		}), []string{
			"routes[0].app_verify: needs app_logout_url (the check follows the app logout call)",
			"routes[0].app_verify.path: must be an absolute path starting with one /",
			"routes[0].app_verify.expect[0]: 99 is not an HTTP status",
			"routes[0].app_verify.expect[1]: 600 is not an HTTP status",
		}},
		{"app verify query", browser(func(c *Config) { c.Routes[0].AppVerify = &AppVerify{Path: "/whoami?x=1"} }),
			[]string{"routes[0].app_verify.path: must be a path without query or fragment"}},
		{"app cookie names", browser(func(c *Config) {
			c.Session.CookieName = "gw"
			c.Routes[0].AppSessionCookies = []string{"a b", "gw", "gw_1", "gw_login_x", "gw_x", "PHPSESSID", "PHPSESSID"}
			c.Routes[0].AppLogoutURL = "ftp://app/logout"
		}), []string{
			"routes[0].app_session_cookies[0]: not a valid cookie name (RFC 6265 §4.1.1 token)",
			"routes[0].app_session_cookies[1]: is a name of the gateway's own cookies",
			"routes[0].app_session_cookies[2]: is a name of the gateway's own cookies",
			"routes[0].app_session_cookies[3]: is a name of the gateway's own cookies",
			"routes[0].app_session_cookies[6]: listed twice",
			"routes[0].app_logout_url: scheme must be http or https",
		}},
		{"__Host- cookie over http", browser(func(c *Config) {
			c.PublicURL = "http://127.0.0.1:8080"
			c.Session.CookieName = "__Host-gw"
		}), []string{"session.cookie_name: a __Host- or __Secure- name needs an https public_url"}},
		{"http public_url for a remote host", browser(func(c *Config) { c.PublicURL = "http://gw.example" }),
			[]string{"public_url: must be https with browser or either routes (http only for a loopback host)"}},
		{"http public_url for loopback", browser(func(c *Config) { c.PublicURL = "http://localhost:8080" }), nil},
		{"http public_url for IPv6 loopback", browser(func(c *Config) { c.PublicURL = "http://[::1]:8080" }), nil},
		{"http public_url without browser routes", Config{PublicURL: "http://gw.example", Routes: []Route{ok}}, nil},
		{"session settings", browser(func(c *Config) {
			c.PublicURL = "https://gw.example/base"
			c.ClockSkew = -1
			c.Session = SessionConfig{
				CookieName: "a;b", Secret: "short", PreviousSecrets: []introspect.Secret{"also short"},
				MaxAge: -1, Issuer: "https://idp", PostLogoutRedirectURIs: []string{"/relative", "https://ok.example/"},
			}
			c.Login = Login{Issuer: "https://other", Scopes: []string{"openid", "a\\b"}}
			c.AppLogout = AppLogoutConfig{Workers: -1, Timeout: -1}
		}), []string{
			"clock_skew: must not be negative",
			"public_url: must not have a path or query (the gateway's endpoints are at /oauth2)",
			"session.cookie_name: not a valid cookie name (RFC 6265 §4.1.1 token, at most 64 bytes)",
			"session.secret: shorter than 32 characters",
			"session.previous_secrets[0]: shorter than 32 characters",
			"session.max_age: must not be negative",
			"login.issuer: must be session.issuer",
			"session.post_logout_redirect_uris[0]: not an absolute URL",
			"login.client_id: required when a route uses browser or either auth",
			"login.client_secret: required when a route uses browser or either auth",
			"login.scopes[1]: not a valid scope token (RFC 6749 §3.3)",
			"app_logout.workers: must not be negative",
			"app_logout.timeout: must not be negative",
		}},
		{"browser route on another host", browser(func(c *Config) { c.Routes[0].Host = "app.example" }),
			[]string{"routes[0].host: a browser route must be on public_url's host"}},
		{"browser route on public_url's host", browser(func(c *Config) { c.Routes[0].Host = "GW.example." }), nil},
		{"public url scheme", browser(func(c *Config) { c.PublicURL = "ftp://gw" }),
			[]string{"public_url: scheme must be http or https"}},
		{"headers", with(func(r *Route) {
			r.Headers = map[string]string{
				"X User": "sub", "Connection": "sub", "keep-alive": "sub", "Authorization": "sub",
				"cookie": "sub", "Host": "sub", "X-Forwarded-For": "sub", "Content-Length": "sub",
				"X-Empty": "", "X-Dup": "sub", "x_dup": "sub",
			}
		}), []string{
			"routes[0].headers.Authorization: is set by the client or the gateway, not from a claim",
			"routes[0].headers.Connection: is a hop-by-hop header",
			"routes[0].headers.Content-Length: is set by the client or the gateway, not from a claim",
			"routes[0].headers.Host: is set by the client or the gateway, not from a claim",
			"routes[0].headers.X User: not a valid header name",
			"routes[0].headers.X-Empty: claim name is empty",
			"routes[0].headers.X-Forwarded-For: is set by the client or the gateway, not from a claim",
			"routes[0].headers.cookie: is set by the client or the gateway, not from a claim",
			"routes[0].headers.keep-alive: is a hop-by-hop header",
			"routes[0].headers.x_dup: same header as X-Dup (names compare case-insensitively, '_' as '-')",
		}},
		{"duplicates", Config{Routes: []Route{
			{Host: "A.example", PathPrefix: "/x", Upstream: "http://app"},
			{Host: "a.example.", PathPrefix: "/x/", Upstream: "http://app"},
			{PathPrefix: "", Upstream: "http://app"},
			{PathPrefix: "/", Upstream: "http://app"},
			{Host: "a.example", PathPrefix: "/", Upstream: "http://app"},
		}}, []string{
			"routes[1]: same host and path_prefix as routes[0]",
			"routes[3]: same host and path_prefix as routes[2]",
		}},
		{"every problem at once", Config{MaxAuthorizationBytes: -5, Routes: []Route{
			{PathPrefix: "x", Upstream: "app", Auth: "browser"},
			ok,
			{PathPrefix: "/api", Upstream: "http://other"},
		}}, []string{
			"max_authorization_bytes: must not be negative",
			"public_url: required when a route uses browser or either auth",
			"session.secret: required when a route uses browser or either auth",
			"session.issuer: required when a route uses browser or either auth",
			"login.client_id: required when a route uses browser or either auth",
			"login.client_secret: required when a route uses browser or either auth",
			`routes[0].path_prefix: must start with "/"`,
			"routes[0].upstream: not an absolute URL",
			"routes[2]: same host and path_prefix as routes[1]",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}
