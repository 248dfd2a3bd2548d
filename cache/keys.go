package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// API key records.
//
// A KeyRecord is kept as a row of its own code (never listed, never
// reported to Subscribe) in the same table, file, Redis keyspace and stream
// as the revocations, so it reaches every replica, survives outages in the
// outbox and is resynchronised exactly like them. Its row's revoked_at is
// the key's last use (merge keeps the later, so touching is idempotent) and
// its expires_at is the key's plus KeyRetention. Revoking a key is an
// ordinary entry of kind key.

// Bounds of a KeyRecord's fields, in bytes (scopes and routes joined by
// single spaces). They keep a record within one row's reason and initiator.
const (
	MaxKeyIDLen       = 32
	MaxKeyOwnerLen    = 128
	MaxKeyScopeLen    = 320
	MaxKeyRoutesLen   = 192
	MaxKeyCreatorLen  = 64
	MaxKeyDescription = 200
)

// KeyRetention is how long a key's record is kept after the key expired,
// so that listings show it and its expiry can be audited.
const KeyRetention = 7 * 24 * time.Hour

// ErrInvalidKey is wrapped by every error about a malformed KeyRecord.
var ErrInvalidKey = errors.New("cache: invalid key record")

// ErrKeyNotFound is returned by TouchKey for an id with no record.
var ErrKeyNotFound = errors.New("cache: key not found")

// KeyRecord is an API key as the store keeps it: never the key, only the
// SHA-256 of its secret.
type KeyRecord struct {
	// ID is the key's public id (base62).
	ID string
	// Owner is the workload the key belongs to; requests made with it have
	// sub = client_id = Owner.
	Owner string
	// Scopes are granted to requests made with the key.
	Scopes []string
	// Routes, when not empty, are the only routes (by name) that accept it.
	Routes []string
	// Hash is the SHA-256 of the key's secret.
	Hash      [32]byte
	CreatedBy string
	// CreatedAt and ExpiresAt bound the key's life.
	CreatedAt, ExpiresAt time.Time
	// LastUsedAt is the approximate last use (CreatedAt before any).
	LastUsedAt  time.Time
	Description string
}

// Validate reports every problem of k at once.
func (k KeyRecord) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidKey, fmt.Sprintf(format, args...)))
	}
	if k.ID == "" || len(k.ID) > MaxKeyIDLen || strings.IndexFunc(k.ID, notBase62) >= 0 {
		bad("id: 1 to %d base62 characters", MaxKeyIDLen)
	}
	if k.Owner == "" || len(k.Owner) > MaxKeyOwnerLen || strings.IndexFunc(k.Owner, notToken) >= 0 {
		bad("owner: 1 to %d printable characters without spaces", MaxKeyOwnerLen)
	}
	if !validWords(k.Scopes, MaxKeyScopeLen) {
		bad("scopes: printable words without spaces, at most %d bytes together", MaxKeyScopeLen)
	}
	if !validWords(k.Routes, MaxKeyRoutesLen) {
		bad("routes: printable words without spaces, at most %d bytes together", MaxKeyRoutesLen)
	}
	if len(k.CreatedBy) > MaxKeyCreatorLen {
		bad("created_by: longer than %d bytes", MaxKeyCreatorLen)
	}
	if len(k.Description) > MaxKeyDescription {
		bad("description: longer than %d bytes", MaxKeyDescription)
	}
	if k.CreatedAt.Before(minTime) || k.ExpiresAt.Add(KeyRetention).After(maxTime) {
		bad("created_at, expires_at: outside years 1678-2262")
	}
	if !k.ExpiresAt.After(k.CreatedAt) {
		bad("expires_at: not after created_at")
	}
	if !k.LastUsedAt.IsZero() && (k.LastUsedAt.Before(k.CreatedAt) || !k.LastUsedAt.Before(k.ExpiresAt)) {
		bad("last_used_at: outside the key's life")
	}
	return errors.Join(errs...)
}

