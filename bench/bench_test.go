package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// TestMain lets the test binary serve the child roles (upstream, bare
// proxy) that the end-to-end test starts from os.Executable.
func TestMain(m *testing.M) {
	if ok, err := runRole(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestWriteStoreLoads proves the store file the benchmark writes directly
// is what cache.Open reads: every entry back, field for field. (The run
// itself also checks that the oidcgate binary reports the count written.)
func TestWriteStoreLoads(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	const iss = "http://127.0.0.1:1"
	for _, n := range []int{0, 1, 7, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			dir := t.TempDir()
			if err := writeStore(dir, iss, n, now); err != nil {
				t.Fatal(err)
			}
			s, err := cache.Open(cache.Config{Path: filepath.Join(dir, storeFile), Clock: clocktest.New(now)})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Len(); got != n {
				t.Fatalf("Len: got %d; want %d", got, n)
			}
			for i := range n {
				want := benchEntry(iss, now, i)
				got, ok := s.Get(want.Issuer, want.Kind, want.Value)
				if !ok {
					t.Fatalf("entry %d (%s): missing", i, want.Kind)
				}
				if !got.RevokedAt.Equal(want.RevokedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) ||
					got.Reason != want.Reason || got.Initiator != want.Initiator {
					t.Fatalf("entry %d: got %+v; want %+v", i, got, want)
				}
			}
		})
	}
}

func TestMedianPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		name string
		v    []float64
		want float64
	}{
		{"empty", nil, 0},
		{"odd", []float64{3, 1, 2}, 2},
		{"even", []float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.v); got != tc.want {
			t.Errorf("median %s: got %v; want %v", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(5), 99, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 50, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	} {
		if got := percentile(tc.d, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v): got %v; want %v", tc.d, tc.p, got, tc.want)
		}
	}
}

func TestLoadResultProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    loadResult
		want string
	}{
		{"clean", loadResult{Requests: 10}, ""},
		{"nothing", loadResult{}, "no requests completed"},
		{"non-2xx", loadResult{Requests: 10, Status: 2}, "2 non-2xx answers"},
		{"reused", loadResult{Requests: 10, Reused: 1, Read: 3}, "3 read errors, 1 reused tokens (cache hits)"},
	} {
		if got := strings.Join(tc.r.problems(), ", "); got != tc.want {
			t.Errorf("%s: got %q; want %q", tc.name, got, tc.want)
		}
	}
}

func TestGCLine(t *testing.T) {
	out := "gc 1 @0.010s 2%: 0.01+1.2+0.003 ms clock, 0.02+0.5/1.1/0+0.007 ms cpu, 4->4->2 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P\n" +
		`time=x level=WARN msg="something"` + "\n" +
		"gc 2 @1.5s 1%: 0.01+3+0.01 ms clock, 0.02+0/2/0+0.02 ms cpu, 210->215->104 MB, 220 MB goal, 0 MB stacks, 0 MB globals, 1 P (forced)\n"
	m := gcLine.FindAllStringSubmatch(out, -1)
	if len(m) != 2 {
		t.Fatalf("matches: got %d; want 2", len(m))
	}
	if got := m[1][1]; got != "1.5" {
		t.Errorf("start: got %s; want 1.5", got)
	}
	if got := m[1][4]; got != "104" {
		t.Errorf("live heap: got %s; want 104", got)
	}
}

// TestQuickRun runs the whole benchmark end to end with tiny counts: the
// built oidcgate binary, wrk, the upstream and bare proxy children, the
// revocation and memory parts, RESULTS.md and results.png, and nginx's
// auth_request in front of oidcgate's /oauth2/auth. oauth2-proxy (alone
// and behind nginx) runs only when OIDCGATE_BENCH_OAUTH2_PROXY names its
// binary; otherwise the output must say it was skipped.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("wrk not found (install it: apt-get install -y wrk): %v", err)
		}
		t.Skip("wrk not installed; skipping (set CI to make this fail)")
	}
	if nginxBin("nginx") == "" && os.Getenv("CI") != "" {
		t.Fatal("nginx not found (install it: apt-get install -y nginx-light)")
	}
	out := t.TempDir()
	o := options{
		quick: true, out: out, wrk: "wrk", redisServer: "redis-server", nginx: "nginx", pin: true,
		oauth2Proxy: os.Getenv("OIDCGATE_BENCH_OAUTH2_PROXY"), command: "go test ./bench",
		plan: &plan{conns: 4, warmup: 0, rounds: 1, round: time.Second, freshRound: time.Second,
			freshTokens: 120, entries: 1000, revocations: 5, memSizes: []int{0, 1000}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	if err := run(ctx, o, &log); err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	t.Log(log.String())
	md, err := os.ReadFile(filepath.Join(out, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"QUICK smoke run", "| upstream direct |", "| bare ReverseProxy |", "| oidcgate cached JWT |",
		"| oidcgate fresh JWT |", "5 of 5", "| 1000 |"}
	fwd := nginxBin("nginx") != ""
	if fwd {
		want = append(want, "| "+fwdOidcgate+" |", "; nginx/")
	} else {
		want = append(want, "not run (binary absent: apt-get install nginx-light)")
	}
	if o.oauth2Proxy == "" {
		want = append(want, "oauth2-proxy: not run")
	} else {
		want = append(want, "| oauth2-proxy |")
		if fwd {
			want = append(want, "| "+fwdOAuth2Proxy+" |", "| p99: "+fwdOidcgate+" ÷ "+fwdOAuth2Proxy+" |")
		}
	}
	for _, w := range want {
		if !strings.Contains(string(md), w) {
			t.Errorf("RESULTS.md: no %q in\n%s", w, md)
		}
	}
	png, err := os.ReadFile(filepath.Join(out, "results.png"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("results.png: got % x...; want a PNG", png[:min(8, len(png))])
	}
}
