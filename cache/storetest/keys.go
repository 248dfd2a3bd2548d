package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// KeyStore is what the key suite needs beyond Store.
type KeyStore interface {
	Store
	PutKey(ctx context.Context, k cache.KeyRecord) error
	TouchKey(ctx context.Context, id string, at time.Time) error
	Key(id string) (cache.KeyRecord, bool)
	Keys(owner string) ([]cache.KeyRecord, int)
	CheckKey(c *cache.KeyCheck) cache.KeyState
	Scheduled(issuer string, kind cache.Kind, value string) (cache.Entry, bool)
}

var (
	_ KeyStore = (*cache.Store)(nil)
	_ KeyStore = (*cache.Redis)(nil)
)

// keyRecord is a valid record created at t0 for a day.
func keyRecord(id, owner string) cache.KeyRecord {
	return cache.KeyRecord{
		ID:          id,
		Owner:       owner,
		Scopes:      []string{"read", "write:all"},
		Routes:      []string{"api"},
		Hash:        sha256.Sum256([]byte("secret-of-" + id)),
		CreatedBy:   "admin:suite",
		CreatedAt:   t0,
		ExpiresAt:   t0.Add(24 * time.Hour),
		Description: "for the suite",
	}
}

func keyStore(t *testing.T, s Store) KeyStore {
	t.Helper()
	ks, ok := s.(KeyStore)
	if !ok {
		t.Fatalf("%T does not store API keys", s)
	}
	return ks
}

func mustPutKey(t *testing.T, s KeyStore, k cache.KeyRecord) {
	t.Helper()
	if err := s.PutKey(context.Background(), k); err != nil {
		t.Fatalf("PutKey(%s): %v", k.ID, err)
	}
}

func check(s KeyStore, id string, secret string, now time.Time, mod func(*cache.KeyCheck)) (cache.KeyState, *cache.KeyCheck) {
	c := &cache.KeyCheck{ID: id, Hash: sha256.Sum256([]byte(secret)), Now: now, Issuers: []string{iss1, iss2}}
	if mod != nil {
		mod(c)
	}
	return s.CheckKey(c), c
}

// RunKeys checks API key records and scheduled revocations against stores
// from open.
func RunKeys(t *testing.T, open Open) {
	t.Run("Records", func(t *testing.T) { testKeyRecords(t, open) })
	t.Run("Check", func(t *testing.T) { testKeyCheck(t, open) })
	t.Run("Invalid", func(t *testing.T) { testKeyInvalid(t, open) })
	t.Run("ScheduledClient", func(t *testing.T) { testScheduledClient(t, open) })
}

// RunKeysDurable checks that key records and scheduled revocations survive
// a reopen of stores from open.
func RunKeysDurable(t *testing.T, open Open) {
	t.Run("Reopen", func(t *testing.T) { testKeyReopen(t, open) })
}

func sameKey(t *testing.T, got, want cache.KeyRecord) {
	t.Helper()
	if got.ID != want.ID || got.Owner != want.Owner || !slices.Equal(got.Scopes, want.Scopes) ||
		!slices.Equal(got.Routes, want.Routes) || got.Hash != want.Hash || got.CreatedBy != want.CreatedBy ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || got.Description != want.Description {
		t.Errorf("key record = %+v; want %+v", got, want)
	}
}

