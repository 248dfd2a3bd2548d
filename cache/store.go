package cache

import (
	"container/heap"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/oidcgate/oidcgate/clock"
)

// ErrInvalidListOptions is wrapped by List's error for an unknown kind or a
// cursor it did not issue.
var ErrInvalidListOptions = errors.New("cache: invalid list options")

// Config configures a Store. The zero value is a memory-only store with no
// clock skew.
type Config struct {
	// Path of the bbolt file; "" keeps entries in memory only (nothing
	// persisted). The file is created if missing.
	Path string `yaml:"path"`
	// ClockSkew is added to RevokedAt when judging issued-before kinds (sub,
	// client): revoked when cred.IssuedAt <= RevokedAt + ClockSkew. 0 means
	// none.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// SweepInterval between removals of expired entries in Run; 0 means 1
	// minute.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// Clock is the clock of expiry, sweeps and replica records; nil means
	// the wall clock.
	Clock clock.Clock `yaml:"-"`
	// Logger receives load and sweep events (never entry values); nil
	// discards them.
	Logger *slog.Logger `yaml:"-"`
}

// Validate reports every problem of c at once. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	if c.ClockSkew < 0 {
		errs = append(errs, errors.New("clock_skew: must not be negative"))
	}
	if c.SweepInterval < 0 {
		errs = append(errs, errors.New("sweep_interval: must not be negative"))
	}
	return errors.Join(errs...)
}

// The bbolt bucket holding the entries, and how the file is used.
var bucketName = []byte("revocations")

const (
	defaultSweepInterval = time.Minute
	// lockTimeout bounds the wait for another process's lock on the file.
	lockTimeout = 5 * time.Second
	// batchDelay is how long db.Batch waits to gather concurrent Revoke
	// calls into one fsync'd transaction (bbolt's default is 10ms).
	batchDelay = time.Millisecond
	// sweepTxSize bounds the deletions of one sweep transaction.
	sweepTxSize = 10000
)

// Store is the exact revocation store: every entry stays until it expires
// and is swept; nothing is evicted. Lookups are answered from memory; with a
// Path, every entry is in the bbolt file before Revoke returns and is loaded
// again by Open. Its methods are safe for concurrent use.
type Store struct {
	idx  *index
	now  func() time.Time
	clk  clock.Clock
	skew int64
	cfg  Config
	log  *slog.Logger
	db   *bolt.DB // nil in memory-only mode

	// mu serialises mutations of idx (see index).
	mu sync.Mutex
	// life guards closed and db: operations that use the file hold it for
	// reading, Close for writing.
	life   sync.RWMutex
	closed bool
	done   chan struct{}

	subs subscribers
	seen replayCache
	// live is RecordSID's memory: liveKey -> until (Unix ns).
	live    replayCache
	uids    userIDs
	emails  replayCache // RecordEmail's memory: emailKey -> until (Unix ns)
	targets targetTable

	// id is this replica's id (see ReplicaID).
	id string
}

// Open validates cfg, applies defaults and, with a Path, opens (or creates)
// the bbolt file, loads every unexpired entry and deletes the expired ones.
// A record that does not decode fails Open with ErrCorrupt.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = defaultSweepInterval
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		idx:  newIndex(),
		now:  cfg.Clock.Now,
		clk:  cfg.Clock,
		skew: int64(cfg.ClockSkew),
		cfg:  cfg,
		log:  cfg.Logger,
		done: make(chan struct{}),
		seen: replayCache{m: make(map[string]int64)},
		live: replayCache{m: make(map[string]int64)},
		uids: userIDs{m: make(map[string]userID)},
		id:   newReplicaID(),
	}
	s.targets.m = make(map[string]Target)
	s.emails.m = make(map[string]int64)
	if cfg.Path == "" {
		return s, nil
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: lockTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", cfg.Path, err)
	}
	db.MaxBatchDelay = batchDelay
	s.db = db
	if err := s.load(); err != nil {
		return nil, errors.Join(fmt.Errorf("cache: open %s: %w", cfg.Path, err), db.Close())
	}
	if err := s.loadReplicaID(); err != nil {
		return nil, errors.Join(fmt.Errorf("cache: open %s: replica id: %w", cfg.Path, err), db.Close())
	}
	return s, nil
}

