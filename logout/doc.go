// Package logout turns revocation events into entries of the revocation
// store. It owns the admin revocation API (POST and GET
// /admin/revocations on the internal listener) and its client,
// RevokeRemote, used by `oidcgate revoke`; the OpenID Connect Back-Channel
// Logout 1.0 receiver (Backchannel, POST /oauth2/backchannel-logout) and
// the Front-Channel Logout 1.0 receiver (Frontchannel, GET
// /oauth2/frontchannel-logout) on the public listener; and the admin
// readers of the audit log (package audit): GET /admin/audit and the
// app logouts of GET /admin/revocations/status. The Shared Signals receiver (SSF, POST /ssf/events: RFC 8935 push of
// CAEP and RISC SETs) and the Universal Logout receiver
// (UniversalLogout, POST /oauth2/global-token-revocation:
// draft-parecki-oauth-global-token-revocation) live here too. They share Config, the Store
// interface and the retention rule (how long an entry is kept) defined
// here.
//
// Guarantees: a revocation is answered 2xx only after Store.Revoke has
// returned nil, which means it is durable; a failed write is answered 500
// (admin) or 503 (logout receivers), never 2xx. A back-channel logout
// token is verified (introspect) and its jti recorded in the replay cache
// before anything is revoked; an invalid or replayed one changes nothing;
// a SET likewise, its side effect happening once per jti. Admin tokens are compared in constant time over SHA-256
// digests of every configured token. With an audit.Store, a 2xx also
// means the revocation's audit record is durable; a failed audit write is
// answered non-2xx although the revocation stays applied.
//
// This package must never: import gateway (the two meet in the revocation
// store); log, echo or record an admin token, a logout token, a SET or a
// transmitter's Authorization header or a Universal Logout JWT; log a
// revoked value in clear (every value, whatever its kind, is logged as a
// SHA-256 prefix, so logs never carry a jti or session id that could be
// replayed or correlated);
// echo request input in error descriptions beyond a short, quoted field
// name; or answer with a Go stack trace.
package logout
