package main

import (
	"strings"
	"testing"
)

// TestSSFReceiversConfig: ssf.receivers is read, and every problem is
// reported with its YAML path.
func TestSSFReceiversConfig(t *testing.T) {
	base := `data_dir: /d
issuers:
  - issuer: https://idp.example.com
    audiences: [api]
routes:
  - upstream: http://127.0.0.1:3000
admin:
  tokens:
    - name: ops
      token: ` + testToken + "\n"
	good := base + `public_url: https://gw.example.com
ssf:
  receivers:
    - endpoint: https://app.example.com/ssf
      audience: https://app.example.com/
      authorization_header: ${APP_SSF}
      events: [session-revoked]
`
	cfg, err := parseConfig([]byte(good), envOf(map[string]string{"APP_SSF": "Bearer s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.SSF.Receivers; len(r) != 1 || string(r[0].AuthorizationHeader) != "Bearer s3cret" || r[0].Events[0] != "session-revoked" {
		t.Errorf("receivers: got %+v", r)
	}
	bad := base + `ssf:
  receivers:
    - endpoint: http://app.example.com/ssf
      events: [everything]
    - endpoint: http://app.example.com/ssf
      audience: a
`
	_, err = parseConfig([]byte(bad), envOf(nil))
	for _, want := range []string{
		"ssf.receivers[0].endpoint: must be https (http only on a loopback host)",
		"ssf.receivers[0].audience: required",
		`ssf.receivers[0].events[0]: "everything" is not session-revoked or credential-change`,
		"ssf.receivers[1].endpoint: same as receivers[0]",
		"public_url: required with ssf.receivers",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v; want %q", err, want)
		}
	}
}
