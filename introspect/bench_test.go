package introspect

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// benchStore is the real revocation store holding n entries of each
// issued-before kind and of jti, none of which revoke the benchmark token.
func benchStore(b *testing.B, n int) *cache.Store {
	b.Helper()
	s, err := cache.Open(cache.Config{Clock: clocktest.New(t0)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	for i := range n {
		for _, k := range []cache.Kind{cache.KindJTI, cache.KindSub, cache.KindSID} {
			e := cache.Entry{Issuer: testIssuer, Kind: k, Value: fmt.Sprintf("v-%d", i), RevokedAt: t0, ExpiresAt: t0.Add(time.Hour)}
			if _, err := s.Revoke(context.Background(), e); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s
}

// BenchmarkVerifyCached is the hot path: a cache hit plus the expiry and
// revocation checks against the real store.
func BenchmarkVerifyCached(b *testing.B) {
	store := benchStore(b, 10_000)
	f := newFixture(b, func(c *Config) { c.Revocations = store })
	tok := signJWS(b, hdr("RS256", "rs"), baseClaims(), "RS256", f.keys.rsa1)
	ctx := context.Background()
	if _, err := f.v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	f.v.results.Wait()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := f.v.Verify(ctx, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkVerifyUncached is a full verification (parse, key lookup,
// signature, claims, revocation) without the result cache.
func BenchmarkVerifyUncached(b *testing.B) {
	f := newFixture(b, func(c *Config) { c.Revocations = benchStore(b, 10_000) })
	k := f.keys
	for _, tc := range []struct {
		alg, kid string
		key      any
	}{
		{"RS256", "rs", k.rsa1},
		{"PS256", "ps", k.rsa2},
		{"ES256", "es", k.ec256},
		{"EdDSA", "ed", k.ed},
	} {
		tok := signJWS(b, hdr(tc.alg, tc.kid), baseClaims(), tc.alg, tc.key)
		ctx := context.Background()
		b.Run(tc.alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, err := f.v.verify(ctx, tok)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := f.v.admit(&result{claims: c, cred: c.Credential()}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
