package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"golang.org/x/sync/errgroup"
)

// Token settings shared by every contender.
const (
	audience      = "bench-api"
	benchSub      = "bench-user"
	benchEmail    = "bench-user@example.com"
	tokenLifetime = time.Hour
	benchKID      = "bench-1"
)

// issuer is a minimal OpenID provider on loopback: discovery and JWKS, and
// in-process minting of RS256 at+jwt access tokens (RFC 9068), like the
// demo issuer of cmd/oidcgate.
type issuer struct {
	url string
	// key is the raw key: signing with it skips the per-call export (and
	// RSA precomputation) that signing with a jwk.Key costs in jwx.
	key *rsa.PrivateKey
	srv *http.Server
}

func startIssuer() (*issuer, error) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	key, err := jwk.Import(raw)
	if err != nil {
		return nil, err
	}
	if err := key.Set(jwk.KeyIDKey, benchKID); err != nil {
		return nil, err
	}
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		return nil, err
	}
	for k, v := range map[string]any{jwk.AlgorithmKey: jwa.RS256(), jwk.KeyUsageKey: "sig"} {
		if err := pub.Set(k, v); err != nil {
			return nil, err
		}
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	is := &issuer{url: "http://" + ln.Addr().String(), key: raw}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                is.url,
			"jwks_uri":                              is.url + "/jwks",
			"authorization_endpoint":                is.url + "/authorize",
			"token_endpoint":                        is.url + "/token",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, set) })
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = is.srv.Serve(ln) }()
	return is, nil
}

func (is *issuer) close() { _ = is.srv.Close() }

// mint signs an access token for sub with a unique jti, valid from now for
// tokenLifetime, with scope "read" and the email claims oauth2-proxy wants.
func (is *issuer) mint(sub, jti string, now time.Time) (string, error) {
	tok, err := jwt.NewBuilder().
		Issuer(is.url).Subject(sub).Audience([]string{audience}).
		IssuedAt(now).NotBefore(now).Expiration(now.Add(tokenLifetime)).JwtID(jti).
		Claim("client_id", "bench-client").Claim("scope", "read").
		Claim("email", benchEmail).Claim("email_verified", true).Build()
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "at+jwt"); err != nil {
		return "", err
	}
	if err := hdr.Set(jws.KeyIDKey, benchKID); err != nil {
		return "", err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), is.key, jws.WithProtectedHeaders(hdr)))
	return string(signed), err
}

// mintPool signs n distinct tokens (jti prefix-i) on every core; sub(i)
// names each token's subject.
func (is *issuer) mintPool(ctx context.Context, n int, prefix string, sub func(int) string) ([]string, error) {
	out := make([]string, n)
	now := time.Now().Add(-time.Second)
	g, gctx := errgroup.WithContext(ctx)
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		g.Go(func() error {
			for i := w; i < n; i += workers {
				if err := gctx.Err(); err != nil {
					return err
				}
				t, err := is.mint(sub(i), fmt.Sprintf("%s-%d", prefix, i), now)
				if err != nil {
					return err
				}
				out[i] = t
			}
			return nil
		})
	}
	return out, g.Wait()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
