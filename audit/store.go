package audit

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// auditWriteTimeout bounds how long a revocation waits for its record.
const auditWriteTimeout = 10 * time.Second

// Backend is the revocation store a Store wraps (logout.Store's methods).
type Backend interface {
	Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error)
	List(ctx context.Context, o cache.ListOptions) ([]cache.Entry, string, error)
	Get(issuer string, kind cache.Kind, value string) (cache.Entry, bool)
}

var _ Backend = (*cache.Store)(nil)

// Store is a Backend whose Revoke also writes the "revocation" audit
// record: after Store.Revoke succeeded and before returning, so whoever
// acknowledges a revocation does so only once its record is durable. If
// the record cannot be written, Revoke returns an error (the handler
// answers non-2xx) but the revocation stays applied: failing to audit
// must never leave a session alive. The record is written even when ctx
// is cancelled after the revocation was applied (bounded by 10s).
// Use it by pointer; Store and Log are required.
type Store struct {
	Store Backend
	Log   *Log
	// Clock is the clock of received_at and applied_at; nil means the
	// wall clock.
	Clock clock.Clock

	mu    sync.Mutex
	local map[entryKey]int // Revokes of each key in progress through s
}

var _ Backend = (*Store)(nil)

type entryKey struct {
	issuer string
	kind   cache.Kind
	value  string
}

// Revoke applies e through Store, then appends its "revocation" record.
// received_at is when Revoke was called, applied_at when Store.Revoke
// returned.
func (s *Store) Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error) {
	received := s.now()
	k := entryKey{e.Issuer, e.Kind, e.Value}
	s.mark(k, 1)
	stored, err := s.Store.Revoke(ctx, e)
	s.mark(k, -1)
	if err != nil {
		return stored, err
	}
	rec := RecordOf(EventRevocation, e)
	rec.ReceivedAt, rec.AppliedAt = received, s.now()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditWriteTimeout)
	defer cancel()
	if err := s.Log.Append(actx, rec); err != nil {
		return stored, fmt.Errorf("audit: revocation applied but its audit record not written: %w", err)
	}
	return stored, nil
}

// List is Store.List.
// Get is the wrapped store's Get.
func (s *Store) Get(issuer string, kind cache.Kind, value string) (cache.Entry, bool) {
	return s.Store.Get(issuer, kind, value)
}

func (s *Store) List(ctx context.Context, o cache.ListOptions) ([]cache.Entry, string, error) {
	return s.Store.List(ctx, o)
}

// Local reports whether a Revoke of e's key through s is in progress. The
// store reports an entry to its Subscribe functions before Revoke
// returns, so a subscriber uses Local to tell revocations accepted here
// (audited by Revoke) from those applied from another replica.
func (s *Store) Local(e cache.Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local[entryKey{e.Issuer, e.Kind, e.Value}] > 0
}

func (s *Store) mark(k entryKey, d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local == nil {
		s.local = make(map[entryKey]int)
	}
	if s.local[k] += d; s.local[k] <= 0 {
		delete(s.local, k)
	}
}

func (s *Store) now() time.Time {
	return clock.Or(s.Clock).Now().UTC()
}
