package audit

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAuditAppend measures durable appends (write + fsync) from
// parallel appenders, batched by group commit.
func BenchmarkAuditAppend(b *testing.B) {
	a, err := Open(Config{Path: filepath.Join(b.TempDir(), "audit.jsonl"), Replica: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	rec := testRecord(1)
	b.ReportAllocs()
	b.SetParallelism(16)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := a.Append(context.Background(), rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
