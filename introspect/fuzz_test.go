package introspect

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// fuzzSeeds are valid and near-valid tokens for the fixture at t0.
func fuzzSeeds(tb testing.TB, k *testKeys) []string {
	c := baseClaims()
	hydra := with(c, "iss", hydraIssuer, "aud", []string{})
	valid := signJWS(tb, hdr("RS256", "rs"), c, "RS256", k.rsa1)
	p := strings.Split(valid, ".")
	return []string{
		valid,
		signJWS(tb, hdr("ES256", "es"), c, "ES256", k.ec256),
		signJWS(tb, hdr("PS256", "ps"), c, "PS256", k.rsa2),
		signJWS(tb, hdr("EdDSA", ""), c, "EdDSA", k.ed),
		signJWS(tb, map[string]any{"alg": "RS256", "typ": "JWT", "kid": "rs"}, hydra, "RS256", k.rsa1),
		signJWS(tb, hdr("HS256", "rs"), c, "HS256", []byte("secret")),
		b64e([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + p[1] + ".",
		p[0] + "." + p[1] + "." + p[2] + "." + p[2] + ".x",
		`{"protected":"` + p[0] + `","payload":"` + p[1] + `","signature":"` + p[2] + `"}`,
		"",
		"a.b.c",
	}
}

// FuzzVerify checks that Verify never panics and accepts nothing that is
// not signed by a key of the issuer's set under an allow-listed alg.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, nil)
	for _, s := range fuzzSeeds(f, fx.keys) {
		f.Add(s)
	}
	allowed := map[string][]string{
		testIssuer:  {"RS256", "ES256", "PS256", "EdDSA"},
		hydraIssuer: {"RS256", "ES256"},
	}
	pubs := []crypto.PublicKey{&fx.keys.rsa1.PublicKey, &fx.keys.rsa2.PublicKey, &fx.keys.ec256.PublicKey, fx.keys.ed.Public()}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := fx.v.Verify(context.Background(), raw)
		if err != nil {
			if c != nil {
				t.Fatalf("got claims with error %v", err)
			}
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("got %v; want ErrInvalidToken or ErrUnavailable", err)
			}
			return
		}
		alg, ok := independentlyVerified(raw, pubs)
		if !ok {
			t.Fatalf("accepted a token no test key signed: %q", raw)
		}
		if !slices.Contains(allowed[c.Issuer], alg) {
			t.Fatalf("accepted alg %s for issuer %q", alg, c.Issuer)
		}
	})
}

// independentlyVerified checks raw's signature with the standard library
// only, against every key that fits its header alg, and returns that alg.
func independentlyVerified(raw string, pubs []crypto.PublicKey) (string, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", false
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return "", false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &h) != nil {
		return "", false
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return "", false
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	for _, pub := range pubs {
		var ok bool
		switch k := pub.(type) {
		case *rsa.PublicKey:
			switch h.Alg {
			case "RS256":
				ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
			case "PS256":
				ok = rsa.VerifyPSS(k, crypto.SHA256, digest[:], sig, nil) == nil
			}
		case *ecdsa.PublicKey:
			if h.Alg == "ES256" && len(sig) == 64 {
				ok = ecdsa.Verify(k, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
			}
		case ed25519.PublicKey:
			ok = h.Alg == "EdDSA" && ed25519.Verify(k, []byte(parts[0]+"."+parts[1]), sig)
		}
		if ok {
			return h.Alg, true
		}
	}
	return "", false
}

// TestFuzzCorpusAccepted keeps the committed valid seeds valid, so that the
// fuzzer mutates tokens that pass every check.
func TestFuzzCorpusAccepted(t *testing.T) {
	fx := newFixture(t, nil)
	for _, name := range []string{"valid-rs256", "valid-es256", "valid-ps256", "valid-eddsa-nokid", "hydra-jwt"} {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzVerify", name))
		if err != nil {
			t.Fatal(err)
		}
		_, lit, _ := strings.Cut(strings.TrimSpace(string(b)), "\nstring(")
		raw, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := fx.v.Verify(t.Context(), raw); err != nil {
			t.Errorf("%s: got %v; want accepted", name, err)
		}
	}
}
