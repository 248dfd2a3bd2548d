package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRoutingPrecedence(t *testing.T) {
	idp := newTestIssuer(t)
	up := newUpstream(t)
	srv := serve(t, Config{
		Verifier: idp.v,
		Routes: []Route{
			{PathPrefix: "/open", Upstream: up.URL + "/o", Auth: AuthNone},
			{PathPrefix: "/", Upstream: up.URL + "/root", Auth: AuthNone},
			{PathPrefix: "/open/deep/", Upstream: up.URL + "/deep"},
			{Host: "API.example.com", PathPrefix: "/", Upstream: up.URL + "/host", Auth: AuthNone},
			{Host: "api.example.com", PathPrefix: "/open/deep", Upstream: up.URL + "/hostdeep", Auth: AuthNone},
			{Host: "[::1]", PathPrefix: "/", Upstream: up.URL + "/v6", Auth: AuthNone},
		},
	})
	tok := idp.token(t, testClaims{Sub: "alice"})
	tests := []struct {
		name, host, path string
		token            bool
		wantStatus       int
		wantURI          string
	}{
		{"prefix itself", "", "/open", false, 200, "/o/open"},
		{"below prefix", "", "/open/x?q=1", false, 200, "/o/open/x?q=1"},
		{"segment-aware: /openx is not /open", "", "/openx", false, 200, "/root/openx"},
		{"path parameter ends a segment", "", "/open;jsessionid=1", false, 200, "/o/open;jsessionid=1"},
		{"longer prefix wins over earlier route", "", "/open/deep/y", false, 401, ""},
		{"longer prefix with token", "", "/open/deep/y", true, 200, "/deep/open/deep/y"},
		{"trailing slash of prefix ignored", "", "/open/deep", true, 200, "/deep/open/deep"},
		{"host route before host-less longer prefix", "api.example.com", "/open/x", false, 200, "/host/open/x"},
		{"host match ignores case and port", "API.Example.COM:8443", "/x", false, 200, "/host/x"},
		{"host match ignores trailing dot", "api.example.com.", "/x", false, 200, "/host/x"},
		{"longest prefix among host routes", "api.example.com", "/open/deep/z", false, 200, "/hostdeep/open/deep/z"},
		{"other host falls back to host-less", "www.example.com", "/x", false, 200, "/root/x"},
		{"IPv6 literal host with port", "[::1]:8443", "/x", false, 200, "/v6/x"},
		{"IPv6 literal host", "[::1]", "/x", false, 200, "/v6/x"},
		{"other host, host-less longer prefix", "www.example.com", "/open/deep", false, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := tt.host
			if host == "" {
				host = srv.Listener.Addr().String()
			}
			head := "GET " + tt.path + " HTTP/1.1\r\nHost: " + host
			if tt.token {
				head += "\r\nAuthorization: Bearer " + tok
			}
			res := rawRequest(t, srv, head)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (body %q)", res.StatusCode, tt.wantStatus, res.body)
			}
			if tt.wantURI == "" {
				return
			}
			if got := seenBy(t, res).URI; got != tt.wantURI {
				t.Errorf("upstream URI: got %q; want %q", got, tt.wantURI)
			}
		})
	}
}

