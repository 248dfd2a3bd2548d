package logout

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// receiverFuzzSeeds are the content types and bodies FuzzBackchannelRequest
// starts from: valid logout requests (one per issuer) and near misses.
func receiverFuzzSeeds(tb testing.TB, f *rxFixture) [][2]string {
	c := f.claims()
	valid := formBody(f.token(tb, c))
	hydra := formBody(sign(tb, f.key, map[string]any{"alg": "ES256", "kid": keyID, "typ": "JWT"},
		with(c, "iss", f.hydra, "aud", []string{clientID}, "exp", nil, "jti", "jti-h")))
	return [][2]string{
		{form, valid},
		{form, hydra},
		{form + "; charset=utf-8", "a=b&" + valid + "&c=d"},
		{form, formBody(f.token(tb, with(c, "sid", nil, "sub", "alice", "jti", "jti-s")))},
		{form, formBody(f.token(tb, with(c, "nonce", "n")))},
		{"application/json", `{"logout_token":"x"}`},
		{form, valid + "&" + valid},
		{form, "logout_token=%zz"},
		{"", ""},
		{"multipart/form-data; boundary=x", "--x\r\n"},
	}
}

// FuzzBackchannelRequest sends arbitrary content types and bodies to the
// back-channel receiver. It must never panic, must answer 200, 400, 429 or
// 503, and may answer 200 — and add to the store — only for a form body
// whose logout_token is signed by the test key.
func FuzzBackchannelRequest(f *testing.F) {
	fx := newRxFixture(f, rxOptions{path: "-", mod: func(c *Config) {
		c.Receivers = ReceiverConfig{RatePerSecond: 1e9, Burst: 1 << 30}
	}})
	for _, s := range receiverFuzzSeeds(f, fx) {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		before := fx.store.Len()
		r := httptest.NewRequest(http.MethodPost, BackchannelPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		fx.bc.ServeHTTP(w, r)
		after := fx.store.Len()
		switch w.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusTooManyRequests, http.StatusServiceUnavailable:
			if after != before {
				t.Fatalf("answered %d but the store changed", w.Code)
			}
			return
		default:
			t.Fatalf("status %d", w.Code)
		}
		if !strings.HasPrefix(contentType, form) {
			t.Fatalf("accepted Content-Type %q", contentType)
		}
		v, err := url.ParseQuery(string(body))
		if err != nil || len(v["logout_token"]) != 1 || !verifiedES256(v["logout_token"][0], &fx.key.PublicKey) {
			t.Fatalf("accepted a body without one logout_token signed by the test key: %q", body)
		}
	})
}

// TestReceiverFuzzCorpusAccepted keeps the committed valid seeds valid, so
// that the fuzzer mutates requests that pass every check.
func TestReceiverFuzzCorpusAccepted(t *testing.T) {
	for _, name := range []string{"valid-sid", "valid-hydra-no-exp"} {
		t.Run(name, func(t *testing.T) {
			fx := newRxFixture(t, rxOptions{path: "-"})
			b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzBackchannelRequest", name))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 3 {
				t.Fatalf("got %d lines; want 3", len(lines))
			}
			ct, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
			if err != nil {
				t.Fatal(err)
			}
			body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "[]byte("), ")"))
			if err != nil {
				t.Fatal(err)
			}
			// The committed tokens were minted at t0; iat must be recent for
			// the Hydra-like one.
			fx.clock.Advance(time.Second)
			if w := fx.post(t, ct, body, nil); w.Code != http.StatusOK {
				t.Errorf("got %d %s; want 200", w.Code, w.Body)
			}
		})
	}
}
