package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The bbolt bucket and key of this replica's id.
var (
	replicaBucket = []byte("replica")
	replicaIDKey  = []byte("id")
)

// replicaIDLen is the length of a replica id: 8 random bytes in hex.
const replicaIDLen = 16

// ApplyStatus says which replicas have applied the entry of one key.
type ApplyStatus struct {
	// Found reports whether an entry exists under the key; when false,
	// Entry is the zero value and no replica has anything to apply.
	Found bool
	// Entry is the entry as the store knows it (Redis and this replica's
	// mirror merged, with the Redis backend).
	Entry Entry
	// Replicas lists every replica known to the store, sorted by Name, Addr
	// and ID; never empty (this replica is always known).
	Replicas []ReplicaApply
}

// ReplicaApply is one replica's state for an entry.
type ReplicaApply struct {
	// ID is the replica's id (see Store.ReplicaID).
	ID string
	// Name and Addr describe the replica as it reported itself (see
	// RedisConfig.ReplicaName and ReplicaAddr); "" when not given.
	Name, Addr string
	// Up reports whether the replica is alive: it recorded a heartbeat
	// within 3 of its heartbeat intervals and has not stopped since.
	Up bool
	// LastSeen is the replica's last heartbeat (its own clock); zero when
	// it is known only from an acknowledgement.
	LastSeen time.Time
	// AppliedAt is when the replica first applied this version of the
	// entry (its RevokedAt or a later one); zero when it has not (yet).
	AppliedAt time.Time
}

// Applied reports whether r has applied the entry.
func (r ReplicaApply) Applied() bool { return !r.AppliedAt.IsZero() }

// newReplicaID returns a fresh random replica id.
func newReplicaID() string {
	b := make([]byte, replicaIDLen/2)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// validReplicaID reports whether id has the form newReplicaID gives.
func validReplicaID(id string) bool {
	if len(id) != replicaIDLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// loadReplicaID reads the id kept in the file, or records s.id there on
// the file's first Open.
func (s *Store) loadReplicaID() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(replicaBucket)
		if err != nil {
			return err
		}
		if v := b.Get(replicaIDKey); v != nil {
			if !validReplicaID(string(v)) {
				return corrupt("replica id of %d bytes", len(v))
			}
			s.id = string(v)
			return nil
		}
		return b.Put(replicaIDKey, []byte(s.id))
	})
}

// ReplicaID returns this replica's id: 16 random hex digits, created on
// the first Open of Path and kept in that file, so a restarted replica
// keeps its id; without a Path, a new id per Open.
func (s *Store) ReplicaID() string { return s.id }

// Applied reports the state of the entry (issuer, kind, value) on every
// replica. A Store is the only replica there is, always up: it applied an
// entry when it stored it, before Revoke returned, so AppliedAt is the
// entry's RevokedAt (the time the latest revocation of the key was
// accepted). It returns an error wrapping ErrInvalidEntry for an unknown
// kind, or ctx's error.
func (s *Store) Applied(ctx context.Context, issuer string, kind Kind, value string) (ApplyStatus, error) {
	if !kind.Valid() {
		return ApplyStatus{}, fmt.Errorf("cache: applied: %w: unknown kind %q", ErrInvalidEntry, kind)
	}
	if err := ctx.Err(); err != nil {
		return ApplyStatus{}, fmt.Errorf("cache: applied: %w", err)
	}
	e, ok := s.Get(issuer, kind, value)
	self := ReplicaApply{ID: s.id, Up: true, LastSeen: s.now().UTC()}
	if ok {
		self.AppliedAt = e.RevokedAt
	}
	return ApplyStatus{Found: ok, Entry: e, Replicas: []ReplicaApply{self}}, nil
}
