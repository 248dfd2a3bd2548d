package gateway

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/introspect"
)

// Cookie size limits. Browsers keep at least 4096 bytes per cookie (RFC
// 6265 §6.1) counting name and value; a chunk stays well below.
const (
	chunkSize = 3800
	maxChunks = 8
	// maxSessionCookie bounds the joined sealed value opened per request.
	maxSessionCookie = chunkSize * maxChunks
)

// session is an opened gateway session. Its strings share one backing
// array: opening allocates once.
type session struct {
	ID        string // 128 random bits, base64url
	Issuer    string
	Subject   string
	SID       string
	Email     string
	Name      string
	IDToken   string // for RP-initiated logout's id_token_hint
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// newSessionID returns 128 random bits, base64url.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// credential is what the revocation check needs: the session id (its
// digest, as entries name it), (iss,
// sid) and (iss, sub) issued at login.
func (s *session) credential() cache.Credential {
	return cache.Credential{Issuer: s.Issuer, SID: s.SID, Sub: s.Subject, SessionID: cache.SessionDigest(s.ID), IssuedAt: s.IssuedAt}
}

// claims are what identity headers read: iss, sub, sid, iat, exp, and email
// and name when the ID token had them.
func (s *session) claims() *introspect.Claims {
	c := &introspect.Claims{Issuer: s.Issuer, Subject: s.Subject, SID: s.SID, IssuedAt: s.IssuedAt, ExpiresAt: s.ExpiresAt}
	if s.Email != "" || s.Name != "" {
		c.Extra = make(map[string]any, 2)
		if s.Email != "" {
			c.Extra["email"] = s.Email
		}
		if s.Name != "" {
			c.Extra["name"] = s.Name
		}
	}
	return c
}

// marshal encodes s as length-prefixed strings (uvarint lengths) followed
// by iat and exp as varint Unix seconds.
func (s *session) marshal() []byte {
	fields := [...]string{s.ID, s.Issuer, s.Subject, s.SID, s.Email, s.Name, s.IDToken}
	n := 2 * binary.MaxVarintLen64
	for _, f := range fields {
		n += binary.MaxVarintLen64 + len(f)
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	// iat in milliseconds: the issued-before check of a subject revoked
	// moments ago must judge the cookie as it judged the login.
	b = binary.AppendVarint(b, s.IssuedAt.UnixMilli())
	return binary.AppendVarint(b, s.ExpiresAt.Unix())
}

// unmarshalSession decodes marshal's output; anything else is false.
// Without withIDToken the ID token (the bulk of a session, needed only at
// sign-out) is checked but not copied.
func unmarshalSession(b []byte, withIDToken bool) (session, bool) {
	var fields [7]string
	var bounds [7][2]int
	off := 0
	for i := range fields {
		l, n := binary.Uvarint(b[off:])
		if n <= 0 || l > uint64(len(b)-off-n) {
			return session{}, false
		}
		off += n
		bounds[i] = [2]int{off, off + int(l)}
		off += int(l)
	}
	end := bounds[5][1]
	if withIDToken {
		end = bounds[6][1]
	}
	str := string(b[:end]) // the one allocation: every field is a substring
	for i := range fields {
		if bounds[i][1] <= end {
			fields[i] = str[bounds[i][0]:bounds[i][1]]
		}
	}
	iat, n := binary.Varint(b[off:])
	if n <= 0 {
		return session{}, false
	}
	off += n
	exp, n := binary.Varint(b[off:])
	if n <= 0 || off+n != len(b) || fields[0] == "" || fields[1] == "" || fields[2] == "" {
		return session{}, false
	}
	return session{
		ID: fields[0], Issuer: fields[1], Subject: fields[2], SID: fields[3],
		Email: fields[4], Name: fields[5], IDToken: fields[6],
		IssuedAt: time.UnixMilli(iat), ExpiresAt: time.Unix(exp, 0),
	}, true
}

// sessionCookies seals, reads and clears the session cookie.
type sessionCookies struct {
	name   string
	secure bool
	seal   *sealer
	bufs   sync.Pool // *[]byte, decode buffers
}

// aadSession binds a sealed session to its purpose (the key already does)
// and format version.
var aadSession = []byte("session")

// open opens a joined sealed value; the session's IDToken is set only
// withIDToken. Tampered, truncated, foreign or oversized values are false.
func (c *sessionCookies) open(v string, withIDToken bool) (session, bool) {
	if len(v) > maxSessionCookie {
		return session{}, false
	}
	bp, _ := c.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	if n := base64.RawURLEncoding.DecodedLen(len(v)); cap(*bp) < n {
		*bp = make([]byte, n)
	}
	plain, ok := c.seal.open(v, aadSession, *bp)
	var s session
	if ok {
		s, ok = unmarshalSession(plain, withIDToken)
	}
	c.bufs.Put(bp)
	return s, ok
}

// read returns the session cookie's value from h: the unchunked cookie if
// present, else the chunks name_0, name_1, ... joined. present reports
// whether any of them was sent.
func (c *sessionCookies) read(h http.Header) (value string, present bool) {
	if v, ok := cookieValue(h, c.name); ok {
		return v, true
	}
	var b strings.Builder
	for i := range maxChunks + 1 {
		v, ok := cookieValue(h, c.name+"_"+strconv.Itoa(i))
		if !ok {
			break
		}
		present = true
		if i == maxChunks || b.Len()+len(v) > maxSessionCookie {
			return "", true
		}
		b.WriteString(v)
	}
	return b.String(), present
}

// set writes the sealed session as one cookie or as chunks, and clears
// the ones of the request's cookies it does not overwrite. It returns
// false when the session is too large for maxChunks chunks.
func (c *sessionCookies) set(w http.ResponseWriter, r *http.Request, s *session, maxAge time.Duration) bool {
	v := c.seal.seal(s.marshal(), aadSession)
	// Chunk names have one digit: name_0 ... name_7.
	if len(v) > maxChunks*(chunkSize-len(c.name)-3) {
		return false
	}
	keep := map[string]bool{}
	if len(c.name)+1+len(v) <= chunkSize {
		keep[c.name] = true
		http.SetCookie(w, c.cookie(c.name, v, maxAge))
	} else {
		for i := 0; len(v) > 0; i++ {
			name := c.name + "_" + strconv.Itoa(i)
			n := min(len(v), chunkSize-len(name)-1)
			keep[name] = true
			http.SetCookie(w, c.cookie(name, v[:n], maxAge))
			v = v[n:]
		}
	}
	c.clearStale(w, r, keep)
	return true
}

// clear expires every session cookie the request sent.
func (c *sessionCookies) clear(w http.ResponseWriter, r *http.Request) {
	c.clearStale(w, r, nil)
}

func (c *sessionCookies) clearStale(w http.ResponseWriter, r *http.Request, keep map[string]bool) {
	for _, name := range cookieNames(r.Header) {
		if !keep[name] && isSessionCookie(name, c.name) {
			http.SetCookie(w, c.cookie(name, "", -1))
		}
	}
}

// cookie returns a session cookie: HttpOnly, SameSite=Lax, Path=/, Secure
// when the public URL is https. A negative maxAge expires it.
func (c *sessionCookies) cookie(name, value string, maxAge time.Duration) *http.Cookie {
	ck := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteLaxMode}
	if maxAge < 0 {
		ck.MaxAge = -1
	} else {
		ck.MaxAge = int(maxAge / time.Second)
	}
	return ck
}

// isSessionCookie reports whether name is base or base_<digits>.
func isSessionCookie(name, base string) bool {
	if name == base {
		return true
	}
	rest, ok := strings.CutPrefix(name, base+"_")
	if !ok || rest == "" || len(rest) > 2 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	return true
}

// ownCookie reports whether name is one of the gateway's cookies: the
// session cookie, its chunks, or a login state cookie.
func ownCookie(name, base string) bool {
	return base != "" && (strings.HasPrefix(name, base) && isSessionCookie(name, base) ||
		strings.HasPrefix(name, loginCookieBase(base)+loginCookieInfix))
}

// cookieValue returns the value of the one cookie called name in h's
// Cookie fields (RFC 6265 §5.4: "name=value" pairs separated by "; "); a
// name sent twice counts as absent. It does not allocate.
func cookieValue(h http.Header, name string) (string, bool) {
	var value string
	found := false
	for _, line := range h["Cookie"] {
		for line != "" {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			pair = strings.TrimSpace(pair)
			if n, v, ok := strings.Cut(pair, "="); ok && n == name {
				if found {
					// Two cookies of one name: one may have been planted by a
					// sibling host or another path (RFC 6265 §8.6); trust
					// neither.
					return "", false
				}
				value, found = strings.Trim(v, `"`), true
			}
		}
	}
	return value, found
}

// cookieNames lists the names of h's cookies.
func cookieNames(h http.Header) []string {
	var names []string
	for _, line := range h["Cookie"] {
		for line != "" {
			var pair string
			pair, line, _ = strings.Cut(line, ";")
			if n, _, ok := strings.Cut(strings.TrimSpace(pair), "="); ok {
				names = append(names, n)
			}
		}
	}
	return names
}
