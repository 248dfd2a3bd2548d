// Package gateway owns the public side of oidcgate: routing requests to
// upstreams (gorilla/mux), authenticating them (RFC 6750 bearer tokens
// today; browser sessions later), setting identity headers from verified
// claims, and proxying with httputil.ReverseProxy.
//
// What reaches an upstream: the request with its path cleaned (mux answers
// a non-canonical path with a redirect to the clean one, so "/open/../x",
// "//x" and their percent-encoded forms never reach an upstream as such),
// X-Forwarded-For/Proto/Host set by the gateway (client-sent copies are
// dropped: the gateway is the edge), hop-by-hop headers removed, the
// Authorization header unchanged, the Host header set to the upstream's
// host, and the configured identity headers set from the verified claims.
// Every configured identity header name (of any route) sent by the client
// is removed first, on every route, also on auth "none" routes.
//
// This package must never proxy a request whose route needs auth without
// a verdict from the verifier, never let a verifier failure through (it
// answers 503, fail closed), never log a token (only a SHA-256 prefix), never
// accept a token from the query string or a form body, and never import
// package logout: the two meet in the revocation store.
package gateway
