package propagate

import (
	"context"
	"net/http"
	"net/url"
)

// okta is Okta's Management API under the org URL, authenticated with an
// API token ("Authorization: SSWS {token}") or a scoped OAuth 2.0 access
// token of a service app, obtained with private_key_jwt
// (https://developer.okta.com/docs/guides/implement-oauth-for-okta-serviceapp/main/).
type okta struct{ c *conn }

var _ Authority = (*okta)(nil)

func (o *okta) Name() string { return o.c.name }

// EndUser revokes every identity provider session of the user and the
// OpenID Connect and OAuth refresh and access tokens issued to them.
// Reference: https://developer.okta.com/docs/api/openapi/okta-management/management/tag/UserSessions
// (Revoke all user sessions, scope okta.users.manage).
func (o *okta) EndUser(ctx context.Context, userID string) error {
	if userID == "" {
		return errEmpty("user id")
	}
	// DELETE /api/v1/users/{userId}/sessions?oauthTokens=true: 204; 403,
	// 404 (E0000007, not found), 429.
	_, err := o.c.call(ctx, http.MethodDelete, "/api/v1/users/"+url.PathEscape(userID)+"/sessions", url.Values{"oauthTokens": {"true"}})
	return err
}

// EndSession is unsupported: Okta documents no relation between the sid
// of its ID tokens and the ids of its Sessions API, and ending all of the
// user's sessions instead would widen the revocation.
func (o *okta) EndSession(context.Context, string) error { return ErrUnsupported }

// RevokeClient revokes every refresh token of the app (and the access
// tokens minted with them; access tokens issued without one live until
// they expire). An Okta OIDC app's id is its client_id.
// Reference: https://developer.okta.com/docs/api/openapi/okta-management/management/tag/ApplicationTokens/
// (Revoke all application tokens, scope okta.apps.manage).
func (o *okta) RevokeClient(ctx context.Context, clientID string) error {
	if clientID == "" {
		return errEmpty("client id")
	}
	// DELETE /api/v1/apps/{appId}/tokens: 204; 403, 404, 429.
	_, err := o.c.call(ctx, http.MethodDelete, "/api/v1/apps/"+url.PathEscape(clientID)+"/tokens", nil)
	return err
}