func testKeyRecords(t *testing.T, open Open) {
	st, _ := newStore(t, open, cache.Config{})
	s := keyStore(t, st)
	var notified atomic.Int32
	defer s.Subscribe(func(cache.Entry) { notified.Add(1) })()
	a, b, c := keyRecord("KeyA1", "ci-bot"), keyRecord("KeyB2", "ci-bot"), keyRecord("KeyC3", "other")
	for _, k := range []cache.KeyRecord{a, b, c} {
		mustPutKey(t, s, k)
	}
	got, ok := s.Key("KeyA1")
	if !ok {
		t.Fatal("Key(KeyA1) found nothing")
	}
	sameKey(t, got, a)
	if !got.LastUsedAt.Equal(t0) {
		t.Errorf("LastUsedAt = %v; want the creation time %v", got.LastUsedAt, t0)
	}
	if _, ok := s.Key("nope"); ok {
		t.Error("Key(nope) found a record")
	}
	mine, total := s.Keys("ci-bot")
	if len(mine) != 2 || total != 3 {
		t.Errorf("Keys(ci-bot) = %d records, total %d; want 2, 3", len(mine), total)
	}
	if all, _ := s.Keys(""); len(all) != 3 {
		t.Errorf("Keys(\"\") = %d records; want 3", len(all))
	}
	// A key record is not a revocation: never listed, never reported.
	if es := listAll(t, s, cache.ListOptions{}); len(es) != 0 {
		t.Errorf("List shows %d entries after storing keys; want 0", len(es))
	}
	if n := notified.Load(); n != 0 {
		t.Errorf("Subscribe saw %d entries for key records; want 0", n)
	}
	used := t0.Add(time.Hour)
	if err := s.TouchKey(context.Background(), "KeyA1", used); err != nil {
		t.Fatalf("TouchKey: %v", err)
	}
	if err := s.TouchKey(context.Background(), "KeyA1", t0.Add(time.Minute)); err != nil {
		t.Fatalf("TouchKey: %v", err)
	}
	got, _ = s.Key("KeyA1")
	sameKey(t, got, a)
	if !got.LastUsedAt.Equal(used) {
		t.Errorf("LastUsedAt after touches = %v; want the later %v", got.LastUsedAt, used)
	}
	if err := s.TouchKey(context.Background(), "nope", used); !errors.Is(err, cache.ErrKeyNotFound) {
		t.Errorf("TouchKey(nope) = %v; want ErrKeyNotFound", err)
	}
}

