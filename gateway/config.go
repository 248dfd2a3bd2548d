package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
	"github.com/oidcgate/oidcgate/introspect"
)

// AuthMode says how a route authenticates its requests.
type AuthMode string

// The auth modes. The zero value "" means AuthBearer: an omitted auth key
// never means no auth (fail closed).
const (
	// AuthBearer requires an RFC 6750 bearer token in the Authorization
	// header, verified by Config.Verifier.
	AuthBearer AuthMode = "bearer"
	// AuthNone proxies without authentication. Identity headers sent by the
	// client are still removed.
	AuthNone AuthMode = "none"
	// AuthBrowser requires a gateway session cookie: browser navigations
	// without one are sent to the IdP (authorization code flow with PKCE),
	// other requests get 401.
	AuthBrowser AuthMode = "browser"
	// AuthEither judges a request with an Authorization header as
	// AuthBearer and any other as AuthBrowser.
	AuthEither AuthMode = "either"
)

// Route is one entry of the YAML `routes` list.
type Route struct {
	// Host restricts the route to one host: exact, case-insensitive, the
	// port and a trailing dot ignored. "" matches any host. Routes with a
	// host are tried before routes without one.
	Host string `yaml:"host"`
	// PathPrefix must start with "/"; "" means "/". Matching is
	// segment-aware on the cleaned, percent-decoded path: "/api" matches
	// "/api", "/api/x" and "/api;x" (';' starts path parameters, which
	// some servers strip), but not "/apix". A trailing slash is ignored
	// ("/api/" is "/api"). Longer prefixes are tried first; ties keep config
	// order. "/oauth2" is reserved for the gateway.
	PathPrefix string `yaml:"path_prefix"`
	// Upstream is an absolute http(s) URL; its path is joined with the
	// request path ("http://app/base" + "/x" = "/base/x") and the outbound
	// Host header is the upstream's host. "" makes the route
	// forward-auth only: an ingress asks /oauth2/auth (or ext_authz) about
	// its requests and proxies them itself; the gateway answers 404 to a
	// request it would have to proxy.
	Upstream string `yaml:"upstream"`
	// Auth is the route's auth mode; "" means AuthBearer.
	Auth AuthMode `yaml:"auth"`
	// RequiredScopes must all be in the token's scope claim, else 403
	// insufficient_scope. Empty requires none. Only for bearer routes.
	RequiredScopes []string `yaml:"required_scopes"`
	// AppSessionCookies names the upstream's own session cookies. The
	// browser only ever holds them sealed to the gateway session; the
	// upstream gets the real value only while that session lives. Only for
	// browser and either routes with an Upstream (sealing needs the
	// gateway in the data path). Nil seals none.
	AppSessionCookies []string `yaml:"app_session_cookies"`
	// AppLogoutURL is called (POST, with the app's real cookies) when a
	// session that used this route's app cookies is revoked. An absolute
	// http(s) URL; needs AppSessionCookies. "" calls nothing.
	AppLogoutURL string `yaml:"app_logout_url"`
	// AppVerify checks that the app really ended its session: after a
	// successful app logout call, the gateway GETs AppVerify.Path from the
	// upstream with the same old cookies. Nil checks nothing; needs
	// AppLogoutURL.
	AppVerify *AppVerify `yaml:"app_verify"`
	// WebSocket lets WebSocket handshakes (RFC 6455 §4.1) through, after
	// the route's authentication; false refuses every Upgrade (400). A
	// tunnel opened with a credential ends when that credential is revoked
	// or expires; on browser routes the handshake's Origin must be
	// public_url's.
	WebSocket bool `yaml:"websocket"`
	// Headers maps an upstream header name to a claim name (e.g. X-User:
	// sub). The value is (*introspect.Claims).Claim(name); a missing claim
	// leaves the header absent. Nil sets none.
	Headers map[string]string `yaml:"headers"`
	// APIKeys makes the route accept API keys (Authorization: Bearer oag_…
	// or the Config.APIKeyHeader field) as well as its auth mode's
	// credentials: sub = client_id = the key's owner, scope = its scopes.
	// The key never reaches the upstream. Not with auth none.
	APIKeys bool `yaml:"api_keys"`
}

