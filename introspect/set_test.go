package introspect

import (
	"context"
	"crypto"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/clock/clocktest"
)

const (
	testTransmitter = "https://ssf.example.com"
	testSETAudience = "https://gateway.example.com/ssf"
)

type setFixture struct {
	keys  *testKeys
	idp   *idp
	clock *clocktest.Clock
	v     *SETVerifier
}

// newSETFixture returns a SETVerifier trusting testTransmitter with the
// standard key set and a 30s clock skew; mod may change the config first.
func newSETFixture(tb testing.TB, mod func(*SETConfig)) *setFixture {
	tb.Helper()
	f := &setFixture{keys: loadKeys(tb), clock: newClock()}
	f.idp = newIDP(tb, jwksJSON(tb, standardJWKS(f.keys)))
	cfg := SETConfig{
		Transmitters: []Transmitter{{Issuer: testTransmitter, JWKSURI: f.idp.jwksURL(), Audience: testSETAudience}},
		ClockSkew:    30 * time.Second,
		Clock:        f.clock,
		Metrics:      prometheus.NewRegistry(),
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewSETVerifier(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	f.v = v
	return f
}

func setHdr() map[string]any {
	return map[string]any{"alg": "RS256", "kid": "rs", "typ": "secevent+jwt"}
}

// subjects are one subject identifier of each supported format.
func subjects() map[string]map[string]any {
	return map[string]map[string]any{
		FormatIssSub: {"format": "iss_sub", "iss": testIssuer, "sub": "alice"},
		FormatEmail:  {"format": "email", "email": "alice@example.com"},
		FormatOpaque: {"format": "opaque", "id": "u-123"},
		FormatComplex: {"format": "complex",
			"user":    map[string]any{"format": "iss_sub", "iss": testIssuer, "sub": "alice"},
			"session": map[string]any{"format": "opaque", "id": "sid-1"},
			"device":  map[string]any{"format": "opaque", "id": "laptop"},
		},
	}
}

// setClaims are valid SET claims at t0 for testTransmitter.
func setClaims(event string, sub map[string]any) map[string]any {
	return map[string]any{
		"iss":    testTransmitter,
		"aud":    testSETAudience,
		"iat":    t0.Add(-5 * time.Second).Unix(),
		"jti":    "set-1",
		"sub_id": sub,
		"events": map[string]any{event: map[string]any{"event_timestamp": t0.Add(-time.Minute).Unix()}},
	}
}

func TestVerifySETAccepted(t *testing.T) {
	f := newSETFixture(t, nil)
	for _, event := range []string{EventSessionRevoked, EventCredentialChange, EventAccountDisabled, EventAccountPurged, EventCredentialCompromise, "https://example.com/unknown-event"} {
		for format, sub := range subjects() {
			t.Run(event[strings.LastIndex(event, "/")+1:]+"/"+format, func(t *testing.T) {
				set, err := f.v.VerifySET(t.Context(), signJWS(t, setHdr(), setClaims(event, sub), "RS256", f.keys.rsa1))
				if err != nil {
					t.Fatalf("got %v; want accepted", err)
				}
				if set.EventType != event || set.JTI != "set-1" || set.Subject.Format != format || set.Transmitter.Issuer != testTransmitter {
					t.Errorf("got %+v; want event %s, jti set-1, format %s", set, event, format)
				}
				if !set.IssuedAt.Equal(t0.Add(-5 * time.Second)) {
					t.Errorf("got iat %v; want %v", set.IssuedAt, t0.Add(-5*time.Second))
				}
				if _, ok := set.Event["event_timestamp"].(float64); !ok {
					t.Errorf("got event %v; want event_timestamp", set.Event)
				}
			})
		}
	}
}

func TestVerifySETSubjects(t *testing.T) {
	f := newSETFixture(t, nil)
	sign := func(c map[string]any) string { return signJWS(t, setHdr(), c, "RS256", f.keys.rsa1) }
	subs := subjects()
	inEvent := setClaims(EventSessionRevoked, nil)
	delete(inEvent, "sub_id")
	inEvent["events"] = map[string]any{EventSessionRevoked: map[string]any{"subject": subs[FormatEmail]}}
	tests := []struct {
		name string
		raw  string
		want SubjectID
	}{
		{"iss_sub", sign(setClaims(EventSessionRevoked, subs[FormatIssSub])), SubjectID{Format: FormatIssSub, Issuer: testIssuer, Subject: "alice"}},
		{"email", sign(setClaims(EventSessionRevoked, subs[FormatEmail])), SubjectID{Format: FormatEmail, Email: "alice@example.com"}},
		{"opaque", sign(setClaims(EventSessionRevoked, subs[FormatOpaque])), SubjectID{Format: FormatOpaque, ID: "u-123"}},
		{"jwt_id", sign(setClaims(EventTokenClaimsChange, map[string]any{"format": "jwt_id", "iss": testIssuer, "jti": "at-1"})), SubjectID{Format: FormatJWTID, Issuer: testIssuer, JTI: "at-1"}},
		{"in the event (CAEP)", sign(inEvent), SubjectID{Format: FormatEmail, Email: "alice@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := f.v.VerifySET(t.Context(), tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if set.Subject != tt.want {
				t.Errorf("got %+v; want %+v", set.Subject, tt.want)
			}
		})
	}
	set, err := f.v.VerifySET(t.Context(), sign(setClaims(EventSessionRevoked, subs[FormatComplex])))
	if err != nil {
		t.Fatal(err)
	}
	if u, s := set.Subject.User, set.Subject.Session; u == nil || s == nil || *u != (SubjectID{Format: FormatIssSub, Issuer: testIssuer, Subject: "alice"}) || *s != (SubjectID{Format: FormatOpaque, ID: "sid-1"}) {
		t.Errorf("got complex %+v; want user iss_sub alice and session opaque sid-1", set.Subject)
	}
}

func TestVerifySETRefused(t *testing.T) {
	f := newSETFixture(t, nil)
	k := f.keys
	c := setClaims(EventSessionRevoked, subjects()[FormatIssSub])
	rs := func(claims map[string]any) string { return signJWS(t, setHdr(), claims, "RS256", k.rsa1) }
	withHdr := func(kv ...any) map[string]any { return with(setHdr(), kv...) }
	valid := rs(c)
	p := strings.Split(valid, ".")
	ev := func(v any) map[string]any { return map[string]any{EventSessionRevoked: v} }
	sub := func(v any) map[string]any { return with(c, "sub_id", v) }
	tests := []struct {
		name string
		raw  string
		code string
	}{
		{"bad signature", p[0] + "." + p[1] + "." + flip(p[2]), SETInvalidKey},
		{"signed by another key", signJWS(t, setHdr(), c, "RS256", k.rsa2), SETInvalidKey},
		{"unknown kid", signJWS(t, withHdr("kid", "nope"), c, "RS256", k.rsa1), SETInvalidKey},
		{"key not for alg", signJWS(t, withHdr("alg", "RS384"), c, "RS384", k.rsa1), SETInvalidKey},
		{"alg none", b64e(mustJSON(t, withHdr("alg", "none"))) + "." + p[1] + ".", SETInvalidRequest},
		{"alg HS256", signJWS(t, withHdr("alg", "HS256"), c, "HS256", []byte("secret")), SETInvalidRequest},
		{"wrong iss", rs(with(c, "iss", "https://evil.example.com")), SETInvalidIssuer},
		{"wrong aud", rs(with(c, "aud", "https://other.example.com")), SETInvalidAudience},
		{"aud missing", rs(with(c, "aud", nil)), SETInvalidAudience},
		{"aud not a string", rs(with(c, "aud", 3)), SETInvalidRequest},
		{"missing typ", signJWS(t, withHdr("typ", nil), c, "RS256", k.rsa1), SETInvalidRequest},
		{"typ JWT", signJWS(t, withHdr("typ", "JWT"), c, "RS256", k.rsa1), SETInvalidRequest},
		{"typ at+jwt", signJWS(t, withHdr("typ", "at+jwt"), c, "RS256", k.rsa1), SETInvalidRequest},
		{"sub present", rs(with(c, "sub", "alice")), SETInvalidRequest},
		{"exp present", rs(with(c, "exp", t0.Add(time.Hour).Unix())), SETInvalidRequest},
		{"iat missing", rs(with(c, "iat", nil)), SETInvalidRequest},
		{"iat in the future", rs(with(c, "iat", t0.Add(time.Minute).Unix())), SETInvalidRequest},
		{"iat too old", rs(with(c, "iat", t0.Add(-25*time.Hour).Unix())), SETInvalidRequest},
		{"iat a string", rs(with(c, "iat", "now")), SETInvalidRequest},
		{"jti missing", rs(with(c, "jti", nil)), SETInvalidRequest},
		{"jti a number", rs(with(c, "jti", 7)), SETInvalidRequest},
		{"events missing", rs(with(c, "events", nil)), SETInvalidRequest},
		{"events an array", rs(with(c, "events", []any{})), SETInvalidRequest},
		{"no event", rs(with(c, "events", map[string]any{})), SETInvalidRequest},
		{"two events", rs(with(c, "events", map[string]any{EventSessionRevoked: map[string]any{}, EventAccountDisabled: map[string]any{}})), SETInvalidRequest},
		{"event not an object", rs(with(c, "events", ev(true))), SETInvalidRequest},
		{"sub_id missing", rs(with(c, "sub_id", nil)), SETInvalidRequest},
		{"sub_id both places", rs(with(c, "events", ev(map[string]any{"subject": subjects()[FormatEmail]}))), SETInvalidRequest},
		{"sub_id not an object", rs(sub("alice")), SETInvalidRequest},
		{"format unsupported", rs(sub(map[string]any{"format": "phone_number", "phone_number": "+1"})), SETInvalidRequest},
		{"format missing", rs(sub(map[string]any{"email": "a@example.com"})), SETInvalidRequest},
		{"jwt_id without jti", rs(sub(map[string]any{"format": "jwt_id", "iss": testIssuer})), SETInvalidRequest},
		{"iss_sub without sub", rs(sub(map[string]any{"format": "iss_sub", "iss": testIssuer})), SETInvalidRequest},
		{"email empty", rs(sub(map[string]any{"format": "email", "email": ""})), SETInvalidRequest},
		{"opaque id a number", rs(sub(map[string]any{"format": "opaque", "id": 1})), SETInvalidRequest},
		{"complex without user or session", rs(sub(map[string]any{"format": "complex", "device": map[string]any{"format": "opaque", "id": "d"}})), SETInvalidRequest},
		{"complex in complex", rs(sub(map[string]any{"format": "complex", "user": subjects()[FormatComplex]})), SETInvalidRequest},
		{"complex bad session", rs(sub(map[string]any{"format": "complex", "session": map[string]any{"format": "opaque"}})), SETInvalidRequest},
		{"value too long", rs(sub(map[string]any{"format": "opaque", "id": strings.Repeat("x", 1025)})), SETInvalidRequest},
		{"logout token (typ logout+jwt)", signJWS(t, withHdr("typ", "logout+jwt"), with(c, "events", map[string]any{backchannelLogoutEvent: map[string]any{}}), "RS256", k.rsa1), SETInvalidRequest},
		{"logout event typed as a SET", rs(with(c, "events", map[string]any{backchannelLogoutEvent: map[string]any{}})), SETInvalidRequest},
		{"issuer's logout token", signJWS(t, logoutHdr("logout+jwt"), logoutClaims(), "RS256", k.rsa1), SETInvalidRequest},
		{"newline in the payload", p[0] + "." + p[1][:10] + "\n" + p[1][10:] + "." + p[2], SETInvalidRequest},
		{"trailing CRLF", valid + "\r\n", SETInvalidRequest},
		{"JWE", "a.b.c.d.e", SETInvalidRequest},
		{"JSON serialization", `{"payload":"x","signatures":[]}`, SETInvalidRequest},
		{"empty", "", SETInvalidRequest},
		{"too long", strings.Repeat("a", maxTokenBytes+1), SETInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := f.v.VerifySET(t.Context(), tt.raw)
			if set != nil {
				t.Fatalf("got %+v; want refused", set)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v; want ErrInvalidToken", err)
			}
			se, ok := errors.AsType[*SETError](err)
			if !ok || se.Code != tt.code {
				t.Fatalf("got %v; want code %s", err, tt.code)
			}
		})
	}
	if _, err := f.v.VerifySET(t.Context(), valid); err != nil {
		t.Errorf("valid SET: got %v; want accepted", err)
	}
}

