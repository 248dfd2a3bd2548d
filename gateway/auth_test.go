package gateway

import (
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		in        string
		wantToken string
		want      authResult
	}{
		{"Bearer abc", "abc", authBearer},
		{"bearer abc", "abc", authBearer},
		{"BEARER abc", "abc", authBearer},
		{"Bearer   abc", "abc", authBearer},
		{"Bearer aZ09-._~+/", "aZ09-._~+/", authBearer},
		{"Bearer abc==", "abc==", authBearer},
		{"Bearer eyJ.eyJ.sig", "eyJ.eyJ.sig", authBearer},
		{"Basic YWxhZGRpbjpvcGVuc2VzYW1l", "", authOtherScheme},
		{"DPoP abc", "", authOtherScheme},
		{"Bearerabc", "", authOtherScheme},
		{"", "", authMalformed},
		{" Bearer abc", "", authMalformed},
		{"Bearer", "", authMalformed},
		{"Bearer ", "", authMalformed},
		{"Bearer =", "", authMalformed},
		{"Bearer ab=c", "", authMalformed},
		{"Bearer abc ", "", authMalformed},
		{"Bearer abc def", "", authMalformed},
		{"Bearer\tabc", "", authMalformed},
		{"Bearer abc,def", "", authMalformed},
		{`Bearer "abc"`, "", authMalformed},
		{"Bearer ab\x00c", "", authMalformed},
		{"Bearer abcé", "", authMalformed},
		{"Bear(er abc", "", authMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			tok, res := parseAuthorization(tt.in)
			if tok != tt.wantToken || res != tt.want {
				t.Errorf("parseAuthorization(%q): got (%q, %d); want (%q, %d)", tt.in, tok, res, tt.wantToken, tt.want)
			}
		})
	}
}

func TestParseAuthorizationAllocs(t *testing.T) {
	v := "Bearer " + strings.Repeat("abc.", 200)
	if got := testing.AllocsPerRun(100, func() { parseAuthorization(v) }); got != 0 {
		t.Errorf("allocations: got %v; want 0", got)
	}
}

// FuzzParseAuthorization checks that the parser never panics, accepts only
// RFC 6750 §2.1 credentials, and that what it accepts round-trips.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		"Bearer abc", "bearer  a.b.c", "Bearer abc==", "Basic dXNlcjpwdw==", "Bearer", "Bearer ",
		"Bearer a b", "Bearer\ta", "", "Bearer ab=c", "Bearer é", "DPoP x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok, res := parseAuthorization(v)
		switch res {
		case authBearer:
			if !validB64Token(tok) || !strings.HasSuffix(v, tok) {
				t.Fatalf("parseAuthorization(%q) accepted token %q", v, tok)
			}
			if !strings.EqualFold(v[:7], "bearer ") {
				t.Fatalf("parseAuthorization(%q) accepted another scheme", v)
			}
			for _, c := range []byte(tok) {
				if strings.IndexByte("-._~+/=", c) < 0 && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
					t.Fatalf("token %q has byte %q", tok, c)
				}
			}
			if again, res := parseAuthorization("Bearer " + tok); again != tok || res != authBearer {
				t.Fatalf("round trip of %q: got (%q, %d)", tok, again, res)
			}
		case authOtherScheme, authMalformed:
			if tok != "" {
				t.Fatalf("parseAuthorization(%q) returned token %q with result %d", v, tok, res)
			}
		default:
			t.Fatalf("parseAuthorization(%q): result %d", v, res)
		}
	})
}
