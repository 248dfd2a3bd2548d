// Package audit owns the tamper-evident audit log of revocations: Log, an
// append-only, hash-chained JSON Lines file made durable by group commit
// (one fsync per batch), rotated by size and resumed across restarts;
// Store, which makes every revocation source write its record before
// acknowledging; Feed, which records what nobody waits for (revocations
// applied from another replica, app logout outcomes) through a bounded
// queue; Query, the reader behind GET /admin/audit; and VerifyFiles and
// VerifyAnchor, the checks of `oidcgate audit verify`.
//
// Guarantees: a record Append returned nil for is on disk (fsync'd); the
// chain links each line to the hash of the previous one, so an edited,
// removed, reordered or inserted line is found by VerifyFiles; a
// revocation whose record failed stays applied.
//
// This package must never: import a project package other than cache;
// record a raw token (targets carry identifiers or token hashes); block
// the store or the gateway on a full queue (Feed drops and counts).
package audit
