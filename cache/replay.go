package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxFirstSeen bounds the keys FirstSeen keeps at once. Past it, with
// every kept key still unexpired, FirstSeen returns ErrReplayCacheFull
// (the caller refuses the token: fail closed) until keys expire.
const MaxFirstSeen = 1_000_000

// ErrReplayCacheFull is returned by FirstSeen when MaxFirstSeen unexpired
// keys are kept.
var ErrReplayCacheFull = errors.New("cache: replay cache full")

// seenBucket holds FirstSeen keys: key -> until (Unix ns, big-endian).
var seenBucket = []byte("first-seen")

// replayCache is FirstSeen's memory: key -> until (Unix ns).
type replayCache struct {
	mu sync.Mutex
	m  map[string]int64
}

// checkSeen validates FirstSeen's arguments.
func checkSeen(key string, until, now time.Time) error {
	if key == "" || len(key) > MaxValueLen {
		return fmt.Errorf("%w: first-seen key empty or longer than %d bytes", ErrInvalidEntry, MaxValueLen)
	}
	if !until.After(now) || until.After(maxTime) {
		return fmt.Errorf("%w: first-seen until not in the future", ErrInvalidEntry)
	}
	return nil
}

// FirstSeen records key until the time until and reports whether this is
// the first time: true when key was not recorded (or its until has
// passed), false when it is, and then it changes nothing. It is the replay
// cache of logout-token jtis: a token is accepted only when FirstSeen
// returns true. With a Path the key is in the file before FirstSeen
// returns true, and Open reloads it. Sweep forgets keys whose until has
// passed. It keeps at most MaxFirstSeen keys and returns
// ErrReplayCacheFull beyond; an error wrapping ErrInvalidEntry for an
// empty or over-long key or an until not after Now(); ErrClosed after
// Close. On any error the caller must treat the key as seen (fail closed).
func (s *Store) FirstSeen(ctx context.Context, key string, until time.Time) (bool, error) {
	now := s.now()
	if err := checkSeen(key, until, now); err != nil {
		return false, fmt.Errorf("cache: first seen: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("cache: first seen: %w", err)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return false, ErrClosed
	}
	at, exp := now.UnixNano(), until.UnixNano()
	c := &s.seen
	c.mu.Lock()
	if old, ok := c.m[key]; ok && old > at {
		c.mu.Unlock()
		return false, nil
	}
	if len(c.m) >= MaxFirstSeen {
		c.dropExpired(at)
		if len(c.m) >= MaxFirstSeen {
			c.mu.Unlock()
			return false, ErrReplayCacheFull
		}
	}
	c.m[key] = exp
	c.mu.Unlock()
	if s.db == nil {
		return true, nil
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(seenBucket).Put([]byte(key), binary.BigEndian.AppendUint64(nil, uint64(exp)))
	})
	if err != nil {
		c.mu.Lock()
		if c.m[key] == exp {
			delete(c.m, key)
		}
		c.mu.Unlock()
		return false, fmt.Errorf("cache: first seen: persist: %w", err)
	}
	return true, nil
}

// dropExpired removes the keys whose until is at or before now; the
// caller holds mu. It returns the removed keys.
func (c *replayCache) dropExpired(now int64) []string {
	var gone []string
	for k, until := range c.m {
		if until <= now {
			delete(c.m, k)
			gone = append(gone, k)
		}
	}
	return gone
}

// loadSeen creates the FirstSeen, RecordSID and RecordEmail buckets,
// loads their unexpired keys and deletes the others, in tx.
func (s *Store) loadSeen(tx *bolt.Tx, now int64) error {
	if err := loadUntil(tx, seenBucket, &s.seen, now); err != nil {
		return err
	}
	if err := loadUntil(tx, liveBucket, &s.live, now); err != nil {
		return err
	}
	return loadUntil(tx, emailBucket, &s.emails, now)
}

// loadUntil creates bucket, loads its unexpired keys (key -> until, Unix
// ns big-endian) into c and deletes the others, in tx.
func loadUntil(tx *bolt.Tx, bucket []byte, c *replayCache, now int64) error {
	b, err := tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		return err
	}
	var expired [][]byte
	err = b.ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			return corrupt("first-seen value of %d bytes", len(v))
		}
		if until := int64(binary.BigEndian.Uint64(v)); until > now {
			c.m[string(k)] = until
		} else {
			expired = append(expired, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// sweepSeen forgets the FirstSeen, RecordSID and RecordEmail keys whose
// until is at or before now, in memory and in the file. The caller holds
// life for reading.
func (s *Store) sweepSeen(now int64) {
	s.sweepUntil(seenBucket, &s.seen, now)
	s.sweepUntil(liveBucket, &s.live, now)
	s.sweepUntil(emailBucket, &s.emails, now)
}

// sweepUntil forgets the keys of c whose until is at or before now, in
// memory and in bucket.
func (s *Store) sweepUntil(bucket []byte, c *replayCache, now int64) {
	c.mu.Lock()
	gone := c.dropExpired(now)
	c.mu.Unlock()
	if s.db == nil || len(gone) == 0 {
		return
	}
	for len(gone) > 0 {
		n := min(len(gone), sweepTxSize)
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			for _, k := range gone[:n] {
				// A key recorded again since holds a later until: keep it.
				if v := b.Get([]byte(k)); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > now {
					continue
				}
				if err := b.Delete([]byte(k)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.log.Error("first-seen or live-sid sweep failed; expired keys stay in the file", "path", s.cfg.Path, "bucket", string(bucket), "err", err)
			return
		}
		gone = gone[n:]
	}
}
