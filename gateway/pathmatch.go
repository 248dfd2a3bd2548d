package gateway

import (
	"net/http"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Path confusion (issue 20): an upstream may read a path differently from
// the gateway. Express matches routes case-insensitively, IIS strips
// trailing dots and spaces from segments, servlet containers drop path
// parameters, some stacks decode twice, and browsers drop tabs and
// newlines. A request whose path reaches a weaker route than the one its
// app may serve it from would bypass that route's authentication.
//
// The one rule: a request is routed on its path as sent (decoded once,
// cleaned) and on the normalised form of that path (normalizePath); both
// must select the same route, else the path is ambiguous and refused with
// 400. The upstream always gets the original path. So "/ADMIN" with
// routes "/" (none) and "/admin" (bearer) is refused, and so is "/PUBLIC"
// with routes "/" (bearer) and "/public" (none): the gateway cannot know
// whether the app folds case, so neither reading may pick the route.

// routeResult says how routeFor resolved a request.
type routeResult uint8

const (
	routeFound     routeResult = iota
	routeNone                  // no route, or a path reserved for the gateway
	routeAmbiguous             // the path and its normalised form disagree
)

// maxPathDecodes bounds the rounds of percent-decoding normalizePath
// applies; a path still encoded after that many is ambiguous.
const maxPathDecodes = 4

// routeFor resolves the route of a request for host (the Host header) and
// p (the percent-decoded, cleaned path, as mux sees it). It returns the
// route only when the path as sent and its normalised form select the same
// one. The forward-auth endpoint uses it too, so that both judge a path
// alike.
func (g *Gateway) routeFor(host, p string) (*route, routeResult) {
	if matchPrefix(p, reservedPrefix) {
		return nil, routeNone
	}
	host = requestHost(host)
	raw := g.matchRoute(host, p, false)
	n, ok := normalizePath(p)
	if !ok {
		return nil, routeAmbiguous
	}
	if matchPrefix(n, reservedPrefix) {
		return nil, routeAmbiguous
	}
	var folded *route
	if n == p && g.normalPrefixes {
		folded = raw
	} else {
		folded = g.matchRoute(host, n, true)
	}
	switch {
	case raw != folded:
		return nil, routeAmbiguous
	case raw == nil:
		return nil, routeNone
	}
	return raw, routeFound
}

// matchRoute returns the first route (most specific first) whose host and
// prefix match; normal selects the normalised prefixes.
func (g *Gateway) matchRoute(host, p string, normal bool) *route {
	for _, rt := range g.routes {
		if rt.host != "" && !strings.EqualFold(host, rt.host) {
			continue
		}
		prefix := rt.prefix
		if normal {
			prefix = rt.normPrefix
		}
		if matchPrefix(p, prefix) {
			return rt
		}
	}
	return nil
}

// dispatch proxies r through its route, or answers 404 (no route) or 400
// (ambiguous path) itself.
func (g *Gateway) dispatch(w http.ResponseWriter, r *http.Request) {
	rt, res := g.routeFor(r.Host, r.URL.Path)
	switch res {
	case routeNone:
		g.notFound(w, r)
	case routeAmbiguous:
		start := g.now()
		plainError(w, http.StatusBadRequest, "ambiguous path: it may name another route than the one it matches")
		g.noRoute.done(decInvalidRequest, start)
		g.logDenied(r.Context(), "none", decInvalidRequest, "")
	default:
		rt.ServeHTTP(w, r)
	}
}

// normalizePath returns the form of p that the most lenient upstream
// would route: percent-decoded and case-folded until nothing changes (at
// most maxPathDecodes rounds), tabs, CR and LF removed (as the WHATWG URL parser
// does), path parameters (";...") cut from each segment, trailing dots and
// white space stripped from each segment, cleaned, and case-folded. ok is
// false when p has no single reading: still encoded after maxPathDecodes
// rounds, a control character, NUL or backslash after decoding, or a
// segment made only of dots and spaces other than "." and "..".
//
// Case folding (foldRune) is Unicode-aware: "ſ" (U+017F) and "S" fold
// like "s", the Kelvin sign like "k", "ı" like "i", "Ａ" like "a".
func normalizePath(p string) (string, bool) {
	if plainPath(p) {
		return p, true
	}
	for i := 0; ; i++ {
		d := foldString(decodePercent(p))
		if d == p {
			break
		}
		if i == maxPathDecodes {
			return "", false
		}
		p = d
	}
	var b strings.Builder
	b.Grow(len(p))
	for i, seg := range strings.Split(p, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		seg = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, seg)
		if i := strings.IndexByte(seg, ';'); i >= 0 {
			seg = seg[:i]
		}
		for j := 0; j < len(seg); j++ {
			if c := seg[j]; c < 0x20 || c == 0x7f || c == '\\' {
				return "", false
			}
		}
		if seg == "." || seg == ".." {
			b.WriteString(seg)
			continue
		}
		t := strings.TrimRightFunc(seg, func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
		if t == "" && seg != "" {
			return "", false
		}
		b.WriteString(t)
	}
	n := path.Clean("/" + b.String())
	return n, true
}

// plainPath reports whether p is already normal: only lower-case ASCII
// letters, digits, '/', '-', '_' and '~', and '.' only inside a segment.
// Most request paths are; they skip the work.
func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '/', c == '-', c == '_', c == '~':
		case c == '.':
			if i == len(p)-1 || p[i+1] == '/' || i > 0 && p[i-1] == '/' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// decodePercent decodes every valid %XX escape of s and leaves any other
// '%' as it is, the way lenient servers do.
func decodePercent(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	var b []byte
	for ; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			if b == nil {
				b = append(make([]byte, 0, len(s)), s[:i]...)
			}
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		if b != nil {
			b = append(b, c)
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}

func ishex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// foldString returns s case-folded (see normalizePath); invalid UTF-8
// becomes U+FFFD.
func foldString(s string) string {
	return strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf {
			if r >= 'A' && r <= 'Z' {
				r += 'a' - 'A'
			}
			return r
		}
		return foldRune(r)
	}, s)
}

// foldRune folds r the most lenient way an upstream might: a fullwidth
// ASCII form (U+FF01..U+FF5E, which IIS "best fit" maps) to ASCII, then
// lower(upper(r)) (Java's equalsIgnoreCase matches "ı" with "i"), then
// the smallest rune of the simple folding orbit, an ASCII upper-case
// letter turned to lower case.
func foldRune(r rune) rune {
	if r >= 0xff01 && r <= 0xff5e {
		r -= 0xfee0
	}
	r = unicode.ToLower(unicode.ToUpper(r))
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	if m >= 'A' && m <= 'Z' {
		m += 'a' - 'A'
	}
	return m
}
