package propagate

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// assertionLifetime is the lifetime of a client assertion; Okta refuses
// one valid for more than an hour.
const assertionLifetime = 5 * time.Minute

// clientAssertionType is the client_assertion_type of private_key_jwt
// (RFC 7523 §2.2).
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// parsePrivateKey reads a PEM RSA (2048 bits or more) or EC P-256 private
// key, PKCS#8, PKCS#1 or SEC 1, and the JWS alg it signs with.
func parsePrivateKey(pemText string) (crypto.Signer, jwa.SignatureAlgorithm, error) {
	block, rest := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, jwa.SignatureAlgorithm{}, errors.New("not a PEM private key")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, jwa.SignatureAlgorithm{}, errors.New("more than one PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, jwa.SignatureAlgorithm{}, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, jwa.SignatureAlgorithm{}, errors.New("the PEM private key does not parse")
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, jwa.SignatureAlgorithm{}, errors.New("an RSA key needs at least 2048 bits")
		}
		return k, jwa.RS256(), nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, jwa.SignatureAlgorithm{}, errors.New("an EC key must be on P-256")
		}
		return k, jwa.ES256(), nil
	}
	return nil, jwa.SignatureAlgorithm{}, errors.New("only RSA and EC P-256 keys are supported")
}

// privateKeyJWT signs client assertions for private_key_jwt (RFC 7523
// §2.2, OpenID Connect Core 1.0 §9): iss and sub the client id, aud the
// token endpoint, a short exp and a fresh jti.
type privateKeyJWT struct {
	clientID, audience, kid string
	key                     crypto.Signer
	alg                     jwa.SignatureAlgorithm
}

func (p *privateKeyJWT) sign(now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	tok, err := jwt.NewBuilder().Issuer(p.clientID).Subject(p.clientID).Audience([]string{p.audience}).
		IssuedAt(now).Expiration(now.Add(assertionLifetime)).JwtID(hex.EncodeToString(jti[:])).Build()
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if p.kid != "" {
		if err := hdr.Set(jws.KeyIDKey, p.kid); err != nil {
			return "", err
		}
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(p.alg, p.key, jws.WithProtectedHeaders(hdr)))
	return string(signed), err
}