// AppVerify is a route's honour check (YAML `app_verify`).
type AppVerify struct {
	// Path is requested (GET) from the upstream as a proxied request for
	// it would be: the upstream URL's path joined with Path. It starts
	// with "/" and holds no query or fragment.
	Path string `yaml:"path"`
	// Expect lists the statuses that show a dead app session (e.g. 401,
	// 302 to the app's login, 403); empty means 401, 302 and 403. Any
	// other status, or no answer after every attempt, means the app did
	// not honour its logout.
	Expect []int `yaml:"expect"`
}

// defaultExpect is AppVerify.Expect's default.
var defaultExpect = []int{http.StatusUnauthorized, http.StatusFound, http.StatusForbidden}

func (v *AppVerify) validate(add func(field, format string, args ...any), r Route) {
	if r.AppLogoutURL == "" {
		add("app_verify", "needs app_logout_url (the check follows the app logout call)")
	}
	u, err := url.Parse(v.Path)
	switch {
	case !strings.HasPrefix(v.Path, "/") || strings.HasPrefix(v.Path, "//"):
		add("app_verify.path", "must be an absolute path starting with one /")
	case err != nil || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(v.Path, "?#"):
		add("app_verify.path", "must be a path without query or fragment")
	}
	for j, code := range v.Expect {
		if code < 100 || code > 599 {
			add(fmt.Sprintf("app_verify.expect[%d]", j), "%d is not an HTTP status", code)
		}
	}
}

// TokenVerifier verifies a bearer token. An error wrapping
// introspect.ErrInvalidToken means a bad credential (401); any other error
// means the verifier could not decide (503, the request is still refused).
// The returned Claims are treated as read-only.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*introspect.Claims, error)
}

// IDTokenVerifier resolves an issuer's endpoints and verifies its ID
// tokens (OIDC Core 3.1.3.7: signature with the issuer's registered alg,
// iss, aud/azp against the issuer's client_id, exp, iat and nonce).
// VerifyIDToken returns an error wrapping introspect.ErrInvalidToken for a
// bad token; any other error means it could not decide. *introspect.Verifier
// implements it.
type IDTokenVerifier interface {
	Endpoints(ctx context.Context, issuer string) (introspect.Endpoints, error)
	VerifyIDToken(ctx context.Context, issuer, raw, nonce string) (*introspect.Claims, error)
}

// SessionStore is the revocation store as browser sessions need it:
// IsRevoked on every request, Revoke for sign-out, and Subscribe to learn
// of every revocation (on any replica) for app logout calls. Subscribe's fn
// must not block; the returned func cancels the subscription. *cache.Store
// implements it.
type SessionStore interface {
	IsRevoked(c *cache.Credential) bool
	Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error)
	Subscribe(fn func(cache.Entry)) (cancel func())
}

// LiveSIDs records that a gateway session of issuer with IdP session id
// sid lives until the time until. *cache.Store and *cache.Redis
// implement it.
type LiveSIDs interface {
	RecordSID(ctx context.Context, issuer, sid string, until time.Time) error
}

// EmailDirectory records that a browser login of owner carried the
// verified email address email, until the time until: the directory a
// Universal Logout naming an email resolves its users with. *cache.Store
// and *cache.Redis implement it.
type EmailDirectory interface {
	RecordEmail(ctx context.Context, email string, owner cache.EmailOwner, until time.Time) error
}

// DefaultMaxAuthorizationBytes is the Authorization header limit used when
// Config.MaxAuthorizationBytes is 0.
const DefaultMaxAuthorizationBytes = 16 << 10

