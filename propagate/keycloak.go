package propagate

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
)

// keycloak is Keycloak's Admin REST API under {url}/admin/realms/{realm}.
// Reference: https://www.keycloak.org/docs-api/latest/rest-api/index.html
// (Users: "Remove all user sessions associated with the user", "Get
// consents granted by the user", "Revoke consent and offline tokens for
// particular client from user"; Realms Admin: "Remove a specific user
// session"), checked against services/.../admin/UserResource.java and
// RealmAdminResource.java. The admin token comes from the realm's token
// endpoint with the client_credentials grant of a client that has the
// realm-management role manage-users.
type keycloak struct {
	c     *conn
	realm string // path-escaped
}

var _ Authority = (*keycloak)(nil)

func (k *keycloak) Name() string { return k.c.name }

func (k *keycloak) user(id string) string {
	return "/admin/realms/" + k.realm + "/users/" + url.PathEscape(id)
}

// EndUser removes every online session of the user (Keycloak also moves
// the user's not-before to now, so tokens issued before are refused, and
// sends its own back-channel logouts), then revokes each consent and the
// offline tokens that go with it.
func (k *keycloak) EndUser(ctx context.Context, userID string) error {
	if userID == "" {
		return errEmpty("user id")
	}
	// POST /admin/realms/{realm}/users/{user-id}/logout: 204; 404 "User
	// not found".
	if _, err := k.c.call(ctx, http.MethodPost, k.user(userID)+"/logout", nil); err != nil {
		return err
	}
	// GET /admin/realms/{realm}/users/{user-id}/consents: 200, a JSON
	// array of {clientId, grantedClientScopes, createdDate,
	// lastUpdatedDate, additionalGrants}; clients that hold only offline
	// tokens are listed too.
	body, err := k.c.call(ctx, http.MethodGet, k.user(userID)+"/consents", nil)
	if err != nil {
		return err
	}
	var consents []struct {
		ClientID string `json:"clientId"`
	}
	if err := json.Unmarshal(body, &consents); err != nil {
		return &CallError{Op: "GET /admin/realms/{realm}/users/{id}/consents", Status: http.StatusOK, Temporary: true, Err: errors.New("the answer is not a list of consents")}
	}
	for _, c := range consents {
		if c.ClientID == "" {
			continue
		}
		// DELETE /admin/realms/{realm}/users/{user-id}/consents/{client}
		// (the clientId, not the client's uuid): 204; 404 when the
		// client, or its consent and offline tokens, are already gone.
		_, err := k.c.call(ctx, http.MethodDelete, k.user(userID)+"/consents/"+url.PathEscape(c.ClientID), nil)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// EndSession removes one user session; Keycloak's "sid" claim is the
// user session id.
func (k *keycloak) EndSession(ctx context.Context, sid string) error {
	if sid == "" {
		return errEmpty("sid")
	}
	// DELETE /admin/realms/{realm}/sessions/{session}: 204; 404 "Sesssion
	// not found" (sic) when it has ended already.
	_, err := k.c.call(ctx, http.MethodDelete, "/admin/realms/"+k.realm+"/sessions/"+url.PathEscape(sid), nil)
	return err
}

// RevokeClient is unsupported: the Admin REST API has no call that
// revokes the tokens of one client for every user.
func (k *keycloak) RevokeClient(context.Context, string) error { return ErrUnsupported }
