package gateway

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
	"github.com/oidcgate/oidcgate/introspect"
)

// Gateway is the public handler: it routes, authenticates and proxies.
// It is safe for concurrent use; it holds no per-request state between
// requests.
type Gateway struct {
	router   *mux.Router
	verifier TokenVerifier
	maxAuth  int
	log      *slog.Logger
	noRoute  *routeMetrics
	now      func() time.Time
	clk      clock.Clock
	routes   []*route // most specific first
	// unverifiedEmail: issuers whose email is forwarded without
	// email_verified (Config.InsecureEmailWithoutEmailVerified).
	unverifiedEmail []string
	// normalPrefixes: every route's prefix is its own normalised form, so
	// a path that normalizePath leaves alone matches alike both ways.
	normalPrefixes bool

	// keys verifies API keys on api_keys routes; keyHeader is the
	// canonical name of the field that may carry one.
	keys      KeyVerifier
	keyHeader string

	// Forward auth: trusted is nil when every source may ask;
	// redirectHosts are forward_auth.allowed_redirect_hosts, normalHost'd.
	trusted       []netip.Prefix
	redirectHosts map[string]bool
	public        *url.URL // public_url; nil when not set

	// Browser sessions; cookies is nil when no route uses them.
	cookies   *sessionCookies
	loginSeal *sealer
	appSeal   *sealer
	idTokens  IDTokenVerifier
	sessions  SessionStore
	liveSIDs  LiveSIDs
	emails    EmailDirectory
	// userIDs, userIDClaims and userIDRetention: Config's (learnUserID).
	userIDs         UserIDs
	userIDClaims    map[string]string
	userIDRetention time.Duration
	login           Login
	redirectURI     string
	// publicOrigin is public_url's origin as a browser sends it in Origin
	// (RFC 6454 §6.1: default port omitted).
	publicOrigin string
	postLogout   []string // [0] is the default
	maxAge       time.Duration
	skew         time.Duration
	client       *http.Client
	appLogout    *appLogout // nil when no route has an app_logout_url
	tunnels      *tunnels   // nil when no route has websocket: true
}

// route is one configured route, resolved at New: nothing here is built
// per request.
type route struct {
	g      *Gateway
	label  string
	host   string // normalHost; "" = any
	prefix string // normalPrefix
	// normPrefix is prefix as normalizePath turns it (case-folded).
	normPrefix string
	auth       AuthMode
	scopes     []string
	scopeHdr   string // WWW-Authenticate for insufficient_scope
	headers    []identityHeader
	strip      []string // folded names of every route's identity headers
	// forwardedHost is the X-Forwarded-Host sent upstream: public_url's
	// host (with port), or the route's host when it is another; "" sends
	// none.
	forwardedHost string
	// emailHeader: a header carries the email claim.
	emailHeader bool
	proxy       *httputil.ReverseProxy // nil on a forward-auth-only route
	metrics     *routeMetrics
	// appNames are the sealed app cookies; logoutURL the app's logout.
	appNames  []string
	logoutURL string
	// verifyURL is the honour check's URL ("" checks nothing); expect the
	// statuses that show the app's session ended.
	verifyURL   string
	expect      []int
	notHonoured prometheus.Counter
	// websocket: WebSocket handshakes are proxied (after authentication).
	websocket bool
	// idParams are the app cookies as lower-case path parameters
	// (";jsessionid=", "%3bjsessionid="), refused in request paths.
	idParams []string
	apiKeys  bool
}

type identityHeader struct {
	name  string // canonical header key
	claim string
}

// proxyState travels in the request context from the route handler to the
// ReverseProxy hooks (Rewrite and ErrorHandler), which see only the
// request.
type proxyState struct {
	claims  *introspect.Claims
	session *session // nil on bearer and none requests
	// bearer: the Authorization header was verified (bearer auth); else
	// it is removed before the request goes upstream.
	bearer bool
	// upgrade: an allowed WebSocket handshake; any other request goes
	// upstream without Upgrade.
	upgrade bool
	cookies cookieResult
	failed  bool
	keySrc  keySource // where the request's API key was, if it had one
}

