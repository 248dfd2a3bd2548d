package logout

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/introspect"
)

// BackchannelPath is where the CLI mounts Backchannel on the public
// listener (DESIGN.md).
const BackchannelPath = "/oauth2/backchannel-logout"

// LogoutTokenVerifier verifies a back-channel logout token as OpenID
// Connect Back-Channel Logout 1.0 §2.6 requires, except the jti replay
// check. Its errors wrap introspect.ErrInvalidToken (a bad token) or
// introspect.ErrUnavailable (could not decide).
type LogoutTokenVerifier interface {
	VerifyLogoutToken(ctx context.Context, raw string) (*introspect.LogoutToken, error)
}

var _ LogoutTokenVerifier = (*introspect.Verifier)(nil)

// Replays is the jti replay cache. FirstSeen records key until the time
// until and reports whether it was not recorded yet; on error the key
// counts as seen.
type Replays interface {
	FirstSeen(ctx context.Context, key string, until time.Time) (bool, error)
}

var _ Replays = (*cache.Store)(nil)

// maxLogoutBody bounds the body of a back-channel logout request: a
// logout token is at most 16 KiB (introspect refuses longer ones).
const maxLogoutBody = 64 << 10

// Values of the result label of oidcgate_backchannel_logout_total and
// oidcgate_frontchannel_logout_total.
const (
	resultReplayed    = "replayed"
	resultRateLimited = "rate_limited"
)

// Backchannel receives OpenID Connect Back-Channel Logout 1.0 requests
// (POST /oauth2/backchannel-logout on the public listener). It is safe for
// concurrent use.
//
// A valid logout token is answered 200 only after its revocation is
// durable in the store: (iss, sid) when the token has a sid, else (iss,
// sub) revoking every credential of the user issued until now. Every
// invalid request is answered 400 and changes nothing; a verifier, replay
// cache or store failure is answered 503 with Retry-After, never 200.
type Backchannel struct {
	receiver
	verifier LogoutTokenVerifier
	replays  Replays
	results  *prometheus.CounterVec
}

// NewBackchannel validates the fields of cfg it uses (all but Admin; at
// least one issuer in Lifetimes; Verifier and Replays set), applies the
// defaults and registers oidcgate_backchannel_logout_total{result}. Each
// issuer in Lifetimes must also be one the Verifier trusts.
func NewBackchannel(cfg Config) (*Backchannel, error) {
	if err := cfg.validateReceiver(true); err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	cfg = cfg.withDefaults()
	results, err := resultCounter(cfg.Metrics, "oidcgate_backchannel_logout_total",
		"Back-channel logout requests, by result (ok, invalid, replayed, rate_limited, error).",
		resultOK, resultInvalid, resultReplayed, resultRateLimited, resultError)
	if err != nil {
		return nil, err
	}
	return &Backchannel{
		receiver: newReceiver(cfg, slices.Collect(maps.Keys(cfg.Lifetimes))),
		verifier: cfg.Verifier,
		replays:  cfg.Replays,
		results:  results,
	}, nil
}

