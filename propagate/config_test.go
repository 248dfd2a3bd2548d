package propagate_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/oidcgate/oidcgate/propagate"
)

// testKeyPEM is an EC P-256 private key (PKCS#8) made for these tests.
var testKeyPEM = func() propagate.Secret {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return propagate.Secret(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}()

func TestConfigValidate(t *testing.T) {
	kc := propagate.Config{Type: "keycloak", URL: "https://sso.example.com", Realm: "acme", ClientID: "oidcgate-admin", ClientSecret: "s3cret"}
	with := func(c propagate.Config, f func(*propagate.Config)) propagate.Config { f(&c); return c }
	tests := []struct {
		name string
		cfg  propagate.Config
		want []string // substrings, one per expected problem; nil means valid
	}{
		{"keycloak ok", kc, nil},
		{"keycloak loopback http", with(kc, func(c *propagate.Config) { c.URL = "http://127.0.0.1:8080" }), nil},
		{"keycloak localhost http", with(kc, func(c *propagate.Config) { c.URL = "http://localhost:8080" }), nil},
		{"keycloak ipv6 loopback", with(kc, func(c *propagate.Config) { c.URL = "http://[::1]:8080" }), nil},
		{"keycloak triggers", with(kc, func(c *propagate.Config) { c.On = []string{"admin", "ssf", "revoke_endpoint"} }), nil},
		{"okta api token", propagate.Config{Type: "okta", URL: "https://acme.okta.com", APIToken: "00abc"}, nil},
		{"okta service app", propagate.Config{Type: "okta", URL: "https://acme.okta.com", ClientID: "0oa1", PrivateKey: testKeyPEM, PrivateKeyID: "k1", TokenURL: "https://acme.okta.com/oauth2/v1/token"}, nil},
		{"entra ok", propagate.Config{Type: "entra", ClientID: "app", ClientSecret: "x", TokenURL: "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"}, nil},
		{"hydra ok", propagate.Config{Type: "hydra", URL: "http://127.0.0.1:4445"}, nil},
		{"hydra bearer", propagate.Config{Type: "hydra", URL: "https://hydra-admin.example.com", APIToken: "ory_pat_x"}, nil},

		{"empty", propagate.Config{}, []string{"type: required"}},
		{"unknown type", propagate.Config{Type: "auth0", URL: "https://x.example"}, []string{`type: "auth0" is not one of`}},
		{"http outside loopback", with(kc, func(c *propagate.Config) { c.URL = "http://sso.example.com" }), []string{"url: must use https"}},
		{"url with credentials", with(kc, func(c *propagate.Config) { c.URL = "https://u:p@sso.example.com" }), []string{"url: must not hold credentials"}},
		{"url with query", with(kc, func(c *propagate.Config) { c.URL = "https://sso.example.com/?a=b" }), []string{"url: must not have a query"}},
		{"relative url", with(kc, func(c *propagate.Config) { c.URL = "/admin" }), []string{"url: not an absolute URL"}},
		{"ftp url", with(kc, func(c *propagate.Config) { c.URL = "ftp://sso.example.com" }), []string{`url: unsupported scheme "ftp"`}},
		{"token url http", with(kc, func(c *propagate.Config) { c.TokenURL = "http://sso.example.com/token" }), []string{"token_url: must use https"}},
		{"keycloak missing everything", propagate.Config{Type: "keycloak"}, []string{"url: required", "realm: required", "client_id: required", "client_secret: required"}},
		{"keycloak bad realm", with(kc, func(c *propagate.Config) { c.Realm = "../master" }), []string{"realm: "}},
		{"keycloak api token", with(kc, func(c *propagate.Config) { c.APIToken = "t" }), []string{"api_token: only for okta and hydra"}},
		{"realm outside keycloak", propagate.Config{Type: "hydra", URL: "http://127.0.0.1:4445", Realm: "acme"}, []string{"realm: only for type keycloak"}},
		{"okta no credentials", propagate.Config{Type: "okta", URL: "https://acme.okta.com"}, []string{"api_token: required"}},
		{"okta service app with a secret", propagate.Config{Type: "okta", URL: "https://acme.okta.com", ClientID: "0oa1", ClientSecret: "x", TokenURL: "https://acme.okta.com/oauth2/v1/token"}, []string{"private_key: required", "client_secret: okta's service apps authenticate with private_key_jwt"}},
		{"okta both", propagate.Config{Type: "okta", URL: "https://acme.okta.com", APIToken: "t", ClientID: "0oa1", PrivateKey: testKeyPEM}, []string{"api_token: give either"}},
		{"okta half service app", propagate.Config{Type: "okta", URL: "https://acme.okta.com", PrivateKey: testKeyPEM}, []string{"client_id: required", "token_url: required"}},
		{"okta bad key", propagate.Config{Type: "okta", URL: "https://acme.okta.com", ClientID: "0oa1", PrivateKey: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", TokenURL: "https://acme.okta.com/oauth2/v1/token"}, []string{"private_key: the PEM private key does not parse"}},
		{"private key outside okta", with(kc, func(c *propagate.Config) { c.PrivateKey = testKeyPEM }), []string{"private_key: only for type okta"}},
		{"okta token url with api token", propagate.Config{Type: "okta", URL: "https://acme.okta.com", APIToken: "t", TokenURL: "https://acme.okta.com/oauth2/v1/token"}, []string{"token_url: unused"}},
		{"entra no token url", propagate.Config{Type: "entra", ClientID: "app", ClientSecret: "x"}, []string{"token_url: required for entra"}},
		{"hydra client credentials", propagate.Config{Type: "hydra", URL: "http://127.0.0.1:4445", ClientID: "c", ClientSecret: "s"}, []string{"client_id: hydra's admin API takes no client credentials"}},
		{"hydra token url", propagate.Config{Type: "hydra", URL: "http://127.0.0.1:4445", TokenURL: "http://127.0.0.1:4444/oauth2/token"}, []string{"token_url: unused for hydra"}},
		{"hydra no url", propagate.Config{Type: "hydra"}, []string{"url: required"}},
		{"claim with space", with(kc, func(c *propagate.Config) { c.UserIDClaim = "preferred username" }), []string{"user_id_claim: "}},
		{"on empty", with(kc, func(c *propagate.Config) { c.On = []string{} }), []string{"on: empty list"}},
		{"on unknown and twice", with(kc, func(c *propagate.Config) { c.On = []string{"admin", "nope", "admin"} }), []string{`on[1]: "nope" is not one of`, `on[2]: "admin" listed twice`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil; want %q", tt.want)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() = %q; want %d problems %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d = %q; want prefix %q", i, got[i], w)
				}
			}
		})
	}
}

