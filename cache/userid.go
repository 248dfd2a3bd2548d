package cache

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// Learned user ids (issue 12): when an issuer's session authority names
// users by another claim than sub (Entra: oid, because Entra's sub is
// pairwise per application), the gateway learns sub → user id from the
// tokens and logins it verifies, so that a sub revocation can name the
// user at the authority.

// MaxUserIDs bounds the user ids RecordUserID keeps at once. Past it, with
// every kept one still unexpired, RecordUserID returns ErrUserIDsFull.
const MaxUserIDs = 1_000_000

// UserIDRefresh is how much later an until must be before RecordUserID
// writes again for the same (issuer, sub, user id): seeing the same user on
// every request costs a map lookup, not a write.
const UserIDRefresh = time.Hour

// ErrUserIDsFull is returned by RecordUserID when MaxUserIDs unexpired user
// ids are kept.
var ErrUserIDsFull = errors.New("cache: learned user id record full")

// userIDBucket holds RecordUserID: liveKey(issuer, sub) -> until (Unix ns,
// big-endian) followed by the user id.
var userIDBucket = []byte("user-ids")

// userIDs is RecordUserID's memory.
type userIDs struct {
	mu sync.Mutex
	m  map[string]userID // by liveKey(issuer, sub)
}

type userID struct {
	id    string
	until int64 // Unix ns
}

// checkUserID validates the arguments of RecordUserID and UserID.
func checkUserID(issuer, sub string) error {
	if issuer == "" || sub == "" || len(issuer) > MaxValueLen || len(sub) > MaxValueLen {
		return fmt.Errorf("%w: user id: issuer or sub empty or longer than %d bytes", ErrInvalidEntry, MaxValueLen)
	}
	return nil
}

// RecordUserID records that the subject sub of issuer is the user id at
// the issuer's session authority, until the time until. Recording the
// same user id again writes only when until is at least UserIDRefresh
// later than the kept one; a different user id replaces the kept one (the
// latest verified token speaks). With a Path the record is in the file
// before RecordUserID returns, and Open reloads it; Sweep forgets the
// expired ones. It keeps at most MaxUserIDs and returns ErrUserIDsFull
// beyond; an error wrapping ErrInvalidEntry for bad arguments; ErrClosed
// after Close.
func (s *Store) RecordUserID(ctx context.Context, issuer, sub, id string, until time.Time) error {
	_, err := s.recordUserID(ctx, issuer, sub, id, until)
	return err
}

// recordUserID is RecordUserID; changed reports whether it wrote.
func (s *Store) recordUserID(ctx context.Context, issuer, sub, id string, until time.Time) (changed bool, err error) {
	now := s.now()
	if err := checkUserID(issuer, sub); err != nil {
		return false, fmt.Errorf("cache: record user id: %w", err)
	}
	if id == "" || len(id) > MaxValueLen {
		return false, fmt.Errorf("cache: record user id: %w: user id empty or longer than %d bytes", ErrInvalidEntry, MaxValueLen)
	}
	if !until.After(now) || until.After(maxTime) {
		return false, fmt.Errorf("cache: record user id: %w: until not in the future", ErrInvalidEntry)
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("cache: record user id: %w", err)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return false, ErrClosed
	}
	key, at := liveKey(issuer, sub), now.UnixNano()
	rec := userID{id: id, until: until.UnixNano()}
	c := &s.uids
	c.mu.Lock()
	old, had := c.m[key]
	if had && old.id == id && old.until > rec.until-int64(UserIDRefresh) {
		c.mu.Unlock()
		return false, nil
	}
	if !had && len(c.m) >= MaxUserIDs {
		c.dropExpired(at)
		if len(c.m) >= MaxUserIDs {
			c.mu.Unlock()
			return false, ErrUserIDsFull
		}
	}
	c.m[key] = rec
	c.mu.Unlock()
	if s.db == nil {
		return true, nil
	}
	err = s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(userIDBucket).Put([]byte(key), encodeUserID(rec))
	})
	if err != nil {
		c.mu.Lock()
		if c.m[key] == rec {
			if had {
				c.m[key] = old
			} else {
				delete(c.m, key)
			}
		}
		c.mu.Unlock()
		return false, fmt.Errorf("cache: record user id: persist: %w", err)
	}
	return true, nil
}

// UserID returns the user id RecordUserID recorded for (issuer, sub), if
// its until is still in the future. It answers from memory; the error is
// for bad arguments only.
func (s *Store) UserID(_ context.Context, issuer, sub string) (string, bool, error) {
	if err := checkUserID(issuer, sub); err != nil {
		return "", false, fmt.Errorf("cache: user id: %w", err)
	}
	now := s.now().UnixNano()
	c := &s.uids
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, ok := c.m[liveKey(issuer, sub)]
	if !ok || rec.until <= now {
		return "", false, nil
	}
	return rec.id, true, nil
}

