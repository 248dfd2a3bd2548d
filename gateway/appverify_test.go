package gateway

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
)

// TestAppVerify: after the app logout call, the gateway asks the route's
// app_verify path with the old cookies; an app that still serves the
// session is reported not honoured (outcome, metric by route, warning
// naming the route), one that ended it is ok.
func TestAppVerify(t *testing.T) {
	for _, tt := range []struct {
		name       string
		ignore     bool
		want       string
		wantStatus int
	}{
		{"logout works", false, outcomeOK, 401},
		{"logout does nothing", true, outcomeNotHonoured, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			obs := &outcomes{}
			e := newEnv(t, func(c *Config) {
				c.AppLogoutObserver = obs
				c.Routes[0].AppVerify = &AppVerify{Path: "/whoami"}
			})
			e.app.ignoreLogout.Store(tt.ignore)
			b := e.browser(t)
			real := appLogin(t, e, b)
			s, _ := e.gw.cookies.open(b.cookie(e, "/", DefaultCookieName), true)
			e.revoke(t, cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest(s.ID)})
			e.app.waitLogout(t)
			e.gw.Close() // drains the workers: the outcome is reported
			obs.mu.Lock()
			got := obs.got
			obs.mu.Unlock()
			if len(got) != 1 || got[0].Outcome != tt.want || got[0].VerifyStatus != tt.wantStatus || got[0].Route != "/app" {
				t.Fatalf("outcomes: got %+v; want one on route /app, %s after a %d", got, tt.want, tt.wantStatus)
			}
			n := notHonouredCount(t, e.reg, "/app")
			logs := e.logs.String()
			if tt.ignore {
				if n != 1 {
					t.Errorf("oidcgate_app_logout_not_honoured_total{route=/app}: got %v; want 1", n)
				}
				if !strings.Contains(logs, "app logout not honoured") || !strings.Contains(logs, "route=/app") {
					t.Errorf("no warning naming the route in %s", logs)
				}
			} else if n != 0 {
				t.Errorf("oidcgate_app_logout_not_honoured_total{route=/app}: got %v; want 0", n)
			}
			if strings.Contains(logs, real) {
				t.Error("the log holds the app's cookie")
			}
			// The gateway refuses the sealed cookie either way.
			if res := b.get(e.srv.URL+"/app/x", nil); res.StatusCode != 302 {
				t.Errorf("after revocation: got %d; want 302", res.StatusCode)
			}
		})
	}
}

func notHonouredCount(t *testing.T, reg *prometheus.Registry, route string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "oidcgate_app_logout_not_honoured_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == route {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