func notBase62(r rune) bool {
	return !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
}

func notToken(r rune) bool { return r <= ' ' || r >= 0x7f }

func validWords(ws []string, max int) bool {
	n := 0
	for _, w := range ws {
		if w == "" || strings.IndexFunc(w, notToken) >= 0 {
			return false
		}
		n += len(w) + 1
	}
	return n <= max+1
}

// The payload of a key row:
//
//	reason:    hash(32) | created_at(8) | expires_at(8) | len(owner)(1) | owner | scopes
//	initiator: len(created_by)(1) | created_by | len(routes)(1) | routes | description
const keyFixed = 32 + 8 + 8 + 1

// keyRow converts a validated record.
func keyRow(k KeyRecord) row {
	reason := make([]byte, 0, keyFixed+len(k.Owner)+MaxKeyScopeLen)
	reason = append(reason, k.Hash[:]...)
	reason = binary.BigEndian.AppendUint64(reason, uint64(k.CreatedAt.UnixNano()))
	reason = binary.BigEndian.AppendUint64(reason, uint64(k.ExpiresAt.UnixNano()))
	reason = append(reason, byte(len(k.Owner)))
	reason = append(reason, k.Owner...)
	reason = append(reason, strings.Join(k.Scopes, " ")...)
	routes := strings.Join(k.Routes, " ")
	init := make([]byte, 0, 2+len(k.CreatedBy)+len(routes)+len(k.Description))
	init = append(init, byte(len(k.CreatedBy)))
	init = append(init, k.CreatedBy...)
	init = append(init, byte(len(routes)))
	init = append(init, routes...)
	init = append(init, k.Description...)
	used := k.CreatedAt
	if k.LastUsedAt.After(used) {
		used = k.LastUsedAt
	}
	return row{
		kind:      codeAPIKey,
		value:     k.ID,
		revokedAt: used.UnixNano(),
		expiresAt: k.ExpiresAt.Add(KeyRetention).UnixNano(),
		reason:    string(reason),
		initiator: string(init),
	}
}

// keyView is a key row split into its fields without allocating: the
// strings alias the row's.
type keyView struct {
	hash                 string
	createdAt, expiresAt int64
	owner, scope         string
	createdBy, routes    string
	description          string
	lastUsed             int64
}

// viewKey splits a key row; ok is false when it is not one.
func viewKey(r row) (v keyView, ok bool) {
	if r.kind != codeAPIKey || len(r.reason) < keyFixed {
		return keyView{}, false
	}
	p := r.reason
	v.hash = p[:32]
	v.createdAt = int64(binary.BigEndian.Uint64([]byte(p[32:40])))
	v.expiresAt = int64(binary.BigEndian.Uint64([]byte(p[40:48])))
	n := int(p[48])
	if len(p) < keyFixed+n {
		return keyView{}, false
	}
	v.owner, v.scope = p[keyFixed:keyFixed+n], p[keyFixed+n:]
	q := r.initiator
	if len(q) < 1 || len(q) < 1+int(q[0])+1 {
		return keyView{}, false
	}
	v.createdBy, q = q[1:1+int(q[0])], q[1+int(q[0]):]
	if len(q) < 1+int(q[0]) {
		return keyView{}, false
	}
	v.routes, v.description = q[1:1+int(q[0])], q[1+int(q[0]):]
	v.lastUsed = r.revokedAt
	return v, true
}

// record converts v (allocating).
func (v keyView) record(id string) KeyRecord {
	k := KeyRecord{
		ID:          id,
		Owner:       v.owner,
		Scopes:      strings.Fields(v.scope),
		Routes:      strings.Fields(v.routes),
		CreatedBy:   v.createdBy,
		CreatedAt:   time.Unix(0, v.createdAt).UTC(),
		ExpiresAt:   time.Unix(0, v.expiresAt).UTC(),
		LastUsedAt:  time.Unix(0, v.lastUsed).UTC(),
		Description: v.description,
	}
	copy(k.Hash[:], v.hash)
	return k
}

