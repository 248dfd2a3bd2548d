package gateway

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPathConfusion(t *testing.T) {
	idp := newTestIssuer(t)
	up := newUpstream(t)
	srv := serve(t, Config{
		Verifier: idp.v,
		Routes: []Route{
			{PathPrefix: "/", Upstream: up.URL + "/open", Auth: AuthNone},
			{PathPrefix: "/admin", Upstream: up.URL + "/admin"},
			{PathPrefix: "/Reports", Upstream: up.URL + "/reports"},
		},
	})
	tok := idp.token(t, testClaims{Sub: "alice"})
	// Each of these may name /admin (or /Reports) to some app; none may
	// reach the upstream under the "/" route, with or without a token.
	for _, target := range []string{
		"/ADMIN", "/Admin/x", "/admin.", "/admin%2e", "/admin%2E", "/admin%20", "/admin%09",
		"/admin.%20.", "/admin./x", "/admin%252e", "/admin%25252e%2520", "/ADMIN;x=1", "/admin.;x",
		"/adm%C4%B1n", "/%EF%BD%81dmin", "/Report%C5%BF", "/admin%0a", "/ad%09min",
		"/reports", "/REPORTS/x", "/Reports.",
		"/x/..%252f..%252fadmin", "/x/%252e%252e/admin", "/OAUTH2/start", "/oauth2./x",
	} {
		for _, withToken := range []bool{false, true} {
			head := "GET " + target + " HTTP/1.1\r\nHost: gw.test"
			if withToken {
				head += "\r\nAuthorization: Bearer " + tok
			}
			before := up.hits.Load()
			res := rawRequest(t, srv, head)
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("%s (token %v): status got %d; want 400 (body %q)", target, withToken, res.StatusCode, res.body)
			}
			if got := up.hits.Load() - before; got != 0 {
				t.Errorf("%s (token %v): upstream requests got %d; want 0", target, withToken, got)
			}
		}
	}
	for _, tt := range []struct{ target, wantURI string }{
		{"/admin", "/admin/admin"},
		{"/admin/x.json", "/admin/admin/x.json"},
		{"/Reports/q", "/reports/Reports/q"},
		{"/file.txt", "/open/file.txt"},
		{"/Docs/Guide.", "/open/Docs/Guide."},
		{"/a%20b/c", "/open/a%20b/c"},
		{"/administrator", "/open/administrator"},
	} {
		res := rawRequest(t, srv, "GET "+tt.target+" HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer "+tok)
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: status got %d; want 200 (body %q)", tt.target, res.StatusCode, res.body)
			continue
		}
		if got := seenBy(t, res).URI; got != tt.wantURI {
			t.Errorf("%s: upstream URI got %q; want %q (the original path)", tt.target, got, tt.wantURI)
		}
	}
}

func TestPathConfusionReverse(t *testing.T) {
	// The weaker route is the more specific one: "/PUBLIC" may be a
	// protected page of a case-sensitive app, so it is refused too.
	idp := newTestIssuer(t)
	up := newUpstream(t)
	srv := serve(t, Config{
		Verifier: idp.v,
		Routes: []Route{
			{PathPrefix: "/", Upstream: up.URL},
			{PathPrefix: "/public", Upstream: up.URL, Auth: AuthNone},
		},
	})
	for _, target := range []string{"/PUBLIC", "/public.", "/Public/x"} {
		before := up.hits.Load()
		res := rawRequest(t, srv, "GET "+target+" HTTP/1.1\r\nHost: gw.test")
		if res.StatusCode != http.StatusBadRequest || up.hits.Load() != before {
			t.Errorf("%s: got status %d and %d upstream requests; want 400 and none", target, res.StatusCode, up.hits.Load()-before)
		}
	}
}

