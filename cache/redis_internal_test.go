package cache

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache/redistest"
)

func openRedisAt(t *testing.T, srv *redistest.Server, maxLen int64) *Redis {
	t.Helper()
	r, err := OpenRedis(RedisConfig{
		Redis: RedisOptions{Addrs: []string{srv.Addr}, KeyPrefix: "trim", StreamMaxLen: maxLen},
		Local: Config{Path: filepath.Join(t.TempDir(), "m.db")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// TestRedisTrimmedStream checks the follower's resume decision: after a
// lost connection it resumes from its last stream id only when nothing
// after that id was trimmed; otherwise it scans everything.
func TestRedisTrimmedStream(t *testing.T) {
	for _, tt := range []struct {
		name       string
		maxLen     int64
		wantResync bool
	}{{"not trimmed", 1_000_000, false}, {"trimmed", 10, true}} {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			a, b := openRedisAt(t, srv, tt.maxLen), openRedisAt(t, srv, tt.maxLen)
			ctx := context.Background()
			from, err := b.sync(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			const n = 600 // several stream nodes of 100, so ~ trimming happens
			now := time.Now()
			for i := range n {
				e := Entry{Issuer: "https://i", Kind: KindJTI, Value: fmt.Sprint("v", i), RevokedAt: now, ExpiresAt: now.Add(time.Hour)}
				if _, err := a.Revoke(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			if st := a.Status(); !st.Reachable {
				t.Fatalf("A could not write to Redis: %s", st.LastError)
			}
			complete, err := b.streamComplete(ctx, from)
			if err != nil {
				t.Fatal(err)
			}
			if complete == tt.wantResync {
				t.Fatalf("streamComplete = %v; want %v", complete, !tt.wantResync)
			}
			before := b.resyncs.Load()
			if _, err := b.sync(ctx, &from); err != nil {
				t.Fatal(err)
			}
			if got := b.resyncs.Load() - before; (got == 1) != tt.wantResync {
				t.Errorf("full scans on resume = %d; want resync %v", got, tt.wantResync)
			}
			if tt.wantResync && b.Len() != n {
				t.Errorf("after the full scan B.Len() = %d; want %d", b.Len(), n)
			}
		})
	}
}

func TestRedisValueRoundTrip(t *testing.T) {
	for _, r := range validRows() {
		got, err := decodeRedis(string(encodeKey(r.kind, r.issuer, r.value)), redisValue(r))
		if err != nil {
			t.Fatalf("decodeRedis(%+v): %v", r, err)
		}
		if got != r {
			t.Errorf("decodeRedis = %+v; want %+v", got, r)
		}
	}
	for _, v := range []int64{-1 << 63, -1, 0, 1, 1<<63 - 1} {
		s := string(appendSortable(nil, v))
		if got, err := parseSortable(s); err != nil || got != v {
			t.Errorf("parseSortable(%q) = %d, %v; want %d", s, got, err, v)
		}
	}
	if a, b := string(appendSortable(nil, -5)), string(appendSortable(nil, 3)); a >= b {
		t.Errorf("sortable(-5) = %q not before sortable(3) = %q", a, b)
	}
}

func FuzzDecodeRedis(f *testing.F) {
	for _, r := range validRows() {
		f.Add(string(encodeKey(r.kind, r.issuer, r.value)), redisValue(r))
	}
	f.Add("", "")
	f.Add("\x01\x00\x00x", "0000000000000000000100000000000000000002\x00\x00\x00\x00")
	f.Fuzz(func(t *testing.T, k, v string) {
		r, err := decodeRedis(k, v)
		if err != nil {
			return
		}
		if redisValue(r) != v || string(encodeKey(r.kind, r.issuer, r.value)) != k {
			t.Errorf("decodeRedis accepted a non-canonical record %q %q", k, v)
		}
	})
}

// BenchmarkRedisResync200k measures a full resynchronisation (SCAN + MGET
// + decode + merge into an empty mirror) of 200,000 entries; entries-per-s
// extrapolates to the 1M target.
func BenchmarkRedisResync200k(b *testing.B) {
	const n = 200_000
	srv := redistest.Start(b)
	fill, err := OpenRedis(RedisConfig{
		Redis: RedisOptions{Addr: srv.Addr, KeyPrefix: "resync"},
		Local: Config{Path: filepath.Join(b.TempDir(), "fill.db")},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer fill.Close()
	now := time.Now()
	rows := make([]row, n)
	for i := range rows {
		rows[i] = row{kind: codeJTI, issuer: "https://idp.example.com", value: fmt.Sprintf("resync-%08d", i),
			revokedAt: now.UnixNano(), expiresAt: now.Add(time.Hour).UnixNano(), reason: "bench", initiator: "admin:b"}
	}
	ctx := context.Background()
	if err := fill.keys.publishAll(ctx, fill.client, rows); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		r, err := OpenRedis(RedisConfig{
			Redis: RedisOptions{Addr: srv.Addr, KeyPrefix: "resync"},
			Local: Config{Path: filepath.Join(b.TempDir(), "m.db")},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := r.fullScan(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if r.Len() != n {
			b.Fatalf("Len() = %d; want %d", r.Len(), n)
		}
		r.persist.take() // the file is not part of the measured sync
		_ = r.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
