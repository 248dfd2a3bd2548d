package logout

import (
	"net/http"
	"testing"
)

func TestMatchToken(t *testing.T) {
	creds := newAdminCredentials(tokens("ops", tokOps, "ci", tokCI, "dr", tokOps+"-dr").Tokens)
	tests := []struct {
		name, presented, wantName string
		wantOK                    bool
	}{
		{"first", tokOps, "ops", true},
		{"second", tokCI, "ci", true},
		{"last, which the first is a prefix of", tokOps + "-dr", "dr", true},
		{"prefix", tokOps[:10], "", false},
		{"longer", tokCI + "x", "", false},
		{"empty", "", "", false},
		{"one byte off", tokOps[:len(tokOps)-1] + "g", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := matchToken(creds, tt.presented)
			if name := c.name; name != tt.wantName || ok != tt.wantOK {
				t.Errorf("got %q, %v; want %q, %v", c.name, ok, tt.wantName, tt.wantOK)
			}
		})
	}
	if c, ok := matchToken(nil, tokOps); ok || c.name != "" {
		t.Errorf("no credentials: got %q, %v; want \"\", false", c.name, ok)
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		want   string
		wantOK bool
	}{
		{"bearer", []string{"Bearer abc"}, "abc", true},
		{"scheme case", []string{"bEaReR abc"}, "abc", true},
		{"spaces", []string{"Bearer    abc"}, "abc", true},
		{"missing", nil, "", false},
		{"empty", []string{""}, "", false},
		{"scheme only", []string{"Bearer"}, "", false},
		{"scheme and space", []string{"Bearer "}, "", false},
		{"basic", []string{"Basic abc"}, "", false},
		{"bearerish scheme", []string{"Bearerx abc"}, "", false},
		{"tab separator", []string{"Bearer\tabc"}, "", false},
		{"two headers", []string{"Bearer abc", "Bearer abc"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.header {
				h.Add("Authorization", v)
			}
			got, ok := bearerToken(h)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func BenchmarkMatchToken(b *testing.B) {
	creds := newAdminCredentials(tokens("ops", tokOps, "ci", tokCI, "dr", tokOps+"-dr").Tokens)
	b.ReportAllocs()
	for b.Loop() {
		matchToken(creds, tokCI)
	}
}
