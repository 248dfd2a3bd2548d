package logout

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
)

// FrontchannelPath is where the CLI mounts Frontchannel on the public
// listener (DESIGN.md).
const FrontchannelPath = "/oauth2/frontchannel-logout"

// frontchannelPage is the whole body of a successful answer.
const frontchannelPage = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Signed out</title></head><body>Signed out.</body></html>\n"

// Frontchannel receives OpenID Connect Front-Channel Logout 1.0 requests:
// GET /oauth2/frontchannel-logout?iss=...&sid=..., loaded by the OP in an
// iframe of its logout page. It is safe for concurrent use.
//
// It revokes (iss, sid) durably before answering 200 with a tiny HTML
// page. It does not read the gateway's session cookie: browsers withhold
// cookies from third-party iframes (§4.1), and the revocation reaches the
// session on every replica through the store anyway. The request carries
// no proof that the OP sent it: anyone who knows a session's sid can end
// that session (sids are unguessable and known only to the OP and the
// session's own tokens), and the per-issuer rate limit bounds how many
// entries forged requests can add to the store.
//
// Answers are iframe-friendly on purpose: no X-Frame-Options and no CSP
// frame-ancestors (the OP's page must be able to frame it, §2), but
// Content-Security-Policy default-src 'none' (the page loads nothing and
// runs nothing), Referrer-Policy no-referrer (the URL holds the sid) and
// the no-cache headers §2 recommends.
type Frontchannel struct {
	store     Store
	retention retention
	limits    *limiter
	now       func() time.Time
	log       *slog.Logger
	results   *prometheus.CounterVec
}

// NewFrontchannel validates the fields of cfg it uses (all but Admin,
// Verifier and Replays; at least one issuer in Lifetimes), applies the
// defaults and registers oidcgate_frontchannel_logout_total{result}.
func NewFrontchannel(cfg Config) (*Frontchannel, error) {
	if err := cfg.validateReceiver(false); err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	cfg = cfg.withDefaults()
	rc := cfg.Receivers.withDefaults()
	results, err := resultCounter(cfg.Metrics, "oidcgate_frontchannel_logout_total",
		"Front-channel logout requests, by result (ok, invalid, rate_limited, error).",
		resultOK, resultInvalid, resultRateLimited, resultError)
	if err != nil {
		return nil, err
	}
	return &Frontchannel{
		store:     cfg.Store,
		retention: cfg.retention(),
		limits:    newLimiter(slices.Collect(maps.Keys(cfg.Lifetimes)), rc.RatePerSecond, rc.Burst, cfg.Now),
		now:       cfg.Now,
		log:       cfg.Logger,
		results:   results,
	}, nil
}

// ServeHTTP handles one front-channel logout request.
func (f *Frontchannel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		// The OP loads the URL in an iframe: a GET. RFC 9110 §15.5.6: a
		// 405 MUST list the allowed methods.
		w.Header().Set("Allow", http.MethodGet)
		f.text(w, r, http.StatusMethodNotAllowed, resultInvalid, "method must be GET")
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		f.text(w, r, http.StatusBadRequest, resultInvalid, "query is not application/x-www-form-urlencoded")
		return
	}
	iss, sid := q["iss"], q["sid"]
	// §2: the OP MAY send iss and sid, and if either, both. Without them
	// this receiver cannot tell which session ends, so both are required.
	switch {
	case len(iss) != 1 || len(sid) != 1 || iss[0] == "" || sid[0] == "":
		f.text(w, r, http.StatusBadRequest, resultInvalid, "iss and sid are both required, once each")
		return
	case len(sid[0]) > cache.MaxValueLen:
		f.text(w, r, http.StatusBadRequest, resultInvalid, fmt.Sprintf("sid longer than %d bytes", cache.MaxValueLen))
		return
	}
	// §2: iss lets the RP validate the request: only a configured issuer's
	// sessions can be ended, and an unknown one adds no state.
	if _, ok := f.retention.lifetimes[iss[0]]; !ok {
		f.text(w, r, http.StatusBadRequest, resultInvalid, "iss is not a configured issuer")
		return
	}
	attrs := []slog.Attr{slog.String("issuer", iss[0]), slog.String("sid_sha256", digestPrefix(sid[0]))}
	if ok, wait := f.limits.allow(iss[0]); !ok {
		f.log.LogAttrs(r.Context(), slog.LevelWarn, "front-channel logout rate limited", attrs...)
		w.Header().Set("Retry-After", retryAfter(wait))
		f.text(w, r, http.StatusTooManyRequests, resultRateLimited, "too many logouts from this issuer; retry later")
		return
	}
	e := cache.Entry{
		Issuer:    iss[0],
		Kind:      cache.KindSID,
		Value:     sid[0],
		RevokedAt: f.now().UTC(),
		Reason:    "frontchannel_logout",
		Initiator: "frontchannel:" + iss[0],
	}
	e.ExpiresAt = f.retention.expiresAt(e)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
	defer cancel()
	if _, err := f.store.Revoke(ctx, e); err != nil {
		f.log.LogAttrs(r.Context(), slog.LevelError, "front-channel logout not stored", append(attrs, slog.Any("error", err))...)
		w.Header().Set("Retry-After", retryAfterUnavailable)
		f.text(w, r, http.StatusServiceUnavailable, resultError, "logout not stored; retry later")
		return
	}
	// The entry is durable (Store.Revoke returned nil): only now the 200.
	f.results.WithLabelValues(resultOK).Inc()
	f.log.LogAttrs(r.Context(), slog.LevelInfo, "front-channel logout stored", attrs...)
	pageHeaders(w.Header(), "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(frontchannelPage))
}

// text answers status with a short plain-text message of ours (it never
// quotes the request) and counts result.
func (f *Frontchannel) text(w http.ResponseWriter, r *http.Request, status int, result, msg string) {
	f.results.WithLabelValues(result).Inc()
	if result == resultInvalid {
		f.log.LogAttrs(r.Context(), slog.LevelInfo, "front-channel logout refused", slog.String("problem", msg))
	}
	pageHeaders(w.Header(), "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg + "\n"))
}

// pageHeaders sets the headers of every front-channel answer (see
// Frontchannel).
func pageHeaders(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	// §2: RECOMMENDED, so that a cached answer never stands in for a
	// later logout.
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'")
}
