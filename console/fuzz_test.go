package console

import (
	"strings"
	"testing"
	"time"
)

// FuzzSessionCookie: a cookie value of any bytes is refused cleanly (never
// a panic); a value that opens stops opening when any character of it
// changes (AES-GCM's integrity).
func FuzzSessionCookie(f *testing.F) {
	s, err := newSealer(strings.Repeat("k", 32), CookieName)
	if err != nil {
		f.Fatal(err)
	}
	good, err := s.seal(session{Token: "tok", CSRF: "c", Expires: t0.Add(time.Hour).Unix()})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add(good[:len(good)-1])
	f.Add(strings.Repeat("A", maxCookieLen+1))
	f.Fuzz(func(t *testing.T, value string) {
		v, err := s.open(value, t0)
		if err != nil {
			return
		}
		if v.Token == "" || v.CSRF == "" {
			t.Fatalf("opened an empty session: %+v", v)
		}
		for i := range len(value) {
			b := []byte(value)
			b[i] ^= 1
			if _, err := s.open(string(b), t0); err == nil {
				t.Fatalf("%q opens with byte %d changed", value, i)
			}
		}
	})
}
