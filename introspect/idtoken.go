package introspect

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Endpoints are an issuer's OAuth 2.0 / OpenID Connect endpoints, from
// its discovery document. An endpoint the issuer does not publish is "".
type Endpoints struct {
	Authorization string
	Token         string
	EndSession    string
	Revocation    string
	// Introspection is the configured introspection_endpoint, else the
	// discovery document's.
	Introspection string
	// AuthorizationResponseIss: the issuer sends iss in every
	// authorization response (RFC 9207 §3), so one without it is refused.
	AuthorizationResponseIss bool
}

// Endpoints returns issuer's endpoints from its discovery document,
// fetched once and kept; a failed fetch is retried on the next call.
// Every endpoint must be an https URL (http only on loopback); the
// authorization and token endpoints are required.
func (v *Verifier) Endpoints(ctx context.Context, issuer string) (Endpoints, error) {
	is, ok := v.issuers[issuer]
	if !ok {
		return Endpoints{}, fmt.Errorf("introspect: endpoints: unknown issuer %.200q", issuer)
	}
	if e := is.endpoints.Load(); e != nil {
		return *e, nil
	}
	ch := v.fetches.DoChan("discovery "+issuer, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultHTTPTimeout)
		defer cancel()
		doc, err := fetchDiscovery(ctx, is.keys.client, is.cfg)
		if err != nil {
			return nil, err
		}
		e := Endpoints{
			Authorization: doc.AuthorizationEndpoint,
			Token:         doc.TokenEndpoint,
			EndSession:    doc.EndSessionEndpoint,
			Revocation:    doc.RevocationEndpoint,
			Introspection: doc.IntrospectionEndpoint,

			AuthorizationResponseIss: doc.AuthorizationResponseIss,
		}
		if is.cfg.IntrospectionEndpoint != "" {
			e.Introspection = is.cfg.IntrospectionEndpoint
		}
		for _, f := range []struct {
			name, url string
			required  bool
		}{
			{"authorization_endpoint", e.Authorization, true},
			{"token_endpoint", e.Token, true},
			{"end_session_endpoint", e.EndSession, false},
			{"revocation_endpoint", e.Revocation, false},
			{"introspection_endpoint", e.Introspection, false},
		} {
			if f.url == "" && !f.required {
				continue
			}
			if err := checkURL(f.url); err != nil {
				return nil, fmt.Errorf("discovery: %s: %w", f.name, err)
			}
		}
		is.endpoints.Store(&e)
		return e, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Endpoints{}, fmt.Errorf("%w: %s: %w", ErrUnavailable, issuer, r.Err)
		}
		return r.Val.(Endpoints), nil
	case <-ctx.Done():
		return Endpoints{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// VerifyIDToken verifies raw, an ID token from issuer's token endpoint,
// as OpenID Connect Core 1.0 §3.1.3.7 requires, and returns its claims.
// nonce is the value sent in the authentication request; "" means none
// was sent (then a nonce claim is not checked). The revocation store is
// not consulted: the session made from the token is checked on every
// request instead. Errors are as for Verify.
func (v *Verifier) VerifyIDToken(ctx context.Context, issuer, raw, nonce string) (*Claims, error) {
	is, u, err := v.verifySigned(ctx, raw)
	if err != nil {
		return nil, err
	}
	// §3.1.3.7 item 2: iss MUST exactly match the issuer the request was
	// sent to (which also defeats IdP mix-up).
	if is.cfg.Issuer != issuer {
		return nil, invalid("iss is not the issuer the login was sent to")
	}
	if is.cfg.ClientID == "" {
		return nil, fmt.Errorf("introspect: issuer %s has no client_id: it cannot log browsers in", issuer)
	}
	switch normalizeTyp(u.header.typ) {
	case "application/at+jwt", "application/logout+jwt", "application/secevent+jwt":
		// Explicitly typed tokens of another kind are never ID tokens.
		return nil, invalid("typ %.40q is not an ID token's", u.header.typ)
	}
	c, err := u.toClaims()
	if err != nil {
		return nil, err
	}
	if c.Subject == "" {
		// OpenID Connect Core 1.0 §2: sub is REQUIRED.
		return nil, invalid("sub missing")
	}
	if err := v.checkTimes(is, c, true); err != nil {
		return nil, err
	}
	// §3.1.3.7 item 3: aud MUST contain the client_id, and the token MUST
	// be rejected if it names audiences the client does not trust (here:
	// the issuer's configured audiences).
	if !slices.Contains(c.Audience, is.cfg.ClientID) {
		return nil, invalid("aud does not name this client")
	}
	for _, a := range c.Audience {
		if a != is.cfg.ClientID && !slices.Contains(is.cfg.Audiences, a) {
			return nil, invalid("aud names an audience this client does not trust")
		}
	}
	// §3.1.3.7 items 4-5: with several audiences azp is needed, and when
	// present it must be this client.
	var azp string
	if !stringMember(u.claims, "azp", &azp) {
		return nil, invalid("azp is not a string")
	}
	if len(c.Audience) > 1 && azp == "" {
		return nil, invalid("azp missing with several audiences")
	}
	if azp != "" && azp != is.cfg.ClientID {
		return nil, invalid("azp is not this client")
	}
	// §3.1.3.7 item 11: the nonce MUST be the one sent.
	if nonce != "" {
		var got string
		if !stringMember(u.claims, "nonce", &got) {
			return nil, invalid("nonce is not a string")
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
			return nil, invalid("nonce does not match")
		}
	}
	return c, nil
}

// backchannelLogoutEvent is the member of a logout token's events claim
// (OpenID Connect Back-Channel Logout 1.0 §2.4).
const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutTokenMaxAgeWithoutExp bounds the age of a logout token accepted
// without exp (Issuer.InsecureLogoutTokenWithoutExp).
const logoutTokenMaxAgeWithoutExp = 2 * time.Minute

// LogoutToken is a verified back-channel logout token.
type LogoutToken struct {
	Issuer string
	// Subject and SID: at least one is set.
	Subject  string
	SID      string
	JTI      string
	Audience []string
	IssuedAt time.Time
	// ExpiresAt is zero only when the issuer allows logout tokens without
	// exp (Issuer.InsecureLogoutTokenWithoutExp).
	ExpiresAt time.Time
}

// VerifyLogoutToken verifies raw, a logout token received at the
// back-channel logout endpoint, as OpenID Connect Back-Channel Logout 1.0
// §2.6 requires, except the jti replay check (item 8), which needs state
// the caller keeps. Every error wraps ErrInvalidToken (answer 400) or
// ErrUnavailable (the keys could not be loaded).
func (v *Verifier) VerifyLogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	// §2.6 items 2-3: signature and alg checked as for ID tokens; never
	// "none" (verifySigned allows only the issuer's asymmetric alg).
	is, u, err := v.verifySigned(ctx, raw)
	if err != nil {
		return nil, err
	}
	switch normalizeTyp(u.header.typ) {
	case "application/logout+jwt", "application/jwt":
		// §2.4 recommends typ logout+jwt; Hydra and Keycloak send JWT.
	case "application/":
		// No typ at all: §2.4 only recommends explicit typing.
	default:
		return nil, invalid("typ %.40q is not a logout token's", u.header.typ)
	}
	c, err := u.toClaims()
	if err != nil {
		return nil, err
	}
	// §2.6 item 4: iss (verifySigned found it among the configured
	// issuers), aud, iat and exp validated as for ID tokens.
	if is.cfg.ClientID == "" || !slices.Contains(c.Audience, is.cfg.ClientID) {
		return nil, invalid("aud does not name this client")
	}
	if c.ExpiresAt.IsZero() {
		// §2.4: exp is REQUIRED, unless the issuer is known to omit it.
		if !is.cfg.InsecureLogoutTokenWithoutExp {
			return nil, invalid("exp missing")
		}
		if c.IssuedAt.IsZero() {
			return nil, invalid("iat missing")
		}
		if v.now().Sub(c.IssuedAt) > logoutTokenMaxAgeWithoutExp+v.skew {
			return nil, expired("issued too long ago (no exp)")
		}
	}
	if err := v.checkTimes(is, c, !c.ExpiresAt.IsZero()); err != nil {
		return nil, err
	}
	// §2.4: jti is REQUIRED.
	if c.JTI == "" {
		return nil, invalid("jti missing")
	}
	// §2.6 item 5: sub, sid or both.
	if c.Subject == "" && c.SID == "" {
		return nil, invalid("neither sub nor sid")
	}
	// §2.6 item 6: events is a JSON object with the back-channel logout
	// member; §2.4: that member's value is a JSON object.
	var events map[string]json.RawMessage
	ev, ok := u.claims["events"]
	if !ok || unmarshalObject(ev, &events) != nil {
		return nil, invalid("events missing or not a JSON object")
	}
	var member map[string]json.RawMessage
	bcl, ok := events[backchannelLogoutEvent]
	if !ok || unmarshalObject(bcl, &member) != nil {
		return nil, invalid("events has no back-channel logout object")
	}
	// §2.6 item 7: a nonce claim is prohibited (§2.4), so that an ID token
	// can never pass for a logout token.
	if _, ok := u.claims["nonce"]; ok {
		return nil, invalid("nonce present")
	}
	return &LogoutToken{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		SID:       c.SID,
		JTI:       c.JTI,
		Audience:  c.Audience,
		IssuedAt:  c.IssuedAt,
		ExpiresAt: c.ExpiresAt,
	}, nil
}

