// Package propagate owns what a revocation must reach beyond the gateway.
// This part holds the session authorities: the IdP admin APIs that end a
// user's SSO sessions and refresh tokens at the source (Keycloak, Okta,
// Microsoft Entra ID, Ory Hydra), behind one small interface, Authority,
// and the configuration of `issuers[].session_authority`; the SSF
// transmitter (Transmitter, KeyRing): the gateway's own signed SETs pushed
// to `ssf.receivers` (RFC 8417, RFC 8935, CAEP 1.0), as targets of the
// same Worker.
//
// An Authority makes one idempotent call sequence per method and reports
// what happened in a way the caller can act on: nil (done), ErrNotFound
// (nothing to end: done with a note), ErrUnsupported (the authority has no
// such call: recorded as unsupported, never widened to a bigger revocation),
// or a *CallError that says whether a retry may help and when. It refreshes
// its admin token once on a 401 and never retries otherwise: retries,
// backoff, leases and durable per-target state belong to the caller.
// New builds one from a Config: admin tokens (client_credentials, RFC 6749
// §4.4) are cached until shortly before they expire and fetched once for
// all concurrent callers; a static API token (Okta's SSWS, a bearer token
// in front of Hydra) is sent as is. Each connector cites the vendor's API
// reference on every call it makes.
//
// This package must never log or return a secret (client secret, API
// token, admin access token: Secret redacts itself), never follow a
// redirect (the credentials must not travel elsewhere), never read an
// unbounded body, never make a call without a deadline, and never use
// http.DefaultClient. It imports no project package but cache and audit,
// and never gateway or logout: they meet in the revocation store.
package propagate
