package propagate

import (
	"context"

	"github.com/oidcgate/oidcgate/cache"
)

// Auditor receives the final state of every target (done, failed,
// unsupported): the CLI writes it to the audit log's hash chain
// (audit.RecordOfTarget). A target is recorded once by the replica that
// finished it; across a lease takeover, at most twice.
type Auditor interface {
	Target(ctx context.Context, t cache.Target) error
}

// record audits t's final state; a failure is logged (the target's state
// is in the store either way).
func (w *Worker) record(ctx context.Context, t cache.Target) {
	if w.cfg.Audit == nil {
		return
	}
	if err := w.cfg.Audit.Target(ctx, t); err != nil {
		w.log.Error("target outcome not audited", "authority", t.Name, "state", string(t.State), "error", err)
	}
}
