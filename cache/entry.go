package cache

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Kind says what a revocation entry names.
type Kind string

// The kinds of revocation entries (DESIGN.md, "Revocation model").
const (
	// KindJTI revokes one token by its jti claim.
	KindJTI Kind = "jti"
	// KindSID revokes every credential of one IdP session (iss, sid).
	KindSID Kind = "sid"
	// KindSub revokes every credential of a subject (iss, sub) issued at or
	// before the revocation.
	KindSub Kind = "sub"
	// KindClient revokes every credential issued to a client (iss, client_id)
	// at or before the revocation.
	KindClient Kind = "client"
	// KindSession revokes one gateway session. The entry's value is the
	// session id's digest (SessionDigest), never the id itself.
	KindSession Kind = "session"
	// KindKey revokes one API key by its public id (see KeyRecord).
	KindKey Kind = "key"
)

// sessionDigestPrefix starts every SessionDigest.
const sessionDigestPrefix = "sha256:"

// SessionDigest is the value under which a gateway session is revoked:
// "sha256:" and the unpadded base64url SHA-256 of the session id. Store
// entries, audit records and logs hold it, never the id, which would let
// whoever reads them name (and end) a live session. A value that already
// is a digest is returned unchanged, so that a digest read from a listing
// or an audit record names the same session.
func SessionDigest(id string) string {
	if len(id) == len(sessionDigestPrefix)+43 && strings.HasPrefix(id, sessionDigestPrefix) {
		if b, err := base64.RawURLEncoding.Strict().DecodeString(id[len(sessionDigestPrefix):]); err == nil && len(b) == sha256.Size {
			return id
		}
	}
	sum := sha256.Sum256([]byte(id))
	return sessionDigestPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// Kinds lists every valid Kind.
var Kinds = []Kind{KindJTI, KindSID, KindSub, KindClient, KindSession, KindKey}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindJTI, KindSID, KindSub, KindClient, KindSession, KindKey:
		return true
	}
	return false
}

// Issuerless reports whether entries of this kind name no issuer: the
// gateway's own sessions and API keys.
func (k Kind) Issuerless() bool { return k == KindSession || k == KindKey }

// Schedulable reports whether entries of this kind may carry EffectiveAt:
// client (coordinated reissue of a workload's credentials) and key (the old
// key of a rotation, which dies when the grace ends).
func (k Kind) Schedulable() bool { return k == KindClient || k == KindKey }

// IssuedBefore reports whether entries of this kind revoke only credentials
// issued at or before the revocation (sub, client) rather than a single
// named credential (jti, sid, session).
func (k Kind) IssuedBefore() bool { return k == KindSub || k == KindClient }

// MaxValueLen bounds Entry.Value and Entry.Issuer; longer values are refused.
const MaxValueLen = 1024

// MaxTextLen bounds Entry.Reason and Entry.Initiator.
const MaxTextLen = 512

// ErrInvalidEntry is wrapped by every error about a malformed Entry.
var ErrInvalidEntry = errors.New("cache: invalid revocation entry")

// ErrClosed is returned by a store that has been closed.
var ErrClosed = errors.New("cache: store closed")

// Entry is one revocation. The key is (Issuer, Kind, Value); revoking the
// same key again keeps the later RevokedAt and ExpiresAt, so repeating a
// revocation is idempotent and never weakens it.
type Entry struct {
	// Issuer is the token issuer the value belongs to. Empty only for
	// KindSession, whose ids are the gateway's own.
	Issuer string `json:"issuer,omitempty"`
	Kind   Kind   `json:"kind"`
	Value  string `json:"value"`
	// RevokedAt is when the revocation was accepted. For sub and client
	// entries a credential is revoked when its iat is at or before RevokedAt
	// (plus the store's clock skew).
	RevokedAt time.Time `json:"revoked_at"`
	// ExpiresAt is when the entry may be forgotten: no credential it revokes
	// can still be valid then.
	ExpiresAt time.Time `json:"expires_at"`
	Reason    string    `json:"reason,omitempty"`
	// Initiator says who asked (e.g. "admin:ops", an IdP issuer); never a secret.
	Initiator string `json:"initiator,omitempty"`
	// EffectiveAt, when not zero, schedules the revocation: it is in force
	// from EffectiveAt on, not before, and (for client) revokes the
	// credentials issued up to EffectiveAt. Only kinds client and key take
	// it. A scheduled entry is stored apart from an immediate one of the same
	// key, so neither weakens the other; its RevokedAt is EffectiveAt, and
	// scheduling the same key again keeps the later time.
	EffectiveAt time.Time `json:"effective_at,omitzero"`
}

// Validate reports every problem of e at once.
func (e Entry) Validate() error {
	var errs []error
	if !e.Kind.Valid() {
		errs = append(errs, fmt.Errorf("%w: unknown kind %q", ErrInvalidEntry, e.Kind))
	}
	if e.Value == "" {
		errs = append(errs, fmt.Errorf("%w: empty value", ErrInvalidEntry))
	}
	if len(e.Value) > MaxValueLen || len(e.Issuer) > MaxValueLen {
		errs = append(errs, fmt.Errorf("%w: value or issuer longer than %d bytes", ErrInvalidEntry, MaxValueLen))
	}
	if e.Issuer == "" && !e.Kind.Issuerless() && e.Kind.Valid() {
		errs = append(errs, fmt.Errorf("%w: kind %s needs an issuer", ErrInvalidEntry, e.Kind))
	}
	if !e.EffectiveAt.IsZero() && !e.Kind.Schedulable() {
		errs = append(errs, fmt.Errorf("%w: kind %s takes no effective_at", ErrInvalidEntry, e.Kind))
	}
	if len(e.Reason) > MaxTextLen || len(e.Initiator) > MaxTextLen {
		errs = append(errs, fmt.Errorf("%w: reason or initiator longer than %d bytes", ErrInvalidEntry, MaxTextLen))
	}
	if e.RevokedAt.IsZero() && e.EffectiveAt.IsZero() {
		errs = append(errs, fmt.Errorf("%w: zero revoked_at", ErrInvalidEntry))
	}
	if !e.ExpiresAt.After(e.inForceAt()) {
		errs = append(errs, fmt.Errorf("%w: expires_at not after revoked_at", ErrInvalidEntry))
	}
	return errors.Join(errs...)
}

// inForceAt is the time the store keeps as RevokedAt: EffectiveAt for a
// scheduled entry.
func (e Entry) inForceAt() time.Time {
	if !e.EffectiveAt.IsZero() {
		return e.EffectiveAt
	}
	return e.RevokedAt
}

// Credential is what a request presents, reduced to what the revocation
// check needs. Empty fields are not checked. It is passed by pointer on the
// hot path and never retained.
type Credential struct {
	Issuer   string
	JTI      string
	SID      string
	Sub      string
	ClientID string
	// SessionID is the gateway session's SessionDigest.
	SessionID string
	// KeyID is an API key's public id.
	KeyID string
	// IssuedAt is the credential's iat; sub and client entries revoke it when
	// IssuedAt <= RevokedAt + skew. A zero IssuedAt is treated as issued
	// before every revocation (fail closed).
	IssuedAt time.Time
}

// ListOptions selects and pages entries for List. Zero fields match all.
type ListOptions struct {
	Issuer string
	Kind   Kind
	Value  string
	// Limit caps the page; 0 means 100, and more than 1000 is treated as 1000.
	Limit int
	// Cursor is the opaque next-page token returned by the previous List;
	// empty starts from the beginning.
	Cursor string
}
