package introspect

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// Defaults applied by New for zero values.
const (
	defaultMaxTokenLifetime         = 24 * time.Hour
	defaultIDTokenAlg               = "RS256"
	defaultIntrospectionCacheTTL    = time.Minute
	defaultIntrospectionNegativeTTL = 5 * time.Second
	defaultIntrospectionTimeout     = 5 * time.Second
	defaultCacheMaxTTL              = 5 * time.Minute
	defaultCacheMaxEntries          = 100_000
	defaultJWKSRefreshInterval      = 15 * time.Minute
	defaultJWKSMinRefetchInterval   = 30 * time.Second
	defaultHTTPTimeout              = 10 * time.Second
)

// The client authentication methods of the introspection client.
const (
	authBasic = "client_secret_basic"
	authPost  = "client_secret_post"
)

// Issuer is one trusted token issuer, an entry of the YAML `issuers` list.
// Zero values of optional fields mean the documented default.
type Issuer struct {
	// Issuer is the exact "iss" value of the tokens; an https URL (http only
	// on a loopback host) without query or fragment. Required.
	Issuer string `yaml:"issuer"`
	// Discovery is the URL of the OpenID Connect Discovery document; ""
	// means Issuer + "/.well-known/openid-configuration". Used only when
	// JWKSURI is "".
	Discovery string `yaml:"discovery"`
	// JWKSURI is the URL of the issuer's key set; "" means the jwks_uri of
	// the discovery document.
	JWKSURI string `yaml:"jwks_uri"`
	// Audiences lists the accepted "aud" values: a token must name at least
	// one. Required unless InsecureSkipAudienceCheck.
	Audiences []string `yaml:"audiences"`
	// ClientID is the gateway's client at this issuer (browser login and
	// introspection; unused by Verify).
	ClientID string `yaml:"client_id"`
	// ClientSecret goes with ClientID; unused by Verify.
	ClientSecret Secret `yaml:"client_secret"`
	// IntrospectionEndpoint is the issuer's RFC 7662 endpoint. When set,
	// Verify sends it every token that is not a JWT (opaque tokens), and
	// also this issuer's JWTs when IntrospectJWTs is set, authenticating
	// with ClientID and ClientSecret. At most one issuer may set it: an
	// opaque token names no issuer, and it must never be shown to another
	// party. "" means no remote introspection for this issuer.
	IntrospectionEndpoint string `yaml:"introspection_endpoint"`
	// IntrospectionAuthMethod is how the gateway authenticates to the
	// introspection endpoint: "client_secret_basic" (RFC 6749 §2.3.1, the
	// default for "") or "client_secret_post".
	IntrospectionAuthMethod string `yaml:"introspection_auth_method"`
	// IntrospectJWTs sends this issuer's JWT access tokens to the
	// introspection endpoint instead of validating them locally, so that a
	// revocation at the issuer is seen (after the cache lifetime).
	IntrospectJWTs bool `yaml:"introspect_jwts"`
	// IntrospectionCacheTTL caps how long an active introspection result is
	// cached (never past the token's exp); 0 means 1m. A revocation at the
	// issuer is seen after at most this long; one at the gateway at once.
	IntrospectionCacheTTL time.Duration `yaml:"introspection_cache_ttl"`
	// IntrospectionNegativeTTL is how long an inactive result is cached, so
	// that a flood of one bad token costs one call; 0 means 5s.
	IntrospectionNegativeTTL time.Duration `yaml:"introspection_negative_ttl"`
	// IntrospectionTimeout bounds one introspection call; 0 means 5s.
	IntrospectionTimeout time.Duration `yaml:"introspection_timeout"`
	// IDTokenSignedResponseAlg is the only alg accepted for ID and logout
	// tokens of this issuer; "" means RS256. Unused by Verify.
	IDTokenSignedResponseAlg string `yaml:"id_token_signed_response_alg"`
	// MaxTokenLifetime refuses tokens whose exp - iat is longer; revocation
	// entries of this issuer are kept this long. 0 means 24h.
	MaxTokenLifetime time.Duration `yaml:"max_token_lifetime"`
	// AccessTokenAlgs is the allow-list of JWS algs for access tokens; nil
	// means [RS256, ES256]. Only asymmetric algs (RS*, PS*, ES*, EdDSA) are
	// valid: "none" and HS* are configuration errors (RFC 8725 §3.1).
	AccessTokenAlgs []string `yaml:"access_token_algs"`
	// AccessTokenTypes lists the accepted JWS "typ" values, compared
	// case-insensitively with "application/" optional (RFC 7515 §4.1.9);
	// nil means [at+jwt] (RFC 9068 §4). Ory Hydra needs [JWT]. A token
	// without typ is always refused.
	AccessTokenTypes []string `yaml:"access_token_types"`
	// InsecureSkipAudienceCheck accepts tokens for any audience, including
	// none. Ory Hydra issues aud: [] unless the client asks for an audience;
	// with this on, a token minted for another service is accepted here.
	InsecureSkipAudienceCheck bool `yaml:"insecure_skip_audience_check"`
	// InsecureAccessTokenWithoutJTIClientID accepts JWT access tokens that
	// lack jti or client_id, both REQUIRED by RFC 9068 §2.2. Off by
	// default. IdPs whose default access tokens omit them (Auth0 without
	// its RFC 9068 token profile, Microsoft Entra ID, Keycloak for
	// client_id, Okta for client_id: see the README) need it. A token
	// without jti can then be revoked only by its hash, sub, sid or client.
	InsecureAccessTokenWithoutJTIClientID bool `yaml:"insecure_access_token_without_jti_client_id"`
	// InsecureLogoutTokenWithoutExp accepts a back-channel logout token
	// that has no exp claim when its iat is at most two minutes (plus the
	// clock skew) old. OpenID Connect Back-Channel Logout 1.0 §2.4 makes
	// exp REQUIRED; Ory Hydra v2 follows an earlier draft and omits it.
	// Off by default: a token without exp never expires, and replaying it
	// is then bounded only by the jti replay cache.
	InsecureLogoutTokenWithoutExp bool `yaml:"insecure_logout_token_without_exp"`
	// FrontchannelLogout accepts this issuer's OpenID Connect
	// Front-Channel Logout requests (which carry no proof of origin).
	// Nil means true, as before the setting existed; set it false for an
	// issuer that ends sessions by back-channel logout.
	FrontchannelLogout *bool `yaml:"frontchannel_logout"`
	// FrontchannelLogoutWithoutISS accepts this issuer's front-channel
	// logouts that carry a sid but no iss, taking them for this issuer's.
	// An interoperability setting for Microsoft Entra ID, which sends only
	// sid (OpenID Connect Front-Channel Logout 1.0 §2 makes iss optional,
	// and without it a sid names no issuer). Off by default; valid only on
	// the one issuer that logs browsers in (session.issuer), so that a sid
	// without iss can belong to no other issuer's session. Read by the
	// CLI, not by the verifier.
	FrontchannelLogoutWithoutISS bool `yaml:"frontchannel_logout_without_iss"`
	// InsecureEmailWithoutEmailVerified lets the gateway forward this
	// issuer's email claim as an identity header when the token or ID
	// token has no email_verified claim (for IdPs that never send it). An
	// email_verified other than true is still never forwarded. Off by
	// default: OIDC Core §5.7 says to use email as an identity only when
	// email_verified is true. Read by the gateway, not by the verifier.
	InsecureEmailWithoutEmailVerified bool `yaml:"insecure_email_without_email_verified"`
}

