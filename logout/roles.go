package logout

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// Role is one thing an admin credential may do (issue 17). Every admin
// endpoint needs exactly one role per method.
type Role string

// The roles of admin.tokens[].roles.
const (
	// RoleRevoke creates and schedules revocations: POST /admin/revocations.
	RoleRevoke Role = "revoke"
	// RoleKeys manages API keys: every method of /admin/keys.
	RoleKeys Role = "keys"
	// RoleRead lists revocations and their status: GET /admin/revocations,
	// /admin/revocations/status (what verify-revocation asks).
	RoleRead Role = "read"
	// RoleAudit reads and verifies the audit trail: /admin/audit.
	RoleAudit Role = "audit"
)

// Roles lists every role, in the order pages and messages name them.
var Roles = []Role{RoleRevoke, RoleKeys, RoleRead, RoleAudit}

// RoleSet is a set of roles. The zero RoleSet holds none.
type RoleSet uint8

// AllRoles holds every role: what a token without roles has.
const AllRoles RoleSet = 1<<len(roleBits) - 1

var roleBits = [...]Role{RoleRevoke, RoleKeys, RoleRead, RoleAudit}

func roleBit(r Role) RoleSet {
	for i, b := range roleBits {
		if b == r {
			return 1 << i
		}
	}
	return 0
}

// RolesOf is the set of roles; none listed (nil or empty) is AllRoles,
// the meaning of a token configured without roles. Unknown names are
// ignored (AdminConfig.Validate refuses them).
func RolesOf(roles []Role) RoleSet {
	if len(roles) == 0 {
		return AllRoles
	}
	var s RoleSet
	for _, r := range roles {
		s |= roleBit(r)
	}
	return s
}

// Has reports whether s holds r. An unknown role is never held.
func (s RoleSet) Has(r Role) bool {
	b := roleBit(r)
	return b != 0 && s&b == b
}

// String lists the roles of s, comma-separated, in the order of Roles.
func (s RoleSet) String() string {
	var names []string
	for _, r := range Roles {
		if s.Has(r) {
			names = append(names, string(r))
		}
	}
	return strings.Join(names, ",")
}

// Principal is an authenticated admin credential.
type Principal struct {
	// Name is the credential's name: the initiator "admin:<name>" of
	// what it does, and what logs show (never the token).
	Name  string
	Roles RoleSet
}

// Authenticator checks admin tokens and roles. It keeps only the tokens'
// SHA-256 digests. It is safe for concurrent use; the zero value accepts
// no token.
type Authenticator struct {
	creds []adminCredential
	log   *slog.Logger
}

// NewAuthenticator returns the Authenticator of c's tokens, which logs
// refusals to log (nil discards). c should be valid (c.Validate).
func NewAuthenticator(c AdminConfig, log *slog.Logger) *Authenticator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{creds: newAdminCredentials(c.Tokens), log: log}
}

// Token returns the principal whose token is tok. The comparison takes
// the same time whichever token matches (see matchToken).
func (a *Authenticator) Token(tok string) (Principal, bool) {
	c, ok := matchToken(a.creds, tok)
	if !ok {
		return Principal{}, false
	}
	return Principal{Name: c.name, Roles: c.roles}, true
}

// Authenticate returns the principal of r's bearer token, or answers 401
// (RFC 6750 §3) and returns false.
func (a *Authenticator) Authenticate(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	tok, ok := bearerToken(r.Header)
	var p Principal
	matched := false
	if ok {
		p, matched = a.Token(tok)
	}
	if matched {
		return p, true
	}
	// RFC 9110 §15.5.2: a 401 MUST carry WWW-Authenticate; RFC 6750 §3
	// adds error="invalid_token" when a token was presented.
	challenge := `Bearer realm="` + realm + `"`
	if ok {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, "unauthorized", "")
	return Principal{}, false
}

// Permit reports whether p holds role; if not, it logs the refusal (the
// credential's name, the role, method and path: never a token or query)
// and answers 403 naming the missing role.
func (a *Authenticator) Permit(w http.ResponseWriter, r *http.Request, p Principal, role Role) bool {
	if p.Roles.Has(role) {
		return true
	}
	a.Refused(r, p, role)
	writeJSON(w, http.StatusForbidden, forbiddenResponse{
		Error:       "forbidden",
		Description: fmt.Sprintf("the admin credential %q lacks the role %q", p.Name, role),
		MissingRole: role,
	})
	return false
}

// Refused logs that p was refused for lacking role.
func (a *Authenticator) Refused(r *http.Request, p Principal, role Role) {
	a.log.LogAttrs(r.Context(), slog.LevelWarn, "admin request refused: role missing",
		slog.String("admin", p.Name),
		slog.String("role", string(role)),
		slog.String("roles", p.Roles.String()),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path))
}

// Authorize authenticates r (401 when it cannot) and checks that its
// credential holds role (403 when not). It returns the principal when
// both pass.
func (a *Authenticator) Authorize(w http.ResponseWriter, r *http.Request, role Role) (Principal, bool) {
	p, ok := a.Authenticate(w, r)
	if !ok || !a.Permit(w, r, p, role) {
		return Principal{}, false
	}
	return p, true
}

// forbiddenResponse is the body of a 403 for a missing role.
type forbiddenResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	MissingRole Role   `json:"missing_role"`
}
