package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"strings"

	"github.com/oidcgate/oidcgate/introspect"
)

// DefaultAPIKeyHeader is Config.APIKeyHeader when empty.
const DefaultAPIKeyHeader = "X-API-Key"

// KeyVerifier verifies API keys (routes with api_keys: true). An error
// wrapping introspect.ErrInvalidToken means a bad or dead key (401); any
// other error means it could not decide (503). *introspect.APIKeys
// implements it.
type KeyVerifier interface {
	Verify(raw string) (*introspect.Claims, error)
}

var _ KeyVerifier = (*introspect.APIKeys)(nil)

// keySource says where a route found an API key.
type keySource uint8

const (
	keyNone   keySource = iota
	keyHeader           // the api_keys.header field
	keyBearer           // Authorization: Bearer oag_…
)

// findKey returns the API key h carries for an api_keys route: the
// configured header (once, non-empty), else a Bearer credential that
// looks like a key. bad reports a repeated or empty key header.
func (g *Gateway) findKey(h http.Header) (raw string, src keySource, bad bool) {
	if vals, ok := h[g.keyHeader]; ok {
		if len(vals) != 1 || vals[0] == "" || len(vals[0]) > g.maxAuth {
			return "", keyNone, true
		}
		return vals[0], keyHeader, false
	}
	if vals := h["Authorization"]; len(vals) == 1 && len(vals[0]) <= g.maxAuth {
		if tok, res := parseAuthorization(vals[0]); res == authBearer && introspect.LooksLikeAPIKey(tok) {
			return tok, keyBearer, false
		}
	}
	return "", keyNone, false
}

// judgeKey judges the API key h carries, if any, into v and reports
// whether there was one (then v is final, judged as bearer): a valid key
// whose scopes hold the route's and whose routes, when limited, name this
// one.
func (rt *route) judgeKey(h http.Header, v *verdict) bool {
	raw, src, bad := rt.g.findKey(h)
	switch {
	case bad:
		v.mode, v.d = AuthBearer, decInvalidRequest
		return true
	case src == keyNone:
		return false
	}
	v.mode, v.keySrc, v.token = AuthBearer, src, raw
	c, err := rt.g.keys.Verify(raw)
	switch {
	case errors.Is(err, introspect.ErrInvalidToken):
		v.d = decInvalidToken
	case err != nil, c == nil:
		v.d = decUnavailable
	case !c.HasScopes(rt.scopes):
		v.d = decInsufficientScope
	default:
		if routes, ok := c.Claim("routes"); ok && !containsWord(routes, rt.label) {
			v.d = decInsufficientScope
			return true
		}
		v.d, v.claims = decAllowed, c
	}
	return true
}

// Name is the route's name as API keys' routes list it: its host (if
// any) and path prefix, normalised ("api.example.com/v1", "/reports").
func (r Route) Name() string { return normalHost(r.Host) + normalPrefix(r.PathPrefix) }

// containsWord reports whether the space-separated list has w.
func containsWord(list, w string) bool {
	for f := range strings.FieldsSeq(list) {
		if f == w {
			return true
		}
	}
	return false
}

// stripKey removes the API key from the upstream request: the key header
// always on an api_keys route, and Authorization when it carried the key.
func (rt *route) stripKey(pr *httputil.ProxyRequest) {
	if !rt.apiKeys {
		return
	}
	pr.Out.Header.Del(rt.g.keyHeader)
	if st, _ := pr.In.Context().Value(stateKey{}).(*proxyState); st != nil && st.keySrc == keyBearer {
		pr.Out.Header.Del("Authorization")
	}
}

// validateAPIKeys judges api_keys.header and the routes' api_keys.
func (c Config) validateAPIKeys() []error {
	var errs []error
	if h := c.APIKeyHeader; h != "" {
		switch http.CanonicalHeaderKey(h) {
		case "Authorization", "Cookie", "Host", "Proxy-Authorization", "Connection", "Forwarded":
			errs = append(errs, fmt.Errorf("api_keys.header: %q is not available for API keys", h))
		default:
			if !validToken(h) {
				errs = append(errs, errors.New("api_keys.header: not a header field name"))
			}
		}
	}
	for i, r := range c.Routes {
		if r.APIKeys && r.Auth == AuthNone {
			errs = append(errs, fmt.Errorf("routes[%d].api_keys: not with auth none (nothing is checked there)", i))
		}
	}
	return errs
}
