// Package console is the operator console at /admin/ui/ on the internal
// listener (issue 17): server-rendered pages (html/template, one small
// script, no external assets) for the people on an incident call — an
// overview of the store, replicas and propagation, search of revocations
// with their targets and audit records, a revoke form that follows the
// revocation until every target is done or failed, the audit trail with
// a chain check, and API keys.
//
// It owns the console's sign-in (an admin token exchanged for a short,
// sealed session cookie), its CSRF tokens and its pages. It never decides
// a revocation itself: every action goes to the admin API's own handlers
// (package logout), in process, with the signed-in token, so roles,
// validation, audit and logs are exactly the API's. It must never show,
// log or store a token or cookie value in clear, nor act on a POST
// without the session's CSRF token.
package console
