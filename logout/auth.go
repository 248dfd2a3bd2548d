package logout

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// adminCredential is a configured admin token, kept only as its digest.
type adminCredential struct {
	name   string
	roles  RoleSet
	digest [sha256.Size]byte
}

func newAdminCredentials(tokens []AdminToken) []adminCredential {
	creds := make([]adminCredential, len(tokens))
	for i, t := range tokens {
		creds[i] = adminCredential{name: t.Name, roles: RolesOf(t.Roles), digest: sha256.Sum256([]byte(t.Token))}
	}
	return creds
}

// matchToken returns the credential whose token is presented.
// It compares fixed-size SHA-256 digests with crypto/subtle and visits
// every credential without an early exit, so neither the tokens' lengths
// nor which one matched shows in the timing.
func matchToken(creds []adminCredential, presented string) (adminCredential, bool) {
	d := sha256.Sum256([]byte(presented))
	match := -1
	for i := range creds {
		eq := subtle.ConstantTimeCompare(d[:], creds[i].digest[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return adminCredential{}, false
	}
	return creds[match], true
}

// bearerToken returns the token of the request's single Authorization
// header of scheme Bearer (RFC 6750 §2.1). The scheme is matched case-
// insensitively (RFC 9110 §11.1). Several Authorization headers, another
// scheme or an empty token yield false.
func bearerToken(h http.Header) (string, bool) {
	vals := h.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimLeft(tok, " ")
	return tok, tok != ""
}