// Validate reports every problem of i at once, each prefixed with its YAML
// key relative to the issuer entry. It does no I/O.
func (i Issuer) Validate() error { return errors.Join(i.problems()...) }

// problems lists every problem of i, each prefixed with its YAML key.
func (i Issuer) problems() []error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	if i.Issuer == "" {
		add("issuer", errors.New("required"))
	} else {
		add("issuer", checkURL(i.Issuer))
		// OpenID Connect Discovery 1.0 §3: an issuer has no query or fragment.
		if u, err := url.Parse(i.Issuer); err == nil && (u.RawQuery != "" || u.Fragment != "" || u.ForceQuery) {
			add("issuer", errors.New("must not have a query or fragment"))
		}
	}
	for _, f := range []struct{ field, url string }{
		{"discovery", i.Discovery},
		{"jwks_uri", i.JWKSURI},
		{"introspection_endpoint", i.IntrospectionEndpoint},
	} {
		if f.url != "" {
			add(f.field, checkURL(f.url))
		}
	}
	if i.IntrospectionEndpoint != "" && (i.ClientID == "" || i.ClientSecret == "") {
		add("introspection_endpoint", errors.New("needs client_id and client_secret to authenticate with"))
	}
	if i.IntrospectJWTs && i.IntrospectionEndpoint == "" {
		add("introspect_jwts", errors.New("needs introspection_endpoint"))
	}
	switch i.IntrospectionAuthMethod {
	case "", authBasic, authPost:
	default:
		add("introspection_auth_method", fmt.Errorf("%q is not one of %s, %s", i.IntrospectionAuthMethod, authBasic, authPost))
	}
	for _, f := range []struct {
		field string
		d     time.Duration
	}{
		{"introspection_cache_ttl", i.IntrospectionCacheTTL},
		{"introspection_negative_ttl", i.IntrospectionNegativeTTL},
		{"introspection_timeout", i.IntrospectionTimeout},
	} {
		if f.d < 0 {
			add(f.field, errors.New("must not be negative"))
		}
	}
	if len(i.Audiences) == 0 && !i.InsecureSkipAudienceCheck {
		add("audiences", errors.New("required unless insecure_skip_audience_check is set"))
	}
	for n, a := range i.Audiences {
		if a == "" {
			add(fmt.Sprintf("audiences[%d]", n), errors.New("empty"))
		}
	}
	if i.IDTokenSignedResponseAlg != "" {
		add("id_token_signed_response_alg", checkAlg(i.IDTokenSignedResponseAlg))
	}
	if i.MaxTokenLifetime < 0 {
		add("max_token_lifetime", errors.New("must not be negative"))
	}
	if i.AccessTokenAlgs != nil && len(i.AccessTokenAlgs) == 0 {
		add("access_token_algs", errors.New("empty list; omit it for the default [RS256, ES256]"))
	}
	for n, a := range i.AccessTokenAlgs {
		add(fmt.Sprintf("access_token_algs[%d]", n), checkAlg(a))
	}
	if i.AccessTokenTypes != nil && len(i.AccessTokenTypes) == 0 {
		add("access_token_types", errors.New("empty list; omit it for the default [at+jwt]"))
	}
	for n, t := range i.AccessTokenTypes {
		if strings.TrimSpace(t) == "" {
			add(fmt.Sprintf("access_token_types[%d]", n), errors.New("empty (tokens without typ are always refused)"))
		}
	}
	return errs
}

