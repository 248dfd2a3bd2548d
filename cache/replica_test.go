package cache_test

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/cache/redistest"
	"github.com/oidcgate/oidcgate/clock"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

var replicaIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestReplicaIDPersisted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	open := func() string {
		s, err := cache.Open(cache.Config{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return s.ReplicaID()
	}
	first := open()
	if !replicaIDPattern.MatchString(first) {
		t.Fatalf("ReplicaID: got %q; want 16 hex digits", first)
	}
	if got := open(); got != first {
		t.Errorf("ReplicaID after reopen: got %q; want %q", got, first)
	}
	mem1, _ := cache.Open(cache.Config{})
	mem2, _ := cache.Open(cache.Config{})
	defer mem1.Close()
	defer mem2.Close()
	if mem1.ReplicaID() == mem2.ReplicaID() || !replicaIDPattern.MatchString(mem1.ReplicaID()) {
		t.Errorf("memory-only ReplicaIDs: got %q and %q; want two different 16-hex-digit ids", mem1.ReplicaID(), mem2.ReplicaID())
	}
}

func TestStoreApplied(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := clocktest.New(t0)
	s, err := cache.Open(cache.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	e := cache.Entry{Issuer: "https://idp", Kind: cache.KindSub, Value: "alice", RevokedAt: t0.Add(-time.Second), ExpiresAt: t0.Add(time.Hour)}
	if _, err := s.Revoke(ctx, e); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		kind          cache.Kind
		value         string
		wantFound     bool
		wantAppliedAt time.Time
		wantErr       error
	}{
		{"revoked", cache.KindSub, "alice", true, e.RevokedAt, nil},
		{"not revoked", cache.KindSub, "bob", false, time.Time{}, nil},
		{"other kind", cache.KindJTI, "alice", false, time.Time{}, nil},
		{"unknown kind", cache.Kind("email"), "alice", false, time.Time{}, cache.ErrInvalidEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := s.Applied(ctx, "https://idp", tt.kind, tt.value)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err: got %v; want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if st.Found != tt.wantFound {
				t.Errorf("Found: got %v; want %v", st.Found, tt.wantFound)
			}
			if len(st.Replicas) != 1 {
				t.Fatalf("replicas: got %d; want 1", len(st.Replicas))
			}
			r := st.Replicas[0]
			if r.ID != s.ReplicaID() || !r.Up || !r.LastSeen.Equal(t0) || !r.AppliedAt.Equal(tt.wantAppliedAt) {
				t.Errorf("replica: got %+v; want id %s, up, last seen %s, applied at %s", r, s.ReplicaID(), t0, tt.wantAppliedAt)
			}
		})
	}
}

// ackReplica is a Redis store with a short heartbeat whose Run can be
// stopped without Close (a crash, as far as Redis can tell).
type ackReplica struct {
	*cache.Redis
	stopRun func()
}