func TestConfigValidateNeverShowsSecrets(t *testing.T) {
	cfg := propagate.Config{Type: "keycloak", URL: "http://sso.example.com", ClientSecret: "s3cret-value", APIToken: "tok3n-value", PrivateKey: "-----BEGIN PRIVATE KEY-----\nk3y-value\n-----END PRIVATE KEY-----\n"}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate() = nil; want problems")
	}
	for _, s := range []string{err.Error(), fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg)} {
		if strings.Contains(s, "s3cret-value") || strings.Contains(s, "tok3n-value") || strings.Contains(s, "k3y-value") {
			t.Errorf("secret in %q", s)
		}
	}
}

func TestConfigWithDefaults(t *testing.T) {
	tests := []struct {
		cfg                   propagate.Config
		url, tokenURL, claims string
	}{
		{propagate.Config{Type: "keycloak", URL: "https://sso.example.com/", Realm: "acme"}, "https://sso.example.com/", "https://sso.example.com/realms/acme/protocol/openid-connect/token", "sub"},
		{propagate.Config{Type: "entra", TokenURL: "https://login.microsoftonline.com/t/oauth2/v2.0/token"}, propagate.DefaultEntraURL, "https://login.microsoftonline.com/t/oauth2/v2.0/token", "oid"},
		{propagate.Config{Type: "entra", UserIDClaim: "sub"}, propagate.DefaultEntraURL, "", "sub"},
		{propagate.Config{Type: "hydra", URL: "http://127.0.0.1:4445"}, "http://127.0.0.1:4445", "", "sub"},
	}
	for _, tt := range tests {
		got := tt.cfg.WithDefaults()
		if got.URL != tt.url || got.TokenURL != tt.tokenURL || got.UserIDClaim != tt.claims {
			t.Errorf("%s: WithDefaults() = url %q, token_url %q, user_id_claim %q; want %q, %q, %q", tt.cfg.Type, got.URL, got.TokenURL, got.UserIDClaim, tt.url, tt.tokenURL, tt.claims)
		}
	}
}

func TestConfigPropagates(t *testing.T) {
	all := propagate.Config{}
	for _, tr := range []string{"admin", "ssf", "backchannel_logout", "rfc7009", "anything"} {
		if !all.Propagates(tr) {
			t.Errorf("default Propagates(%q) = false; want true", tr)
		}
	}
	some := propagate.Config{On: []string{"admin", "revoke_endpoint", "backchannel"}}
	for tr, want := range map[string]bool{"admin": true, "rfc7009": true, "backchannel_logout": true, "ssf": false, "frontchannel_logout": false, "rp_logout": false} {
		if got := some.Propagates(tr); got != want {
			t.Errorf("Propagates(%q) = %v; want %v", tr, got, want)
		}
	}
}

func TestCallError(t *testing.T) {
	cause := errors.New("boom")
	var err error = fmt.Errorf("wrapped: %w", &propagate.CallError{Op: "DELETE /admin/oauth2/tokens", Status: 503, RetryAfter: 30e9, Temporary: true, Err: cause})
	var ce *propagate.CallError
	if !errors.As(err, &ce) || !ce.Temporary || ce.RetryAfter != 30e9 {
		t.Fatalf("errors.As = %v; want the CallError", err)
	}
	if !errors.Is(err, cause) {
		t.Error("errors.Is(err, cause) = false; want true")
	}
	if got, want := ce.Error(), "propagate: DELETE /admin/oauth2/tokens: 503 Service Unavailable: boom (retry after 30s)"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
}
