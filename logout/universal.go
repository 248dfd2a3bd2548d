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
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/introspect"
)

// UniversalLogoutPath is where the CLI mounts UniversalLogout on the
// public listener (DESIGN.md).
const UniversalLogoutPath = "/oauth2/global-token-revocation"

// universalReason is the Reason of every entry UniversalLogout writes.
const universalReason = "universal_logout"

// AssertionVerifier verifies the JWT that authenticates a Universal
// Logout request; *introspect.Verifier implements it. Its errors wrap
// introspect.ErrInvalidToken (a bad credential) or
// introspect.ErrUnavailable (could not decide).
type AssertionVerifier interface {
	VerifyAssertion(ctx context.Context, raw, audience string) (*introspect.Assertion, error)
}

var _ AssertionVerifier = (*introspect.Verifier)(nil)

// Values of the result label of oidcgate_universal_logout_total besides
// the shared ones.
const (
	resultNotFound  = "not_found"
	resultForbidden = "forbidden"
)

// UniversalLogout receives Global Token Revocation requests
// (draft-parecki-oauth-global-token-revocation; Okta's Universal Logout
// calls it): POST /oauth2/global-token-revocation on the public listener,
// a JSON body naming a user by an RFC 9493 subject identifier (iss_sub or
// email), authenticated by Authorization: Bearer and a JWT that a
// configured issuer signed for this endpoint (introspect.VerifyAssertion:
// aud is the endpoint's URL, short-lived, jti used once). It is safe for
// concurrent use.
//
// It revokes the user as a sub revocation issued before now does (every
// browser session, sealed app cookie and bearer token of the user; the
// store's subscribers call app logout URLs, the outbound room its
// targets), with reason "universal_logout" and initiator
// "universal_logout:<caller issuer> jti_sha256:<16 hex>", and answers 204
// once that is durable. A caller may revoke only users of its own issuer
// (draft §6.1, §6.2: the credential is scoped to its tenant's users).
//
// Answers (draft §3.4): 204 done; 400 malformed body (not a JSON object,
// over 64 KiB, an unknown subject format); 401 with WWW-Authenticate
// (RFC 6750 §3) when the JWT is missing, invalid, expired, for another
// audience, from an issuer that is not configured, or replayed; 403 for a
// user of another issuer; 404 for a user the gateway cannot resolve (an
// email no verified login named, an issuer not configured); 422 when the
// store could not record the revocation; 429 over the caller's rate; 503
// when the caller's keys cannot be loaded. Error bodies are OAuth 2.0
// errors (RFC 6749 §5.2: error, error_description).
type UniversalLogout struct {
	receiver
	verifier AssertionVerifier
	replays  Replays
	emails   EmailDirectory
	audience string
	results  *prometheus.CounterVec
}

// EmailDirectory resolves an email address (lower-cased, NormalizeEmail)
// to the users whose verified email it is, as learned from logins;
// *cache.Store and *cache.Redis implement it. An error means it could
// not tell.
type EmailDirectory interface {
	EmailOwners(ctx context.Context, email string) ([]cache.EmailOwner, error)
}

