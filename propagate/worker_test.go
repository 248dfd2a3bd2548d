package propagate_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/cache/redistest"
	"github.com/oidcgate/oidcgate/propagate"
)

const iss = "https://sso.example.com"

// fakeAuthority records its calls; answer decides each call's error.
type fakeAuthority struct {
	name   string
	answer func(op, value string, n int) error

	mu       sync.Mutex
	calls    []string
	count    map[string]int
	inFlight int
	maxFlow  int
}

func newFake(answer func(op, value string, n int) error) *fakeAuthority {
	return &fakeAuthority{name: "fake " + iss, answer: answer, count: map[string]int{}}
}

func (f *fakeAuthority) Name() string { return f.name }

func (f *fakeAuthority) do(ctx context.Context, op, v string) error {
	f.mu.Lock()
	f.calls = append(f.calls, op+" "+v)
	f.count[op+" "+v]++
	n := f.count[op+" "+v]
	f.inFlight++
	f.maxFlow = max(f.maxFlow, f.inFlight)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	if f.answer == nil {
		return nil
	}
	if err := f.answer(op, v, n); err != nil {
		return err
	}
	return ctx.Err()
}

func (f *fakeAuthority) EndUser(ctx context.Context, id string) error {
	return f.do(ctx, "user", id)
}
func (f *fakeAuthority) EndSession(ctx context.Context, sid string) error {
	return f.do(ctx, "session", sid)
}
func (f *fakeAuthority) RevokeClient(ctx context.Context, id string) error {
	return f.do(ctx, "client", id)
}

func (f *fakeAuthority) callsOf(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count[key]
}

func (f *fakeAuthority) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// memAudit collects the audited targets.
type memAudit struct {
	mu sync.Mutex
	ts []cache.Target
}

func (m *memAudit) Target(_ context.Context, t cache.Target) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ts = append(m.ts, t)
	return nil
}

func (m *memAudit) all() []cache.Target {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ts)
}