type stateKey struct{}

var _ http.Handler = (*Gateway)(nil)

// New validates cfg, applies defaults and builds the router and one
// ReverseProxy per route. It requires cfg.Verifier when a route uses bearer
// or either auth, and cfg.IDTokens and cfg.Sessions when a route uses
// browser or either auth. It does no network I/O and starts no goroutine
// (Run does). Its only side effect: when a route has an app_logout_url, it
// subscribes to cfg.Sessions, which Close ends.
func New(cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	needsVerifier := slices.ContainsFunc(cfg.Routes, func(r Route) bool {
		return r.Auth == "" || r.Auth == AuthBearer || r.Auth == AuthEither
	})
	if needsVerifier && cfg.Verifier == nil {
		return nil, errors.New("gateway: verifier: required when a route uses bearer auth")
	}
	if slices.ContainsFunc(cfg.Routes, func(r Route) bool { return r.WebSocket }) && cfg.Sessions == nil {
		return nil, errors.New("gateway: sessions: required when a route has websocket (revocations end tunnels)")
	}
	browser := cfg.browserRoutes()
	if browser && (cfg.IDTokens == nil || cfg.Sessions == nil) {
		return nil, errors.New("gateway: id tokens and sessions: required when a route uses browser auth")
	}
	if slices.ContainsFunc(cfg.Routes, func(r Route) bool { return r.APIKeys }) && cfg.APIKeys == nil {
		return nil, errors.New("gateway: api keys: required when a route has api_keys")
	}
	g := &Gateway{
		router:    mux.NewRouter(),
		keys:      cfg.APIKeys,
		keyHeader: http.CanonicalHeaderKey(cmp.Or(cfg.APIKeyHeader, DefaultAPIKeyHeader)),
		verifier:  cfg.Verifier,
		maxAuth:   cmp.Or(cfg.MaxAuthorizationBytes, DefaultMaxAuthorizationBytes),
		log:       cfg.Logger,
		clk:       clock.Or(cfg.Clock),

		unverifiedEmail: slices.Clone(cfg.InsecureEmailWithoutEmailVerified),
	}
	g.now = g.clk.Now
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if cfg.PublicURL != "" {
		g.public, _ = url.Parse(cfg.PublicURL) // checked by Validate
	}
	for _, p := range cfg.ForwardAuth.TrustedProxies {
		pfx, _ := parseSourceRange(p) // checked by Validate
		g.trusted = append(g.trusted, pfx)
	}
	if len(cfg.UserIDClaims) > 0 {
		g.userIDs, g.userIDClaims = cfg.UserIDs, cfg.UserIDClaims
		g.userIDRetention = cmp.Or(cfg.UserIDRetention, DefaultUserIDRetention)
	}
	g.redirectHosts = make(map[string]bool, len(cfg.ForwardAuth.AllowedRedirectHosts))
	for _, h := range cfg.ForwardAuth.AllowedRedirectHosts {
		g.redirectHosts[normalHost(h)] = true
	}
	m, err := newMetrics(cfg.Metrics, g.clk)
	if err != nil {
		return nil, err
	}
	if browser {
		if err := g.setupSessions(cfg); err != nil {
			return nil, err
		}
	}
	transport := cfg.Transport
	if transport == nil {
		transport = newTransport()
	}

	buffers := &bufferPool{}
	var strip []string
	for _, r := range cfg.Routes {
		for name := range r.Headers {
			if f := foldHeaderName(name); !slices.Contains(strip, f) {
				strip = append(strip, f)
			}
		}
	}
	slices.Sort(strip)

	routes := make([]*route, len(cfg.Routes))
	for i, r := range cfg.Routes {
		routes[i] = g.newRoute(r, cfg.PublicURL, strip, transport, buffers, m)
	}
	// Most specific first: host routes before host-less ones, then longer
	// prefixes; SortStableFunc keeps config order for ties.
	slices.SortStableFunc(routes, func(a, b *route) int {
		if (a.host == "") != (b.host == "") {
			if a.host != "" {
				return -1
			}
			return 1
		}
		return len(b.prefix) - len(a.prefix)
	})
	g.routes = routes
	g.normalPrefixes = !slices.ContainsFunc(routes, func(rt *route) bool { return rt.prefix != rt.normPrefix })

	g.noRoute = m.route("none")
	notFound := http.HandlerFunc(g.notFound)
	g.router.NotFoundHandler = notFound
	if browser {
		g.router.Path(pathStart).HandlerFunc(g.start)
		g.router.Path(pathCallback).HandlerFunc(g.callback)
		g.router.Path(pathSignOut).HandlerFunc(g.signOut)
	}
	g.router.Path(pathAuth).HandlerFunc(g.serveAuth)
	g.router.PathPrefix(pathAuth + "/").HandlerFunc(g.serveAuth)
	g.router.Path(pathAuthRedirect).HandlerFunc(g.serveAuthRedirect)
	g.router.MatcherFunc(func(r *http.Request, _ *mux.RouteMatch) bool {
		return matchPrefix(r.URL.Path, reservedPrefix) || ambiguousPath(r.URL.Path)
	}).Handler(notFound)
	g.router.MatcherFunc(func(*http.Request, *mux.RouteMatch) bool { return true }).HandlerFunc(g.dispatch)
	if slices.ContainsFunc(routes, func(rt *route) bool { return rt.websocket }) {
		g.tunnels = newTunnels(cfg.Sessions)
	}
	if slices.ContainsFunc(routes, func(rt *route) bool { return rt.logoutURL != "" }) {
		g.appLogout = newAppLogout(cfg.AppLogout, g.client, g.log, g.clk, g.skew, m)
		g.appLogout.observer = cfg.AppLogoutObserver
		g.appLogout.subscribe(cfg.Sessions)
	}
	return g, nil
}

