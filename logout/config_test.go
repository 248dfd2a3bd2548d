package logout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/introspect"
)

func tokens(pairs ...string) AdminConfig {
	var c AdminConfig
	for i := 0; i+1 < len(pairs); i += 2 {
		c.Tokens = append(c.Tokens, AdminToken{Name: pairs[i], Token: introspect.Secret(pairs[i+1])})
	}
	return c
}

func TestAdminConfigValidate(t *testing.T) {
	short := "0123456789abcdef0123456789abcde" // 31 characters
	tests := []struct {
		name string
		cfg  AdminConfig
		want []string // every message, in order; nil means valid
	}{
		{"valid", tokens("ops", tokOps, "ci", tokCI), nil},
		{"no tokens", AdminConfig{}, []string{"tokens: at least one token is required"}},
		{"empty name", tokens("", tokOps), []string{"tokens[0].name: required"}},
		{"long name", tokens(strings.Repeat("n", 65), tokOps), []string{"tokens[0].name: longer than 64 characters"}},
		{"name with space", tokens("on call", tokOps), []string{"tokens[0].name: only visible ASCII characters are allowed"}},
		{"duplicate name", tokens("ops", tokOps, "ops", tokCI), []string{"tokens[1].name: duplicate of tokens[0].name"}},
		{"empty token", tokens("ops", ""), []string{"tokens[0].token: shorter than 32 characters"}},
		{"short token", tokens("ops", tokOps, "ci", short), []string{"tokens[1].token: shorter than 32 characters"}},
		{"token with space", tokens("ops", strings.Repeat("a", 20)+" "+strings.Repeat("b", 20)), []string{"tokens[0].token: only visible ASCII characters are allowed"}},
		{"non-ASCII token", tokens("ops", strings.Repeat("é", 20)), []string{"tokens[0].token: only visible ASCII characters are allowed"}},
		{"duplicate token", tokens("ops", tokOps, "ci", tokOps), []string{"tokens[1].token: same as tokens[0].token"}},
		{"every problem at once", tokens("", short, "x", tokOps, "x", tokOps), []string{
			"tokens[0].name: required",
			"tokens[0].token: shorter than 32 characters",
			"tokens[2].name: duplicate of tokens[1].name",
			"tokens[2].token: same as tokens[1].token",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if got := messages(err); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got %q; want %q", got, tt.want)
			}
			for _, tok := range tt.cfg.Tokens {
				if err != nil && tok.Token != "" && strings.Contains(err.Error(), string(tok.Token)) {
					t.Errorf("error %q contains a token", err)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		return Config{
			Admin:     tokens("ops", tokOps),
			Lifetimes: map[string]time.Duration{issA: time.Hour},
			Store:     openStore(t),
		}
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"valid", func(*Config) {}, nil},
		{"valid without issuers", func(c *Config) { c.Lifetimes = nil }, nil},
		{"admin paths are prefixed", func(c *Config) { c.Admin = tokens("ops", "short") }, []string{"admin.tokens[0].token: shorter than 32 characters"}},
		{"empty issuer", func(c *Config) { c.Lifetimes[""] = time.Hour }, []string{`lifetimes[""]: empty issuer`}},
		{"long issuer", func(c *Config) { c.Lifetimes[strings.Repeat("i", cache.MaxValueLen+1)] = time.Hour }, []string{"lifetimes: an issuer is longer than 1024 bytes"}},
		{"zero lifetime", func(c *Config) { c.Lifetimes[issB] = 0 }, []string{`lifetimes["https://idp-b.example"]: max_token_lifetime not positive`}},
		{"negative session max age", func(c *Config) { c.SessionMaxAge = -time.Second }, []string{"session_max_age: negative"}},
		{"negative clock skew", func(c *Config) { c.ClockSkew = -time.Second }, []string{"clock_skew: negative"}},
		{"no store", func(c *Config) { c.Store = nil }, []string{"store: required"}},
		{"every problem at once", func(c *Config) { *c = Config{Lifetimes: map[string]time.Duration{issA: -1}, ClockSkew: -1} }, []string{
			"admin.tokens: at least one token is required",
			`lifetimes["https://idp-a.example"]: max_token_lifetime not positive`,
			"clock_skew: negative",
			"store: required",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid()
			tt.mod(&cfg)
			if got := messages(cfg.Validate()); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got %q; want %q", got, tt.want)
			}
			_, err := NewAdmin(cfg)
			if (err != nil) != (tt.want != nil) {
				t.Errorf("NewAdmin: got %v; want error %v", err, tt.want != nil)
			}
		})
	}
}

// messages splits a joined error into its messages.
func messages(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var s []string
		for _, e := range j.Unwrap() {
			s = append(s, messages(e)...)
		}
		return s
	}
	return []string{err.Error()}
}

func TestNewAdminSharesRegisteredCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := Config{Admin: tokens("ops", tokOps), Store: openStore(t), Metrics: reg}
	for i := range 2 {
		if _, err := NewAdmin(cfg); err != nil {
			t.Fatalf("NewAdmin #%d: got %v; want nil", i, err)
		}
	}
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "oidcgate_admin_revocations_total", Help: "not a counter vec"})
	other := prometheus.NewRegistry()
	other.MustRegister(clash)
	cfg.Metrics = other
	if _, err := NewAdmin(cfg); err == nil {
		t.Errorf("NewAdmin with a clashing collector: got nil; want error")
	}
}

func TestRetention(t *testing.T) {
	r := retention{lifetimes: map[string]time.Duration{issA: time.Hour, issB: 10 * time.Minute}, sessionMaxAge: 8 * time.Hour, skew: skew}
	tests := []struct {
		e    cache.Entry
		want time.Time
	}{
		{cache.Entry{Issuer: issA, Kind: cache.KindSub, RevokedAt: t0}, t0.Add(time.Hour + 2*skew)},
		{cache.Entry{Issuer: issB, Kind: cache.KindJTI, RevokedAt: t0}, t0.Add(10*time.Minute + 2*skew)},
		{cache.Entry{Kind: cache.KindSession, RevokedAt: t0}, t0.Add(8*time.Hour + skew)},
	}
	for _, tt := range tests {
		if got := r.expiresAt(tt.e); !got.Equal(tt.want) {
			t.Errorf("expiresAt(%s %s): got %v; want %v", tt.e.Kind, tt.e.Issuer, got, tt.want)
		}
	}
}

func TestErrorPrefixKeepsWrapping(t *testing.T) {
	sentinel := errors.New("inner")
	errs := prefixed("admin.", errors.Join(sentinel))
	if len(errs) != 1 || !errors.Is(errs[0], sentinel) || errs[0].Error() != "admin.inner" {
		t.Errorf("got %v; want [admin.inner] wrapping the sentinel", errs)
	}
}
