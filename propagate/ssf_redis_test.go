package propagate_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/cache/redistest"
	"github.com/oidcgate/oidcgate/propagate"
)

// TestSSFRedisReplicas: three replicas sharing Redis, each with the same
// receiver configured, accept revocations: the receiver gets exactly one
// push per revocation (one replica at a time holds a target's lease),
// whichever replica accepted it.
func TestSSFRedisReplicas(t *testing.T) {
	srv := redistest.Start(t)
	var txp atomic.Pointer[propagate.Transmitter]
	recv := newSSFReceiver(t, &txp)
	keys, err := propagate.OpenKeyRing(filepath.Join(t.TempDir(), propagate.KeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	var stores []*cache.Redis
	for i := range 3 {
		r, err := cache.OpenRedis(cache.RedisConfig{
			Redis: cache.RedisOptions{Addr: srv.Addr, KeyPrefix: "ssf"},
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
		// Every replica shares the key file (README: replicas share it).
		tx, err := propagate.NewTransmitter(propagate.TransmitterConfig{Issuer: recv.issuer(), Keys: keys,
			Receivers: []propagate.Receiver{{Endpoint: recv.endpoint(), Audience: receiverAudience, AuthorizationHeader: "Bearer push-secret"}}})
		if err != nil {
			t.Fatal(err)
		}
		txp.Store(tx)
		run(t, propagate.WorkerConfig{Store: r, SSF: tx, CallTimeout: 2 * time.Second, LeaseTTL: 5 * time.Second})
	}
	const n = 20
	for i := range n {
		now := time.Now()
		if _, err := stores[i%3].Revoke(context.Background(), cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: fmt.Sprintf("u%d", i),
			RevokedAt: now, ExpiresAt: now.Add(time.Hour), Initiator: "admin:ops"}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(recv.distinct()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(recv.distinct()); got != n {
		t.Fatalf("SETs: got %d distinct; want %d", got, n)
	}
	// Every target is done in the shared store; no push was made twice.
	for i := range n {
		v := fmt.Sprintf("u%d", i)
		for {
			ts, err := stores[(i+1)%3].Targets(context.Background(), iss, cache.KindSub, v)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) == 1 && ts[0].State == cache.TargetDone {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: targets %+v; want one done", v, ts)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if got := recv.pushes.Load(); got != n {
		t.Errorf("pushes: got %d; want %d (one per revocation)", got, n)
	}
}
