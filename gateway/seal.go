package gateway

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"unsafe"

	"github.com/oidcgate/oidcgate/introspect"
)

// The HKDF info labels: one key per purpose, so that a value sealed for
// one purpose never opens as another.
const (
	purposeSession = "oidcgate session cookie v1"
	purposeLogin   = "oidcgate login state v1"
	purposeApp     = "oidcgate app cookie v1"
	labelKeyID     = "oidcgate key id v1"
)

// sealVersion is the first byte of every sealed value.
const sealVersion = 1

// A sealed value is base64url (no padding) of
//
//	version (1) | key id (4) | nonce (12) | AES-256-GCM ciphertext and tag
//
// The key id names the secret; it is derived from the secret with its own
// HKDF label, so it says nothing about the key.
const (
	keyIDLen    = 4
	nonceLen    = 12
	sealHeader  = 1 + keyIDLen + nonceLen
	sealMinSize = sealHeader + 16
)

// sealer seals with the current secret's key and opens with the key of any
// configured secret, picked by the key id. It is safe for concurrent use.
type sealer struct {
	keys []sealKey // keys[0] seals
}

type sealKey struct {
	id   [keyIDLen]byte
	aead cipher.AEAD
}

// newSealer derives the purpose's key from each secret (current first).
// Random 96-bit nonces keep AES-GCM safe for far more than 2^32 seals per
// key, which a session secret never reaches between rotations.
func newSealer(purpose string, secrets []introspect.Secret) (*sealer, error) {
	s := &sealer{}
	for _, sec := range secrets {
		key, err := hkdf.Key(sha256.New, []byte(sec), nil, purpose, 32)
		if err != nil {
			return nil, err
		}
		id, err := hkdf.Key(sha256.New, []byte(sec), nil, labelKeyID, keyIDLen)
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
		k := sealKey{aead: aead}
		copy(k.id[:], id)
		s.keys = append(s.keys, k)
	}
	if len(s.keys) == 0 {
		return nil, errors.New("gateway: no session secret")
	}
	return s, nil
}

// seal encrypts plain bound to aad and returns the cookie-safe text.
func (s *sealer) seal(plain, aad []byte) string {
	k := s.keys[0]
	buf := make([]byte, sealHeader, sealHeader+len(plain)+k.aead.Overhead())
	buf[0] = sealVersion
	copy(buf[1:], k.id[:])
	nonce := buf[1+keyIDLen : sealHeader]
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (Go 1.24)
	buf = k.aead.Seal(buf, nonce, plain, aad)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// open decodes and decrypts text, which must have been sealed with aad,
// into buf (reused when large enough) and returns the plaintext. Any
// malformed, truncated, tampered or foreign value is false.
func (s *sealer) open(text string, aad, buf []byte) ([]byte, bool) {
	n := base64.RawURLEncoding.DecodedLen(len(text))
	if n < sealMinSize {
		return nil, false
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	// The decoder only reads src: viewing the string's bytes saves a copy
	// on the hot path.
	m, err := base64.RawURLEncoding.Decode(buf, unsafe.Slice(unsafe.StringData(text), len(text)))
	if err != nil || buf[0] != sealVersion {
		return nil, false
	}
	buf = buf[:m]
	for i := range s.keys {
		k := &s.keys[i]
		if [keyIDLen]byte(buf[1:1+keyIDLen]) != k.id {
			continue
		}
		nonce, ct := buf[1+keyIDLen:sealHeader], buf[sealHeader:]
		if plain, err := k.aead.Open(ct[:0], nonce, ct, aad); err == nil {
			return plain, true
		}
	}
	return nil, false
}
