package propagate

import (
	"context"
	"errors"
	"net/http"
	"net/url"
)

// hydra is Ory Hydra's admin API (v2). Every call answers 204, also for
// an unknown subject or session; errors are OAuth 2.0 error objects.
// Reference: https://www.ory.com/docs/reference/openapi/revoke-o-auth-2-login-sessions
// and https://www.ory.com/docs/reference/openapi/revoke-o-auth-2-consent-sessions;
// all three calls (with deleteOAuth2Token) checked against the v2.3.0
// handlers (consent/handler.go, oauth2/handler.go).
type hydra struct{ c *conn }

var _ Authority = (*hydra)(nil)

func (h *hydra) Name() string { return h.c.name }

// EndUser ends every login session of the subject (Hydra then asks for a
// login again; no back-channel logout is sent for a subject) and revokes
// all of its consent sessions, which invalidates the access and refresh
// tokens issued under them.
func (h *hydra) EndUser(ctx context.Context, userID string) error {
	if userID == "" {
		return errEmpty("user id")
	}
	// DELETE /admin/oauth2/auth/sessions/login?subject= (revokeOAuth2LoginSessions).
	if _, err := h.c.call(ctx, http.MethodDelete, "/admin/oauth2/auth/sessions/login", url.Values{"subject": {userID}}); err != nil {
		return err
	}
	// DELETE /admin/oauth2/auth/sessions/consent?subject=&all=true
	// (revokeOAuth2ConsentSessions): "revokes a subject's granted consent
	// sessions and invalidates all associated OAuth 2.0 Access Tokens";
	// the refresh tokens of those grants die with them.
	_, err := h.c.call(ctx, http.MethodDelete, "/admin/oauth2/auth/sessions/consent", url.Values{"subject": {userID}, "all": {"true"}})
	return err
}

// EndSession ends one login session by its sid. Hydra then sends its
// back-channel logout for that session (to the gateway too): the caller
// must not send that back here.
func (h *hydra) EndSession(ctx context.Context, sid string) error {
	if sid == "" {
		return errEmpty("sid")
	}
	// DELETE /admin/oauth2/auth/sessions/login?sid= (revokeOAuth2LoginSessions).
	_, err := h.c.call(ctx, http.MethodDelete, "/admin/oauth2/auth/sessions/login", url.Values{"sid": {sid}})
	return err
}

// RevokeClient deletes the access tokens issued to the client. Hydra has
// no call for a client's refresh tokens short of deleting the client.
func (h *hydra) RevokeClient(ctx context.Context, clientID string) error {
	if clientID == "" {
		return errEmpty("client id")
	}
	// DELETE /admin/oauth2/tokens?client_id= (deleteOAuth2Token).
	_, err := h.c.call(ctx, http.MethodDelete, "/admin/oauth2/tokens", url.Values{"client_id": {clientID}})
	return err
}

// errEmpty is the error for a call without its identifier: a caller's bug
// that no retry fixes. Sending it would widen the call (Hydra refuses an
// empty subject, but not every API does).
func errEmpty(what string) error {
	return &CallError{Op: "refused", Err: errors.New("empty " + what)}
}
