package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"github.com/oidcgate/oidcgate/clock/clocktest"
)

var testT0 = time.Date(2025, 2, 3, 4, 5, 6, 7, time.UTC)

// TestIndexAgainstMap drives the hash table, its deletion and compaction,
// and filter rebuilds through random revocations and sweeps, and compares
// every key with a plain map after each step. The colliding cases make every
// value of a kind hash alike (the test hook index.collide), so that only the
// comparison of kind, issuer and value bytes tells keys apart; the any-bytes
// cases use values of every length up to MaxValueLen and every byte, many of
// them prefixes of each other.
func TestIndexAgainstMap(t *testing.T) {
	for _, tc := range []struct {
		name     string
		collide  bool
		anyBytes bool
		keys     int
	}{
		{"keyed", false, false, 6000},
		{"colliding", true, false, 1500},
		{"any-bytes", false, true, 6000},
		{"any-bytes-colliding", true, true, 1500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			indexAgainstMap(t, tc.collide, tc.anyBytes, tc.keys)
		})
	}
}

// anyValue returns a value of random length (1 to MaxValueLen, short ones
// most often) and random bytes; every third one extends or cuts an earlier
// value by one byte.
func anyValue(rng *rand.Rand, earlier []string) string {
	if len(earlier) > 0 && rng.IntN(3) == 0 {
		v := earlier[rng.IntN(len(earlier))]
		if len(v) > 1 && rng.IntN(2) == 0 {
			return v[:len(v)-1]
		}
		if len(v) < MaxValueLen {
			return v + string(rune(rng.IntN(256)))[:1]
		}
	}
	n := 1 + rng.IntN(40)
	if rng.IntN(10) == 0 {
		n = 1 + rng.IntN(MaxValueLen)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return string(b)
}

func indexAgainstMap(t *testing.T, collide, anyBytes bool, nkeys int) {
	clk := clocktest.New(testT0)
	s := openBench(t, Config{Clock: clk})
	s.idx.collide = collide
	rng := rand.New(rand.NewPCG(1, 2))
	type key struct {
		kind          kindCode
		issuer, value string
	}
	keys := make([]key, nkeys)
	seen := map[key]bool{}
	var values []string
	for i := range keys {
		k := key{kind: kindCode(rng.IntN(5)) + codeJTI, issuer: fmt.Sprintf("https://iss%d.example", rng.IntN(3)), value: fmt.Sprintf("v%d", i)}
		if anyBytes {
			k.value = anyValue(rng, values)
			values = append(values, k.value)
		}
		if k.kind == codeSession {
			k.issuer = ""
		}
		if seen[k] {
			k.value += fmt.Sprint("#", i)
		}
		seen[k] = true
		keys[i] = k
	}
	want := map[key]row{}
	for step := range 40 {
		for range rng.IntN(4000) {
			k := keys[rng.IntN(len(keys))]
			at := clk.Now().Add(time.Duration(rng.IntN(1000)) * time.Second)
			in := row{kind: k.kind, issuer: k.issuer, value: k.value, revokedAt: at.UnixNano(),
				expiresAt: at.Add(time.Duration(1+rng.IntN(3600)) * time.Second).UnixNano(), reason: fmt.Sprint(rng.IntN(3))}
			if _, err := s.Revoke(context.Background(), in.entry()); err != nil {
				t.Fatal(err)
			}
			if old, ok := want[k]; ok {
				in = merge(old, in)
			}
			want[k] = in
		}
		clk.Advance(time.Duration(rng.IntN(2000)) * time.Second)
		removed := 0
		for k, r := range want {
			if r.expiresAt <= clk.Now().UnixNano() {
				delete(want, k)
				removed++
			}
		}
		if got := s.Sweep(); got != removed {
			t.Fatalf("step %d: Sweep() = %d; want %d", step, got, removed)
		}
		if got := s.Len(); got != len(want) {
			t.Fatalf("step %d: Len() = %d; want %d", step, got, len(want))
		}
		for _, k := range keys {
			got, ok := s.idx.get(k.kind, k.issuer, k.value)
			w, wok := want[k]
			if ok != wok || got != w {
				t.Fatalf("step %d: get(%v) = %+v, %t; want %+v, %t", step, k, got, ok, w, wok)
			}
			c := &Credential{Issuer: k.issuer, IssuedAt: time.Unix(0, w.revokedAt)}
			switch k.kind {
			case codeJTI:
				c.JTI = k.value
			case codeSID:
				c.SID = k.value
			case codeSub:
				c.Sub = k.value
			case codeClient:
				c.ClientID = k.value
			case codeSession:
				c.SessionID = k.value
			}
			if got := s.IsRevoked(c); got != wok {
				t.Fatalf("step %d: IsRevoked(%+v) = %t; want %t", step, c, got, wok)
			}
		}
	}
}

func TestFilterFalsePositiveRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	f := newFilter(1 << 16)
	added := make([]uint64, f.capacity)
	for i := range added {
		added[i] = rng.Uint64()
		f.add(added[i])
	}
	for _, h := range added {
		if f.test(h) != 1 {
			t.Fatalf("test(%#x) = 0 for an added hash", h)
		}
	}
	const probes = 1 << 20
	positives := 0
	for range probes {
		positives += int(f.test(rng.Uint64()))
	}
	if rate := float64(positives) / probes; rate > 0.002 {
		t.Errorf("false-positive rate at capacity = %.5f; want <= 0.002", rate)
	}
}

