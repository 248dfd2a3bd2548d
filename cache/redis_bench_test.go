package cache_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/cache/redistest"
)

// BenchmarkRedisPropagation measures, per revocation, the time from
// "Revoke returned on replica A" to "replica B refuses the credential"
// (p50-ms, p99-ms), and from "Revoke called on A" to the same
// (call-p50-ms, call-p99-ms: A's fsync'd write included), with both
// replicas on one redis-server.
func BenchmarkRedisPropagation(b *testing.B) {
	srv := redistest.Start(b)
	a := startBenchReplica(b, srv)
	r := startBenchReplica(b, srv)
	ctx := context.Background()
	now := time.Now()
	lat := make([]time.Duration, 0, b.N)
	full := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e := cache.Entry{Issuer: "https://idp.example.com", Kind: cache.KindJTI, Value: fmt.Sprint("bench-", i), RevokedAt: now, ExpiresAt: now.Add(time.Hour)}
		c := &cache.Credential{Issuer: e.Issuer, JTI: e.Value}
		called := time.Now()
		if _, err := a.Revoke(ctx, e); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		deadline := start.Add(syncTimeout)
		for !r.IsRevoked(c) {
			if time.Now().After(deadline) {
				b.Fatalf("revocation %d not propagated within %s", i, syncTimeout)
			}
			runtime.Gosched()
		}
		done := time.Now()
		lat = append(lat, done.Sub(start))
		full = append(full, done.Sub(called))
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
	}
	slices.Sort(lat)
	slices.Sort(full)
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(pct(full, 0.50), "call-p50-ms")
	b.ReportMetric(pct(full, 0.99), "call-p99-ms")
}

func startBenchReplica(b *testing.B, srv *redistest.Server) *cache.Redis {
	b.Helper()
	s, err := cache.OpenRedis(cache.RedisConfig{
		Redis: cache.RedisOptions{Addrs: []string{srv.Addr}, KeyPrefix: "bench"},
		Local: cache.Config{Path: b.TempDir() + "/mirror.db"},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
		_ = s.Close()
	})
	deadline := time.Now().Add(syncTimeout)
	for !s.Status().InSync {
		if time.Now().After(deadline) {
			b.Fatal("replica not in sync")
		}
		time.Sleep(time.Millisecond)
	}
	return s
}
