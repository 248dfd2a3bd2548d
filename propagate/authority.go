package propagate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// Authority ends sessions and tokens at the system that issued them. Every
// method is idempotent (calling it again after a success, or after a lost
// answer, is harmless) and safe for concurrent use; the deadline is ctx's,
// bounded by the connector's own call timeout when ctx has none.
//
// A non-nil error is always one of: ErrUnsupported, ErrNotFound, or an
// error wrapping a *CallError (use errors.Is / errors.As).
type Authority interface {
	// Name identifies the authority in logs, metrics and audit records,
	// e.g. "keycloak https://sso.example.com/realms/acme". It holds no
	// secret and is stable for one configuration.
	Name() string
	// EndUser ends every SSO session of the user and revokes the refresh
	// and offline tokens the authority issued to them. userID is the
	// user's id at the authority (the user_id_claim of their tokens).
	EndUser(ctx context.Context, userID string) error
	// EndSession ends one SSO session, named by the "sid" of the tokens
	// issued in it. ErrUnsupported when the authority has no such call.
	EndSession(ctx context.Context, sid string) error
	// RevokeClient revokes the tokens the authority issued to one client.
	// ErrUnsupported when the authority has no such call.
	RevokeClient(ctx context.Context, clientID string) error
}

// Call makes the call of a that a revocation of the given kind needs:
// EndUser for a sub (value: the user's id at the authority), EndSession
// for a sid, RevokeClient for a client. Any other kind (jti, session) has
// no counterpart at an authority: ErrUnsupported.
func Call(ctx context.Context, a Authority, kind cache.Kind, value string) error {
	switch kind {
	case cache.KindSub:
		return a.EndUser(ctx, value)
	case cache.KindSID:
		return a.EndSession(ctx, value)
	case cache.KindClient:
		return a.RevokeClient(ctx, value)
	}
	return ErrUnsupported
}

// ErrUnsupported means the authority has no call for this kind of
// revocation (Entra has no per-session sign-out, for example). The target
// is recorded as unsupported; it must never be widened into a bigger
// revocation (ending all of the user's sessions instead of one).
var ErrUnsupported = errors.New("propagate: not supported by this session authority")

// ErrNotFound means the authority does not know the user, session or
// client (it answered 404): there is nothing to end, and the target is
// done, with a note.
var ErrNotFound = errors.New("propagate: unknown to the session authority")

// CallError is a call to an authority that failed. Temporary says whether
// the same call may succeed later (a timeout, a connection error, 408,
// 429, 5xx); a permanent one (another 4xx, a redirect, an answer that does
// not parse as documented) will not succeed by repeating it unchanged.
type CallError struct {
	// Op names the call, "METHOD /path" without the host or query; the
	// path may name the user, session or client, never a credential.
	Op string
	// Status is the HTTP status of the answer; 0 when there was none
	// (connection error, timeout).
	Status int
	// RetryAfter is the delay the authority asked for with Retry-After
	// (RFC 9110 §10.2.3) on 429 or 503; 0 when it named none. The caller
	// must not call again before it has passed.
	RetryAfter time.Duration
	// Temporary says whether a retry may succeed.
	Temporary bool
	// Err is the cause; never holds a secret.
	Err error
}

func (e *CallError) Error() string {
	msg := "propagate: " + e.Op
	if e.Status != 0 {
		msg += fmt.Sprintf(": %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return msg
}

func (e *CallError) Unwrap() error { return e.Err }