// setupSessions derives the cookie keys and resolves the session settings.
func (g *Gateway) setupSessions(cfg Config) error {
	secrets := append([]introspect.Secret{cfg.Session.Secret}, cfg.Session.PreviousSecrets...)
	var err error
	secure := strings.HasPrefix(cfg.PublicURL, "https:")
	g.cookies = &sessionCookies{
		name:   cmp.Or(cfg.Session.CookieName, defaultCookieName(secure)),
		secure: secure,
	}
	if g.cookies.seal, err = newSealer(purposeSession, secrets); err != nil {
		return err
	}
	if g.loginSeal, err = newSealer(purposeLogin, secrets); err != nil {
		return err
	}
	if g.appSeal, err = newSealer(purposeApp, secrets); err != nil {
		return err
	}
	g.idTokens, g.sessions, g.liveSIDs, g.emails = cfg.IDTokens, cfg.Sessions, cfg.LiveSIDs, cfg.Emails
	g.login = cfg.Login
	g.login.Issuer = cmp.Or(g.login.Issuer, cfg.Session.Issuer)
	if g.login.Scopes == nil {
		g.login.Scopes = []string{"openid", "profile", "email"}
	}
	if !slices.Contains(g.login.Scopes, "openid") {
		// OIDC Core 3.1.2.1: "openid" MUST be present.
		g.login.Scopes = append([]string{"openid"}, g.login.Scopes...)
	}
	base := strings.TrimSuffix(cfg.PublicURL, "/")
	g.redirectURI = base + pathCallback
	g.publicOrigin = publicOrigin(cfg.PublicURL)
	g.postLogout = cfg.Session.PostLogoutRedirectURIs
	if len(g.postLogout) == 0 {
		g.postLogout = []string{base + "/"}
	}
	g.maxAge = cmp.Or(cfg.Session.MaxAge, DefaultSessionMaxAge)
	g.skew = cfg.ClockSkew
	g.client = cfg.HTTPClient
	if g.client == nil {
		g.client = &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport:     newTransport(),
		}
	}
	return nil
}