// NewUniversalLogout validates the fields of cfg it uses (all but Admin;
// at least one issuer in Lifetimes; Assertions, Replays and PublicURL
// set), applies the defaults and registers
// oidcgate_universal_logout_total{result}. Without Emails, every email
// subject is answered 404.
func NewUniversalLogout(cfg Config) (*UniversalLogout, error) {
	errs := []error{cfg.validateReceiver(false)}
	if cfg.Assertions == nil {
		errs = append(errs, errors.New("assertions: required"))
	}
	if cfg.Replays == nil {
		errs = append(errs, errors.New("replays: required"))
	}
	if cfg.PublicURL == "" {
		errs = append(errs, errors.New("public_url: required (the JWT's aud is public_url + "+UniversalLogoutPath+")"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	cfg = cfg.withDefaults()
	results, err := resultCounter(cfg.Metrics, "oidcgate_universal_logout_total",
		"Universal Logout (global token revocation) requests, by result (ok, invalid, unauthorized, forbidden, not_found, rate_limited, error).",
		resultOK, resultInvalid, resultUnauthorized, resultForbidden, resultNotFound, resultRateLimited, resultError)
	if err != nil {
		return nil, err
	}
	return &UniversalLogout{
		receiver: newReceiver(cfg, slices.Collect(maps.Keys(cfg.Lifetimes))),
		verifier: cfg.Assertions,
		replays:  cfg.Replays,
		emails:   cfg.Emails,
		audience: strings.TrimSuffix(cfg.PublicURL, "/") + UniversalLogoutPath,
		results:  results,
	}, nil
}

// ServeHTTP handles one request. It never logs the JWT or the subject in
// clear: it logs the caller's issuer and SHA-256 prefixes of the jti and
// the revoked values.
func (u *UniversalLogout) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowOnly(w, r, http.MethodPost) {
		// draft §3.1: the endpoint accepts POST.
		u.results.WithLabelValues(resultInvalid).Inc()
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "method must be POST")
		return
	}
	// draft §3.2: the request MUST be authenticated; here by a JWT the
	// caller's issuer signed for this endpoint.
	raw, ok := bearerToken(r.Header)
	if !ok {
		u.unauthorized(w, r, "", "Bearer JWT required", nil)
		return
	}
	a, err := u.verifier.VerifyAssertion(r.Context(), raw, u.audience)
	switch {
	case errors.Is(err, introspect.ErrInvalidToken):
		u.unauthorized(w, r, "invalid_token", "the JWT is not valid for this endpoint", err)
		return
	case err != nil:
		u.results.WithLabelValues(resultError).Inc()
		u.log.LogAttrs(r.Context(), slog.LevelError, "universal logout not done: JWT could not be verified", slog.Any("error", err))
		w.Header().Set("Retry-After", retryAfterUnavailable)
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the JWT could not be verified now; retry later")
		return
	}
	attrs := []slog.Attr{slog.String("caller", a.Issuer), slog.String("jti_sha256", digestPrefix(a.JTI))}
	// draft §3.1: the body is application/json.
	body, problem := pushedBody(w, r, "application/json", true, maxUniversalBody)
	if problem != "" {
		u.refuse(w, r, problem, attrs)
		return
	}
	sub, err := parseUniversal(body)
	if err != nil {
		u.refuse(w, r, err.Error(), attrs)
		return
	}
	// Charged only for verified JWTs, so that forged ones cannot use up a
	// caller's budget; before the jti is recorded, so that a refused
	// request may be sent again.
	if !u.limit(w, a.Issuer) {
		u.results.WithLabelValues(resultRateLimited).Inc()
		u.log.LogAttrs(r.Context(), slog.LevelWarn, "universal logout rate limited", attrs...)
		writeError(w, http.StatusTooManyRequests, "temporarily_unavailable", "too many requests from this issuer; retry later")
		return
	}

	ctx, cancel := detached(r)
	defer cancel()
	entries, status, problem := u.plan(ctx, a, sub)
	if status == http.StatusUnprocessableEntity {
		u.failed(w, r, problem, errors.New(problem), attrs)
		return
	}
	if status != 0 {
		result := resultNotFound
		code := "invalid_request"
		if status == http.StatusForbidden {
			result, code = resultForbidden, "access_denied"
		}
		u.results.WithLabelValues(result).Inc()
		u.log.LogAttrs(r.Context(), slog.LevelInfo, "universal logout refused: "+problem, attrs...)
		writeError(w, status, code, problem)
		return
	}
	// RFC 7523 §3 item 7: a JWT is used once. Recorded before anything is
	// revoked, so that a replay never applies the revocation again at a
	// later time; the caller retries a failed request with a new JWT.
	first, err := u.replays.FirstSeen(ctx, universalReplayKey(a.Issuer, a.JTI), a.ExpiresAt.Add(u.retention.skew))
	switch {
	case err != nil:
		u.failed(w, r, "replay cache unavailable", err, attrs)
		return
	case !first:
		u.unauthorized(w, r, "invalid_token", "the JWT was used before", nil)
		return
	}
	for _, e := range entries {
		if _, err := u.store.Revoke(ctx, e); err != nil {
			u.failed(w, r, "revocation not stored", err, attrs)
			return
		}
		attrs = append(attrs, slog.String("issuer", e.Issuer), slog.String("sub_sha256", digestPrefix(e.Value)))
	}
	// draft §3.4.1: 204 once the revocation is durable (Store.Revoke
	// returned nil): it has begun everywhere the store reaches.
	u.results.WithLabelValues(resultOK).Inc()
	u.log.LogAttrs(r.Context(), slog.LevelInfo, "universal logout stored", attrs...)
	w.WriteHeader(http.StatusNoContent)
}

// plan returns the sub entries sub names for the caller a, or the status
// (403, 404, 422) and a safe description of why none.
func (u *UniversalLogout) plan(ctx context.Context, a *introspect.Assertion, sub universalSubject) ([]cache.Entry, int, string) {
	var owners []cache.EmailOwner
	switch sub.Format {
	case formatIssSub:
		if _, ok := u.retention.lifetimes[sub.Issuer]; !ok {
			return nil, http.StatusNotFound, "sub_id.iss is not an issuer of this gateway: no such user"
		}
		if sub.Issuer != a.Issuer {
			return nil, http.StatusForbidden, "the caller may revoke only users of its own issuer"
		}
		owners = []cache.EmailOwner{{Issuer: sub.Issuer, Sub: sub.Subject}}
	case formatEmail:
		if u.emails != nil {
			all, err := u.emails.EmailOwners(ctx, sub.Email)
			if err != nil && len(all) == 0 {
				// Not "no such user": the directory could not tell.
				u.log.LogAttrs(ctx, slog.LevelError, "universal logout: email directory unavailable", slog.Any("error", err))
				return nil, http.StatusUnprocessableEntity, "the email could not be resolved now"
			}
			for _, o := range all {
				// Users of other issuers are not the caller's to revoke.
				if o.Issuer == a.Issuer {
					owners = append(owners, o)
				}
			}
		}
		if len(owners) == 0 {
			return nil, http.StatusNotFound, "no user of the caller's issuer with this verified email has logged in here"
		}
	}
	now := u.now().UTC()
	initiator := "universal_logout:" + a.Issuer + " jti_sha256:" + digestPrefix(a.JTI)
	entries := make([]cache.Entry, 0, len(owners))
	for _, o := range owners {
		// A sub entry revokes every credential of the user issued up to
		// now (draft §3.3: refresh tokens, sessions and, here, access
		// tokens too; the user must authenticate again).
		e := cache.Entry{Issuer: o.Issuer, Kind: cache.KindSub, Value: o.Sub, RevokedAt: now, Reason: universalReason, Initiator: initiator}
		e.ExpiresAt = u.retention.expiresAt(e)
		entries = append(entries, e)
	}
	return entries, 0, ""
}

// universalReplayKey is the replay-cache key of a Universal Logout JWT: a
// digest of its issuer and jti, length-prefixed so that no two pairs
// collide.
func universalReplayKey(issuer, jti string) string {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(issuer))))
	h.Write([]byte(issuer))
	h.Write([]byte(jti))
	return "gtr-jti:" + hex.EncodeToString(h.Sum(nil))
}

