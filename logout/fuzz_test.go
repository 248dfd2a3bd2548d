package logout

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"unicode/utf8"

	"github.com/oidcgate/oidcgate/cache"
)

// FuzzAdminRequest sends random bodies as an authenticated revocation. The
// handler must never panic, must answer JSON, and may answer 201 only for
// a body that is valid UTF-8 JSON naming exactly one non-empty target and
// only known string members; the entry it answers must be that target.
func FuzzAdminRequest(f *testing.F) {
	for _, seed := range []string{
		`{"sub":"alice"}`,
		`{"sid":"s-1","issuer":"https://idp-a.example","reason":"password reset"}`,
		`{"jti":"j-1"}`,
		`{"client_id":"billing"}`,
		`{"session":"gw-1"}`,
		`{"sub":"alice","sub":"bob"}`,
		`{"sub":"alice","jti":"j"}`,
		`{"sub":12}`,
		`{"sub":"alice"}{}`,
		`{"sub":[[[[[[[[[[]]]]]]]]]]}`,
		"{\"sub\":\"\xff\"}",
		`{"session":"gw","issuer":"https://idp-a.example"}`,
		`{"sub":"\ud800"}`,
		``,
	} {
		f.Add([]byte(seed))
	}
	fx := newFixture(f, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/admin/revocations", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tokOps)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		fx.admin.ServeHTTP(w, r)
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("answer %d is not JSON: %q", w.Code, w.Body)
		}
		switch w.Code {
		case http.StatusCreated:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return
		default:
			t.Fatalf("status: got %d; want 201, 400 or 413", w.Code)
		}
		target, value, ok := validRevocation(body)
		if !ok {
			t.Fatalf("201 for a body that is not a valid revocation: %q", body)
		}
		e := decodeEntry(t, w)
		if e.Kind == cache.KindSession {
			value = cache.SessionDigest(value)
		}
		if targets[target] != e.Kind || e.Value != value {
			t.Fatalf("entry %s %q; want %s %q", e.Kind, e.Value, targets[target], value)
		}
	})
}

// validRevocation judges body independently of parseRevoke: valid UTF-8,
// one JSON object of known string members, exactly one non-empty target.
func validRevocation(body []byte) (target, value string, ok bool) {
	if !utf8.Valid(body) {
		return "", "", false
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil || m == nil {
		return "", "", false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", "", false
	}
	for k, v := range m {
		s, isString := v.(string)
		if !isString || (k != "issuer" && k != "reason" && targets[k] == "") {
			return "", "", false
		}
		if targets[k] != "" {
			if target != "" || s == "" {
				return "", "", false
			}
			target, value = k, s
		}
	}
	return target, value, target != ""
}

func BenchmarkParseRevoke(b *testing.B) {
	body := []byte(`{"sid":"s-1","issuer":"https://idp-a.example","reason":"password reset"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseRevoke(body); err != nil {
			b.Fatal(err)
		}
	}
}
