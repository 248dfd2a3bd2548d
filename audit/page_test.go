package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/oidcgate/oidcgate/cache"
)

// pageAll walks every page of q from the newest and returns the seqs seen,
// in order, and the number of calls made.
func pageAll(t *testing.T, a *Log, q Query) ([]uint64, int) {
	t.Helper()
	var seqs []uint64
	var before uint64
	for calls := 1; ; calls++ {
		p, err := a.Page(context.Background(), q, before)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Records) > q.Limit {
			t.Fatalf("page of %d records; limit %d", len(p.Records), q.Limit)
		}
		for _, r := range p.Records {
			seqs = append(seqs, r.Seq)
		}
		if p.Next == 0 {
			return seqs, calls
		}
		if before != 0 && p.Next >= before {
			t.Fatalf("cursor did not move: %d after %d", p.Next, before)
		}
		before = p.Next
		if calls > 1000 {
			t.Fatal("no end")
		}
	}
}

func descending(from, to uint64, keep func(uint64) bool) []uint64 {
	var out []uint64
	for s := from; s >= to; s-- {
		if keep == nil || keep(s) {
			out = append(out, s)
		}
	}
	return out
}

func TestPage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := openTestAudit(t, Config{Path: path, MaxBytes: 4 << 10})
	const n = 120
	for i := range n {
		if err := a.Append(context.Background(), testRecord(i%7)); err != nil {
			t.Fatal(err)
		}
	}
	if rotated, _ := RotatedFiles(path); len(rotated) < 3 {
		t.Fatalf("%d rotated files; the test wants pages across several", len(rotated))
	}
	// Record i (seq i+1) is for user-(i%7).
	user3 := func(s uint64) bool { return (s-1)%7 == 3 }
	tests := []struct {
		name string
		q    Query
		want []uint64
	}{
		{"all, pages of 7", Query{Limit: 7}, descending(n, 1, nil)},
		{"all, pages of 1", Query{Limit: 1}, descending(n, 1, nil)},
		{"all, one page", Query{Limit: 1000}, descending(n, 1, nil)},
		{"sub filter", Query{Limit: 4, Sub: "user-3"}, descending(n, 1, user3)},
		{"sub filter, scan bound 5", Query{Limit: 4, Sub: "user-3", Scan: 5}, descending(n, 1, user3)},
		{"nothing matches, scan bound 10", Query{Limit: 4, Sub: "nobody", Scan: 10}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, calls := pageAll(t, a, tt.q)
			if !slices.Equal(got, tt.want) {
				t.Errorf("seqs: got %v; want %v", got, tt.want)
			}
			if tt.q.Scan > 0 && calls < n/tt.q.Scan {
				t.Errorf("%d calls with a scan bound of %d over %d records; want at least %d", calls, tt.q.Scan, n, n/tt.q.Scan)
			}
		})
	}
	t.Run("cursor in the middle of a file", func(t *testing.T) {
		p, err := a.Page(context.Background(), Query{Limit: 3}, 50)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, r := range p.Records {
			got = append(got, r.Seq)
		}
		if !slices.Equal(got, []uint64{49, 48, 47}) || p.Next != 47 {
			t.Errorf("got %v next %d; want [49 48 47] next 47", got, p.Next)
		}
	})
	t.Run("cursor past everything", func(t *testing.T) {
		p, err := a.Page(context.Background(), Query{Limit: 3}, 1)
		if err != nil || len(p.Records) != 0 || p.Next != 0 {
			t.Errorf("got %+v, %v; want an empty last page", p, err)
		}
	})
}

// TestPageRotationBetweenCalls: a cursor taken before a rotation still
// names the same place after it.
func TestPageRotationBetweenCalls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := openTestAudit(t, Config{Path: path, MaxBytes: 8 << 10})
	add := func(from, to int) {
		for i := from; i < to; i++ {
			if err := a.Append(context.Background(), testRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(0, 10)
	p, err := a.Page(context.Background(), Query{Limit: 4}, 0)
	if err != nil || p.Next != 7 {
		t.Fatalf("first page: %+v, %v; want next 7", p, err)
	}
	before, _ := RotatedFiles(path)
	add(10, 60)
	if after, _ := RotatedFiles(path); len(after) == len(before) {
		t.Fatal("no rotation happened")
	}
	p, err = a.Page(context.Background(), Query{Limit: 4}, p.Next)
	if err != nil || len(p.Records) != 4 || p.Records[0].Seq != 6 || p.Records[3].Seq != 3 {
		t.Errorf("second page: %+v, %v; want seqs 6 to 3", p.Records, err)
	}
}

// TestPageTornAndLongLines: a torn last line is not returned, nor is a
// line too long to be a record; the records around them are.
func TestPageTornAndLongLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	lines := writeChain(t, path, 5)
	big := make([]byte, maxAuditLine+pageBlock/2)
	for i := range big {
		big[i] = 'x'
	}
	var data []byte
	for i, l := range lines {
		data = append(append(data, l...), '\n')
		if i == 2 {
			data = append(append(data, big...), '\n')
		}
	}
	data = append(data, `{"seq":6,"time":"2026`...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a := &Log{cfg: Config{Path: path}}
	for _, limit := range []int{1, 2, 100} {
		got, _ := pageAll(t, a, Query{Limit: limit})
		if !slices.Equal(got, []uint64{5, 4, 3, 2, 1}) {
			t.Errorf("limit %d: got %v; want [5 4 3 2 1]", limit, got)
		}
	}
}

func BenchmarkPage(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	for i := 1; i <= n; i++ {
		fmt.Fprintf(f, `{"seq":%d,"time":"2026-03-01T12:00:00Z","event":"revocation","trigger":"admin","initiator":"admin:ops","targets":[{"issuer":"https://idp.example","kind":"%s","value":"user-%d"}],"prev":"%064d"}`+"\n", i, cache.KindSub, i, 0)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	a := &Log{cfg: Config{Path: path}}
	for _, bc := range []struct {
		name   string
		q      Query
		before uint64
	}{
		{"newest", Query{Limit: 50}, 0},
		{"middle", Query{Limit: 50}, n / 2},
		{"oldest", Query{Limit: 50}, 60},
		{"sub, no match", Query{Limit: 50, Sub: "nobody"}, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := a.Page(context.Background(), bc.q, bc.before); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
