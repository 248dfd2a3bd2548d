package propagate_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/propagate"
)

// loopbackHydra is a loopback stand-in for Hydra's admin API: it answers
// every call 204 after delay and notes when each subject's first call
// arrived and how many calls were open at once.
type loopbackHydra struct {
	srv   *httptest.Server
	delay time.Duration

	mu      sync.Mutex
	first   map[string]time.Time
	calls   int
	open    int
	maxOpen int
	arrived chan string
}

func newLoopbackHydra(b *testing.B, delay time.Duration) *loopbackHydra {
	h := &loopbackHydra{delay: delay, first: map[string]time.Time{}, arrived: make(chan string, 1<<16)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		sub := r.URL.Query().Get("subject")
		h.mu.Lock()
		h.calls++
		h.open++
		h.maxOpen = max(h.maxOpen, h.open)
		_, seen := h.first[sub]
		if !seen {
			h.first[sub] = now
		}
		h.mu.Unlock()
		if !seen {
			h.arrived <- sub
		}
		time.Sleep(h.delay)
		h.mu.Lock()
		h.open--
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(h.srv.Close)
	return h
}

func benchWorker(b *testing.B, h *loopbackHydra, concurrency int) *cache.Store {
	s, err := cache.Open(cache.Config{Path: filepath.Join(b.TempDir(), "r.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	cfg := propagate.Config{Type: propagate.TypeHydra, URL: h.srv.URL}
	auth, err := propagate.New(cfg, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	w, err := propagate.NewWorker(propagate.WorkerConfig{
		Store:       s,
		Authorities: []propagate.Binding{{Issuer: iss, Config: cfg, Authority: auth}},
		Concurrency: concurrency,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return s
}

// BenchmarkRevocationToAuthorityCall: from a durable revocation (Revoke
// returned: the entry is fsync'd) to the session authority call arriving
// at a loopback Hydra admin API, one revocation at a time. Reports p50 and
// p99 in ms.
func BenchmarkRevocationToAuthorityCall(b *testing.B) {
	h := newLoopbackHydra(b, 0)
	s := benchWorker(b, h, 16)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		sub := fmt.Sprintf("lat-%d", i)
		now := time.Now()
		if _, err := s.Revoke(context.Background(), cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: sub, RevokedAt: now, ExpiresAt: now.Add(time.Hour), Initiator: "admin:bench"}); err != nil {
			b.Fatal(err)
		}
		durable := time.Now()
		for got := range h.arrived {
			if got == sub {
				break
			}
		}
		h.mu.Lock()
		lat = append(lat, h.first[sub].Sub(durable))
		h.mu.Unlock()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkBurst10k: 10,000 sub revocations at once. Every authority call
// completes (calls = 2 per subject at Hydra: login and consent sessions)
// and never more than the configured concurrency (16) is open at once.
func BenchmarkBurst10k(b *testing.B) {
	const n, concurrency = 10000, 16
	for range b.N {
		h := newLoopbackHydra(b, time.Millisecond)
		s := benchWorker(b, h, concurrency)
		start := time.Now()
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 64 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
					now := time.Now()
					if _, err := s.Revoke(context.Background(), cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: fmt.Sprintf("burst-%d", i), RevokedAt: now, ExpiresAt: now.Add(time.Hour), Initiator: "admin:bench"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		deadline := time.Now().Add(5 * time.Minute)
		for {
			h.mu.Lock()
			calls, subjects := h.calls, len(h.first)
			h.mu.Unlock()
			if calls >= 2*n && subjects == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("after 5 minutes: %d calls for %d subjects; want %d for %d", calls, subjects, 2*n, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		elapsed := time.Since(start)
		h.mu.Lock()
		if h.maxOpen > concurrency {
			b.Fatalf("%d calls open at once; want at most %d", h.maxOpen, concurrency)
		}
		b.ReportMetric(float64(h.calls), "calls")
		b.ReportMetric(float64(h.maxOpen), "max-open")
		b.ReportMetric(elapsed.Seconds(), "burst-s")
		h.mu.Unlock()
	}
}
