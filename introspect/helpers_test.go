package introspect

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect/introspecttest"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

const testIssuer = "https://idp.example.com"

// newClock returns the tests' clock, standing at t0; key-set refreshes
// run on the wall clock, as in production.
func newClock() *clocktest.Clock { return clocktest.NewRealTimers(t0) }

// testKeys are the committed keys of the test kit.
type testKeys struct {
	rsa1, rsa2 *rsa.PrivateKey
	ec256      *ecdsa.PrivateKey
	ec384      *ecdsa.PrivateKey
	ed         ed25519.PrivateKey
}

func loadKeys(testing.TB) *testKeys {
	return &testKeys{
		rsa1:  introspecttest.RSA("rsa1"),
		rsa2:  introspecttest.RSA("rsa2"),
		ec256: introspecttest.ECDSA("ec256"),
		ec384: introspecttest.ECDSA("ec384"),
		ed:    introspecttest.Ed25519(),
	}
}

// jwkSpec describes one JWK of a test key set.
type jwkSpec struct {
	pub  crypto.PublicKey
	kid  string
	alg  string
	use  string
	ops  []string
	priv bool // publish the private key (to test that only its public half is used)
	key  crypto.Signer
}

// jwksJSON renders specs as a JWK Set.
func jwksJSON(tb testing.TB, specs []jwkSpec) []byte {
	tb.Helper()
	set := jwk.NewSet()
	for _, s := range specs {
		var raw any = s.pub
		if s.priv {
			raw = s.key
		}
		k, err := jwk.Import(raw)
		if err != nil {
			tb.Fatal(err)
		}
		for name, v := range map[string]string{jwk.KeyIDKey: s.kid, jwk.AlgorithmKey: s.alg, jwk.KeyUsageKey: s.use} {
			if v != "" {
				if err := k.Set(name, v); err != nil {
					tb.Fatalf("set %s=%s: %v", name, v, err)
				}
			}
		}
		if s.ops != nil {
			if err := k.Set(jwk.KeyOpsKey, s.ops); err != nil {
				tb.Fatal(err)
			}
		}
		if err := set.AddKey(k); err != nil {
			tb.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// idp is an httptest identity provider serving discovery and a JWKS whose
// content and failure mode can change, and counting requests.
type idp struct {
	srv        *httptest.Server
	jwksHits   atomic.Int64
	discHits   atomic.Int64
	mu         sync.Mutex
	jwks       []byte
	status     int
	ctype      string
	discIssuer string // "" means the server's own URL
	discJWKS   string // "" means the server's /jwks
	served     chan struct{}
}

func newIDP(tb testing.TB, jwks []byte) *idp {
	tb.Helper()
	p := &idp{jwks: jwks, status: http.StatusOK, ctype: "application/json", served: make(chan struct{}, 100)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		p.mu.Lock()
		body, status, ctype := p.jwks, p.status, p.ctype
		p.mu.Unlock()
		w.Header().Set("Content-Type", ctype)
		w.WriteHeader(status)
		_, _ = w.Write(body)
		select {
		case p.served <- struct{}{}:
		default:
		}
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discHits.Add(1)
		p.mu.Lock()
		iss, jw := p.discIssuer, p.discJWKS
		p.mu.Unlock()
		if iss == "" {
			iss = p.srv.URL
		}
		if jw == "" {
			jw = p.srv.URL + "/jwks"
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": jw})
	})
	p.srv = httptest.NewServer(mux)
	tb.Cleanup(p.srv.Close)
	return p
}

func (p *idp) set(f func(p *idp)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *idp) jwksURL() string { return p.srv.URL + "/jwks" }

// memRevocations is a small exact revocation set for the tests.
type memRevocations struct {
	mu sync.RWMutex
	m  map[revKey]time.Time
}

type revKey struct {
	kind  cache.Kind
	iss   string
	value string
}

func newRevocations() *memRevocations { return &memRevocations{m: map[revKey]time.Time{}} }

func (r *memRevocations) revoke(kind cache.Kind, iss, value string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[revKey{kind, iss, value}] = at
}

func (r *memRevocations) IsRevoked(c *cache.Credential) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.m[revKey{cache.KindJTI, c.Issuer, c.JTI}]; ok && c.JTI != "" {
		return true
	}
	if _, ok := r.m[revKey{cache.KindSID, c.Issuer, c.SID}]; ok && c.SID != "" {
		return true
	}
	for _, k := range []revKey{{cache.KindSub, c.Issuer, c.Sub}, {cache.KindClient, c.Issuer, c.ClientID}} {
		if at, ok := r.m[k]; ok && k.value != "" && !c.IssuedAt.After(at) {
			return true
		}
	}
	return false
}

var _ Revocations = (*memRevocations)(nil)

// b64e encodes a JWS segment.
func b64e(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// signJWS builds a compact JWS with our own crypto (independent of jwx):
// the signature is made with alg sigAlg and key, whatever the header says.
func signJWS(tb testing.TB, hdr, claims map[string]any, sigAlg string, key any) string {
	tb.Helper()
	input := b64e(mustJSON(tb, hdr)) + "." + b64e(mustJSON(tb, claims))
	return input + "." + b64e(rawSign(tb, sigAlg, key, []byte(input)))
}

func rawSign(tb testing.TB, alg string, key any, input []byte) []byte {
	tb.Helper()
	digest := func(h hash.Hash) []byte { h.Write(input); return h.Sum(nil) }
	var h crypto.Hash
	var hf func() hash.Hash
	switch alg[2:] {
	case "256":
		h, hf = crypto.SHA256, sha256.New
	case "384":
		h, hf = crypto.SHA384, sha512.New384
	case "512":
		h, hf = crypto.SHA512, sha512.New
	}
	var sig []byte
	var err error
	switch alg[:2] {
	case "RS":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), h, digest(hf()))
	case "PS":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), h, digest(hf()), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES":
		k := key.(*ecdsa.PrivateKey)
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, k, digest(hf()))
		if err == nil {
			n := (k.Curve.Params().BitSize + 7) / 8
			sig = make([]byte, 2*n)
			r.FillBytes(sig[:n])
			s.FillBytes(sig[n:])
		}
	case "HS":
		m := hmac.New(hf, key.([]byte))
		m.Write(input)
		sig = m.Sum(nil)
	case "Ed":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), input)
	case "no":
		sig = nil
	default:
		tb.Fatalf("unknown alg %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

// baseClaims are valid access-token claims at t0 for testIssuer.
func baseClaims() map[string]any {
	return map[string]any{
		"iss":       testIssuer,
		"sub":       "alice",
		"aud":       "api",
		"exp":       t0.Add(10 * time.Minute).Unix(),
		"iat":       t0.Add(-time.Minute).Unix(),
		"nbf":       t0.Add(-time.Minute).Unix(),
		"jti":       "jti-1",
		"sid":       "sid-1",
		"client_id": "client-1",
		"scope":     "read write",
		"email":     "alice@example.com",
	}
}

// with returns a copy of m with the given changes; a nil value deletes.
func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}
