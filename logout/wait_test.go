package logout

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/introspect"
)

// slowApplier reports replica "b" as having applied the entry only from
// its n-th answer on; "c" is down and never applies it.
type slowApplier struct {
	store *cache.Store
	n     int64
	asked atomic.Int64
}

func (s *slowApplier) Applied(ctx context.Context, issuer string, kind cache.Kind, value string) (cache.ApplyStatus, error) {
	st, err := s.store.Applied(ctx, issuer, kind, value)
	if err != nil {
		return st, err
	}
	b := cache.ReplicaApply{ID: "b", Up: true}
	if s.asked.Add(1) >= s.n {
		b.AppliedAt = st.Entry.RevokedAt
	}
	st.Replicas = append(st.Replicas, b, cache.ReplicaApply{ID: "c"})
	return st, nil
}

func TestRevokeWaitReplicas(t *testing.T) {
	store, err := cache.Open(cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := NewAdmin(Config{
		Admin:     AdminConfig{Tokens: []AdminToken{{Name: "ops", Token: introspect.Secret(strings.Repeat("t", 32))}}},
		Lifetimes: map[string]time.Duration{"https://idp.example.com": time.Hour},
		Store:     store,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin)
	t.Cleanup(srv.Close)
	tok := strings.Repeat("t", 32)
	for _, tc := range []struct {
		name    string
		n       int64
		wait    time.Duration
		applied bool
	}{
		{"applied after a few polls", 3, 5 * time.Second, true},
		{"not applied by the timeout", 1 << 40, 50 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ap := &slowApplier{store: store, n: tc.n}
			admin.SetApplier(ap)
			e, w, err := RevokeRemoteWait(context.Background(), srv.Client(), srv.URL, tok, RevokeRequest{Sub: "bob", Wait: tc.wait})
			if err != nil {
				t.Fatal(err)
			}
			if e.Value != "bob" || w == nil || w.Applied != tc.applied {
				t.Fatalf("got %+v, %+v; want bob, applied=%v", e, w, tc.applied)
			}
			if len(w.Down) != 1 || w.Down[0] != "c" {
				t.Errorf("down: got %v; want [c] (not waited for)", w.Down)
			}
			if !tc.applied && (len(w.Pending) != 1 || w.Pending[0] != "b") {
				t.Errorf("pending: got %v; want [b]", w.Pending)
			}
		})
	}
	for _, q := range []string{"?wait=everything", "?timeout=1s", "?wait=replicas&timeout=1h", "?wait=replicas&x=1"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+q, strings.NewReader(`{"sub":"bob"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %s: got %d; want 400", q, resp.StatusCode)
		}
	}
}
