package logout

import (
	"context"
	"fmt"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// TargetSource lists the targets a revocation has in the store (session
// authority calls, later SSF receivers and app checks). *cache.Store and
// *cache.Redis implement it.
type TargetSource interface {
	Targets(ctx context.Context, issuer string, kind cache.Kind, value string) ([]cache.Target, error)
}

var (
	_ TargetSource = (*cache.Store)(nil)
	_ TargetSource = (*cache.Redis)(nil)
)

// TargetPlanner returns the targets an entry must have (the outbound
// room's plan), so that one not yet recorded in the store shows as
// pending instead of being missed.
type TargetPlanner func(cache.Entry) []cache.Target

// SetTargets makes StatusHandler list the targets src holds for a
// revocation, and those plan says it must have, not yet in src, as
// pending. Without it only replicas and app logouts are targets. Call it
// before serving.
func (a *Admin) SetTargets(src TargetSource, plan TargetPlanner) {
	a.targetSrc, a.plan = src, plan
}

// The kinds of TargetStatus besides those of cache.Target.
const (
	TargetReplica   = "replica"
	TargetAppLogout = "app_logout"
)

// TargetStatus is one target of a revocation in a RevocationStatus.
type TargetStatus struct {
	// Kind is replica, app_logout or a cache.TargetKind (session_authority).
	Kind string `json:"kind"`
	// Name names the target within its kind: a replica id, "route
	// session", an authority.
	Name string `json:"name"`
	// State is pending, done, failed, unsupported or not_honoured.
	State     cache.TargetState `json:"state"`
	Attempts  int               `json:"attempts,omitempty"`
	LastError string            `json:"last_error,omitempty"`
	Note      string            `json:"note,omitempty"`
	// CompletedAt is when it reached its state; nil while pending.
	CompletedAt *time.Time `json:"completed_at,omitempty"`
	// NextAt is when the next attempt is due (pending only).
	NextAt *time.Time `json:"next_at,omitempty"`
}

// judgeTargets fills out.Targets from out's replicas and app logouts and
// the store's targets of the entry, and out.Complete: a revocation is
// complete when every target is done or unsupported.
func (a *Admin) judgeTargets(ctx context.Context, out *RevocationStatus) error {
	out.Targets = []TargetStatus{}
	if out.Entry == nil {
		return nil
	}
	e := *out.Entry
	for _, r := range out.Replicas {
		ts := TargetStatus{Kind: TargetReplica, Name: r.ID, State: cache.TargetPending}
		switch {
		case r.Applied:
			ts.State, ts.CompletedAt = cache.TargetDone, r.AppliedAt
		case !r.Up:
			ts.Note = "replica down: it resynchronises before it serves again"
		}
		out.Targets = append(out.Targets, ts)
	}
	for _, l := range out.AppLogouts {
		ts := TargetStatus{Kind: TargetAppLogout, Name: l.Route + " session " + l.Session, State: cache.TargetDone, Attempts: l.Attempts}
		switch l.Outcome {
		case "ok":
		case "not_honoured":
			ts.State = cache.TargetNotHonoured
			ts.LastError = fmt.Sprintf("the app's logout answered %d, but its app_verify path still answered %d with the old cookies", l.Status, l.VerifyStatus)
		default:
			ts.State = cache.TargetFailed
			ts.LastError = fmt.Sprintf("%s (status %d)", l.Outcome, l.Status)
		}
		out.Targets = append(out.Targets, ts)
	}
	if a.targetSrc != nil {
		stored, err := a.targetSrc.Targets(ctx, e.Issuer, e.Kind, e.Value)
		if err != nil {
			return err
		}
		byName := map[string]cache.Target{}
		for _, t := range stored {
			byName[string(t.Kind)+"\x00"+t.Name] = t
		}
		var planned []cache.Target
		if a.plan != nil {
			planned = a.plan(e)
		}
		// The entry's current version must reach each planned target; a
		// stored target of an earlier version does not count for it.
		for _, p := range planned {
			k := string(p.Kind) + "\x00" + p.Name
			t, ok := byName[k]
			if !ok || t.RevokedAt.Before(e.RevokedAt) {
				t = p
				t.Note = "not yet recorded"
			}
			delete(byName, k)
			out.Targets = append(out.Targets, statusOf(t))
		}
		// Targets of this key the current version does not plan (an
		// earlier version's, e.g. before the IdP's own logout of the same
		// session replaced it) stay listed, as they stand.
		for _, t := range stored {
			if _, ok := byName[string(t.Kind)+"\x00"+t.Name]; ok {
				out.Targets = append(out.Targets, statusOf(t))
			}
		}
	}
	out.Complete = true
	for _, t := range out.Targets {
		if t.State != cache.TargetDone && t.State != cache.TargetUnsupported {
			out.Complete = false
		}
	}
	return nil
}

func statusOf(t cache.Target) TargetStatus {
	ts := TargetStatus{
		Kind: string(t.Kind), Name: t.Name, State: t.State, Attempts: t.Attempts,
		LastError: t.LastError, Note: t.Note,
	}
	if !t.CompletedAt.IsZero() {
		at := t.CompletedAt
		ts.CompletedAt = &at
	}
	if !t.NextAt.IsZero() && t.State == cache.TargetPending {
		at := t.NextAt
		ts.NextAt = &at
	}
	return ts
}
