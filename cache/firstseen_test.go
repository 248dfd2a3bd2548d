package cache_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

func TestFirstSeen(t *testing.T) {
	for _, durable := range []bool{false, true} {
		name := map[bool]string{false: "memory", true: "bolt"}[durable]
		t.Run(name, func(t *testing.T) {
			clk := clocktest.New(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
			cfg := cache.Config{Clock: clk}
			if durable {
				cfg.Path = filepath.Join(t.TempDir(), "r.db")
			}
			s, err := cache.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			ctx := context.Background()
			t0 := clk.Now()
			steps := []struct {
				key     string
				until   time.Time
				advance time.Duration
				want    bool
				wantErr error
			}{
				{key: "a", until: t0.Add(time.Minute), want: true},
				{key: "a", until: t0.Add(time.Hour), want: false},
				{key: "b", until: t0.Add(2 * time.Minute), want: true},
				{key: "a", until: t0.Add(time.Hour), advance: time.Minute, want: true},
				{key: "", until: t0.Add(time.Hour), wantErr: cache.ErrInvalidEntry},
				{key: "c", until: t0, wantErr: cache.ErrInvalidEntry},
			}
			for i, st := range steps {
				clk.Advance(st.advance)
				got, err := s.FirstSeen(ctx, st.key, st.until)
				if !errors.Is(err, st.wantErr) || got != st.want {
					t.Errorf("step %d: FirstSeen(%q) = %v, %v; want %v, %v", i, st.key, got, err, st.want, st.wantErr)
				}
			}
			if !durable {
				return
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.FirstSeen(ctx, "z", t0.Add(time.Hour)); !errors.Is(err, cache.ErrClosed) {
				t.Errorf("FirstSeen after Close: %v; want ErrClosed", err)
			}
			s, err = cache.Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := s.FirstSeen(ctx, "a", t0.Add(time.Hour)); err != nil || got {
				t.Errorf("after reopen FirstSeen(a) = %v, %v; want false", got, err)
			}
			// b expires at t0+2m; after a sweep it is first seen again.
			clk.Advance(2 * time.Minute)
			s.Sweep()
			if got, err := s.FirstSeen(ctx, "b", t0.Add(time.Hour)); err != nil || !got {
				t.Errorf("after expiry FirstSeen(b) = %v, %v; want true", got, err)
			}
		})
	}
}