func testKeyCheck(t *testing.T, open Open) {
	st, clk := newStore(t, open, cache.Config{})
	s := keyStore(t, st)
	for _, id := range []string{"Live", "Gone", "Rotated", "Owned", "Idle"} {
		k := keyRecord(id, "owner-"+id)
		mustPutKey(t, s, k)
	}
	now := t0.Add(time.Minute)
	clk.Set(now)
	state, c := check(s, "Live", "secret-of-Live", now, nil)
	if state != cache.KeyValid || c.Owner != "owner-Live" || c.Scope != "read write:all" || c.Routes != "api" || !c.ExpiresAt.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("CheckKey(Live) = %s, %+v; want valid with its fields", state, c)
	}
	if state, c := check(s, "Live", "wrong", now, nil); state != cache.KeyUnknown || c.Owner != "" {
		t.Errorf("CheckKey with a wrong secret = %s (owner %q); want unknown and nothing filled", state, c.Owner)
	}
	if state, _ := check(s, "Nope", "secret-of-Nope", now, nil); state != cache.KeyUnknown {
		t.Errorf("CheckKey(unknown id) = %s; want unknown", state)
	}
	if state, _ := check(s, "Live", "secret-of-Live", t0.Add(24*time.Hour), nil); state != cache.KeyExpired {
		t.Errorf("CheckKey at expiry = %s; want expired", state)
	}

	mustRevoke(t, s, cache.Entry{Kind: cache.KindKey, Value: "Gone", RevokedAt: now, ExpiresAt: t0.Add(48 * time.Hour)})
	if state, _ := check(s, "Gone", "secret-of-Gone", now, nil); state != cache.KeyRevoked {
		t.Errorf("CheckKey(revoked) = %s; want revoked", state)
	}
	if !s.IsRevoked(&cache.Credential{KeyID: "Gone"}) || s.IsRevoked(&cache.Credential{KeyID: "Live"}) {
		t.Error("IsRevoked by KeyID does not match the key entries")
	}

	graceEnd := now.Add(time.Hour)
	stored := mustRevoke(t, s, cache.Entry{Kind: cache.KindKey, Value: "Rotated", RevokedAt: now, EffectiveAt: graceEnd, ExpiresAt: t0.Add(48 * time.Hour)})
	if !stored.EffectiveAt.Equal(graceEnd) || !stored.RevokedAt.Equal(graceEnd) {
		t.Errorf("scheduled entry stored as effective %v, revoked %v; want both %v", stored.EffectiveAt, stored.RevokedAt, graceEnd)
	}
	if state, _ := check(s, "Rotated", "secret-of-Rotated", now, nil); state != cache.KeyValid {
		t.Errorf("CheckKey in the grace = %s; want valid", state)
	}
	clk.Set(graceEnd)
	if state, _ := check(s, "Rotated", "secret-of-Rotated", graceEnd, nil); state != cache.KeyRevoked {
		t.Errorf("CheckKey after the grace = %s; want revoked", state)
	}
	// An immediate revocation and a scheduled one of one key are apart.
	if e, ok := s.Get("", cache.KindKey, "Rotated"); ok {
		t.Errorf("Get found an immediate entry %+v for a scheduled revocation", e)
	}
	if e, ok := s.Scheduled("", cache.KindKey, "Rotated"); !ok || !e.EffectiveAt.Equal(graceEnd) {
		t.Errorf("Scheduled(key Rotated) = %+v, %t; want the scheduled entry", e, ok)
	}
	if _, ok := s.Scheduled("", cache.KindKey, "Gone"); ok {
		t.Error("Scheduled found an entry for an immediate revocation")
	}
	if es := listAll(t, s, cache.ListOptions{Kind: cache.KindKey}); len(es) != 2 {
		t.Errorf("List(kind key) = %d entries; want 2 (one immediate, one scheduled)", len(es))
	}

	// A client revocation of the owner under a listed issuer kills the
	// keys created before it, not the ones created after.
	mustRevoke(t, s, cache.Entry{Issuer: iss2, Kind: cache.KindClient, Value: "owner-Owned", RevokedAt: now, ExpiresAt: t0.Add(48 * time.Hour)})
	if state, _ := check(s, "Owned", "secret-of-Owned", graceEnd, nil); state != cache.KeyRevoked {
		t.Errorf("CheckKey after a client revocation of the owner = %s; want revoked", state)
	}
	if state, _ := check(s, "Owned", "secret-of-Owned", graceEnd, func(c *cache.KeyCheck) { c.Issuers = []string{iss1} }); state != cache.KeyValid {
		t.Errorf("CheckKey with the revoking issuer not listed = %s; want valid", state)
	}
	later := keyRecord("Reissued", "owner-Owned")
	later.CreatedAt = now.Add(time.Minute)
	mustPutKey(t, s, later)
	if state, _ := check(s, "Reissued", "secret-of-Reissued", graceEnd, nil); state != cache.KeyValid {
		t.Errorf("CheckKey of a key created after the client revocation = %s; want valid", state)
	}

	idle := func(c *cache.KeyCheck) { c.MaxIdle = 2 * time.Hour }
	if state, _ := check(s, "Idle", "secret-of-Idle", t0.Add(2*time.Hour-time.Nanosecond), idle); state != cache.KeyValid {
		t.Errorf("CheckKey before max idle = %s; want valid", state)
	}
	if state, _ := check(s, "Idle", "secret-of-Idle", t0.Add(2*time.Hour), idle); state != cache.KeyIdle {
		t.Errorf("CheckKey at max idle = %s; want idle", state)
	}
	if err := s.TouchKey(context.Background(), "Idle", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if state, _ := check(s, "Idle", "secret-of-Idle", t0.Add(2*time.Hour), idle); state != cache.KeyValid {
		t.Errorf("CheckKey after a use = %s; want valid", state)
	}
}

