// Package cache owns the revocation store and the droppable caches.
//
// The revocation store (Store) is exact: it never evicts a live entry,
// because a revocation a cache drops is a security hole. Entries leave only
// when Sweep finds them expired.
//
// Lookups (IsRevoked) are answered from process memory without allocating
// or doing I/O: a blocked Bloom filter (one cache line per key) rules out
// almost every credential that is not revoked, and a sharded hash table
// settles the rest exactly, comparing the kind, issuer and every byte of the
// value. The table holds no pointers per entry (fixed-size records, value
// bytes in arenas, interned issuers and notes), so the garbage collector
// does not scan it however many entries it holds. With a Path, every entry is in a bbolt file,
// fsync'd, before Revoke returns (concurrent calls share a commit), and Open
// loads it again; a record that does not decode stops Open (ErrCorrupt)
// rather than start with a revocation missing.
//
// Redis (OpenRedis) shares the store between replicas: Redis holds every
// entry and a stream of changes; each replica keeps a Store as its mirror
// (lookups never leave memory), follows the stream, resynchronises on every
// reconnect, republishes its mirror when Redis lost its data, and queues
// revocations it accepted while Redis was away in an outbox in its bbolt
// file. FirstSeen (both backends) is the logout-token replay cache, and
// Subscribe reports every entry applied.
//
// Every replica has a stable random id (ReplicaID, kept in the bbolt
// file). With Redis, each replica records a heartbeat and, off the hot
// path, an acknowledgement of every entry it applies; Applied (both
// backends) answers which replicas are up and which have applied an entry,
// the proof `oidcgate verify-revocation` prints.
//
// A revocation's targets (Target: a session authority call, later SSF
// receivers and app checks) are kept with it, both backends: AddTargets,
// UpdateTarget, Targets, PendingTargets, and leases (LeaseTarget) so that
// one replica at a time works on a target. With Redis they are shared
// there; with a Path, in the bbolt file.
//
// The storetest subpackage is the conformance suite every backend runs;
// redistest runs real redis-server processes for tests.
//
// This package must never import another oidcgate package, never log a
// token, entry value, FirstSeen key or secret (the Redis password
// included), and never let an entry go before ExpiresAt.
package cache