// TestPathTricks checks that no spelling of a path reaches a protected
// route's upstream through an unprotected route's prefix. Requests are
// written to the wire as is.
func TestPathTricks(t *testing.T) {
	idp := newTestIssuer(t)
	up := newUpstream(t)
	srv := serve(t, Config{
		Verifier: idp.v,
		Routes: []Route{
			{PathPrefix: "/open", Upstream: up.URL + "/o", Auth: AuthNone},
			{PathPrefix: "/secret", Upstream: up.URL + "/s"},
		},
	})
	tests := []struct {
		name, target string
		wantStatus   int
		wantLocation string // for redirects
		wantURI      string // for proxied requests
	}{
		{"dot-dot", "/open/../secret", 301, "/secret", ""},
		{"dot-dot with query", "/open/../secret?a=b", 301, "/secret?a=b", ""},
		{"double slash", "//secret", 301, "/secret", ""},
		{"double slash inside", "/open//../secret", 301, "/secret", ""},
		{"dot segment", "/open/./x", 301, "/open/x", ""},
		{"encoded dots", "/open/%2e%2e/secret", 301, "/secret", ""},
		{"encoded dots upper case", "/open/%2E%2E/secret", 301, "/secret", ""},
		{"half-encoded dots", "/open/.%2e/secret", 301, "/secret", ""},
		{"encoded slash and dots", "/open%2F..%2Fsecret", 301, "/secret", ""},
		{"encoded slash before dots", "/open/..%2Fsecret", 301, "/secret", ""},
		{"encoded double slash", "/%2Fsecret", 301, "/secret", ""},
		{"encoded slash stays in its route", "/open%2Fsecret", 200, "", "/o/open%2Fsecret"},
		{"path parameter dot-dot", "/open/..;/secret", 404, "", ""},
		{"encoded path parameter dot-dot", "/open/..%3B/secret", 404, "", ""},
		{"backslash", "/open/..\\secret", 404, "", ""},
		{"encoded backslash", "/open/..%5Csecret", 404, "", ""},
		{"encoded NUL", "/open/%00", 404, "", ""},
		{"path parameter on protected prefix", "/secret;x=1", 401, "", ""},
		{"case differs: ambiguous", "/SECRET", 400, "", ""},
		{"trailing dot: ambiguous", "/secret.", 400, "", ""},
		{"reserved", "/oauth2/start", 404, "", ""},
		{"reserved root", "/oauth2", 404, "", ""},
		{"reserved via dot-dot", "/open/../oauth2/callback", 301, "/oauth2/callback", ""},
		{"no route", "/elsewhere", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.hits.Load()
			res := rawRequest(t, srv, "GET "+tt.target+" HTTP/1.1\r\nHost: gw.test")
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (body %q)", res.StatusCode, tt.wantStatus, res.body)
			}
			if got := res.Header.Get("Location"); got != tt.wantLocation {
				t.Errorf("Location: got %q; want %q", got, tt.wantLocation)
			}
			if tt.wantURI != "" {
				if got := seenBy(t, res).URI; got != tt.wantURI {
					t.Errorf("upstream URI: got %q; want %q", got, tt.wantURI)
				}
				return
			}
			if got := up.hits.Load() - before; got != 0 {
				t.Errorf("upstream requests: got %d; want 0", got)
			}
			if res.StatusCode == 404 && res.body != "404 page not found\n" {
				t.Errorf("404 body: got %q; want the plain one", res.body)
			}
		})
	}
	t.Run("following the redirect needs a token", func(t *testing.T) {
		res := do(t, srv.Client(), "GET", srv.URL+"/open/%2e%2e/secret", nil)
		if res.StatusCode != 401 {
			t.Errorf("status: got %d; want 401", res.StatusCode)
		}
	})
}

