package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"
)

// maxCookieLen bounds a session cookie (browsers keep about 4 KiB).
const maxCookieLen = 3800

// session is what the sealed cookie holds.
type session struct {
	// Token is the admin token signed in with: the console calls the
	// admin API with it, so a token removed from the config stops
	// working at once, and roles are always the config's.
	Token string `json:"t"`
	// CSRF is the token every form of this session carries.
	CSRF string `json:"c"`
	// Expires is when the session ends (Unix seconds).
	Expires int64 `json:"e"`
}

var (
	errBadCookie = errors.New("console: session cookie not valid")
	errExpired   = errors.New("console: session expired")
)

// sealer seals and opens session cookies with AES-256-GCM under a key
// derived from the configured secret (HKDF-SHA256); the cookie name is
// the additional data, so a value sealed for another cookie never opens.
type sealer struct {
	aead cipher.AEAD
	name string
}

func newSealer(secret, name string) (*sealer, error) {
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, "oidcgate console session v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, name: name}, nil
}

func (s *sealer) seal(v session) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	out := base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(s.name)))
	if len(out) > maxCookieLen {
		return "", errors.New("console: the token is too long for a session cookie")
	}
	return out, nil
}

// open returns the session sealed in value, errBadCookie for anything
// not sealed by this key, errExpired for a session past its end at now.
func (s *sealer) open(value string, now time.Time) (session, error) {
	if value == "" || len(value) > maxCookieLen {
		return session{}, errBadCookie
	}
	// Strict: only the one canonical encoding of a sealed value opens.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return session{}, errBadCookie
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(s.name))
	if err != nil {
		return session{}, errBadCookie
	}
	var v session
	if json.Unmarshal(plain, &v) != nil || v.Token == "" || v.CSRF == "" {
		return session{}, errBadCookie
	}
	if now.Unix() >= v.Expires {
		return session{}, errExpired
	}
	return v, nil
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sameToken compares two CSRF tokens in constant time; empty never
// matches.
func sameToken(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
