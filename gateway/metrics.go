package gateway

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/clock"
)

// metrics holds the gateway's collectors. The route label is the route's
// host and path prefix as matched ("/v1", "api.example.com/v1"), or "none"
// when no route matched: bounded by the config, never the request path.
type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	appLogout *prometheus.CounterVec
	// notHonoured counts app logouts whose honour check found the app's
	// session alive, by route.
	notHonoured *prometheus.CounterVec
	forward     *prometheus.CounterVec
	clk         clock.Clock
}

// routeMetrics are one route's label children, resolved at New so that a
// request only increments.
type routeMetrics struct {
	requests [numDecisions]prometheus.Counter
	duration prometheus.Observer
	forwards [numDecisions]prometheus.Counter
	clk      clock.Clock
}

func newMetrics(reg prometheus.Registerer, clk clock.Clock) (*metrics, error) {
	m := &metrics{
		clk: clk,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oidcgate_requests_total",
			Help: "Requests on the public listener by route and decision.",
		}, []string{"route", "decision"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "oidcgate_request_duration_seconds",
			Help: "Time from routing to the end of the response (proxied bodies, streams and upgraded connections included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5,
				1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		appLogout: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oidcgate_app_logout_total",
			Help: "App logout calls by outcome (ok, not_honoured, rejected, failed, dropped).",
		}, []string{"outcome"}),
		notHonoured: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oidcgate_app_logout_not_honoured_total",
			Help: "App logouts after which the route's app_verify path still answered a status outside expect, by route.",
		}, []string{"route"}),
		forward: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oidcgate_forward_auth_decisions_total",
			Help: "Forward-auth decisions (/oauth2/auth and ext_authz) by route and decision.",
		}, []string{"route", "decision"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.appLogout, m.notHonoured, m.forward} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("gateway: metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) route(label string) *routeMetrics {
	rm := &routeMetrics{duration: m.duration.WithLabelValues(label), clk: m.clk}
	for d := range numDecisions {
		rm.requests[d] = m.requests.WithLabelValues(label, d.String())
		rm.forwards[d] = m.forward.WithLabelValues(label, d.String())
	}
	return rm
}

// done records one finished request.
func (rm *routeMetrics) done(d decision, start time.Time) {
	rm.requests[d].Inc()
	rm.duration.Observe(clock.Since(rm.clk, start).Seconds())
}

// forward records one forward-auth decision.
func (rm *routeMetrics) forward(d decision) {
	rm.forwards[d].Inc()
}