func TestBearerAuth(t *testing.T) {
	up := newUpstream(t)
	route := Route{PathPrefix: "/api", Upstream: up.URL, RequiredScopes: []string{"read", "write"}}
	const (
		noToken        = `Bearer realm="oidcgate"`
		invalidRequest = `Bearer realm="oidcgate", error="invalid_request", error_description="the Authorization header is malformed, repeated or too long"`
		invalidToken   = `Bearer realm="oidcgate", error="invalid_token", error_description="the access token is invalid, expired or revoked"`
		insufficient   = `Bearer realm="oidcgate", error="insufficient_scope", error_description="the access token lacks a scope this resource requires", scope="read write"`
	)
	good := testClaims{Sub: "alice", Scope: "read write admin", JTI: "j1"}
	// header builds the Authorization values from a token of the case's
	// issuer: scheme + token for each scheme given.
	header := func(c testClaims, schemes ...string) func(*testing.T, *testIssuer) []string {
		return func(t *testing.T, idp *testIssuer) []string {
			tok := idp.token(t, c)
			var vals []string
			for _, s := range schemes {
				vals = append(vals, s+tok)
			}
			return vals
		}
	}
	fixed := func(vals ...string) func(*testing.T, *testIssuer) []string {
		return func(*testing.T, *testIssuer) []string { return vals }
	}
	tests := []struct {
		name       string
		auth       func(*testing.T, *testIssuer) []string // Authorization values; nil = none
		query      bool                                   // also send the token as access_token=
		verifier   string                                 // "" real; "down": JWKS unreachable; "broken": other error
		wantStatus int
		wantChall  string
		wantError  string // JSON "error"
		wantCalls  int64  // verifier calls
	}{
		{"valid", header(good, "Bearer "), false, "", 200, "", "", 1},
		{"scheme case-insensitive", header(good, "bEaReR "), false, "", 200, "", "", 1},
		{"several spaces", header(good, "Bearer   "), false, "", 200, "", "", 1},
		{"no credentials", fixed(), false, "", 401, noToken, "", 0},
		{"token in query is ignored", fixed(), true, "", 401, noToken, "", 0},
		{"other scheme", fixed("Basic YWxpY2U6cHc="), false, "", 401, noToken, "", 0},
		{"scheme only", fixed("Bearer"), false, "", 400, invalidRequest, "invalid_request", 0},
		{"empty value", fixed(""), false, "", 400, invalidRequest, "invalid_request", 0},
		{"two tokens in one header", func(t *testing.T, idp *testIssuer) []string {
			tok := idp.token(t, good)
			return []string{"Bearer " + tok + " " + tok}
		}, false, "", 400, invalidRequest, "invalid_request", 0},
		{"tab separator", header(good, "Bearer\t"), false, "", 400, invalidRequest, "invalid_request", 0},
		{"not b64token", fixed("Bearer a,b"), false, "", 400, invalidRequest, "invalid_request", 0},
		{"padding inside", fixed("Bearer ab=c"), false, "", 400, invalidRequest, "invalid_request", 0},
		{"two headers", header(good, "Bearer ", "Bearer "), false, "", 400, invalidRequest, "invalid_request", 0},
		{"oversize", fixed("Bearer " + strings.Repeat("a", DefaultMaxAuthorizationBytes)), false, "", 400, invalidRequest, "invalid_request", 0},
		{"bad signature", func(t *testing.T, idp *testIssuer) []string {
			tok := idp.token(t, good)
			i := strings.LastIndexByte(tok, '.') + 1
			return []string{"Bearer " + tok[:i] + strings.Repeat("A", len(tok)-i)}
		}, false, "", 401, invalidToken, "invalid_token", 1},
		{"garbage token", fixed("Bearer abc"), false, "", 401, invalidToken, "invalid_token", 1},
		{"expired", header(testClaims{Sub: "alice", Scope: "read write", Exp: testNow.Add(-time.Hour)}, "Bearer "), false, "", 401, invalidToken, "invalid_token", 1},
		{"revoked", header(testClaims{Sub: "alice", Scope: "read write", JTI: "gone"}, "Bearer "), false, "", 401, invalidToken, "invalid_token", 1},
		{"missing scope", header(testClaims{Sub: "alice", Scope: "read"}, "Bearer "), false, "", 403, insufficient, "insufficient_scope", 1},
		{"verifier unavailable", header(good, "Bearer "), false, "down", 503, "", "temporarily_unavailable", 1},
		{"verifier other error", header(good, "Bearer "), false, "broken", 503, "", "temporarily_unavailable", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newTestIssuer(t)
			idp.revoke(t, "gone")
			v := &countingVerifier{next: idp.v}
			switch tt.verifier {
			case "down":
				idp.down.Store(true)
			case "broken":
				v.next = brokenVerifier{}
			}
			srv := serve(t, Config{Routes: []Route{route}, Verifier: v})
			auth := tt.auth(t, idp)
			target := srv.URL + "/api/x"
			if tt.query {
				target += "?access_token=" + idp.token(t, good)
			}
			before := up.hits.Load()
			res := do(t, srv.Client(), "GET", target, http.Header{"Authorization": auth})
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (body %q)", res.StatusCode, tt.wantStatus, res.body)
			}
			if got := v.calls.Load(); got != tt.wantCalls {
				t.Errorf("verifier calls: got %d; want %d", got, tt.wantCalls)
			}
			if tt.wantStatus == 200 {
				if got := seenBy(t, res).Header.Get("Authorization"); got != auth[0] {
					t.Errorf("upstream Authorization: got %q; want it unchanged", got)
				}
				return
			}
			if got := up.hits.Load() - before; got != 0 {
				t.Errorf("upstream requests: got %d; want 0", got)
			}
			if got := res.Header.Get("WWW-Authenticate"); got != tt.wantChall {
				t.Errorf("WWW-Authenticate: got %q; want %q", got, tt.wantChall)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control: got %q; want no-store", got)
			}
			if got := res.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type: got %q; want application/json", got)
			}
			wantRetry := ""
			if tt.wantStatus == http.StatusServiceUnavailable {
				wantRetry = "5"
			}
			if got := res.Header.Get("Retry-After"); got != wantRetry {
				t.Errorf("Retry-After: got %q; want %q", got, wantRetry)
			}
			var body struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal([]byte(res.body), &body); err != nil {
				t.Fatalf("body %q: %v", res.body, err)
			}
			if body.Error != tt.wantError || body.Description == "" {
				t.Errorf("body: got %+v; want error %q with a description", body, tt.wantError)
			}
			for _, a := range auth {
				if tok := strings.TrimPrefix(a, "Bearer "); len(tok) > 8 && strings.Contains(res.body+res.Header.Get("WWW-Authenticate"), tok) {
					t.Error("the response echoes the token")
				}
			}
		})
	}
}

