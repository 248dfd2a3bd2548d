package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// writeAuditLog writes n records with the real audit writer.
func writeAuditLog(t *testing.T, path string, n int) {
	t.Helper()
	a, err := audit.Open(audit.Config{Path: path, Replica: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		rec := audit.RecordOf(audit.EventRevocation, cache.Entry{
			Issuer: "https://idp.example", Kind: cache.KindSub, Value: fmt.Sprintf("user-%d", i),
			RevokedAt: time.Now(), Initiator: "admin:ops",
		})
		if err := a.Append(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAuditVerifyCLI(t *testing.T) {
	requireBinary(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	writeAuditLog(t, good, 3)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	edited := filepath.Join(dir, "edited.jsonl")
	if err := os.WriteFile(edited, bytes.Replace(data, []byte("user-1"), []byte("user-9"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	removed := filepath.Join(dir, "removed.jsonl")
	if err := os.WriteFile(removed, append(append([]byte{}, lines[0]...), lines[2]...), 0o600); err != nil {
		t.Fatal(err)
	}
	// The anchor: record 3's hash, as the gateway's "audit head" log line
	// gives it. A chain alone cannot show its tail cut or its last record
	// changed; the anchor can.
	sum := sha256.Sum256(bytes.TrimSuffix(lines[2], []byte("\n")))
	anchor := "3:" + hex.EncodeToString(sum[:])
	cut := filepath.Join(dir, "cut.jsonl")
	if err := os.WriteFile(cut, append(append([]byte{}, lines[0]...), lines[1]...), 0o600); err != nil {
		t.Fatal(err)
	}
	lastEdited := filepath.Join(dir, "last-edited.jsonl")
	changed := bytes.Replace(lines[2], []byte(`"seq":3`), []byte(`"seq":3 `), 1)
	if err := os.WriteFile(lastEdited, append(append(append([]byte{}, lines[0]...), lines[1]...), changed...), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
	}{
		{"intact", []string{"audit", "verify", good}, 0, "ok: 3 records, chain intact"},
		{"intact, anchor", []string{"audit", "verify", "--anchor", anchor, good}, 0, "ok: 3 records"},
		{"tail cut: the chain cannot tell", []string{"audit", "verify", cut}, 0, "ok: 2 records"},
		{"tail cut: the anchor can", []string{"audit", "verify", "--anchor", anchor, cut}, 1, "record 3 of the anchor is missing"},
		{"last record changed: the anchor tells", []string{"audit", "verify", "--anchor", anchor, lastEdited}, 1, "record 3 does not match the anchor"},
		{"bad anchor", []string{"audit", "verify", "--anchor", "3:xyz", good}, 2, ""},
		{"edited", []string{"audit", "verify", edited}, 1, edited + ":2: edited"},
		{"removed", []string{"audit", "verify", removed}, 1, removed + ":2: removed"},
		{"missing file", []string{"audit", "verify", filepath.Join(dir, "nope")}, 1, ""},
		{"no file", []string{"audit", "verify"}, 2, ""},
		{"no subcommand", []string{"audit"}, 2, ""},
		{"unknown subcommand", []string{"audit", "fix", good}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tt.args...)
			if code != tt.wantCode || !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("oidcgate %s: got %d, stdout %q, stderr %q; want %d and %q", strings.Join(tt.args, " "), code, stdout, stderr, tt.wantCode, tt.wantStdout)
			}
		})
	}
}

func TestAuditConfig(t *testing.T) {
	requireBinary(t)
	iss := newTestIssuer(t)
	cfg := gatewayConfig{issuer: iss.srv.URL, upstream: "http://127.0.0.1:1", dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	path := filepath.Join(t.TempDir(), "oidcgate.yaml")
	if err := os.WriteFile(path, []byte(cfg.configYAML("127.0.0.1:1", "127.0.0.1:2")+"audit:\n  path: audit.jsonl\n  max_bytes: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, []string{"E2E_ADMIN_TOKEN=" + cfg.adminToken}, "check-config", path)
	for _, want := range []string{"audit.path: must be an absolute path", "audit.max_bytes: negative"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("check-config with a relative audit path: got %d %q; want 1 and %q", code, stderr, want)
		}
	}
}

// TestAuditE2E: a browser session at Ory Hydra, an admin revocation of
// its user; the audit log then holds the revocation (trigger admin) and
// the app logout call's outcome, /admin/audit serves them to admins only,
// and `audit verify` finds the file intact.
func TestAuditE2E(t *testing.T) {
	requireBinary(t)
	h := startHydra(t, "jwt")
	app := newLegacyApp(t)
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg := gatewayConfig{dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	gw := startGatewayYAML(t, cfg, func(listen, internal string) string {
		public := "http://" + listen
		client := h.createClient(t, map[string]any{
			"grant_types":                []string{"authorization_code"},
			"response_types":             []string{"code"},
			"scope":                      "openid profile email",
			"redirect_uris":              []string{public + "/oauth2/callback"},
			"token_endpoint_auth_method": "client_secret_basic",
		})
		return fmt.Sprintf(`listen: %q
internal_listen: %q
public_url: %q
data_dir: %q
session:
  secret: "e2e-session-secret-0123456789abcdefghij"
issuers:
  - issuer: %q
    client_id: %q
    client_secret: %q
    audiences: [api]
    max_token_lifetime: 2h
routes:
  - path_prefix: /
    upstream: %q
    auth: browser
    app_session_cookies: [JSESSIONID]
    app_logout_url: %q
    headers: {X-User: sub}
admin:
  tokens: [{name: e2e, token: "${E2E_ADMIN_TOKEN}"}]
audit:
  path: %q
`, listen, internal, public, cfg.dataDir, h.issuer, client.ID, client.Secret, app.srv.URL, app.srv.URL+"/logout", auditPath)
	})
	page := gw.public + "/app"
	alice := newBrowser(t, "alice")
	a1 := alice.open(t, page)
	if r := gw.revoke(t, map[string]string{"sub": "alice", "reason": "offboarding"}); r.status != http.StatusCreated {
		t.Fatalf("revoke sub alice: got %d %s; want 201", r.status, r.body)
	}
	if !waitFor(10*time.Second, func() bool { return app.loggedOut(a1.AppSession) }) {
		t.Fatal("the app's logout URL was not called for alice")
	}

	query := func(q, token string) (int, []audit.Record) {
		r := do(t, gw.client, http.MethodGet, gw.internal+"/admin/audit?"+q, token, nil, nil)
		var body struct {
			Records []audit.Record `json:"records"`
		}
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("/admin/audit body %s: %v", r.body, err)
			}
		}
		return r.status, body.Records
	}
	var recs []audit.Record
	// The app logout outcome is written by the audit feed, after the call.
	waitFor(10*time.Second, func() bool {
		_, recs = query("sub=alice", cfg.adminToken)
		return len(recs) >= 2
	})
	var revocation, appLogout *audit.Record
	for i := range recs {
		switch recs[i].Event {
		case audit.EventRevocation:
			revocation = &recs[i]
		case audit.EventAppLogout:
			appLogout = &recs[i]
		}
	}
	switch {
	case revocation == nil:
		t.Errorf("no revocation record for alice in %+v", recs)
	case revocation.Trigger != audit.TriggerAdmin || revocation.Initiator != "admin:e2e" || revocation.Reason != "offboarding" ||
		len(revocation.Targets) != 1 || revocation.Targets[0].Value != "alice" || revocation.AppliedAt.IsZero():
		t.Errorf("revocation record: got %+v; want trigger admin by admin:e2e on sub alice, applied", *revocation)
	}
	switch {
	case appLogout == nil:
		t.Errorf("no app_logout record for alice in %+v", recs)
	case appLogout.AppLogout == nil || appLogout.AppLogout.Outcome != "ok" || appLogout.AppLogout.Attempts != 1 || appLogout.AppLogout.Session == "":
		t.Errorf("app_logout record: got %+v; want outcome ok after 1 attempt with a session digest", appLogout.AppLogout)
	}
	if status, _ := query("trigger=admin", ""); status != http.StatusUnauthorized {
		t.Errorf("/admin/audit without a token: got %d; want 401", status)
	}
	if status, recs := query("trigger=rfc7009", cfg.adminToken); status != http.StatusOK || len(recs) != 0 {
		t.Errorf("/admin/audit?trigger=rfc7009: got %d, %d records; want 200, none", status, len(recs))
	}
	if code, stdout, stderr := runCLI(t, nil, "audit", "verify", auditPath); code != 0 || !strings.Contains(stdout, "chain intact") {
		t.Errorf("audit verify on the live file: got %d %q %q; want 0 and chain intact", code, stdout, stderr)
	}
	// The head goes to the log, to be kept outside the file.
	if !strings.Contains(gw.stderr.String(), `"msg":"audit head"`) {
		t.Errorf("no audit head in the gateway's log")
	}
	// The security team's check: applied everywhere, and the app's own
	// session ended.
	code, stdout, stderr := runCLI(t, gw.cliEnv(cfg.adminToken), "verify-revocation", "--sub", "alice", "--issuer", h.issuer)
	if code != 0 || !strings.Contains(stdout, "APPLIED EVERYWHERE") || !strings.Contains(stdout, "app logout / session") || !strings.Contains(stdout, ": ok (status 200, 1 attempt(s))") {
		t.Errorf("verify-revocation: got %d\n%s%s; want 0, applied everywhere, the app logout ok", code, stdout, stderr)
	}
}

// TestAuditVerifyCLIAfterRetention: files deleted by retention are named by
// retention records, and audit verify says so instead of "removed".
func TestAuditVerifyCLIAfterRetention(t *testing.T) {
	requireBinary(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// One second per reading; two hours between the rounds.
	clk := clocktest.NewStepping(now.Add(time.Second), time.Second)
	cfg := audit.Config{Path: path, MaxBytes: 1, Retention: time.Hour, Clock: clk}
	for round := range 2 {
		l, err := audit.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			rec := audit.RecordOf(audit.EventRevocation, cache.Entry{Issuer: "https://idp", Kind: cache.KindSub, Value: fmt.Sprintf("user-%d-%d", round, i), RevokedAt: now, Initiator: "admin:ops"})
			if err := l.Append(context.Background(), rec); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Hour)
	}
	files, _ := filepath.Glob(path + "*")
	code, stdout, stderr := runCLI(t, nil, append([]string{"audit", "verify"}, files...)...)
	if code != 0 || !strings.Contains(stdout, "chain intact") || !strings.Contains(stdout, "were deleted by retention") {
		t.Errorf("audit verify after retention: got %d %q %q; want 0, intact, records deleted by retention", code, stdout, stderr)
	}
}
