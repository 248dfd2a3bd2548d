package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/oidcgate/oidcgate/cache/redistest"
)

// extAuthzClient dials a gateway's ext_authz gRPC service.
func extAuthzClient(t *testing.T, addr string) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// check asks c about GET host+path with token (none when "") and a
// client-sent X-User, as Envoy would.
func check(t *testing.T, c authv3.AuthorizationClient, path, token string) *authv3.CheckResponse {
	t.Helper()
	h := map[string]string{"x-user": "mallory", "accept": "*/*"}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Scheme: "https", Host: "api.example.com", Path: path, Headers: h,
		}},
	}})
	if err != nil {
		t.Fatalf("Check %s: %v", path, err)
	}
	return res
}

// verdictOf summarises a CheckResponse: the gRPC code, the HTTP status of
// a denial, and the headers it sets (name: value).
func verdictOf(res *authv3.CheckResponse) (codes.Code, int, map[string]string) {
	hdrs := map[string]string{}
	status := http.StatusOK
	if ok := res.GetOkResponse(); ok != nil {
		for _, h := range ok.GetHeaders() {
			hdrs[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
		for _, name := range ok.GetHeadersToRemove() {
			hdrs["-"+name] = ""
		}
	}
	if d := res.GetDeniedResponse(); d != nil {
		status = int(d.GetStatus().GetCode())
		for _, h := range d.GetHeaders() {
			hdrs[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
		}
	}
	return codes.Code(res.GetStatus().GetCode()), status, hdrs
}

// TestExtAuthzGRPC: the ext_authz gRPC service of two replicas sharing
// Redis: valid, scope-less, missing and revoked credentials, and a
// revocation accepted by one replica denying on the other.
func TestExtAuthzGRPC(t *testing.T) {
	requireBinary(t)
	srv := redistest.Start(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	admin := randHex(t, 16)
	var clients []authv3.AuthorizationClient
	var replicas []*redisReplica
	for _, name := range []string{"a", "b"} {
		grpcAddr := freeLoopbackAddr(t)
		cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: admin,
			extraYAML: fmt.Sprintf("forward_auth:\n  grpc_listen: %q\n  trusted_proxies: [127.0.0.1]\n", grpcAddr)}
		replicas = append(replicas, startRedisReplica(t, t, name, cfg, srv.Addr))
		clients = append(clients, extAuthzClient(t, grpcAddr))
	}
	a, b := clients[0], clients[1]

	alice := iss.mint(t, iss.spec(t, "alice"))
	bob := iss.mint(t, iss.spec(t, "bob"))
	for _, tc := range []struct {
		name, path, token string
		code              codes.Code
		status            int
		header, value     string // a header the answer must set to value
	}{
		{"valid", "/items?x=1", alice, codes.OK, 200, "x-user", "alice"},
		{"valid, scope claim", "/items", alice, codes.OK, 200, "x-scope", "read"},
		{"scope-less", "/scoped/x", alice, codes.PermissionDenied, 403, "www-authenticate", `Bearer realm="oidcgate", error="insufficient_scope", error_description="the access token lacks a scope this resource requires", scope="admin"`},
		{"missing", "/items", "", codes.Unauthenticated, 401, "www-authenticate", `Bearer realm="oidcgate"`},
		{"tampered", "/items", tamper(t, alice, func(m map[string]any) { m["sub"] = "root" }), codes.Unauthenticated, 401, "www-authenticate", `Bearer realm="oidcgate", error="invalid_token", error_description="the access token is invalid, expired or revoked"`},
		{"not canonical", "/public/../items", alice, codes.InvalidArgument, 400, "content-type", "text/plain; charset=utf-8"},
		{"gateway's own path", "/oauth2/start", alice, codes.PermissionDenied, 403, "content-type", "text/plain; charset=utf-8"},
	} {
		code, status, hdrs := verdictOf(check(t, b, tc.path, tc.token))
		if code != tc.code || status != tc.status || hdrs[tc.header] != tc.value {
			t.Errorf("%s: got %v %d %v; want %v %d with %s: %s", tc.name, code, status, hdrs, tc.code, tc.status, tc.header, tc.value)
		}
		if code == codes.OK && hdrs["x-user"] == "mallory" {
			t.Errorf("%s: the client's X-User is kept", tc.name)
		}
	}

	// bob passes on both replicas; revoked through replica a's admin API,
	// he is refused on a at once and on b as soon as the revocation
	// arrives through Redis.
	for i, c := range clients {
		if code, _, hdrs := verdictOf(check(t, c, "/items", bob)); code != codes.OK || hdrs["x-user"] != "bob" {
			t.Fatalf("bob on replica %d before the revocation: got %v %v; want OK", i, code, hdrs)
		}
	}
	if r := replicas[0].revoke(t, map[string]string{"sub": "bob", "issuer": iss.url, "reason": "e2e"}); r.status != http.StatusCreated {
		t.Fatalf("revoke bob on a: got %d %s; want 201", r.status, r.body)
	}
	if code, status, _ := verdictOf(check(t, a, "/items", bob)); code != codes.Unauthenticated || status != 401 {
		t.Errorf("bob on a right after the revocation: got %v %d; want UNAUTHENTICATED 401", code, status)
	}
	var last codes.Code
	if !waitFor(propagationTimeout, func() bool {
		last, _, _ = verdictOf(check(t, b, "/items", bob))
		return last == codes.Unauthenticated
	}) {
		t.Errorf("bob on b: still %v %s after the revocation on a; want UNAUTHENTICATED", last, propagationTimeout)
	}
	if code, _, hdrs := verdictOf(check(t, b, "/items", alice)); code != codes.OK || hdrs["x-user"] != "alice" {
		t.Errorf("alice on b after bob's revocation: got %v %v; want OK", code, hdrs)
	}
	if n := up.hitsFor("/items"); n != 0 {
		t.Errorf("upstream hits: %d; ext_authz never proxies", n)
	}
}
