package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// Store is what the suite needs of a revocation store backend.
type Store interface {
	Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error)
	IsRevoked(c *cache.Credential) bool
	Get(issuer string, kind cache.Kind, value string) (cache.Entry, bool)
	List(ctx context.Context, o cache.ListOptions) ([]cache.Entry, string, error)
	Len() int
	Sweep() int
	Run(ctx context.Context) error
	Close() error
	Subscribe(fn func(cache.Entry)) (cancel func())
	FirstSeen(ctx context.Context, key string, until time.Time) (bool, error)
	RecordSID(ctx context.Context, issuer, sid string, until time.Time) error
	SIDLive(ctx context.Context, issuer, sid string) (bool, error)
	RecordUserID(ctx context.Context, issuer, sub, id string, until time.Time) error
	UserID(ctx context.Context, issuer, sub string) (string, bool, error)
	RecordEmail(ctx context.Context, email string, o cache.EmailOwner, until time.Time) error
	EmailOwners(ctx context.Context, email string) ([]cache.EmailOwner, error)
}

var (
	_ Store = (*cache.Store)(nil)
	_ Store = (*cache.Redis)(nil)
)

// Open returns a new store for cfg. The suite sets cfg.Clock and, for
// RunDurable, cfg.Path; it closes every store it opens.
type Open func(t *testing.T, cfg cache.Config) Store

// t0 is the suite's fixed start time.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 891011, time.UTC)

const (
	iss1 = "https://idp.example.com"
	iss2 = "https://other.example.org/realms/x"
)

func newStore(t *testing.T, open Open, cfg cache.Config) (Store, *clocktest.Clock) {
	t.Helper()
	return newStoreAt(t, open, cfg, t0)
}

// newStoreAt opens a store whose clock starts at now and closes it when the
// test ends.
func newStoreAt(t *testing.T, open Open, cfg cache.Config, now time.Time) (Store, *clocktest.Clock) {
	t.Helper()
	// The store reads the test's time; its sweeps and Redis loops run on
	// the wall clock.
	clk := clocktest.NewRealTimers(now)
	cfg.Clock = clk
	s := open(t, cfg)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, clk
}

func entry(kind cache.Kind, issuer, value string) cache.Entry {
	return cache.Entry{
		Issuer:    issuer,
		Kind:      kind,
		Value:     value,
		RevokedAt: t0,
		ExpiresAt: t0.Add(time.Hour),
		Reason:    "test",
		Initiator: "admin:suite",
	}
}

func mustRevoke(t *testing.T, s Store, e cache.Entry) cache.Entry {
	t.Helper()
	got, err := s.Revoke(context.Background(), e)
	if err != nil {
		t.Fatalf("Revoke(%s %q %q): %v", e.Kind, e.Issuer, e.Value, err)
	}
	return got
}

