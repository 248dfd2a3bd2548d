package propagate_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/propagate"
)

// BenchmarkRevocationToSET: from a durable revocation (Revoke returned:
// the entry is fsync'd) to its signed SET arriving at a loopback RFC 8935
// receiver (the target is added to the store, leased, the SET signed
// RS256 and POSTed), one revocation at a time. Reports p50 and p99 in ms
// (issue 13: p50 within 20 ms).
func BenchmarkRevocationToSET(b *testing.B) {
	arrived := make(chan time.Time, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		arrived <- time.Now()
		w.WriteHeader(http.StatusAccepted)
	}))
	b.Cleanup(srv.Close)
	dir := b.TempDir()
	s, err := cache.Open(cache.Config{Path: filepath.Join(dir, "r.db")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	keys, err := propagate.OpenKeyRing(filepath.Join(dir, propagate.KeyFile), nil)
	if err != nil {
		b.Fatal(err)
	}
	tx, err := propagate.NewTransmitter(propagate.TransmitterConfig{Issuer: "https://gw.example.com", Keys: keys,
		Receivers: []propagate.Receiver{{Endpoint: srv.URL + "/events", Audience: "app"}}})
	if err != nil {
		b.Fatal(err)
	}
	w, err := propagate.NewWorker(propagate.WorkerConfig{Store: s, SSF: tx})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		now := time.Now()
		if _, err := s.Revoke(context.Background(), cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: fmt.Sprintf("set-%d", i), RevokedAt: now, ExpiresAt: now.Add(time.Hour), Initiator: "admin:bench"}); err != nil {
			b.Fatal(err)
		}
		durable := time.Now()
		lat = append(lat, (<-arrived).Sub(durable))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
