package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrCorrupt is wrapped by every error about a stored record or cursor that
// does not decode. Open refuses a file holding one rather than start with a
// revocation silently missing (fail closed).
var ErrCorrupt = errors.New("cache: corrupt record")

// kindCode is a Kind as one byte: the form used in keys and in memory.
type kindCode uint8

const (
	codeJTI kindCode = 1 + iota
	codeSID
	codeSub
	codeClient
	codeSession
	codeKey
	// Scheduled entries (Entry.EffectiveAt) of kinds client and key are
	// kept under their own codes, apart from the immediate ones.
	codeClientAt
	codeKeyAt
	// codeAPIKey rows are API key records (KeyRecord), not revocations.
	codeAPIKey
	numCodes
)

// codeOf returns k's code, or 0 when k is not a valid Kind.
func codeOf(k Kind) kindCode {
	switch k {
	case KindJTI:
		return codeJTI
	case KindSID:
		return codeSID
	case KindSub:
		return codeSub
	case KindClient:
		return codeClient
	case KindSession:
		return codeSession
	case KindKey:
		return codeKey
	}
	return 0
}

// scheduled returns the code of a scheduled entry of kind k, or 0.
func scheduled(k Kind) kindCode {
	switch k {
	case KindClient:
		return codeClientAt
	case KindKey:
		return codeKeyAt
	}
	return 0
}

// base maps a scheduled code to its kind's immediate code: both hash alike,
// so one filter probe covers both.
func (c kindCode) base() kindCode {
	switch c {
	case codeClientAt:
		return codeClient
	case codeKeyAt:
		return codeKey
	}
	return c
}

// isScheduled reports whether c is the code of a scheduled entry.
func (c kindCode) isScheduled() bool { return c == codeClientAt || c == codeKeyAt }

// issuerless reports whether keys of this code have an empty issuer.
func (c kindCode) issuerless() bool {
	switch c {
	case codeSession, codeKey, codeKeyAt, codeAPIKey:
		return true
	}
	return false
}

func (c kindCode) kind() Kind {
	switch c.base() {
	case codeJTI:
		return KindJTI
	case codeSID:
		return KindSID
	case codeSub:
		return KindSub
	case codeClient:
		return KindClient
	case codeSession:
		return KindSession
	case codeKey:
		return KindKey
	}
	return ""
}

func (c kindCode) valid() bool { return c >= codeJTI && c < numCodes }

// row is an Entry as the store keeps it: the kind as a code and times as
// Unix nanoseconds, so that every stored time survives a round trip exactly.
type row struct {
	issuer, value        string
	revokedAt, expiresAt int64
	reason, initiator    string
	kind                 kindCode
}

// The range of times a row can hold (years 1677 to 2262).
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// validate reports every problem of e: Entry.Validate's and the store's own
// (a session entry names no issuer, because IsRevoked looks sessions up with
// an empty issuer; times must fit in int64 Unix nanoseconds).
func validate(e Entry) error {
	errs := []error{e.Validate()}
	if e.Kind.Issuerless() && e.Issuer != "" {
		errs = append(errs, fmt.Errorf("%w: kind %s takes no issuer", ErrInvalidEntry, e.Kind))
	}
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"revoked_at", e.RevokedAt}, {"expires_at", e.ExpiresAt}, {"effective_at", e.EffectiveAt}} {
		if !t.t.IsZero() && (t.t.Before(minTime) || t.t.After(maxTime)) {
			errs = append(errs, fmt.Errorf("%w: %s outside years 1678-2262", ErrInvalidEntry, t.name))
		}
	}
	return errors.Join(errs...)
}

// rowOf converts a validated entry. A scheduled entry gets its kind's
// scheduled code and EffectiveAt as revokedAt.
func rowOf(e Entry) row {
	code := codeOf(e.Kind)
	if !e.EffectiveAt.IsZero() {
		code = scheduled(e.Kind)
	}
	return row{
		issuer:    e.Issuer,
		value:     e.Value,
		revokedAt: e.inForceAt().UnixNano(),
		expiresAt: e.ExpiresAt.UnixNano(),
		reason:    e.Reason,
		initiator: e.Initiator,
		kind:      code,
	}
}

// entry converts r back; times are in UTC.
func (r row) entry() Entry {
	e := Entry{
		Issuer:    r.issuer,
		Kind:      r.kind.kind(),
		Value:     r.value,
		RevokedAt: time.Unix(0, r.revokedAt).UTC(),
		ExpiresAt: time.Unix(0, r.expiresAt).UTC(),
		Reason:    r.reason,
		Initiator: r.initiator,
	}
	if r.kind.isScheduled() {
		e.EffectiveAt = e.RevokedAt
	}
	return e
}

