// Package cache owns the revocation store and the droppable caches.
//
// The revocation store is exact: it never evicts a live entry, because a
// revocation a cache drops is a security hole. Lookups are answered from
// process memory without allocating; the embedded backend persists every
// entry to bbolt before Revoke returns and reloads it at start.
//
// This package must never import another oidcgate package, never log a
// token or secret, and never let an entry expire before ExpiresAt.
package cache
