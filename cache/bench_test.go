package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/oidcgate/oidcgate/clock/clocktest"
)

const benchN = 1_000_000

var benchT0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

var benchIssuers = []string{
	"https://login.example.com/realms/employees",
	"https://login.example.com/realms/customers",
	"https://accounts.example.org",
	"https://idp.partner.example.net/oauth2/default",
}

// benchValue is a UUID-like 36-character value, the usual shape of jti, sid
// and session ids; seed separates revoked values from probed ones.
func benchValue(seed uint64, i int) string {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	return fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xfff, r.Uint32()&0xfff, r.Uint64()&0xffffffffffff)
}

// benchRow is the i-th synthetic entry: kinds and issuers in rotation.
func benchRow(i int) row {
	k := kindCode(i%5) + codeJTI
	iss := benchIssuers[i/5%len(benchIssuers)]
	if k == codeSession {
		iss = ""
	}
	return row{
		issuer:    iss,
		value:     benchValue(1, i),
		revokedAt: benchT0.Add(time.Duration(i) * time.Millisecond).UnixNano(),
		expiresAt: benchT0.Add(24 * time.Hour).UnixNano(),
		reason:    "backchannel_logout",
		initiator: iss,
		kind:      k,
	}
}

// fill bulk-inserts n synthetic entries the way Open loads a file.
func fill(tb testing.TB, s *Store, n int) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		s.idx.put(benchRow(i))
	}
	s.idx.rebuildFilter()
	if got := s.Len(); got != n {
		tb.Fatalf("Len() = %d; want %d", got, n)
	}
}

func openBench(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	s, err := Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// probeSet is what BenchmarkIsRevoked1M presents: credentials are built per
// probe from substrings of one packed string, so, as in a request whose token
// was just parsed, the credential's bytes are in cache while the store's are
// not. 8192 credentials of four probes reach every line of the filter.
type probeSet struct {
	packed string // 8192 groups of four 36-byte values
	want   bool
}

const (
	probes   = 8192
	valueLen = 36
)

func (p *probeSet) credential(c *Credential, i int) {
	o := (i % probes) * 4 * valueLen
	c.Issuer = benchIssuers[i%len(benchIssuers)]
	c.JTI = p.packed[o : o+valueLen]
	c.SID = p.packed[o+valueLen : o+2*valueLen]
	c.Sub = p.packed[o+2*valueLen : o+3*valueLen]
	c.ClientID = p.packed[o+3*valueLen : o+4*valueLen]
	c.IssuedAt = benchT0
}

// newProbeSet packs values not in the store, except that field revoked (0
// jti, 2 sub; -1 none) holds a stored value of that kind and the issuer the
// credential will carry; n is how many entries fill stored.
func newProbeSet(revoked, n int) *probeSet {
	var sb strings.Builder
	for i := range probes {
		for f := range 4 {
			v := benchValue(uint64(2+f), i)
			if f == revoked {
				// entry j has kind j%5 and issuer benchIssuers[j/5%4].
				j := (rand.IntN(n/20)*4+i%len(benchIssuers))*5 + f
				r := benchRow(j)
				if r.issuer != benchIssuers[i%len(benchIssuers)] || r.kind != kindCode(f)+codeJTI {
					panic("bad benchmark row")
				}
				v = r.value
			}
			sb.WriteString(v)
		}
	}
	return &probeSet{packed: sb.String(), want: revoked >= 0}
}

// benchSizes are the store sizes of the index benchmarks: 1M and 10M
// entries. With -short the 10M size is a smoke run: filled and probed
// once, so that its code path is exercised without the minutes a full
// run takes.
var benchSizes = []int{benchN, 10 * benchN}

// sizeName names a benchmark size: "1M", "10M".
func sizeName(n int) string { return fmt.Sprintf("%dM", n/1_000_000) }

// BenchmarkIsRevoked probes stores of 1M and 10M entries with credentials
// that have Issuer, JTI, SID, Sub and ClientID set. miss: not revoked (four
// filter probes); hit-jti and hit-sub: revoked by the first and the third
// probe.
func BenchmarkIsRevoked(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			s := openBench(b, Config{})
			fill(b, s, n)
			for _, bc := range []struct {
				name string
				set  *probeSet
			}{
				{"miss", newProbeSet(-1, n)},
				{"hit-jti", newProbeSet(0, n)},
				{"hit-sub", newProbeSet(2, n)},
			} {
				b.Run(bc.name, func(b *testing.B) {
					b.ReportAllocs()
					var c Credential
					i := 0
					for b.Loop() {
						bc.set.credential(&c, i)
						if s.IsRevoked(&c) != bc.set.want {
							b.Fatalf("IsRevoked(%+v) = %t", c, !bc.set.want)
						}
						i++
						if testing.Short() && n > benchN {
							break
						}
					}
				})
				if testing.Short() {
					continue
				}
				b.Run(bc.name+"-parallel", func(b *testing.B) {
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						var c Credential
						i := rand.IntN(probes)
						for pb.Next() {
							bc.set.credential(&c, i)
							if s.IsRevoked(&c) != bc.set.want {
								b.Errorf("IsRevoked(%+v) = %t", c, !bc.set.want)
								return
							}
							i++
						}
					})
				})
			}
		})
	}
}

