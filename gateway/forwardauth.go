package gateway

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strings"
)

// The forward-auth endpoints on the public listener.
const (
	// pathAuth answers whether the request an ingress describes may pass:
	// 200 with the route's identity headers, 401, 403 — never a redirect
	// (nginx's auth_request turns anything else into a 500).
	// pathAuth + "/" + the original path is the same decision for Envoy's
	// HTTP ext_authz with path_prefix: the original method, host and path
	// are the request's own.
	pathAuth = "/oauth2/auth"
	// pathAuthRedirect is pathAuth for ingresses that copy the answer to
	// the browser (Traefik, Caddy): a browser navigation without a session
	// is sent to /oauth2/start instead of getting 401.
	pathAuthRedirect = "/oauth2/auth_redirect"
	// maxForwardedURI bounds X-Forwarded-Uri and X-Original-URL.
	maxForwardedURI = 8 << 10
)

// forwardError is a refused description of the original request: the
// status and the reason, which the answer states in plain text.
type forwardError struct {
	status int
	reason string
	d      decision
}

// Refusals of the forward-auth endpoints. None says anything about the
// credentials; each names what the ingress must fix.
var (
	errUntrusted = &forwardError{http.StatusForbidden,
		"forward-auth requests are accepted only from forward_auth.trusted_proxies", decUntrusted}
	errNoRoute = &forwardError{http.StatusForbidden,
		"no route serves this host and path", decNoRoute}
	errNeedsProxy = &forwardError{http.StatusForbidden,
		"this route seals app cookies: it must be served through the gateway, not forward-auth", decNeedsProxy}
)

func badForward(reason string) *forwardError {
	return &forwardError{http.StatusBadRequest, reason, decBadForward}
}

// original is the request an ingress asks about.
type original struct {
	method string
	scheme string // "http", "https", or "" when the ingress did not say
	host   string // as sent, possibly with a port
	url    *url.URL
}

// describe reads the original request from the forwarded headers of r,
// an ingress's question: X-Forwarded-Method, -Proto, -Host and -Uri
// (Traefik, Caddy), X-Original-Method and X-Original-URL (nginx,
// ingress-nginx), or, under pathAuth + "/", r itself (Envoy's
// path_prefix). When more than one description is present, all must
// agree: a request is never judged for another route than the one the
// ingress serves.
func describe(r *http.Request) (original, *forwardError) {
	var o original
	set := func(field *string, v, what string) *forwardError {
		if *field != "" && *field != v {
			return badForward("the forwarded headers disagree on the " + what)
		}
		*field = v
		return nil
	}
	var uri string // the request-target: path and query
	setURI := func(v string) *forwardError {
		if uri != "" && uri != v {
			return badForward("the forwarded headers disagree on the path or query")
		}
		uri = v
		return nil
	}
	if strings.HasPrefix(r.URL.Path, pathAuth+"/") {
		// Envoy: path_prefix + the original path; the query is the
		// original's.
		raw := strings.TrimPrefix(r.URL.EscapedPath(), pathAuth)
		if r.URL.RawQuery != "" || r.URL.ForceQuery {
			raw += "?" + r.URL.RawQuery
		}
		o.method, o.host, uri = r.Method, r.Host, raw
	}
	h := r.Header
	one := func(name string) (string, *forwardError) {
		vs := h[name]
		switch {
		case len(vs) > 1:
			return "", badForward(name + " is repeated")
		case len(vs) == 0:
			return "", nil
		}
		return vs[0], nil
	}

	if v, err := one("X-Original-Url"); err != nil {
		return o, err
	} else if v != "" {
		if len(v) > maxForwardedURI {
			return o, badForward("X-Original-URL is too long")
		}
		u, err := url.Parse(v)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" || hasControl(v) {
			return o, badForward("X-Original-URL is not an absolute http(s) URL")
		}
		if e := set(&o.scheme, u.Scheme, "scheme"); e != nil {
			return o, e
		}
		if e := setHost(&o.host, u.Host); e != nil {
			return o, e
		}
		target := u.EscapedPath()
		if target == "" {
			target = "/"
		}
		if u.RawQuery != "" || u.ForceQuery {
			target += "?" + u.RawQuery
		}
		if e := setURI(target); e != nil {
			return o, e
		}
	}
	if v, err := one("X-Forwarded-Uri"); err != nil {
		return o, err
	} else if v != "" {
		if len(v) > maxForwardedURI {
			return o, badForward("X-Forwarded-Uri is too long")
		}
		if e := setURI(v); e != nil {
			return o, e
		}
	}
	for _, m := range []string{"X-Original-Method", "X-Forwarded-Method"} {
		v, err := one(m)
		if err != nil {
			return o, err
		}
		if v == "" {
			continue
		}
		if !validToken(v) {
			return o, badForward(m + " is not a method")
		}
		if e := set(&o.method, v, "method"); e != nil {
			return o, e
		}
	}
	if v, err := one("X-Forwarded-Proto"); err != nil {
		return o, err
	} else if v != "" {
		v = strings.ToLower(v)
		if v != "http" && v != "https" {
			return o, badForward("X-Forwarded-Proto is not http or https")
		}
		if e := set(&o.scheme, v, "scheme"); e != nil {
			return o, e
		}
	}
	if v, err := one("X-Forwarded-Host"); err != nil {
		return o, err
	} else if v != "" {
		if e := setHost(&o.host, v); e != nil {
			return o, e
		}
	}

	switch {
	case uri == "":
		return o, badForward("the original request is not described: send X-Forwarded-Uri or X-Original-URL")
	case o.method == "":
		return o, badForward("the original method is not described: send X-Forwarded-Method or X-Original-Method")
	case o.host == "":
		return o, badForward("the original host is not described: send X-Forwarded-Host or X-Original-URL")
	}
	u, err := parseOriginPath(uri)
	if err != nil {
		return o, err
	}
	o.url = u
	return o, nil
}

