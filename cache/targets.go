package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TargetState is where one target of a revocation stands.
type TargetState string

// The states of a target.
const (
	// TargetPending: not reached yet; a worker will (re)try it.
	TargetPending TargetState = "pending"
	// TargetDone: reached (or nothing was there to end; see Note).
	TargetDone TargetState = "done"
	// TargetFailed: the retry budget is spent without success.
	TargetFailed TargetState = "failed"
	// TargetUnsupported: the target cannot do what the revocation asks
	// (e.g. Entra has no per-session call); never widened silently.
	TargetUnsupported TargetState = "unsupported"
	// TargetNotHonoured: the target answered, but a check showed that it
	// did not do what it was asked (an app's session alive after its
	// logout call).
	TargetNotHonoured TargetState = "not_honoured"
)

// Valid reports whether s is one of the states.
func (s TargetState) Valid() bool {
	switch s {
	case TargetPending, TargetDone, TargetFailed, TargetUnsupported, TargetNotHonoured:
		return true
	}
	return false
}

// Final reports whether s ends the target's work (done, failed,
// unsupported or not honoured).
func (s TargetState) Final() bool { return s.Valid() && s != TargetPending }

// TargetKind says what a target is, e.g. TargetSessionAuthority. Kinds are
// open-ended (lower-case letters and underscores, at most 64 bytes) so that
// other rooms can add theirs (SSF receivers, app honour checks).
type TargetKind string

// TargetSessionAuthority is a call to the system that holds the user's SSO
// sessions and refresh tokens (issuers[].session_authority).
const TargetSessionAuthority TargetKind = "session_authority"

// maxTargetKind bounds a TargetKind.
const maxTargetKind = 64