func TestVerifySETClockSkew(t *testing.T) {
	f := newSETFixture(t, nil)
	for _, tt := range []struct {
		name string
		iat  time.Time
		ok   bool
	}{
		{"iat within skew ahead", t0.Add(30 * time.Second), true},
		{"iat past skew ahead", t0.Add(31 * time.Second), false},
		{"iat max age plus skew ago", t0.Add(-24*time.Hour - 30*time.Second), true},
		{"iat older", t0.Add(-24*time.Hour - 31*time.Second), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := with(setClaims(EventAccountDisabled, subjects()[FormatOpaque]), "iat", tt.iat.Unix())
			_, err := f.v.VerifySET(t.Context(), signJWS(t, setHdr(), c, "RS256", f.keys.rsa1))
			if got := err == nil; got != tt.ok {
				t.Errorf("got accepted=%v (%v); want %v", got, err, tt.ok)
			}
		})
	}
	if got, want := f.v.MaxAge(), 24*time.Hour+30*time.Second; got != want {
		t.Errorf("got MaxAge %s; want %s", got, want)
	}
}

func TestVerifySETKeys(t *testing.T) {
	f := newSETFixture(t, nil)
	c := setClaims(EventAccountDisabled, subjects()[FormatOpaque])
	for _, alg := range []struct {
		alg, kid string
		key      any
	}{{"ES256", "es", f.keys.ec256}, {"PS256", "ps", f.keys.rsa2}, {"EdDSA", "ed", f.keys.ed}} {
		raw := signJWS(t, map[string]any{"alg": alg.alg, "kid": alg.kid, "typ": "application/secevent+jwt"}, c, alg.alg, alg.key)
		if _, err := f.v.VerifySET(t.Context(), raw); err != nil {
			t.Errorf("%s: got %v; want accepted", alg.alg, err)
		}
	}
	// An unknown kid causes at most one refetch per cooldown.
	before := f.idp.jwksHits.Load()
	for range 5 {
		raw := signJWS(t, map[string]any{"alg": "RS256", "kid": "unknown", "typ": "secevent+jwt"}, c, "RS256", f.keys.rsa1)
		if _, err := f.v.VerifySET(t.Context(), raw); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("got %v; want ErrInvalidToken", err)
		}
	}
	if got := f.idp.jwksHits.Load() - before; got != 0 {
		t.Errorf("got %d refetches within the cooldown; want 0", got)
	}
	f.clock.Advance(31 * time.Second)
	raw := signJWS(t, map[string]any{"alg": "RS256", "kid": "unknown", "typ": "secevent+jwt"}, c, "RS256", f.keys.rsa1)
	_, _ = f.v.VerifySET(t.Context(), raw)
	if got := f.idp.jwksHits.Load() - before; got != 1 {
		t.Errorf("got %d refetches after the cooldown; want 1", got)
	}
}