// Defaults of the session settings.
const (
	// DefaultCookieName names the session cookie when public_url is http;
	// with https it is "__Host-" + DefaultCookieName (RFC 6265bis §4.1.3.2:
	// Secure, Path=/, no Domain — no sibling host can set or shadow it).
	DefaultCookieName    = "oidcgate_session"
	DefaultSessionMaxAge = 24 * time.Hour
	// MinSecretLen is the shortest session.secret accepted, in characters.
	MinSecretLen = 32
)

// SessionConfig is the YAML `session` block: the gateway's browser
// session cookie.
type SessionConfig struct {
	// CookieName names the session cookie ("" means DefaultCookieName); a
	// large session is split into CookieName_0, CookieName_1, ... and login
	// state cookies are named CookieName_login_*.
	CookieName string `yaml:"cookie_name"`
	// Secret (at least MinSecretLen characters) derives, with HKDF-SHA256,
	// the AES-256-GCM keys that seal the session, login state and app
	// cookies. Required when a route uses browser or either auth.
	Secret introspect.Secret `yaml:"secret"`
	// PreviousSecrets are retired secrets: cookies sealed with them still
	// open, new cookies are sealed with Secret only. Nil means none.
	PreviousSecrets []introspect.Secret `yaml:"previous_secrets"`
	// MaxAge is a session's lifetime from login; 0 means
	// DefaultSessionMaxAge.
	MaxAge time.Duration `yaml:"max_age"`
	// Issuer is the configured issuer that logs browsers in. Required when a
	// route uses browser or either auth.
	Issuer string `yaml:"issuer"`
	// PostLogoutRedirectURIs is the allow-list of where /oauth2/sign_out
	// may send the browser after the IdP's logout; nil means
	// [PublicURL + "/"]. The first entry is the default.
	PostLogoutRedirectURIs []string `yaml:"post_logout_redirect_uris"`
}

// Login is the gateway's OAuth client at Session.Issuer, taken by the
// caller from that issuer's entry of the YAML `issuers` list.
type Login struct {
	// Issuer is the issuer that logs browsers in; "" means Session.Issuer.
	Issuer string
	// ClientID is the gateway's client_id there. Required for browser
	// routes.
	ClientID string
	// ClientSecret authenticates the code exchange (client_secret_basic,
	// RFC 6749 §2.3.1). Required for browser routes.
	ClientSecret introspect.Secret
	// Scopes are requested at login; nil means [openid profile email].
	// "openid" is added when missing.
	Scopes []string
}

// AppLogoutConfig bounds the app logout calls. Zero fields mean the
// documented defaults.
type AppLogoutConfig struct {
	// Workers calling app logout URLs; 0 means 4.
	Workers int
	// QueueSize bounds the calls and revocations waiting for a worker; 0
	// means 1024. When full, a call is dropped (counted, logged).
	QueueSize int
	// Timeout of one attempt; 0 means 5s.
	Timeout time.Duration
	// MaxAttempts per call (network errors, 408, 429 and 5xx are retried);
	// 0 means 4.
	MaxAttempts int
	// Backoff before the first retry, doubled for each next one (capped at
	// 30s); 0 means 500ms.
	Backoff time.Duration
	// RegistrySize bounds the sessions remembered for app logout; 0 means
	// 100000.
	RegistrySize int
	// DrainTimeout bounds how long Close waits for queued calls; 0 means
	// 10s.
	DrainTimeout time.Duration
}

