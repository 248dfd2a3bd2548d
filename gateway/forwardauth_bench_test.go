package gateway

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/peer"
)

// benchWriter is a reusable http.ResponseWriter: the benchmark measures
// the gateway's work, not a recorder's.
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(s int)           { w.status = s }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkForwardAuth is the gateway's CPU per forward-auth decision
// with a cached JWT (the real introspect.Verifier, its verified-result
// cache warm; the revocation check against the real store still runs on
// every call): /oauth2/auth called in-process as nginx and Traefik
// describe a request, and the ext_authz Check. ns/op on one goroutine is
// CPU time per decision; the budget is 20 µs.
func BenchmarkForwardAuth(b *testing.B) {
	idp := newTestIssuer(b)
	gw, err := New(Config{
		Routes: []Route{
			{PathPrefix: "/public", Auth: AuthNone},
			{PathPrefix: "/api", RequiredScopes: []string{"read"},
				Headers: map[string]string{"X-User": "sub", "X-Email": "email"}},
		},
		ForwardAuth: ForwardAuthConfig{TrustedProxies: []string{"127.0.0.0/8"}},
		Verifier:    idp.v,
		Metrics:     prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	tok := idp.token(b, testClaims{Sub: "alice", Scope: "read write", Email: "alice@example.com", JTI: "bench"})
	for range 100 {
		if _, err := idp.v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		header http.Header
	}{
		{"nginx", http.Header{"X-Original-Method": {"GET"}, "X-Original-Url": {"https://app.example/api/items?page=2"}}},
		{"traefik", traefik("GET", "app.example", "/api/items?page=2")},
	} {
		b.Run("http_"+tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://gw.example/oauth2/auth", nil)
			req.Header = with(tc.header, "Authorization", "Bearer "+tok, "Accept", "*/*", "User-Agent", "bench")
			req.RemoteAddr = "127.0.0.1:40000"
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.status = 0
				gw.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
	b.Run("grpc_check", func(b *testing.B) {
		srv := gw.AuthorizationServer()
		ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}})
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Scheme: "https", Host: "app.example", Path: "/api/items?page=2",
				Headers: map[string]string{"authorization": "Bearer " + tok, "accept": "*/*", "user-agent": "bench"}},
		}}}
		b.ReportAllocs()
		for b.Loop() {
			res, err := srv.Check(ctx, req)
			if err != nil || res.GetOkResponse() == nil {
				b.Fatalf("Check: %v %v", res, err)
			}
		}
	})
}