// Run does the Gateway's background work — the app logout calls — until
// ctx is done, then returns nil; Close stops it. New starts nothing: until
// Run, the revocations and calls that app logout learns of wait in its
// bounded queue.
func (g *Gateway) Run(ctx context.Context) error {
	if g.appLogout != nil {
		g.appLogout.run()
	}
	<-ctx.Done()
	return nil
}

// publicOrigin returns the origin of public_url (checked by Validate).
func publicOrigin(publicURL string) string {
	u, _ := url.Parse(publicURL)
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(u.Scheme == "https" && p == "443" || u.Scheme == "http" && p == "80") {
		host += ":" + p
	}
	return u.Scheme + "://" + host
}

// Close stops the app logout workers: queued calls get up to
// AppLogoutConfig.DrainTimeout, then running ones are canceled. It is
// idempotent and safe on a Gateway without app logout.
func (g *Gateway) Close() {
	if g.appLogout != nil {
		g.appLogout.close()
	}
	if g.tunnels != nil {
		g.tunnels.close()
	}
}

func (g *Gateway) newRoute(r Route, publicURL string, strip []string, transport http.RoundTripper, buffers httputil.BufferPool, m *metrics) *route {
	upstream, _ := url.Parse(r.Upstream) // checked by Validate
	rt := &route{
		g:      g,
		host:   normalHost(r.Host),
		prefix: normalPrefix(r.PathPrefix),
		auth:   cmp.Or(r.Auth, AuthBearer),
		scopes: slices.Clone(r.RequiredScopes),
		strip:  strip,

		appNames:  slices.Clone(r.AppSessionCookies),
		idParams:  sessionIDParams(r.AppSessionCookies),
		logoutURL: r.AppLogoutURL,
		websocket: r.WebSocket,
	}
	rt.normPrefix, _ = normalizePath(rt.prefix) // checked by Validate
	rt.label = rt.host + rt.prefix
	rt.apiKeys = r.APIKeys
	rt.metrics = m.route(rt.label)
	if r.AppVerify != nil && r.Upstream != "" {
		v := *upstream
		v.Path = strings.TrimSuffix(upstream.Path, "/") + r.AppVerify.Path
		v.RawPath, v.RawQuery, v.Fragment = "", "", ""
		rt.verifyURL = v.String()
		rt.expect = slices.Clone(r.AppVerify.Expect)
		if len(rt.expect) == 0 {
			rt.expect = defaultExpect
		}
		rt.notHonoured = m.notHonoured.WithLabelValues(rt.label)
	}
	rt.scopeHdr = challengeInsufficientScope + `, scope="` + strings.Join(rt.scopes, " ") + `"`
	for name, claim := range r.Headers {
		rt.headers = append(rt.headers, identityHeader{name: http.CanonicalHeaderKey(name), claim: claim})
		rt.emailHeader = rt.emailHeader || claim == claimEmail
	}
	rt.forwardedHost = forwardedHost(publicURL, rt.host)
	slices.SortFunc(rt.headers, func(a, b identityHeader) int { return strings.Compare(a.name, b.name) })
	if r.Upstream == "" {
		// Forward-auth only: the ingress proxies, the gateway decides.
		return rt
	}
	rt.proxy = &httputil.ReverseProxy{
		// Rewrite, never Director: with Director, hop-by-hop and
		// X-Forwarded-* handling runs after the hook and can undo it
		// (golang/go#50580, #53002). Headers set in Rewrite survive, so a
		// client's "Connection: X-User" cannot strip the gateway's X-User.
		Rewrite: func(pr *httputil.ProxyRequest) {
			// SetURL also empties Out.Host: the upstream sees its own host
			// in Host and the client's in X-Forwarded-Host.
			pr.SetURL(upstream)
			pr.SetXForwarded()
			rt.setUpgrade(pr)
			// Pinned, never the client's Host (issue 20 item 10).
			if rt.forwardedHost == "" {
				pr.Out.Header.Del("X-Forwarded-Host")
			} else {
				pr.Out.Header.Set("X-Forwarded-Host", rt.forwardedHost)
			}
			rt.setCookies(pr)
			rt.setIdentity(pr)
			rt.stripKey(pr)
		},
		Transport:  transport,
		BufferPool: buffers,
		ModifyResponse: func(res *http.Response) error {
			if g.cookies == nil {
				return nil
			}
			return rt.sealSetCookies(res)
		},
		ErrorHandler: rt.upstreamError,
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	return rt
}

// newTransport returns the default upstream transport, tuned for a proxy.
// ResponseHeaderTimeout stays 0 so that long polling works; a hung upstream
// is bounded by the server's timeouts and the client going away.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		// HTTP/1.1 upstreams: protocol upgrades (WebSocket) need it.
		ForceAttemptHTTP2: false,
		// A proxy passes Accept-Encoding and bodies through as they are.
		DisableCompression: true,
	}
}