// UserIDs returns how many user ids the record keeps (expired ones
// included until the next Sweep).
func (s *Store) UserIDs() int {
	s.uids.mu.Lock()
	defer s.uids.mu.Unlock()
	return len(s.uids.m)
}

func encodeUserID(r userID) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(r.until)), r.id...)
}

// dropExpired removes the user ids whose until is at or before now; the
// caller holds mu. It returns the removed keys.
func (c *userIDs) dropExpired(now int64) []string {
	var gone []string
	for k, r := range c.m {
		if r.until <= now {
			delete(c.m, k)
			gone = append(gone, k)
		}
	}
	return gone
}

// loadUserIDs creates the user id bucket, loads its unexpired records and
// deletes the others, in tx.
func (s *Store) loadUserIDs(tx *bolt.Tx, now int64) error {
	b, err := tx.CreateBucketIfNotExists(userIDBucket)
	if err != nil {
		return err
	}
	var expired [][]byte
	err = b.ForEach(func(k, v []byte) error {
		if len(v) <= 8 || len(v) > 8+MaxValueLen {
			return corrupt("user id record of %d bytes", len(v))
		}
		if until := int64(binary.BigEndian.Uint64(v)); until > now {
			s.uids.m[string(k)] = userID{id: string(v[8:]), until: until}
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

// sweepUserIDs forgets the user ids whose until is at or before now, in
// memory and in the file. The caller holds life for reading.
func (s *Store) sweepUserIDs(now int64) {
	c := &s.uids
	c.mu.Lock()
	gone := c.dropExpired(now)
	c.mu.Unlock()
	if s.db == nil || len(gone) == 0 {
		return
	}
	for len(gone) > 0 {
		n := min(len(gone), sweepTxSize)
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(userIDBucket)
			for _, k := range gone[:n] {
				// A user id recorded again since holds a later until: keep it.
				if v := b.Get([]byte(k)); len(v) > 8 && int64(binary.BigEndian.Uint64(v)) > now {
					continue
				}
				if err := b.Delete([]byte(k)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.log.Error("user id sweep failed; expired records stay in the file", "path", s.cfg.Path, "err", err)
			return
		}
		gone = gone[n:]
	}
}

// RecordUserID is Store.RecordUserID shared by every replica: the user id
// is recorded in the local file and in Redis ({prefix}:uid:<hex SHA-256 of
// issuer and sub> = "<until, Unix ns> <user id>", PXAT until), so that a sub revocation worked on by any
// replica finds it. When Redis cannot be reached the local record stands
// and the failure is logged; the next sighting after UserIDRefresh, or on
// another replica, writes it again.
func (r *Redis) RecordUserID(ctx context.Context, issuer, sub, id string, until time.Time) error {
	changed, err := r.local.recordUserID(ctx, issuer, sub, id, until)
	if err != nil || !changed {
		return err
	}
	if r.down.Load() {
		r.log.Warn("revocation store: redis unreachable; learned user id recorded on this replica only")
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	pxat := (until.UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
	v := strconv.FormatInt(until.UnixNano(), 10) + " " + id
	if err := r.client.Do(cctx, "SET", r.keys.uid+hex.EncodeToString([]byte(liveKey(issuer, sub))), v, "PXAT", pxat).Err(); err != nil {
		r.log.Warn("revocation store: redis unreachable; learned user id recorded on this replica only", "err", err)
	}
	return nil
}

// UserID is Store.UserID across replicas: this replica's record, else
// Redis's. It returns an error when the local record does not hold it and
// Redis cannot be asked: the caller cannot tell.
func (r *Redis) UserID(ctx context.Context, issuer, sub string) (string, bool, error) {
	id, ok, err := r.local.UserID(ctx, issuer, sub)
	if err != nil || ok {
		return id, ok, err
	}
	if r.down.Load() {
		return "", false, errors.New("cache: user id: redis unreachable")
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	v, err := r.client.Get(cctx, r.keys.uid+hex.EncodeToString([]byte(liveKey(issuer, sub)))).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("cache: user id: %w", err)
	}
	until, id, ok := strings.Cut(v, " ")
	ns, perr := strconv.ParseInt(until, 10, 64)
	if !ok || perr != nil || id == "" || len(id) > MaxValueLen {
		return "", false, fmt.Errorf("cache: user id: %w: redis value not of the form \"<until> <id>\"", ErrCorrupt)
	}
	if ns <= r.local.now().UnixNano() {
		return "", false, nil
	}
	return id, true, nil
}