func testKeyInvalid(t *testing.T, open Open) {
	st, _ := newStore(t, open, cache.Config{})
	s := keyStore(t, st)
	for name, mod := range map[string]func(*cache.KeyRecord){
		"empty id":         func(k *cache.KeyRecord) { k.ID = "" },
		"id not base62":    func(k *cache.KeyRecord) { k.ID = "a_b" },
		"empty owner":      func(k *cache.KeyRecord) { k.Owner = "" },
		"owner with space": func(k *cache.KeyRecord) { k.Owner = "a b" },
		"empty scope":      func(k *cache.KeyRecord) { k.Scopes = []string{""} },
		"long scopes":      func(k *cache.KeyRecord) { k.Scopes = []string{string(make([]byte, cache.MaxKeyScopeLen+1))} },
		"no expiry":        func(k *cache.KeyRecord) { k.ExpiresAt = time.Time{} },
		"expiry first":     func(k *cache.KeyRecord) { k.ExpiresAt = k.CreatedAt },
	} {
		k := keyRecord("Bad", "o")
		mod(&k)
		if err := s.PutKey(context.Background(), k); !errors.Is(err, cache.ErrInvalidKey) {
			t.Errorf("%s: PutKey error = %v; want ErrInvalidKey", name, err)
		}
	}
	if _, total := s.Keys(""); total != 0 {
		t.Errorf("%d records stored from invalid input; want 0", total)
	}
	for name, e := range map[string]cache.Entry{
		"key with issuer":    {Issuer: iss1, Kind: cache.KindKey, Value: "k", RevokedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		"scheduled jti":      {Issuer: iss1, Kind: cache.KindJTI, Value: "j", RevokedAt: t0, EffectiveAt: t0, ExpiresAt: t0.Add(time.Hour)},
		"expires before due": {Issuer: iss1, Kind: cache.KindClient, Value: "c", RevokedAt: t0, EffectiveAt: t0.Add(2 * time.Hour), ExpiresAt: t0.Add(time.Hour)},
	} {
		if _, err := s.Revoke(context.Background(), e); !errors.Is(err, cache.ErrInvalidEntry) {
			t.Errorf("%s: Revoke error = %v; want ErrInvalidEntry", name, err)
		}
	}
}

func testScheduledClient(t *testing.T, open Open) {
	st, clk := newStore(t, open, cache.Config{})
	s := keyStore(t, st)
	at := t0.Add(time.Hour)
	mustRevoke(t, s, cache.Entry{Issuer: iss1, Kind: cache.KindClient, Value: "ci-bot", RevokedAt: t0, EffectiveAt: at, ExpiresAt: at.Add(time.Hour)})
	before := &cache.Credential{Issuer: iss1, ClientID: "ci-bot", IssuedAt: t0.Add(-time.Minute)}
	between := &cache.Credential{Issuer: iss1, ClientID: "ci-bot", IssuedAt: t0.Add(30 * time.Minute)}
	after := &cache.Credential{Issuer: iss1, ClientID: "ci-bot", IssuedAt: at.Add(time.Second)}
	for _, tt := range []struct {
		now                   time.Time
		before, between, late bool
	}{
		{t0, false, false, false},
		{at.Add(-time.Nanosecond), false, false, false},
		{at, true, true, false},
		{at.Add(time.Minute), true, true, false},
	} {
		clk.Set(tt.now)
		if got := [3]bool{s.IsRevoked(before), s.IsRevoked(between), s.IsRevoked(after)}; got != [3]bool{tt.before, tt.between, tt.late} {
			t.Errorf("at %v: revoked (issued before, between, after) = %v; want %v", tt.now, got, [3]bool{tt.before, tt.between, tt.late})
		}
	}
	// An immediate revocation is not postponed by the schedule.
	clk.Set(t0)
	mustRevoke(t, s, cache.Entry{Issuer: iss1, Kind: cache.KindClient, Value: "ci-bot", RevokedAt: t0, ExpiresAt: at})
	if !s.IsRevoked(before) {
		t.Error("an immediate client revocation waits for a scheduled one")
	}
	if es := listAll(t, s, cache.ListOptions{Kind: cache.KindClient}); len(es) != 2 {
		t.Errorf("List(kind client) = %d entries; want 2", len(es))
	}
}

func testKeyReopen(t *testing.T, open Open) {
	cfg := cache.Config{Path: filepath.Join(t.TempDir(), "keys.db")}
	st, _ := newStore(t, open, cfg)
	s := keyStore(t, st)
	k := keyRecord("Durable", "ci-bot")
	mustPutKey(t, s, k)
	mustRevoke(t, s, cache.Entry{Kind: cache.KindKey, Value: "Durable", RevokedAt: t0, EffectiveAt: t0.Add(time.Hour), ExpiresAt: t0.Add(48 * time.Hour)})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st2, clk := newStore(t, open, cfg)
	s2 := keyStore(t, st2)
	got, ok := s2.Key("Durable")
	if !ok {
		t.Fatal("key record lost across a reopen")
	}
	sameKey(t, got, k)
	clk.Set(t0.Add(time.Hour))
	if state, _ := check(s2, "Durable", "secret-of-Durable", t0.Add(time.Hour), nil); state != cache.KeyRevoked {
		t.Errorf("scheduled key revocation after a reopen: CheckKey = %s; want revoked", state)
	}
}