func openStore(t *testing.T, path string) *cache.Store {
	t.Helper()
	s, err := cache.Open(cache.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// run starts a worker over s and stops it at the test's end.
func run(t *testing.T, cfg propagate.WorkerConfig) *propagate.Worker {
	t.Helper()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	w, err := propagate.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

func revoke(t *testing.T, s interface {
	Revoke(context.Context, cache.Entry) (cache.Entry, error)
}, kind cache.Kind, value, initiator string) cache.Entry {
	t.Helper()
	now := time.Now()
	e, err := s.Revoke(context.Background(), cache.Entry{
		Issuer: iss, Kind: kind, Value: value, RevokedAt: now, ExpiresAt: now.Add(time.Hour), Initiator: initiator,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// waitFinal waits until every target of the entry is final and returns them.
func waitFinal(t *testing.T, s propagate.Store, kind cache.Kind, value string) []cache.Target {
	t.Helper()
	type lister interface {
		Targets(ctx context.Context, issuer string, kind cache.Kind, value string) ([]cache.Target, error)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ts, err := s.(lister).Targets(context.Background(), iss, kind, value)
		if err != nil {
			t.Fatal(err)
		}
		final := len(ts) > 0
		for _, x := range ts {
			final = final && x.State.Final()
		}
		if final {
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets of %s %s never final: %+v", kind, value, ts)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestWorkerOutcomes(t *testing.T) {
	fake := newFake(func(op, v string, n int) error {
		switch v {
		case "flaky":
			if n < 3 {
				return fmt.Errorf("wrapped: %w", &propagate.CallError{Op: "POST /x", Status: 503, Temporary: true})
			}
		case "ghost":
			return propagate.ErrNotFound
		case "sid-x":
			return propagate.ErrUnsupported
		case "forbidden":
			return &propagate.CallError{Op: "POST /x", Status: 403}
		case "down":
			return &propagate.CallError{Op: "POST /x", Err: errors.New("connection refused"), Temporary: true}
		}
		return nil
	})
	s := openStore(t, filepath.Join(t.TempDir(), "r.db"))
	au := &memAudit{}
	run(t, propagate.WorkerConfig{
		Store:       s,
		Authorities: []propagate.Binding{{Issuer: iss, Authority: fake}},
		Audit:       au,
		MaxAttempts: 4,
	})
	for _, tc := range []struct {
		kind     cache.Kind
		value    string
		state    cache.TargetState
		attempts int
		call     string
	}{
		{cache.KindSub, "bob", cache.TargetDone, 1, "user bob"},
		{cache.KindSub, "flaky", cache.TargetDone, 3, "user flaky"},
		{cache.KindSub, "ghost", cache.TargetDone, 1, "user ghost"},
		{cache.KindSID, "sid-x", cache.TargetUnsupported, 1, "session sid-x"},
		{cache.KindSub, "forbidden", cache.TargetFailed, 1, "user forbidden"},
		{cache.KindSub, "down", cache.TargetFailed, 4, "user down"},
		{cache.KindClient, "app", cache.TargetDone, 1, "client app"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			revoke(t, s, tc.kind, tc.value, "admin:ops")
			ts := waitFinal(t, s, tc.kind, tc.value)
			if len(ts) != 1 {
				t.Fatalf("got %d targets; want 1", len(ts))
			}
			got := ts[0]
			if got.State != tc.state || got.Attempts != tc.attempts || got.Name != fake.Name() || got.Kind != cache.TargetSessionAuthority || got.CompletedAt.IsZero() {
				t.Fatalf("got %+v; want state %s after %d attempts", got, tc.state, tc.attempts)
			}
			if n := fake.callsOf(tc.call); n != tc.attempts {
				t.Fatalf("calls %q: got %d; want %d", tc.call, n, tc.attempts)
			}
			if tc.value == "ghost" && got.Note == "" {
				t.Fatal("404: got no note; want one")
			}
			if tc.state == cache.TargetFailed && got.LastError == "" {
				t.Fatal("failed: got no last error")
			}
		})
	}
	// Every final state is audited once.
	deadline := time.Now().Add(5 * time.Second)
	for len(au.all()) < 7 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := au.all(); len(got) != 7 {
		t.Fatalf("audited %d targets; want 7", len(got))
	}
}

func TestWorkerTriggers(t *testing.T) {
	fake := newFake(nil)
	s := openStore(t, "")
	onlySSF := newFake(nil)
	onlySSF.name = "only ssf"
	run(t, propagate.WorkerConfig{
		Store: s,
		Authorities: []propagate.Binding{
			{Issuer: iss, Authority: fake},
			{Issuer: "https://other.example", Config: propagate.Config{On: []string{propagate.OnSSF}}, Authority: onlySSF},
		},
	})
	// The authority's own back-channel logout is not sent back to it.
	revoke(t, s, cache.KindSID, "from-idp", "backchannel:"+iss+" jti_sha256:abcd")
	revoke(t, s, cache.KindSub, "from-idp-ssf", "ssf:"+iss+" jti:1")
	// Another source's is.
	revoke(t, s, cache.KindSID, "from-elsewhere", "backchannel:https://elsewhere.example jti_sha256:abcd")
	revoke(t, s, cache.KindSub, "admin", "admin:ops")
	// jti and session entries have no authority call.
	revoke(t, s, cache.KindJTI, "jti-1", "admin:ops")
	now := time.Now()
	if _, err := s.Revoke(context.Background(), cache.Entry{Issuer: "https://other.example", Kind: cache.KindSub, Value: "carol", RevokedAt: now, ExpiresAt: now.Add(time.Hour), Initiator: "admin:ops"}); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, s, cache.KindSID, "from-elsewhere")
	waitFinal(t, s, cache.KindSub, "admin")
	for _, v := range []struct {
		kind  cache.Kind
		value string
	}{{cache.KindSID, "from-idp"}, {cache.KindSub, "from-idp-ssf"}, {cache.KindJTI, "jti-1"}} {
		ts, err := s.Targets(context.Background(), iss, v.kind, v.value)
		if err != nil || len(ts) != 0 {
			t.Errorf("%s %s: got targets %+v, %v; want none", v.kind, v.value, ts, err)
		}
	}
	if ts, _ := s.Targets(context.Background(), "https://other.example", cache.KindSub, "carol"); len(ts) != 0 {
		t.Errorf("admin revocation with on: [ssf]: got targets %+v; want none", ts)
	}
	if got := fake.total(); got != 2 {
		t.Fatalf("calls: got %d %v; want 2", got, fake.calls)
	}
}

// TestWorkerDurable: a revocation accepted by a replica that died before
// calling the authority is called after the restart.
func TestWorkerDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := cache.Open(cache.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	revoke(t, s, cache.KindSub, "bob", "admin:ops")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path)
	fake := newFake(nil)
	run(t, propagate.WorkerConfig{Store: s, Authorities: []propagate.Binding{{Issuer: iss, Authority: fake}}})
	ts := waitFinal(t, s, cache.KindSub, "bob")
	if ts[0].State != cache.TargetDone || fake.callsOf("user bob") != 1 {
		t.Fatalf("after restart: got %+v, %d calls; want done after 1", ts, fake.callsOf("user bob"))
	}
}

// TestWorkerConcurrency: a burst never has more than Concurrency calls in
// flight, and every call is made.
func TestWorkerConcurrency(t *testing.T) {
	const n, limit = 2000, 4
	fake := newFake(func(string, string, int) error {
		time.Sleep(50 * time.Microsecond)
		return nil
	})
	s := openStore(t, filepath.Join(t.TempDir(), "r.db"))
	w := run(t, propagate.WorkerConfig{Store: s, Authorities: []propagate.Binding{{Issuer: iss, Authority: fake}}, Concurrency: limit})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n; i += 8 {
				revoke(t, s, cache.KindSub, fmt.Sprintf("user-%d", i), "admin:ops")
			}
		})
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for fake.total() < n || w.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("calls: got %d, pending %d; want %d, 0", fake.total(), w.Pending(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.calls) != n || fake.maxFlow > limit {
		t.Fatalf("got %d calls, at most %d at once; want %d, at most %d", len(fake.calls), fake.maxFlow, n, limit)
	}
	for k, c := range fake.count {
		if c != 1 {
			t.Fatalf("%s called %d times; want 1", k, c)
		}
	}
}

// TestWorkerJudge checks the retry plan: Retry-After is honoured.
func TestWorkerRetryAfter(t *testing.T) {
	var first atomic.Int64
	fake := newFake(func(_, _ string, n int) error {
		if n == 1 {
			first.Store(time.Now().UnixNano())
			return &propagate.CallError{Op: "DELETE /x", Status: 429, RetryAfter: 300 * time.Millisecond, Temporary: true}
		}
		return nil
	})
	s := openStore(t, "")
	run(t, propagate.WorkerConfig{Store: s, Authorities: []propagate.Binding{{Issuer: iss, Authority: fake}}})
	revoke(t, s, cache.KindSub, "bob", "admin:ops")
	ts := waitFinal(t, s, cache.KindSub, "bob")
	if ts[0].State != cache.TargetDone || ts[0].Attempts != 2 {
		t.Fatalf("got %+v; want done after 2 attempts", ts[0])
	}
	if gap := ts[0].CompletedAt.Sub(time.Unix(0, first.Load())); gap < 300*time.Millisecond {
		t.Fatalf("second attempt %s after the 429; want at least its Retry-After (300ms)", gap)
	}
}

// TestWorkerRedisReplicas: three replicas share a Redis; every authority
// call is made exactly once (a takeover may repeat one, never lose one),
// including the one whose lease a dead replica held.
func TestWorkerRedisReplicas(t *testing.T) {
	srv := redistest.Start(t)
	fake := newFake(nil)
	var stores []*cache.Redis
	for i := range 3 {
		r, err := cache.OpenRedis(cache.RedisConfig{
			Redis: cache.RedisOptions{Addr: srv.Addr, KeyPrefix: "w"},
			Local: cache.Config{Path: filepath.Join(t.TempDir(), fmt.Sprintf("r%d.db", i))},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = r.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done; _ = r.Close() })
		stores = append(stores, r)
		run(t, propagate.WorkerConfig{
			Store:       r,
			Authorities: []propagate.Binding{{Issuer: iss, Authority: fake}},
			CallTimeout: 200 * time.Millisecond,
			LeaseTTL:    time.Second,
		})
	}
	// A replica that died holding a lease: another takes over when it runs out.
	now := time.Now()
	orphan := cache.TargetOf(cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "orphan", RevokedAt: now, ExpiresAt: now.Add(time.Hour)}, cache.TargetSessionAuthority, fake.Name())
	if ok, err := stores[2].LeaseTarget(context.Background(), orphan, "dead-replica", 500*time.Millisecond); err != nil || !ok {
		t.Fatalf("LeaseTarget: %v, %v", ok, err)
	}
	const n = 30
	for i := range n {
		revoke(t, stores[i%3], cache.KindSub, fmt.Sprintf("u%d", i), "admin:ops")
	}
	revoke(t, stores[0], cache.KindSub, "orphan", "admin:ops")
	for i := range n {
		waitFinal(t, stores[(i+1)%3], cache.KindSub, fmt.Sprintf("u%d", i))
	}
	ts := waitFinal(t, stores[1], cache.KindSub, "orphan")
	if ts[0].State != cache.TargetDone {
		t.Fatalf("orphan: got %+v; want done", ts[0])
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.count) != n+1 {
		t.Fatalf("got calls for %d users; want %d", len(fake.count), n+1)
	}
	for k, c := range fake.count {
		if c != 1 {
			t.Errorf("%s: called %d times; want once", k, c)
		}
	}
}
