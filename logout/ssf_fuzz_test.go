package logout

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/oidcgate/oidcgate/introspect"
)

// fuzzSSFAuth is the Authorization header of the fuzz fixture.
const fuzzSSFAuth = "Bearer fuzz-0123456789abcdef"

// ssfFuzzSeeds are the content types, Authorization headers and bodies
// FuzzSSFRequest starts from: valid pushes and near misses.
func ssfFuzzSeeds(tb testing.TB, f *ssfFixture) [][3]string {
	c := setClaims(introspect.EventSessionRevoked, subComplex)
	valid := f.set(tb, c)
	return [][3]string{
		{setType, fuzzSSFAuth, valid},
		{setType, fuzzSSFAuth, f.set(tb, with(setClaims(introspect.EventCredentialChange, subIssSub), "jti", "set-cc"))},
		{setType, fuzzSSFAuth, f.set(tb, with(setClaims(introspect.EventAccountDisabled, subEmail), "jti", "set-ad"))},
		{setType, fuzzSSFAuth, f.set(tb, with(setClaims("https://example.com/other", subOpaque), "jti", "set-o"))},
		{setType, fuzzSSFAuth, f.set(tb, with(c, "sub", "alice"))},
		{setType, "Bearer wrong", valid},
		{"application/jwt", fuzzSSFAuth, valid},
		{setType + "; charset=utf-8", fuzzSSFAuth, " " + valid + "\r\n"},
		{setType, fuzzSSFAuth, ""},
		{"", "", "a.b.c"},
	}
}

// FuzzSSFRequest sends arbitrary content types, Authorization headers and
// bodies to the SSF receiver. It must never panic, must answer 202, 400,
// 401, 429 or 503, and may change the store only with a 202 for a body
// signed by the transmitter's key and the right Authorization header.
func FuzzSSFRequest(f *testing.F) {
	fx := newSSFFixture(f, ssfOptions{path: "-", auth: fuzzSSFAuth, mod: func(c *Config) {
		c.Receivers = ReceiverConfig{RatePerSecond: 1e9, Burst: 1 << 30}
	}})
	for _, s := range ssfFuzzSeeds(f, fx) {
		f.Add(s[0], s[1], []byte(s[2]))
	}
	f.Fuzz(func(t *testing.T, contentType, auth string, body []byte) {
		before := fx.store.Len()
		r := httptest.NewRequest(http.MethodPost, SSFPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		fx.rx.ServeHTTP(w, r)
		after := fx.store.Len()
		switch w.Code {
		case http.StatusAccepted:
			if w.Body.Len() != 0 {
				t.Fatalf("202 with a body %q", w.Body)
			}
			if after != before && (auth != fuzzSSFAuth || !verifiedRS256(string(bytes.TrimSpace(body)), &fx.key.PublicKey)) {
				t.Fatalf("the store changed for a push not signed by the key or without the header")
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable:
			if after != before {
				t.Fatalf("answered %d but the store changed", w.Code)
			}
		default:
			t.Fatalf("got status %d", w.Code)
		}
	})
}

// verifiedRS256 reports whether raw is a compact JWS whose RS256
// signature pub verifies, checked with the standard library only.
func verifiedRS256(raw string, pub *rsa.PublicKey) bool {
	p := strings.Split(raw, ".")
	if len(p) != 3 {
		return false
	}
	sig, err := b64.DecodeString(p[2])
	if err != nil {
		return false
	}
	d := sha256.Sum256([]byte(p[0] + "." + p[1]))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
}

// TestSSFFuzzCorpusAccepted keeps the committed valid seed valid, so that
// the fuzzer mutates pushes that pass every check.
func TestSSFFuzzCorpusAccepted(t *testing.T) {
	fx := newSSFFixture(t, ssfOptions{path: "-", auth: fuzzSSFAuth})
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzSSFRequest", "valid-session-revoked"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines; want 4", len(lines))
	}
	var args [3]string
	for i, l := range lines[1:] {
		l = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(l, "string("), "[]byte("), ")")
		if args[i], err = strconv.Unquote(l); err != nil {
			t.Fatal(err)
		}
	}
	if w := fx.push(t, ssfRequest(args[0], args[2], args[1])); w.Code != http.StatusAccepted || fx.store.Len() != 1 {
		t.Errorf("got %d %s (%d entries); want 202 and one entry", w.Code, w.Body, fx.store.Len())
	}
}