func TestFilterGrowsAndShrinks(t *testing.T) {
	clk := clocktest.New(testT0)
	s := openBench(t, Config{Clock: clk})
	const n = 5000
	for i := range n {
		e := Entry{Kind: KindSession, Value: fmt.Sprint(i), RevokedAt: testT0, ExpiresAt: testT0.Add(time.Minute)}
		if i < 100 {
			e.ExpiresAt = testT0.Add(time.Hour)
		}
		if _, err := s.Revoke(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	grown := s.idx.filter.Load().capacity
	if grown < n {
		t.Fatalf("filter capacity %d after %d inserts; want >= %d", grown, n, n)
	}
	clk.Set(testT0.Add(time.Minute))
	if got := s.Sweep(); got != n-100 {
		t.Fatalf("Sweep() = %d; want %d", got, n-100)
	}
	if got := s.idx.filter.Load().capacity; got >= grown {
		t.Errorf("filter capacity %d after sweeping most entries; want < %d", got, grown)
	}
	for i := range n {
		if got, want := s.IsRevoked(&Credential{SessionID: fmt.Sprint(i)}), i < 100; got != want {
			t.Errorf("IsRevoked(session %d) = %t; want %t", i, got, want)
		}
	}
}

func validRows() []row {
	long := strings.Repeat("v", MaxValueLen)
	text := strings.Repeat("t", MaxTextLen)
	return []row{
		{kind: codeJTI, issuer: "https://idp.example", value: "j", revokedAt: 1, expiresAt: 2},
		{kind: codeSession, value: "sess\x00ü", revokedAt: -5, expiresAt: 5, reason: "logout", initiator: "admin:ops"},
		{kind: codeClient, issuer: long, value: long, revokedAt: testT0.UnixNano(), expiresAt: testT0.Add(time.Hour).UnixNano(), reason: text, initiator: text},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, r := range validRows() {
		k, v := encodeKey(r.kind, r.issuer, r.value), encodeValue(r)
		raw, err := decodeRecord(k, v)
		if err != nil {
			t.Fatalf("decodeRecord(encode(%+v)): %v", r, err)
		}
		if got := raw.row(); got != r {
			t.Errorf("round trip = %+v; want %+v", got, r)
		}
		if err := validate(r.entry()); err != nil {
			t.Errorf("validate(%+v): %v", r, err)
		}
		if got := rowOf(r.entry()); got != r {
			t.Errorf("rowOf(entry()) = %+v; want %+v", got, r)
		}
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	good := validRows()[1]
	k, v := encodeKey(good.kind, good.issuer, good.value), encodeValue(good)
	with := func(b []byte, i int, c byte) []byte {
		b = bytes.Clone(b)
		b[i] = c
		return b
	}
	tests := []struct {
		name string
		k, v []byte
	}{
		{"empty key", nil, v},
		{"unknown kind", with(k, 0, byte(numCodes)), v},
		{"kind zero", with(k, 0, 0), v},
		{"issuer length past end", with(k, 2, 200), v},
		{"session with issuer", with(k, 2, 1), v},
		{"jti without issuer", with(k, 0, byte(codeJTI)), v},
		{"no value", k[:keyHeader], v},
		{"empty value", nil, nil},
		{"short value", k, v[:valueFixed-1]},
		{"wrong version", k, with(v, 0, 2)},
		{"expires before revoked", k, with(v, 9, 0x80)},
		{"reason length past end", k, with(v, 17, 0xff)},
		{"trailing byte", k, append(bytes.Clone(v), 0)},
		{"truncated initiator", k, v[:len(v)-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeRecord(tt.k, tt.v); !errors.Is(err, ErrCorrupt) {
				t.Errorf("decodeRecord error = %v; want ErrCorrupt", err)
			}
		})
	}
}

func TestOpenCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := validRows()[0]
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketName)
		if err != nil {
			return err
		}
		if err := b.Put(encodeKey(good.kind, good.issuer, good.value), encodeValue(good)); err != nil {
			return err
		}
		return b.Put([]byte("garbage"), []byte("value"))
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Path: path}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Open(file with a garbage record) error = %v; want ErrCorrupt", err)
	}
}