func TestVerifySETUnavailable(t *testing.T) {
	f := newSETFixture(t, nil)
	f.idp.set(func(p *idp) { p.status = http.StatusInternalServerError })
	raw := signJWS(t, setHdr(), setClaims(EventAccountDisabled, subjects()[FormatOpaque]), "RS256", f.keys.rsa1)
	_, err := f.v.VerifySET(t.Context(), raw)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Errorf("got %v; want ErrUnavailable only", err)
	}
}

func TestSETTransmitter(t *testing.T) {
	f := newSETFixture(t, func(c *SETConfig) { c.Transmitters[0].AuthorizationHeader = "Bearer s3cret" })
	raw := signJWS(t, setHdr(), setClaims(EventAccountDisabled, subjects()[FormatOpaque]), "RS256", f.keys.rsa2)
	tr, ok := f.v.Transmitter(raw)
	if !ok || tr.Issuer != testTransmitter || tr.AuthorizationHeader != "Bearer s3cret" {
		t.Errorf("got %+v, %v; want the configured transmitter", tr, ok)
	}
	for _, bad := range []string{"", "a.b.c", signJWS(t, setHdr(), with(setClaims(EventAccountDisabled, nil), "iss", "https://x.example"), "RS256", f.keys.rsa1)} {
		if _, ok := f.v.Transmitter(bad); ok {
			t.Errorf("Transmitter(%.20q): got ok; want false", bad)
		}
	}
}