// ServeHTTP routes r: to its route's handler, 404 when no route matches
// or the path is reserved, 400 when the path is ambiguous (routeFor). A
// path that is not clean is answered with a redirect to the clean path
// (mux's default), never proxied.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h2cUpgrade(r) {
		// RFC 9113 §3.1: the h2c upgrade is deprecated; the HTTP/2
		// requests after it would bypass routing. Refused on every path.
		start := g.now()
		plainError(w, http.StatusBadRequest, "h2c upgrade is not supported (RFC 9113 §3.1)")
		g.noRoute.done(decInvalidRequest, start)
		return
	}
	g.router.ServeHTTP(w, r)
}

func (g *Gateway) notFound(w http.ResponseWriter, r *http.Request) {
	start := g.now()
	http.Error(w, "404 page not found", http.StatusNotFound)
	g.noRoute.done(decNoRoute, start)
	g.logDenied(r.Context(), "none", decNoRoute, "")
}

// verdict is a route's judgement of one request's credentials. The proxy
// and the forward-auth endpoints act on the same verdict, made by judge.
type verdict struct {
	d decision
	// mode is how the request was judged: AuthBearer, AuthBrowser (an
	// either route decides by the Authorization header) or AuthNone.
	mode   AuthMode
	claims *introspect.Claims // the verified identity when d is decAllowed
	token  string             // the bearer token parsed, for the log's hash only
	keySrc keySource          // where an API key was found, if one was
	// The session cookie, on AuthBrowser: present when one was sent,
	// opened when it opened (then sess is it), live when it is also
	// unexpired and not revoked.
	sess                  session
	present, opened, live bool
}

// judge authenticates the credentials in h (the Authorization and Cookie
// fields) as rt's auth mode requires: a bearer token verified and its
// scopes checked, or the session cookie opened and checked against the
// revocation store. Its only side effect is learning the user id at the
// session authority from a verified token (learnUserID); what to answer
// is the caller's.
func (rt *route) judge(ctx context.Context, h http.Header) verdict {
	v := verdict{mode: rt.auth}
	if rt.apiKeys && rt.judgeKey(h, &v) {
		return v
	}
	if v.mode == AuthEither {
		// An Authorization header means an API client: judged as bearer.
		v.mode = AuthBrowser
		if len(h["Authorization"]) > 0 {
			v.mode = AuthBearer
		}
	}
	switch v.mode {
	case AuthBearer:
		v.claims, v.d, v.token = rt.g.authenticate(ctx, h, rt.scopes)
	case AuthBrowser:
		g := rt.g
		var raw string
		raw, v.present = g.cookies.read(h)
		if v.present {
			v.sess, v.opened = g.cookies.open(raw, false)
			if v.opened && v.sess.ExpiresAt.After(g.now()) {
				cred := v.sess.credential()
				v.live = !g.sessions.IsRevoked(&cred)
			}
		}
		v.d = decNoSession
		if v.live {
			v.d = decAllowed
			v.claims = v.sess.claims()
		}
	default:
		v.d = decAllowed
	}
	return v
}