// FuzzDecodeEntry feeds the bbolt record decoder arbitrary keys and values:
// it must never panic, must refuse with ErrCorrupt, and whatever it accepts
// must be a valid entry that encodes back to the same bytes.
func FuzzDecodeEntry(f *testing.F) {
	for _, r := range validRows() {
		f.Add(encodeKey(r.kind, r.issuer, r.value), encodeValue(r))
	}
	f.Add([]byte{}, []byte{})
	f.Add([]byte{1, 0xff, 0xff}, []byte{1})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		raw, err := decodeRecord(k, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		r := raw.row()
		if err := validate(r.entry()); err != nil {
			t.Fatalf("decodeRecord accepted an invalid entry %+v: %v", r, err)
		}
		if !bytes.Equal(encodeKey(r.kind, r.issuer, r.value), k) || !bytes.Equal(encodeValue(r), v) {
			t.Fatalf("decodeRecord accepted a non-canonical record %q %q", k, v)
		}
	})
}

// TestRecordHasNoPointers pins the layout the garbage collector does not
// scan: a record is 32 bytes of plain numbers, and so is everything the
// shards hold per entry (slots, records, arena bytes).
func TestRecordHasNoPointers(t *testing.T) {
	if got := unsafe.Sizeof(record{}); got != 32 {
		t.Errorf("sizeof(record) = %d; want 32", got)
	}
	rt := reflect.TypeFor[record]()
	for i := range rt.NumField() {
		switch f := rt.Field(i); f.Type.Kind() {
		case reflect.Int64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		default:
			t.Errorf("record.%s is a %s; want a plain number", f.Name, f.Type)
		}
	}
}

// TestIndexInternOverflow revokes more distinct issuers and notes than the
// intern tables hold, so that the rest live in the arena, then merges new
// notes in (rewriting arena bytes), sweeps half, and checks every entry
// through Get, IsRevoked and List, before and after a reload from the file.
func TestIndexInternOverflow(t *testing.T) {
	clk := clocktest.New(testT0)
	path := filepath.Join(t.TempDir(), "revocations.db")
	s, err := Open(Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = maxInterned + 1000
	want := make(map[string]Entry, n)
	entries := make([]Entry, n)
	for i := range n {
		e := Entry{Issuer: fmt.Sprintf("https://tenant-%d.example", i), Kind: KindSub, Value: fmt.Sprint("user-", i%7),
			RevokedAt: testT0, ExpiresAt: testT0.Add(time.Hour), Reason: fmt.Sprint("reason ", i), Initiator: "admin:ops"}
		if i%2 == 0 {
			e.ExpiresAt = testT0.Add(time.Minute)
		}
		entries[i] = e
	}
	// Concurrent callers share bbolt transactions: one fsync per batch.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 64 {
		wg.Go(func() {
			for i := w; i < n; i += 64 {
				e := entries[i]
				if _, err := s.Revoke(ctx, e); err != nil {
					errs <- err
					return
				}
				// A later revocation brings a new note; an earlier one
				// changes nothing.
				if i%3 == 0 {
					e.RevokedAt, e.Reason = testT0.Add(time.Second), fmt.Sprint("again ", i)
					older := e
					older.RevokedAt, older.Reason = testT0, "older"
					for _, e := range []Entry{e, older} {
						if _, err := s.Revoke(ctx, e); err != nil {
							errs <- err
							return
						}
					}
					entries[i] = e
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, e := range entries {
		want[e.Issuer] = e
	}
	check := func(s *Store, stage string) {
		t.Helper()
		if got := s.Len(); got != len(want) {
			t.Fatalf("%s: Len() = %d; want %d", stage, got, len(want))
		}
		for _, e := range want {
			got, ok := s.Get(e.Issuer, e.Kind, e.Value)
			if !ok || got.Reason != e.Reason || got.Initiator != e.Initiator || !got.RevokedAt.Equal(e.RevokedAt) || !got.ExpiresAt.Equal(e.ExpiresAt) {
				t.Fatalf("%s: Get(%s) = %+v, %t; want %+v", stage, e.Issuer, got, ok, e)
			}
			if !s.IsRevoked(&Credential{Issuer: e.Issuer, Sub: e.Value, IssuedAt: testT0}) {
				t.Fatalf("%s: IsRevoked(%s, %s) = false", stage, e.Issuer, e.Value)
			}
			if s.IsRevoked(&Credential{Issuer: e.Issuer + "/", Sub: e.Value, IssuedAt: testT0}) {
				t.Fatalf("%s: IsRevoked(%s/, %s) = true", stage, e.Issuer, e.Value)
			}
		}
		listed := 0
		cursor := ""
		for {
			page, next, err := s.List(ctx, ListOptions{Limit: 1000, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if w, ok := want[e.Issuer]; !ok || e.Reason != w.Reason {
					t.Fatalf("%s: List gave %+v; want %+v", stage, e, w)
				}
			}
			listed += len(page)
			if cursor = next; cursor == "" {
				break
			}
		}
		if listed != len(want) {
			t.Fatalf("%s: List gave %d entries; want %d", stage, listed, len(want))
		}
	}
	check(s, "revoked")
	clk.Advance(time.Minute)
	for iss, e := range want {
		if !e.ExpiresAt.After(clk.Now()) {
			delete(want, iss)
		}
	}
	if got := s.Sweep(); got != n/2 {
		t.Fatalf("Sweep() = %d; want %d", got, n/2)
	}
	check(s, "swept")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Config{Path: path, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s, "reloaded")
}