// verifySigned parses raw and checks its signature for an ID or logout
// token: the issuer must be configured and the alg must be exactly its
// id_token_signed_response_alg (OpenID Connect Core 1.0 §3.1.3.7 item 7).
func (v *Verifier) verifySigned(ctx context.Context, raw string) (*issuerState, *unverified, error) {
	if len(raw) > maxTokenBytes {
		return nil, nil, invalid("longer than %d bytes", maxTokenBytes)
	}
	u, err := parseCompact(raw)
	if err != nil {
		return nil, nil, err
	}
	is, ok := v.issuers[u.iss]
	if !ok {
		return nil, nil, invalid("unknown issuer %.100q", u.iss)
	}
	// RFC 8725 §3.1: never "none" nor HMAC (keyed with a public key).
	if !isAsymmetricAlg(u.header.alg) || u.header.alg != is.cfg.IDTokenSignedResponseAlg {
		return nil, nil, invalid("alg %.20q is not this issuer's id_token_signed_response_alg", u.header.alg)
	}
	if err := v.verifySignature(ctx, is, u, raw); err != nil {
		return nil, nil, err
	}
	return is, u, nil
}

// checkTimes checks the time claims of an ID or logout token as OpenID
// Connect Core 1.0 §3.1.3.7 items 9-10 require: iat present and not in the
// future, exp (when needExp) present and not passed, and a lifetime no
// longer than the issuer's max_token_lifetime.
func (v *Verifier) checkTimes(is *issuerState, c *Claims, needExp bool) error {
	now := v.now()
	if c.IssuedAt.IsZero() {
		return invalid("iat missing")
	}
	if c.IssuedAt.After(now.Add(v.skew)) {
		return invalid("issued in the future (iat)")
	}
	if now.Sub(c.IssuedAt) > is.cfg.MaxTokenLifetime+v.skew {
		return expired("issued longer ago than max_token_lifetime")
	}
	if !needExp {
		return nil
	}
	if c.ExpiresAt.IsZero() {
		return invalid("exp missing")
	}
	if !now.Before(c.ExpiresAt.Add(v.skew)) {
		return expired("expired")
	}
	if c.ExpiresAt.Sub(c.IssuedAt) > is.cfg.MaxTokenLifetime {
		return invalid("lifetime longer than max_token_lifetime")
	}
	return nil
}