func TestMaxAuthorizationBytes(t *testing.T) {
	idp := newTestIssuer(t)
	up := newUpstream(t)
	tok := idp.token(t, testClaims{Sub: "alice"})
	limit := len("Bearer " + tok)
	tests := []struct {
		limit      int
		wantStatus int
	}{
		{limit, 200},
		{limit - 1, 400},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			srv := serve(t, Config{
				Routes:                []Route{{Upstream: up.URL}},
				Verifier:              idp.v,
				MaxAuthorizationBytes: tt.limit,
			})
			res := do(t, srv.Client(), "GET", srv.URL+"/", http.Header{"Authorization": {"Bearer " + tok}})
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status: got %d; want %d", res.StatusCode, tt.wantStatus)
			}
		})
	}
}

func TestIdentityHeaders(t *testing.T) {
	idp := newTestIssuer(t)
	up := newUpstream(t)
	srv := serve(t, Config{
		Verifier: idp.v,
		Routes: []Route{
			{PathPrefix: "/app", Upstream: up.URL, Headers: map[string]string{"X-User": "sub", "X-Email": "email", "X-Team": "team"}},
			{PathPrefix: "/public", Upstream: up.URL, Auth: AuthNone},
			{PathPrefix: "/other", Upstream: up.URL, Headers: map[string]string{"X-Other": "sub"}},
		},
	})
	withEmail := "Bearer " + idp.token(t, testClaims{Sub: "alice", Email: "alice@example.com"})
	noEmail := "Bearer " + idp.token(t, testClaims{Sub: "alice"})
	crlfEmail := "Bearer " + idp.token(t, testClaims{Sub: "alice", Email: "a@example.com\r\nX-Admin: 1"})
	tests := []struct {
		name string
		path string
		head string // extra raw header lines
		want map[string]string
	}{
		{"claims set", "/app", "Authorization: " + withEmail,
			map[string]string{"X-User": "alice", "X-Email": "alice@example.com", "X-Team": ""}},
		{"plain spoof replaced", "/app", "Authorization: " + withEmail + "\r\nX-User: mallory\r\nX-Team: admins",
			map[string]string{"X-User": "alice", "X-Team": ""}},
		{"case variants removed", "/app", "Authorization: " + noEmail + "\r\nx-user: mallory\r\nX-EMAIL: m@evil\r\nx-TEAM: admins",
			map[string]string{"X-User": "alice", "X-Email": "", "X-Team": ""}},
		{"underscore variants removed", "/app", "Authorization: " + noEmail + "\r\nX_User: mallory\r\nx_email: m@evil",
			map[string]string{"X-User": "alice", "X-Email": ""}},
		{"connection-listed cannot strip the gateway's value", "/app", "Authorization: " + noEmail + "\r\nConnection: X-User, close\r\nX-User: mallory",
			map[string]string{"X-User": "alice"}},
		{"missing claim leaves header absent", "/app", "Authorization: " + noEmail + "\r\nX-Email: m@evil",
			map[string]string{"X-Email": ""}},
		{"claim value with CR LF leaves header absent", "/app", "Authorization: " + crlfEmail,
			map[string]string{"X-User": "alice", "X-Email": "", "X-Admin": ""}},
		{"stripped on auth none routes", "/public", "X-User: mallory\r\nX_Email: m@evil\r\nX-Other: x\r\nX-Kept: yes",
			map[string]string{"X-User": "", "X-Email": "", "X-Other": "", "X-Kept": "yes"}},
		{"other routes' names stripped too", "/other", "Authorization: " + noEmail + "\r\nX-User: mallory",
			map[string]string{"X-User": "", "X-Other": "alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := rawRequest(t, srv, "GET "+tt.path+" HTTP/1.1\r\nHost: gw.test\r\n"+tt.head)
			if res.StatusCode != 200 {
				t.Fatalf("status: got %d; want 200 (body %q)", res.StatusCode, res.body)
			}
			h := seenBy(t, res).Header
			for name, want := range tt.want {
				// Every spelling that an upstream might fold into name.
				var got []string
				for k, vs := range h {
					if foldHeaderName(k) == foldHeaderName(name) {
						got = append(got, vs...)
					}
				}
				if strings.Join(got, ",") != want {
					t.Errorf("upstream %s (any spelling): got %q; want %q", name, got, want)
				}
			}
		})
	}
}