func startAckReplica(t *testing.T, srv *redistest.Server, prefix string, clk clock.Clock, dir string) *ackReplica {
	t.Helper()
	s, err := cache.OpenRedis(cache.RedisConfig{
		Redis:             cache.RedisOptions{Addr: srv.Addr, KeyPrefix: prefix, Timeout: 500 * time.Millisecond},
		Local:             cache.Config{Path: filepath.Join(dir, "mirror.db"), Clock: clk},
		HeartbeatInterval: 20 * time.Millisecond,
		ReplicaName:       "host-" + filepath.Base(dir),
		ReplicaAddr:       "127.0.0.1:9091",
	})
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(func() {
		stop()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &ackReplica{Redis: s, stopRun: stop}
}

// replicaState finds id in st.
func replicaState(st cache.ApplyStatus, id string) (cache.ReplicaApply, bool) {
	for _, r := range st.Replicas {
		if r.ID == id {
			return r, true
		}
	}
	return cache.ReplicaApply{}, false
}

func waitApplied(t *testing.T, from *ackReplica, e cache.Entry, what string, cond func(cache.ApplyStatus) bool) cache.ApplyStatus {
	t.Helper()
	var st cache.ApplyStatus
	waitUntil(t, what, func() bool {
		var err error
		st, err = from.Applied(context.Background(), e.Issuer, e.Kind, e.Value)
		if err != nil {
			t.Fatalf("Applied: %v", err)
		}
		return cond(st)
	})
	return st
}

func TestRedisApplied(t *testing.T) {
	srv := redistest.Start(t)
	t0 := time.Now().Truncate(time.Millisecond)
	clk := clocktest.NewRealTimers(t0)
	a := startAckReplica(t, srv, "ack", clk, t.TempDir())
	b := startAckReplica(t, srv, "ack", clk, t.TempDir())
	c := startAckReplica(t, srv, "ack", clk, t.TempDir())
	ids := []string{a.ReplicaID(), b.ReplicaID(), c.ReplicaID()}
	ctx := context.Background()
	e := liveEntry(cache.KindSub, "alice")

	t.Run("acks written by every replica", func(t *testing.T) {
		st, err := a.Applied(ctx, e.Issuer, e.Kind, e.Value)
		if err != nil {
			t.Fatal(err)
		}
		if st.Found {
			t.Errorf("before Revoke: Found true; want false")
		}
		if _, err := a.Revoke(ctx, e); err != nil {
			t.Fatal(err)
		}
		st = waitApplied(t, a, e, "applied on all 3", func(st cache.ApplyStatus) bool {
			n := 0
			for _, id := range ids {
				if r, ok := replicaState(st, id); ok && r.Applied() && r.Up {
					n++
				}
			}
			return n == 3
		})
		if !st.Found || !st.Entry.RevokedAt.Equal(e.RevokedAt) {
			t.Errorf("entry: got found %v %+v; want %+v", st.Found, st.Entry, e)
		}
		for _, id := range ids {
			r, _ := replicaState(st, id)
			if !r.AppliedAt.Equal(t0) || !r.LastSeen.Equal(t0) || r.Addr != "127.0.0.1:9091" || r.Name == "" {
				t.Errorf("replica %s: got %+v; want applied and last seen at %s, with name and addr", id, r, t0)
			}
		}
	})

	t.Run("a newer revocation is not applied until acked again", func(t *testing.T) {
		e2 := e
		e2.RevokedAt = e.RevokedAt.Add(time.Minute)
		e2.ExpiresAt = e.ExpiresAt.Add(time.Minute)
		t1 := t0.Add(time.Second)
		clk.Set(t1)
		if _, err := b.Revoke(ctx, e2); err != nil {
			t.Fatal(err)
		}
		st := waitApplied(t, c, e2, "newer version applied on all 3", func(st cache.ApplyStatus) bool {
			n := 0
			for _, id := range ids {
				if r, ok := replicaState(st, id); ok && r.AppliedAt.Equal(t1) {
					n++
				}
			}
			return n == 3
		})
		if !st.Entry.RevokedAt.Equal(e2.RevokedAt) {
			t.Errorf("entry revoked_at: got %s; want %s", st.Entry.RevokedAt, e2.RevokedAt)
		}
	})

	t.Run("heartbeat liveness by the injected clock", func(t *testing.T) {
		c.stopRun() // c stops beating without a graceful stop
		later := clk.Now().Add(4 * 20 * time.Millisecond)
		clk.Set(later)
		st := waitApplied(t, a, e, "c down, a and b up", func(st cache.ApplyStatus) bool {
			ra, _ := replicaState(st, a.ReplicaID())
			rb, _ := replicaState(st, b.ReplicaID())
			rc, _ := replicaState(st, c.ReplicaID())
			return ra.Up && rb.Up && !rc.Up && ra.LastSeen.Equal(later)
		})
		rc, _ := replicaState(st, c.ReplicaID())
		if !rc.Applied() {
			t.Errorf("down replica c: applied %v; want its earlier ack kept", rc.Applied())
		}
	})

	t.Run("graceful Close marks the replica down at once", func(t *testing.T) {
		d := startAckReplica(t, srv, "ack", clk, t.TempDir())
		waitApplied(t, a, e, "d up", func(st cache.ApplyStatus) bool { r, ok := replicaState(st, d.ReplicaID()); return ok && r.Up })
		d.stopRun()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		st, err := a.Applied(ctx, e.Issuer, e.Kind, e.Value)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := replicaState(st, d.ReplicaID()); !ok || r.Up {
			t.Errorf("closed replica d: got %+v (found %v); want listed and down", r, ok)
		}
	})
}

func TestRedisResyncReAcks(t *testing.T) {
	srv := redistest.Start(t)
	a := startAckReplica(t, srv, "reack", nil, t.TempDir())
	b := startAckReplica(t, srv, "reack", nil, t.TempDir())
	e := liveEntry(cache.KindJTI, "token-1")
	if _, err := a.Revoke(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	both := func(st cache.ApplyStatus) bool {
		ra, _ := replicaState(st, a.ReplicaID())
		rb, _ := replicaState(st, b.ReplicaID())
		return ra.Applied() && rb.Applied()
	}
	waitApplied(t, a, e, "applied on both", both)
	// Redis loses everything (persistence is off): on reconnect the
	// replicas republish the entry and acknowledge their mirrors again.
	srv.Kill(t)
	srv.Restart(t)
	st := waitApplied(t, b, e, "applied on both after Redis lost its data", both)
	if !st.Found {
		t.Errorf("Found after resync: got false; want true")
	}

	// An ack deleted behind a replica's back comes back with the next
	// resynchronisation.
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rc.Close()
	if err := rc.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, a, e, "applied on both after FLUSHALL", both)
}
