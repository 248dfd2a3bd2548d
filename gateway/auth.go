package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/oidcgate/oidcgate/introspect"
)

// retryAfter is the Retry-After (seconds) of a 503 when the verifier
// cannot decide.
const retryAfter = "5"

// The refusals' WWW-Authenticate values (RFC 6750 §3, realm "oidcgate")
// and JSON bodies. The descriptions are generic on purpose: they never
// echo the token or say why exactly it failed (no '"' or '\' in them, so
// they need no escaping).
const (
	// RFC 6750 §3.1: no error code when the request has no credentials.
	challengeNoToken = `Bearer realm="oidcgate"`
	bodyNoToken      = `{"error_description":"a bearer token is required"}` + "\n"

	descInvalidRequest      = "the Authorization header is malformed, repeated or too long"
	challengeInvalidRequest = `Bearer realm="oidcgate", error="invalid_request", error_description="` + descInvalidRequest + `"`
	bodyInvalidRequest      = `{"error":"invalid_request","error_description":"` + descInvalidRequest + `"}` + "\n"

	descInvalidToken      = "the access token is invalid, expired or revoked"
	challengeInvalidToken = `Bearer realm="oidcgate", error="invalid_token", error_description="` + descInvalidToken + `"`
	bodyInvalidToken      = `{"error":"invalid_token","error_description":"` + descInvalidToken + `"}` + "\n"

	descInsufficientScope = "the access token lacks a scope this resource requires"
	// The route's scope="..." parameter is appended at New.
	challengeInsufficientScope = `Bearer realm="oidcgate", error="insufficient_scope", error_description="` + descInsufficientScope + `"`
	bodyInsufficientScope      = `{"error":"insufficient_scope","error_description":"` + descInsufficientScope + `"}` + "\n"

	bodyNoSession = `{"error":"login_required","error_description":"a browser session is required"}` + "\n"

	bodyUnavailable = `{"error":"temporarily_unavailable","error_description":"the access token cannot be verified now; retry later"}` + "\n"
)

// decision is the outcome of a request, the "decision" metric label.
type decision uint8

const (
	decAllowed decision = iota
	decNoToken
	decInvalidRequest
	decInvalidToken
	decInsufficientScope
	decUnavailable
	decNoRoute
	decUpstreamError
	decLoginRedirect
	decNoSession
	decBadForward
	decUntrusted
	decNeedsProxy
	numDecisions
)

func (d decision) String() string {
	switch d {
	case decAllowed:
		return "allowed"
	case decNoToken:
		return "no_token"
	case decInvalidRequest:
		return "invalid_request"
	case decInvalidToken:
		return "invalid_token"
	case decInsufficientScope:
		return "insufficient_scope"
	case decUnavailable:
		return "unavailable"
	case decNoRoute:
		return "no_route"
	case decUpstreamError:
		return "upstream_error"
	case decLoginRedirect:
		return "login_redirect"
	case decNoSession:
		return "no_session"
	case decBadForward:
		return "bad_forwarded_request"
	case decUntrusted:
		return "untrusted_source"
	case decNeedsProxy:
		return "needs_proxy"
	}
	return "unknown"
}

