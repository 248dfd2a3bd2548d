package logout

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzUniversalRequest feeds random bodies to the Universal Logout
// request parser (seeds in testdata/fuzz/FuzzUniversalRequest). It must
// never panic; every refusal is a requestError (answered 400); and a body
// it accepts must be, for encoding/json too, a UTF-8 JSON object whose
// only member sub_id holds exactly the string members of its format,
// with the values the parser returned.
func FuzzUniversalRequest(f *testing.F) {
	for _, seed := range []string{
		`{"sub_id":{"format":"iss_sub","iss":"https://idp.example","sub":"alice"}}`,
		`{"sub_id":{"format":"email","email":"Alice@Example.com"}}`,
		`{"sub_id":{"format":"opaque","id":"00u1dnq5S0CfjlkpABCD"}}`,
		`{"sub_id":{"format":"iss_sub","iss":"https://idp.example"}}`,
		`{"sub_id":{"format":"email","email":"a@b","sub":"x"}}`,
		`{"sub_id":{"format":"email","email":"a@b"},"sub_id":{"format":"email","email":"c@d"}}`,
		`{"sub_id":{"format":"email","email":"a@b","email":"c@d"}}`,
		`{"sub_id":[[[[[[[[[[]]]]]]]]]]}`,
		`[{"sub_id":{}}]`,
		`{"sub_id":{"format":"email","email":"a@b"}}{}`,
		"{\"sub_id\":{\"format\":\"email\",\"email\":\"\xff@b\"}}",
		`{"sub_id":{"format":"email","email":"a b@c"}}`,
		`{"sub_id":{"format":"iss_sub","iss":"\ud800","sub":"x"}}`,
		`{"sub_id":{"format":12}}`,
		`null`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parseUniversal(body)
		if err != nil {
			if _, ok := errors.AsType[requestError](err); !ok {
				t.Fatalf("refusal is not a requestError: %T %v", err, err)
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("accepted invalid UTF-8: %q", body)
		}
		var top map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&top); err != nil || dec.More() || len(top) != 1 {
			t.Fatalf("accepted %q: not one JSON object with one member", body)
		}
		var members map[string]string
		if err := json.Unmarshal(top["sub_id"], &members); err != nil {
			t.Fatalf("accepted %q: sub_id is not an object of strings: %v", body, err)
		}
		switch s.Format {
		case formatIssSub:
			if len(members) != 3 || members["iss"] != s.Issuer || members["sub"] != s.Subject || s.Issuer == "" || s.Subject == "" {
				t.Fatalf("accepted %q as %+v", body, s)
			}
		case formatEmail:
			if len(members) != 2 || strings.ToLower(members["email"]) != s.Email || !strings.Contains(s.Email, "@") {
				t.Fatalf("accepted %q as %+v", body, s)
			}
		default:
			t.Fatalf("accepted format %q", s.Format)
		}
		if members["format"] != s.Format {
			t.Fatalf("format: got %q; want %q", s.Format, members["format"])
		}
	})
}