// ServeHTTP authenticates r as the route requires and proxies it.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := rt.g.now()
	st := &proxyState{}
	if rt.sessionIDInPath(r) {
		// A sealed app cookie is worthless if the app also takes its
		// session id from the URL (";jsessionid=..."): refused, never
		// passed on.
		plainError(w, http.StatusBadRequest, "session ids in the URL are not accepted")
		rt.metrics.done(decInvalidRequest, start)
		return
	}
	if rt.proxy == nil {
		// A forward-auth-only route (no upstream): the ingress serves it.
		rt.g.notFound(w, r)
		return
	}
	if len(r.Header["Upgrade"]) > 0 {
		if !rt.websocket || !webSocketHandshake(r) {
			plainError(w, http.StatusBadRequest, "protocol upgrade not allowed on this route")
			rt.metrics.done(decInvalidRequest, start)
			return
		}
		st.upgrade = true
	}
	v := rt.judge(r.Context(), r.Header)
	switch v.mode {
	case AuthBearer:
		if v.d != decAllowed {
			rt.deny(w, v.d)
			rt.metrics.done(v.d, start)
			rt.g.logDenied(r.Context(), rt.label, v.d, v.token)
			return
		}
		st.claims, st.keySrc = v.claims, v.keySrc
		// An API key is stripped by stripKey; only a verified bearer token
		// keeps its Authorization header.
		st.bearer = v.keySrc == keyNone
		st.cookies = rt.inspectCookies(r.Header, "", false)
	case AuthBrowser:
		s, d := rt.g.authenticateSession(w, r, rt, st, &v)
		if d != decAllowed {
			rt.metrics.done(d, start)
			rt.g.logDenied(r.Context(), rt.label, d, "")
			return
		}
		st.session = s
		st.claims = v.claims
	default:
		st.cookies = rt.inspectCookies(r.Header, "", false)
	}
	if st.upgrade && st.session != nil && !strings.EqualFold(r.Header.Get("Origin"), rt.g.publicOrigin) {
		// Cross-site WebSocket hijacking: the session cookie rides on a
		// handshake any page may start; browsers always send Origin.
		plainError(w, http.StatusForbidden, "WebSocket handshake from another origin")
		rt.metrics.done(decInvalidRequest, start)
		rt.g.logDenied(r.Context(), rt.label, decInvalidRequest, "")
		return
	}
	// Deferred: ReverseProxy panics with http.ErrAbortHandler when the
	// response copy fails, and such a request still counts.
	defer func() {
		d := decAllowed
		if st.failed {
			d = decUpstreamError
		}
		rt.metrics.done(d, start)
	}()
	if len(rt.appNames) > 0 {
		w = interimFilter{w}
	}
	ctx := r.Context()
	if st.upgrade && st.claims != nil {
		var done func()
		ctx, done = rt.g.tunnels.start(ctx, rt.credential(st), st.claims.ExpiresAt, rt.g.now())
		defer done()
	}
	rt.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, stateKey{}, st)))
}

// interimFilter drops Set-Cookie from 1xx responses (103 Early Hints),
// which ReverseProxy forwards without ModifyResponse: an app cookie there
// would reach the browser unsealed. Unwrap keeps flushing and hijacking
// (WebSocket) working through http.ResponseController.
type interimFilter struct{ http.ResponseWriter }

func (f interimFilter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		f.Header().Del("Set-Cookie")
	}
	f.ResponseWriter.WriteHeader(code)
}

