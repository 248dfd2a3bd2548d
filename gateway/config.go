package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

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
	// AuthBrowser is reserved for browser sessions (a later issue);
	// Validate refuses it until then.
	AuthBrowser AuthMode = "browser"
	// AuthEither is reserved for "browser session or bearer token" (a later
	// issue); Validate refuses it until then.
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
	// Host header is the upstream's host.
	Upstream string `yaml:"upstream"`
	// Auth is the route's auth mode; "" means AuthBearer.
	Auth AuthMode `yaml:"auth"`
	// RequiredScopes must all be in the token's scope claim, else 403
	// insufficient_scope. Empty requires none. Only for bearer routes.
	RequiredScopes []string `yaml:"required_scopes"`
	// AppSessionCookies is reserved for sealed app cookies (a later issue);
	// Validate refuses a non-empty list until then.
	AppSessionCookies []string `yaml:"app_session_cookies"`
	// AppLogoutURL is reserved for app logout calls (a later issue);
	// Validate refuses a non-empty value until then.
	AppLogoutURL string `yaml:"app_logout_url"`
	// Headers maps an upstream header name to a claim name (e.g. X-User:
	// sub). The value is (*introspect.Claims).Claim(name); a missing claim
	// leaves the header absent. Nil sets none.
	Headers map[string]string `yaml:"headers"`
}

// TokenVerifier verifies a bearer token. An error wrapping
// introspect.ErrInvalidToken means a bad credential (401); any other error
// means the verifier could not decide (503, the request is still refused).
// The returned Claims are treated as read-only.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*introspect.Claims, error)
}

// DefaultMaxAuthorizationBytes is the Authorization header limit used when
// Config.MaxAuthorizationBytes is 0.
const DefaultMaxAuthorizationBytes = 16 << 10

// Config configures a Gateway. Routes comes from the YAML file; the other
// fields are wired by the caller.
type Config struct {
	// Routes are the routes; none means every request gets 404.
	Routes []Route
	// MaxAuthorizationBytes bounds the Authorization header; a longer one
	// is refused (400 invalid_request) without being parsed. 0 means
	// DefaultMaxAuthorizationBytes.
	MaxAuthorizationBytes int
	// Verifier verifies bearer tokens. New requires it when a route uses
	// bearer auth (Validate does not, so that a config file can be checked
	// on its own).
	Verifier TokenVerifier
	// Transport carries proxied requests. Nil means a *http.Transport tuned
	// for a proxy, shared by all routes: a large keep-alive pool, dial and
	// TLS timeouts, HTTP/1.1 only (WebSocket upgrades need it), no
	// transparent compression, and no HTTP_PROXY from the environment.
	Transport http.RoundTripper
	// Logger receives one debug line per denied request and upstream
	// errors. Nil discards.
	Logger *slog.Logger
	// Metrics registers the gateway's metrics. Nil means they are kept but
	// not registered.
	Metrics prometheus.Registerer
}

// reservedPrefix is where the gateway mounts its own endpoints
// (DESIGN.md: /oauth2/start, /oauth2/callback, ...).
const reservedPrefix = "/oauth2"

// Validate reports every problem of c's routes and limits at once, each
// prefixed by its YAML path (e.g. "routes[1].upstream: not an absolute
// URL"). It does no I/O and does not look at Verifier, Transport, Logger or
// Metrics.
func (c Config) Validate() error {
	var errs []error
	if c.MaxAuthorizationBytes < 0 {
		errs = append(errs, errors.New("max_authorization_bytes: must not be negative"))
	}
	seen := make(map[string]int, len(c.Routes))
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		errs = append(errs, r.validate(p)...)
		key := routeKey(r)
		if j, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%s: same host and path_prefix as routes[%d]", p, j))
			continue
		}
		seen[key] = i
	}
	return errors.Join(errs...)
}

func (r Route) validate(p string) []error {
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
	if msg := checkUpstream(r.Upstream); msg != "" {
		add("upstream", "%s", msg)
	}
	switch r.Auth {
	case "", AuthBearer, AuthNone:
	case AuthBrowser, AuthEither:
		add("auth", "%s not supported yet", r.Auth)
	default:
		add("auth", "unknown mode %q (want bearer or none)", r.Auth)
	}
	if r.Auth == AuthNone && len(r.RequiredScopes) > 0 {
		add("required_scopes", "needs auth bearer")
	}
	for j, s := range r.RequiredScopes {
		if !validScope(s) {
			add(fmt.Sprintf("required_scopes[%d]", j), "not a valid scope token (RFC 6749 §3.3)")
		}
	}
	if len(r.AppSessionCookies) > 0 {
		add("app_session_cookies", "not supported yet")
	}
	if r.AppLogoutURL != "" {
		add("app_logout_url", "not supported yet")
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
// matched.
func routeKey(r Route) string {
	return normalHost(r.Host) + " " + normalPrefix(r.PathPrefix)
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
	if matchPrefix(p, reservedPrefix) {
		return reservedPrefix + " is reserved for the gateway"
	}
	return ""
}

func checkUpstream(s string) string {
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
	if u.Fragment != "" || u.RawQuery != "" || u.ForceQuery {
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
