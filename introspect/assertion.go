package introspect

import (
	"context"
	"slices"
	"time"
)

// MaxAssertionLifetime is the longest exp - iat VerifyAssertion accepts:
// an assertion authenticates one call, so it is short-lived, and its jti
// must be remembered only this long (plus the clock skew).
const MaxAssertionLifetime = 5 * time.Minute

// Assertion is a verified JWT by which a configured issuer authenticates
// one call to the gateway (a Universal Logout request).
type Assertion struct {
	// Issuer is the configured issuer that signed it.
	Issuer    string
	Subject   string
	JTI       string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// VerifyAssertion verifies raw, a JWT a configured issuer signed to
// authenticate a request to the gateway endpoint whose URL is audience,
// the way RFC 7523 §3 judges a JWT used for authentication: signed by a
// key of the issuer's JWKS with an alg of its access_token_algs (never
// none or HS*), aud naming audience, exp and iat present, not expired,
// lived at most MaxAssertionLifetime, jti present. The jti replay check
// (RFC 7523 §3 item 7) needs state the caller keeps. A JWT marked as
// another kind of token (typ at+jwt, logout+jwt, secevent+jwt; claims
// nonce, at_hash, events) is refused, so that no access, ID or logout
// token and no SET passes for an assertion. Errors are as for Verify.
func (v *Verifier) VerifyAssertion(ctx context.Context, raw, audience string) (*Assertion, error) {
	if raw == "" {
		return nil, invalid("empty")
	}
	if len(raw) > maxTokenBytes {
		return nil, invalid("longer than %d bytes", maxTokenBytes)
	}
	u, err := parseCompact(raw)
	if err != nil {
		return nil, err
	}
	// RFC 7523 §3 item 1: iss names the party that signed it; the lookup
	// is exact.
	is, ok := v.issuers[u.iss]
	if !ok {
		return nil, invalid("unknown issuer %.100q", u.iss)
	}
	// RFC 8725 §3.1: never "none" nor HMAC (keyed with a public key).
	if !isAsymmetricAlg(u.header.alg) || !slices.Contains(is.cfg.AccessTokenAlgs, u.header.alg) {
		return nil, invalid("alg %.20q not allowed for this issuer", u.header.alg)
	}
	// RFC 8725 §3.11, §3.12: the issuer's other JWTs must not pass for an
	// assertion.
	switch normalizeTyp(u.header.typ) {
	case "application/at+jwt", "application/logout+jwt", "application/secevent+jwt":
		return nil, invalid("typ %.40q is not an assertion's", u.header.typ)
	}
	if name, ok := otherKindClaim(u.claims); ok {
		return nil, invalid("%s claim: not an assertion", name)
	}
	// RFC 7523 §3 item 9: the signature MUST verify.
	if err := v.verifySignature(ctx, is, u, raw); err != nil {
		return nil, err
	}
	c, err := u.toClaims()
	if err != nil {
		return nil, err
	}
	now := v.now()
	// RFC 7523 §3 item 4: exp is REQUIRED and the JWT MUST be refused
	// after it; iat bounds how long ago it was made.
	switch {
	case c.ExpiresAt.IsZero():
		return nil, invalid("exp missing")
	case c.IssuedAt.IsZero():
		return nil, invalid("iat missing")
	case c.JTI == "":
		return nil, invalid("jti missing")
	}
	if !now.Before(c.ExpiresAt.Add(v.skew)) {
		return nil, expired("expired")
	}
	if c.IssuedAt.After(now.Add(v.skew)) {
		return nil, invalid("issued in the future (iat)")
	}
	// RFC 7523 §3 item 5: not accepted before nbf.
	if !c.NotBefore.IsZero() && now.Before(c.NotBefore.Add(-v.skew)) {
		return nil, invalid("not valid yet (nbf)")
	}
	if life := c.ExpiresAt.Sub(c.IssuedAt); life < 0 || life > MaxAssertionLifetime {
		return nil, invalid("lifetime longer than %s", MaxAssertionLifetime)
	}
	// RFC 7523 §3 item 3: aud MUST identify the recipient; here, the exact
	// URL of the endpoint called, so that an assertion made for another
	// service or endpoint is useless here.
	if audience == "" || !slices.Contains(c.Audience, audience) {
		return nil, invalid("aud does not name this endpoint")
	}
	return &Assertion{Issuer: c.Issuer, Subject: c.Subject, JTI: c.JTI, IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt}, nil
}
