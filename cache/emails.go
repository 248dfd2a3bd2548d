package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// EmailOwner is a user whose verified email address the gateway saw at a
// login: the issuer and the user's sub there.
type EmailOwner struct {
	Issuer string `json:"issuer"`
	Sub    string `json:"sub"`
}

// MaxEmailOwners bounds the (email, issuer, sub) records RecordEmail
// keeps at once. Past it, with every kept record still unexpired,
// RecordEmail returns ErrEmailDirectoryFull.
const MaxEmailOwners = 1_000_000

// ErrEmailDirectoryFull is returned by RecordEmail when MaxEmailOwners
// unexpired records are kept.
var ErrEmailDirectoryFull = errors.New("cache: email directory full")

// emailBucket holds RecordEmail keys: emailKey -> until (Unix ns,
// big-endian).
var emailBucket = []byte("email-owners")

// emailDigest names an email address in the directory: the SHA-256 of
// its lower-cased form, so that neither the file nor Redis holds the
// address, and addresses differing only in case are one.
func emailDigest(email string) [sha256.Size]byte {
	return sha256.Sum256([]byte(strings.ToLower(email)))
}

// emailKey is the directory key of (email, o): the email's digest, then
// the issuer and the sub separated by a NUL (neither may hold one).
func emailKey(email string, o EmailOwner) string {
	d := emailDigest(email)
	return string(d[:]) + o.Issuer + "\x00" + o.Sub
}

// ownerOf splits the owner out of a directory key.
func ownerOf(key string) (EmailOwner, bool) { return splitOwner(key[sha256.Size:]) }

// splitOwner reads "issuer NUL sub".
func splitOwner(s string) (EmailOwner, bool) {
	iss, sub, ok := strings.Cut(s, "\x00")
	return EmailOwner{Issuer: iss, Sub: sub}, ok && iss != "" && sub != ""
}

// checkEmail validates the arguments of RecordEmail and EmailOwners.
func checkEmail(email string, o *EmailOwner) error {
	if email == "" || len(email) > MaxValueLen {
		return fmt.Errorf("%w: email empty or longer than %d bytes", ErrInvalidEntry, MaxValueLen)
	}
	if o != nil && (o.Issuer == "" || o.Sub == "" || len(o.Issuer) > MaxValueLen || len(o.Sub) > MaxValueLen ||
		strings.ContainsRune(o.Issuer, 0) || strings.ContainsRune(o.Sub, 0)) {
		return fmt.Errorf("%w: email owner: issuer or sub empty, longer than %d bytes or with a NUL", ErrInvalidEntry, MaxValueLen)
	}
	return nil
}

// RecordEmail records that a login of o (issuer, sub) carried the
// verified email address email, until the time until (the session's
// expiry). It is the directory Universal Logout resolves an email
// subject with: an address recorded here names the users to revoke.
// Addresses are compared case-insensitively. With a Path the record is in
// the file before RecordEmail returns, and Open reloads it; Sweep forgets
// the expired ones. Recording again keeps the later until. It keeps at
// most MaxEmailOwners records and returns ErrEmailDirectoryFull beyond;
// an error wrapping ErrInvalidEntry for bad arguments; ErrClosed after
// Close.
func (s *Store) RecordEmail(ctx context.Context, email string, o EmailOwner, until time.Time) error {
	now := s.now()
	if err := checkEmail(email, &o); err != nil {
		return fmt.Errorf("cache: record email: %w", err)
	}
	if !until.After(now) || until.After(maxTime) {
		return fmt.Errorf("cache: record email: %w: until not in the future", ErrInvalidEntry)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cache: record email: %w", err)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	key, at, exp := emailKey(email, o), now.UnixNano(), until.UnixNano()
	c := &s.emails
	c.mu.Lock()
	old, had := c.m[key]
	if had && old >= exp {
		c.mu.Unlock()
		return nil
	}
	if !had && len(c.m) >= MaxEmailOwners {
		c.dropExpired(at)
		if len(c.m) >= MaxEmailOwners {
			c.mu.Unlock()
			return ErrEmailDirectoryFull
		}
	}
	c.m[key] = exp
	c.mu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		return tx.Bucket(emailBucket).Put([]byte(key), binary.BigEndian.AppendUint64(nil, uint64(exp)))
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
		return fmt.Errorf("cache: record email: persist: %w", err)
	}
	return nil
}

// EmailOwners returns the users RecordEmail recorded with email (compared
// case-insensitively) and an until still in the future, in no particular
// order. It answers from memory, scanning every record (a rare,
// administrative lookup); the error is for bad arguments only.
func (s *Store) EmailOwners(_ context.Context, email string) ([]EmailOwner, error) {
	if err := checkEmail(email, nil); err != nil {
		return nil, fmt.Errorf("cache: email owners: %w", err)
	}
	d := emailDigest(email)
	prefix := string(d[:])
	now := s.now().UnixNano()
	c := &s.emails
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []EmailOwner
	for k, until := range c.m {
		if until <= now || k[:sha256.Size] != prefix {
			continue
		}
		if o, ok := ownerOf(k); ok {
			out = append(out, o)
		}
	}
	return out, nil
}
