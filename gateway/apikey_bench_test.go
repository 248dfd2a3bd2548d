package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
)

// BenchmarkProxyAPIKey compares, in one run, the same bearer route
// proxied with a cached JWT and with an API key (verified against the
// store on every request). The bar: key req/s >= 0.95 x JWT req/s.
func BenchmarkProxyAPIKey(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello from upstream\n")
	}))
	b.Cleanup(up.Close)
	idp := newTestIssuer(b)
	clk := clocktest.New(testNow)
	store, err := cache.Open(cache.Config{Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	keys, err := introspect.NewAPIKeys(introspect.KeysConfig{Store: store, Issuers: []string{idp.URL}, Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	key, id, hash, err := introspect.NewAPIKey()
	if err != nil {
		b.Fatal(err)
	}
	if err := store.PutKey(context.Background(), cache.KeyRecord{
		ID: id, Owner: "alice", Scopes: []string{"read", "write"}, Hash: hash,
		CreatedAt: testNow.Add(-time.Minute), ExpiresAt: testNow.Add(time.Hour),
	}); err != nil {
		b.Fatal(err)
	}
	gw, err := New(Config{
		Routes: []Route{{PathPrefix: "/api", Upstream: up.URL, RequiredScopes: []string{"read"}, APIKeys: true,
			Headers: map[string]string{"X-User": "sub", "X-Client": "client_id"}}},
		Verifier: idp.v,
		APIKeys:  keys,
		Metrics:  prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	b.Cleanup(srv.Close)
	tok := idp.token(b, testClaims{Sub: "alice", Scope: "read write", JTI: "bench"})
	for range 100 {
		if _, err := idp.v.Verify(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
	}
	// Alternate the two, so that a machine busy with other work slows
	// both alike; cpu-ns/op (this process's CPU time per request: client,
	// gateway and upstream) is the fair figure on a shared machine.
	for range 2 {
		b.Run("cached_jwt", func(b *testing.B) { runProxyCPU(b, srv.URL+"/api/items", "Bearer "+tok) })
		b.Run("api_key", func(b *testing.B) { runProxyCPU(b, srv.URL+"/api/items", "Bearer "+key) })
	}
}

// runProxyCPU is runProxy, also reporting the process's CPU time per
// request.
func runProxyCPU(b *testing.B, target, authorization string) {
	start := processCPU(b)
	runProxy(b, target, authorization)
	b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
}

// processCPU is the process's user and system CPU time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
