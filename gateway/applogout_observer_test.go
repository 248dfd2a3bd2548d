package gateway

import (
	"context"
	"sync"
	"testing"

	"github.com/oidcgate/oidcgate/cache"
)

// outcomes records what an AppLogoutObserver is told.
type outcomes struct {
	mu  sync.Mutex
	got []AppLogoutOutcome
}

func (o *outcomes) AppLogoutDone(_ context.Context, out AppLogoutOutcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, out)
}

func TestAppLogoutObserver(t *testing.T) {
	obs := &outcomes{}
	e := newEnv(t, func(c *Config) { c.AppLogoutObserver = obs })
	b := e.browser(t)
	appLogin(t, e, b)
	e.app.fail.Store(1) // one 500, then success
	s, _ := e.gw.cookies.open(b.cookie(e, "/", DefaultCookieName), true)
	e.revoke(t, cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest(s.ID)})
	e.app.waitLogout(t)
	e.gw.Close() // drains the workers, so the outcome has been reported
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.got) != 1 {
		t.Fatalf("outcomes: got %+v; want 1", obs.got)
	}
	want := AppLogoutOutcome{Route: obs.got[0].Route, Session: logID(s.ID), Issuer: e.idp.URL, Subject: "alice", SID: s.SID, Outcome: outcomeOK, Status: 200, Attempts: 2}
	if got := obs.got[0]; got != want || got.Route == "" {
		t.Errorf("outcome: got %+v; want %+v with a route", got, want)
	}
}
