package main

import (
	"testing"
)

func TestParseConfigSessionAuthority(t *testing.T) {
	env := map[string]string{"ADMIN_TOKEN": testToken, "SSO_ADMIN_SECRET": "kc-admin-secret"}
	text := configText("", "session_authority:\n  type: keycloak\n  url: https://sso.example.com\n  realm: acme\n  client_id: oidcgate-admin\n  client_secret: ${SSO_ADMIN_SECRET}\n  on: [admin, ssf]\n", "")
	cfg, err := parseConfig([]byte(text), envOf(env))
	if err != nil {
		t.Fatalf("got %v; want a valid config", err)
	}
	if len(cfg.SessionAuthorities) != 1 || cfg.SessionAuthorities[0] == nil {
		t.Fatalf("got %v; want issuers[0]'s session authority", cfg.SessionAuthorities)
	}
	sa := cfg.SessionAuthorities[0]
	if sa.Type != "keycloak" || sa.Realm != "acme" || string(sa.ClientSecret) != "kc-admin-secret" || len(sa.On) != 2 {
		t.Errorf("got %+v; want the keycloak authority with the expanded secret", sa)
	}

	for _, tc := range []struct {
		name, issuer string
		want         []string
	}{
		{"unknown type", "session_authority: {type: ping, url: https://x.example}\n", []string{"issuers[0].session_authority.type: "}},
		{"http outside loopback", "session_authority: {type: hydra, url: http://hydra.example.com:4445}\n", []string{"issuers[0].session_authority.url: "}},
		{"missing credentials", "session_authority: {type: keycloak, url: https://sso.example.com, realm: acme}\n",
			[]string{"issuers[0].session_authority.client_id: ", "issuers[0].session_authority.client_secret: "}},
		{"unknown key", "session_authority: {type: hydra, url: http://127.0.0.1:4445, tenant: x}\n", []string{"issuers[0].session_authority.tenant: unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(configText("", tc.issuer, "")), envOf(defaultEnv))
			wantLines(t, err, tc.want...)
		})
	}
}