func (k TargetKind) valid() bool {
	if k == "" || len(k) > maxTargetKind {
		return false
	}
	for _, c := range k {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

// Target is one thing a revocation must reach beyond the gateway's own
// store, and how far it got. It names its revocation by the entry's key
// and RevokedAt: a later revocation of the same key is a new version whose
// targets start again. Its JSON names are stable (the status API shows
// them).
type Target struct {
	// Issuer, EntryKind and Value are the key of the revocation entry.
	Issuer    string `json:"issuer,omitempty"`
	EntryKind Kind   `json:"entry_kind"`
	Value     string `json:"value"`
	// RevokedAt is the entry's RevokedAt: the version of the revocation.
	RevokedAt time.Time `json:"revoked_at"`
	// ExpiresAt is the entry's ExpiresAt; the target is kept until then.
	ExpiresAt time.Time `json:"expires_at"`
	// Initiator is the entry's Initiator (who asked).
	Initiator string `json:"initiator,omitempty"`
	// Reason is the entry's Reason (e.g. an SSF receiver's reason_admin).
	Reason string `json:"reason,omitempty"`

	// Kind and Name identify the target within its revocation, e.g.
	// (session_authority, https://sso.example.com).
	Kind TargetKind `json:"kind"`
	Name string     `json:"name"`

	State    TargetState `json:"state"`
	Attempts int         `json:"attempts"`
	// LastError is the last attempt's error; "" when it succeeded.
	LastError string `json:"last_error,omitempty"`
	// Note explains a state (e.g. "unknown user: nothing to end").
	Note string `json:"note,omitempty"`
	// NextAt is when the next attempt is due (pending only).
	NextAt time.Time `json:"next_at,omitzero"`
	// CompletedAt is when the target reached a final state.
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// TargetOf returns the pending target (kind, name) of entry e.
func TargetOf(e Entry, kind TargetKind, name string) Target {
	return Target{
		Issuer: e.Issuer, EntryKind: e.Kind, Value: e.Value,
		RevokedAt: e.RevokedAt.UTC(), ExpiresAt: e.ExpiresAt.UTC(), Initiator: e.Initiator, Reason: e.Reason,
		Kind: kind, Name: name, State: TargetPending,
	}
}

// ErrInvalidTarget is wrapped by every error about a malformed Target.
var ErrInvalidTarget = errors.New("cache: invalid target")

// Validate reports every problem of t at once.
func (t Target) Validate() error {
	var errs []error
	if codeOf(t.EntryKind) == 0 {
		errs = append(errs, fmt.Errorf("%w: unknown entry kind %q", ErrInvalidTarget, t.EntryKind))
	}
	if t.Value == "" || len(t.Value) > MaxValueLen || len(t.Issuer) > MaxValueLen {
		errs = append(errs, fmt.Errorf("%w: value empty, or value or issuer longer than %d bytes", ErrInvalidTarget, MaxValueLen))
	}
	if !t.Kind.valid() {
		errs = append(errs, fmt.Errorf("%w: kind %q is not lower-case letters and underscores of at most %d bytes", ErrInvalidTarget, t.Kind, maxTargetKind))
	}
	if t.Name == "" || len(t.Name) > MaxValueLen || strings.ContainsRune(t.Name, 0) {
		errs = append(errs, fmt.Errorf("%w: name empty, with NUL, or longer than %d bytes", ErrInvalidTarget, MaxValueLen))
	}
	if !t.State.Valid() {
		errs = append(errs, fmt.Errorf("%w: unknown state %q", ErrInvalidTarget, t.State))
	}
	if len(t.LastError) > MaxTextLen || len(t.Note) > MaxTextLen || len(t.Initiator) > MaxTextLen || len(t.Reason) > MaxTextLen {
		errs = append(errs, fmt.Errorf("%w: last_error, note, initiator or reason longer than %d bytes", ErrInvalidTarget, MaxTextLen))
	}
	if t.Attempts < 0 {
		errs = append(errs, fmt.Errorf("%w: negative attempts", ErrInvalidTarget))
	}
	if t.RevokedAt.IsZero() || !t.ExpiresAt.After(t.RevokedAt) || t.RevokedAt.Before(minTime) || t.ExpiresAt.After(maxTime) {
		errs = append(errs, fmt.Errorf("%w: revoked_at zero or expires_at not after it", ErrInvalidTarget))
	}
	return errors.Join(errs...)
}

// entryKey is the key of t's entry, as the revocation store encodes it.
func (t Target) entryKey() string { return string(encodeKey(codeOf(t.EntryKind), t.Issuer, t.Value)) }

// field names t within its entry: kind NUL name (neither holds a NUL).
func (t Target) field() string { return string(t.Kind) + "\x00" + t.Name }

// ID names t uniquely among all targets of every revocation (not only of
// this version): a lease or schedule keyed by it covers the key's latest
// version. It is field NUL entry key, so it splits unambiguously.
func (t Target) ID() string { return t.field() + "\x00" + t.entryKey() }

// supersedes reports whether stored version old must give way to t: t is
// a later version, or the same version moving on (a final state is never
// undone by a late pending write from a worker that lost its lease).
func (t Target) supersedes(old Target) bool {
	switch {
	case t.RevokedAt.After(old.RevokedAt):
		return true
	case t.RevokedAt.Before(old.RevokedAt):
		return false
	}
	return !old.State.Final() || t.State.Final() && old.State == t.State
}

// normal returns t with times in UTC, as every backend stores it.
func (t Target) normal() Target {
	t.RevokedAt, t.ExpiresAt = t.RevokedAt.UTC(), t.ExpiresAt.UTC()
	if !t.NextAt.IsZero() {
		t.NextAt = t.NextAt.UTC()
	}
	if !t.CompletedAt.IsZero() {
		t.CompletedAt = t.CompletedAt.UTC()
	}
	return t
}

// targetsBucket holds the targets of a Store with a Path: ID -> JSON.
var targetsBucket = []byte("targets")

// targetTable is a Store's targets: in memory, and in the file with a
// Path. Leases are in memory only: one process is the only worker there is.
type targetTable struct {
	mu     sync.Mutex
	m      map[string]Target // by ID
	leases map[string]lease
}

type lease struct {
	holder string
	until  time.Time
}

// loadTargets fills the table from the file, dropping expired targets.
func (s *Store) loadTargets(tx *bolt.Tx, now time.Time) error {
	b, err := tx.CreateBucketIfNotExists(targetsBucket)
	if err != nil {
		return err
	}
	var expired [][]byte
	err = b.ForEach(func(k, v []byte) error {
		var t Target
		if err := json.Unmarshal(v, &t); err != nil || t.Validate() != nil || t.ID() != string(k) {
			return corrupt("target record of %d bytes", len(v))
		}
		if !t.ExpiresAt.After(now) {
			expired = append(expired, append([]byte(nil), k...))
			return nil
		}
		s.targets.m[string(k)] = t.normal()
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// AddTargets records ts, each unless a target of the same ID is stored for
// the same or a later version of its revocation (adding is then a no-op:
// every replica may add the targets of an entry it applied). It returns
// the targets as stored, in the order of ts. With a Path they are in the
// file before it returns. It returns an error wrapping ErrInvalidTarget
// (nothing stored) or ErrClosed.
func (s *Store) AddTargets(ctx context.Context, ts []Target) ([]Target, error) {
	return s.putTargets(ctx, ts, func(t Target, old Target, ok bool) bool {
		return !ok || t.RevokedAt.After(old.RevokedAt)
	})
}

// UpdateTarget stores t over the stored target of its ID when it is the
// same version moving on: a pending target may become anything, a final
// one stays as it is. A target of another version, or none, is left
// alone: updated reports whether t was stored.
func (s *Store) UpdateTarget(ctx context.Context, t Target) (updated bool, err error) {
	out, err := s.putTargets(ctx, []Target{t}, func(t Target, old Target, ok bool) bool {
		return ok && t.RevokedAt.Equal(old.RevokedAt) && t.supersedes(old)
	})
	if err != nil {
		return false, err
	}
	return sameTarget(out[0], t.normal()), nil
}

func sameTarget(a, b Target) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func validateTargets(ts []Target) error {
	var errs []error
	for i, t := range ts {
		if err := t.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("target %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// putTargets stores each t of ts for which keep(t, stored, found) holds,
// and returns what is stored afterwards. With a Path, the decision is
// taken in the file's transaction (concurrent calls share one, as
// Revokes do), then applied to memory by the same rule: the rule
// converges whatever the order.
func (s *Store) putTargets(ctx context.Context, ts []Target, keep func(t, old Target, ok bool) bool) ([]Target, error) {
	if err := validateTargets(ts); err != nil {
		return nil, fmt.Errorf("cache: targets: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cache: targets: %w", err)
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	in := make([]Target, len(ts))
	for i, t := range ts {
		in[i] = t.normal()
	}
	if s.db != nil {
		// Batch may run fn more than once; fn only reads and writes the tx.
		err := s.db.Batch(func(tx *bolt.Tx) error {
			b := tx.Bucket(targetsBucket)
			for _, t := range in {
				var old Target
				v := b.Get([]byte(t.ID()))
				if v != nil {
					if err := json.Unmarshal(v, &old); err != nil {
						return corrupt("target record of %d bytes", len(v))
					}
				}
				if !keep(t, old, v != nil) {
					continue
				}
				nv, err := json.Marshal(t)
				if err != nil {
					return err
				}
				if err := b.Put([]byte(t.ID()), nv); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("cache: targets: persist: %w", err)
		}
	}
	tt := &s.targets
	tt.mu.Lock()
	defer tt.mu.Unlock()
	out := make([]Target, len(in))
	for i, t := range in {
		old, ok := tt.m[t.ID()]
		if keep(t, old, ok) {
			tt.m[t.ID()] = t
			old = t
		}
		out[i] = old
	}
	return out, nil
}

// Targets returns the targets of the entry (issuer, kind, value), ordered
// by kind and name. Each is of the latest version it was added for.
func (s *Store) Targets(ctx context.Context, issuer string, kind Kind, value string) ([]Target, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cache: targets: %w", err)
	}
	c := codeOf(kind)
	if c == 0 {
		return nil, fmt.Errorf("cache: targets: %w: unknown kind %q", ErrInvalidEntry, kind)
	}
	k := string(encodeKey(c, issuer, value))
	tt := &s.targets
	tt.mu.Lock()
	var out []Target
	for _, t := range tt.m {
		if t.entryKey() == k {
			out = append(out, t)
		}
	}
	tt.mu.Unlock()
	sortTargets(out)
	return out, nil
}

// PendingTargets returns every pending target that has not expired, in no
// particular order.
func (s *Store) PendingTargets(ctx context.Context) ([]Target, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cache: targets: %w", err)
	}
	now := s.now()
	tt := &s.targets
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var out []Target
	for _, t := range tt.m {
		if t.State == TargetPending && t.ExpiresAt.After(now) {
			out = append(out, t)
		}
	}
	return out, nil
}

// LeaseTarget gives holder the exclusive right to work on t's ID for ttl,
// or extends holder's lease; it reports false when another holder's lease
// has not run out. A Store is one process: the lease only keeps its own
// workers apart.
func (s *Store) LeaseTarget(ctx context.Context, t Target, holder string, ttl time.Duration) (bool, error) {
	if err := checkLease(holder, ttl); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("cache: lease: %w", err)
	}
	now := s.now()
	tt := &s.targets
	tt.mu.Lock()
	defer tt.mu.Unlock()
	id := t.ID()
	if l, ok := tt.leases[id]; ok && l.holder != holder && l.until.After(now) {
		return false, nil
	}
	if tt.leases == nil {
		tt.leases = make(map[string]lease)
	}
	tt.leases[id] = lease{holder: holder, until: now.Add(ttl)}
	return true, nil
}

// ReleaseTarget ends holder's lease on t's ID, if it holds one.
func (s *Store) ReleaseTarget(ctx context.Context, t Target, holder string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cache: lease: %w", err)
	}
	tt := &s.targets
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if l, ok := tt.leases[t.ID()]; ok && l.holder == holder {
		delete(tt.leases, t.ID())
	}
	return nil
}

// maxHolder bounds a lease holder's name.
const maxHolder = 256

func checkLease(holder string, ttl time.Duration) error {
	if holder == "" || len(holder) > maxHolder || ttl < time.Millisecond {
		return fmt.Errorf("cache: lease: %w: holder empty or longer than %d bytes, or ttl under 1ms", ErrInvalidTarget, maxHolder)
	}
	return nil
}

// sweepTargets forgets the targets (and leases) whose entry has expired.
func (s *Store) sweepTargets(now time.Time) {
	tt := &s.targets
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var expired []string
	for id, t := range tt.m {
		if !t.ExpiresAt.After(now) {
			expired = append(expired, id)
		}
	}
	for id, l := range tt.leases {
		if !l.until.After(now) {
			delete(tt.leases, id)
		}
	}
	if len(expired) == 0 {
		return
	}
	if s.db != nil {
		if err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(targetsBucket)
			for _, id := range expired {
				if err := b.Delete([]byte(id)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			s.log.Error("target sweep failed; expired targets kept", "path", s.cfg.Path, "err", err)
			return
		}
	}
	for _, id := range expired {
		delete(tt.m, id)
	}
}

// sortTargets orders ts by kind and name.
func sortTargets(ts []Target) {
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].Kind != ts[j].Kind {
			return ts[i].Kind < ts[j].Kind
		}
		return ts[i].Name < ts[j].Name
	})
}

// Target returns the stored target of t's ID (whatever its version), and
// whether there is one.
func (s *Store) Target(ctx context.Context, t Target) (Target, bool, error) {
	if err := ctx.Err(); err != nil {
		return Target{}, false, fmt.Errorf("cache: targets: %w", err)
	}
	tt := &s.targets
	tt.mu.Lock()
	defer tt.mu.Unlock()
	got, ok := tt.m[t.ID()]
	return got, ok, nil
}
