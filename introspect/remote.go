package introspect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/oidcgate/oidcgate/cache"
)

// maxIntrospectionResponseBytes bounds an introspection response.
const maxIntrospectionResponseBytes = 1 << 20

// TokenHashID is the revocation-store value that names a token by its
// SHA-256 (for opaque tokens, and any token /revoke is given): a
// cache.KindJTI entry with this value revokes exactly that token. The
// token itself is never stored.
func TokenHashID(raw string) string {
	sum := tokenDigest(raw)
	return "sha256:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// remote is the introspection client of the one issuer that has an
// introspection_endpoint.
type remote struct {
	is     *issuerState
	client *http.Client
}

// wantsRemote reports whether raw goes to the introspection endpoint: it
// is not a JWT (opaque), or it is a JWT of an issuer with IntrospectJWTs.
func (v *Verifier) wantsRemote(raw string) bool {
	if v.remote == nil {
		return false
	}
	if strings.Count(raw, ".") != 2 {
		return true
	}
	if !v.remote.is.cfg.IntrospectJWTs {
		return false
	}
	u, err := parseCompact(raw)
	return err == nil && u.iss == v.remote.is.cfg.Issuer
}

// verifyRemote introspects raw at the issuer, sharing one call among
// concurrent requests for the same token (the first caller's cancellation
// does not fail the others: the call is bounded by its own timeout), and
// caches the result: an active one for min(introspection_cache_ttl,
// exp - now), an inactive one for introspection_negative_ttl, an error
// never.
func (v *Verifier) verifyRemote(ctx context.Context, raw string, sum [sha256.Size]byte, key uint64) (*Claims, error) {
	ch := v.introspections.DoChan(string(sum[:]), func() (any, error) {
		r, err := v.remote.introspect(context.WithoutCancel(ctx), v, raw)
		if err != nil {
			v.introspected.WithLabelValues("error").Inc()
			return nil, err
		}
		r.sum = sum
		ttl := v.remote.is.cfg.IntrospectionNegativeTTL
		if r.inactive == nil {
			v.introspected.WithLabelValues("active").Inc()
			ttl = min(v.remote.is.cfg.IntrospectionCacheTTL, r.claims.ExpiresAt.Sub(v.now()))
		} else {
			v.introspected.WithLabelValues("inactive").Inc()
		}
		r.until = v.now().Add(ttl)
		if ttl > 0 && v.results.SetWithTTL(key, r, 1, ttl) {
			// Later requests must find it: without Wait, a Set still in
			// ristretto's buffer would send them to the IdP again.
			v.results.Wait()
		}
		return r, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return v.admit(res.Val.(*result))
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// introspect asks the endpoint about raw (RFC 7662 §2.1). A transport
// error, a timeout or a status other than 200 wrap ErrUnavailable (the
// issuer could not be asked: 503); an answer that is not a JSON object
// with a boolean "active" is a bad credential (401), never cached.
func (rm *remote) introspect(ctx context.Context, v *Verifier, raw string) (*result, error) {
	cfg := rm.is.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.IntrospectionTimeout)
	defer cancel()
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	if cfg.IntrospectionAuthMethod == authPost {
		form.Set("client_id", cfg.ClientID)
		form.Set("client_secret", string(cfg.ClientSecret))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.IntrospectionEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if cfg.IntrospectionAuthMethod == authBasic {
		// RFC 6749 §2.3.1: both parts form-urlencoded before Basic.
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(string(cfg.ClientSecret)))
	}
	resp, err := rm.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: reading the answer: %w", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: introspection endpoint answered %d", ErrUnavailable, resp.StatusCode)
	}
	if len(body) > maxIntrospectionResponseBytes {
		return nil, invalid("introspection answer longer than %d bytes", maxIntrospectionResponseBytes)
	}
	return v.judgeIntrospection(rm.is, raw, body)
}

// judgeIntrospection turns an introspection answer into a result: active
// with checked claims, or inactive (r.inactive says why).
func (v *Verifier) judgeIntrospection(is *issuerState, raw string, body []byte) (*result, error) {
	var m map[string]json.RawMessage
	if err := unmarshalObject(body, &m); err != nil {
		return nil, invalid("introspection answer is not a JSON object")
	}
	// RFC 7662 §2.2: "active" is REQUIRED and a boolean.
	switch string(bytes.TrimSpace(m["active"])) {
	case "true":
	case "false":
		return inactive("inactive at the issuer"), nil
	default:
		return nil, invalid("introspection answer has no boolean active")
	}
	u := unverified{claims: m, iss: is.cfg.Issuer}
	var iss string
	if !stringMember(m, "iss", &iss) {
		return nil, invalid("introspection iss is not a string")
	}
	if iss != "" && iss != is.cfg.Issuer {
		return inactive("iss is not the introspecting issuer"), nil
	}
	c, err := u.toClaims()
	if err != nil {
		return nil, err
	}
	// Hydra says which token it was in token_use; a refresh token is
	// active too, but never a bearer credential.
	var use, typ string
	if !stringMember(m, "token_use", &use) || !stringMember(m, "token_type", &typ) {
		return nil, invalid("introspection token_use or token_type is not a string")
	}
	if use != "" && use != "access_token" {
		return inactive("not an access token"), nil
	}
	switch strings.ToLower(typ) {
	case "", "bearer", "access_token":
	default:
		// E.g. DPoP (RFC 9449 §8): bound to a key this request did not prove.
		return inactive("token_type is not bearer"), nil
	}
	now := v.now()
	if c.ExpiresAt.IsZero() {
		// RFC 7662 makes exp optional: trust the answer for the cache
		// lifetime, then ask again.
		c.ExpiresAt = now.Add(is.cfg.IntrospectionCacheTTL)
	} else if !now.Before(c.ExpiresAt.Add(v.skew)) {
		return inactive("expired"), nil
	}
	if !c.NotBefore.IsZero() && now.Before(c.NotBefore.Add(-v.skew)) {
		return inactive("not valid yet (nbf)"), nil
	}
	if !c.IssuedAt.IsZero() && c.ExpiresAt.Sub(c.IssuedAt) > is.cfg.MaxTokenLifetime {
		return inactive("lifetime longer than max_token_lifetime"), nil
	}
	if !is.cfg.InsecureSkipAudienceCheck && !audienceAccepted(is, c.Audience) {
		return inactive("aud does not name an accepted audience"), nil
	}
	return &result{
		claims: c,
		cred:   c.Credential(),
		byHash: cache.Credential{Issuer: is.cfg.Issuer, JTI: TokenHashID(raw)},
	}, nil
}

// inactive is a cacheable negative result.
func inactive(reason string) *result {
	return &result{inactive: errors.New(reason)}
}

// audienceAccepted reports whether aud names one of is's audiences.
func audienceAccepted(is *issuerState, aud []string) bool {
	for _, a := range aud {
		for _, want := range is.cfg.Audiences {
			if a == want {
				return true
			}
		}
	}
	return false
}