// PutKey stores k, durably (like Revoke) and for every replica. Storing
// the same id again keeps the stored fields and the later LastUsedAt. It
// returns an error wrapping ErrInvalidKey for a bad record, or ErrClosed.
func (s *Store) PutKey(ctx context.Context, k KeyRecord) error {
	_, err := s.putKey(ctx, k, nil)
	return err
}

func (s *Store) putKey(ctx context.Context, k KeyRecord, also func(tx *bolt.Tx, k []byte, stored row) error) (row, error) {
	if err := k.Validate(); err != nil {
		return row{}, fmt.Errorf("cache: put key: %w", err)
	}
	stored, err := s.write(ctx, keyRow(k), also)
	if err != nil {
		return row{}, fmt.Errorf("cache: put key: %w", err)
	}
	return stored, nil
}

// Key returns the record of id, also one whose key has expired (until
// KeyRetention has passed).
func (s *Store) Key(id string) (KeyRecord, bool) {
	r, ok := s.idx.get(codeAPIKey, "", id)
	if !ok {
		return KeyRecord{}, false
	}
	v, ok := viewKey(r)
	if !ok {
		return KeyRecord{}, false
	}
	return v.record(id), true
}

// TouchKey records that id was used at (approximately; callers touch
// rarely). It returns ErrKeyNotFound when id has no record.
func (s *Store) TouchKey(ctx context.Context, id string, at time.Time) error {
	k, ok := s.Key(id)
	if !ok {
		return ErrKeyNotFound
	}
	k.LastUsedAt = at
	return s.PutKey(ctx, k)
}

// Keys returns the records whose Owner is owner ("" for all), in no
// particular order, and how many records the store holds in all.
func (s *Store) Keys(owner string) (keys []KeyRecord, total int) {
	for i := range s.idx.shards {
		sh := &s.idx.shards[i]
		sh.mu.RLock()
		sh.each(func(r *record) bool {
			if r.kind != codeAPIKey {
				return true
			}
			total++
			rw := s.idx.row(sh, r)
			if v, ok := viewKey(rw); ok && (owner == "" || v.owner == owner) {
				keys = append(keys, v.record(rw.value))
			}
			return true
		})
		sh.mu.RUnlock()
	}
	return keys, total
}

// KeyState is the outcome of CheckKey.
type KeyState uint8

// The outcomes of CheckKey.
const (
	// KeyValid: the key may be used.
	KeyValid KeyState = iota
	// KeyUnknown: no record has this id and secret hash.
	KeyUnknown
	// KeyExpired: past its ExpiresAt.
	KeyExpired
	// KeyRevoked: revoked (kind key, a scheduled key revocation in force,
	// or a client revocation of its owner under one of KeyCheck.Issuers
	// made after it was created), or the store refuses every credential
	// (Redis, fail_closed).
	KeyRevoked
	// KeyIdle: unused for KeyCheck.MaxIdle or longer.
	KeyIdle
)

// String names the state, as the metric label and the audit say it.
func (s KeyState) String() string {
	switch s {
	case KeyValid:
		return "valid"
	case KeyUnknown:
		return "unknown"
	case KeyExpired:
		return "expired"
	case KeyRevoked:
		return "revoked"
	case KeyIdle:
		return "idle"
	}
	return "invalid"
}

// KeyCheck is the input and output of CheckKey. It is passed by pointer and
// not retained; the outputs are the caller's (copies) and are valid as
// long as the caller keeps them.
type KeyCheck struct {
	// ID and Hash (SHA-256 of the presented secret) are the input.
	ID   string
	Hash [32]byte
	// Issuers are those under which a client revocation of the key's owner
	// also revokes the key.
	Issuers []string
	// MaxIdle, when positive, makes a key unused for that long KeyIdle.
	MaxIdle time.Duration
	// Now is the time of the check.
	Now time.Time

	// Owner, Scope (scopes joined by spaces), Routes (likewise), and the
	// times are filled when the id and hash match (whatever the state).
	Owner, Scope, Routes string
	CreatedAt, ExpiresAt time.Time
	LastUsedAt           time.Time
}

