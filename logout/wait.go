package logout

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// Bounds of POST /admin/revocations?wait=replicas.
const (
	// defaultWaitTimeout is how long the answer waits for the live
	// replicas without a timeout parameter; maxWaitTimeout caps it.
	defaultWaitTimeout = 5 * time.Second
	maxWaitTimeout     = 30 * time.Second
	// waitPoll is how often the replicas' acknowledgements are read.
	waitPoll = 5 * time.Millisecond
)

// WaitReplicas is the "wait" member of the answer to POST
// /admin/revocations?wait=replicas.
type WaitReplicas struct {
	// Applied reports whether every replica that is up applied the entry
	// before the timeout.
	Applied bool `json:"applied"`
	// Pending lists the replicas that are up and had not applied it when
	// the answer was given; never null.
	Pending []string `json:"pending"`
	// Down lists the replicas that are down (not waited for: each
	// resynchronises before it serves again); never null.
	Down []string `json:"down"`
}

// revokeAnswer is the body of a 201: the stored entry, and with
// ?wait=replicas what the replicas did.
type revokeAnswer struct {
	cache.Entry
	Wait *WaitReplicas `json:"wait,omitempty"`
}

// SetApplier lets POST /admin/revocations?wait=replicas wait until every
// live replica applied the entry, as ap reports it. Without it, wait is
// refused (400). Call it before serving.
func (a *Admin) SetApplier(ap Applier) { a.applier = ap }

// parseWait reads the wait and timeout parameters of a POST: wait must be
// "replicas" when given; timeout (with wait only) is a Go duration up to
// 30s, default 5s. It returns 0 when no wait is asked.
func (a *Admin) parseWait(rawQuery string) (time.Duration, error) {
	v, err := url.ParseQuery(rawQuery)
	if err != nil {
		return 0, badRequest("query is not valid")
	}
	for name, vals := range v {
		if len(vals) != 1 {
			return 0, badRequest("%s: given more than once", truncate(name, 32))
		}
		if name != "wait" && name != "timeout" {
			return 0, badRequest("unknown parameter %q", truncate(name, 32))
		}
	}
	switch v.Get("wait") {
	case "":
		if v.Has("timeout") {
			return 0, badRequest("timeout: only with wait=replicas")
		}
		return 0, nil
	case "replicas":
	default:
		return 0, badRequest("wait: only replicas is supported")
	}
	if a.applier == nil {
		return 0, badRequest("wait: this gateway cannot tell which replicas applied an entry")
	}
	d := defaultWaitTimeout
	if s := v.Get("timeout"); s != "" {
		if d, err = time.ParseDuration(s); err != nil || d <= 0 || d > maxWaitTimeout {
			return 0, badRequest("timeout: a duration between 0 and %s", maxWaitTimeout)
		}
	}
	return d, nil
}

// waitReplicas polls until every live replica applied e (its current
// version) or timeout passes, and says which had not.
func (a *Admin) waitReplicas(ctx context.Context, e cache.Entry, timeout time.Duration) *WaitReplicas {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := &WaitReplicas{Pending: []string{}, Down: []string{}}
	t, tick := a.clk.NewTicker(waitPoll)
	defer t.Stop()
	for {
		st, err := a.applier.Applied(ctx, e.Issuer, e.Kind, e.Value)
		if err == nil && st.Found && !st.Entry.RevokedAt.Before(e.RevokedAt) {
			out := StatusOf(st)
			last = &WaitReplicas{Pending: out.Pending, Down: out.Down}
			if len(out.Pending) == 0 {
				last.Applied = true
				return last
			}
		}
		select {
		case <-ctx.Done():
			if len(last.Pending) == 0 && !last.Applied {
				// The store never answered: nobody is known to have it.
				last.Pending = append(last.Pending, fmt.Sprintf("unknown (%v)", context.Cause(ctx)))
			}
			return last
		case <-tick:
		}
	}
}