// revokeAll revokes es from a few goroutines, so that a backend that groups
// commits is not paced by one fsync per entry.
func revokeAll(t *testing.T, s Store, es []cache.Entry) {
	t.Helper()
	const workers = 16
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(es); i += workers {
				if _, err := s.Revoke(context.Background(), es[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Revoke: %v", err)
	}
}

// sameEntry reports the first field where got differs from want.
func sameEntry(got, want cache.Entry) error {
	switch {
	case got.Issuer != want.Issuer || got.Kind != want.Kind || got.Value != want.Value:
		return fmt.Errorf("key (%q, %s, %q); want (%q, %s, %q)", got.Issuer, got.Kind, got.Value, want.Issuer, want.Kind, want.Value)
	case !got.RevokedAt.Equal(want.RevokedAt):
		return fmt.Errorf("RevokedAt %v; want %v", got.RevokedAt, want.RevokedAt)
	case !got.ExpiresAt.Equal(want.ExpiresAt):
		return fmt.Errorf("ExpiresAt %v; want %v", got.ExpiresAt, want.ExpiresAt)
	case got.Reason != want.Reason || got.Initiator != want.Initiator:
		return fmt.Errorf("reason, initiator %q, %q; want %q, %q", got.Reason, got.Initiator, want.Reason, want.Initiator)
	}
	return nil
}

// Run checks the revocation model (DESIGN.md) against stores from open.
func Run(t *testing.T, open Open) {
	t.Run("Kinds", func(t *testing.T) { testKinds(t, open) })
	t.Run("IssuedBefore", func(t *testing.T) { testIssuedBefore(t, open) })
	t.Run("ReRevoke", func(t *testing.T) { testReRevoke(t, open) })
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, open) })
	t.Run("List", func(t *testing.T) { testList(t, open) })
	t.Run("ListLimitCap", func(t *testing.T) { testListLimitCap(t, open) })
	t.Run("ListCursorUnderWrites", func(t *testing.T) { testListCursorUnderWrites(t, open) })
	t.Run("Sweep", func(t *testing.T) { testSweep(t, open) })
	t.Run("Run", func(t *testing.T) { testRun(t, open) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("Close", func(t *testing.T) { testClose(t, open) })
	t.Run("Subscribe", func(t *testing.T) { testSubscribe(t, open) })
	t.Run("FirstSeen", func(t *testing.T) { testFirstSeen(t, open) })
	t.Run("LiveSIDs", func(t *testing.T) { testLiveSIDs(t, open) })
	t.Run("UserIDs", func(t *testing.T) { testUserIDs(t, open) })
	t.Run("Emails", func(t *testing.T) { testEmails(t, open) })
}

func testUserIDs(t *testing.T, open Open) {
	// The subjects are unique per run: a shared backend may outlive the test.
	run := fmt.Sprintf("%s-%d-", t.Name(), time.Now().UnixNano())
	s, clk := newStoreAt(t, open, cache.Config{}, time.Now())
	start := clk.Now()
	ctx := context.Background()
	lookup := func(iss, sub string) string {
		t.Helper()
		id, ok, err := s.UserID(ctx, iss, run+sub)
		if err != nil {
			t.Fatalf("UserID(%s): %v", sub, err)
		}
		if ok == (id == "") {
			t.Fatalf("UserID(%s): got %q, %v; want an id exactly when found", sub, id, ok)
		}
		return id
	}
	if got := lookup(iss1, "a"); got != "" {
		t.Errorf("a subject never recorded: got %q; want none", got)
	}
	if err := s.RecordUserID(ctx, iss1, run+"a", "oid-a", start.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if lookup(iss1, "a") != "oid-a" || lookup(iss2, "a") != "" || lookup(iss1, "b") != "" {
		t.Error("got the wrong user ids; want only (iss1, a) -> oid-a")
	}
	// The same id again with a later until keeps the later until.
	if err := s.RecordUserID(ctx, iss1, run+"a", "oid-a", start.Add(2*cache.UserIDRefresh)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUserID(ctx, iss1, run+"a", "oid-a", start.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	clk.Set(start.Add(2 * time.Minute))
	if got := lookup(iss1, "a"); got != "oid-a" {
		t.Errorf("after the first until: got %q; want oid-a (the later until kept)", got)
	}
	// Another id replaces it: the latest verified token speaks.
	if err := s.RecordUserID(ctx, iss1, run+"a", "oid-a2", clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := lookup(iss1, "a"); got != "oid-a2" {
		t.Errorf("after a new id: got %q; want oid-a2", got)
	}
	clk.Set(start.Add(2 * time.Minute).Add(time.Minute))
	if got := lookup(iss1, "a"); got != "" {
		t.Errorf("after its until: got %q; want none", got)
	}
	long := strings.Repeat("s", cache.MaxValueLen+1)
	for _, bad := range []struct{ iss, sub, id string }{{"", "x", "i"}, {iss1, "", "i"}, {iss1, "x", ""}, {iss1, long, "i"}, {iss1, "x", long}} {
		if err := s.RecordUserID(ctx, bad.iss, bad.sub, bad.id, clk.Now().Add(time.Hour)); !errors.Is(err, cache.ErrInvalidEntry) {
			t.Errorf("RecordUserID(%q, %.10q, %.10q): got %v; want ErrInvalidEntry", bad.iss, bad.sub, bad.id, err)
		}
	}
	if _, _, err := s.UserID(ctx, "", "x"); !errors.Is(err, cache.ErrInvalidEntry) {
		t.Errorf("UserID without issuer: got %v; want ErrInvalidEntry", err)
	}
	if err := s.RecordUserID(ctx, iss1, run+"c", "oid-c", clk.Now()); !errors.Is(err, cache.ErrInvalidEntry) {
		t.Errorf("RecordUserID with until now: got %v; want ErrInvalidEntry", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUserID(ctx, iss1, run+"z", "oid-z", clk.Now().Add(time.Hour)); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("RecordUserID after Close: got %v; want ErrClosed", err)
	}
}

func testLiveSIDs(t *testing.T, open Open) {
	// The sids are unique per run: a shared backend may outlive the test.
	run := fmt.Sprintf("%s-%d-", t.Name(), time.Now().UnixNano())
	s, clk := newStoreAt(t, open, cache.Config{}, time.Now())
	start := clk.Now()
	ctx := context.Background()
	live := func(iss, sid string) bool {
		t.Helper()
		ok, err := s.SIDLive(ctx, iss, run+sid)
		if err != nil {
			t.Fatalf("SIDLive(%s): %v", sid, err)
		}
		return ok
	}
	if live(iss1, "a") {
		t.Error("a sid never recorded is live")
	}
	if err := s.RecordSID(ctx, iss1, run+"a", start.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !live(iss1, "a") || live(iss2, "a") || live(iss1, "b") {
		t.Error("got the wrong sessions live; want only (iss1, a)")
	}
	// Recording again keeps the later until.
	if err := s.RecordSID(ctx, iss1, run+"a", start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSID(ctx, iss1, run+"a", start.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	clk.Set(start.Add(2 * time.Minute))
	if !live(iss1, "a") {
		t.Error("the later until was not kept")
	}
	for _, bad := range []struct{ iss, sid string }{{"", "x"}, {iss1, ""}, {iss1, strings.Repeat("s", cache.MaxValueLen+1)}} {
		if err := s.RecordSID(ctx, bad.iss, bad.sid, start.Add(time.Hour)); !errors.Is(err, cache.ErrInvalidEntry) {
			t.Errorf("RecordSID(%q, %.10q): got %v; want ErrInvalidEntry", bad.iss, bad.sid, err)
		}
	}
	if err := s.RecordSID(ctx, iss1, run+"c", clk.Now()); !errors.Is(err, cache.ErrInvalidEntry) {
		t.Errorf("RecordSID with until now: got %v; want ErrInvalidEntry", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordSID(ctx, iss1, run+"z", clk.Now().Add(time.Hour)); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("RecordSID after Close: got %v; want ErrClosed", err)
	}
}

func testSubscribe(t *testing.T, open Open) {
	s, _ := newStore(t, open, cache.Config{})
	var mu sync.Mutex
	var got []string
	cancel := s.Subscribe(func(e cache.Entry) {
		mu.Lock()
		got = append(got, e.Value)
		mu.Unlock()
	})
	s.Subscribe(nil)()
	mustRevoke(t, s, entry(cache.KindJTI, iss1, "one"))
	cancel()
	cancel()
	mustRevoke(t, s, entry(cache.KindJTI, iss1, "two"))
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "one" {
		t.Errorf("subscriber saw %q; want [one]", got)
	}
}

func testFirstSeen(t *testing.T, open Open) {
	// The keys are unique per run: a shared backend may outlive the test.
	run := fmt.Sprintf("%s-%d-", t.Name(), time.Now().UnixNano())
	s, clk := newStoreAt(t, open, cache.Config{}, time.Now())
	start := clk.Now()
	ctx := context.Background()
	steps := []struct {
		key     string
		until   time.Duration
		want    bool
		wantErr error
	}{
		{key: "a", until: time.Minute, want: true},
		{key: "a", until: time.Hour, want: false},
		{key: "b", until: time.Hour, want: true},
		{key: "", until: time.Hour, wantErr: cache.ErrInvalidEntry},
		{key: strings.Repeat("k", cache.MaxValueLen+1), until: time.Hour, wantErr: cache.ErrInvalidEntry},
		{key: "c", until: 0, wantErr: cache.ErrInvalidEntry},
	}
	for i, st := range steps {
		key := st.key
		if key != "" && len(key) < 10 {
			key = run + key
		}
		got, err := s.FirstSeen(ctx, key, start.Add(st.until))
		if !errors.Is(err, st.wantErr) || got != st.want {
			t.Errorf("step %d: FirstSeen(%q) = %v, %v; want %v, %v", i, st.key, got, err, st.want, st.wantErr)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FirstSeen(ctx, run+"z", start.Add(time.Hour)); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("FirstSeen after Close: error = %v; want ErrClosed", err)
	}
}

func testKinds(t *testing.T, open Open) {
	s, _ := newStore(t, open, cache.Config{})
	for _, e := range []cache.Entry{
		entry(cache.KindJTI, iss1, "jti-1"),
		entry(cache.KindSID, iss1, "sid-1"),
		entry(cache.KindSub, iss1, "sub-1"),
		entry(cache.KindClient, iss1, "client-1"),
		entry(cache.KindSession, "", "session-1"),
	} {
		got := mustRevoke(t, s, e)
		if err := sameEntry(got, e); err != nil {
			t.Errorf("Revoke returned %v", err)
		}
	}
	if got, want := s.Len(), 5; got != want {
		t.Errorf("Len() = %d; want %d", got, want)
	}
	before := t0.Add(-time.Minute)
	tests := []struct {
		name string
		c    *cache.Credential
		want bool
	}{
		{"nil credential fails closed", nil, true},
		{"empty credential", &cache.Credential{}, false},
		{"jti", &cache.Credential{Issuer: iss1, JTI: "jti-1"}, true},
		{"jti of another issuer", &cache.Credential{Issuer: iss2, JTI: "jti-1"}, false},
		{"jti value as sid", &cache.Credential{Issuer: iss1, SID: "jti-1"}, false},
		{"sid", &cache.Credential{Issuer: iss1, SID: "sid-1"}, true},
		{"sid of another issuer", &cache.Credential{Issuer: iss2, SID: "sid-1"}, false},
		{"sid value as jti", &cache.Credential{Issuer: iss1, JTI: "sid-1"}, false},
		{"sub issued before", &cache.Credential{Issuer: iss1, Sub: "sub-1", IssuedAt: before}, true},
		{"sub of another issuer", &cache.Credential{Issuer: iss2, Sub: "sub-1", IssuedAt: before}, false},
		{"sub value as client", &cache.Credential{Issuer: iss1, ClientID: "sub-1", IssuedAt: before}, false},
		{"client issued before", &cache.Credential{Issuer: iss1, ClientID: "client-1", IssuedAt: before}, true},
		{"client of another issuer", &cache.Credential{Issuer: iss2, ClientID: "client-1", IssuedAt: before}, false},
		{"session", &cache.Credential{SessionID: "session-1"}, true},
		{"session whatever the issuer", &cache.Credential{Issuer: iss1, SessionID: "session-1"}, true},
		{"session value as jti", &cache.Credential{JTI: "session-1"}, false},
		{"every field, none revoked", &cache.Credential{Issuer: iss1, JTI: "j", SID: "s", Sub: "u", ClientID: "c", SessionID: "x", IssuedAt: before}, false},
		{"every field, only client revoked", &cache.Credential{Issuer: iss1, JTI: "j", SID: "s", Sub: "u", ClientID: "client-1", SessionID: "x", IssuedAt: before}, true},
		{"every field, only session revoked", &cache.Credential{Issuer: iss1, JTI: "j", SID: "s", Sub: "u", ClientID: "c", SessionID: "session-1", IssuedAt: before}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.IsRevoked(tt.c); got != tt.want {
				t.Errorf("IsRevoked(%+v) = %t; want %t", tt.c, got, tt.want)
			}
		})
	}
	for _, e := range []cache.Entry{entry(cache.KindJTI, iss1, "jti-1"), entry(cache.KindSession, "", "session-1")} {
		got, ok := s.Get(e.Issuer, e.Kind, e.Value)
		if !ok {
			t.Fatalf("Get(%q, %s, %q) found nothing", e.Issuer, e.Kind, e.Value)
		}
		if err := sameEntry(got, e); err != nil {
			t.Errorf("Get: %v", err)
		}
	}
	if _, ok := s.Get(iss2, cache.KindJTI, "jti-1"); ok {
		t.Errorf("Get of another issuer found an entry")
	}
	if _, ok := s.Get(iss1, "bogus", "jti-1"); ok {
		t.Errorf("Get of an unknown kind found an entry")
	}
}

func testIssuedBefore(t *testing.T, open Open) {
	for _, skew := range []time.Duration{0, 5 * time.Second} {
		s, _ := newStore(t, open, cache.Config{ClockSkew: skew})
		mustRevoke(t, s, entry(cache.KindSub, iss1, "user"))
		mustRevoke(t, s, entry(cache.KindClient, iss1, "app"))
		tests := []struct {
			name string
			iat  time.Time
			want bool
		}{
			{"zero iat fails closed", time.Time{}, true},
			{"long before", t0.Add(-time.Hour), true},
			{"at revocation", t0, true},
			{"at revocation plus skew", t0.Add(skew), true},
			{"one ns after skew", t0.Add(skew + 1), false},
			{"long after", t0.Add(time.Hour), false},
			{"year 1600", time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), true},
			{"year 3000", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), false},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("skew %v/%s", skew, tt.name), func(t *testing.T) {
				for _, c := range []*cache.Credential{
					{Issuer: iss1, Sub: "user", IssuedAt: tt.iat},
					{Issuer: iss1, ClientID: "app", IssuedAt: tt.iat},
				} {
					if got := s.IsRevoked(c); got != tt.want {
						t.Errorf("IsRevoked(%+v) = %t; want %t", c, got, tt.want)
					}
				}
			})
		}
	}
}

func testReRevoke(t *testing.T, open Open) {
	s, _ := newStore(t, open, cache.Config{})
	at := func(h time.Duration) time.Time { return t0.Add(h * time.Hour) }
	rev := func(r, x time.Duration, reason, who string) cache.Entry {
		return cache.Entry{Issuer: iss1, Kind: cache.KindSub, Value: "user", RevokedAt: at(r), ExpiresAt: at(x), Reason: reason, Initiator: who}
	}
	steps := []struct {
		name string
		in   cache.Entry
		want cache.Entry
	}{
		{"first", rev(1, 5, "first", "admin:a"), rev(1, 5, "first", "admin:a")},
		{"earlier keeps the later", rev(0, 2, "second", "admin:b"), rev(1, 5, "first", "admin:a")},
		{"later revoked_at, earlier expiry", rev(2, 3, "third", "admin:c"), rev(2, 5, "third", "admin:c")},
		{"identical again", rev(2, 3, "third", "admin:c"), rev(2, 5, "third", "admin:c")},
		{"same revoked_at keeps the reason", rev(2, 6, "fourth", "admin:d"), rev(2, 6, "third", "admin:c")},
	}
	for _, st := range steps {
		got, err := s.Revoke(context.Background(), st.in)
		if err != nil {
			t.Fatalf("%s: Revoke: %v", st.name, err)
		}
		if err := sameEntry(got, st.want); err != nil {
			t.Errorf("%s: Revoke returned %v", st.name, err)
		}
		stored, ok := s.Get(iss1, cache.KindSub, "user")
		if !ok {
			t.Fatalf("%s: Get found nothing", st.name)
		}
		if err := sameEntry(stored, st.want); err != nil {
			t.Errorf("%s: Get returned %v", st.name, err)
		}
		if got := s.Len(); got != 1 {
			t.Errorf("%s: Len() = %d; want 1", st.name, got)
		}
		c := &cache.Credential{Issuer: iss1, Sub: "user", IssuedAt: st.want.RevokedAt}
		if !s.IsRevoked(c) {
			t.Errorf("%s: IsRevoked(iat = stored revoked_at) = false; want true", st.name)
		}
	}
}

func testInvalid(t *testing.T, open Open) {
	s, _ := newStore(t, open, cache.Config{})
	long := strings.Repeat("x", cache.MaxValueLen+1)
	text := strings.Repeat("x", cache.MaxTextLen+1)
	mod := func(f func(*cache.Entry)) cache.Entry {
		e := entry(cache.KindJTI, iss1, "v")
		f(&e)
		return e
	}
	tests := []struct {
		name string
		e    cache.Entry
	}{
		{"zero entry", cache.Entry{}},
		{"unknown kind", mod(func(e *cache.Entry) { e.Kind = "email" })},
		{"empty value", mod(func(e *cache.Entry) { e.Value = "" })},
		{"jti without issuer", mod(func(e *cache.Entry) { e.Issuer = "" })},
		{"sub without issuer", mod(func(e *cache.Entry) { e.Kind, e.Issuer = cache.KindSub, "" })},
		{"session with issuer", mod(func(e *cache.Entry) { e.Kind = cache.KindSession })},
		{"value too long", mod(func(e *cache.Entry) { e.Value = long })},
		{"issuer too long", mod(func(e *cache.Entry) { e.Issuer = long })},
		{"reason too long", mod(func(e *cache.Entry) { e.Reason = text })},
		{"initiator too long", mod(func(e *cache.Entry) { e.Initiator = text })},
		{"zero revoked_at", mod(func(e *cache.Entry) { e.RevokedAt = time.Time{} })},
		{"expires at revoked_at", mod(func(e *cache.Entry) { e.ExpiresAt = e.RevokedAt })},
		{"expires before revoked_at", mod(func(e *cache.Entry) { e.ExpiresAt = e.RevokedAt.Add(-time.Second) })},
		{"revoked_at before 1678", mod(func(e *cache.Entry) { e.RevokedAt = time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"expires_at after 2262", mod(func(e *cache.Entry) { e.ExpiresAt = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Revoke(context.Background(), tt.e)
			if !errors.Is(err, cache.ErrInvalidEntry) {
				t.Errorf("Revoke error = %v; want ErrInvalidEntry", err)
			}
			if _, ok := s.Get(tt.e.Issuer, tt.e.Kind, tt.e.Value); ok {
				t.Errorf("Get found the refused entry")
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Revoke(ctx, entry(cache.KindJTI, iss1, "cancelled")); !errors.Is(err, context.Canceled) {
		t.Errorf("Revoke with a cancelled context: error = %v; want context.Canceled", err)
	}
	if got := s.Len(); got != 0 {
		t.Errorf("Len() = %d; want 0", got)
	}
	if got, _, err := s.List(context.Background(), cache.ListOptions{}); err != nil || len(got) != 0 {
		t.Errorf("List() = %d entries, %v; want 0, nil", len(got), err)
	}
}

// listEntries is the List suite's data: 270 entries over two issuers and
// every kind.
func listEntries() []cache.Entry {
	var es []cache.Entry
	for _, iss := range []string{iss1, iss2} {
		for _, k := range []cache.Kind{cache.KindJTI, cache.KindSID, cache.KindSub, cache.KindClient} {
			for i := range 30 {
				es = append(es, entry(k, iss, fmt.Sprintf("v-%03d", i)))
			}
		}
	}
	for i := range 30 {
		es = append(es, entry(cache.KindSession, "", fmt.Sprintf("v-%03d", i)))
	}
	return es
}

// listAll pages through List with o and fails on a repeated key.
func listAll(t *testing.T, s Store, o cache.ListOptions) []cache.Entry {
	t.Helper()
	var all []cache.Entry
	seen := map[string]bool{}
	for page := 0; ; page++ {
		got, next, err := s.List(context.Background(), o)
		if err != nil {
			t.Fatalf("List(%+v): %v", o, err)
		}
		limit := o.Limit
		if limit == 0 {
			limit = 100
		}
		if len(got) > limit {
			t.Fatalf("List(%+v) returned %d entries; want at most %d", o, len(got), limit)
		}
		for _, e := range got {
			k := keyOf(e)
			if seen[k] {
				t.Fatalf("List returned %s twice", k)
			}
			seen[k] = true
		}
		all = append(all, got...)
		if next == "" {
			return all
		}
		if page > 10000 {
			t.Fatalf("List never ended")
		}
		o.Cursor = next
	}
}

func keyOf(e cache.Entry) string {
	if !e.EffectiveAt.IsZero() {
		return fmt.Sprintf("(%q, %s scheduled, %q)", e.Issuer, e.Kind, e.Value)
	}
	return fmt.Sprintf("(%q, %s, %q)", e.Issuer, e.Kind, e.Value)
}

// ordered is the documented List order: issuer, then kind in cache.Kinds
// order, then value.
func ordered(a, b cache.Entry) int {
	if c := strings.Compare(a.Issuer, b.Issuer); c != 0 {
		return c
	}
	if c := slices.Index(cache.Kinds, a.Kind) - slices.Index(cache.Kinds, b.Kind); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

func testList(t *testing.T, open Open) {
	s, _ := newStore(t, open, cache.Config{})
	es := listEntries()
	revokeAll(t, s, es)

	whole, next, err := s.List(context.Background(), cache.ListOptions{Limit: 1000})
	if err != nil || next != "" || len(whole) != len(es) {
		t.Fatalf("List(Limit 1000) = %d entries, cursor %q, %v; want %d, \"\", nil", len(whole), next, err, len(es))
	}
	if !slices.IsSortedFunc(whole, ordered) {
		t.Errorf("List is not ordered by (issuer, kind, value)")
	}
	for i, e := range whole {
		if err := sameEntry(e, mustGet(t, s, e)); err != nil {
			t.Errorf("List[%d]: %v", i, err)
		}
	}
	for _, limit := range []int{1, 7, 100} {
		paged := listAll(t, s, cache.ListOptions{Limit: limit})
		if !slices.EqualFunc(paged, whole, func(a, b cache.Entry) bool { return keyOf(a) == keyOf(b) }) {
			t.Errorf("paging with limit %d gave %d entries in another order than one big page", limit, len(paged))
		}
	}
	first, next, err := s.List(context.Background(), cache.ListOptions{})
	if err != nil || len(first) != 100 || next == "" {
		t.Errorf("List(Limit 0) = %d entries, cursor %q, %v; want 100, a cursor, nil", len(first), next, err)
	}

	filters := []struct {
		name string
		o    cache.ListOptions
		want int
	}{
		{"issuer", cache.ListOptions{Issuer: iss1}, 120},
		{"kind", cache.ListOptions{Kind: cache.KindSub}, 60},
		{"session kind", cache.ListOptions{Kind: cache.KindSession}, 30},
		{"issuer and kind", cache.ListOptions{Issuer: iss2, Kind: cache.KindJTI}, 30},
		{"value", cache.ListOptions{Value: "v-003"}, 9},
		{"issuer, kind and value", cache.ListOptions{Issuer: iss1, Kind: cache.KindClient, Value: "v-029"}, 1},
		{"unknown issuer", cache.ListOptions{Issuer: "https://nobody.example"}, 0},
	}
	for _, f := range filters {
		t.Run(f.name, func(t *testing.T) {
			o := f.o
			o.Limit = 4
			got := listAll(t, s, o)
			if len(got) != f.want {
				t.Errorf("List(%+v) paged = %d entries; want %d", f.o, len(got), f.want)
			}
			for _, e := range got {
				if (o.Issuer != "" && e.Issuer != o.Issuer) || (o.Kind != "" && e.Kind != o.Kind) || (o.Value != "" && e.Value != o.Value) {
					t.Errorf("List(%+v) returned %s", f.o, keyOf(e))
				}
			}
			if !slices.IsSortedFunc(got, ordered) {
				t.Errorf("List(%+v) is not ordered", f.o)
			}
		})
	}

	bad := []struct {
		name string
		o    cache.ListOptions
	}{
		{"unknown kind", cache.ListOptions{Kind: "email"}},
		{"cursor not base64", cache.ListOptions{Cursor: "!!!"}},
		{"cursor of garbage", cache.ListOptions{Cursor: "AAAA"}},
	}
	for _, b := range bad {
		if _, _, err := s.List(context.Background(), b.o); !errors.Is(err, cache.ErrInvalidListOptions) {
			t.Errorf("List(%s) error = %v; want ErrInvalidListOptions", b.name, err)
		}
	}
}

func mustGet(t *testing.T, s Store, e cache.Entry) cache.Entry {
	t.Helper()
	got, ok := s.Get(e.Issuer, e.Kind, e.Value)
	if !ok {
		t.Fatalf("Get%s found nothing", keyOf(e))
	}
	return got
}

func testListLimitCap(t *testing.T, open Open) {
	s, _ := newStore(t, open, cache.Config{})
	es := make([]cache.Entry, 1001)
	for i := range es {
		es[i] = entry(cache.KindSession, "", fmt.Sprintf("s-%04d", i))
	}
	revokeAll(t, s, es)
	got, next, err := s.List(context.Background(), cache.ListOptions{Limit: 5000})
	if err != nil || len(got) != 1000 || next == "" {
		t.Fatalf("List(Limit 5000) = %d entries, cursor %q, %v; want 1000, a cursor, nil", len(got), next, err)
	}
	rest, next, err := s.List(context.Background(), cache.ListOptions{Limit: 5000, Cursor: next})
	if err != nil || len(rest) != 1 || next != "" || rest[0].Value != "s-1000" {
		t.Errorf("second page = %v, cursor %q, %v; want [s-1000], \"\", nil", rest, next, err)
	}
}

func testListCursorUnderWrites(t *testing.T, open Open) {
	s, _ := newStore(t, open, cache.Config{})
	es := listEntries()
	revokeAll(t, s, es)
	page, next, err := s.List(context.Background(), cache.ListOptions{Limit: 50})
	if err != nil || next == "" {
		t.Fatalf("List: %v, cursor %q", err, next)
	}
	// Entries sorting before and after the cursor arrive between pages.
	revokeAll(t, s, []cache.Entry{
		entry(cache.KindJTI, "https://aaa.example", "new"),
		entry(cache.KindJTI, "https://zzz.example", "new"),
		entry(cache.KindSID, iss1, "v-0005"),
	})
	rest := listAll(t, s, cache.ListOptions{Limit: 50, Cursor: next})
	got := map[string]int{}
	for _, e := range append(page, rest...) {
		got[keyOf(e)]++
	}
	for _, e := range es {
		if n := got[keyOf(e)]; n != 1 {
			t.Errorf("%s listed %d times; want 1", keyOf(e), n)
		}
	}
	if got[keyOf(entry(cache.KindJTI, "https://zzz.example", "new"))] != 1 {
		t.Errorf("an entry added after the cursor was not listed")
	}
}

func testSweep(t *testing.T, open Open) {
	s, clk := newStore(t, open, cache.Config{})
	exp := func(kind cache.Kind, v string, d time.Duration) cache.Entry {
		e := entry(kind, iss1, v)
		if kind == cache.KindSession {
			e.Issuer = ""
		}
		e.ExpiresAt = t0.Add(d)
		return e
	}
	es := []cache.Entry{
		exp(cache.KindJTI, "a", time.Minute),
		exp(cache.KindSession, "b", 2*time.Minute),
		exp(cache.KindSub, "c", 3*time.Minute),
		exp(cache.KindSID, "d", time.Minute),
	}
	for _, e := range es {
		mustRevoke(t, s, e)
	}
	// d is extended before it expires; sweeping must keep it.
	mustRevoke(t, s, exp(cache.KindSID, "d", 20*time.Minute))

	steps := []struct {
		at        time.Duration
		removed   int
		remaining []string
	}{
		{0, 0, []string{"a", "b", "c", "d"}},
		{time.Minute - 1, 0, []string{"a", "b", "c", "d"}},
		{2 * time.Minute, 2, []string{"c", "d"}}, // expires_at == now is expired
		{2 * time.Minute, 0, []string{"c", "d"}},
		{10 * time.Minute, 1, []string{"d"}},
		{time.Hour, 1, nil},
	}
	for _, st := range steps {
		clk.Set(t0.Add(st.at))
		if got := s.Sweep(); got != st.removed {
			t.Errorf("at +%v: Sweep() = %d; want %d", st.at, got, st.removed)
		}
		if got := s.Len(); got != len(st.remaining) {
			t.Errorf("at +%v: Len() = %d; want %d", st.at, got, len(st.remaining))
		}
		for _, e := range es {
			_, ok := s.Get(e.Issuer, e.Kind, e.Value)
			if want := slices.Contains(st.remaining, e.Value); ok != want {
				t.Errorf("at +%v: Get(%s) found = %t; want %t", st.at, e.Value, ok, want)
			}
		}
	}
}

func testRun(t *testing.T, open Open) {
	s, clk := newStore(t, open, cache.Config{SweepInterval: time.Millisecond})
	mustRevoke(t, s, entry(cache.KindJTI, iss1, "x"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	clk.Set(t0.Add(2 * time.Hour))
	deadline := time.After(10 * time.Second)
	for s.Len() != 0 {
		select {
		case <-deadline:
			t.Fatalf("Run did not sweep the expired entry")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v after cancel; want nil", err)
	}
}

func testConcurrent(t *testing.T, open Open) {
	s, _ := newStore(t, open, cache.Config{})
	const writers, perWriter = 8, 100
	cred := func(w, i int) (*cache.Credential, cache.Entry) {
		v := fmt.Sprintf("w%d-%d", w, i)
		switch i % 3 {
		case 0:
			return &cache.Credential{Issuer: iss1, JTI: v}, entry(cache.KindJTI, iss1, v)
		case 1:
			return &cache.Credential{Issuer: iss2, Sub: v, IssuedAt: t0}, entry(cache.KindSub, iss2, v)
		}
		return &cache.Credential{SessionID: v}, entry(cache.KindSession, "", v)
	}
	stop := make(chan struct{})
	var readers, wg sync.WaitGroup
	for r := range 4 {
		readers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				runtime.Gosched() // let writers' commits run on small machines
				c, _ := cred(r, i%perWriter)
				s.IsRevoked(c)
				s.IsRevoked(&cache.Credential{Issuer: iss1, JTI: "never", SID: "never", Sub: "never", IssuedAt: t0})
			}
		})
	}
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				c, e := cred(w, i)
				if _, err := s.Revoke(context.Background(), e); err != nil {
					t.Errorf("Revoke: %v", err)
					return
				}
				if !s.IsRevoked(c) {
					t.Errorf("IsRevoked(%+v) = false right after Revoke returned", c)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if got, want := s.Len(), writers*perWriter; got != want {
		t.Errorf("Len() = %d; want %d", got, want)
	}
	for w := range writers {
		for i := range perWriter {
			if c, _ := cred(w, i); !s.IsRevoked(c) {
				t.Errorf("IsRevoked(%+v) = false; want true", c)
			}
		}
	}
}

func testClose(t *testing.T, open Open) {
	s, _ := newStore(t, open, cache.Config{})
	mustRevoke(t, s, entry(cache.KindJTI, iss1, "x"))
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Errorf("Close #%d = %v; want nil", i+1, err)
		}
	}
	if _, err := s.Revoke(context.Background(), entry(cache.KindJTI, iss1, "y")); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("Revoke after Close: error = %v; want ErrClosed", err)
	}
	if _, _, err := s.List(context.Background(), cache.ListOptions{}); !errors.Is(err, cache.ErrClosed) {
		t.Errorf("List after Close: error = %v; want ErrClosed", err)
	}
	if got := s.Sweep(); got != 0 {
		t.Errorf("Sweep after Close = %d; want 0", got)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Errorf("Run after Close = %v; want nil", err)
	}
}

// RunDurable checks what a persisting backend adds to Run: entries survive
// Close and reopen with every field intact, and what expired or was swept
// does not come back. open must reach the same data for the same cfg.Path.
func RunDurable(t *testing.T, open Open) {
	t.Run("Reopen", func(t *testing.T) { testReopen(t, open) })
	t.Run("ExpiredNotReloaded", func(t *testing.T) { testExpiredNotReloaded(t, open) })
	t.Run("SweepPersists", func(t *testing.T) { testSweepPersists(t, open) })
	t.Run("MergeAfterReopen", func(t *testing.T) { testMergeAfterReopen(t, open) })
	t.Run("LiveSIDsReopen", func(t *testing.T) { testLiveSIDsReopen(t, open) })
	t.Run("UserIDsReopen", func(t *testing.T) { testUserIDsReopen(t, open) })
}

func testUserIDsReopen(t *testing.T, open Open) {
	cfg := durableConfig(t)
	s, _ := newStore(t, open, cfg)
	ctx := context.Background()
	run := fmt.Sprintf("%d-", time.Now().UnixNano())
	for i := range 50 {
		if err := s.RecordUserID(ctx, iss1, fmt.Sprintf("%ssub-%d", run, i), fmt.Sprintf("oid-%d", i), t0.Add(time.Duration(i+1)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, _ := newStoreAt(t, open, cfg, t0.Add(25*time.Minute+time.Second))
	for i := range 50 {
		got, ok, err := r.UserID(ctx, iss1, fmt.Sprintf("%ssub-%d", run, i))
		want := ""
		if i >= 25 {
			want = fmt.Sprintf("oid-%d", i)
		}
		if err != nil || ok != (want != "") || got != want {
			t.Errorf("sub-%d after reopen: got %q, %v, %v; want %q", i, got, ok, err, want)
		}
	}
}

func testLiveSIDsReopen(t *testing.T, open Open) {
	cfg := durableConfig(t)
	s, _ := newStore(t, open, cfg)
	ctx := context.Background()
	for i := range 50 {
		if err := s.RecordSID(ctx, iss1, fmt.Sprintf("sid-%d", i), t0.Add(time.Duration(i+1)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("sid-1")) {
		t.Error("the file holds a sid in clear")
	}
	r, _ := newStoreAt(t, open, cfg, t0.Add(25*time.Minute+time.Second))
	for i := range 50 {
		got, err := r.SIDLive(ctx, iss1, fmt.Sprintf("sid-%d", i))
		if want := i >= 25; err != nil || got != want {
			t.Errorf("sid-%d after reopen: got %v, %v; want %v", i, got, err, want)
		}
	}
}

func durableConfig(t *testing.T) cache.Config {
	return cache.Config{Path: filepath.Join(t.TempDir(), "revocations.db"), ClockSkew: time.Second}
}

func testReopen(t *testing.T, open Open) {
	cfg := durableConfig(t)
	s, _ := newStore(t, open, cfg)
	var es []cache.Entry
	for i := range 300 {
		k := cache.Kinds[i%len(cache.Kinds)]
		e := entry(k, iss1, fmt.Sprintf("value-%d-ü-\x00-%d", i, i*i))
		if k.Issuerless() {
			e.Issuer = ""
		}
		e.RevokedAt = t0.Add(time.Duration(i) * 1234567 * time.Nanosecond)
		e.ExpiresAt = e.RevokedAt.Add(time.Duration(i+1) * time.Hour)
		e.Reason, e.Initiator = fmt.Sprintf("reason %d", i%7), ""
		if i%2 == 0 {
			e.Initiator = fmt.Sprintf("admin:%d", i%5)
		}
		es = append(es, e)
	}
	revokeAll(t, s, es)
	before := listAll(t, s, cache.ListOptions{Limit: 1000})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	r, _ := newStore(t, open, cfg)
	if got := r.Len(); got != len(es) {
		t.Errorf("Len() after reopen = %d; want %d", got, len(es))
	}
	for _, e := range es {
		got, ok := r.Get(e.Issuer, e.Kind, e.Value)
		if !ok {
			t.Errorf("Get%s after reopen found nothing", keyOf(e))
			continue
		}
		if err := sameEntry(got, e); err != nil {
			t.Errorf("Get%s after reopen: %v", keyOf(e), err)
		}
	}
	c := &cache.Credential{Issuer: iss1, Sub: es[2].Value, IssuedAt: es[2].RevokedAt.Add(time.Second)}
	if !r.IsRevoked(c) {
		t.Errorf("IsRevoked(sub at revoked_at + skew) after reopen = false; want true")
	}
	after := listAll(t, r, cache.ListOptions{Limit: 1000})
	if !slices.EqualFunc(after, before, func(a, b cache.Entry) bool { return sameEntry(a, b) == nil }) {
		t.Errorf("List after reopen differs from List before Close")
	}
}

func testExpiredNotReloaded(t *testing.T, open Open) {
	cfg := durableConfig(t)
	s, _ := newStore(t, open, cfg)
	short, long := entry(cache.KindJTI, iss1, "short"), entry(cache.KindJTI, iss1, "long")
	short.ExpiresAt = t0.Add(time.Minute)
	revokeAll(t, s, []cache.Entry{short, long})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Opened at short's expiry, then again with the clock back at t0: short
	// is loaded neither time.
	for _, at := range []time.Time{short.ExpiresAt, t0} {
		r, _ := newStoreAt(t, open, cfg, at)
		if _, ok := r.Get(iss1, cache.KindJTI, "short"); ok {
			t.Errorf("opened at %v: an entry expired at %v was loaded", at, short.ExpiresAt)
		}
		if _, ok := r.Get(iss1, cache.KindJTI, "long"); !ok {
			t.Errorf("opened at %v: an unexpired entry was not loaded", at)
		}
		if got := r.Len(); got != 1 {
			t.Errorf("opened at %v: Len() = %d; want 1", at, got)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

func testSweepPersists(t *testing.T, open Open) {
	cfg := durableConfig(t)
	s, clk := newStore(t, open, cfg)
	short, long := entry(cache.KindSID, iss2, "short"), entry(cache.KindSID, iss2, "long")
	short.ExpiresAt = t0.Add(time.Minute)
	revokeAll(t, s, []cache.Entry{short, long})
	clk.Set(t0.Add(time.Minute))
	if got := s.Sweep(); got != 1 {
		t.Errorf("Sweep() = %d; want 1", got)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r, _ := newStore(t, open, cfg) // clock back at t0
	if _, ok := r.Get(iss2, cache.KindSID, "short"); ok {
		t.Errorf("a swept entry came back after reopen")
	}
	if _, ok := r.Get(iss2, cache.KindSID, "long"); !ok {
		t.Errorf("an entry the sweep kept is gone after reopen")
	}
}

func testMergeAfterReopen(t *testing.T, open Open) {
	cfg := durableConfig(t)
	s, _ := newStore(t, open, cfg)
	later := entry(cache.KindClient, iss1, "app")
	later.RevokedAt, later.ExpiresAt, later.Reason = t0.Add(time.Hour), t0.Add(2*time.Hour), "later"
	mustRevoke(t, s, later)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r, _ := newStore(t, open, cfg)
	earlier := entry(cache.KindClient, iss1, "app")
	earlier.Reason = "earlier"
	if err := sameEntry(mustRevoke(t, r, earlier), later); err != nil {
		t.Errorf("re-revoking after reopen weakened the entry: %v", err)
	}
}

func testEmails(t *testing.T, open Open) {
	// The addresses are unique per run: a shared backend may outlive the
	// test.
	run := fmt.Sprintf("%d-", time.Now().UnixNano())
	s, clk := newStoreAt(t, open, cache.Config{}, time.Now())
	start := clk.Now()
	ctx := context.Background()
	owners := func(email string) []cache.EmailOwner {
		t.Helper()
		got, err := s.EmailOwners(ctx, email)
		if err != nil {
			t.Fatalf("EmailOwners(%s): %v", email, err)
		}
		slices.SortFunc(got, func(a, b cache.EmailOwner) int { return strings.Compare(a.Issuer+a.Sub, b.Issuer+b.Sub) })
		return got
	}
	alice := run + "alice@example.com"
	if got := owners(alice); len(got) != 0 {
		t.Errorf("an address never recorded: got %v; want none", got)
	}
	a1, a2 := cache.EmailOwner{Issuer: iss1, Sub: "alice"}, cache.EmailOwner{Issuer: iss2, Sub: "u-7"}
	if err := s.RecordEmail(ctx, alice, a1, start.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Case-insensitive, several owners, the later until kept.
	if err := s.RecordEmail(ctx, strings.ToUpper(alice), a2, start.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordEmail(ctx, alice, a1, start.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := owners(alice); !slices.Equal(got, []cache.EmailOwner{a1, a2}) {
		t.Errorf("owners: got %v; want %v", got, []cache.EmailOwner{a1, a2})
	}
	if got := owners(run + "bob@example.com"); len(got) != 0 {
		t.Errorf("another address: got %v; want none", got)
	}
	clk.Set(start.Add(2 * time.Minute))
	if got := owners(alice); !slices.Equal(got, []cache.EmailOwner{a2}) {
		t.Errorf("after a1's until: got %v; want only %v", got, a2)
	}
	for _, bad := range []struct {
		email string
		o     cache.EmailOwner
	}{{"", a1}, {alice, cache.EmailOwner{Sub: "x"}}, {alice, cache.EmailOwner{Issuer: iss1}}, {alice, cache.EmailOwner{Issuer: iss1, Sub: "a\x00b"}}} {
		if err := s.RecordEmail(ctx, bad.email, bad.o, clk.Now().Add(time.Hour)); !errors.Is(err, cache.ErrInvalidEntry) {
			t.Errorf("RecordEmail(%q, %+v): got %v; want ErrInvalidEntry", bad.email, bad.o, err)
		}
	}
	if err := s.RecordEmail(ctx, alice, a1, clk.Now()); !errors.Is(err, cache.ErrInvalidEntry) {
		t.Errorf("RecordEmail with until now: got %v; want ErrInvalidEntry", err)
	}
}
