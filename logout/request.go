package logout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/oidcgate/oidcgate/cache"
)

// maxRevokeBody bounds the body of POST /admin/revocations.
const maxRevokeBody = 64 << 10

// maxListLimit is the largest page GET /admin/revocations serves.
const maxListLimit = 1000

// maxCursorLen bounds the opaque cursor a client may send back.
const maxCursorLen = 4096

// requestError is a problem with the client's request. Its text is ours
// (never more than a short, quoted field name of the input) and is sent
// as error_description.
type requestError string

func (e requestError) Error() string { return string(e) }

func badRequest(format string, args ...any) error {
	return requestError(fmt.Sprintf(format, args...))
}

// targets maps each target field of a RevokeRequest to its entry kind.
var targets = map[string]cache.Kind{
	"sub":       cache.KindSub,
	"sid":       cache.KindSID,
	"jti":       cache.KindJTI,
	"client_id": cache.KindClient,
	"session":   cache.KindSession,
	"key":       cache.KindKey,
}

// field returns where the JSON member name of RevokeRequest is stored, or
// nil for a name RevokeRequest does not have.
func (r *RevokeRequest) field(name string) *string {
	switch name {
	case "sub":
		return &r.Sub
	case "sid":
		return &r.SID
	case "jti":
		return &r.JTI
	case "client_id":
		return &r.ClientID
	case "session":
		return &r.Session
	case "key":
		return &r.Key
	case "effective_at":
		return &r.EffectiveAt
	case "issuer":
		return &r.Issuer
	case "reason":
		return &r.Reason
	}
	return nil
}

// parseRevoke decodes a POST /admin/revocations body strictly: valid
// UTF-8, exactly one JSON object and nothing after it, only RevokeRequest's
// members, each at most once and a string, exactly one target. It reads
// the object token by token, so a nested value is refused at its first
// byte, however deep it goes. The entry it returns has Kind, Value,
// Reason and, if one was given, Issuer.
func parseRevoke(body []byte) (cache.Entry, error) {
	if !utf8.Valid(body) {
		return cache.Entry{}, badRequest("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return cache.Entry{}, badRequest("body is not a JSON object")
	}
	var req RevokeRequest
	seen := make(map[string]bool, 3)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return cache.Entry{}, badRequest("body is not valid JSON")
		}
		name, _ := tok.(string)
		dst := req.field(name)
		if dst == nil {
			return cache.Entry{}, badRequest("unknown field %q", truncate(name, 32))
		}
		if seen[name] {
			return cache.Entry{}, badRequest("%s: given more than once", name)
		}
		seen[name] = true
		if tok, err = dec.Token(); err != nil {
			return cache.Entry{}, badRequest("body is not valid JSON")
		}
		s, ok := tok.(string)
		if !ok {
			return cache.Entry{}, badRequest("%s: not a string", name)
		}
		*dst = s
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return cache.Entry{}, badRequest("body is not valid JSON")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return cache.Entry{}, badRequest("body has data after the JSON object")
	}
	return req.entry(seen)
}

// entry checks the decoded request: seen holds the member names present.
func (r RevokeRequest) entry(seen map[string]bool) (cache.Entry, error) {
	var e cache.Entry
	var target string
	for name, kind := range targets {
		if !seen[name] {
			continue
		}
		if target != "" {
			return cache.Entry{}, badRequest("exactly one of sub, sid, jti, client_id, session, key is required")
		}
		target, e.Kind = name, kind
		e.Value = *r.field(name)
	}
	switch {
	case target == "":
		return cache.Entry{}, badRequest("exactly one of sub, sid, jti, client_id, session, key is required")
	case e.Value == "":
		return cache.Entry{}, badRequest("%s: empty", target)
	case len(e.Value) > cache.MaxValueLen:
		return cache.Entry{}, badRequest("%s: longer than %d bytes", target, cache.MaxValueLen)
	}
	if e.Kind == cache.KindSession {
		// The entry, the audit record and the logs name the session by
		// its digest: the id itself would let a reader end it.
		e.Value = cache.SessionDigest(e.Value)
	}
	if seen["issuer"] {
		switch {
		case e.Kind.Issuerless():
			return cache.Entry{}, badRequest("issuer: not allowed with %s (its ids are the gateway's own)", target)
		case r.Issuer == "":
			return cache.Entry{}, badRequest("issuer: empty")
		case len(r.Issuer) > cache.MaxValueLen:
			return cache.Entry{}, badRequest("issuer: longer than %d bytes", cache.MaxValueLen)
		}
		e.Issuer = r.Issuer
	}
	if len(r.Reason) > cache.MaxTextLen {
		return cache.Entry{}, badRequest("reason: longer than %d bytes", cache.MaxTextLen)
	}
	e.Reason = r.Reason
	if seen["effective_at"] {
		if !e.Kind.Schedulable() {
			return cache.Entry{}, badRequest("effective_at: only with client_id or key")
		}
		t, err := time.Parse(time.RFC3339, r.EffectiveAt)
		if err != nil || t.Year() < 1970 || t.Year() > 9999 {
			return cache.Entry{}, badRequest("effective_at: not an RFC 3339 time")
		}
		e.EffectiveAt = t.UTC()
	}
	return e, nil
}

// parseList reads the query of GET /admin/revocations: kind, issuer,
// value, limit (1 to 1000) and cursor, each at most once; anything else is
// refused.
func parseList(rawQuery string) (cache.ListOptions, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return cache.ListOptions{}, badRequest("query is not valid")
	}
	var o cache.ListOptions
	for name, vals := range q {
		if len(vals) != 1 {
			return cache.ListOptions{}, badRequest("%s: given more than once", truncate(name, 32))
		}
		v := vals[0]
		switch name {
		case "kind":
			o.Kind = cache.Kind(v)
			if !o.Kind.Valid() {
				return cache.ListOptions{}, badRequest("kind: not one of jti, sid, sub, client, session, key")
			}
		case "issuer", "value":
			if len(v) > cache.MaxValueLen {
				return cache.ListOptions{}, badRequest("%s: longer than %d bytes", name, cache.MaxValueLen)
			}
			if name == "issuer" {
				o.Issuer = v
			} else {
				o.Value = v
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxListLimit {
				return cache.ListOptions{}, badRequest("limit: not an integer from 1 to %d", maxListLimit)
			}
			o.Limit = n
		case "cursor":
			if len(v) > maxCursorLen {
				return cache.ListOptions{}, badRequest("cursor: not valid")
			}
			o.Cursor = v
		default:
			return cache.ListOptions{}, badRequest("unknown parameter %q", truncate(name, 32))
		}
	}
	return o, nil
}

// truncate shortens s to at most n bytes, cutting at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
