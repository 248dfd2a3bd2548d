package cache_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/cache/redistest"
	"github.com/oidcgate/oidcgate/cache/storetest"
	"github.com/oidcgate/oidcgate/clock"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// syncTimeout bounds every wait for propagation; a healthy run needs
// milliseconds.
const syncTimeout = 15 * time.Second

// redisOpener opens Redis stores on srv; stores of one cfg.Path share a
// key prefix (so a reopen finds its data), others are apart.
func redisOpener(srv *redistest.Server) storetest.Open {
	return func(t *testing.T, cfg cache.Config) storetest.Store {
		t.Helper()
		if cfg.Path == "" {
			cfg.Path = filepath.Join(t.TempDir(), "mirror.db")
		}
		sum := sha256.Sum256([]byte(cfg.Path))
		s, err := cache.OpenRedis(cache.RedisConfig{
			Redis: cache.RedisOptions{Addrs: []string{srv.Addr}, KeyPrefix: hex.EncodeToString(sum[:6])},
			Local: cfg,
		})
		if err != nil {
			t.Fatalf("OpenRedis: %v", err)
		}
		return s
	}
}

func TestStoreRedis(t *testing.T) { storetest.Run(t, redisOpener(redistest.Start(t))) }

func TestStoreRedisDurable(t *testing.T) { storetest.RunDurable(t, redisOpener(redistest.Start(t))) }

// replica is a running Redis store.
type replica struct {
	*cache.Redis
	dir string
}

type replicaOpts struct {
	prefix        string
	maxLen        int64
	onUnavailable cache.Unavailable
	maxStaleness  time.Duration
	clock         clock.Clock
	metrics       prometheus.Registerer
	dir           string // "" for a new one
}

