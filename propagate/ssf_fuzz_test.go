package propagate

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeKeys: the key file parser never panics and never returns a
// ring without a signing key.
func FuzzDecodeKeys(f *testing.F) {
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kid":"x","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := decodeKeys(data)
		if err != nil {
			return
		}
		signing := false
		for _, k := range keys {
			signing = signing || k.retired.IsZero()
		}
		if !signing {
			t.Fatal("a ring without a signing key was accepted")
		}
	})
}

// FuzzRefusal: a receiver's 400 body is read as an RFC 8935 error only
// when it is a JSON object with an err code; what is kept is bounded,
// printable UTF-8.
func FuzzRefusal(f *testing.F) {
	f.Add([]byte(`{"err":"invalid_request","description":"unknown subject"}`))
	f.Add([]byte(`{"err":""}`))
	f.Add([]byte(`{"err":"x\u0000\u001b[2J","description":"` + strings.Repeat("é", 300) + `"}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, ok := refusal(body)
		if !ok {
			return
		}
		if len(msg) > 300 || !utf8.ValidString(msg) || strings.ContainsAny(msg, "\x00\x1b\r\n") {
			t.Fatalf("refusal kept %q", msg)
		}
	})
}
