package propagate

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// graphScope is the scope of a client_credentials token for Microsoft
// Graph: the application permissions granted to the app
// (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
const graphScope = "https://graph.microsoft.com/.default"

// entra is Microsoft Graph for a Microsoft Entra ID tenant.
type entra struct{ c *conn }

var _ Authority = (*entra)(nil)

func (e *entra) Name() string { return e.c.name }

// EndUser invalidates every refresh token issued to applications for the
// user and the session cookies of their browsers, by resetting
// signInSessionsValidFromDateTime. Needs the application permission
// User.RevokeSessions.All. Entra applies it within minutes.
// Reference: https://learn.microsoft.com/en-us/graph/api/user-revokesigninsessions
func (e *entra) EndUser(ctx context.Context, userID string) error {
	if userID == "" {
		return errEmpty("user id")
	}
	// POST /users/{id | userPrincipalName}/revokeSignInSessions, no body:
	// 200 OK with {"@odata.context": "...#Edm.Boolean", "value": true}.
	const op = "POST /users/{id}/revokeSignInSessions"
	body, err := e.c.call(ctx, http.MethodPost, "/users/"+url.PathEscape(userID)+"/revokeSignInSessions", nil)
	if err != nil {
		return err
	}
	var r struct {
		Value *bool `json:"value"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Value == nil {
		return &CallError{Op: op, Status: http.StatusOK, Temporary: true, Err: errors.New("the answer is not {\"value\": true|false}")}
	}
	if !*r.Value {
		return &CallError{Op: op, Status: http.StatusOK, Temporary: true, Err: errors.New("the answer is value false")}
	}
	return nil
}

// EndSession is unsupported: Graph has no call that ends one sign-in
// session, and revoking all of them would widen the revocation.
func (e *entra) EndSession(context.Context, string) error { return ErrUnsupported }

// RevokeClient is unsupported: Graph has no call that revokes the tokens
// issued to one application for every user.
func (e *entra) RevokeClient(context.Context, string) error { return ErrUnsupported }
