package introspect

import (
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