// Config configures a Gateway. Routes, Session and PublicURL come from the
// YAML file; the other fields are wired by the caller.
type Config struct {
	// Routes are the routes; none means every request gets 404.
	Routes []Route
	// PublicURL is the gateway's external origin (YAML `public_url`), e.g.
	// "https://gw.example.com": an absolute http(s) URL without path, query
	// or fragment. The OAuth redirect_uri is PublicURL + "/oauth2/callback";
	// cookies are Secure when it is https. Required when a route uses
	// browser or either auth.
	PublicURL string
	// Session is the YAML `session` block; unused without browser routes.
	Session SessionConfig
	// ForwardAuth is the YAML `forward_auth` block: who may ask
	// /oauth2/auth and where /oauth2/start may send a browser back to.
	ForwardAuth ForwardAuthConfig
	// Login is the OAuth client for browser login.
	Login Login
	// ClockSkew (YAML `clock_skew`) is added to a revocation's time when
	// judging whether a session was issued before it; 0 means none.
	ClockSkew time.Duration
	// AppLogout bounds app logout calls.
	AppLogout AppLogoutConfig
	// AppLogoutObserver, when not nil, learns the outcome of every app
	// logout call (and of every call dropped before it was made). Nil
	// means outcomes are only logged and counted.
	AppLogoutObserver AppLogoutObserver
	// InsecureEmailWithoutEmailVerified lists the issuers whose email
	// claim is forwarded (identity headers, session) when their token or
	// ID token has no email_verified claim. Nil means none: an email is
	// forwarded only with email_verified true (OIDC Core §5.7).
	InsecureEmailWithoutEmailVerified []string
	// MaxAuthorizationBytes bounds the Authorization header; a longer one
	// is refused (400 invalid_request) without being parsed. 0 means
	// DefaultMaxAuthorizationBytes.
	MaxAuthorizationBytes int
	// APIKeys verifies API keys. New requires it when a route has
	// api_keys.
	APIKeys KeyVerifier
	// APIKeyHeader is the request field that may carry an API key (YAML
	// api_keys.header); "" means DefaultAPIKeyHeader (X-API-Key).
	APIKeyHeader string
	// Verifier verifies bearer tokens. New requires it when a route uses
	// bearer or either auth (Validate does not, so that a config file can
	// be checked on its own).
	Verifier TokenVerifier
	// IDTokens resolves the login issuer's endpoints and verifies its ID
	// tokens. New requires it when a route uses browser or either auth.
	IDTokens IDTokenVerifier
	// Sessions is the revocation store sessions are checked against. New
	// requires it when a route uses browser or either auth.
	Sessions SessionStore
	// LiveSIDs records the IdP session (iss, sid) of every browser login,
	// the record a front-channel logout is checked against. Nil means
	// none is recorded.
	LiveSIDs LiveSIDs
	// UserIDs records, for each issuer in UserIDClaims, the user id that a
	// verified bearer token or login carries in that claim, keyed by
	// (issuer, sub), kept UserIDRetention after the last sighting; a sub
	// revocation's session authority call needs it (issue 12). Nil, or an
	// empty UserIDClaims, learns nothing.
	UserIDs UserIDs
	// UserIDClaims maps an issuer to the claim naming its users at its
	// session authority (session_authority.user_id_claim), for issuers
	// where that claim is not sub.
	UserIDClaims map[string]string
	// UserIDRetention is how long a learned user id is kept after it was
	// last seen; 0 means DefaultUserIDRetention.
	UserIDRetention time.Duration
	// Emails records the verified email of every browser login (an email
	// is verified as for identity headers: email_verified true, or the
	// issuer's insecure_email_without_email_verified). Nil means none is
	// recorded.
	Emails EmailDirectory
	// HTTPClient calls the token endpoint and app logout URLs. Nil means a
	// client of this package with a 10s timeout that follows no redirects
	// (never http.DefaultClient).
	HTTPClient *http.Client
	// Clock is the clock of sessions, login state, app logout retries and
	// request durations; nil means the wall clock.
	Clock clock.Clock
	// Transport carries proxied requests. Nil means a *http.Transport tuned
	// for a proxy, shared by all routes: a large keep-alive pool, dial and
	// TLS timeouts, HTTP/1.1 only (WebSocket upgrades need it), no
	// transparent compression, and no HTTP_PROXY from the environment.
	Transport http.RoundTripper
	// Logger receives one debug line per denied request, upstream errors,
	// logins and app logout outcomes. Nil discards.
	Logger *slog.Logger
	// Metrics registers the gateway's metrics. Nil means they are kept but
	// not registered.
	Metrics prometheus.Registerer
}

