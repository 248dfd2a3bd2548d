// Package introspect owns token validation: local verification of JWT
// access tokens (RFC 9068) against each configured issuer's JWKS, found by
// OpenID Connect Discovery or configured directly, and a droppable cache of
// verified results.
//
// A Verifier refuses every token it cannot prove valid: the signature must
// verify with one key of the token's issuer under an allow-listed
// asymmetric alg that the key is meant for (RFC 8725 §3.1), and exp, nbf,
// iat, aud, sub and the maximum lifetime are checked before the revocation
// store is asked. A cached result never skips the expiry or revocation
// check. Bad credentials wrap ErrInvalidToken; ErrUnavailable means the
// verifier could not decide (no keys yet) and the caller must still refuse.
//
// A SETVerifier verifies Shared Signals SETs (RFC 8417, SSF 1.0 profile)
// of the configured transmitters against their JWKS, with the same key
// source (cooldown, shared refetch); its refusals carry the RFC 8935 §2.4
// error code.
//
// This package must never log or return a raw token (only a short reason
// or a SHA-256 prefix), never trust keys named by the token itself (jku,
// jwk, x5u, x5c headers are ignored), never accept "none" or HMAC algs, and
// never use http.DefaultClient. It imports no project package but cache.
package introspect
