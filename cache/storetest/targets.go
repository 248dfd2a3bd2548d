package storetest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// TargetStore is what the target suite needs of a backend.
type TargetStore interface {
	Store
	AddTargets(ctx context.Context, ts []cache.Target) ([]cache.Target, error)
	UpdateTarget(ctx context.Context, t cache.Target) (bool, error)
	Targets(ctx context.Context, issuer string, kind cache.Kind, value string) ([]cache.Target, error)
	Target(ctx context.Context, t cache.Target) (cache.Target, bool, error)
	PendingTargets(ctx context.Context) ([]cache.Target, error)
	LeaseTarget(ctx context.Context, t cache.Target, holder string, ttl time.Duration) (bool, error)
	ReleaseTarget(ctx context.Context, t cache.Target, holder string) error
}

var (
	_ TargetStore = (*cache.Store)(nil)
	_ TargetStore = (*cache.Redis)(nil)
)

// OpenTargets returns a new target store for cfg, like Open.
type OpenTargets func(t *testing.T, cfg cache.Config) TargetStore

// tb is the start of the target test running: now, since Redis expires a
// target's hash at the real time its entry expires. Each test sets it.
var tb time.Time

func resetBase() { tb = time.Now().UTC().Truncate(time.Millisecond) }

// tentry is entry at tb.
func tentry(kind cache.Kind, issuer, value string) cache.Entry {
	e := entry(kind, issuer, value)
	e.RevokedAt, e.ExpiresAt = tb, tb.Add(time.Hour)
	return e
}

// RunTargets checks the per-revocation targets against stores from open.
func RunTargets(t *testing.T, open OpenTargets) {
	t.Run("AddIdempotent", func(t *testing.T) { testTargetAdd(t, open) })
	t.Run("Update", func(t *testing.T) { testTargetUpdate(t, open) })
	t.Run("NewVersion", func(t *testing.T) { testTargetNewVersion(t, open) })
	t.Run("Pending", func(t *testing.T) { testTargetPending(t, open) })
	t.Run("Lease", func(t *testing.T) { testTargetLease(t, open) })
	t.Run("Invalid", func(t *testing.T) { testTargetInvalid(t, open) })
}