// Revocations answers whether a verified credential has been revoked. It
// must not modify or retain c, must be safe for concurrent use, and should
// not allocate: it runs on every request, cached or not. cache.Store
// implements it.
type Revocations interface {
	IsRevoked(c *cache.Credential) bool
}

var _ Revocations = (*cache.Store)(nil)

// Config configures a Verifier. Only Issuers and Revocations are required.
type Config struct {
	// Issuers are the trusted issuers; at least one, no duplicates.
	Issuers []Issuer `yaml:"issuers"`
	// ClockSkew is the leeway for exp, nbf and iat; 0 means none.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// CacheMaxTTL caps how long a verified result is cached (never past the
	// token's exp); 0 means 5m.
	CacheMaxTTL time.Duration `yaml:"cache_max_ttl"`
	// CacheMaxEntries bounds the verified-result cache; 0 means 100000.
	CacheMaxEntries int64 `yaml:"cache_max_entries"`
	// JWKSRefreshInterval is how often Run refreshes every key set (never
	// more often than JWKSMinRefetchInterval); 0 means 15m.
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`
	// JWKSMinRefetchInterval is the per-issuer cooldown between key-set
	// fetches: an unknown kid, Ready or Run cause at most one fetch per
	// issuer per interval. 0 means 30s.
	JWKSMinRefetchInterval time.Duration `yaml:"jwks_min_refetch_interval"`
	// Revocations is consulted after every verification and cache hit.
	// Required.
	Revocations Revocations `yaml:"-"`
	// HTTPClient fetches discovery documents and key sets; nil means a
	// client of this package with a 10s timeout that follows no redirects
	// (never http.DefaultClient).
	HTTPClient *http.Client `yaml:"-"`
	// Clock is the clock; nil means the wall clock.
	Clock clock.Clock `yaml:"-"`
	// Logger receives key-set refresh events (never tokens); nil discards.
	Logger *slog.Logger `yaml:"-"`
	// Metrics registers oidcgate_jwks_refresh_total and
	// oidcgate_token_cache_total; nil registers nothing.
	Metrics prometheus.Registerer `yaml:"-"`
}

// Validate reports every problem of c at once, each prefixed with its YAML
// path (e.g. "issuers[0].jwks_uri: ..."). It does no I/O.
func (c Config) Validate() error {
	errs := []error{ValidateIssuers(c.Issuers)}
	for _, f := range []struct {
		field string
		d     time.Duration
	}{
		{"clock_skew", c.ClockSkew},
		{"cache_max_ttl", c.CacheMaxTTL},
		{"jwks_refresh_interval", c.JWKSRefreshInterval},
		{"jwks_min_refetch_interval", c.JWKSMinRefetchInterval},
	} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", f.field))
		}
	}
	if c.CacheMaxEntries < 0 {
		errs = append(errs, errors.New("cache_max_entries: must not be negative"))
	}
	if c.Revocations == nil {
		errs = append(errs, errors.New("revocations: required"))
	}
	return errors.Join(errs...)
}

// ValidateIssuers reports every problem of the `issuers` list at once:
// each issuer's own, duplicates, and more than one issuer with an
// introspection_endpoint. It does no I/O.
func ValidateIssuers(issuers []Issuer) error {
	var errs []error
	if len(issuers) == 0 {
		errs = append(errs, errors.New("issuers: at least one issuer is required"))
	}
	seen := make(map[string]int, len(issuers))
	remote := -1
	for n, is := range issuers {
		for _, e := range is.problems() {
			errs = append(errs, fmt.Errorf("issuers[%d].%w", n, e))
		}
		if is.IntrospectionEndpoint != "" {
			if remote >= 0 {
				errs = append(errs, fmt.Errorf("issuers[%d].introspection_endpoint: only one issuer may introspect (issuers[%d] does): an opaque token names no issuer and must not be sent to another", n, remote))
			} else {
				remote = n
			}
		}
		if first, dup := seen[is.Issuer]; dup && is.Issuer != "" {
			errs = append(errs, fmt.Errorf("issuers[%d].issuer: duplicate of issuers[%d]", n, first))
		} else if !dup {
			seen[is.Issuer] = n
		}
	}
	return errors.Join(errs...)
}

// checkURL accepts an absolute http(s) URL without fragment that uses https
// unless its host is a loopback address or localhost.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "" {
		return errors.New("not an absolute URL")
	}
	if u.Fragment != "" {
		return errors.New("must not have a fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("must use https (http only on loopback hosts)")
	}
	return fmt.Errorf("unsupported scheme %q (want https)", u.Scheme)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// checkAlg accepts the asymmetric JWS algs of RFC 7518 §3.1 and EdDSA
// (RFC 8037 §3.1); "none" and HMAC algs are refused (RFC 8725 §3.1, §3.2).
func checkAlg(alg string) error {
	switch {
	case isAsymmetricAlg(alg):
		return nil
	case strings.EqualFold(alg, "none"):
		return errors.New(`"none" is never allowed`)
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return fmt.Errorf("%q is symmetric (HMAC); only RS*, PS*, ES* and EdDSA are allowed", alg)
	}
	return fmt.Errorf("unsupported alg %q (want RS*, PS*, ES* or EdDSA)", alg)
}

func isAsymmetricAlg(alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA":
		return true
	}
	return false
}

// WithDefaults returns i with zero values replaced by their defaults; New
// applies it, and callers that need the effective values (lifetimes) use it.
func (i Issuer) WithDefaults() Issuer {
	if i.Discovery == "" {
		// OpenID Connect Discovery 1.0 §4.
		i.Discovery = strings.TrimSuffix(i.Issuer, "/") + "/.well-known/openid-configuration"
	}
	if i.IDTokenSignedResponseAlg == "" {
		i.IDTokenSignedResponseAlg = defaultIDTokenAlg
	}
	if i.MaxTokenLifetime == 0 {
		i.MaxTokenLifetime = defaultMaxTokenLifetime
	}
	if i.AccessTokenAlgs == nil {
		i.AccessTokenAlgs = []string{"RS256", "ES256"}
	}
	if i.AccessTokenTypes == nil {
		i.AccessTokenTypes = []string{"at+jwt"}
	}
	if i.IntrospectionAuthMethod == "" {
		i.IntrospectionAuthMethod = authBasic
	}
	if i.IntrospectionCacheTTL == 0 {
		i.IntrospectionCacheTTL = defaultIntrospectionCacheTTL
	}
	if i.IntrospectionNegativeTTL == 0 {
		i.IntrospectionNegativeTTL = defaultIntrospectionNegativeTTL
	}
	if i.IntrospectionTimeout == 0 {
		i.IntrospectionTimeout = defaultIntrospectionTimeout
	}
	return i
}

// normalizeTyp maps a JWS "typ" to its full media type in lower case: RFC
// 7515 §4.1.9 says "application/" is implied when the value has no "/",
// and media types compare case-insensitively (RFC 2045 §5.1).
func normalizeTyp(typ string) string {
	t := strings.ToLower(strings.TrimSpace(typ))
	if !strings.Contains(t, "/") {
		t = "application/" + t
	}
	return t
}
