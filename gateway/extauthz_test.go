package gateway

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// extAuthzFor serves gw's ext_authz on a loopback gRPC server and returns
// a client of it.
func extAuthzFor(t *testing.T, gw *Gateway) authv3.AuthorizationClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	authv3.RegisterAuthorizationServer(srv, gw.AuthorizationServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

func checkHTTP(t *testing.T, c authv3.AuthorizationClient, hr *authv3.AttributeContext_HttpRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: hr}}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return res
}

func TestExtAuthz(t *testing.T) {
	up := newUpstream(t)
	ti := newTestIssuer(t)
	newGW := func(trusted []string) *Gateway {
		gw, err := New(Config{
			Routes: []Route{
				{PathPrefix: "/api", Upstream: up.URL, RequiredScopes: []string{"read"},
					Headers: map[string]string{"X-User": "sub", "X-Email": "email"}},
				{PathPrefix: "/admin", RequiredScopes: []string{"admin"}, Headers: map[string]string{"X-Admin": "sub"}},
			},
			ForwardAuth: ForwardAuthConfig{TrustedProxies: trusted},
			Verifier:    ti.v,
		})
		if err != nil {
			t.Fatal(err)
		}
		return gw
	}
	c := extAuthzFor(t, newGW(nil))
	valid := ti.token(t, testClaims{Sub: "alice", Scope: "read"})
	revoked := ti.token(t, testClaims{Sub: "bob", Scope: "read", JTI: "gone"})
	ti.revoke(t, "gone")
	req := func(path, auth string) *authv3.AttributeContext_HttpRequest {
		h := map[string]string{"x-user": "mallory", "x-email": "m@evil.example"}
		if auth != "" {
			h["authorization"] = auth
		}
		return &authv3.AttributeContext_HttpRequest{Method: "GET", Scheme: "https", Host: "api.example", Path: path, Headers: h}
	}

	// Allowed: X-User set, X-Email (no such claim) and the other route's
	// X-Admin removed, Authorization left alone.
	res := checkHTTP(t, c, req("/api/x?y=1", "Bearer "+valid))
	ok := res.GetOkResponse()
	if codes.Code(res.GetStatus().GetCode()) != codes.OK || ok == nil {
		t.Fatalf("valid: got %v", res)
	}
	if len(ok.GetHeaders()) != 1 || ok.GetHeaders()[0].GetHeader().GetKey() != "X-User" || ok.GetHeaders()[0].GetHeader().GetValue() != "alice" {
		t.Errorf("valid: headers %v; want X-User: alice only", ok.GetHeaders())
	}
	if rm := ok.GetHeadersToRemove(); !slices.Equal(rm, []string{"x-admin", "x-email"}) {
		t.Errorf("valid: headers to remove %v; want [x-admin x-email]", rm)
	}

	for _, tc := range []struct {
		name   string
		hr     *authv3.AttributeContext_HttpRequest
		code   codes.Code
		status int32
		want   string // in the denied body or headers
	}{
		{"revoked", req("/api/x", "Bearer "+revoked), codes.Unauthenticated, 401, `error="invalid_token"`},
		{"missing", req("/api/x", ""), codes.Unauthenticated, 401, `Bearer realm="oidcgate"`},
		{"scope-less", req("/admin/x", "Bearer "+valid), codes.PermissionDenied, 403, `scope="admin"`},
		{"malformed", req("/api/x", "Bearer a b"), codes.Unauthenticated, 401, `error="invalid_request"`},
		{"no http", nil, codes.InvalidArgument, 400, "no HTTP request"},
		{"not canonical", req("/x/../api/x", "Bearer "+valid), codes.InvalidArgument, 400, "not canonical"},
		{"not a path", req("api/x", "Bearer "+valid), codes.InvalidArgument, 400, "not a path"},
		{"no host", &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/x"}, codes.InvalidArgument, 400, "no host"},
		{"no route", req("/elsewhere", "Bearer "+valid), codes.PermissionDenied, 403, "no route"},
		{"repeated authorization", &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "api.example", Path: "/api/x",
			HeaderMap: headerMap("authorization", "Bearer "+valid, "authorization", "Bearer "+valid)}, codes.Unauthenticated, 401, `error="invalid_request"`},
	} {
		res := checkHTTP(t, c, tc.hr)
		d := res.GetDeniedResponse()
		var all strings.Builder
		for _, h := range d.GetHeaders() {
			all.WriteString(h.GetHeader().GetKey() + ": " + h.GetHeader().GetValue() + "\n")
		}
		all.WriteString(d.GetBody())
		if codes.Code(res.GetStatus().GetCode()) != tc.code || d == nil || int32(d.GetStatus().GetCode()) != tc.status || !strings.Contains(all.String(), tc.want) {
			t.Errorf("%s: got %v %v; want %v %d with %q", tc.name, codes.Code(res.GetStatus().GetCode()), d, tc.code, tc.status, tc.want)
		}
	}

	// With trusted_proxies set, a peer outside them is refused.
	c = extAuthzFor(t, newGW([]string{"10.0.0.0/8"}))
	res = checkHTTP(t, c, req("/api/x", "Bearer "+valid))
	if codes.Code(res.GetStatus().GetCode()) != codes.PermissionDenied || !strings.Contains(res.GetStatus().GetMessage(), "trusted_proxies") {
		t.Errorf("untrusted peer: got %v", res)
	}
}

func headerMap(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], Value: kv[i+1]})
	}
	return m
}
