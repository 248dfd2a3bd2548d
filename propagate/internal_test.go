package propagate

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"7", 7 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"Fri, 04 Dec 2026 12:00:30 GMT", 30 * time.Second},
		{"Fri, 04 Dec 2026 11:59:00 GMT", 0}, // past
		{"86400", maxRetryAfter},
		{"99999999999999999999", maxRetryAfter},
		{"-5", 0},
		{"1.5", 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %s; want %s", tt.in, got, tt.want)
		}
	}
}

func TestRateLimitReset(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	for in, want := range map[string]time.Duration{
		"": 0, "x": 0, "-1": 0, "1799999999": 0,
		"1800000042": 42 * time.Second, "1900000000": maxRetryAfter,
	} {
		if got := rateLimitReset(in, now); got != want {
			t.Errorf("rateLimitReset(%q) = %s; want %s", in, got, want)
		}
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"error":"invalid_client","error_description":"Invalid client credentials"}`, "invalid_client: Invalid client credentials"},
		{`{"error":"User not found"}`, "User not found"},
		{`{"errorCode":"E0000007","errorSummary":"Not found: Resource not found: x (User)"}`, "E0000007: Not found: Resource not found: x (User)"},
		{`{"error":{"code":"Request_ResourceNotFound","message":"Resource 'x' does not exist"}}`, "Request_ResourceNotFound: Resource 'x' does not exist"},
		{`<html>`, ""},
		{``, ""},
		{`{"error":"a\u0000b\nc"}`, "abc"},
		{`[1,2]`, ""},
	}
	for _, tt := range tests {
		if got := errorText([]byte(tt.body)); got != tt.want {
			t.Errorf("errorText(%q) = %q; want %q", tt.body, got, tt.want)
		}
	}
	long := errorText([]byte(`{"error":"` + strings.Repeat("é", 500) + `"}`))
	if len(long) > maxErrorText+len("…") || !strings.HasSuffix(long, "…") {
		t.Errorf("errorText of a long error = %d bytes; want at most %d, cut with …", len(long), maxErrorText)
	}
}

// FuzzErrorText feeds error bodies an authority might send: never a
// panic, never more than the bound, only printable text.
func FuzzErrorText(f *testing.F) {
	for _, s := range []string{
		`{"error":"invalid_client","error_description":"x"}`,
		`{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit"}`,
		`{"error":{"code":"TooManyRequests","message":"slow down"}}`,
		`{"error":{"code":1}}`, `{"error":null}`, `"str"`, `<html></html>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := errorText(body)
		if len(got) > maxErrorText+len("…") {
			t.Fatalf("errorText = %d bytes; want at most %d", len(got), maxErrorText+len("…"))
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("errorText = %q holds a control character", got)
			}
		}
	})
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "7", "Fri, 04 Dec 2026 12:00:30 GMT", "-1", "1e9", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("retryAfter(%q) = %s; want within [0, %s]", v, d, maxRetryAfter)
		}
	})
}

func TestParsePrivateKey(t *testing.T) {
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	sec1, _ := x509.MarshalECPrivateKey(p256)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name, pem, alg, err string
	}{
		{"rsa pkcs8", pemOf("PRIVATE KEY", pkcs8(rsa2048)), "RS256", ""},
		{"rsa pkcs1", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048)), "RS256", ""},
		{"ec pkcs8", pemOf("PRIVATE KEY", pkcs8(p256)), "ES256", ""},
		{"ec sec1", pemOf("EC PRIVATE KEY", sec1), "ES256", ""},
		{"rsa 1024", pemOf("PRIVATE KEY", pkcs8(rsa1024)), "", "at least 2048 bits"},
		{"p-384", pemOf("PRIVATE KEY", pkcs8(p384)), "", "P-256"},
		{"ed25519", pemOf("PRIVATE KEY", pkcs8(ed)), "", "only RSA and EC"},
		{"public key", pemOf("PUBLIC KEY", []byte{1}), "", "not a private key"},
		{"two blocks", pemOf("PRIVATE KEY", pkcs8(p256)) + pemOf("PRIVATE KEY", pkcs8(p256)), "", "more than one"},
		{"not pem", "MIIB...", "", "not a PEM"},
		{"bad der", pemOf("PRIVATE KEY", []byte("junk")), "", "does not parse"},
	}
	for _, tt := range tests {
		key, alg, err := parsePrivateKey(tt.pem)
		switch {
		case tt.err == "" && (err != nil || key == nil || alg.String() != tt.alg):
			t.Errorf("%s: parsePrivateKey = %v, %v; want a key for %s", tt.name, alg, err, tt.alg)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: parsePrivateKey err = %v; want %q", tt.name, err, tt.err)
		}
	}
}