// ForwardAuthConfig is the YAML `forward_auth` block.
type ForwardAuthConfig struct {
	// GRPCListen is the address of the Envoy ext_authz gRPC service
	// (envoy.service.auth.v3.Authorization). "" serves none. The gateway
	// package does not listen: the caller does, with
	// (*Gateway).AuthorizationServer.
	GRPCListen string `yaml:"grpc_listen"`
	// AllowedRedirectHosts are the hosts (exact, case-insensitive, any
	// port) besides public_url's origin that /oauth2/start's rd may name
	// in an absolute http(s) URL. Nil allows same-origin paths and
	// public_url's origin only.
	AllowedRedirectHosts []string `yaml:"allowed_redirect_hosts"`
	// TrustedProxies are the source addresses (IPs or CIDR ranges) allowed
	// to ask /oauth2/auth, /oauth2/auth_redirect and the ext_authz
	// service: the forwarded headers describing the original request are
	// believed only from the ingress. Nil accepts any source.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

func (c ForwardAuthConfig) validate() []error {
	var errs []error
	if c.GRPCListen != "" {
		if _, port, err := net.SplitHostPort(c.GRPCListen); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("forward_auth.grpc_listen: not a host:port address: %q", c.GRPCListen))
		}
	}
	for i, h := range c.AllowedRedirectHosts {
		if h == "" || !validHost(h) {
			errs = append(errs, fmt.Errorf("forward_auth.allowed_redirect_hosts[%d]: must be a host name without scheme, port or path", i))
		}
	}
	for i, p := range c.TrustedProxies {
		if _, err := parseSourceRange(p); err != nil {
			errs = append(errs, fmt.Errorf("forward_auth.trusted_proxies[%d]: %w", i, err))
		}
	}
	return errs
}

// parseSourceRange parses an IP ("10.0.0.7", "::1") or a CIDR range
// ("10.0.0.0/8") into a prefix; an IPv4-mapped IPv6 address is its IPv4
// form.
func parseSourceRange(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR range: %q", s)
		}
		if p.Addr().Is4In6() {
			return netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)), nil
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR range: %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// defaultCookieName is the session cookie's name when session.cookie_name
// is not set.
func defaultCookieName(secure bool) string {
	if secure {
		return "__Host-" + DefaultCookieName
	}
	return DefaultCookieName
}

// reservedPrefix is where the gateway mounts its own endpoints
// (DESIGN.md: /oauth2/start, /oauth2/callback, ...).
const reservedPrefix = "/oauth2"

// browserRoutes reports whether a route needs browser sessions.
func (c Config) browserRoutes() bool {
	return slices.ContainsFunc(c.Routes, func(r Route) bool { return r.Auth == AuthBrowser || r.Auth == AuthEither })
}