// load fills the index from the file and deletes expired records.
func (s *Store) load() error {
	start := s.clk.Now()
	now := start.UnixNano()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketName); err != nil {
			return err
		}
		if err := s.loadTargets(tx, time.Unix(0, now)); err != nil {
			return err
		}
		if err := s.loadUserIDs(tx, now); err != nil {
			return err
		}
		return s.loadSeen(tx, now)
	}); err != nil {
		return err
	}
	var expired [][]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	l := loader{x: s.idx}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketName).ForEach(func(k, v []byte) error {
			r, err := decodeRecord(k, v)
			if err != nil {
				return err
			}
			if r.expiresAt <= now {
				expired = append(expired, append([]byte(nil), k...))
				return nil
			}
			l.add(r)
			return nil
		})
	})
	if err != nil {
		return err
	}
	l.finish()
	for len(expired) > 0 {
		n := min(len(expired), sweepTxSize)
		if err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketName)
			for _, k := range expired[:n] {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		expired = expired[n:]
	}
	s.log.Info("revocation store loaded", "path", s.cfg.Path, "entries", s.idx.count.Load(), "duration", clock.Since(s.clk, start))
	return nil
}

// Revoke stores e, merged with any entry of the same key: the later
// RevokedAt and the later ExpiresAt win, with the reason and initiator of the
// later revocation, so revoking again is idempotent and never weakens an
// entry. With a Path the result is fsync'd to the file before Revoke
// returns; concurrent calls share one transaction (bbolt's Batch). Then it
// calls the Subscribe functions with the stored entry. It returns the stored
// entry (times in UTC), an error wrapping ErrInvalidEntry for bad input
// (nothing is stored), or ErrClosed after Close.
func (s *Store) Revoke(ctx context.Context, e Entry) (Entry, error) {
	return s.revoke(ctx, e, nil)
}

// revoke is Revoke; also, when not nil, runs in the same transaction as the
// entry's write, with the entry's key and the merged result, so that a
// backend can record more (the Redis outbox) atomically with it.
func (s *Store) revoke(ctx context.Context, e Entry, also func(tx *bolt.Tx, k []byte, stored row) error) (Entry, error) {
	if err := validate(e); err != nil {
		return Entry{}, fmt.Errorf("cache: revoke: %w", err)
	}
	out, err := s.write(ctx, rowOf(e), also)
	if err != nil {
		return Entry{}, fmt.Errorf("cache: revoke: %w", err)
	}
	e = out.entry()
	s.subs.notify(e)
	return e, nil
}

// write stores a validated row as revoke does (file, then memory) and
// returns it as stored. It notifies no one.
func (s *Store) write(ctx context.Context, in row, also func(tx *bolt.Tx, k []byte, stored row) error) (row, error) {
	if err := ctx.Err(); err != nil {
		return row{}, err
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return row{}, ErrClosed
	}
	if s.db != nil {
		k := encodeKey(in.kind, in.issuer, in.value)
		var stored row
		// Batch may run fn more than once; fn only reads and writes the tx.
		err := s.db.Batch(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketName)
			stored = in
			if old := b.Get(k); old != nil {
				r, err := decodeRecord(k, old)
				if err != nil {
					return err
				}
				stored = merge(r.row(), in)
			}
			if err := b.Put(k, encodeValue(stored)); err != nil {
				return err
			}
			if also != nil {
				return also(tx, k, stored)
			}
			return nil
		})
		if err != nil {
			return row{}, fmt.Errorf("persist: %w", err)
		}
		in = stored
	}
	// Memory is merged again: concurrent Revokes of one key may reach this
	// point in any order, and merge makes the result the same.
	s.mu.Lock()
	out := s.idx.upsert(in)
	s.mu.Unlock()
	return out, nil
}

// IsRevoked reports whether c is revoked: its (Issuer, JTI) or (Issuer, SID)
// is, or its SessionID is, or (Issuer, Sub) or (Issuer, ClientID) was revoked
// at or after c.IssuedAt - ClockSkew, or its KeyID is (a scheduled client or
// key revocation only once its EffectiveAt has come). Empty fields are not checked; a zero
// IssuedAt counts as issued before every revocation. A nil c is revoked (fail
// closed). It does no I/O and does not allocate, and keeps answering from
// memory after Close.
func (s *Store) IsRevoked(c *Credential) bool {
	if c == nil {
		return true
	}
	x := s.idx
	f := x.filter.Load()
	// Hash and probe every present field before acting on any probe: the
	// probes' loads do not depend on each other, so their cache misses
	// overlap. Bit i of maybe says field i may be revoked.
	var h [6]uint64
	var maybe uint
	if c.JTI != "" {
		h[0] = x.keyHash(codeJTI, c.JTI)
		maybe |= f.test(h[0])
	}
	if c.SID != "" {
		h[1] = x.keyHash(codeSID, c.SID)
		maybe |= f.test(h[1]) << 1
	}
	if c.Sub != "" {
		h[2] = x.keyHash(codeSub, c.Sub)
		maybe |= f.test(h[2]) << 2
	}
	if c.ClientID != "" {
		h[3] = x.keyHash(codeClient, c.ClientID)
		maybe |= f.test(h[3]) << 3
	}
	if c.SessionID != "" {
		h[4] = x.keyHash(codeSession, c.SessionID)
		maybe |= f.test(h[4]) << 4
	}
	if c.KeyID != "" {
		h[5] = x.keyHash(codeKey, c.KeyID)
		maybe |= f.test(h[5]) << 5
	}
	if maybe == 0 {
		return false
	}
	return s.isRevokedExact(c, maybe, &h)
}

