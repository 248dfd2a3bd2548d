package audit

import (
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// EventTarget is the final state of one target of a revocation (a call
// to a session authority; later an SSF receiver, an app check): done,
// failed after its retry budget, or unsupported.
const EventTarget = "target"

// TargetOutcome is the outcome of one target in an EventTarget record.
type TargetOutcome struct {
	// Kind and Name identify the target (e.g. session_authority, "hydra
	// http://127.0.0.1:4445").
	Kind string `json:"kind"`
	Name string `json:"name"`
	// State is done, failed or unsupported.
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	// Error is the last attempt's error; Note explains the state.
	Error       string    `json:"error,omitempty"`
	Note        string    `json:"note,omitempty"`
	CompletedAt time.Time `json:"completed_at"`
}

// RecordOfTarget returns the record of t's final state: the revocation it
// belongs to (target, trigger, initiator, revoked_at) and its outcome.
func RecordOfTarget(t cache.Target) Record {
	return Record{
		Event:     EventTarget,
		Trigger:   Trigger(t.Initiator),
		Initiator: t.Initiator,
		Targets:   []Target{{Issuer: t.Issuer, Kind: t.EntryKind, Value: t.Value}},
		RevokedAt: t.RevokedAt.UTC(),
		Outcome: &TargetOutcome{
			Kind: string(t.Kind), Name: t.Name, State: string(t.State), Attempts: t.Attempts,
			Error: t.LastError, Note: t.Note, CompletedAt: t.CompletedAt.UTC(),
		},
	}
}
