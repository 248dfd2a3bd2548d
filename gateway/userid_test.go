package gateway

import (
	"context"
	"crypto/rand"
	"net/http"
	"testing"
	"time"
)

// TestLearnUserID: with user_id_claim oid, a verified login and a verified
// bearer token teach the store sub -> oid for their issuer, kept
// UserIDRetention after the last sighting; a token without the claim, or
// an issuer that names users by sub, teaches nothing.
func TestLearnUserID(t *testing.T) {
	learn := func(c *Config) {
		c.UserIDClaims = map[string]string{c.Session.Issuer: "oid"}
		c.UserIDs = c.LiveSIDs.(UserIDs)
	}
	bearer := func(t *testing.T, e *env, sub, oid string) {
		t.Helper()
		now := e.clock.Now()
		claims := map[string]any{
			"iss": e.idp.URL, "aud": "api", "sub": sub, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
			"jti": rand.Text(), "client_id": "client-1",
		}
		if oid != "" {
			claims["oid"] = oid
		}
		res := do(t, http.DefaultClient, http.MethodGet, e.srv.URL+"/api/x", http.Header{"Authorization": {"Bearer " + e.idp.sign(t, "at+jwt", claims)}})
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/x with a token of %s: %d; want 200", sub, res.StatusCode)
		}
	}
	userID := func(t *testing.T, e *env, sub string) string {
		t.Helper()
		id, ok, err := e.store.UserID(context.Background(), e.idp.URL, sub)
		if err != nil || ok != (id != "") {
			t.Fatalf("UserID(%s): %q, %v, %v", sub, id, ok, err)
		}
		return id
	}

	t.Run("learned from logins and tokens", func(t *testing.T) {
		e := newEnv(t, learn)
		e.idp.setUser(user{Sub: "pairwise-1", SID: "sid-1", OID: "oid-1"})
		if res := e.browser(t).login(e, "/app/x"); res.StatusCode != http.StatusOK {
			t.Fatalf("login: %d", res.StatusCode)
		}
		bearer(t, e, "pairwise-2", "oid-2")
		bearer(t, e, "pairwise-3", "")
		for sub, want := range map[string]string{"pairwise-1": "oid-1", "pairwise-2": "oid-2", "pairwise-3": ""} {
			if got := userID(t, e, sub); got != want {
				t.Errorf("user id of %s: got %q; want %q", sub, got, want)
			}
		}
		// Seen again later: kept DefaultUserIDRetention from then on.
		e.clock.Advance(DefaultUserIDRetention / 2)
		bearer(t, e, "pairwise-2", "oid-2")
		e.clock.Advance(DefaultUserIDRetention/2 + time.Minute)
		if got := userID(t, e, "pairwise-1"); got != "" {
			t.Errorf("pairwise-1 after the retention: got %q; want forgotten", got)
		}
		if got := userID(t, e, "pairwise-2"); got != "oid-2" {
			t.Errorf("pairwise-2 seen again: got %q; want oid-2 kept", got)
		}
	})

	t.Run("issuer naming users by sub learns nothing", func(t *testing.T) {
		e := newEnv(t, nil)
		bearer(t, e, "pairwise-4", "oid-4")
		if got := userID(t, e, "pairwise-4"); got != "" {
			t.Errorf("got %q; want nothing learned", got)
		}
	})
}