// isRevokedExact settles the fields the filter could not rule out.
func (s *Store) isRevokedExact(c *Credential, maybe uint, h *[6]uint64) bool {
	x := s.idx
	if maybe&1 != 0 {
		if _, ok := x.revokedAt(codeJTI, c.Issuer, c.JTI, h[0]); ok {
			return true
		}
	}
	if maybe&2 != 0 {
		if _, ok := x.revokedAt(codeSID, c.Issuer, c.SID, h[1]); ok {
			return true
		}
	}
	if maybe&4 != 0 {
		if at, ok := x.revokedAt(codeSub, c.Issuer, c.Sub, h[2]); ok && s.issuedBefore(c.IssuedAt, at) {
			return true
		}
	}
	if maybe&8 != 0 {
		if at, ok := x.revokedAt(codeClient, c.Issuer, c.ClientID, h[3]); ok && s.issuedBefore(c.IssuedAt, at) {
			return true
		}
		// A scheduled client revocation is in force from its time on.
		if at, ok := x.revokedAt(codeClientAt, c.Issuer, c.ClientID, h[3]); ok && at <= s.now().UnixNano() && s.issuedBefore(c.IssuedAt, at) {
			return true
		}
	}
	if maybe&16 != 0 {
		if _, ok := x.revokedAt(codeSession, "", c.SessionID, h[4]); ok {
			return true
		}
	}
	if maybe&32 != 0 {
		if _, ok := x.revokedAt(codeKey, "", c.KeyID, h[5]); ok {
			return true
		}
		// The old key of a rotation dies when the grace ends.
		if at, ok := x.revokedAt(codeKeyAt, "", c.KeyID, h[5]); ok && at <= s.now().UnixNano() {
			return true
		}
	}
	return false
}

// issuedBefore reports iat <= revokedAt + skew, saturating instead of
// overflowing; a zero iat or one before 1678 is issued before everything.
func (s *Store) issuedBefore(iat time.Time, revokedAt int64) bool {
	if iat.IsZero() || iat.Before(minTime) {
		return true
	}
	if iat.After(maxTime) {
		return false
	}
	limit := revokedAt + s.skew
	if limit < revokedAt {
		limit = math.MaxInt64
	}
	return iat.UnixNano() <= limit
}

// Get returns the entry of (issuer, kind, value), also one that has expired
// but not yet been swept. It keeps answering after Close.
func (s *Store) Get(issuer string, kind Kind, value string) (Entry, bool) {
	c := codeOf(kind)
	if c == 0 {
		return Entry{}, false
	}
	r, ok := s.idx.get(c, issuer, value)
	if !ok {
		return Entry{}, false
	}
	return r.entry(), true
}

// Len returns the number of entries, expired ones not yet swept included.
func (s *Store) Len() int { return int(s.idx.count.Load()) }

// List returns one page of the entries matching o (scheduled ones included,
// after the immediate ones of every kind; API key records never), ordered
// by (Issuer, Kind, Value), and the cursor of the next page ("" on the last page). A cursor
// stays valid while entries are added or removed: the next page starts after
// the last key returned. It returns an error wrapping ErrInvalidListOptions
// for an unknown kind or a foreign cursor, and ErrClosed after Close.
func (s *Store) List(ctx context.Context, o ListOptions) ([]Entry, string, error) {
	var kind kindCode
	if o.Kind != "" {
		if kind = codeOf(o.Kind); kind == 0 {
			return nil, "", fmt.Errorf("cache: list: %w: unknown kind %q", ErrInvalidListOptions, o.Kind)
		}
	}
	var after *row
	if o.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(o.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("cache: list: %w: cursor: %w", ErrInvalidListOptions, err)
		}
		k, iss, val, err := decodeKey(b)
		if err != nil {
			return nil, "", fmt.Errorf("cache: list: %w: cursor: %w", ErrInvalidListOptions, err)
		}
		after = &row{kind: k, issuer: string(iss), value: string(val)}
	}
	limit := o.Limit
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	s.life.RLock()
	closed := s.closed
	s.life.RUnlock()
	if closed {
		return nil, "", ErrClosed
	}
	// Keep the limit+1 smallest matching keys after the cursor: one more
	// than the page tells whether another page follows.
	page := &rowHeap{}
	for i := range s.idx.shards {
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("cache: list: %w", err)
		}
		sh := &s.idx.shards[i]
		sh.mu.RLock()
		sh.each(func(r *record) bool {
			if r.kind == codeAPIKey || (o.Issuer != "" && !s.idx.issuerIs(sh, r, o.Issuer)) || (kind != 0 && r.kind.base() != kind) ||
				(o.Value != "" && string(sh.arena.value(r)) != o.Value) {
				return true
			}
			// Compared in place: only a record that enters the page is
			// copied out of the arena.
			if after != nil && s.idx.compareKey(sh, r, *after) <= 0 {
				return true
			}
			if page.Len() <= limit {
				heap.Push(page, s.idx.row(sh, r))
			} else if s.idx.compareKey(sh, r, (*page)[0]) < 0 {
				(*page)[0] = s.idx.row(sh, r)
				heap.Fix(page, 0)
			}
			return true
		})
		sh.mu.RUnlock()
	}
	rows := make([]row, page.Len())
	for i := len(rows) - 1; i >= 0; i-- {
		rows[i] = heap.Pop(page).(row)
	}
	var next string
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		next = base64.RawURLEncoding.EncodeToString(encodeKey(last.kind, last.issuer, last.value))
	}
	out := make([]Entry, len(rows))
	for i, r := range rows {
		out[i] = r.entry()
	}
	return out, next, nil
}