func TestIdentityTrailersDropped(t *testing.T) {
	got := make(chan http.Header, 1)
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r.Trailer
	}))
	t.Cleanup(up.Close)
	srv := serve(t, Config{Routes: []Route{{Upstream: up.URL, Auth: AuthNone, Headers: map[string]string{"X-User": "sub"}}}})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-User, X-Other\r\n\r\n"+
		"3\r\nabc\r\n0\r\nX-User: mallory\r\nX-Other: kept\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	tr := <-got
	if _, ok := tr["X-User"]; ok {
		t.Errorf("upstream trailers: got %v; want no X-User", tr)
	}
	if _, ok := tr["X-Other"]; !ok {
		t.Errorf("upstream trailers: got %v; want X-Other declared", tr)
	}
}

func TestForwardingHeaders(t *testing.T) {
	up := newUpstream(t)
	srv := serve(t, Config{Routes: []Route{{Upstream: up.URL + "/base/", Auth: AuthNone}}})
	res := rawRequest(t, srv, "GET /x?y=1 HTTP/1.1\r\nHost: public.example.com\r\n"+
		"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nForwarded: for=203.0.113.9\r\n"+
		"Connection: X-Hop, close\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eDp5\r\nTe: trailers, deflate\r\nX-End-To-End: kept")
	if res.StatusCode != 200 {
		t.Fatalf("status: got %d; want 200", res.StatusCode)
	}
	s := seenBy(t, res)
	upHost := strings.TrimPrefix(up.URL, "http://")
	checks := []struct{ name, got, want string }{
		{"URI", s.URI, "/base/x?y=1"},
		{"Host", s.Host, upHost},
		{"X-Forwarded-For", strings.Join(s.Header["X-Forwarded-For"], ","), "127.0.0.1"},
		{"X-Forwarded-Host (no public_url: none)", strings.Join(s.Header["X-Forwarded-Host"], ","), ""},
		{"X-Forwarded-Proto", strings.Join(s.Header["X-Forwarded-Proto"], ","), "http"},
		{"Forwarded", s.Header.Get("Forwarded"), ""},
		{"X-Hop", s.Header.Get("X-Hop"), ""},
		{"Keep-Alive", s.Header.Get("Keep-Alive"), ""},
		{"Proxy-Authorization", s.Header.Get("Proxy-Authorization"), ""},
		{"Te", s.Header.Get("Te"), "trailers"},
		{"X-End-To-End", s.Header.Get("X-End-To-End"), "kept"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("upstream %s: got %q; want %q", c.name, c.got, c.want)
		}
	}
}

