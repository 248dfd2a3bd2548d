package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSessionAuthorityCrash: the replica that accepted a revocation is
// killed (SIGKILL) before the authority call completed; after its restart
// on the same data_dir the call is made again, succeeds and is audited.
func TestSessionAuthorityCrash(t *testing.T) {
	requireBinary(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	var mu sync.Mutex
	calls := map[string]int{}
	hang := make(chan struct{})
	var hangOnce sync.Once
	t.Cleanup(func() { hangOnce.Do(func() { close(hang) }) })
	arrived := make(chan struct{}, 16)
	// A loopback Hydra admin API whose first call never answers.
	authority := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls[r.Method+" "+r.URL.Path]++
		n := calls["DELETE /admin/oauth2/auth/sessions/login"]
		mu.Unlock()
		arrived <- struct{}{}
		if n == 1 && r.URL.Path == "/admin/oauth2/auth/sessions/login" {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(authority.Close)

	cfg := gatewayConfig{dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	render := func(listen, internal string) string {
		return fmt.Sprintf(`listen: %q
internal_listen: %q
data_dir: %q
issuers:
  - issuer: %q
    audiences: [api]
    max_token_lifetime: 1h
    session_authority: {type: hydra, url: %q}
routes:
  - path_prefix: /
    upstream: %q
admin:
  tokens: [{name: e2e, token: "${E2E_ADMIN_TOKEN}"}]
audit:
  path: %q
`, listen, internal, cfg.dataDir, iss.url, authority.URL, up.srv.URL, auditPath)
	}
	gw := startGatewayYAML(t, cfg, render)
	if r := gw.revoke(t, map[string]string{"sub": "bob"}); r.status != http.StatusCreated {
		t.Fatalf("revoke: got %d %s", r.status, r.body)
	}
	select {
	case <-arrived:
	case <-time.After(20 * time.Second):
		t.Fatal("the authority was never called")
	}
	if err := gw.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	gw.wait(t)
	if rec := targetRecord(t, auditPath, "bob"); rec != nil {
		t.Fatalf("a target record before the call completed: %v", rec)
	}

	gw2 := startGatewayYAML(t, cfg, render)
	env := gw2.cliEnv(cfg.adminToken)
	var out string
	if !waitFor(60*time.Second, func() bool {
		var code int
		code, out, _ = runCLI(t, env, "verify-revocation", "--sub", "bob")
		return code == 0
	}) {
		t.Fatalf("after the restart, verify-revocation never exited 0; last output:\n%s", out)
	}
	if !strings.Contains(out, "session_authority") || !strings.Contains(out, "done after 1 attempt(s)") {
		t.Errorf("verify-revocation after the restart:\n%s\nwant the authority target done after 1 attempt", out)
	}
	mu.Lock()
	n := calls["DELETE /admin/oauth2/auth/sessions/login"]
	mu.Unlock()
	if n != 2 {
		t.Errorf("login-session calls: got %d; want 2 (the one cut by the crash, then the retry)", n)
	}
	var rec map[string]any
	if !waitFor(10*time.Second, func() bool { rec = targetRecord(t, auditPath, "bob"); return rec != nil }) {
		t.Fatal("no audit record of the target after the restart")
	}
	if o, _ := rec["outcome"].(map[string]any); o["state"] != "done" {
		t.Errorf("audit record: got %v; want done", rec)
	}
}