// compareKeys orders rows by (issuer, kind, value).
func compareKeys(a, b row) int {
	switch {
	case a.issuer != b.issuer:
		return cmpString(a.issuer, b.issuer)
	case a.kind != b.kind:
		return int(a.kind) - int(b.kind)
	}
	return cmpString(a.value, b.value)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// rowHeap is a max-heap of rows by key.
type rowHeap []row

func (h rowHeap) Len() int           { return len(h) }
func (h rowHeap) Less(i, j int) bool { return compareKeys(h[i], h[j]) > 0 }
func (h rowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rowHeap) Push(x any)        { *h = append(*h, x.(row)) }
func (h *rowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Sweep removes the entries with ExpiresAt <= Now() from memory and from the
// file, and returns how many it removed; it also forgets the FirstSeen keys
// whose time has passed (not counted). An entry that a concurrent Revoke
// extended is kept. If the file cannot be written the entries stay (they
// still revoke) and the error is logged. After Close it does nothing.
func (s *Store) Sweep() int {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return 0
	}
	now := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	removed := 0
	for i := range s.idx.shards {
		sh := &s.idx.shards[i]
		var keys []row
		sh.mu.RLock()
		sh.each(func(r *record) bool {
			if r.expiresAt <= now {
				keys = append(keys, row{kind: r.kind, issuer: s.idx.issuer(sh, r), value: string(sh.arena.value(r))})
			}
			return true
		})
		sh.mu.RUnlock()
		for len(keys) > 0 {
			n := min(len(keys), sweepTxSize)
			if err := s.deleteExpired(keys[:n], now); err != nil {
				s.log.Error("revocation sweep failed; expired entries kept", "path", s.cfg.Path, "err", err)
				return removed
			}
			removed += s.idx.removeExpired(keys[:n], now)
			keys = keys[n:]
		}
	}
	s.idx.compact()
	s.sweepSeen(now)
	s.sweepUserIDs(now)
	s.sweepTargets(time.Unix(0, now))
	if removed > 0 {
		s.log.Debug("revocation sweep", "removed", removed, "entries", s.idx.count.Load())
	}
	return removed
}

// deleteExpired deletes from the file the keys whose stored record still
// expires at or before now. Records that do not decode are left for Open to
// report.
func (s *Store) deleteExpired(keys []row, now int64) error {
	if s.db == nil {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		for _, k := range keys {
			key := encodeKey(k.kind, k.issuer, k.value)
			v := b.Get(key)
			if v == nil {
				continue
			}
			if r, err := decodeRecord(key, v); err != nil || r.expiresAt > now {
				continue
			}
			if err := b.Delete(key); err != nil {
				return err
			}
		}
		return nil
	})
}

// Run sweeps every SweepInterval until ctx is done or the store is closed,
// then returns nil.
func (s *Store) Run(ctx context.Context) error {
	t, tick := s.clk.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case <-tick:
			s.Sweep()
		}
	}
}

// Close waits for in-flight Revokes and closes the file; every accepted
// revocation is already on disk. It is idempotent. Afterwards Revoke and List
// return ErrClosed and Sweep does nothing; IsRevoked, Get and Len keep
// answering from memory.
func (s *Store) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.done)
	if s.db == nil {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("cache: close %s: %w", s.cfg.Path, err)
	}
	return nil
}