// setHost records host h (a host or host:port) in field; two
// descriptions agree when their host names do (ports are not routed on).
func setHost(field *string, h string) *forwardError {
	if strings.ContainsAny(h, ", /\\@") || hasControl(h) || h == "" {
		return badForward("the forwarded host is not one host name")
	}
	if *field != "" && normalHost(requestHost(*field)) != normalHost(requestHost(h)) {
		return badForward("the forwarded headers disagree on the host")
	}
	if *field == "" {
		*field = h
	}
	return nil
}

// parseOriginPath parses an origin-form request-target (RFC 9112 §3.2.1:
// an absolute path and an optional query).
func parseOriginPath(s string) (*url.URL, *forwardError) {
	if !strings.HasPrefix(s, "/") || hasControl(s) || strings.ContainsAny(s, " #") {
		return nil, badForward("X-Forwarded-Uri is not a path (want /path?query)")
	}
	u, err := url.ParseRequestURI(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return nil, badForward("X-Forwarded-Uri is not a path (want /path?query)")
	}
	return u, nil
}

// hasControl reports whether s has a control character, a space or a
// byte outside ASCII.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return true
		}
	}
	return false
}

// lookup returns the route that serves o, by the very matchers the proxy
// routes with (the same router, so a decision is never made for another
// route than the one a request to the gateway itself would get).
func (g *Gateway) lookup(o original) (*route, *forwardError) {
	p := o.url.Path
	if cleanPath(p) != p {
		// The gateway would redirect it to the clean path, an ingress may
		// serve it as it is: refused rather than judged as either.
		return nil, badForward("the path is not canonical (dot segments or //): the ingress should normalise it")
	}
	if ambiguousPath(p) {
		return nil, badForward("the path is ambiguous (a backslash, NUL or a dot segment with parameters)")
	}
	// The proxy's own rule (routeFor): an ambiguous path is refused here
	// too, so that /ADMIN cannot be judged under a weaker route.
	rt, res := g.routeFor(o.host, p)
	switch res {
	case routeNone:
		return nil, errNoRoute
	case routeAmbiguous:
		return nil, badForward("the path is ambiguous: its normalised form (case, trailing dots or spaces, encodings) selects another route")
	}
	req := &http.Request{Method: o.method, URL: o.url, Host: o.host, Header: http.Header{}}
	if rt.sessionIDInPath(req) {
		return nil, badForward("session ids in the URL are not accepted")
	}
	if len(rt.appNames) > 0 {
		return nil, errNeedsProxy
	}
	return rt, nil
}

