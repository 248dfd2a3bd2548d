package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/oidcgate/oidcgate/introspect"
)

// TestUnverifiedEmail: an email is forwarded as an identity only when
// email_verified is true (OIDC Core §5.7), or absent for an issuer that
// opted in with insecure_email_without_email_verified.
func TestUnverifiedEmail(t *testing.T) {
	idp := newTestIssuer(t)
	other := newTestIssuer(t)
	up := newUpstream(t)
	v := multiVerifier{idp.URL: idp.v, other.URL: other.v}
	srv := serve(t, Config{
		Verifier: v,
		Routes: []Route{{PathPrefix: "/", Upstream: up.URL,
			Headers: map[string]string{"X-Forwarded-Email": "email", "X-User": "sub"}}},
		InsecureEmailWithoutEmailVerified: []string{other.URL},
	})
	for _, tt := range []struct {
		name     string
		ti       *testIssuer
		verified any
		want     string
	}{
		{"verified", idp, true, "ceo@victim-corp.example"},
		{"unverified", idp, false, ""},
		{"no email_verified", idp, emailVerifiedAbsent, ""},
		{"email_verified as a string", idp, "true", ""},
		{"insecure issuer, no email_verified", other, emailVerifiedAbsent, "ceo@victim-corp.example"},
		{"insecure issuer, unverified", other, false, ""},
	} {
		tok := tt.ti.token(t, testClaims{Sub: "mallory", Email: "ceo@victim-corp.example", EmailVerified: tt.verified})
		res := do(t, srv.Client(), "GET", srv.URL+"/x", http.Header{
			"Authorization": {"Bearer " + tok}, "X-Forwarded-Email": {"spoof@example"}})
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d (%s)", tt.name, res.StatusCode, res.body)
		}
		s := seenBy(t, res)
		if got := strings.Join(s.Header["X-Forwarded-Email"], ","); got != tt.want {
			t.Errorf("%s: upstream X-Forwarded-Email got %q; want %q", tt.name, got, tt.want)
		}
		if got := s.Header.Get("X-User"); got != "mallory" {
			t.Errorf("%s: upstream X-User got %q; want mallory", tt.name, got)
		}
	}
}

func TestUnverifiedEmailBrowser(t *testing.T) {
	for _, tt := range []struct {
		name     string
		verified any
		want     string
	}{
		{"verified", true, "ceo@victim-corp.example"},
		{"unverified", false, ""},
	} {
		e := newEnv(t, nil)
		e.idp.setUser(user{Sub: "mallory", SID: "sid-9", Email: "ceo@victim-corp.example", EmailVerified: tt.verified})
		b := e.browser(t)
		res := b.login(e, "/app/x")
		s := seenBy(t, res)
		if got := s.Header.Get("X-Email"); got != tt.want {
			t.Errorf("%s: upstream X-Email got %q; want %q", tt.name, got, tt.want)
		}
		if got := s.Header.Get("X-User"); got != "mallory" {
			t.Errorf("%s: upstream X-User got %q; want mallory", tt.name, got)
		}
	}
}

// multiVerifier verifies with the verifier of the token's issuer.
type multiVerifier map[string]TokenVerifier

func (m multiVerifier) Verify(ctx context.Context, raw string) (*introspect.Claims, error) {
	for _, v := range m {
		if c, err := v.Verify(ctx, raw); err == nil {
			return c, nil
		}
	}
	return nil, introspect.ErrInvalidToken
}

// TestUnverifiedAuthorizationStripped: a route that did not verify the
// Authorization header never passes it on.
func TestUnverifiedAuthorizationStripped(t *testing.T) {
	idp := newTestIssuer(t)
	up := newUpstream(t)
	srv := serve(t, Config{
		Verifier: idp.v,
		Routes: []Route{
			{PathPrefix: "/open", Upstream: up.URL, Auth: AuthNone},
			{PathPrefix: "/api", Upstream: up.URL},
		},
	})
	forged := "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."
	res := rawRequest(t, srv, "GET /open/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: "+forged)
	if got := seenBy(t, res).Header["Authorization"]; len(got) != 0 {
		t.Errorf("none route: upstream Authorization got %q; want none", got)
	}
	// Also as a declared trailer of a chunked body.
	res = rawRequest(t, srv, "POST /open/x HTTP/1.1\r\nHost: gw.test\r\nTrailer: Authorization\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nAuthorization: "+forged+"\r\n")
	if s := seenBy(t, res); len(s.Header["Authorization"]) != 0 {
		t.Errorf("none route, trailer: upstream Authorization got %q; want none", s.Header["Authorization"])
	}
	// A bearer route verified it: the app may need it.
	tok := "Bearer " + idp.token(t, testClaims{Sub: "alice"})
	res = rawRequest(t, srv, "GET /api/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: "+tok)
	if got := seenBy(t, res).Header.Get("Authorization"); got != tok {
		t.Errorf("bearer route: upstream Authorization got %q; want the verified token", got)
	}
}

func TestUnverifiedAuthorizationStrippedBrowser(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	appLogin(t, e, b)
	res := b.get(e.srv.URL+"/app/x", http.Header{"Authorization": {"Bearer forged.jwt.value"}})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got := seenBy(t, res).Header["Authorization"]; len(got) != 0 {
		t.Errorf("browser route: upstream Authorization got %q; want none", got)
	}
}

// TestForwardedHostPinned: X-Forwarded-Host is public_url's host (or the
// route's), never the client's Host.
func TestForwardedHostPinned(t *testing.T) {
	up := newUpstream(t)
	for _, tt := range []struct {
		name, publicURL, routeHost, reqHost, want string
	}{
		{"public_url", "https://gw.example.com:8443", "", "evil.example", "gw.example.com:8443"},
		{"route host", "https://gw.example.com", "api.example.com", "API.example.com", "api.example.com"},
		{"route host is public_url's", "https://gw.example.com:8443", "gw.example.com", "gw.example.com", "gw.example.com:8443"},
		{"no public_url: none", "", "", "evil.example", ""},
	} {
		srv := serve(t, Config{PublicURL: tt.publicURL, Routes: []Route{{Host: tt.routeHost, Upstream: up.URL, Auth: AuthNone}}})
		res := rawRequest(t, srv, "GET /x HTTP/1.1\r\nHost: "+tt.reqHost+"\r\nX-Forwarded-Host: evil2.example")
		if got := strings.Join(seenBy(t, res).Header["X-Forwarded-Host"], ","); got != tt.want {
			t.Errorf("%s: upstream X-Forwarded-Host got %q; want %q", tt.name, got, tt.want)
		}
	}
}
