package logout

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/introspect/introspecttest"
)

// Names used by the receiver fixture.
const (
	clientID  = "gateway"
	bclEvent  = "http://schemas.openid.net/event/backchannel-logout"
	keyID     = "k1"
	hydraPath = "/hydra"
	// gatewayURL is the fixture's public_url.
	gatewayURL = "https://gw.example"
)

// rxFixture is a Backchannel and a Frontchannel on a real introspect
// Verifier (keys from an httptest JWKS server) and a real cache.Store.
type rxFixture struct {
	key      *ecdsa.PrivateKey
	strict   string // issuer URL, InsecureLogoutTokenWithoutExp off
	hydra    string // issuer URL, InsecureLogoutTokenWithoutExp on
	jwksFail atomic.Bool
	clock    *clocktest.Clock
	store    *cache.Store
	bc       *Backchannel
	fc       *Frontchannel
	ul       *UniversalLogout
	reg      *prometheus.Registry
	logs     *bytes.Buffer
}

// rxOptions change the fixture before it is built.
type rxOptions struct {
	// path of the bbolt file; "" means a file in t.TempDir(), "-" memory.
	path  string
	store Store // replaces the cache.Store as Config.Store when set
	mod   func(*Config)
}

// fixedIssuerBase is the URL of the JWKS server of the fuzz fixture, so
// that the committed seeds name the right issuer.
const fixedIssuerBase = "http://127.0.0.1:1"

func newRxFixture(tb testing.TB, o rxOptions) *rxFixture {
	tb.Helper()
	f := &rxFixture{key: introspecttest.ECDSA("ec256"), clock: clocktest.NewRealTimers(t0), reg: prometheus.NewRegistry(), logs: new(bytes.Buffer)}
	jwks := jwksOf(tb, &f.key.PublicKey)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.jwksFail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	tb.Cleanup(srv.Close)
	f.strict, f.hydra = fixedIssuerBase, fixedIssuerBase+hydraPath

	var storePath string
	switch o.path {
	case "":
		storePath = filepath.Join(tb.TempDir(), "revocations.db")
	case "-":
	default:
		storePath = o.path
	}
	s, err := cache.Open(cache.Config{Path: storePath, Clock: f.clock, ClockSkew: skew})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	f.store = s

	v, err := introspect.New(introspect.Config{
		Issuers: []introspect.Issuer{
			{Issuer: f.strict, JWKSURI: srv.URL, Audiences: []string{"api"}, ClientID: clientID, IDTokenSignedResponseAlg: "ES256", MaxTokenLifetime: time.Hour},
			{Issuer: f.hydra, JWKSURI: srv.URL, Audiences: []string{"api"}, ClientID: clientID, IDTokenSignedResponseAlg: "ES256", MaxTokenLifetime: time.Hour, InsecureLogoutTokenWithoutExp: true},
		},
		ClockSkew:              skew,
		Revocations:            s,
		Clock:                  f.clock,
		JWKSMinRefetchInterval: time.Nanosecond,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(v.Close)

	cfg := Config{
		Lifetimes: map[string]time.Duration{f.strict: time.Hour, f.hydra: time.Hour},
		ClockSkew: skew,
		Store:     s,
		Verifier:  v,
		Replays:   s,
		LiveSIDs:  s,
		Clock:     f.clock,

		Assertions: v,
		PublicURL:  gatewayURL,
		Logger:     slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:    f.reg,
	}
	if o.store != nil {
		cfg.Store = o.store
	}
	if o.mod != nil {
		o.mod(&cfg)
	}
	if f.bc, err = NewBackchannel(cfg); err != nil {
		tb.Fatal(err)
	}
	if f.fc, err = NewFrontchannel(cfg); err != nil {
		tb.Fatal(err)
	}
	if f.ul, err = NewUniversalLogout(cfg); err != nil {
		tb.Fatal(err)
	}
	return f
}

func jwksOf(tb testing.TB, pub *ecdsa.PublicKey) []byte {
	tb.Helper()
	k, err := jwk.Import(pub)
	if err != nil {
		tb.Fatal(err)
	}
	for name, v := range map[string]string{jwk.KeyIDKey: keyID, jwk.AlgorithmKey: "ES256", jwk.KeyUsageKey: "sig"} {
		if err := k.Set(name, v); err != nil {
			tb.Fatal(err)
		}
	}
	set := jwk.NewSet()
	if err := set.AddKey(k); err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// claims are a valid logout token's claims at t0 from the strict issuer.
func (f *rxFixture) claims() map[string]any {
	return map[string]any{
		"iss":    f.strict,
		"aud":    clientID,
		"iat":    t0.Add(-5 * time.Second).Unix(),
		"exp":    t0.Add(2 * time.Minute).Unix(),
		"jti":    "jti-1",
		"sid":    "sid-1",
		"events": map[string]any{bclEvent: map[string]any{}},
	}
}

// with returns a copy of m changed by the pairs; a nil value deletes.
func with(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

var b64 = base64.RawURLEncoding

// sign makes an ES256 compact JWS with our own crypto.
func sign(tb testing.TB, key *ecdsa.PrivateKey, hdr, claims map[string]any) string {
	tb.Helper()
	hb, err := json.Marshal(hdr)
	if err != nil {
		tb.Fatal(err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	d := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, d[:])
	if err != nil {
		tb.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig)
}

func (f *rxFixture) token(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return sign(tb, f.key, map[string]any{"alg": "ES256", "kid": keyID, "typ": "logout+jwt"}, claims)
}

// verifiedES256 reports whether raw is a compact JWS whose signature pub
// verifies, checked with the standard library only.
func verifiedES256(raw string, pub *ecdsa.PublicKey) bool {
	p := strings.Split(raw, ".")
	if len(p) != 3 {
		return false
	}
	sig, err := b64.DecodeString(p[2])
	if err != nil || len(sig) != 64 {
		return false
	}
	d := sha256.Sum256([]byte(p[0] + "." + p[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, d[:], r, s)
}

func formBody(token string) string { return url.Values{"logout_token": {token}}.Encode() }

func bclRequest(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, BackchannelPath, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

// statusAtWrite records, when the status is written, whether the store
// already held the revocation: the 200 must come after Revoke returned.
type statusAtWrite struct {
	*httptest.ResponseRecorder
	check   func() bool
	checked bool
	held    bool
}

func (w *statusAtWrite) WriteHeader(code int) {
	if !w.checked {
		w.checked, w.held = true, w.check()
	}
	w.ResponseRecorder.WriteHeader(code)
}

// counter returns the value of name{result}.
func counterValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
