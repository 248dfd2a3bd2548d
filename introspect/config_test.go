package introspect

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIssuerValidate(t *testing.T) {
	ok := Issuer{Issuer: "https://idp.example.com", Audiences: []string{"api"}}
	tests := []struct {
		name string
		mod  func(i *Issuer)
		want []string // every line of the error, in order; nil means valid
	}{
		{"minimal", func(*Issuer) {}, nil},
		{"loopback http", func(i *Issuer) {
			i.Issuer, i.JWKSURI, i.Discovery = "http://127.0.0.1:4444", "http://[::1]:1/jwks", "http://localhost:4444/.well-known/openid-configuration"
		}, nil},
		{"Hydra settings", func(i *Issuer) {
			i.Audiences, i.InsecureSkipAudienceCheck, i.AccessTokenTypes = nil, true, []string{"JWT"}
		}, nil},
		{"every asymmetric alg", func(i *Issuer) {
			i.AccessTokenAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
			i.IDTokenSignedResponseAlg = "ES256"
		}, nil},
		{"missing issuer", func(i *Issuer) { i.Issuer = "" }, []string{"issuer: required"}},
		{"relative issuer", func(i *Issuer) { i.Issuer = "idp.example.com" }, []string{"issuer: not an absolute URL"}},
		{"http issuer", func(i *Issuer) { i.Issuer = "http://idp.example.com" }, []string{"issuer: must use https (http only on loopback hosts)"}},
		{"issuer with query", func(i *Issuer) { i.Issuer = "https://idp.example.com?x=1" }, []string{"issuer: must not have a query or fragment"}},
		{"bad URLs", func(i *Issuer) {
			i.JWKSURI, i.Discovery, i.IntrospectionEndpoint = "/jwks", "ftp://idp.example.com/d", "http://10.0.0.1/introspect"
		}, []string{
			`discovery: unsupported scheme "ftp" (want https)`,
			"jwks_uri: not an absolute URL",
			"introspection_endpoint: must use https (http only on loopback hosts)",
			"introspection_endpoint: needs client_id and client_secret to authenticate with",
		}},
		{"introspection settings", func(i *Issuer) {
			i.IntrospectJWTs, i.IntrospectionAuthMethod = true, "private_key_jwt"
			i.IntrospectionCacheTTL, i.IntrospectionNegativeTTL, i.IntrospectionTimeout = -1, -1, -1
		}, []string{
			"introspect_jwts: needs introspection_endpoint",
			`introspection_auth_method: "private_key_jwt" is not one of client_secret_basic, client_secret_post`,
			"introspection_cache_ttl: must not be negative",
			"introspection_negative_ttl: must not be negative",
			"introspection_timeout: must not be negative",
		}},
		{"no audiences", func(i *Issuer) { i.Audiences = nil }, []string{"audiences: required unless insecure_skip_audience_check is set"}},
		{"empty audience", func(i *Issuer) { i.Audiences = []string{"api", ""} }, []string{"audiences[1]: empty"}},
		{"none and HS256", func(i *Issuer) { i.AccessTokenAlgs = []string{"RS256", "none", "HS256", "ES256K"} }, []string{
			`access_token_algs[1]: "none" is never allowed`,
			`access_token_algs[2]: "HS256" is symmetric (HMAC); only RS*, PS*, ES* and EdDSA are allowed`,
			`access_token_algs[3]: unsupported alg "ES256K" (want RS*, PS*, ES* or EdDSA)`,
		}},
		{"empty alg list", func(i *Issuer) { i.AccessTokenAlgs = []string{} }, []string{"access_token_algs: empty list; omit it for the default [RS256, ES256]"}},
		{"HS256 ID tokens", func(i *Issuer) { i.IDTokenSignedResponseAlg = "HS256" }, []string{
			`id_token_signed_response_alg: "HS256" is symmetric (HMAC); only RS*, PS*, ES* and EdDSA are allowed`,
		}},
		{"empty typ", func(i *Issuer) { i.AccessTokenTypes = []string{" "} }, []string{"access_token_types[0]: empty (tokens without typ are always refused)"}},
		{"empty typ list", func(i *Issuer) { i.AccessTokenTypes = []string{} }, []string{"access_token_types: empty list; omit it for the default [at+jwt]"}},
		{"negative lifetime", func(i *Issuer) { i.MaxTokenLifetime = -time.Second }, []string{"max_token_lifetime: must not be negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := ok
			is.Audiences = slices.Clone(ok.Audiences)
			tt.mod(&is)
			err := is.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	iss := Issuer{Issuer: "https://idp.example.com", Audiences: []string{"api"}}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"valid", Config{Issuers: []Issuer{iss}, Revocations: newRevocations()}, nil},
		{"empty", Config{}, []string{"issuers: at least one issuer is required", "revocations: required"}},
		{"paths and duplicates", Config{
			Issuers:   []Issuer{iss, {Issuer: "https://b.example.com", JWKSURI: "x"}, iss},
			ClockSkew: -1, CacheMaxTTL: -1, CacheMaxEntries: -1, JWKSRefreshInterval: -1, JWKSMinRefetchInterval: -1,
			Revocations: newRevocations(),
		}, []string{
			"issuers[1].jwks_uri: not an absolute URL",
			"issuers[1].audiences: required unless insecure_skip_audience_check is set",
			"issuers[2].issuer: duplicate of issuers[0]",
			"clock_skew: must not be negative",
			"cache_max_ttl: must not be negative",
			"jwks_refresh_interval: must not be negative",
			"jwks_min_refetch_interval: must not be negative",
			"cache_max_entries: must not be negative",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q; want %q", got, tt.want)
			}
			if _, nerr := New(tt.cfg); (nerr == nil) != (tt.want == nil) {
				t.Errorf("New: got %v; want an error exactly when Validate fails", nerr)
			}
		})
	}
}

func TestNormalizeTyp(t *testing.T) {
	tests := []struct{ in, want string }{
		{"at+jwt", "application/at+jwt"},
		{"AT+JWT", "application/at+jwt"},
		{"application/at+jwt", "application/at+jwt"},
		{"Application/At+Jwt", "application/at+jwt"},
		{"JWT", "application/jwt"},
		{"text/at+jwt", "text/at+jwt"},
	}
	for _, tt := range tests {
		if got := normalizeTyp(tt.in); got != tt.want {
			t.Errorf("normalizeTyp(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
