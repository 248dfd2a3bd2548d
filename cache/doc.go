// Package cache owns the revocation store and the droppable caches.
//
// The revocation store (Store) is exact: it never evicts a live entry,
// because a revocation a cache drops is a security hole. Entries leave only
// when Sweep finds them expired.
//
// Lookups (IsRevoked) are answered from process memory without allocating
// or doing I/O: a blocked Bloom filter (one cache line per key) rules out
// almost every credential that is not revoked, and a sharded hash table
// settles the rest exactly. With a Path, every entry is in a bbolt file,
// fsync'd, before Revoke returns (concurrent calls share a commit), and Open
// loads it again; a record that does not decode stops Open (ErrCorrupt)
// rather than start with a revocation missing.
//
// The storetest subpackage is the conformance suite every backend runs.
//
// This package must never import another oidcgate package, never log a
// token, entry value or secret, and never let an entry go before ExpiresAt.
package cache
