package logout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
)

// FrontchannelPath is where the CLI mounts Frontchannel on the public
// listener (DESIGN.md).
const FrontchannelPath = "/oauth2/frontchannel-logout"

// frontchannelPage is the whole body of a successful answer.
const frontchannelPage = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Signed out</title></head><body>Signed out.</body></html>\n"

// LiveSIDs knows which (issuer, sid) pairs belong to a live gateway
// session: the gateway records each at login. SIDLive's error means it
// could not tell.
type LiveSIDs interface {
	SIDLive(ctx context.Context, issuer, sid string) (bool, error)
}

var (
	_ LiveSIDs = (*cache.Store)(nil)
	_ LiveSIDs = (*cache.Redis)(nil)
)

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
// session's own tokens). So that forged requests cost nothing:
//
//   - only a sid of a live gateway session (LiveSIDs) is revoked; any other
//     gets the same 200 page and stores nothing, writes no audit record
//     and no log line;
//   - every client address has its own rate limit, before anything else
//     is looked at, and only live sids count against the issuer's limit,
//     so made-up sids from anywhere cannot starve the OP's real logouts;
//   - an issuer listed in Config.FrontchannelOff gets 404.
//
// Answers are iframe-friendly on purpose: no X-Frame-Options and no CSP
// frame-ancestors (the OP's page must be able to frame it, §2), but
// Content-Security-Policy default-src 'none' (the page loads nothing and
// runs nothing), Referrer-Policy no-referrer (the URL holds the sid) and
// the no-cache headers §2 recommends.
type Frontchannel struct {
	receiver
	live LiveSIDs
	off  map[string]bool
	// withoutISS is Config.FrontchannelWithoutISS.
	withoutISS string
	sources    *sourceLimiter
	results    *prometheus.CounterVec
}

// NewFrontchannel validates the fields of cfg it uses (all but Admin,
// Verifier and Replays; at least one issuer in Lifetimes; LiveSIDs), applies
// the defaults and registers oidcgate_frontchannel_logout_total{result}.
func NewFrontchannel(cfg Config) (*Frontchannel, error) {
	err := cfg.validateReceiver(false)
	var errs []error
	if cfg.LiveSIDs == nil {
		errs = append(errs, errors.New("live_sids: required"))
	}
	off := make(map[string]bool, len(cfg.FrontchannelOff))
	for i, iss := range cfg.FrontchannelOff {
		if _, ok := cfg.Lifetimes[iss]; !ok {
			errs = append(errs, fmt.Errorf("frontchannel_off[%d]: not a configured issuer", i))
		}
		off[iss] = true
	}
	if w := cfg.FrontchannelWithoutISS; w != "" {
		if _, ok := cfg.Lifetimes[w]; !ok {
			errs = append(errs, errors.New("frontchannel_without_iss: not a configured issuer"))
		} else if off[w] {
			errs = append(errs, errors.New("frontchannel_without_iss: front-channel logout is off for this issuer"))
		}
	}
	if err := errors.Join(append([]error{err}, errs...)...); err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	cfg = cfg.withDefaults()
	rc := cfg.Receivers.withDefaults()
	results, err := resultCounter(cfg.Metrics, "oidcgate_frontchannel_logout_total",
		"Front-channel logout requests, by result (ok, unknown_sid, invalid, off, rate_limited, error).",
		resultOK, resultUnknownSID, resultInvalid, resultOff, resultRateLimited, resultError)
	if err != nil {
		return nil, err
	}
	return &Frontchannel{
		receiver:   newReceiver(cfg, slices.Collect(maps.Keys(cfg.Lifetimes))),
		live:       cfg.LiveSIDs,
		off:        off,
		withoutISS: cfg.FrontchannelWithoutISS,
		sources:    newSourceLimiter(rc.SourceRatePerSecond, rc.SourceBurst, maxSources, cfg.Clock.Now),
		results:    results,
	}, nil
}

// Results of a front-channel logout request besides the shared ones.
const (
	// resultUnknownSID: the sid is no live session's; nothing stored.
	resultUnknownSID = "unknown_sid"
	// resultOff: front-channel logout is off for the issuer.
	resultOff = "off"
)

// ServeHTTP handles one front-channel logout request.
func (f *Frontchannel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowOnly(w, r, http.MethodGet) {
		// The OP loads the URL in an iframe: a GET.
		f.text(w, r, http.StatusMethodNotAllowed, resultInvalid, "method must be GET")
		return
	}
	// Every request counts against its client address, whatever it asks,
	// before anything is looked up.
	if ok, wait := f.sources.allow(sourceOf(r.RemoteAddr)); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		f.text(w, r, http.StatusTooManyRequests, resultRateLimited, "too many logouts from this address; retry later")
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		f.text(w, r, http.StatusBadRequest, resultInvalid, "query is not application/x-www-form-urlencoded")
		return
	}
	iss, sid := q["iss"], q["sid"]
	if _, sent := q["iss"]; !sent && f.withoutISS != "" {
		// Microsoft Entra ID sends sid without iss (§2 wants both). The
		// operator set it for the one issuer that logs browsers in: no
		// other issuer's session can have this sid, and only a live
		// session's sid is revoked, as with iss.
		iss = []string{f.withoutISS}
	}
	// §2: the OP MAY send iss and sid, and if either, both. Without them
	// this receiver cannot tell which session ends, so both are required
	// (iss may be implied, above).
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
	if f.off[iss[0]] {
		f.text(w, r, http.StatusNotFound, resultOff, "front-channel logout is off for this issuer")
		return
	}
	ctx, cancel := detached(r)
	defer cancel()
	switch live, err := f.live.SIDLive(ctx, iss[0], sid[0]); {
	case err != nil:
		// Cannot tell (the shared store is away): revoke, as before the
		// live-sid record existed; the rate limits still bound it. A
		// logout is never dropped because of an outage.
		f.log.LogAttrs(r.Context(), slog.LevelWarn, "front-channel logout: live sids unknown; revoking", append(attrs, slog.Any("error", err))...)
	case !live:
		// No session of this gateway has this sid: there is nothing to
		// end (§2: the RP clears its own login state). Nothing is stored
		// or logged, so forged requests fill no disk.
		f.results.WithLabelValues(resultUnknownSID).Inc()
		f.page(w)
		return
	}
	if !f.limit(w, iss[0]) {
		f.log.LogAttrs(r.Context(), slog.LevelWarn, "front-channel logout rate limited", attrs...)
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
	if _, err := f.store.Revoke(ctx, e); err != nil {
		f.notDone(w, r, "front-channel logout not stored", err, attrs)
		f.text(w, r, http.StatusServiceUnavailable, resultError, "logout not stored; retry later")
		return
	}
	// The entry is durable (Store.Revoke returned nil): only now the 200.
	f.results.WithLabelValues(resultOK).Inc()
	f.log.LogAttrs(r.Context(), slog.LevelInfo, "front-channel logout stored", attrs...)
	f.page(w)
}

// page answers 200 with the signed-out page.
func (f *Frontchannel) page(w http.ResponseWriter) {
	pageHeaders(w.Header(), "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(frontchannelPage))
}

// text answers status with a short plain-text message of ours (it never
// quotes the request) and counts result.
func (f *Frontchannel) text(w http.ResponseWriter, r *http.Request, status int, result, msg string) {
	f.results.WithLabelValues(result).Inc()
	if result == resultInvalid {
		// Debug: anyone can send these, and every line would be theirs to
		// write (the counter shows them).
		f.log.LogAttrs(r.Context(), slog.LevelDebug, "front-channel logout refused", slog.String("problem", msg))
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