// authenticate applies RFC 6750 §2.1 to the request header h and returns the verified claims,
// or the reason to refuse. token is the parsed token, for the log's hash
// only; it is "" when none was parsed.
//
// Only the Authorization header is read. Tokens in the query string
// (access_token=, RFC 6750 §2.3) or a form body (§2.2) are not accepted:
// URLs end up in access logs, browser history and Referer headers (RFC 6750
// §5.3 and §2.3 "SHOULD NOT"), and reading a body would consume the
// upstream's request.
func (g *Gateway) authenticate(ctx context.Context, h http.Header, scopes []string) (claims *introspect.Claims, d decision, token string) {
	vals := h["Authorization"]
	switch {
	case len(vals) == 0:
		return nil, decNoToken, ""
	case len(vals) > 1:
		// RFC 6750 §3.1 invalid_request: "repeats the same parameter".
		return nil, decInvalidRequest, ""
	case len(vals[0]) > g.maxAuth:
		// Checked before any parsing.
		return nil, decInvalidRequest, ""
	}
	token, res := parseAuthorization(vals[0])
	switch res {
	case authOtherScheme:
		// RFC 6750 §3.1: a request that "attempted using an unsupported
		// authentication method" gets a challenge without an error code.
		return nil, decNoToken, ""
	case authMalformed:
		return nil, decInvalidRequest, ""
	}
	if introspect.LooksLikeAPIKey(token) {
		// A key where keys are not accepted: refused here, never sent to
		// the token verifier (or an issuer's introspection endpoint).
		return nil, decInvalidToken, token
	}
	claims, err := g.verifier.Verify(ctx, token)
	switch {
	case errors.Is(err, introspect.ErrInvalidToken):
		return nil, decInvalidToken, token
	case err != nil, claims == nil:
		// Could not decide: fail closed, but as 503, not as a bad token.
		return nil, decUnavailable, token
	case !claims.HasScopes(scopes):
		return nil, decInsufficientScope, token
	}
	g.learnUserID(ctx, claims)
	return claims, decAllowed, token
}

// authResult classifies an Authorization field value.
type authResult uint8

const (
	authBearer      authResult = iota // a well-formed Bearer credential
	authOtherScheme                   // another scheme, e.g. Basic
	authMalformed                     // not credentials at all, or a malformed Bearer one
)

// parseAuthorization parses one Authorization field value as RFC 6750 §2.1
// credentials:
//
//	credentials = "Bearer" 1*SP b64token
//	b64token    = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//
// The scheme is case-insensitive (RFC 9110 §11.1). It returns the token
// only for authBearer. It does not allocate.
func parseAuthorization(v string) (string, authResult) {
	scheme, rest, _ := strings.Cut(v, " ")
	if !validToken(scheme) {
		return "", authMalformed
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return "", authOtherScheme
	}
	token := strings.TrimLeft(rest, " ")
	if !validB64Token(token) {
		return "", authMalformed
	}
	return token, authBearer
}

// validB64Token reports whether s is an RFC 6750 §2.1 b64token.
func validB64Token(s string) bool {
	n := len(strings.TrimRight(s, "="))
	if n == 0 {
		return false
	}
	for i := 0; i < n; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// deny writes the refusal for d.
func (rt *route) deny(w http.ResponseWriter, d decision) {
	h := w.Header()
	var status int
	var body string
	switch d {
	case decNoToken:
		status, body = http.StatusUnauthorized, bodyNoToken
		h.Set("WWW-Authenticate", challengeNoToken)
	case decInvalidRequest:
		status, body = http.StatusBadRequest, bodyInvalidRequest
		h.Set("WWW-Authenticate", challengeInvalidRequest)
	case decInvalidToken:
		status, body = http.StatusUnauthorized, bodyInvalidToken
		h.Set("WWW-Authenticate", challengeInvalidToken)
	case decInsufficientScope:
		status, body = http.StatusForbidden, bodyInsufficientScope
		h.Set("WWW-Authenticate", rt.scopeHdr)
	default:
		status, body = http.StatusServiceUnavailable, bodyUnavailable
		h.Set("Retry-After", retryAfter)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// logDenied writes the one debug line of a denied request. It identifies
// the token by a SHA-256 prefix, never by its value.
func (g *Gateway) logDenied(ctx context.Context, route string, d decision, token string) {
	if !g.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{slog.String("route", route), slog.String("decision", d.String())}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		attrs = append(attrs, slog.String("token_sha256", hex.EncodeToString(sum[:8])))
	}
	g.log.LogAttrs(ctx, slog.LevelDebug, "request denied", attrs...)
}
