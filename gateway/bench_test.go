package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// BenchmarkProxy compares a bare ReverseProxy with the Gateway on a bearer
// route with a cached verdict of the real introspect.Verifier (revocation
// still checked against the real store on every request), both over real loopback HTTP to the same
// upstream, driven by a keep-alive client. Both proxies use the same
// transport settings (newTransport), so the difference is the gateway's own
// work: routing, header parsing, verification, identity headers, metrics.
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello from upstream\n")
	}))
	b.Cleanup(up.Close)
	upURL, err := url.Parse(up.URL)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("bare", func(b *testing.B) {
		srv := httptest.NewServer(&httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(upURL) },
			Transport: newTransport(),
		})
		b.Cleanup(srv.Close)
		runProxy(b, srv.URL+"/api/items", "")
	})

	b.Run("oidcgate_cached_bearer", func(b *testing.B) {
		idp := newTestIssuer(b)
		gw, err := New(Config{
			Routes: []Route{
				{PathPrefix: "/public", Upstream: up.URL, Auth: AuthNone},
				{PathPrefix: "/api", Upstream: up.URL, RequiredScopes: []string{"read"},
					Headers: map[string]string{"X-User": "sub", "X-Email": "email"}},
			},
			Verifier: idp.v,
			Metrics:  prometheus.NewRegistry(),
		})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(gw)
		b.Cleanup(srv.Close)
		tok := idp.token(b, testClaims{Sub: "alice", Scope: "read write", Email: "alice@example.com", JTI: "bench"})
		// Warm the verified-result cache (ristretto admits asynchronously:
		// verify until a second call is a hit).
		for range 100 {
			if _, err := idp.v.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
		runProxy(b, srv.URL+"/api/items", "Bearer "+tok)
	})
}

func runProxy(b *testing.B, target, authorization string) {
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		DisableCompression:  true,
	}}
	b.Cleanup(client.CloseIdleConnections)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodGet, target, nil)
			if err != nil {
				b.Error(err)
				return
			}
			if authorization != "" {
				req.Header.Set("Authorization", authorization)
			}
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status: got %d; want 200", res.StatusCode)
				return
			}
		}
	})
}

// BenchmarkSessionOpen measures what every browser request pays for its
// session: reading the cookie from the header, opening it (base64url,
// AES-256-GCM, decoding) and the revocation check against a real store
// holding 10,000 entries, with a realistic RS256 ID token inside.
func BenchmarkSessionOpen(b *testing.B) {
	store, err := cache.Open(cache.Config{Clock: clocktest.New(testNow)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	for i := range 10_000 {
		if _, err := store.Revoke(context.Background(), cache.Entry{
			Issuer: "https://idp.example", Kind: cache.KindSID, Value: fmt.Sprint("sid-", i),
			RevokedAt: testNow, ExpiresAt: testNow.Add(time.Hour),
		}); err != nil {
			b.Fatal(err)
		}
	}
	c := fuzzCookies(b)
	s := &session{ID: newSessionID(), Issuer: "https://idp.example", Subject: "248289761001", SID: "08a5019c-17e1-4977-8f42-65a12843ea02",
		Email: "janedoe@example.com", Name: "Jane Doe", IDToken: strings.Repeat("x", 900),
		IssuedAt: testNow, ExpiresAt: testNow.Add(24 * time.Hour)}
	h := http.Header{"Cookie": {"_ga=GA1.1.123; " + DefaultCookieName + "=" + c.seal.seal(s.marshal(), aadSession) + "; theme=dark"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, _ := c.read(h)
		got, ok := c.open(v, false)
		if !ok {
			b.Fatal("does not open")
		}
		cred := got.credential()
		if store.IsRevoked(&cred) {
			b.Fatal("revoked")
		}
	}
}
