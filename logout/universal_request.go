package logout

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/oidcgate/oidcgate/cache"
)

// maxUniversalBody bounds the body of a Universal Logout request.
const maxUniversalBody = 64 << 10

// The subject identifier formats (RFC 9493 §3.2) a Universal Logout
// request may name its user with.
const (
	formatIssSub = "iss_sub"
	formatEmail  = "email"
)

// universalSubject is the user a Universal Logout request names: Issuer
// and Subject for iss_sub, Email (lower-cased) for email.
type universalSubject struct {
	Format  string
	Issuer  string
	Subject string
	Email   string
}

// parseUniversal decodes a Universal Logout request body strictly
// (draft-parecki-oauth-global-token-revocation §3.2: a JSON object whose
// single member sub_id is an RFC 9493 subject identifier): valid UTF-8,
// exactly one JSON object and nothing after it, sub_id its only member,
// an object whose members are strings, each at most once, exactly those
// of its format (iss_sub: iss, sub; email: email). It reads token by
// token, so a nested value is refused at its first byte, however deep it
// goes. Every refusal is a requestError.
func parseUniversal(body []byte) (universalSubject, error) {
	if !utf8.Valid(body) {
		return universalSubject{}, badRequest("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return universalSubject{}, badRequest("body is not a JSON object")
	}
	var members map[string]string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return universalSubject{}, badRequest("body is not valid JSON")
		}
		if name, _ := tok.(string); name != "sub_id" {
			return universalSubject{}, badRequest("unknown field %q", truncate(name, 32))
		}
		if members != nil {
			return universalSubject{}, badRequest("sub_id: given more than once")
		}
		if members, err = subjectMembers(dec); err != nil {
			return universalSubject{}, err
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return universalSubject{}, badRequest("body is not valid JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return universalSubject{}, badRequest("body has data after the JSON object")
	}
	if members == nil {
		return universalSubject{}, badRequest("sub_id: required")
	}
	return subjectOf(members)
}

// subjectMembers reads the sub_id object: string members, each once.
func subjectMembers(dec *json.Decoder) (map[string]string, error) {
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, badRequest("sub_id: not a JSON object")
	}
	members := make(map[string]string, 3)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, badRequest("body is not valid JSON")
		}
		name, _ := tok.(string)
		switch name {
		case "format", "iss", "sub", "email":
		default:
			return nil, badRequest("sub_id: unknown member %q", truncate(name, 32))
		}
		if _, dup := members[name]; dup {
			return nil, badRequest("sub_id.%s: given more than once", name)
		}
		if tok, err = dec.Token(); err != nil {
			return nil, badRequest("body is not valid JSON")
		}
		s, ok := tok.(string)
		if !ok {
			return nil, badRequest("sub_id.%s: not a string", name)
		}
		members[name] = s
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, badRequest("body is not valid JSON")
	}
	return members, nil
}

// subjectOf checks the members of a sub_id against its format (RFC 9493
// §3.2.3, §3.2.2: each member of the format is REQUIRED).
func subjectOf(m map[string]string) (universalSubject, error) {
	format, ok := m["format"]
	if !ok {
		return universalSubject{}, badRequest("sub_id.format: required")
	}
	var want []string
	switch format {
	case formatIssSub:
		want = []string{"iss", "sub"}
	case formatEmail:
		want = []string{"email"}
	default:
		// draft §3.4.2: an unsupported subject identifier type is a 400.
		return universalSubject{}, badRequest("sub_id.format: %q is not supported (iss_sub, email)", truncate(format, 32))
	}
	for name := range m {
		if name != "format" && !slices.Contains(want, name) {
			return universalSubject{}, badRequest("sub_id.%s: not a member of format %s", name, format)
		}
	}
	for _, name := range want {
		v, ok := m[name]
		switch {
		case !ok:
			return universalSubject{}, badRequest("sub_id.%s: required with format %s", name, format)
		case v == "":
			return universalSubject{}, badRequest("sub_id.%s: empty", name)
		case len(v) > cache.MaxValueLen:
			return universalSubject{}, badRequest("sub_id.%s: longer than %d bytes", name, cache.MaxValueLen)
		}
	}
	s := universalSubject{Format: format, Issuer: m["iss"], Subject: m["sub"]}
	if format == formatEmail {
		email, ok := NormalizeEmail(m["email"])
		if !ok {
			return universalSubject{}, badRequest("sub_id.email: not an email address")
		}
		s.Email = email
	}
	return s, nil
}

// NormalizeEmail returns addr lower-cased, the form in which the gateway
// compares email addresses (IdPs treat them case-insensitively), or false
// when addr is not local@domain with both parts non-empty and no space
// or control character.
func NormalizeEmail(addr string) (string, bool) {
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") || len(addr) > cache.MaxValueLen {
		return "", false
	}
	for _, r := range addr {
		if r <= ' ' || r == 0x7f {
			return "", false
		}
	}
	return strings.ToLower(addr), true
}
