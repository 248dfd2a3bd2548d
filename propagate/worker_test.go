package propagate_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/cache/redistest"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/propagate"
)

const iss = "https://sso.example.com"

// t0 is when the worker tests' clocks start.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// step is how far waitFinal moves the fake clock between looks: the
// tests' MaxBackoff, so that every retry falls due.
const step = 5 * time.Millisecond

// poll waits until cond holds. The ceiling only turns a hang into a
// failure: the worker's time is the fake clock's, and no outcome depends
// on how long this takes.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

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

func openStore(t *testing.T, path string, clk *clocktest.Clock) *cache.Store {
	t.Helper()
	s, err := cache.Open(cache.Config{Path: path, Clock: clk})
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
}, clk *clocktest.Clock, kind cache.Kind, value, initiator string) cache.Entry {
	t.Helper()
	now := clk.Now()
	e, err := s.Revoke(context.Background(), cache.Entry{
		Issuer: iss, Kind: kind, Value: value, RevokedAt: now, ExpiresAt: now.Add(time.Hour), Initiator: initiator,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// waitFinal waits until every target of the entry is final and returns
// them, moving clk by step between looks so that retries fall due.
func waitFinal(t *testing.T, s propagate.Store, clk *clocktest.Clock, kind cache.Kind, value string) []cache.Target {
	t.Helper()
	var ts []cache.Target
	poll(t, fmt.Sprintf("every target of %s %s final", kind, value), func() bool {
		ts = targetsOf(t, s, kind, value)
		final := len(ts) > 0
		for _, x := range ts {
			final = final && x.State.Final()
		}
		if !final {
			clk.Advance(step)
		}
		return final
	})
	return ts
}

// targetsOf returns the targets of the entry (iss, kind, value).
func targetsOf(t *testing.T, s propagate.Store, kind cache.Kind, value string) []cache.Target {
	t.Helper()
	type lister interface {
		Targets(ctx context.Context, issuer string, kind cache.Kind, value string) ([]cache.Target, error)
	}
	ts, err := s.(lister).Targets(context.Background(), iss, kind, value)
	if err != nil {
		t.Fatal(err)
	}
	return ts
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
	clk := clocktest.New(t0)
	s := openStore(t, filepath.Join(t.TempDir(), "r.db"), clk)
	au := &memAudit{}
	run(t, propagate.WorkerConfig{
		Store:       s,
		Authorities: []propagate.Binding{{Issuer: iss, Authority: fake}},
		Audit:       au,
		MaxAttempts: 4,
		Clock:       clk,
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
			revoke(t, s, clk, tc.kind, tc.value, "admin:ops")
			ts := waitFinal(t, s, clk, tc.kind, tc.value)
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
	// Every final state is audited once (after the store records it).
	poll(t, "7 audit records", func() bool { return len(au.all()) >= 7 })
	if got := au.all(); len(got) != 7 {
		t.Fatalf("audited %d targets; want 7", len(got))
	}
}

func TestWorkerTriggers(t *testing.T) {
	fake := newFake(nil)
	clk := clocktest.New(t0)
	s := openStore(t, "", clk)
	onlySSF := newFake(nil)
	onlySSF.name = "only ssf"
	run(t, propagate.WorkerConfig{
		Store: s,
		Clock: clk,
		Authorities: []propagate.Binding{
			{Issuer: iss, Authority: fake},
			{Issuer: "https://other.example", Config: propagate.Config{On: []string{propagate.OnSSF}}, Authority: onlySSF},
		},
	})
	// The authority's own back-channel logout is not sent back to it.
	revoke(t, s, clk, cache.KindSID, "from-idp", "backchannel:"+iss+" jti_sha256:abcd")
	revoke(t, s, clk, cache.KindSub, "from-idp-ssf", "ssf:"+iss+" jti:1")
	// Another source's is.
	revoke(t, s, clk, cache.KindSID, "from-elsewhere", "backchannel:https://elsewhere.example jti_sha256:abcd")
	revoke(t, s, clk, cache.KindSub, "admin", "admin:ops")
	// jti and session entries have no authority call.
	revoke(t, s, clk, cache.KindJTI, "jti-1", "admin:ops")
	now := clk.Now()
	if _, err := s.Revoke(context.Background(), cache.Entry{Issuer: "https://other.example", Kind: cache.KindSub, Value: "carol", RevokedAt: now, ExpiresAt: now.Add(time.Hour), Initiator: "admin:ops"}); err != nil {
		t.Fatal(err)
	}
	waitFinal(t, s, clk, cache.KindSID, "from-elsewhere")
	waitFinal(t, s, clk, cache.KindSub, "admin")
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
	clk := clocktest.New(t0)
	s, err := cache.Open(cache.Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	revoke(t, s, clk, cache.KindSub, "bob", "admin:ops")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path, clk)
	fake := newFake(nil)
	run(t, propagate.WorkerConfig{Store: s, Authorities: []propagate.Binding{{Issuer: iss, Authority: fake}}, Clock: clk})
	ts := waitFinal(t, s, clk, cache.KindSub, "bob")
	if ts[0].State != cache.TargetDone || fake.callsOf("user bob") != 1 {
		t.Fatalf("after restart: got %+v, %d calls; want done after 1", ts, fake.callsOf("user bob"))
	}
}

// TestWorkerConcurrency: a burst never has more than Concurrency calls in
// flight, and every call is made once. The calls are held at a gate until
// Concurrency of them are in flight, so the bound is really reached.
func TestWorkerConcurrency(t *testing.T) {
	const n, limit = 2000, 4
	gate := make(chan struct{})
	fake := newFake(func(string, string, int) error {
		<-gate
		return nil
	})
	clk := clocktest.New(t0)
	s := openStore(t, filepath.Join(t.TempDir(), "r.db"), clk)
	w := run(t, propagate.WorkerConfig{Store: s, Authorities: []propagate.Binding{{Issuer: iss, Authority: fake}}, Concurrency: limit, Clock: clk})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < n; i += 8 {
				revoke(t, s, clk, cache.KindSub, fmt.Sprintf("user-%d", i), "admin:ops")
			}
		})
	}
	wg.Wait()
	inFlight := func() int {
		fake.mu.Lock()
		defer fake.mu.Unlock()
		return fake.inFlight
	}
	poll(t, fmt.Sprintf("%d calls held at the gate", limit), func() bool { return inFlight() == limit })
	close(gate)
	poll(t, fmt.Sprintf("%d calls made, none pending", n), func() bool { return fake.total() >= n && w.Pending() == 0 })
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.calls) != n || fake.maxFlow != limit {
		t.Fatalf("got %d calls, at most %d at once; want %d, at most %d", len(fake.calls), fake.maxFlow, n, limit)
	}
	for k, c := range fake.count {
		if c != 1 {
			t.Fatalf("%s called %d times; want 1", k, c)
		}
	}
}

// TestWorkerRetryAfter: after a 429 with Retry-After, the next attempt is
// due exactly Retry-After later (longer than the backoff), and is made
// when the clock gets there.
func TestWorkerRetryAfter(t *testing.T) {
	const retryAfter = 300 * time.Millisecond
	fake := newFake(func(_, _ string, n int) error {
		if n == 1 {
			return &propagate.CallError{Op: "DELETE /x", Status: 429, RetryAfter: retryAfter, Temporary: true}
		}
		return nil
	})
	clk := clocktest.New(t0)
	s := openStore(t, "", clk)
	run(t, propagate.WorkerConfig{Store: s, Authorities: []propagate.Binding{{Issuer: iss, Authority: fake}}, Clock: clk})
	revoke(t, s, clk, cache.KindSub, "bob", "admin:ops")
	var ts []cache.Target
	poll(t, "first attempt recorded", func() bool {
		ts = targetsOf(t, s, cache.KindSub, "bob")
		return len(ts) == 1 && ts[0].Attempts == 1
	})
	if ts[0].State != cache.TargetPending || !ts[0].NextAt.Equal(t0.Add(retryAfter)) {
		t.Fatalf("after the 429: got %+v; want pending, next attempt at %s", ts[0], t0.Add(retryAfter))
	}
	clk.Advance(retryAfter - time.Millisecond)
	if got := targetsOf(t, s, cache.KindSub, "bob")[0]; got.Attempts != 1 || fake.callsOf("user bob") != 1 {
		t.Fatalf("before Retry-After: got %+v after %d calls; want 1 attempt", got, fake.callsOf("user bob"))
	}
	clk.Advance(time.Millisecond)
	poll(t, "second attempt done", func() bool {
		ts = targetsOf(t, s, cache.KindSub, "bob")
		return ts[0].State.Final()
	})
	if ts[0].State != cache.TargetDone || ts[0].Attempts != 2 || !ts[0].CompletedAt.Equal(t0.Add(retryAfter)) {
		t.Fatalf("got %+v; want done after 2 attempts at %s", ts[0], t0.Add(retryAfter))
	}
}

// TestWorkerUserIDClaim: with user_id_claim oid (Entra), a sub revocation
// calls the authority with the user id learned for that subject; with
// none learned it is failed with a note saying so, and no call is made
// (never a guess, never the pairwise sub); sid revocations need no
// mapping.
func TestWorkerUserIDClaim(t *testing.T) {
	fake := newFake(nil)
	clk := clocktest.New(t0)
	s := openStore(t, filepath.Join(t.TempDir(), "r.db"), clk)
	au := &memAudit{}
	run(t, propagate.WorkerConfig{
		Store:       s,
		Authorities: []propagate.Binding{{Issuer: iss, Config: propagate.Config{Type: "entra"}, Authority: fake}},
		Audit:       au,
		Clock:       clk,
	})
	ctx := context.Background()
	if err := s.RecordUserID(ctx, iss, "pairwise-a", "oid-a", t0.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	revoke(t, s, clk, cache.KindSub, "pairwise-a", "admin:ops")
	revoke(t, s, clk, cache.KindSub, "pairwise-b", "admin:ops")
	revoke(t, s, clk, cache.KindSID, "sid-1", "admin:ops")

	if ts := waitFinal(t, s, clk, cache.KindSub, "pairwise-a"); ts[0].State != cache.TargetDone {
		t.Errorf("learned subject: got %+v; want done", ts[0])
	}
	ts := waitFinal(t, s, clk, cache.KindSub, "pairwise-b")
	if got := ts[0]; got.State != cache.TargetFailed || got.Attempts != 1 || got.LastError != "" ||
		!strings.Contains(got.Note, "no oid is known for this subject") {
		t.Errorf("unknown subject: got %+v; want failed after 1 attempt with a note naming the missing oid", got)
	}
	waitFinal(t, s, clk, cache.KindSID, "sid-1")
	fake.mu.Lock()
	calls := slices.Clone(fake.calls)
	fake.mu.Unlock()
	slices.Sort(calls)
	if want := []string{"session sid-1", "user oid-a"}; !slices.Equal(calls, want) {
		t.Errorf("calls: got %q; want %q (the learned oid; nothing for the unknown subject)", calls, want)
	}
	poll(t, "3 audit records", func() bool { return len(au.all()) >= 3 })
}

// TestWorkerRedisReplicas: three replicas share a Redis; every authority
// call is made exactly once (a takeover may repeat one, never lose one),
// including the one whose lease a dead replica held.
func TestWorkerRedisReplicas(t *testing.T) {
	srv := redistest.Start(t)
	fake := newFake(nil)
	// Stores and workers read the fake clock; the stores' background loops
	// run on wall-clock timers.
	clk := clocktest.NewRealTimers(time.Now())
	var stores []*cache.Redis
	for i := range 3 {
		r, err := cache.OpenRedis(cache.RedisConfig{
			Redis: cache.RedisOptions{Addr: srv.Addr, KeyPrefix: "w"},
			Local: cache.Config{Path: filepath.Join(t.TempDir(), fmt.Sprintf("r%d.db", i)), Clock: clk},
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
			Authorities: []propagate.Binding{{Issuer: iss, Config: propagate.Config{Type: "entra"}, Authority: fake}},
			CallTimeout: 200 * time.Millisecond,
			LeaseTTL:    time.Second,
			Clock:       clk,
		})
	}
	// A subject whose user id replica 1 learned: whichever replica works on
	// it finds it in Redis.
	if err := stores[0].RecordUserID(context.Background(), iss, "pairwise", "oid-shared", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A replica that died holding a lease: another takes over when it runs
	// out (Redis's own clock expires the lease key; the workers' clock
	// must pass LeaseTTL before they look again).
	now := clk.Now()
	orphan := cache.TargetOf(cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "orphan", RevokedAt: now, ExpiresAt: now.Add(time.Hour)}, cache.TargetSessionAuthority, fake.Name())
	if ok, err := stores[2].LeaseTarget(context.Background(), orphan, "dead-replica", 500*time.Millisecond); err != nil || !ok {
		t.Fatalf("LeaseTarget: %v, %v", ok, err)
	}
	const n = 30
	for i := range n {
		if err := stores[0].RecordUserID(context.Background(), iss, fmt.Sprintf("u%d", i), fmt.Sprintf("oid-u%d", i), clk.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := stores[0].RecordUserID(context.Background(), iss, "orphan", "oid-orphan", clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		revoke(t, stores[i%3], clk, cache.KindSub, fmt.Sprintf("u%d", i), "admin:ops")
	}
	revoke(t, stores[0], clk, cache.KindSub, "orphan", "admin:ops")
	revoke(t, stores[2], clk, cache.KindSub, "pairwise", "admin:ops")
	for i := range n {
		waitFinal(t, stores[(i+1)%3], clk, cache.KindSub, fmt.Sprintf("u%d", i))
	}
	if ts := waitFinal(t, stores[1], clk, cache.KindSub, "pairwise"); ts[0].State != cache.TargetDone {
		t.Fatalf("subject learned on replica 1: got %+v; want done", ts[0])
	}
	// The orphan's lease key expires on Redis's clock (500ms): waitFinal
	// moves the workers' clock until one of them looks again.
	ts := waitFinal(t, stores[1], clk, cache.KindSub, "orphan")
	if ts[0].State != cache.TargetDone {
		t.Fatalf("orphan: got %+v; want done", ts[0])
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.count) != n+2 || fake.count["user oid-shared"] != 1 || fake.count["user oid-orphan"] != 1 {
		t.Fatalf("got calls %v; want one for each of %d users, by their learned oid", fake.count, n+2)
	}
	for k, c := range fake.count {
		if c != 1 {
			t.Errorf("%s: called %d times; want once", k, c)
		}
	}
}