// cleanPath is gorilla/mux's path cleaning (path.Clean keeping a trailing
// slash): a path it changes is redirected by the router, never routed.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// trustedSource reports whether addr (a RemoteAddr or a peer's
// host:port) is in forward_auth.trusted_proxies; with none configured,
// every source is.
func (g *Gateway) trustedSource(addr string) bool {
	if g.trusted == nil {
		return true
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range g.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// decideForward is the decision the forward-auth front ends (HTTP and
// ext_authz) share: the route o is served by, and the verdict on the
// credentials in h.
func (g *Gateway) decideForward(ctx context.Context, o original, h http.Header) (*route, verdict, *forwardError) {
	rt, ferr := g.lookup(o)
	if ferr != nil {
		return nil, verdict{}, ferr
	}
	return rt, rt.judge(ctx, h), nil
}

// serveAuth handles pathAuth (and pathAuth + "/..."): never a redirect.
func (g *Gateway) serveAuth(w http.ResponseWriter, r *http.Request) {
	g.forwardAuth(w, r, false)
}

// serveAuthRedirect handles pathAuthRedirect.
func (g *Gateway) serveAuthRedirect(w http.ResponseWriter, r *http.Request) {
	g.forwardAuth(w, r, true)
}

func (g *Gateway) forwardAuth(w http.ResponseWriter, r *http.Request, redirect bool) {
	w.Header().Set("Cache-Control", "no-store")
	if !g.trustedSource(r.RemoteAddr) {
		g.refuseForward(w, r, errUntrusted)
		return
	}
	o, ferr := describe(r)
	if ferr != nil {
		g.refuseForward(w, r, ferr)
		return
	}
	rt, v, ferr := g.decideForward(r.Context(), o, r.Header)
	if ferr != nil {
		g.refuseForward(w, r, ferr)
		return
	}
	if v.d == decAllowed {
		// Every identity header of the route, empty for a missing claim:
		// an ingress that copies the answer's headers onto the request
		// then replaces a client-sent copy rather than keeping it (Caddy
		// before 2.10 keeps it when the answer lacks the header, and
		// before 2.7 even sets its unresolved placeholder).
		// An unverified email is answered empty too.
		h := w.Header()
		for _, ih := range rt.headers {
			h[ih.name] = []string{""}
		}
		if v.claims != nil {
			rt.putIdentity(h, v.claims, v.mode == AuthBrowser)
		}
		w.WriteHeader(http.StatusOK)
		rt.metrics.forward(decAllowed)
		return
	}
	defer rt.metrics.forward(v.d)
	g.logDenied(r.Context(), rt.label, v.d, v.token)
	if v.mode != AuthBrowser {
		rt.denyForward(w, v.d)
		return
	}
	if redirect && isNavigation(&http.Request{Method: o.method, Header: r.Header}) {
		if target, ok := g.startURL(o); ok {
			http.Redirect(w, r, target, http.StatusFound)
			return
		}
	}
	rt.noSession(w)
}

// noSession writes the 401 of a browser or either route without a live
// session.
func (rt *route) noSession(w http.ResponseWriter) {
	h := w.Header()
	if rt.auth == AuthEither {
		// RFC 6750 §3.1: no error code for a request without credentials.
		h.Set("WWW-Authenticate", challengeNoToken)
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, bodyNoSession)
}

// denyForward is deny for an ingress: a malformed Authorization header is
// 401 with the invalid_request challenge rather than RFC 6750's 400, which
// nginx's auth_request would turn into a 500.
func (rt *route) denyForward(w http.ResponseWriter, d decision) {
	if d != decInvalidRequest {
		rt.deny(w, d)
		return
	}
	h := w.Header()
	h.Set("WWW-Authenticate", challengeInvalidRequest)
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, bodyInvalidRequest)
}

func (g *Gateway) refuseForward(w http.ResponseWriter, r *http.Request, ferr *forwardError) {
	g.noRoute.forward(ferr.d)
	g.logDenied(r.Context(), "none", ferr.d, "")
	plainError(w, ferr.status, ferr.reason)
}

// startURL is where the redirecting variant sends a browser without a
// session: public_url's /oauth2/start, with rd the original request — a
// path when it is on public_url's origin, else the absolute URL when
// /oauth2/start accepts it. ok is false when it would not.
func (g *Gateway) startURL(o original) (string, bool) {
	if g.cookies == nil {
		return "", false
	}
	rd := o.url.RequestURI()
	scheme := o.scheme
	if scheme == "" {
		scheme = g.public.Scheme
	}
	if scheme != g.public.Scheme || !sameHostPort(scheme, o.host, g.public.Host) {
		rd = scheme + "://" + o.host + rd
		if g.returnTarget(rd) != rd {
			return "", false
		}
	}
	return g.public.Scheme + "://" + g.public.Host + pathStart + "?rd=" + url.QueryEscape(rd), true
}

// sameHostPort compares two hosts with optional ports, a missing port
// being the scheme's default.
func sameHostPort(scheme, a, b string) bool {
	norm := func(h string) string {
		host, port := requestHost(h), ""
		if len(h) > len(host) && h[len(host)] == ':' {
			port = h[len(host)+1:]
		}
		if port == "" {
			port = "80"
			if scheme == "https" {
				port = "443"
			}
		}
		return normalHost(host) + ":" + port
	}
	return norm(a) == norm(b)
}

// returnTarget is where /oauth2/start may send the browser back to: rd
// when it is a same-origin path (safeReturnPath), or an absolute http(s)
// URL whose host is public_url's or in forward_auth.allowed_redirect_hosts
// (any port); "/" otherwise — never an open redirect.
func (g *Gateway) returnTarget(rd string) string {
	if p := safeReturnPath(rd); p == rd {
		return p
	}
	if len(rd) > maxReturnPath || hasControl(rd) || strings.ContainsAny(rd, "\\#") {
		return "/"
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		return "/"
	}
	host := normalHost(u.Hostname())
	if host == "" || (g.public == nil || host != normalHost(g.public.Hostname())) && !g.redirectHosts[host] {
		return "/"
	}
	if p := u.EscapedPath(); p != "" && (p[0] != '/' || strings.HasPrefix(p, "//")) {
		return "/"
	}
	return rd
}