// CheckKey judges c's key: it compares the hash in constant time, then
// checks expiry, revocation and idleness. It does no I/O; it allocates
// one copy of the key's stored texts, which c's outputs alias.
func (s *Store) CheckKey(c *KeyCheck) KeyState {
	r, ok := s.idx.get(codeAPIKey, "", c.ID)
	if !ok {
		return KeyUnknown
	}
	v, ok := viewKey(r)
	if !ok || !equalHash(v.hash, &c.Hash) {
		return KeyUnknown
	}
	c.Owner, c.Scope, c.Routes = v.owner, v.scope, v.routes
	c.CreatedAt, c.ExpiresAt = time.Unix(0, v.createdAt), time.Unix(0, v.expiresAt)
	c.LastUsedAt = time.Unix(0, v.lastUsed)
	now := c.Now.UnixNano()
	if now >= v.expiresAt {
		return KeyExpired
	}
	cred := Credential{KeyID: c.ID}
	if s.IsRevoked(&cred) {
		return KeyRevoked
	}
	for _, iss := range c.Issuers {
		cred := Credential{Issuer: iss, ClientID: v.owner, IssuedAt: c.CreatedAt}
		if s.IsRevoked(&cred) {
			return KeyRevoked
		}
	}
	if c.MaxIdle > 0 && now-v.lastUsed >= int64(c.MaxIdle) {
		return KeyIdle
	}
	return KeyValid
}

// equalHash compares a stored hash with h in constant time.
func equalHash(stored string, h *[32]byte) bool {
	if len(stored) != len(h) {
		return false
	}
	var d byte
	for i := range h {
		d |= stored[i] ^ h[i]
	}
	return d == 0
}

// PutKey is Store.PutKey on the mirror, queued in the outbox and written
// to Redis like Revoke.
func (r *Redis) PutKey(ctx context.Context, k KeyRecord) error {
	var q queuedRow
	stored, err := r.local.putKey(ctx, k, q.queue)
	if err != nil {
		return err
	}
	r.publishQueued(ctx, stored, q)
	return nil
}

// TouchKey is Store.TouchKey, through Redis.
func (r *Redis) TouchKey(ctx context.Context, id string, at time.Time) error {
	k, ok := r.local.Key(id)
	if !ok {
		return ErrKeyNotFound
	}
	k.LastUsedAt = at
	return r.PutKey(ctx, k)
}

// Key is Store.Key on the mirror.
func (r *Redis) Key(id string) (KeyRecord, bool) { return r.local.Key(id) }

// Keys is Store.Keys on the mirror.
func (r *Redis) Keys(owner string) ([]KeyRecord, int) { return r.local.Keys(owner) }

// CheckKey is Store.CheckKey on the mirror, except that while FailClosed is
// in force every key is KeyRevoked.
func (r *Redis) CheckKey(c *KeyCheck) KeyState {
	if r.refuse.Load() {
		return KeyRevoked
	}
	return r.local.CheckKey(c)
}

// Scheduled returns the scheduled entry (EffectiveAt set) of (issuer,
// kind, value), also one already in force, if any.
func (s *Store) Scheduled(issuer string, kind Kind, value string) (Entry, bool) {
	c := scheduled(kind)
	if c == 0 {
		return Entry{}, false
	}
	r, ok := s.idx.get(c, issuer, value)
	if !ok {
		return Entry{}, false
	}
	return r.entry(), true
}

// Scheduled is Store.Scheduled on the mirror.
func (r *Redis) Scheduled(issuer string, kind Kind, value string) (Entry, bool) {
	return r.local.Scheduled(issuer, kind, value)
}
