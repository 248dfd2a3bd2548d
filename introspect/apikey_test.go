package introspect_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
)

var keyT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// countingStore counts the lookups that reach the store.
type countingStore struct {
	*cache.Store
	checks atomic.Int64
}

func (s *countingStore) CheckKey(c *cache.KeyCheck) cache.KeyState {
	s.checks.Add(1)
	return s.Store.CheckKey(c)
}

func newKeyStore(t testing.TB) *cache.Store {
	t.Helper()
	s, err := cache.Open(cache.Config{Clock: clocktest.New(keyT0)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// putNewKey creates a key for owner in s and returns it.
func putNewKey(t testing.TB, s *cache.Store, owner string, scopes ...string) (key, id string) {
	t.Helper()
	key, id, hash, err := introspect.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	err = s.PutKey(context.Background(), cache.KeyRecord{
		ID: id, Owner: owner, Scopes: scopes, Hash: hash, CreatedBy: "admin:test",
		CreatedAt: keyT0, ExpiresAt: keyT0.Add(24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	return key, id
}

func TestAPIKeyFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		key, id, hash, err := introspect.NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		if len(key) != introspect.APIKeyLen || !strings.HasPrefix(key, "oag_"+id+"_") {
			t.Fatalf("key %q (len %d) does not start with oag_%s_ or is not %d long", key, len(key), id, introspect.APIKeyLen)
		}
		if seen[id] {
			t.Fatalf("id %s handed out twice", id)
		}
		seen[id] = true
		gotID, gotHash, ok := introspect.ParseAPIKey(key)
		if !ok || gotID != id || gotHash != hash {
			t.Fatalf("ParseAPIKey(new key) = %q, %x, %t; want %q, %x, true", gotID, gotHash, ok, id, hash)
		}
		secret := key[len("oag_")+len(id)+1 : len(key)-6]
		if sha256.Sum256([]byte(secret)) != hash || len(secret) != 43 {
			t.Fatalf("hash is not the SHA-256 of the 43-character secret")
		}
	}
}

// badKeys are malformed variants of a valid key.
func badKeys(key string) map[string]string {
	flip := func(i int) string {
		b := []byte(key)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	return map[string]string{
		"empty":                "",
		"prefix only":          "oag_",
		"wrong prefix":         "oak_" + key[4:],
		"upper-case prefix":    "OAG_" + key[4:],
		"truncated":            key[:len(key)-1],
		"over-long":            key + "0",
		"wrong checksum":       flip(len(key) - 1),
		"secret changed":       flip(30),
		"id changed":           flip(6),
		"non-base62 in secret": key[:30] + "-" + key[31:],
		"non-base62 in sum":    key[:len(key)-1] + "+",
		"separator moved":      key[:19] + "_" + key[20:],
		"NUL":                  key[:40] + "\x00" + key[41:],
		"JWT":                  "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
	}
}

func TestAPIKeyMalformedNeverReachesStore(t *testing.T) {
	s := &countingStore{Store: newKeyStore(t)}
	key, _ := putNewKey(t, s.Store, "ci-bot", "read")
	k, err := introspect.NewAPIKeys(introspect.KeysConfig{Store: s, Clock: clocktest.New(keyT0)})
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range badKeys(key) {
		t.Run(name, func(t *testing.T) {
			before := s.checks.Load()
			var c cache.KeyCheck
			if err := k.Check(bad, &c); !errors.Is(err, introspect.ErrInvalidToken) {
				t.Errorf("Check = %v; want ErrInvalidToken", err)
			}
			if n := s.checks.Load() - before; n != 0 {
				t.Errorf("store asked %d times; want 0", n)
			}
		})
	}
	if _, err := k.Verify(key); err != nil {
		t.Fatalf("Verify(valid key) = %v", err)
	}
	if s.checks.Load() != 1 {
		t.Errorf("store asked %d times for one valid key; want 1", s.checks.Load())
	}
}

func TestAPIKeyVerify(t *testing.T) {
	s := newKeyStore(t)
	key, id := putNewKey(t, s, "ci-bot", "read", "deploy")
	now := keyT0.Add(time.Minute)
	k, err := introspect.NewAPIKeys(introspect.KeysConfig{Store: s, Clock: clocktest.New(now), Issuers: []string{"https://idp.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.Verify(key)
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if c.Subject != "ci-bot" || c.ClientID != "ci-bot" || !c.HasScopes([]string{"read", "deploy"}) || c.JTI != id || c.Issuer != "" {
		t.Errorf("claims = %+v; want sub = client_id = ci-bot, scopes read deploy, jti = id", c)
	}
	if tt, _ := c.Claim("token_type"); tt != "api_key" {
		t.Errorf("token_type = %q; want api_key", tt)
	}
	// Wrong secret of a real id.
	other, _, _, _ := introspect.NewAPIKey()
	forged := withChecksum("oag_" + id + other[len("oag_")+16:len(other)-6])
	if _, err := k.Verify(forged); !errors.Is(err, introspect.ErrKeyRefused) {
		t.Errorf("Verify(real id, other secret) = %v; want ErrKeyRefused", err)
	}
	if _, err := s.Revoke(context.Background(), cache.Entry{Issuer: "https://idp.example.com", Kind: cache.KindClient, Value: "ci-bot", RevokedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Verify(key); !errors.Is(err, introspect.ErrKeyRefused) {
		t.Errorf("Verify after a client revocation of the owner = %v; want ErrKeyRefused", err)
	}
}

// withChecksum appends body's checksum, as a key generator would.
func withChecksum(body string) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	c := crc32.ChecksumIEEE([]byte(body))
	var sum [6]byte
	for i := 5; i >= 0; i-- {
		sum[i] = digits[c%62]
		c /= 62
	}
	return body + string(sum[:])
}

func FuzzParseAPIKey(f *testing.F) {
	key, _, _, err := introspect.NewAPIKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(key)
	for _, b := range badKeys(key) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, hash, ok := introspect.ParseAPIKey(s)
		if !ok {
			if id != "" || hash != ([32]byte{}) {
				t.Fatalf("refused %q but returned %q, %x", s, id, hash)
			}
			return
		}
		if len(s) != introspect.APIKeyLen || !strings.HasPrefix(s, "oag_"+id+"_") || len(id) != 16 {
			t.Fatalf("accepted %q with id %q", s, id)
		}
		if sha256.Sum256([]byte(s[21:64])) != hash {
			t.Fatalf("hash of %q is not the secret's", s)
		}
	})
}

// BenchmarkAPIKeyCheck verifies one key among 1,000,000 stored: parse,
// checksum, SHA-256, lookup, constant-time compare, revocation and client
// checks. The bar is 500 ns and 0 allocations.
func BenchmarkAPIKeyCheck(b *testing.B) {
	s := newKeyStore(b)
	ctx := context.Background()
	var key string
	const n = 1_000_000
	for i := range n {
		id := fmt.Sprintf("bench%011d", i)
		rec := cache.KeyRecord{
			ID: id, Owner: fmt.Sprintf("svc-%d", i%1000), Scopes: []string{"read"}, Hash: sha256.Sum256([]byte(id)),
			CreatedAt: keyT0, ExpiresAt: keyT0.Add(24 * time.Hour),
		}
		if i == n/2 {
			k, kid, hash, err := introspect.NewAPIKey()
			if err != nil {
				b.Fatal(err)
			}
			key, rec.ID, rec.Hash = k, kid, hash
		}
		if err := s.PutKey(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	k, err := introspect.NewAPIKeys(introspect.KeysConfig{Store: s, Issuers: []string{"https://idp.example.com"}, Clock: clocktest.New(keyT0.Add(time.Minute))})
	if err != nil {
		b.Fatal(err)
	}
	// Let the collector finish with the loaded heap before timing.
	runtime.GC()
	b.ReportAllocs()
	var c cache.KeyCheck
	start := cpuTime(b)
	for b.Loop() {
		if err := k.Check(key, &c); err != nil {
			b.Fatal(err)
		}
	}
	// On a shared machine wall time counts other processes' turns too;
	// the process's CPU time per check does not.
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