func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Error(err)
		}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	}))
	t.Cleanup(up.Close)
	srv := serve(t, Config{Routes: []Route{{Upstream: up.URL, Auth: AuthNone}}})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	// The upstream is still waiting for release: this read only returns if
	// the gateway flushed the first event through.
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("first event: %v", err)
	}
	if first != "data: first\n" {
		t.Errorf("first line: got %q; want %q", first, "data: first\n")
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if want := "\ndata: second\n\n"; string(rest) != want {
		t.Errorf("rest: got %q; want %q", rest, want)
	}
}

func TestUpstreamDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	srv := serve(t, Config{
		Routes:  []Route{{Upstream: downURL + "/base", Auth: AuthNone}},
		Logger:  slog.New(slog.NewTextHandler(logs, nil)),
		Metrics: reg,
	})
	res := do(t, srv.Client(), "GET", srv.URL+"/x?access_token=secret-in-query", nil)
	if res.StatusCode != http.StatusBadGateway {
		t.Fatalf("status: got %d; want 502", res.StatusCode)
	}
	if res.body != "bad gateway\n" {
		t.Errorf("body: got %q; want %q", res.body, "bad gateway\n")
	}
	if !strings.Contains(logs.String(), "upstream request failed") {
		t.Errorf("log: got %q; want an upstream error line", logs.String())
	}
	if strings.Contains(logs.String(), "secret-in-query") {
		t.Errorf("log leaks the query: %q", logs.String())
	}
	if got := counter(t, reg, "/", "upstream_error"); got != 1 {
		t.Errorf("upstream_error count: got %v; want 1", got)
	}
	if got := counter(t, reg, "/", "allowed"); got != 0 {
		t.Errorf("allowed count: got %v; want 0", got)
	}
}

func TestMetricsAndLogs(t *testing.T) {
	idp := newTestIssuer(t)
	up := newUpstream(t)
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	srv := serve(t, Config{
		Verifier: idp.v,
		Routes: []Route{
			{Host: "api.example.com", PathPrefix: "/v1/", Upstream: up.URL, RequiredScopes: []string{"read"}},
			{PathPrefix: "/", Upstream: up.URL, Auth: AuthNone},
		},
		Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: reg,
	})
	good := idp.token(t, testClaims{Sub: "alice", Scope: "read"})
	bad := good[:len(good)-4] + "AAAA"
	noScope := idp.token(t, testClaims{Sub: "alice"})
	for _, head := range []string{
		"GET /v1/a HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer " + good,
		"GET /v1/a HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer " + bad,
		"GET /v1/a HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer " + noScope,
		"GET /v1/a HTTP/1.1\r\nHost: api.example.com",
		"GET /v1/a HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer !",
		"GET /x HTTP/1.1\r\nHost: other.example.com",
		"GET /oauth2/start HTTP/1.1\r\nHost: other.example.com",
	} {
		rawRequest(t, srv, head)
	}
	wants := []struct {
		route, decision string
		want            float64
	}{
		{"api.example.com/v1", "allowed", 1},
		{"api.example.com/v1", "invalid_token", 1},
		{"api.example.com/v1", "insufficient_scope", 1},
		{"api.example.com/v1", "no_token", 1},
		{"api.example.com/v1", "invalid_request", 1},
		{"api.example.com/v1", "unavailable", 0},
		{"/", "allowed", 1},
		{"none", "no_route", 1},
	}
	for _, w := range wants {
		if got := counter(t, reg, w.route, w.decision); got != w.want {
			t.Errorf("requests{route=%q,decision=%q}: got %v; want %v", w.route, w.decision, got, w.want)
		}
	}
	if got := histogramCount(t, reg, "api.example.com/v1"); got != 5 {
		t.Errorf("duration count: got %d; want 5", got)
	}

	out := logs.String()
	if strings.Contains(out, bad) || strings.Contains(out, noScope) {
		t.Error("log contains a token")
	}
	var lines []map[string]any
	for l := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 5 {
		t.Fatalf("log lines: got %d; want one per denied request (5):\n%s", len(lines), out)
	}
	if got := lines[0]["decision"]; got != "invalid_token" {
		t.Errorf("first denial decision: got %v; want invalid_token", got)
	}
	if got, _ := lines[0]["token_sha256"].(string); len(got) != 16 {
		t.Errorf("token_sha256: got %q; want a 16-hex-digit prefix", got)
	}
	if got := lines[0]["route"]; got != "api.example.com/v1" {
		t.Errorf("route: got %v; want api.example.com/v1", got)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, route, decision string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "oidcgate_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["decision"] == decision {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no oidcgate_requests_total{route=%q,decision=%q}", route, decision)
	return 0
}