func TestSETConfigValidate(t *testing.T) {
	good := Transmitter{Issuer: testTransmitter, JWKSURI: "https://ssf.example.com/jwks", Audience: "gw"}
	tests := []struct {
		name string
		cfg  SETConfig
		want []string
	}{
		{"valid", SETConfig{Transmitters: []Transmitter{good}}, nil},
		{"none", SETConfig{}, []string{"transmitters: at least one"}},
		{"empty", SETConfig{Transmitters: []Transmitter{{}}}, []string{"transmitters[0].issuer: required", "transmitters[0].jwks_uri: required", "transmitters[0].audience: required"}},
		{"bad urls", SETConfig{Transmitters: []Transmitter{{Issuer: "http://ssf.example.com", JWKSURI: "ftp://x", Audience: "a"}}}, []string{"transmitters[0].issuer: must use https", "transmitters[0].jwks_uri: unsupported scheme"}},
		{"duplicate", SETConfig{Transmitters: []Transmitter{good, good}}, []string{"transmitters[1].issuer: duplicate of transmitters[0]"}},
		{"header", SETConfig{Transmitters: []Transmitter{with2(good, "Bearer x\n"), with2(good, " Bearer x")}}, []string{"transmitters[0].authorization_header: only printable", "transmitters[1].authorization_header: must not start or end"}},
		{"durations", SETConfig{Transmitters: []Transmitter{good}, ClockSkew: -1, MaxAge: -1, JWKSMinRefetchInterval: -1}, []string{"clock_skew: must not", "max_age: must not", "jwks_min_refetch_interval: must not"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil; want %v", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "Bearer x") {
				t.Errorf("got %q; the header value must not be quoted", err)
			}
		})
	}
	if _, err := NewSETVerifier(SETConfig{}); err == nil {
		t.Error("NewSETVerifier(empty): got nil error; want one")
	}
}

