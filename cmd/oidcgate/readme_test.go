package main

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEConfig: the configuration reference in README.md is a valid
// config, so the README cannot drift from the keys the code accepts.
func TestREADMEConfig(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\nlisten:")
	if !ok {
		t.Fatal("README.md has no configuration reference (a yaml block starting with listen:)")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("README.md: the configuration reference is not closed")
	}
	env := map[string]string{
		"IDP_CLIENT_SECRET":            "idp-secret",
		"SESSION_SECRET":               strings.Repeat("s", 32),
		"OIDCGATE_ADMIN_TOKEN":         strings.Repeat("a", 32),
		"BILLING_INTROSPECTION_SECRET": strings.Repeat("b", 16),
		"SSO_ADMIN_SECRET":             "sso-admin-secret",
		"APP_OWNERS_TOKEN":             strings.Repeat("r", 32),
	}
	if _, err := parseConfig([]byte("listen:"+block), envOf(env)); err != nil {
		t.Errorf("README.md's configuration reference is refused:\n%v", err)
	}
}