// BenchmarkHeap reports the heap a store of 1M and of 10M entries holds
// (after GC), values included, and the bytes per entry.
func BenchmarkHeap(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			var mb float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				s, err := Open(Config{})
				if err != nil {
					b.Fatal(err)
				}
				fill(b, s, n)
				runtime.GC()
				runtime.ReadMemStats(&after)
				mb = float64(after.HeapAlloc-before.HeapAlloc) / 1e6
				runtime.KeepAlive(s)
			}
			b.ReportMetric(mb, "MB-heap")
			b.ReportMetric(mb*1e6/float64(n), "B/entry")
		})
	}
}

// BenchmarkGC measures what the garbage collector spends on a store of 1M
// and of 10M entries: ns/op is one complete forced collection (its mark
// work grows with the pointers the heap holds), and pause-p99-µs /
// pause-max-µs are the stop-the-world pauses of those collections, read
// from the runtime's /sched/pauses/total/gc:seconds histogram.
func BenchmarkGC(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			s := openBench(b, Config{})
			fill(b, s, n)
			runtime.GC()
			before := gcPauses()
			for b.Loop() {
				runtime.GC()
				if testing.Short() && n > benchN {
					break
				}
			}
			b.StopTimer()
			p99, max := pauseQuantiles(before, gcPauses(), 0.99)
			b.ReportMetric(float64(p99.Nanoseconds())/1e3, "pause-p99-µs")
			b.ReportMetric(float64(max.Nanoseconds())/1e3, "pause-max-µs")
			runtime.KeepAlive(s)
		})
	}
}

const pauseMetric = "/sched/pauses/total/gc:seconds"

// gcPauses reads the runtime's histogram of GC stop-the-world pauses.
func gcPauses() *metrics.Float64Histogram {
	m := []metrics.Sample{{Name: pauseMetric}}
	metrics.Read(m)
	return m[0].Value.Float64Histogram()
}

// pauseQuantiles returns the q-quantile and the largest of the pauses
// counted between two readings of gcPauses (bucket upper bounds).
func pauseQuantiles(before, after *metrics.Float64Histogram, q float64) (quantile, largest time.Duration) {
	var total uint64
	counts := make([]uint64, len(after.Counts))
	for i := range counts {
		counts[i] = after.Counts[i] - before.Counts[i]
		total += counts[i]
	}
	if total == 0 {
		return 0, 0
	}
	upper := func(i int) time.Duration {
		v := after.Buckets[i+1]
		if math.IsInf(v, 1) {
			v = after.Buckets[i]
		}
		return time.Duration(v * 1e9)
	}
	var seen uint64
	want := uint64(math.Ceil(q * float64(total)))
	for i, c := range counts {
		if c == 0 {
			continue
		}
		seen += c
		if seen >= want && quantile == 0 {
			quantile = upper(i)
		}
		largest = upper(i)
	}
	return quantile, largest
}

// writeBenchFile writes n synthetic entries to a bbolt file in one
// transaction, in key order.
func writeBenchFile(tb testing.TB, path string, n int) {
	tb.Helper()
	type kv struct{ k, v []byte }
	recs := make([]kv, n)
	for i := range recs {
		r := benchRow(i)
		recs[i] = kv{encodeKey(r.kind, r.issuer, r.value), encodeValue(r)}
	}
	slices.SortFunc(recs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucket(bucketName)
		if err != nil {
			return err
		}
		bk.FillPercent = 1 // appending in order
		for _, r := range recs {
			if err := bk.Put(r.k, r.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err := errors.Join(err, db.Close()); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkReload1M opens (loads) and closes a bbolt file of 1M entries.
func BenchmarkReload1M(b *testing.B) {
	path := filepath.Join(b.TempDir(), "revocations.db")
	writeBenchFile(b, path, benchN)
	clk := clocktest.New(benchT0)
	b.ReportAllocs()
	for b.Loop() {
		s, err := Open(Config{Path: path, Clock: clk})
		if err != nil {
			b.Fatal(err)
		}
		if got := s.Len(); got != benchN {
			b.Fatalf("Len() = %d; want %d", got, benchN)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/reload")
}

// BenchmarkRevokeParallel measures durable revocations per second from many
// concurrent callers (bbolt: group-committed, fsync'd before return).
func BenchmarkRevokeParallel(b *testing.B) {
	for _, bc := range []struct {
		name string
		path func() string
	}{
		{"memory", func() string { return "" }},
		{"bbolt", func() string { return filepath.Join(b.TempDir(), "revocations.db") }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openBench(b, Config{Path: bc.path()})
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Revoke(context.Background(), benchRow(int(n.Add(1))).entry()); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "revocations/s")
		})
	}
}

// BenchmarkRevoke measures the latency of one durable revocation with no
// concurrent callers.
func BenchmarkRevoke(b *testing.B) {
	s := openBench(b, Config{Path: filepath.Join(b.TempDir(), "revocations.db")})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Revoke(context.Background(), benchRow(i).entry()); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