// Validate reports every problem of c at once, each prefixed by its YAML
// path (e.g. "routes[1].upstream: not an absolute URL"). It does no I/O and
// does not look at Verifier, IDTokens, Sessions, HTTPClient, Now,
// Transport, Logger or Metrics.
func (c Config) Validate() error {
	var errs []error
	if c.MaxAuthorizationBytes < 0 {
		errs = append(errs, errors.New("max_authorization_bytes: must not be negative"))
	}
	if c.ClockSkew < 0 {
		errs = append(errs, errors.New("clock_skew: must not be negative"))
	}
	errs = append(errs, c.validateSession()...)
	errs = append(errs, c.ForwardAuth.validate()...)
	errs = append(errs, c.validateAPIKeys()...)
	cookieName := cmp.Or(c.Session.CookieName, defaultCookieName(strings.HasPrefix(c.PublicURL, "https:")))
	seen := make(map[string]int, len(c.Routes))
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		errs = append(errs, r.validate(p, cookieName)...)
		key := routeKey(r)
		if j, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%s: same host and path_prefix as routes[%d]", p, j))
			continue
		}
		seen[key] = i
	}
	if pu, err := url.Parse(c.PublicURL); err == nil && pu.Host != "" {
		for i, r := range c.Routes {
			if (r.Auth == AuthBrowser || r.Auth == AuthEither) && r.Host != "" && normalHost(r.Host) != normalHost(pu.Hostname()) {
				// The session cookie is host-only, set on public_url's host.
				errs = append(errs, fmt.Errorf("routes[%d].host: a browser route must be on public_url's host", i))
			}
		}
	}
	a := c.AppLogout
	for _, f := range []struct {
		name string
		neg  bool
	}{
		{"app_logout.workers", a.Workers < 0},
		{"app_logout.queue_size", a.QueueSize < 0},
		{"app_logout.timeout", a.Timeout < 0},
		{"app_logout.max_attempts", a.MaxAttempts < 0},
		{"app_logout.backoff", a.Backoff < 0},
		{"app_logout.registry_size", a.RegistrySize < 0},
		{"app_logout.drain_timeout", a.DrainTimeout < 0},
	} {
		if f.neg {
			errs = append(errs, fmt.Errorf("%s: must not be negative", f.name))
		}
	}
	return errors.Join(errs...)
}

// validateSession checks public_url, session and login. Secrets, issuer,
// client and public_url are required only when a route needs sessions.
func (c Config) validateSession() []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf(field+": "+format, args...))
	}
	need := c.browserRoutes()
	s := c.Session
	switch {
	case c.PublicURL == "" && need:
		add("public_url", "required when a route uses browser or either auth")
	case c.PublicURL != "":
		if msg := checkPublicURL(c.PublicURL); msg != "" {
			add("public_url", "%s", msg)
		} else if need && strings.HasPrefix(c.PublicURL, "http:") && !loopbackURL(c.PublicURL) {
			// Session cookies and the login code would cross the network in
			// clear, and cookies cannot be Secure or __Host-.
			add("public_url", "must be https with browser or either routes (http only for a loopback host)")
		}
	}
	if s.CookieName != "" && (!validToken(s.CookieName) || len(s.CookieName) > 64) {
		add("session.cookie_name", "not a valid cookie name (RFC 6265 §4.1.1 token, at most 64 bytes)")
	}
	if (strings.HasPrefix(s.CookieName, "__Host-") || strings.HasPrefix(s.CookieName, "__Secure-")) && !strings.HasPrefix(c.PublicURL, "https:") {
		// Browsers refuse such cookies without Secure, which needs https.
		add("session.cookie_name", "a __Host- or __Secure- name needs an https public_url")
	}
	switch {
	case s.Secret == "" && need:
		add("session.secret", "required when a route uses browser or either auth")
	case s.Secret != "" && utf8.RuneCountInString(string(s.Secret)) < MinSecretLen:
		add("session.secret", "shorter than %d characters", MinSecretLen)
	}
	for i, p := range s.PreviousSecrets {
		if utf8.RuneCountInString(string(p)) < MinSecretLen {
			add(fmt.Sprintf("session.previous_secrets[%d]", i), "shorter than %d characters", MinSecretLen)
		}
	}
	if s.MaxAge < 0 {
		add("session.max_age", "must not be negative")
	}
	if s.Issuer == "" && need {
		add("session.issuer", "required when a route uses browser or either auth")
	}
	if c.Login.Issuer != "" && s.Issuer != "" && c.Login.Issuer != s.Issuer {
		add("login.issuer", "must be session.issuer")
	}
	for i, u := range s.PostLogoutRedirectURIs {
		if msg := checkAbsoluteURL(u); msg != "" {
			add(fmt.Sprintf("session.post_logout_redirect_uris[%d]", i), "%s", msg)
		}
	}
	if need && c.Login.ClientID == "" {
		add("login.client_id", "required when a route uses browser or either auth")
	}
	if need && c.Login.ClientSecret == "" {
		add("login.client_secret", "required when a route uses browser or either auth")
	}
	for i, sc := range c.Login.Scopes {
		if !validScope(sc) {
			add(fmt.Sprintf("login.scopes[%d]", i), "not a valid scope token (RFC 6749 §3.3)")
		}
	}
	return errs
}