func (f interimFilter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// authenticateSession acts on v, the judged session of r, for the proxy:
// it rewrites r's cookies for rt and, without a live session, answers r
// itself: a redirect to the IdP for a navigation, else 401; a revoked
// session's app cookies trigger its app logout (the lazy path).
func (g *Gateway) authenticateSession(w http.ResponseWriter, r *http.Request, rt *route, st *proxyState, v *verdict) (*session, decision) {
	s, opened, live, present := v.sess, v.opened, v.live, v.present
	id := ""
	if opened {
		id = s.ID
	}
	st.cookies = rt.inspectCookies(r.Header, id, live)
	if live {
		if g.appLogout != nil && rt.logoutURL != "" && len(st.cookies.real) > 0 {
			g.appLogout.observe(&s, rt, st.cookies.real)
		}
		return &s, decAllowed
	}
	if opened && g.appLogout != nil && s.ExpiresAt.After(g.now()) {
		// Opened and unexpired but not live: revoked.
		g.appLogout.once(&s, rt, st.cookies.real)
	}
	for _, name := range st.cookies.expire {
		rt.addExpiry(w.Header(), name)
	}
	if present {
		g.cookies.clear(w, r)
	}
	if isNavigation(r) {
		g.redirectToLogin(w, r, safeReturnPath(r.URL.RequestURI()))
		return nil, decLoginRedirect
	}
	h := w.Header()
	if rt.auth == AuthEither {
		// RFC 6750 §3.1: no error code for a request without credentials.
		h.Set("WWW-Authenticate", challengeNoToken)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, bodyNoSession)
	return nil, decNoSession
}

// setUpgrade keeps the Upgrade that ReverseProxy restored only for an
// allowed WebSocket handshake; for any other request a 101 from the
// upstream then fails as a protocol switch nobody asked for.
func (rt *route) setUpgrade(pr *httputil.ProxyRequest) {
	if st, _ := pr.In.Context().Value(stateKey{}).(*proxyState); st != nil && st.upgrade {
		return
	}
	h := pr.Out.Header
	h.Del("Upgrade")
	h.Del("Http2-Settings")
	if len(h["Connection"]) > 0 {
		h.Del("Connection")
	}
}

// credential is what a tunnel opened by st is revoked by.
func (rt *route) credential(st *proxyState) cache.Credential {
	if st.session != nil {
		return st.session.credential()
	}
	return st.claims.Credential()
}

// setCookies puts the Cookie field inspectCookies made.
func (rt *route) setCookies(pr *httputil.ProxyRequest) {
	st, _ := pr.In.Context().Value(stateKey{}).(*proxyState)
	if st == nil || !st.cookies.changed {
		return
	}
	if st.cookies.header == "" {
		pr.Out.Header.Del("Cookie")
		return
	}
	pr.Out.Header["Cookie"] = []string{st.cookies.header}
}

// setIdentity removes every client-sent identity header, and the
// Authorization header unless the route verified it, then sets this
// route's identity headers from the verified claims.
func (rt *route) setIdentity(pr *httputil.ProxyRequest) {
	st, _ := pr.In.Context().Value(stateKey{}).(*proxyState)
	h := pr.Out.Header
	if st == nil || !st.bearer {
		// A browser or none route did not check it: an app trusting "the
		// gateway verified this" must never see a forged one.
		h.Del("Authorization")
		pr.Out.Trailer.Del("Authorization")
	}
	if len(rt.strip) == 0 {
		return
	}
	stripFolded(h, rt.strip)
	// Declared request trailers too: some upstreams merge trailers into
	// the header (RFC 9110 §6.5.1 forbids it, not everyone listens).
	stripFolded(pr.Out.Trailer, rt.strip)
	if st == nil || st.claims == nil {
		return
	}
	rt.putIdentity(h, st.claims, st.session != nil)
}

// putIdentity sets rt's identity headers in h from claims. A header of
// the email claim is set only when emailVerified says so; fromSession
// claims passed that check at login (a session keeps only a verified
// email).
func (rt *route) putIdentity(h http.Header, claims *introspect.Claims, fromSession bool) {
	emailOK := !rt.emailHeader || fromSession || rt.g.emailVerified(claims)
	for _, ih := range rt.headers {
		if ih.claim == claimEmail && !emailOK {
			continue
		}
		// A value the transport would refuse (CR, LF, NUL) is treated as a
		// missing claim rather than failing the request.
		if v, ok := claims.Claim(ih.claim); ok && validHeaderValue(v) {
			h[ih.name] = []string{v}
		}
	}
}

// claimEmail is the email claim (OIDC Core §5.1).
const claimEmail = "email"

// emailVerified reports whether c's email may be used as an identity:
// email_verified is true (OIDC Core §5.7: an RP SHOULD NOT rely on an
// unverified address), or absent for an issuer listed in
// Config.InsecureEmailWithoutEmailVerified.
func (g *Gateway) emailVerified(c *introspect.Claims) bool {
	v, present := c.Extra["email_verified"]
	if !present {
		return slices.Contains(g.unverifiedEmail, c.Issuer)
	}
	b, ok := v.(bool)
	return ok && b
}

// forwardedHost returns the X-Forwarded-Host of a route with host (""
// for any): public_url's host, or the route's own host when it is another
// (a route's host is the only one its requests can carry); "" without
// either.
func forwardedHost(publicURL, host string) string {
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" {
		return host
	}
	if host == "" || normalHost(u.Hostname()) == host {
		return u.Host
	}
	return host
}

