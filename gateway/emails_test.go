package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// TestLoginRecordsEmail: a browser login records its verified email in
// the email directory (what Universal Logout resolves an email with); an
// unverified email is not recorded; a login whose email cannot be
// recorded fails (503), so that no session escapes an email revocation.
func TestLoginRecordsEmail(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Emails = c.Sessions.(*cache.Store) })
	b := e.browser(t)
	if res := b.login(e, "/app/"); res.StatusCode != http.StatusOK {
		t.Fatalf("login: got %d", res.StatusCode)
	}
	got, err := e.store.EmailOwners(context.Background(), "ALICE@example.com")
	if err != nil || len(got) != 1 || got[0] != (cache.EmailOwner{Issuer: e.idp.URL, Sub: "alice"}) {
		t.Errorf("owners of alice@example.com: got %v, %v; want alice of the IdP", got, err)
	}

	e.idp.setUser(user{Sub: "mallory", SID: "sid-9", Email: "ceo@example.com", EmailVerified: false})
	if res := e.browser(t).login(e, "/app/"); res.StatusCode != http.StatusOK {
		t.Fatalf("login with an unverified email: got %d", res.StatusCode)
	}
	if got, _ := e.store.EmailOwners(context.Background(), "ceo@example.com"); len(got) != 0 {
		t.Errorf("an unverified email was recorded: %v", got)
	}

	failing := newEnv(t, func(c *Config) { c.Emails = failingEmails{} })
	fb := failing.browser(t)
	res := fb.get(failing.srv.URL+"/app/", nil)
	for range 5 {
		if res.StatusCode != http.StatusFound {
			break
		}
		res = fb.get(res.Header.Get("Location"), nil)
	}
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a login whose email could not be recorded: got %d; want 503", res.StatusCode)
	}
}

type failingEmails struct{}

func (failingEmails) RecordEmail(context.Context, string, cache.EmailOwner, time.Time) error {
	return errors.New("disk on fire")
}