// ServeHTTP handles one back-channel logout request. It never logs the
// logout token; it logs the issuer and SHA-256 prefixes of the jti, sid
// and sub.
func (b *Backchannel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowOnly(w, r, http.MethodPost) {
		// §2.5: the OP sends an HTTP POST.
		b.results.WithLabelValues(resultInvalid).Inc()
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "method must be POST")
		return
	}
	raw, problem := logoutTokenParam(w, r)
	if problem != "" {
		b.refuse(w, r, problem, nil)
		return
	}
	lt, err := b.verifier.VerifyLogoutToken(r.Context(), raw)
	switch {
	case errors.Is(err, introspect.ErrExpired):
		b.refuse(w, r, "logout token expired", err)
		return
	case errors.Is(err, introspect.ErrInvalidToken):
		// §2.6: any failed check means the token is rejected; §2.8: 400.
		b.refuse(w, r, "logout token invalid", err)
		return
	case err != nil:
		b.unavailable(w, r, "logout token could not be verified", err, nil)
		return
	}
	if _, ok := b.retention.lifetimes[lt.Issuer]; !ok {
		// The verifier trusts an issuer this receiver was not given: a
		// wiring mistake, and without its lifetime no entry can be kept.
		b.log.LogAttrs(r.Context(), slog.LevelError, "back-channel logout from an issuer without a configured lifetime", slog.String("issuer", lt.Issuer))
		b.refuse(w, r, "issuer not accepted here", nil)
		return
	}
	if len(lt.SID) > cache.MaxValueLen || len(lt.Subject) > cache.MaxValueLen {
		b.refuse(w, r, fmt.Sprintf("sub or sid longer than %d bytes", cache.MaxValueLen), nil)
		return
	}
	attrs := tokenAttrs(lt)
	// The bucket is charged only for verified tokens, so that forged ones
	// naming an issuer cannot use up its budget and get its genuine
	// logouts refused; it is checked before the jti is recorded, so that
	// the OP may send the refused token again.
	if !b.limit(w, lt.Issuer) {
		b.results.WithLabelValues(resultRateLimited).Inc()
		b.log.LogAttrs(r.Context(), slog.LevelWarn, "back-channel logout rate limited", attrs...)
		writeError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many logouts from this issuer; retry later")
		return
	}

	ctx, cancel := detached(r)
	defer cancel()
	replayed, replayErr, err := revokeOnce(ctx, b.replays, b.store, replayKey(lt.Issuer, lt.JTI), b.replayUntil(lt), []cache.Entry{b.entry(lt)})
	if replayErr != nil {
		b.log.LogAttrs(r.Context(), slog.LevelWarn, "back-channel logout: replay cache unavailable", append(attrs, slog.Any("error", replayErr))...)
	}
	switch {
	case err != nil:
		b.unavailable(w, r, "revocation not stored", err, attrs)
		return
	case replayed:
		// §2.6 item 8: a token seen (and acted on) before is refused.
		b.results.WithLabelValues(resultReplayed).Inc()
		b.log.LogAttrs(r.Context(), slog.LevelWarn, "back-channel logout token replayed", attrs...)
		writeError(w, http.StatusBadRequest, "invalid_request", "logout token already received")
		return
	}
	// §2.7 done and durable (Store.Revoke returned nil): only now §2.8's
	// 200. The response SHOULD NOT be cached (§2.8): logoutTokenParam's
	// pushedBody set no-store.
	b.results.WithLabelValues(resultOK).Inc()
	b.log.LogAttrs(r.Context(), slog.LevelInfo, "back-channel logout stored", attrs...)
	w.WriteHeader(http.StatusOK)
}

// logoutTokenParam returns the logout_token of a form-encoded body, or a
// problem description that is safe to send (it never quotes the input).
func logoutTokenParam(w http.ResponseWriter, r *http.Request) (string, string) {
	// §2.5: the OP POSTs the token as application/x-www-form-urlencoded.
	body, problem := pushedBody(w, r, "application/x-www-form-urlencoded", true, maxLogoutBody)
	if problem != "" {
		return "", problem
	}
	// Only the body counts (§2.5); parameters in the URL are ignored, and
	// so are body parameters other than logout_token.
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", "body is not application/x-www-form-urlencoded"
	}
	switch v := form["logout_token"]; {
	case len(v) == 0 || v[0] == "":
		return "", "logout_token missing"
	case len(v) > 1:
		return "", "logout_token given more than once"
	default:
		return v[0], ""
	}
}

// replayKey is the replay-cache key of a logout token: a digest of its
// issuer and jti, length-prefixed so that no two pairs collide, and of a
// fixed size whatever the jti's length.
func replayKey(issuer, jti string) string {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(issuer))))
	h.Write([]byte(issuer))
	h.Write([]byte(jti))
	return "bcl-jti:" + hex.EncodeToString(h.Sum(nil))
}