// startReplica opens a Redis store on srv and runs it until the test ends.
func startReplica(t *testing.T, srv *redistest.Server, o replicaOpts) *replica {
	t.Helper()
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.prefix == "" {
		o.prefix = "t"
	}
	s, err := cache.OpenRedis(cache.RedisConfig{
		Redis:         cache.RedisOptions{Addrs: []string{srv.Addr}, KeyPrefix: o.prefix, StreamMaxLen: o.maxLen, Timeout: 500 * time.Millisecond},
		Local:         cache.Config{Path: filepath.Join(o.dir, "mirror.db"), Clock: o.clock},
		OnUnavailable: o.onUnavailable,
		MaxStaleness:  o.maxStaleness,
		Metrics:       o.metrics,
	})
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	t.Cleanup(sync.OnceFunc(stop))
	return &replica{Redis: s, dir: o.dir}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(syncTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, syncTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitInSync(t *testing.T, rs ...*replica) {
	t.Helper()
	for i, r := range rs {
		waitUntil(t, fmt.Sprintf("replica %d in sync", i), func() bool { st := r.Status(); return st.InSync && st.Queued == 0 })
	}
}

func liveEntry(kind cache.Kind, value string) cache.Entry {
	now := time.Now()
	iss := "https://idp.example.com"
	if kind.Issuerless() {
		iss = ""
	}
	return cache.Entry{Issuer: iss, Kind: kind, Value: value, RevokedAt: now, ExpiresAt: now.Add(time.Hour), Reason: "test", Initiator: "admin:t"}
}

func credOf(e cache.Entry) *cache.Credential {
	c := &cache.Credential{Issuer: e.Issuer, IssuedAt: e.RevokedAt}
	switch e.Kind {
	case cache.KindJTI:
		c.JTI = e.Value
	case cache.KindSID:
		c.SID = e.Value
	case cache.KindSub:
		c.Sub = e.Value
	case cache.KindClient:
		c.ClientID = e.Value
	case cache.KindSession:
		c.SessionID = e.Value
	case cache.KindKey:
		c.KeyID = e.Value
	}
	return c
}

func mustRevoke(t *testing.T, s interface {
	Revoke(context.Context, cache.Entry) (cache.Entry, error)
}, e cache.Entry) {
	t.Helper()
	if _, err := s.Revoke(context.Background(), e); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
}

func TestRedisPropagation(t *testing.T) {
	srv := redistest.Start(t)
	reg := prometheus.NewRegistry()
	a := startReplica(t, srv, replicaOpts{})
	b := startReplica(t, srv, replicaOpts{metrics: reg})
	waitInSync(t, a, b)
	var mu sync.Mutex
	var seen []cache.Entry
	cancel := b.Subscribe(func(e cache.Entry) {
		mu.Lock()
		seen = append(seen, e)
		mu.Unlock()
	})
	defer cancel()
	for _, kind := range cache.Kinds {
		e := liveEntry(kind, "prop-"+string(kind))
		mustRevoke(t, a, e)
		waitUntil(t, "B enforces "+string(kind), func() bool { return b.IsRevoked(credOf(e)) })
	}
	mu.Lock()
	if got, want := len(seen), len(cache.Kinds); got != want {
		t.Errorf("B's subscriber saw %d entries; want %d", got, want)
	}
	mu.Unlock()
	got, ok := b.Get("https://idp.example.com", cache.KindJTI, "prop-jti")
	if !ok || got.Reason != "test" || got.Initiator != "admin:t" {
		t.Errorf("B.Get = %+v, %v; want the entry with reason and initiator", got, ok)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lagCount uint64
	for _, mf := range mfs {
		if mf.GetName() == "oidcgate_revocation_propagation_seconds" {
			lagCount = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if lagCount != uint64(len(cache.Kinds)) {
		t.Errorf("propagation histogram count = %d; want %d", lagCount, len(cache.Kinds))
	}
}

func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	a := startReplica(t, srv, replicaOpts{})
	b := startReplica(t, srv, replicaOpts{})
	waitInSync(t, a, b)

	srv.Kill(t)
	e := liveEntry(cache.KindSub, "outage")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Revoke(ctx, e); err != nil {
		t.Fatalf("Revoke with Redis down: %v; want nil", err)
	}
	if !a.IsRevoked(credOf(e)) {
		t.Fatal("A does not enforce its own revocation while Redis is down")
	}
	if st := a.Status(); st.Queued != 1 || !st.Degraded() {
		t.Errorf("A status with Redis down = %+v; want 1 queued, degraded", st)
	}
	waitUntil(t, "B notices the outage", func() bool { return !b.Status().InSync })
	if b.IsRevoked(credOf(e)) {
		t.Fatal("B enforces an entry Redis never had")
	}

	srv.Restart(t)
	waitUntil(t, "B enforces the queued revocation", func() bool { return b.IsRevoked(credOf(e)) })
	waitInSync(t, a, b)
	if st := a.Status(); st.Reconnects == 0 {
		t.Errorf("A reconnects = %d; want > 0", st.Reconnects)
	}
	// A store started now, with an empty mirror, learns it from Redis.
	c := startReplica(t, srv, replicaOpts{})
	waitUntil(t, "C enforces the queued revocation", func() bool { return c.IsRevoked(credOf(e)) })
}

func TestRedisOutboxSurvivesRestart(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	srv.Kill(t)
	a, err := cache.OpenRedis(cache.RedisConfig{
		Redis: cache.RedisOptions{Addrs: []string{srv.Addr}, KeyPrefix: "t", Timeout: 200 * time.Millisecond},
		Local: cache.Config{Path: filepath.Join(dir, "mirror.db")},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := liveEntry(cache.KindJTI, "queued-then-closed")
	mustRevoke(t, a, e)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	reopened := startReplica(t, srv, replicaOpts{dir: dir})
	if !reopened.IsRevoked(credOf(e)) {
		t.Fatal("the reopened store forgot its queued revocation")
	}
	b := startReplica(t, srv, replicaOpts{})
	waitUntil(t, "B enforces the revocation queued before the restart", func() bool { return b.IsRevoked(credOf(e)) })
	waitInSync(t, reopened)
}

func TestRedisEmptyRestart(t *testing.T) {
	for _, tt := range []struct {
		name string
		lose func(t *testing.T, srv *redistest.Server)
	}{
		{"restart", func(t *testing.T, srv *redistest.Server) { srv.Kill(t); srv.Restart(t) }},
		{"flushall", func(t *testing.T, srv *redistest.Server) {
			if got, err := srv.Do(context.Background(), "FLUSHALL"); err != nil || got != "+OK" {
				t.Fatalf("FLUSHALL = %q, %v", got, err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t)
			a := startReplica(t, srv, replicaOpts{})
			b := startReplica(t, srv, replicaOpts{})
			waitInSync(t, a, b)
			e := liveEntry(cache.KindSID, "before-loss")
			mustRevoke(t, a, e)
			waitUntil(t, "B enforces", func() bool { return b.IsRevoked(credOf(e)) })

			tt.lose(t, srv)
			// A and B keep enforcing; a replica started later learns the
			// entry, which A and B publish again.
			c := startReplica(t, srv, replicaOpts{})
			waitUntil(t, "C learns the entry Redis lost", func() bool { return c.IsRevoked(credOf(e)) })
			if !a.IsRevoked(credOf(e)) || !b.IsRevoked(credOf(e)) {
				t.Error("A or B forgot an entry when Redis lost its data")
			}
			if got, err := srv.Do(context.Background(), "EXISTS", "{t}:epoch"); err != nil || got != ":1" {
				t.Errorf("EXISTS epoch = %q, %v; want :1", got, err)
			}
		})
	}
}

func TestRedisGarbage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, args := range [][]string{
		{"SET", "{t}:e:garbage", "not a record"},
		{"SET", "{t}:e:\x01\x00\x03iss", "0000000000000000000100000000000000000002\x00\x00\x00\x00"},
		{"XADD", "{t}:stream", "*", "k", "junk", "v", "junk"},
	} {
		if _, err := srv.Do(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	a := startReplica(t, srv, replicaOpts{})
	waitInSync(t, a)
	if _, err := srv.Do(ctx, "XADD", "{t}:stream", "*", "only", "junk"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bad records counted", func() bool { return a.Status().BadRecords >= 3 })
	e := liveEntry(cache.KindJTI, "after-garbage")
	b := startReplica(t, srv, replicaOpts{})
	mustRevoke(t, b, e)
	waitUntil(t, "A enforces after garbage", func() bool { return a.IsRevoked(credOf(e)) })
	if a.Len() != 1 {
		t.Errorf("A.Len() = %d; want 1", a.Len())
	}
}

func TestRedisOnUnavailable(t *testing.T) {
	for _, tt := range []struct {
		mode       cache.Unavailable
		wantRefuse bool
	}{{cache.FailOpen, false}, {cache.FailClosed, true}} {
		t.Run(string(tt.mode), func(t *testing.T) {
			srv := redistest.Start(t)
			clk := clocktest.NewRealTimers(time.Now())
			a := startReplica(t, srv, replicaOpts{onUnavailable: tt.mode, maxStaleness: time.Minute, clock: clk})
			waitInSync(t, a)
			innocent := &cache.Credential{Issuer: "https://idp.example.com", JTI: "innocent", IssuedAt: clk.Now()}
			srv.Kill(t)
			waitUntil(t, "out of sync", func() bool { return !a.Status().InSync })
			if a.IsRevoked(innocent) {
				t.Fatal("refusing before max_staleness")
			}
			clk.Advance(2 * time.Minute)
			if tt.wantRefuse {
				waitUntil(t, "fail_closed refuses", func() bool { return a.IsRevoked(innocent) && a.Status().Refusing })
			} else {
				waitUntil(t, "stale", func() bool { return a.Staleness() >= 2*time.Minute })
				if a.IsRevoked(innocent) {
					t.Error("fail_open refuses an unrevoked credential")
				}
			}
			srv.Restart(t)
			waitInSync(t, a)
			waitUntil(t, "back in sync stops refusing", func() bool { return !a.IsRevoked(innocent) })
		})
	}
}

func TestRedisFirstSeen(t *testing.T) {
	srv := redistest.Start(t)
	a := startReplica(t, srv, replicaOpts{})
	b := startReplica(t, srv, replicaOpts{})
	waitInSync(t, a, b)
	ctx := context.Background()
	until := time.Now().Add(time.Hour)
	for _, step := range []struct {
		s    *replica
		key  string
		want bool
	}{
		{a, "jti-1", true},
		{a, "jti-1", false},
		{b, "jti-1", false},
		{b, "jti-2", true},
		{a, "jti-2", false},
	} {
		got, err := step.s.FirstSeen(ctx, step.key, until)
		if err != nil || got != step.want {
			t.Errorf("FirstSeen(%q) = %v, %v; want %v", step.key, got, err, step.want)
		}
	}
	if _, err := a.FirstSeen(ctx, "", until); !errors.Is(err, cache.ErrInvalidEntry) {
		t.Errorf("FirstSeen(\"\") error = %v; want ErrInvalidEntry", err)
	}
	// Redis down: the local record answers.
	srv.Kill(t)
	if got, err := a.FirstSeen(ctx, "jti-1", until); err != nil || got {
		t.Errorf("FirstSeen(jti-1) with Redis down = %v, %v; want false", got, err)
	}
	if got, err := a.FirstSeen(ctx, "jti-3", until); err != nil || !got {
		t.Errorf("FirstSeen(jti-3) with Redis down = %v, %v; want true", got, err)
	}
}

func TestRedisConfigValidate(t *testing.T) {
	ok := cache.RedisOptions{Addrs: []string{"127.0.0.1:6379"}}
	local := cache.Config{Path: "m.db"}
	tests := []struct {
		name string
		cfg  cache.RedisConfig
		want []string
	}{
		{"minimal", cache.RedisConfig{Redis: ok, Local: local}, nil},
		{"full", cache.RedisConfig{Redis: cache.RedisOptions{Addrs: []string{"a:1", "b:2"}, MasterName: "m", DB: 2, KeyPrefix: "x", Timeout: time.Second}, Local: local, OnUnavailable: cache.FailClosed, MaxStaleness: time.Second}, nil},
		{"no addr", cache.RedisConfig{Local: local}, []string{"redis.addr: "}},
		{"addr and addrs", cache.RedisConfig{Redis: cache.RedisOptions{Addr: "a:1", Addrs: []string{"b:2"}}, Local: local}, []string{"redis.addrs: "}},
		{"bad single addr", cache.RedisConfig{Redis: cache.RedisOptions{Addr: "a"}, Local: local}, []string{"redis.addr: "}},
		{"bad addr", cache.RedisConfig{Redis: cache.RedisOptions{Addrs: []string{"nope"}}, Local: local}, []string{"redis.addrs[0]: "}},
		{"no path", cache.RedisConfig{Redis: ok}, []string{"path: "}},
		{"cluster db", cache.RedisConfig{Redis: cache.RedisOptions{Addrs: []string{"a:1"}, Cluster: true, DB: 1}, Local: local}, []string{"redis.db: "}},
		{"heartbeat", cache.RedisConfig{Redis: ok, Local: local, HeartbeatInterval: 10 * time.Millisecond, ReplicaName: "gw-1", ReplicaAddr: "10.0.0.1:9091"}, nil},
		{"heartbeat too short", cache.RedisConfig{Redis: ok, Local: local, HeartbeatInterval: time.Millisecond}, []string{"heartbeat_interval: "}},
		{"heartbeat negative", cache.RedisConfig{Redis: ok, Local: local, HeartbeatInterval: -1}, []string{"heartbeat_interval: "}},
		{"replica name too long", cache.RedisConfig{Redis: ok, Local: local, ReplicaName: strings.Repeat("h", 257)}, []string{"replica name and address: "}},
		{"everything wrong", cache.RedisConfig{
			Redis:         cache.RedisOptions{Addrs: []string{"a:1"}, DB: -1, KeyPrefix: "a{b}", StreamMaxLen: -1, Timeout: -1},
			Local:         cache.Config{Path: "m.db", ClockSkew: -1},
			OnUnavailable: "maybe", MaxStaleness: -1,
		}, []string{"clock_skew: ", "redis.db: ", "redis.key_prefix: ", "redis.stream_max_len: ", "redis.timeout: ", "on_unavailable: ", "max_staleness: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var lines []string
			if err != nil {
				lines = strings.Split(err.Error(), "\n")
			}
			if len(lines) != len(tt.want) {
				t.Fatalf("Validate() = %v; want problems %q", err, tt.want)
			}
			for i, prefix := range tt.want {
				if !strings.HasPrefix(lines[i], prefix) {
					t.Errorf("problem %d = %q; want prefix %q", i, lines[i], prefix)
				}
			}
		})
	}
}

// TestRedisTransientWriteFailure: one write that fails while the follower
// still reads the stream must not leave the replica queueing forever.
func TestRedisTransientWriteFailure(t *testing.T) {
	srv := redistest.Start(t)
	a := startReplica(t, srv, replicaOpts{})
	b := startReplica(t, srv, replicaOpts{})
	waitInSync(t, a, b)
	// Writes wait (and A's times out after 500ms); reads, XREAD among
	// them, go on.
	if got, err := srv.Do(context.Background(), "CLIENT", "PAUSE", "1500", "WRITE"); err != nil || got != "+OK" {
		t.Fatalf("CLIENT PAUSE = %q, %v", got, err)
	}
	e := liveEntry(cache.KindJTI, "during-a-failed-write")
	mustRevoke(t, a, e)
	if !a.IsRevoked(credOf(e)) {
		t.Fatal("A does not enforce its own revocation")
	}
	waitUntil(t, "B learns the entry after the pause", func() bool { return b.IsRevoked(credOf(e)) })
	waitInSync(t, a, b)
}

// TestRedisRollback: Redis loses recent writes but keeps its epoch (a
// failover to a lagging replica, a restart from an old snapshot): the
// replicas notice that the stream went back in time and publish their
// entries again, so a replica started later still learns them.
func TestRedisRollback(t *testing.T) {
	srv := redistest.Start(t)
	a := startReplica(t, srv, replicaOpts{})
	b := startReplica(t, srv, replicaOpts{})
	waitInSync(t, a, b)
	e := liveEntry(cache.KindSID, "acknowledged-then-lost")
	mustRevoke(t, a, e)
	waitUntil(t, "B enforces", func() bool { return b.IsRevoked(credOf(e)) })
	waitInSync(t, a, b)
	// Everything but the epoch disappears at once.
	const lose = `local e = redis.call('GET', KEYS[1]); redis.call('FLUSHALL'); redis.call('SET', KEYS[1], e); return 1`
	if got, err := srv.Do(context.Background(), "EVAL", lose, "1", "{t}:epoch"); err != nil || got != ":1" {
		t.Fatalf("EVAL = %q, %v", got, err)
	}
	c := startReplica(t, srv, replicaOpts{})
	waitUntil(t, "C learns the entry Redis lost", func() bool { return c.IsRevoked(credOf(e)) })
}

func TestKeysRedis(t *testing.T) { storetest.RunKeys(t, redisOpener(redistest.Start(t))) }

func TestKeysRedisDurable(t *testing.T) { storetest.RunKeysDurable(t, redisOpener(redistest.Start(t))) }