// loopbackURL reports whether u's host is a loopback address or
// "localhost" (RFC 6761 §6.3).
func loopbackURL(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := strings.ToLower(strings.TrimSuffix(pu.Hostname(), "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func checkPublicURL(s string) string {
	if msg := checkAbsoluteURL(s); msg != "" {
		return msg
	}
	u, _ := url.Parse(s)
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.ForceQuery {
		return "must not have a path or query (the gateway's endpoints are at /oauth2)"
	}
	return ""
}

// checkAbsoluteURL accepts an absolute http(s) URL with a host, without
// credentials or fragment.
func checkAbsoluteURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return "not an absolute URL"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "scheme must be http or https"
	}
	if u.User != nil {
		return "must not contain credentials"
	}
	if u.Fragment != "" {
		return "must not have a fragment"
	}
	return ""
}

func (r Route) validate(p, sessionCookie string) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: "+format, append([]any{p, field}, args...)...))
	}
	if !validHost(r.Host) {
		add("host", "must be a host name without scheme, port or path")
	}
	if msg := checkPathPrefix(r.PathPrefix); msg != "" {
		add("path_prefix", "%s", msg)
	}
	if r.Upstream != "" {
		if msg := checkUpstream(r.Upstream); msg != "" {
			add("upstream", "%s", msg)
		}
	}
	switch r.Auth {
	case "", AuthBearer, AuthNone, AuthBrowser, AuthEither:
	default:
		add("auth", "unknown mode %q (want bearer, browser, either or none)", r.Auth)
	}
	if (r.Auth == AuthNone || r.Auth == AuthBrowser) && len(r.RequiredScopes) > 0 {
		add("required_scopes", "needs auth bearer or either")
	}
	for j, s := range r.RequiredScopes {
		if !validScope(s) {
			add(fmt.Sprintf("required_scopes[%d]", j), "not a valid scope token (RFC 6749 §3.3)")
		}
	}
	browser := r.Auth == AuthBrowser || r.Auth == AuthEither
	if len(r.AppSessionCookies) > 0 && !browser {
		add("app_session_cookies", "needs auth browser or either")
	}
	if len(r.AppSessionCookies) > 0 && r.Upstream == "" {
		// The ingress would pass the sealed values to the app and the
		// app's real cookies to the browser.
		add("app_session_cookies", "needs an upstream: a forward-auth-only route cannot seal app cookies (the gateway is not in the data path)")
	}
	for j, name := range r.AppSessionCookies {
		field := fmt.Sprintf("app_session_cookies[%d]", j)
		switch {
		case !validToken(name):
			add(field, "not a valid cookie name (RFC 6265 §4.1.1 token)")
		case ownCookie(name, sessionCookie):
			add(field, "is a name of the gateway's own cookies")
		case slices.Index(r.AppSessionCookies, name) < j:
			add(field, "listed twice")
		}
	}
	if r.AppLogoutURL != "" {
		if msg := checkAbsoluteURL(r.AppLogoutURL); msg != "" {
			add("app_logout_url", "%s", msg)
		}
		if len(r.AppSessionCookies) == 0 {
			add("app_logout_url", "needs app_session_cookies")
		}
	}
	if r.AppVerify != nil {
		r.AppVerify.validate(add, r)
	}
	names := make([]string, 0, len(r.Headers))
	for name := range r.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	folded := make(map[string]string, len(names))
	for _, name := range names {
		field := "headers." + name
		f := foldHeaderName(name)
		switch {
		case !validToken(name):
			add(field, "not a valid header name")
		case hopByHop(f):
			add(field, "is a hop-by-hop header")
		case gatewayOwned(f):
			add(field, "is set by the client or the gateway, not from a claim")
		}
		if other, dup := folded[f]; dup {
			add(field, "same header as %s (names compare case-insensitively, '_' as '-')", other)
		}
		folded[f] = name
		if r.Headers[name] == "" {
			add(field, "claim name is empty")
		}
	}
	return errs
}