// replayUntil is how long a token's jti must be remembered: as long as the
// verifier would accept the token, i.e. exp plus the clock skew, or when
// the issuer sends no exp, iat plus its max_token_lifetime plus the skew
// (the verifier refuses such a token much sooner).
func (b *Backchannel) replayUntil(lt *introspect.LogoutToken) time.Time {
	if !lt.ExpiresAt.IsZero() {
		return lt.ExpiresAt.Add(b.retention.skew)
	}
	return lt.IssuedAt.Add(b.retention.lifetimes[lt.Issuer]).Add(b.retention.skew)
}

// entry is what lt logs out. OpenID Connect Back-Channel
// Logout 1.0 §2.4: with a sid, that one session; without, every session
// of the user (iss, sub) — a sub entry revokes every credential of the
// user issued before the token's iat, and a later login is not affected.
func (b *Backchannel) entry(lt *introspect.LogoutToken) cache.Entry {
	e := cache.Entry{
		Issuer: lt.Issuer,
		Kind:   cache.KindSID,
		Value:  lt.SID,
		// The token's iat, not the time it arrived: a sub entry then revokes
		// what was issued before the IdP logged the user out, and the same
		// token (retried, replayed, or sent to several replicas) always
		// stores the same entry. An iat ahead of this clock counts as now.
		RevokedAt: revokedAt(b.now(), lt.IssuedAt),
		Reason:    "backchannel_logout",
		// The jti as a digest: bounded in length, and the same as in the
		// log lines, so an entry and its log line can be matched.
		Initiator: "backchannel:" + lt.Issuer + " jti_sha256:" + digestPrefix(lt.JTI),
	}
	if lt.SID == "" {
		e.Kind, e.Value = cache.KindSub, lt.Subject
	}
	e.ExpiresAt = b.retention.expiresAt(e)
	return e
}

// revokedAt is a logout token's iat, or now when the iat is ahead of this
// clock (or missing).
func revokedAt(now, iat time.Time) time.Time {
	if iat.IsZero() || iat.After(now) {
		return now.UTC()
	}
	return iat.UTC()
}

// tokenAttrs are the log attributes of a verified token: never the token,
// and values only as SHA-256 prefixes.
func tokenAttrs(lt *introspect.LogoutToken) []slog.Attr {
	attrs := []slog.Attr{slog.String("issuer", lt.Issuer), slog.String("jti_sha256", digestPrefix(lt.JTI))}
	if lt.SID != "" {
		attrs = append(attrs, slog.String("sid_sha256", digestPrefix(lt.SID)))
	}
	if lt.Subject != "" {
		attrs = append(attrs, slog.String("sub_sha256", digestPrefix(lt.Subject)))
	}
	return attrs
}

// refuse answers 400 with an OAuth 2.0 error (RFC 6749 §5.2), as §2.8
// requires for an invalid logout request. description is ours and never
// quotes the request; cause, when set, is logged (it never holds the
// token: introspect's reasons quote at most a short claim).
func (b *Backchannel) refuse(w http.ResponseWriter, r *http.Request, description string, cause error) {
	b.results.WithLabelValues(resultInvalid).Inc()
	attrs := []slog.Attr{slog.String("problem", description)}
	if cause != nil {
		attrs = append(attrs, slog.Any("error", cause))
	}
	b.log.LogAttrs(r.Context(), slog.LevelInfo, "back-channel logout refused", attrs...)
	writeError(w, http.StatusBadRequest, "invalid_request", description)
}

// unavailable answers 503 with Retry-After when the logout could not be
// done now. §2.8 answers a failed logout with 400, but an OP takes a 400
// as "this token is bad" and will not send it again, while the same
// answer to a token that was never judged (keys unreachable, store down)
// would silently lose the logout. A 5xx is what HTTP (RFC 9110 §15.6.4)
// and §2.8 itself (504 when downstream logouts failed) use for "not done,
// not your fault": the OP's failure handling sees it, an OP that retries
// does, and it is never a 200.
func (b *Backchannel) unavailable(w http.ResponseWriter, r *http.Request, description string, cause error, attrs []slog.Attr) {
	b.results.WithLabelValues(resultError).Inc()
	b.notDone(w, r, "back-channel logout not done: "+description, cause, attrs)
	writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", description+"; retry later")
}
