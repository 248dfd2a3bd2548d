package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2ENoSecretsInLogsOrData runs the built binary through /revoke and
// admin revocations, then greps everything it logged and every file of its
// data_dir (revocation store, audit log, anchor) for the tokens, jtis,
// session id and secrets it saw (issue 20, item 9). The only exception is
// by design: the revocation store keeps a revoked jti, the key it is looked
// up by on every request (a jti is not a credential; the token is never
// stored).
func TestE2ENoSecretsInLogsOrData(t *testing.T) {
	requireBinary(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	dataDir := t.TempDir()
	clientSecret := "client-secret-" + randHex(t, 16)
	cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: dataDir, adminToken: randHex(t, 24)}
	cfg.extraYAML = fmt.Sprintf("introspection_clients:\n  - {client_id: app, client_secret: %q}\naudit:\n  path: %q\n",
		clientSecret, filepath.Join(dataDir, "audit.jsonl"))
	gw := startGateway(t, cfg)

	spec := iss.spec(t, "alice")
	spec.jti = "jti-revoked-by-rfc7009-" + randHex(t, 8)
	token := iss.mint(t, spec)
	if r := gw.get(t, "/app", token, nil); r.status != http.StatusOK {
		t.Fatalf("before /revoke: got %d %s", r.status, r.body)
	}
	form := url.Values{"token": {token}}.Encode()
	req, err := http.NewRequest(http.MethodPost, gw.internal+"/revoke", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("app", clientSecret)
	res, err := gw.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/revoke: got %d; want 200", res.StatusCode)
	}
	if r := gw.get(t, "/app", token, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("after /revoke: got %d; want 401", r.status)
	}
	adminJTI := "jti-revoked-by-admin-" + randHex(t, 8)
	sessionID := "session-id-" + randHex(t, 11)
	for _, body := range []map[string]string{{"jti": adminJTI}, {"session": sessionID}, {"sub": "alice"}} {
		if r := gw.revoke(t, body); r.status != http.StatusCreated {
			t.Fatalf("admin revoke %v: got %d %s", body, r.status, r.body)
		}
	}
	// A wrong client secret and a wrong admin token are logged as failures,
	// never quoted.
	bad, _ := http.NewRequest(http.MethodPost, gw.internal+"/revoke", strings.NewReader(form))
	bad.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	bad.SetBasicAuth("app", clientSecret+"x")
	if res, err := gw.client.Do(bad); err == nil {
		res.Body.Close()
	}
	if r := gw.adminPost(t, gw.internal, cfg.adminToken+"x", map[string]string{"sub": "bob"}); r.status != http.StatusUnauthorized {
		t.Errorf("wrong admin token: got %d; want 401", r.status)
	}
	gw.terminate(t)

	secrets := map[string]string{
		"the access token":             token,
		"the access token's signature": token[strings.LastIndexByte(token, '.')+1:],
		"the introspection secret":     clientSecret,
		"the admin token":              cfg.adminToken,
		"the admin-revoked session id": sessionID,
		"the /revoke jti":              spec.jti,
		"the admin-revoked jti":        adminJTI,
		"the wrong client secret":      clientSecret + "x",
		"the wrong admin token":        cfg.adminToken + "x",
	}
	storeKeys := map[string]bool{"the /revoke jti": true, "the admin-revoked jti": true}
	logs := gw.stderr.String() + gw.stdout.String()
	if !strings.Contains(logs, "token revoked (RFC 7009)") {
		t.Fatalf("the /revoke log line is missing; logs:\n%s", logs)
	}
	for what, v := range secrets {
		if strings.Contains(logs, v) {
			t.Errorf("the logs hold %s", what)
		}
	}
	var files int
	err = filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for what, v := range secrets {
			if bytes.Contains(b, []byte(v)) && !(storeKeys[what] && d.Name() == storeFile) {
				t.Errorf("%s holds %s", path, what)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 {
		t.Errorf("data_dir held %d files; want the store, the audit log and its anchor", files)
	}
}
