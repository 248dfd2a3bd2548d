package introspect

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"
)

// maxTokenBytes bounds the tokens Verify looks at.
const maxTokenBytes = 16 << 10

// b64 decodes JWS segments: base64url without padding (RFC 7515 §2), and
// strict so that one token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// header is the part of a JWS protected header Verify uses.
type header struct {
	alg string
	typ string
	kid string
}

// unverified is a compact JWS split and decoded, nothing checked but its
// form.
type unverified struct {
	header header
	// claims maps each claim name (exact case) to its JSON value.
	claims map[string]json.RawMessage
	iss    string
}

// parseCompact splits raw into a JWS in compact serialization (RFC 7515
// §7.1) and decodes its header and payload. It refuses every other form:
// JWE (five parts), JSON serialization, an unsigned token, a header that is
// not a JSON object, "crit" (RFC 7515 §4.1.11: we understand no extension)
// and "b64" (RFC 7797). Nothing is trusted yet: the caller reads only iss
// before the signature is verified.
func parseCompact(raw string) (*unverified, error) {
	// Go's base64 decoders skip CR and LF even in strict mode: without
	// this check one token would have many encodings, each with its own
	// hash (the cache key, and the name /revoke revokes a token by).
	if !compactAlphabet(raw) {
		return nil, invalid("not a compact JWS (characters outside base64url and '.')")
	}
	if strings.Count(raw, ".") != 2 {
		return nil, invalid("not a compact JWS (want 3 parts)")
	}
	h, rest, _ := strings.Cut(raw, ".")
	p, sig, _ := strings.Cut(rest, ".")
	if h == "" || p == "" || sig == "" {
		return nil, invalid("empty JWS part")
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return nil, invalid("header is not base64url")
	}
	var hm map[string]json.RawMessage
	if err := unmarshalObject(hb, &hm); err != nil {
		return nil, invalid("header is not a JSON object")
	}
	if _, ok := hm["crit"]; ok {
		// RFC 7515 §4.1.11: extensions we do not understand MUST be refused.
		return nil, invalid("crit header not supported")
	}
	if _, ok := hm["b64"]; ok {
		return nil, invalid("b64 header not supported")
	}
	var u unverified
	if !stringMember(hm, "alg", &u.header.alg) || u.header.alg == "" {
		return nil, invalid("alg missing or not a string")
	}
	if !stringMember(hm, "typ", &u.header.typ) {
		return nil, invalid("typ not a string")
	}
	if !stringMember(hm, "kid", &u.header.kid) {
		return nil, invalid("kid not a string")
	}
	pb, err := b64.DecodeString(p)
	if err != nil {
		return nil, invalid("payload is not base64url")
	}
	if err := unmarshalObject(pb, &u.claims); err != nil {
		return nil, invalid("payload is not a JSON object")
	}
	if !stringMember(u.claims, "iss", &u.iss) || u.iss == "" {
		return nil, invalid("iss missing or not a string")
	}
	return &u, nil
}

// unmarshalObject decodes a JSON object into m; null, other values and
// trailing data are errors.
func unmarshalObject(b []byte, m *map[string]json.RawMessage) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	return json.Unmarshal(b, m)
}

// stringMember sets *dst to the string member name of m. It returns false
// when the member is present but not a string; a missing member leaves
// *dst unchanged and returns true.
func stringMember(m map[string]json.RawMessage, name string, dst *string) bool {
	v, ok := m[name]
	if !ok {
		return true
	}
	return len(v) > 0 && v[0] == '"' && json.Unmarshal(v, dst) == nil
}

// toClaims decodes the payload into Claims. It checks types only; validity
// (times, audience, presence) is judged by the caller.
func (u *unverified) toClaims() (*Claims, error) {
	c := &Claims{Issuer: u.iss}
	m := u.claims
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"sub", &c.Subject},
		{"jti", &c.JTI},
		{"sid", &c.SID},
		{"client_id", &c.ClientID},
	} {
		if !stringMember(m, f.name, f.dst) {
			return nil, invalid("%s is not a string", f.name)
		}
	}
	if c.ClientID == "" {
		// RFC 9068 §2.2 names client_id; OpenID Connect's azp is the
		// fallback for issuers that only send that.
		if !stringMember(m, "azp", &c.ClientID) {
			return nil, invalid("azp is not a string")
		}
	}
	if v, ok := m["aud"]; ok {
		aud, ok := stringOrArray(v)
		if !ok {
			return nil, invalid("aud is not a string or an array of strings")
		}
		c.Audience = aud
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{
		{"exp", &c.ExpiresAt},
		{"iat", &c.IssuedAt},
		{"nbf", &c.NotBefore},
	} {
		if v, ok := m[f.name]; ok {
			t, ok := numericDate(v)
			if !ok {
				return nil, invalid("%s is not a NumericDate", f.name)
			}
			*f.dst = t
		}
	}
	var scope string
	if !stringMember(m, "scope", &scope) {
		return nil, invalid("scope is not a string")
	}
	if _, ok := m["scope"]; ok {
		c.Scopes = splitScope(scope)
	} else if v, ok := m["scp"]; ok {
		// Fallback for issuers that send "scp" (a string or an array, as
		// Okta and Entra ID do) instead of RFC 9068's "scope"; a malformed
		// scp grants nothing. It stays in Extra too.
		if s, ok := stringOrArray(v); ok {
			for _, e := range s {
				c.Scopes = append(c.Scopes, splitScope(e)...)
			}
		}
	}
	for name, v := range m {
		if isRegistered(name) {
			continue
		}
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			return nil, invalid("claim is not valid JSON")
		}
		if c.Extra == nil {
			c.Extra = make(map[string]any, len(m))
		}
		c.Extra[name] = x
	}
	return c, nil
}

// isRegistered reports whether claim name has a field in Claims; all
// others go to Claims.Extra.
func isRegistered(name string) bool {
	switch name {
	case "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "client_id", "scope":
		return true
	}
	return false
}

// splitScope splits a scope value on spaces (RFC 6749 §3.3).
func splitScope(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' })
}

// stringOrArray decodes a claim that is a string or an array of strings,
// as aud is (RFC 7519 §4.1.3).
func stringOrArray(v json.RawMessage) ([]string, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return nil, false
	}
	switch v[0] {
	case '"':
		var s string
		if json.Unmarshal(v, &s) != nil {
			return nil, false
		}
		return []string{s}, true
	case '[':
		var a []string
		if json.Unmarshal(v, &a) != nil {
			return nil, false
		}
		if a == nil {
			a = []string{}
		}
		return a, true
	}
	return nil, false
}

// maxNumericDate is 9999-12-31T23:59:59Z; later dates are refused rather
// than overflowing time arithmetic.
const maxNumericDate = 253402300799

// numericDate decodes a JSON number of seconds since the epoch, possibly
// fractional (RFC 7519 §2), between 0 and maxNumericDate.
func numericDate(v json.RawMessage) (time.Time, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return time.Time{}, false
	}
	var f float64
	if json.Unmarshal(v, &f) != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

// compactAlphabet reports whether raw has only base64url characters
// (RFC 4648 §5, no padding) and '.'.
func compactAlphabet(raw string) bool {
	for i := range len(raw) {
		c := raw[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