// unauthorized answers 401 with an RFC 6750 §3 challenge: no error code
// when no credential was sent (§3.1), invalid_token otherwise.
func (u *UniversalLogout) unauthorized(w http.ResponseWriter, r *http.Request, code, description string, cause error) {
	u.results.WithLabelValues(resultUnauthorized).Inc()
	attrs := []slog.Attr{slog.String("problem", description)}
	if cause != nil {
		attrs = append(attrs, slog.Any("error", cause))
	}
	u.log.LogAttrs(r.Context(), slog.LevelInfo, "universal logout refused: unauthenticated", attrs...)
	challenge := `Bearer realm="oidcgate"`
	if code != "" {
		challenge += `, error="` + code + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, "invalid_token", description)
}

// refuse answers 400 invalid_request (draft §3.4.2: malformed request).
func (u *UniversalLogout) refuse(w http.ResponseWriter, r *http.Request, description string, attrs []slog.Attr) {
	u.results.WithLabelValues(resultInvalid).Inc()
	u.log.LogAttrs(r.Context(), slog.LevelInfo, "universal logout refused", append(attrs, slog.String("problem", description))...)
	writeError(w, http.StatusBadRequest, "invalid_request", description)
}

// failed answers 422 (draft §3.4.2: unable to log out the user): nothing
// was revoked, or not all of it; the caller may retry with a new JWT.
func (u *UniversalLogout) failed(w http.ResponseWriter, r *http.Request, description string, cause error, attrs []slog.Attr) {
	u.results.WithLabelValues(resultError).Inc()
	u.notDone(w, r, "universal logout not done: "+description, cause, attrs)
	writeError(w, http.StatusUnprocessableEntity, "temporarily_unavailable", description+"; retry later with a new JWT")
}