// routeKey identifies a route for duplicate detection: (host, prefix) as
// matched, the prefix normalised ("/Admin" and "/admin" are one route).
func routeKey(r Route) string {
	n, _ := normalizePath(normalPrefix(r.PathPrefix))
	return normalHost(r.Host) + " " + n
}

func normalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// normalPrefix returns the prefix as matched: "" is "/", and a trailing
// slash is dropped.
func normalPrefix(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "/"
	}
	return p
}

func validHost(h string) bool {
	if h == "" {
		return true
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		ip := net.ParseIP(h[1 : len(h)-1])
		return ip != nil && ip.To4() == nil
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func checkPathPrefix(p string) string {
	if p == "" {
		return ""
	}
	if p[0] != '/' {
		return `must start with "/"`
	}
	if strings.ContainsAny(p, "%?#;\\") || path.Clean(p) != normalPrefix(p) {
		return `must be a clean path (no "." or ".." segments, "//", "%", "?", "#", ";" or "\")`
	}
	if n, ok := normalizePath(normalPrefix(p)); !ok || n != foldString(normalPrefix(p)) {
		// Matching compares normalised forms (normalizePath): a prefix
		// must differ from its own only by case.
		return "must not have a segment ending in '.' or white space, control characters or fullwidth forms"
	}
	if n, _ := normalizePath(p); matchPrefix(n, reservedPrefix) {
		return reservedPrefix + " is reserved for the gateway"
	}
	return ""
}

func checkUpstream(s string) string {
	if msg := checkAbsoluteURL(s); msg != "" {
		return msg
	}
	if u, _ := url.Parse(s); u.RawQuery != "" || u.ForceQuery {
		return "must not have a query or fragment"
	}
	return ""
}

// validScope reports whether s is an RFC 6749 §3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ).
func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validToken reports whether s is an RFC 9110 §5.6.2 token, the syntax of
// a header field name.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// foldHeaderName lower-cases name and turns '_' into '-', the way some
// upstreams (CGI, PHP, nginx with underscores_in_headers) fold names.
func foldHeaderName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// hopByHop reports whether the folded name is a hop-by-hop header
// (RFC 9110 §7.6.1, plus the legacy ones ReverseProxy also removes).
func hopByHop(folded string) bool {
	switch folded {
	case "connection", "proxy-connection", "keep-alive", "proxy-authenticate",
		"proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// gatewayOwned reports whether the folded name is one an identity header
// must not replace: credentials the upstream may need, message framing, and
// the forwarding headers the gateway sets itself.
func gatewayOwned(folded string) bool {
	switch folded {
	case "host", "authorization", "cookie", "content-length", "content-type",
		"content-encoding", "expect", "forwarded", "x-forwarded-for",
		"x-forwarded-host", "x-forwarded-proto":
		return true
	}
	return false
}

var (
	_ IDTokenVerifier = (*introspect.Verifier)(nil)
	_ SessionStore    = (*cache.Store)(nil)
	_ LiveSIDs        = (*cache.Store)(nil)
	_ LiveSIDs        = (*cache.Redis)(nil)
	_ UserIDs         = (*cache.Store)(nil)
	_ UserIDs         = (*cache.Redis)(nil)
	_ EmailDirectory  = (*cache.Store)(nil)
	_ EmailDirectory  = (*cache.Redis)(nil)
)
