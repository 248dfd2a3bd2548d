// Package gateway owns the public side of oidcgate: routing requests to
// upstreams (gorilla/mux), authenticating them (RFC 6750 bearer tokens and
// browser sessions), setting identity headers from verified claims,
// sealing the upstreams' own session cookies, calling app logout URLs, and
// proxying with httputil.ReverseProxy.
//
// What reaches an upstream: the request with its path cleaned (mux answers
// a non-canonical path with a redirect to the clean one, so "/open/../x",
// "//x" and their percent-encoded forms never reach an upstream as such),
// X-Forwarded-For/Proto/Host set by the gateway (client-sent copies are
// dropped: the gateway is the edge), hop-by-hop headers removed, the
// Authorization header unchanged, the Host header set to the upstream's
// host, and the configured identity headers set from the verified claims.
// Every configured identity header name (of any route) sent by the client
// is removed first, on every route, also on auth "none" routes. The
// gateway's own cookies (session, chunks, login state) never reach an
// upstream.
//
// Browser sessions (routes with auth browser or either): /oauth2/start,
// /oauth2/callback and /oauth2/sign_out run the OIDC authorization code
// flow with PKCE (S256), state and nonce, and RP-initiated logout. A
// session is a stateless cookie sealed with AES-256-GCM under a key
// derived (HKDF-SHA256) from session.secret; retired secrets still open
// cookies. Every request opens it and checks it against the revocation
// store (session id, iss+sid, iss+sub issued before).
//
// Sealed app cookies: the Set-Cookie fields of a route's
// app_session_cookies are replaced by values sealed to the gateway session
// id and the cookie name; the real value goes back to the upstream only
// while that session lives. When a session is revoked, its app cookies
// are stripped and expired, and the route's app_logout_url is called with
// the real cookies. The gateway learns a session's real app cookies from
// an in-memory, bounded registry (per replica, updated when it seals or
// opens them) and from revoked sessions' cookies arriving in requests (the
// lazy path). A restarted replica has forgotten its registry: for the
// sessions it saw before, only the lazy path (or another replica that saw
// them) calls app logout.
//
// Forward auth (/oauth2/auth, /oauth2/auth_redirect): an ingress describes
// the original request in forwarded headers; the route is found by the
// proxy's own router and judged by the proxy's own authentication (judge),
// and the answer is 200 with the identity headers, 401 or 403 — never a
// redirect on /oauth2/auth. Descriptions that are incomplete, repeated,
// contradictory or not canonical are refused, never judged for some route.
//
// This package must never proxy a request whose route needs auth without
// a verdict from the verifier or the revocation store, never let a
// verifier failure through (it answers 503, fail closed), never log a
// token, cookie value or secret (only a SHA-256 prefix), never accept a
// token from the query string or a form body, never send an app's real
// cookie value to a browser, never redirect to a return path that is not
// a same-origin relative path or an absolute URL on public_url's host or
// an allowed redirect host, and never import package logout: the two
// meet in the revocation store.
package gateway
