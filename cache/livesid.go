package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxLiveSIDs bounds the sessions RecordSID keeps at once. Past it, with
// every kept session still unexpired, RecordSID returns ErrLiveSIDsFull.
const MaxLiveSIDs = 1_000_000

// ErrLiveSIDsFull is returned by RecordSID when MaxLiveSIDs unexpired
// sessions are kept.
var ErrLiveSIDsFull = errors.New("cache: live sid record full")

// liveBucket holds RecordSID keys: liveKey -> until (Unix ns, big-endian).
var liveBucket = []byte("live-sids")

// liveKey names (issuer, sid) in the live-sid record: their SHA-256, so
// that neither the file nor Redis holds an IdP session id.
func liveKey(issuer, sid string) string {
	h := sha256.New()
	h.Write([]byte(issuer))
	h.Write([]byte{0})
	h.Write([]byte(sid))
	return string(h.Sum(nil))
}

// checkLive validates the arguments of RecordSID and SIDLive.
func checkLive(issuer, sid string) error {
	if issuer == "" || sid == "" || len(issuer) > MaxValueLen || len(sid) > MaxValueLen {
		return fmt.Errorf("%w: live sid: issuer or sid empty or longer than %d bytes", ErrInvalidEntry, MaxValueLen)
	}
	return nil
}

// RecordSID records that the gateway holds a live session of issuer whose
// IdP session id is sid, until the time until (the session's expiry). It
// is the record a front-channel logout is checked against: only a sid
// recorded here can be revoked by one, so forged requests with made-up
// sids store nothing. With a Path the record is in the file before
// RecordSID returns, and Open reloads it; Sweep forgets the expired ones.
// Recording a sid again keeps the later until. It keeps at most
// MaxLiveSIDs sessions and returns ErrLiveSIDsFull beyond; an error
// wrapping ErrInvalidEntry for bad arguments; ErrClosed after Close.
func (s *Store) RecordSID(ctx context.Context, issuer, sid string, until time.Time) error {
	now := s.now()
	if err := checkLive(issuer, sid); err != nil {
		return fmt.Errorf("cache: record sid: %w", err)
	}
	if !until.After(now) || until.After(maxTime) {
		return fmt.Errorf("cache: record sid: %w: until not in the future", ErrInvalidEntry)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cache: record sid: %w", err)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	key, at, exp := liveKey(issuer, sid), now.UnixNano(), until.UnixNano()
	c := &s.live
	c.mu.Lock()
	old, had := c.m[key]
	if had && old >= exp {
		c.mu.Unlock()
		return nil
	}
	if !had && len(c.m) >= MaxLiveSIDs {
		c.dropExpired(at)
		if len(c.m) >= MaxLiveSIDs {
			c.mu.Unlock()
			return ErrLiveSIDsFull
		}
	}
	c.m[key] = exp
	c.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(liveBucket).Put([]byte(key), binary.BigEndian.AppendUint64(nil, uint64(exp)))
	})
	if err != nil {
		c.mu.Lock()
		if c.m[key] == exp {
			if had {
				c.m[key] = old
			} else {
				delete(c.m, key)
			}
		}
		c.mu.Unlock()
		return fmt.Errorf("cache: record sid: persist: %w", err)
	}
	return nil
}

// SIDLive reports whether RecordSID recorded (issuer, sid) with an until
// still in the future. It answers from memory; the error is for bad
// arguments only.
func (s *Store) SIDLive(_ context.Context, issuer, sid string) (bool, error) {
	if err := checkLive(issuer, sid); err != nil {
		return false, fmt.Errorf("cache: sid live: %w", err)
	}
	now := s.now().UnixNano()
	c := &s.live
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.m[liveKey(issuer, sid)]
	return ok && until > now, nil
}

// LiveSIDs returns how many sessions the live-sid record keeps (expired
// ones included until the next Sweep).
func (s *Store) LiveSIDs() int {
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	return len(s.live.m)
}
