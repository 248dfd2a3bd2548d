package logout

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/introspect/introspecttest"
)

// unlimited lifts the receivers' per-sender rate limit, which would
// otherwise answer most of a benchmark's requests 429.
func unlimited(c *Config) { c.Receivers = ReceiverConfig{RatePerSecond: 1e12, Burst: 1 << 30} }

// BenchmarkUniversalLogoutRS256 is one whole Global Token Revocation
// request per iteration through ServeHTTP: an RS256 JWT verified against
// the issuer's JWKS (a new jti each time: no cache helps), the replay
// check, the body parsed, a sub revocation of a new user stored (memory
// store) and the 204. The JWTs are signed before the timer starts. Run
// with -cpu=1: req/s is per core.
func BenchmarkUniversalLogoutRS256(b *testing.B) {
	key := introspecttest.RSA("rsa1")
	pub, err := jwk.Import(&key.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	if err := pub.Set(jwk.KeyIDKey, ssfKeyID); err != nil {
		b.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		b.Fatal(err)
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	b.Cleanup(srv.Close)
	f := newRxFixture(b, rxOptions{path: "-", mod: func(c *Config) {
		unlimited(c)
		v, err := introspect.New(introspect.Config{
			Issuers:     []introspect.Issuer{{Issuer: fixedIssuerBase, JWKSURI: srv.URL, Audiences: []string{"api"}, MaxTokenLifetime: time.Hour}},
			ClockSkew:   skew,
			Clock:       c.Clock,
			Revocations: c.Store.(introspect.Revocations),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(v.Close)
		c.Assertions = v
	}})
	hdr := map[string]any{"alg": "RS256", "kid": ssfKeyID, "typ": "JWT"}
	jwts, bodies := make([]string, b.N), make([]string, b.N)
	for i := range b.N {
		jwts[i] = signRS256(b, key, hdr, with(f.gtrClaims(), "jti", fmt.Sprintf("gtr-%d", i)))
		bodies[i] = issSubBody(f.strict, fmt.Sprintf("user-%d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := httptest.NewRequest(http.MethodPost, UniversalLogoutPath, strings.NewReader(bodies[i]))
		r.Header.Set("Authorization", "Bearer "+jwts[i])
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		f.ul.ServeHTTP(w, r)
		if w.Code != http.StatusNoContent {
			b.Fatalf("got %d %s; want 204", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkSSFCAEPRS256 is one whole CAEP push per iteration through
// ServeHTTP: an RS256 token-claims-change SET verified (a new jti each
// time), the replay check and a sub revocation of a new user stored
// (memory store), then the 202. The SETs are signed before the timer
// starts. Run with -cpu=1: req/s is per core.
func BenchmarkSSFCAEPRS256(b *testing.B) {
	f := newSSFFixture(b, ssfOptions{path: "-", mod: unlimited})
	sets := make([]string, b.N)
	for i := range b.N {
		c := setClaims(introspect.EventTokenClaimsChange, map[string]any{"format": "iss_sub", "iss": issA, "sub": fmt.Sprintf("user-%d", i)})
		c["jti"] = fmt.Sprintf("set-%d", i)
		c["events"] = map[string]any{introspect.EventTokenClaimsChange: map[string]any{
			"event_timestamp": t0.Add(-time.Second).Unix(), "claims": map[string]any{"role": "reader"},
			"initiating_entity": "admin", "reason_admin": map[string]any{"en": "role changed"},
		}}
		sets[i] = f.set(b, c)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w := httptest.NewRecorder()
		f.rx.ServeHTTP(w, ssfRequest(setType, sets[i], ""))
		if w.Code != http.StatusAccepted {
			b.Fatalf("got %d %s; want 202", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