// stripFolded deletes from h every key that folds to a name in strip.
func stripFolded(h http.Header, strip []string) {
	for k := range h {
		for _, f := range strip {
			if foldedEqual(k, f) {
				delete(h, k)
				break
			}
		}
	}
}

func (rt *route) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if st, _ := r.Context().Value(stateKey{}).(*proxyState); st != nil {
		st.failed = true
	}
	level := slog.LevelWarn
	if r.Context().Err() != nil {
		level = slog.LevelDebug // the client went away
	}
	// Only the transport's own error: a *url.Error would carry the URL and
	// with it a query string that may hold secrets.
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	rt.g.log.LogAttrs(r.Context(), level, "upstream request failed",
		slog.String("route", rt.label), slog.String("error", err.Error()))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = io.WriteString(w, "bad gateway\n")
}

// bufferPool lends ReverseProxy its body copy buffers instead of letting
// it allocate 32 KiB per request.
type bufferPool struct{ p sync.Pool }

var _ httputil.BufferPool = (*bufferPool)(nil)

func (b *bufferPool) Get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// requestHost returns the request's host without port or trailing dot.
func requestHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[:i+1]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

// matchPrefix reports whether path p is prefix or below it, segment-aware:
// the prefix must end at a '/', at a ';' (path parameters, which servers
// such as Tomcat strip before routing) or at the end of p.
func matchPrefix(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	if len(p) == len(prefix) {
		return true
	}
	c := p[len(prefix)]
	return c == '/' || c == ';'
}

// ambiguousPath reports whether p, already cleaned by mux, could still be
// read differently by an upstream: a backslash (a separator on Windows
// servers), a NUL, or a dot segment hidden behind path parameters ("..;"),
// which Tomcat and Jetty resolve as "..".
func ambiguousPath(p string) bool {
	if strings.ContainsAny(p, "\\\x00") {
		return true
	}
	for seg := range strings.SplitSeq(p, "/") {
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			if s := seg[:i]; s == "." || s == ".." {
				return true
			}
		}
	}
	return false
}

// foldedEqual reports whether header key k equals the folded name f,
// ignoring case and treating '_' as '-'. It does not allocate.
func foldedEqual(k, f string) bool {
	if len(k) != len(f) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		if c != f[i] {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v may be sent as a field value
// (RFC 9110 §5.5: no CR, LF, NUL or other controls but HTAB).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// sessionIDInPath reports whether r's path carries one of the route's app
// session cookies as a path parameter (";JSESSIONID=..." in any case,
// percent-encoded or not), as servlet containers accept.
func (rt *route) sessionIDInPath(r *http.Request) bool {
	if len(rt.idParams) == 0 {
		return false
	}
	for _, p := range []string{r.URL.EscapedPath(), r.URL.Path} {
		p = strings.ToLower(p)
		for _, param := range rt.idParams {
			if strings.Contains(p, param) {
				return true
			}
		}
	}
	return false
}

// sessionIDParams lists, for each app cookie name, the lower-case forms a
// path parameter of that name takes in a raw or decoded path.
func sessionIDParams(names []string) []string {
	var out []string
	for _, n := range names {
		n = strings.ToLower(n) + "="
		out = append(out, ";"+n, "%3b"+n)
	}
	return out
}