// merge applies the rule that makes revoking idempotent and never weakening:
// keep the later RevokedAt and the later ExpiresAt, and the reason and
// initiator of the later revocation (on a tie, those already stored).
func merge(old, in row) row {
	out := old
	if in.revokedAt > old.revokedAt {
		out.revokedAt = in.revokedAt
		out.reason, out.initiator = in.reason, in.initiator
	}
	if in.expiresAt > old.expiresAt {
		out.expiresAt = in.expiresAt
	}
	return out
}

// The bbolt record layout (all integers big-endian):
//
//	key:   kind(1) | len(issuer)(2) | issuer | value
//	value: version(1) | revoked_at(8) | expires_at(8) |
//	       len(reason)(2) | reason | len(initiator)(2) | initiator
//
// Lengths are fixed-width, so every record has exactly one encoding.
const (
	recordVersion = 1
	keyHeader     = 3
	valueFixed    = 1 + 8 + 8 + 2 + 2
)

func encodeKey(k kindCode, issuer, value string) []byte {
	b := make([]byte, 0, keyHeader+len(issuer)+len(value))
	b = append(b, byte(k))
	b = binary.BigEndian.AppendUint16(b, uint16(len(issuer)))
	b = append(b, issuer...)
	return append(b, value...)
}

func encodeValue(r row) []byte {
	b := make([]byte, 0, valueFixed+len(r.reason)+len(r.initiator))
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.revokedAt))
	b = binary.BigEndian.AppendUint64(b, uint64(r.expiresAt))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.reason)))
	b = append(b, r.reason...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.initiator)))
	return append(b, r.initiator...)
}

// rawRecord is a decoded record whose byte slices alias the input.
type rawRecord struct {
	kind                 kindCode
	issuer, value        []byte
	revokedAt, expiresAt int64
	reason, initiator    []byte
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// decodeKey checks and splits a key; the slices alias k.
func decodeKey(k []byte) (kindCode, []byte, []byte, error) {
	if len(k) < keyHeader {
		return 0, nil, nil, corrupt("key of %d bytes", len(k))
	}
	c := kindCode(k[0])
	if !c.valid() {
		return 0, nil, nil, corrupt("unknown kind %d", k[0])
	}
	n := int(binary.BigEndian.Uint16(k[1:3]))
	if n > MaxValueLen || n > len(k)-keyHeader {
		return 0, nil, nil, corrupt("issuer length %d", n)
	}
	issuer, value := k[keyHeader:keyHeader+n], k[keyHeader+n:]
	if len(value) == 0 || len(value) > MaxValueLen {
		return 0, nil, nil, corrupt("value length %d", len(value))
	}
	if c.issuerless() != (n == 0) {
		return 0, nil, nil, corrupt("issuer presence does not match kind %s", c.kind())
	}
	return c, issuer, value, nil
}

// decodeRecord checks and splits one stored record without allocating. It
// accepts exactly what encodeKey and encodeValue produce for a valid entry.
func decodeRecord(k, v []byte) (rawRecord, error) {
	c, issuer, value, err := decodeKey(k)
	if err != nil {
		return rawRecord{}, err
	}
	r := rawRecord{kind: c, issuer: issuer, value: value}
	if len(v) < valueFixed {
		return rawRecord{}, corrupt("value of %d bytes", len(v))
	}
	if v[0] != recordVersion {
		return rawRecord{}, corrupt("version %d", v[0])
	}
	r.revokedAt = int64(binary.BigEndian.Uint64(v[1:9]))
	r.expiresAt = int64(binary.BigEndian.Uint64(v[9:17]))
	if r.expiresAt <= r.revokedAt {
		return rawRecord{}, corrupt("expires_at not after revoked_at")
	}
	rest := v[17:]
	if r.reason, rest, err = text(rest); err != nil {
		return rawRecord{}, err
	}
	if r.initiator, rest, err = text(rest); err != nil {
		return rawRecord{}, err
	}
	if len(rest) != 0 {
		return rawRecord{}, corrupt("%d trailing bytes", len(rest))
	}
	return r, nil
}

// text splits a length-prefixed reason or initiator off b.
func text(b []byte) ([]byte, []byte, error) {
	if len(b) < 2 {
		return nil, nil, corrupt("truncated text length")
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > MaxTextLen || n > len(b)-2 {
		return nil, nil, corrupt("text length %d", n)
	}
	return b[2 : 2+n], b[2+n:], nil
}

// row copies r out of the bolt page it aliases.
func (r rawRecord) row() row {
	return row{
		issuer:    string(r.issuer),
		value:     string(r.value),
		revokedAt: r.revokedAt,
		expiresAt: r.expiresAt,
		reason:    string(r.reason),
		initiator: string(r.initiator),
		kind:      r.kind,
	}
}
