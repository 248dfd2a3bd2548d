package introspect

import (
	"strconv"
	"strings"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// Claims is a verified token's content. A *Claims returned by this package
// is shared with the verified-result cache: callers must treat it as
// read-only.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	ExpiresAt time.Time
	IssuedAt  time.Time
	NotBefore time.Time
	JTI       string
	SID       string
	ClientID  string
	// Scopes is the space-separated "scope" claim (RFC 9068 §2.2.3), split.
	Scopes []string
	// Extra holds every other claim, as decoded from JSON.
	Extra map[string]any
}

// HasScopes reports whether c carries every scope in want.
func (c *Claims) HasScopes(want []string) bool {
	for _, w := range want {
		found := false
		for _, s := range c.Scopes {
			if s == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Credential returns what the revocation check needs from c.
func (c *Claims) Credential() cache.Credential {
	return cache.Credential{
		Issuer:   c.Issuer,
		JTI:      c.JTI,
		SID:      c.SID,
		Sub:      c.Subject,
		ClientID: c.ClientID,
		IssuedAt: c.IssuedAt,
	}
}

// Claim returns claim name as a header-friendly string: sub, iss, jti, sid,
// client_id; scope and aud space-joined; exp, iat and nbf as Unix seconds;
// any other name from Extra when it is a string, number, bool or array of
// strings (space-joined). It returns false for an absent or empty claim and
// for objects, null and mixed arrays. Numbers are formatted from float64,
// exact up to 2^53.
func (c *Claims) Claim(name string) (string, bool) {
	var s string
	switch name {
	case "sub":
		s = c.Subject
	case "iss":
		s = c.Issuer
	case "jti":
		s = c.JTI
	case "sid":
		s = c.SID
	case "client_id":
		s = c.ClientID
	case "scope":
		s = strings.Join(c.Scopes, " ")
	case "aud":
		s = strings.Join(c.Audience, " ")
	case "exp":
		return unixSeconds(c.ExpiresAt)
	case "iat":
		return unixSeconds(c.IssuedAt)
	case "nbf":
		return unixSeconds(c.NotBefore)
	default:
		return extraString(c.Extra[name])
	}
	return s, s != ""
}

func unixSeconds(t time.Time) (string, bool) {
	if t.IsZero() {
		return "", false
	}
	return strconv.FormatInt(t.Unix(), 10), true
}

func extraString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, v != ""
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		s := strings.Join(parts, " ")
		return s, s != ""
	}
	return "", false
}