// RunTargetsDurable checks that targets survive a reopen of cfg.Path.
func RunTargetsDurable(t *testing.T, open OpenTargets) {
	resetBase()
	cfg := cache.Config{Path: filepath.Join(t.TempDir(), "targets.db")}
	cfg.Clock = clocktest.NewRealTimers(tb)
	s := open(t, cfg)
	e := tentry(cache.KindSub, iss1, "bob")
	want := []cache.Target{target(e, "a"), target(e, "b")}
	if _, err := s.AddTargets(context.Background(), want); err != nil {
		t.Fatalf("AddTargets: %v", err)
	}
	done := want[1]
	done.State, done.Attempts, done.CompletedAt = cache.TargetDone, 1, tb.Add(time.Second)
	if ok, err := s.UpdateTarget(context.Background(), done); err != nil || !ok {
		t.Fatalf("UpdateTarget: got %v, %v; want true, nil", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, cfg)
	t.Cleanup(func() { _ = s.Close() })
	got, err := s.Targets(context.Background(), iss1, cache.KindSub, "bob")
	if err != nil {
		t.Fatalf("Targets: %v", err)
	}
	if len(got) != 2 || got[0].State != cache.TargetPending || got[1].State != cache.TargetDone || !got[1].CompletedAt.Equal(done.CompletedAt) {
		t.Fatalf("after reopen: got %+v; want a pending and b done", got)
	}
	pending, err := s.PendingTargets(context.Background())
	if err != nil || len(pending) != 1 || pending[0].Name != "a" {
		t.Fatalf("PendingTargets after reopen: got %+v, %v; want a", pending, err)
	}
}

func target(e cache.Entry, name string) cache.Target {
	return cache.TargetOf(e, cache.TargetSessionAuthority, name)
}

func openTargets(t *testing.T, open OpenTargets) (TargetStore, *clocktest.Clock) {
	t.Helper()
	resetBase()
	clk := clocktest.NewRealTimers(tb)
	s := open(t, cache.Config{Clock: clk})
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, clk
}

func testTargetAdd(t *testing.T, open OpenTargets) {
	s, _ := openTargets(t, open)
	ctx := context.Background()
	e := tentry(cache.KindSub, iss1, "bob")
	a := target(e, "https://sso.example.com")
	got, err := s.AddTargets(ctx, []cache.Target{a})
	if err != nil || len(got) != 1 || got[0].State != cache.TargetPending || !got[0].RevokedAt.Equal(e.RevokedAt) {
		t.Fatalf("AddTargets: got %+v, %v; want one pending", got, err)
	}
	done := a
	done.State, done.Attempts, done.Note, done.CompletedAt = cache.TargetDone, 2, "ended", tb.Add(time.Second)
	if ok, err := s.UpdateTarget(ctx, done); err != nil || !ok {
		t.Fatalf("UpdateTarget: got %v, %v; want true", ok, err)
	}
	// Another replica adding the same version changes nothing.
	got, err = s.AddTargets(ctx, []cache.Target{a, target(e, "other")})
	if err != nil {
		t.Fatalf("AddTargets again: %v", err)
	}
	if got[0].State != cache.TargetDone || got[0].Attempts != 2 || got[0].Note != "ended" || got[1].State != cache.TargetPending {
		t.Fatalf("AddTargets again: got %+v; want the done target kept and other added", got)
	}
	list, err := s.Targets(ctx, iss1, cache.KindSub, "bob")
	if err != nil || len(list) != 2 || list[0].Name != "https://sso.example.com" || list[1].Name != "other" {
		t.Fatalf("Targets: got %+v, %v; want both, sorted by name", list, err)
	}
	if list, err := s.Targets(ctx, iss1, cache.KindSub, "alice"); err != nil || len(list) != 0 {
		t.Fatalf("Targets of another entry: got %+v, %v; want none", list, err)
	}
	if list, err := s.Targets(ctx, iss2, cache.KindSub, "bob"); err != nil || len(list) != 0 {
		t.Fatalf("Targets of another issuer: got %+v, %v; want none", list, err)
	}
}

func testTargetUpdate(t *testing.T, open OpenTargets) {
	s, _ := openTargets(t, open)
	ctx := context.Background()
	e := tentry(cache.KindSID, iss1, "sid-1")
	a := target(e, "hydra")
	if ok, err := s.UpdateTarget(ctx, a); err != nil || ok {
		t.Fatalf("UpdateTarget of a target never added: got %v, %v; want false, nil", ok, err)
	}
	if _, err := s.AddTargets(ctx, []cache.Target{a}); err != nil {
		t.Fatal(err)
	}
	retry := a
	retry.Attempts, retry.LastError, retry.NextAt = 1, "status 503", tb.Add(time.Second)
	if ok, err := s.UpdateTarget(ctx, retry); err != nil || !ok {
		t.Fatalf("UpdateTarget pending→pending: got %v, %v; want true", ok, err)
	}
	failed := retry
	failed.State, failed.Attempts, failed.CompletedAt = cache.TargetFailed, 8, tb.Add(time.Minute)
	if ok, err := s.UpdateTarget(ctx, failed); err != nil || !ok {
		t.Fatalf("UpdateTarget pending→failed: got %v, %v; want true", ok, err)
	}
	// A worker that lost its lease must not undo a final state.
	if ok, err := s.UpdateTarget(ctx, retry); err != nil || ok {
		t.Fatalf("UpdateTarget failed→pending: got %v, %v; want false", ok, err)
	}
	done := retry
	done.State = cache.TargetDone
	if ok, err := s.UpdateTarget(ctx, done); err != nil || ok {
		t.Fatalf("UpdateTarget failed→done: got %v, %v; want false", ok, err)
	}
	old := a
	old.RevokedAt = a.RevokedAt.Add(-time.Second)
	old.State = cache.TargetDone
	if ok, err := s.UpdateTarget(ctx, old); err != nil || ok {
		t.Fatalf("UpdateTarget of an older version: got %v, %v; want false", ok, err)
	}
	list, err := s.Targets(ctx, iss1, cache.KindSID, "sid-1")
	if err != nil || len(list) != 1 || list[0].State != cache.TargetFailed || list[0].Attempts != 8 || list[0].LastError != "status 503" {
		t.Fatalf("Targets: got %+v, %v; want the failed target", list, err)
	}
	got, ok, err := s.Target(ctx, a)
	if err != nil || !ok || got.State != cache.TargetFailed || !got.CompletedAt.Equal(failed.CompletedAt) {
		t.Fatalf("Target: got %+v, %v, %v; want the failed target", got, ok, err)
	}
	if _, ok, err := s.Target(ctx, target(e, "other")); err != nil || ok {
		t.Fatalf("Target of an unknown name: got %v, %v; want false, nil", ok, err)
	}
}

func testTargetNewVersion(t *testing.T, open OpenTargets) {
	s, _ := openTargets(t, open)
	ctx := context.Background()
	e := tentry(cache.KindSub, iss1, "bob")
	a := target(e, "kc")
	if _, err := s.AddTargets(ctx, []cache.Target{a}); err != nil {
		t.Fatal(err)
	}
	a.State = cache.TargetDone
	if ok, err := s.UpdateTarget(ctx, a); err != nil || !ok {
		t.Fatalf("UpdateTarget: %v, %v", ok, err)
	}
	e2 := e
	e2.RevokedAt, e2.ExpiresAt = e.RevokedAt.Add(time.Minute), e.ExpiresAt.Add(time.Minute)
	got, err := s.AddTargets(ctx, []cache.Target{target(e2, "kc")})
	if err != nil || got[0].State != cache.TargetPending || !got[0].RevokedAt.Equal(e2.RevokedAt) {
		t.Fatalf("AddTargets of a later version: got %+v, %v; want it pending", got, err)
	}
	// The earlier version, added late (a slow replica), changes nothing.
	got, err = s.AddTargets(ctx, []cache.Target{target(e, "kc")})
	if err != nil || !got[0].RevokedAt.Equal(e2.RevokedAt) {
		t.Fatalf("AddTargets of an earlier version: got %+v, %v; want the later kept", got, err)
	}
	pending, err := s.PendingTargets(ctx)
	if err != nil || len(pending) != 1 || !pending[0].RevokedAt.Equal(e2.RevokedAt) {
		t.Fatalf("PendingTargets: got %+v, %v; want the later version", pending, err)
	}
}

func testTargetPending(t *testing.T, open OpenTargets) {
	s, clk := openTargets(t, open)
	ctx := context.Background()
	var ts []cache.Target
	for _, v := range []string{"a", "b", "c"} {
		ts = append(ts, target(tentry(cache.KindSub, iss1, v), "kc"))
	}
	short := tentry(cache.KindSub, iss1, "short")
	short.ExpiresAt = tb.Add(time.Minute)
	ts = append(ts, target(short, "kc"))
	if _, err := s.AddTargets(ctx, ts); err != nil {
		t.Fatal(err)
	}
	ts[1].State = cache.TargetUnsupported
	if ok, err := s.UpdateTarget(ctx, ts[1]); err != nil || !ok {
		t.Fatalf("UpdateTarget: %v, %v", ok, err)
	}
	names := func() map[string]bool {
		t.Helper()
		got, err := s.PendingTargets(ctx)
		if err != nil {
			t.Fatalf("PendingTargets: %v", err)
		}
		m := map[string]bool{}
		for _, p := range got {
			if p.State != cache.TargetPending {
				t.Fatalf("PendingTargets: got state %s", p.State)
			}
			m[p.Value] = true
		}
		return m
	}
	if got := names(); len(got) != 3 || !got["a"] || !got["c"] || !got["short"] {
		t.Fatalf("PendingTargets: got %v; want a, c, short", got)
	}
	clk.Set(tb.Add(2 * time.Minute))
	if got := names(); len(got) != 2 || got["short"] {
		t.Fatalf("PendingTargets after short expired: got %v; want a, c", got)
	}
}

func testTargetLease(t *testing.T, open OpenTargets) {
	s, clk := openTargets(t, open)
	ctx := context.Background()
	a := target(tentry(cache.KindSub, iss1, "bob"), "kc")
	b := target(tentry(cache.KindSub, iss1, "carol"), "kc")
	lease := func(tg cache.Target, holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.LeaseTarget(ctx, tg, holder, ttl)
		if err != nil {
			t.Fatalf("LeaseTarget: %v", err)
		}
		return ok
	}
	if !lease(a, "r1", time.Minute) {
		t.Fatal("first lease: got false; want true")
	}
	if lease(a, "r2", time.Minute) {
		t.Fatal("lease held by r1, asked by r2: got true; want false")
	}
	if !lease(a, "r1", time.Minute) {
		t.Fatal("r1 extends its lease: got false; want true")
	}
	if !lease(b, "r2", time.Minute) {
		t.Fatal("lease of another target: got false; want true")
	}
	if err := s.ReleaseTarget(ctx, a, "r2"); err != nil {
		t.Fatal(err)
	}
	if lease(a, "r2", time.Minute) {
		t.Fatal("release by a non-holder freed the lease")
	}
	if err := s.ReleaseTarget(ctx, a, "r1"); err != nil {
		t.Fatal(err)
	}
	if !lease(a, "r2", 5*time.Millisecond) {
		t.Fatal("lease after release: got false; want true")
	}
	// A holder that stops extending loses the lease when it runs out.
	clk.Set(tb.Add(time.Second))
	deadline := time.Now().Add(10 * time.Second)
	for !lease(a, "r3", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatal("a lease that ran out was never taken over")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := s.LeaseTarget(ctx, a, "", time.Minute); !errors.Is(err, cache.ErrInvalidTarget) {
		t.Fatalf("empty holder: got %v; want ErrInvalidTarget", err)
	}
}

func testTargetInvalid(t *testing.T, open OpenTargets) {
	s, _ := openTargets(t, open)
	ctx := context.Background()
	good := target(tentry(cache.KindSub, iss1, "bob"), "kc")
	for name, change := range map[string]func(*cache.Target){
		"no kind":        func(x *cache.Target) { x.Kind = "" },
		"kind charset":   func(x *cache.Target) { x.Kind = "Session-Authority" },
		"no name":        func(x *cache.Target) { x.Name = "" },
		"NUL in name":    func(x *cache.Target) { x.Name = "a\x00b" },
		"bad state":      func(x *cache.Target) { x.State = "maybe" },
		"bad entry kind": func(x *cache.Target) { x.EntryKind = "user" },
		"no value":       func(x *cache.Target) { x.Value = "" },
		"no revoked_at":  func(x *cache.Target) { x.RevokedAt = time.Time{} },
		"expires first":  func(x *cache.Target) { x.ExpiresAt = x.RevokedAt },
		"negative tries": func(x *cache.Target) { x.Attempts = -1 },
	} {
		bad := good
		change(&bad)
		if _, err := s.AddTargets(ctx, []cache.Target{good, bad}); !errors.Is(err, cache.ErrInvalidTarget) {
			t.Errorf("%s: AddTargets: got %v; want ErrInvalidTarget", name, err)
		}
	}
	if got, err := s.PendingTargets(ctx); err != nil || len(got) != 0 {
		t.Fatalf("after invalid adds: got %d pending, %v; want none stored", len(got), err)
	}
}