func histogramCount(t *testing.T, reg *prometheus.Registry, route string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "oidcgate_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == route {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	t.Fatalf("no oidcgate_request_duration_seconds{route=%q}", route)
	return 0
}

func TestNew(t *testing.T) {
	idp := newTestIssuer(t)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"bearer without verifier", Config{Routes: []Route{{Upstream: "http://app"}}}, "gateway: verifier: required when a route uses bearer auth"},
		{"none needs no verifier", Config{Routes: []Route{{Upstream: "http://app", Auth: AuthNone}}}, ""},
		{"invalid config", Config{Routes: []Route{{Upstream: "app"}}, Verifier: idp.v}, "routes[0].upstream: not an absolute URL"},
		{"no routes", Config{}, ""},
		{"browser without id tokens and sessions", Config{
			PublicURL: "https://gw.example", Session: SessionConfig{Secret: testSecret, Issuer: "https://idp.example"},
			Login:  Login{ClientID: "gw", ClientSecret: "s"},
			Routes: []Route{{Upstream: "http://app", Auth: AuthBrowser}},
		}, "gateway: id tokens and sessions: required when a route uses browser auth"},
		{"either without verifier", Config{
			PublicURL: "https://gw.example", Session: SessionConfig{Secret: testSecret, Issuer: "https://idp.example"},
			Login:    Login{ClientID: "gw", ClientSecret: "s"},
			Routes:   []Route{{Upstream: "http://app", Auth: AuthEither}},
			IDTokens: idp.v, Sessions: idp.store,
		}, "gateway: verifier: required when a route uses bearer auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if got := errString(err); got != tt.wantErr {
				t.Errorf("New: got %q; want %q", got, tt.wantErr)
			}
		})
	}
	t.Run("metrics registered twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		cfg := Config{Metrics: reg}
		if _, err := New(cfg); err != nil {
			t.Fatal(err)
		}
		_, err := New(cfg)
		if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
			t.Errorf("second New: got %v; want AlreadyRegisteredError", err)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestUpstreamURLJoin(t *testing.T) {
	up := newUpstream(t)
	tests := []struct {
		upstream, path, want string
	}{
		{up.URL, "/a/b", "/a/b"},
		{up.URL + "/base", "/a", "/base/a"},
		{up.URL + "/base/", "/a/", "/base/a/"},
		{up.URL, "/a%20b?x=%2F", "/a%20b?x=%2F"},
	}
	for _, tt := range tests {
		t.Run(tt.upstream+tt.path, func(t *testing.T) {
			srv := serve(t, Config{Routes: []Route{{Upstream: tt.upstream, Auth: AuthNone}}})
			u, err := url.Parse(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			res := do(t, srv.Client(), "GET", u.String(), nil)
			if got := seenBy(t, res).URI; got != tt.want {
				t.Errorf("upstream URI: got %q; want %q", got, tt.want)
			}
		})
	}
}
