package gateway

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := Route{PathPrefix: "/api", Upstream: "https://app.internal:8443/base"}
	with := func(f func(r *Route)) Config {
		r := ok
		f(&r)
		return Config{Routes: []Route{r}}
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
		{"prefix sharing letters with reserved", with(func(r *Route) { r.PathPrefix = "/oauth2x" }), nil},
		{"upstream relative", with(func(r *Route) { r.Upstream = "/app" }),
			[]string{"routes[0].upstream: not an absolute URL"}},
		{"upstream missing", with(func(r *Route) { r.Upstream = "" }),
			[]string{"routes[0].upstream: not an absolute URL"}},
		{"upstream no host", with(func(r *Route) { r.Upstream = "http:///x" }),
			[]string{"routes[0].upstream: not an absolute URL"}},
		{"upstream scheme", with(func(r *Route) { r.Upstream = "ftp://app" }),
			[]string{"routes[0].upstream: scheme must be http or https"}},
		{"upstream credentials", with(func(r *Route) { r.Upstream = "http://u:p@app" }),
			[]string{"routes[0].upstream: must not contain credentials"}},
		{"upstream query", with(func(r *Route) { r.Upstream = "http://app/?a=b" }),
			[]string{"routes[0].upstream: must not have a query or fragment"}},
		{"auth browser", with(func(r *Route) { r.Auth = AuthBrowser }),
			[]string{"routes[0].auth: browser not supported yet"}},
		{"auth either", with(func(r *Route) { r.Auth = AuthEither }),
			[]string{"routes[0].auth: either not supported yet"}},
		{"auth unknown", with(func(r *Route) { r.Auth = "Bearer" }),
			[]string{`routes[0].auth: unknown mode "Bearer" (want bearer or none)`}},
		{"scopes on none", with(func(r *Route) { r.Auth, r.RequiredScopes = AuthNone, []string{"read"} }),
			[]string{"routes[0].required_scopes: needs auth bearer"}},
		{"bad scope", with(func(r *Route) { r.RequiredScopes = []string{"read", "a b", ""} }),
			[]string{"routes[0].required_scopes[1]: not a valid scope token (RFC 6749 §3.3)",
				"routes[0].required_scopes[2]: not a valid scope token (RFC 6749 §3.3)"}},
		{"app cookies", with(func(r *Route) { r.AppSessionCookies = []string{"JSESSIONID"} }),
			[]string{"routes[0].app_session_cookies: not supported yet"}},
		{"app logout", with(func(r *Route) { r.AppLogoutURL = "http://app/logout" }),
			[]string{"routes[0].app_logout_url: not supported yet"}},
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
			`routes[0].path_prefix: must start with "/"`,
			"routes[0].upstream: not an absolute URL",
			"routes[0].auth: browser not supported yet",
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