func TestNormalizePath(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"/admin", "/admin", true},
		{"/ADMIN/X", "/admin/x", true},
		{"/admin.", "/admin", true},
		{"/admin. . ", "/admin", true},
		{"/admin\t", "/admin", true},
		{"/ad\nmin", "/admin", true},
		{"/admin%2e", "/admin", true},
		{"/admin%252e", "/admin", true},
		{"/admin;jsessionid=1/x", "/admin/x", true},
		{"/a/%2e%2e/admin", "/admin", true},
		{"/a/%2e%2e%2fadmin", "/admin", true},
		{"/\u017fecret", "/secret", true},
		{"/\u212aey", "/key", true},
		{"/\uff21dmin", "/admin", true},
		{"/a\uff0fb", "/a/b", true},
		{"/file.txt", "/file.txt", true},
		{"/100%", "/100%", true},
		{"/a%zzb", "/a%zzb", true},
		{"/x/. /y", "", false},
		{"/x/.../y", "", false},
		{"/x%00", "", false},
		{"/x%5cy", "", false},
		{"/x\x01", "", false},
		{"/x%" + strings.Repeat("25", 6) + "41", "", false},
		{"/x%" + strings.Repeat("25", 3) + "41", "/xa", true},
	} {
		got, ok := normalizePath(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("normalizePath(%q): got %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// fuzzRoutes are the routes FuzzRouteNormalised judges paths against:
// weaker and stronger routes nested both ways, one in mixed case.
var fuzzRoutes = []Route{
	{PathPrefix: "/", Upstream: "http://up.test/root", Auth: AuthNone},
	{PathPrefix: "/admin", Upstream: "http://up.test/admin"},
	{PathPrefix: "/admin/public", Upstream: "http://up.test/admin-public", Auth: AuthNone},
	{PathPrefix: "/Reports", Upstream: "http://up.test/reports"},
	{PathPrefix: "/static", Upstream: "http://up.test/static", Auth: AuthNone},
}

// upstreamOf records which route's upstream a request reached.
type upstreamOf struct{ last string }

func (u *upstreamOf) RoundTrip(r *http.Request) (*http.Response, error) {
	u.last = strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0]
	return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
}

// FuzzRouteNormalised sends request-targets through the real router and
// checks that no request reaches an upstream other than the one its
// normalised path selects.
func FuzzRouteNormalised(f *testing.F) {
	for _, s := range []string{"/", "/admin", "/ADMIN", "/admin.", "/admin%2e", "/admin%20", "/admin%09",
		"/admin/public/x", "/admin/PUBLIC", "/reports", "/Reports/x", "/static/..%2fadmin", "/admin;x",
		"/%EF%BD%81dmin", "/a%C5%BFmin", "/admin%252e", "/x/%2e%2e/admin"} {
		f.Add(s)
	}
	tr := &upstreamOf{}
	gw, err := New(Config{Routes: fuzzRoutes, Verifier: brokenVerifier{}, Transport: tr})
	if err != nil {
		f.Fatal(err)
	}
	want := func(p string) string {
		n, ok := normalizePath(p)
		if !ok {
			return ""
		}
		best, bestLen := "", -1
		for _, r := range fuzzRoutes {
			np, _ := normalizePath(normalPrefix(r.PathPrefix))
			if matchPrefix(n, np) && len(np) > bestLen {
				best, bestLen = strings.TrimPrefix(r.Upstream, "http://up.test/"), len(np)
			}
		}
		return best
	}
	f.Fuzz(func(t *testing.T, target string) {
		if len(target) > 1024 {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: gw.test\r\n\r\n")))
		if err != nil {
			return
		}
		if n, ok := normalizePath(req.URL.Path); ok {
			if again, ok := normalizePath(n); !ok || again != n {
				t.Fatalf("normalizePath not idempotent on %q: %q then %q, %v", req.URL.Path, n, again, ok)
			}
		}
		tr.last = ""
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, req)
		_, _ = io.Copy(io.Discard, rec.Body)
		if tr.last == "" {
			return
		}
		if w := want(req.URL.Path); tr.last != w {
			t.Fatalf("%q (path %q) reached upstream %q; its normalised form selects %q", target, req.URL.Path, tr.last, w)
		}
	})
}
