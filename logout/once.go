package logout

import (
	"context"
	"fmt"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// revokeOnce gives a revocation event (a logout token, a SET) its side
// effect once. The entries must be derived from the event alone (their
// revoked_at is the event's time), so that the same event always stores
// the same entries. The event's key is recorded in replays first; a key
// seen before is a replay only when its entries are all stored already:
// a key recorded by an attempt whose store write failed — here, on
// another replica, before a crash — is processed again, so no retry of a
// failed revocation is ever taken for a replay (BCL 1.0 §2.6 item 8,
// RFC 8417 §2.2 jti). A replay cache that cannot answer does not stop
// the revocation; replayErr reports it for the log.
func revokeOnce(ctx context.Context, replays Replays, store Store, key string, until time.Time, entries []cache.Entry) (replayed bool, replayErr, err error) {
	first, replayErr := replays.FirstSeen(ctx, key, until)
	if replayErr == nil && !first && stored(store, entries) {
		return true, nil, nil
	}
	for _, e := range entries {
		if _, err := store.Revoke(ctx, e); err != nil {
			return false, replayErr, fmt.Errorf("logout: revoke %s: %w", e.Kind, err)
		}
	}
	return false, replayErr, nil
}

// stored reports whether every entry is in the store, at least as recent.
func stored(store Store, entries []cache.Entry) bool {
	for _, e := range entries {
		got, ok := store.Get(e.Issuer, e.Kind, e.Value)
		if !ok || got.RevokedAt.Before(e.RevokedAt) {
			return false
		}
	}
	return true
}
