package gateway

import (
	"net/http"
	"slices"
	"strings"
)

// appAAD binds a sealed app cookie to the gateway session, the route
// (host and path prefix) and the cookie's name: it opens only under that
// session, for that route's app, as that cookie — two apps on one host
// that both use JSESSIONID never receive each other's.
func (rt *route) appAAD(sessionID, name string) []byte {
	b := make([]byte, 0, len(sessionID)+len(rt.host)+len(rt.prefix)+len(name)+3)
	for _, part := range []string{sessionID, rt.host, rt.prefix} {
		b = append(b, part...)
		b = append(b, 0)
	}
	return append(b, name...)
}

// cookieResult is what a request's cookies mean for one route.
type cookieResult struct {
	// header is the Cookie field for the upstream when changed is true
	// ("" removes it): the gateway's own cookies dropped, app cookies
	// replaced by their real values or dropped.
	header  string
	changed bool
	// real holds the app cookies that opened under the session.
	real map[string]string
	// expire lists the app cookies to expire in the browser.
	expire []string
}

// inspectCookies rewrites the request's cookies for the upstream. App
// cookies are opened under sessionID; they reach the upstream only when
// live is true. An app cookie that does not open (not sealed, sealed under
// another session, tampered) or whose session is not live is dropped and
// expired.
func (rt *route) inspectCookies(h http.Header, sessionID string, live bool) cookieResult {
	var res cookieResult
	lines := h["Cookie"]
	if len(lines) == 0 || len(rt.appNames) == 0 && rt.g.cookies == nil {
		return res
	}
	var kept []string
	var bad []string
	for _, line := range lines {
		for line != "" {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			name, value, _ := strings.Cut(pair, "=")
			switch {
			case rt.g.cookies != nil && ownCookie(name, rt.g.cookies.name):
				res.changed = true
			case slices.Contains(rt.appNames, name):
				res.changed = true
				if _, done := res.real[name]; done {
					continue
				}
				real, ok := rt.openApp(value, sessionID, name)
				if !ok {
					bad = append(bad, name)
					continue
				}
				if res.real == nil {
					res.real = make(map[string]string, len(rt.appNames))
				}
				res.real[name] = real
				if live {
					kept = append(kept, name+"="+real)
				}
			default:
				kept = append(kept, pair)
			}
		}
	}
	if !res.changed {
		return res
	}
	res.header = strings.Join(kept, "; ")
	for _, name := range bad {
		if _, ok := res.real[name]; !ok && !slices.Contains(res.expire, name) {
			res.expire = append(res.expire, name)
		}
	}
	if !live {
		for name := range res.real {
			res.expire = append(res.expire, name)
		}
	}
	return res
}

// openApp opens a sealed app cookie value under sessionID.
func (rt *route) openApp(value, sessionID, name string) (string, bool) {
	if sessionID == "" {
		return "", false
	}
	plain, ok := rt.g.appSeal.open(strings.Trim(value, `"`), rt.appAAD(sessionID, name), nil)
	return string(plain), ok
}

// openAppCookies returns the route's app cookies in h that open under
// sessionID.
func (rt *route) openAppCookies(h http.Header, sessionID string) map[string]string {
	if len(rt.appNames) == 0 {
		return nil
	}
	return rt.inspectCookies(h, sessionID, false).real
}

// expireAppCookies adds to out a Set-Cookie expiring each of the route's
// app cookies present in h.
func (rt *route) expireAppCookies(out, h http.Header) {
	for _, name := range cookieNames(h) {
		if slices.Contains(rt.appNames, name) {
			rt.addExpiry(out, name)
		}
	}
}

// addExpiry expires an app cookie at Path=/ and at the route's prefix: the
// path it was set with is not known on the way in (an app cookie set with
// another Path or a Domain outlives this, but no longer opens).
func (rt *route) addExpiry(out http.Header, name string) {
	paths := []string{"/"}
	if rt.prefix != "/" {
		paths = append(paths, rt.prefix)
	}
	for _, p := range paths {
		c := &http.Cookie{Name: name, Value: "", Path: p, MaxAge: -1, HttpOnly: true, Secure: rt.g.cookies.secure}
		out.Add("Set-Cookie", c.String())
	}
}

// sealSetCookies replaces the upstream's Set-Cookie fields of the route's
// app cookies by sealed ones (attributes kept, HttpOnly forced, Secure as
// the session cookie), drops any Set-Cookie of the gateway's own cookies,
// drops app cookies when there is no session (a bearer request on an
// either route), and adds the expirations st asks for.
func (rt *route) sealSetCookies(res *http.Response) error {
	st, _ := res.Request.Context().Value(stateKey{}).(*proxyState)
	lines := res.Header["Set-Cookie"]
	if len(lines) > 0 {
		out := lines[:0:0]
		for _, line := range lines {
			name, _, _ := strings.Cut(line, "=")
			name = strings.TrimSpace(name)
			switch {
			case rt.g.cookies != nil && ownCookie(name, rt.g.cookies.name):
			case slices.Contains(rt.appNames, name):
				if s := rt.sealOne(line, name, st); s != "" {
					out = append(out, s)
				}
			default:
				out = append(out, line)
			}
		}
		if len(out) == 0 {
			res.Header.Del("Set-Cookie")
		} else {
			res.Header["Set-Cookie"] = out
		}
	}
	if st != nil {
		for _, name := range st.cookies.expire {
			rt.addExpiry(res.Header, name)
		}
	}
	return nil
}

// sealOne returns the sealed form of one app Set-Cookie line, or "" to
// drop it.
func (rt *route) sealOne(line, name string, st *proxyState) string {
	if st == nil || st.session == nil {
		return ""
	}
	c, err := http.ParseSetCookie(line)
	if err != nil || c.Name != name {
		return ""
	}
	c.HttpOnly = true
	c.Secure = rt.g.cookies.secure
	deleting := c.Value == "" || c.MaxAge < 0 || !c.Expires.IsZero() && c.Expires.Before(rt.g.now())
	if deleting {
		// The value of a deleted cookie is never needed again: none is sent.
		c.Value = ""
		if rt.logoutURL != "" {
			rt.g.appLogout.forget(st.session.ID, rt, name)
		}
		return c.String()
	}
	if rt.logoutURL != "" {
		rt.g.appLogout.observe(st.session, rt, map[string]string{name: c.Value})
	}
	c.Value = rt.g.appSeal.seal([]byte(c.Value), rt.appAAD(st.session.ID, name))
	c.Raw, c.Unparsed = "", nil
	return c.String()
}