// with2 is good with the Authorization header h (the name keeps with free
// for claim maps).
func with2(good Transmitter, h Secret) Transmitter {
	good.AuthorizationHeader = h
	return good
}

// setFuzzSeeds are valid and near-valid SETs for the fixture.
func setFuzzSeeds(tb testing.TB, k *testKeys) []string {
	subs := subjects()
	valid := signJWS(tb, setHdr(), setClaims(EventSessionRevoked, subs[FormatComplex]), "RS256", k.rsa1)
	p := strings.Split(valid, ".")
	return []string{
		valid,
		signJWS(tb, setHdr(), setClaims(EventCredentialChange, subs[FormatIssSub]), "RS256", k.rsa1),
		signJWS(tb, setHdr(), setClaims(EventAccountPurged, subs[FormatEmail]), "RS256", k.rsa1),
		signJWS(tb, setHdr(), with(setClaims(EventAccountPurged, subs[FormatEmail]), "sub", "x"), "RS256", k.rsa1),
		signJWS(tb, logoutHdr("logout+jwt"), logoutClaims(), "RS256", k.rsa1),
		signJWS(tb, with(setHdr(), "alg", "HS256"), setClaims(EventAccountDisabled, subs[FormatOpaque]), "HS256", []byte("secret")),
		b64e([]byte(`{"alg":"none","typ":"secevent+jwt"}`)) + "." + p[1] + ".",
		"",
		"a.b.c",
	}
}

// FuzzVerifySET checks that VerifySET never panics, classifies every
// refusal, and accepts only SETs signed by a key of the transmitter with
// the SSF profile's claims.
func FuzzVerifySET(f *testing.F) {
	fx := newSETFixture(f, nil)
	for _, s := range setFuzzSeeds(f, fx.keys) {
		f.Add(s)
	}
	pubs := []crypto.PublicKey{&fx.keys.rsa1.PublicKey, &fx.keys.rsa2.PublicKey, &fx.keys.ec256.PublicKey, &fx.keys.ec384.PublicKey, fx.keys.ed.Public()}
	f.Fuzz(func(t *testing.T, raw string) {
		set, err := fx.v.VerifySET(context.Background(), raw)
		if err != nil {
			if set != nil {
				t.Fatalf("got a SET with error %v", err)
			}
			if se, ok := errors.AsType[*SETError](err); ok {
				switch se.Code {
				case SETInvalidRequest, SETInvalidKey, SETInvalidIssuer, SETInvalidAudience:
				default:
					t.Fatalf("got code %q", se.Code)
				}
				return
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("got %v; want a *SETError or ErrUnavailable", err)
			}
			return
		}
		if _, ok := independentlyVerified(raw, pubs); !ok {
			t.Fatalf("accepted a SET not signed by a test key: %q", raw)
		}
		if set.JTI == "" || set.IssuedAt.IsZero() || set.EventType == "" || set.Subject.Format == "" || set.Transmitter.Issuer != testTransmitter {
			t.Fatalf("accepted an incomplete SET: %+v", set)
		}
	})
}

// TestSETFuzzCorpusAccepted keeps the committed valid seed valid, so that
// the fuzzer mutates SETs that pass every check.
func TestSETFuzzCorpusAccepted(t *testing.T) {
	fx := newSETFixture(t, nil)
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzVerifySET", "valid-complex"))
	if err != nil {
		t.Fatal(err)
	}
	_, lit, _ := strings.Cut(strings.TrimSpace(string(b)), "\nstring(")
	raw, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fx.v.VerifySET(t.Context(), raw); err != nil {
		t.Errorf("got %v; want accepted", err)
	}
}

// BenchmarkVerifySET is a full RS256 SET verification. Run with -cpu=1
// for the SETs/s of one core.
func BenchmarkVerifySET(b *testing.B) {
	f := newSETFixture(b, nil)
	raw := signJWS(b, setHdr(), setClaims(EventSessionRevoked, subjects()[FormatComplex]), "RS256", f.keys.rsa1)
	ctx := context.Background()
	if _, err := f.v.VerifySET(ctx, raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.VerifySET(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "SETs/s")
}
