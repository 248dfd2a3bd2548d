package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/propagate"
)

// e2eReceiver is an RFC 8935 push endpoint that verifies every SET
// against the running gateway's published JWKS (iss = its public_url)
// with introspect's SET verifier (signature, typ, iss, aud, iat, jti, one
// event); while down it answers 503; a SET about refuse is answered 400
// invalid_request.
type e2eReceiver struct {
	srv      *httptest.Server
	down     atomic.Bool
	refuse   string
	verifier atomic.Pointer[introspect.SETVerifier]

	mu     sync.Mutex
	pushes map[string]int             // by subject (or "?" before verification)
	sets   map[string]*introspect.SET // by jti
}

const e2eAudience = "https://billing.example.com/"

func newE2EReceiver(t *testing.T, refuse string) *e2eReceiver {
	r := &e2eReceiver{refuse: refuse, pushes: map[string]int{}, sets: map[string]*introspect.SET{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// trust makes the receiver verify SETs of the gateway at publicURL.
func (r *e2eReceiver) trust(t *testing.T, publicURL string) {
	v, err := introspect.NewSETVerifier(introspect.SETConfig{Transmitters: []introspect.Transmitter{{
		Issuer: publicURL, JWKSURI: publicURL + propagate.JWKSPath, Audience: e2eAudience,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	r.verifier.Store(v)
}

func (r *e2eReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if r.down.Load() {
		r.count("?")
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	fail := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"err": code, "description": "e2e receiver"})
	}
	raw, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	if err != nil || req.Header.Get("Content-Type") != "application/secevent+jwt" || req.Header.Get("Authorization") != "Bearer e2e-push" {
		fail("authentication_failed")
		return
	}
	v := r.verifier.Load()
	if v == nil {
		http.Error(w, "not configured", http.StatusServiceUnavailable)
		return
	}
	set, err := v.VerifySET(req.Context(), string(raw))
	if err != nil {
		var se *introspect.SETError
		if errors.As(err, &se) {
			fail(string(se.Code))
			return
		}
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	sub := set.Subject.Subject
	r.count(sub)
	if set.EventType != propagate.EventSessionRevoked || set.Subject.Format != introspect.FormatIssSub {
		fail("invalid_request")
		return
	}
	if sub == r.refuse {
		fail("invalid_request")
		return
	}
	r.mu.Lock()
	r.sets[set.JTI] = set
	r.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (r *e2eReceiver) count(sub string) {
	r.mu.Lock()
	r.pushes[sub]++
	r.mu.Unlock()
}

func (r *e2eReceiver) pushesOf(sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pushes[sub]
}

// setsAbout returns the distinct SETs received about sub.
func (r *e2eReceiver) setsAbout(sub string) []*introspect.SET {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*introspect.SET
	for _, s := range r.sets {
		if s.Subject.Subject == sub {
			out = append(out, s)
		}
	}
	return out
}

func transmitterYAML(cfg gatewayConfig, recv *e2eReceiver) func(listen, internal string) string {
	return func(listen, internal string) string {
		return fmt.Sprintf("public_url: %q\n", "http://"+listen) + cfg.configYAML(listen, internal) + fmt.Sprintf(`ssf:
  receivers:
    - endpoint: %q
      audience: %q
      authorization_header: "Bearer e2e-push"
`, recv.srv.URL+"/events", e2eAudience)
	}
}

// TestSSFTransmitterE2E: a receiver that is down when a revocation is
// accepted gets its one SET after it comes back, across a restart of the
// gateway (built binary, same data_dir); verify-revocation exits 1 until
// then and 0 after; a SET the receiver refuses with 400 invalid_request
// is failed and not retried.
func TestSSFTransmitterE2E(t *testing.T) {
	requireBinary(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	recv := newE2EReceiver(t, "carol")
	recv.down.Store(true)
	cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	gw := startGatewayYAML(t, cfg, transmitterYAML(cfg, recv))
	if fi, err := os.Stat(filepath.Join(cfg.dataDir, propagate.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key file: %v; want it created 0600", err)
	}
	if r := gw.revoke(t, map[string]string{"sub": "bob"}); r.status != http.StatusCreated {
		t.Fatalf("revoke: got %d %s", r.status, r.body)
	}
	if !waitFor(20*time.Second, func() bool { return recv.pushesOf("?") > 0 }) {
		t.Fatal("no push reached the receiver while it was down")
	}
	if code, out, _ := runCLI(t, gw.cliEnv(cfg.adminToken), "verify-revocation", "--sub", "bob"); code != 1 || !strings.Contains(out, "ssf_receiver") {
		t.Errorf("verify-revocation while the receiver is down: exit %d\n%s\nwant 1 with the ssf_receiver target pending", code, out)
	}
	gw.terminate(t)

	recv.down.Store(false)
	gw2 := startGatewayYAML(t, cfg, transmitterYAML(cfg, recv))
	recv.trust(t, gw2.public)
	env := gw2.cliEnv(cfg.adminToken)
	var out string
	if !waitFor(60*time.Second, func() bool {
		var code int
		code, out, _ = runCLI(t, env, "verify-revocation", "--sub", "bob")
		return code == 0
	}) {
		t.Fatalf("after the restart, verify-revocation never exited 0; last output:\n%s\nstderr:\n%s", out, gw2.stderr.String())
	}
	if !strings.Contains(out, "ssf_receiver "+recv.srv.URL+"/events: done") {
		t.Errorf("verify-revocation:\n%s\nwant the receiver target done", out)
	}
	sets := recv.setsAbout("bob")
	if len(sets) != 1 {
		t.Fatalf("SETs about bob: got %d; want 1", len(sets))
	}
	if s := sets[0]; s.Subject.Issuer != iss.url || s.Event["initiating_entity"] != "admin" {
		t.Errorf("SET: got %+v; want bob of %s, initiated by an admin", s, iss.url)
	}

	// A refusal (400 invalid_request) is final: failed, not retried.
	if r := gw2.revoke(t, map[string]string{"sub": "carol"}); r.status != http.StatusCreated {
		t.Fatalf("revoke: got %d %s", r.status, r.body)
	}
	if !waitFor(30*time.Second, func() bool {
		_, out, _ = runCLI(t, env, "verify-revocation", "--sub", "carol")
		return strings.Contains(out, "FAILED")
	}) {
		t.Fatalf("carol's target never failed; last output:\n%s", out)
	}
	if code, _, _ := runCLI(t, env, "verify-revocation", "--sub", "carol"); code != 1 || !strings.Contains(out, "invalid_request") || !strings.Contains(out, "after 1 attempt(s)") {
		t.Errorf("verify-revocation of a refused SET: exit %d\n%s\nwant 1, failed after 1 attempt with invalid_request", code, out)
	}
	// bob's second SET cannot come (done) and carol's is not retried: a
	// third revocation goes through after them.
	if r := gw2.revoke(t, map[string]string{"sub": "dave"}); r.status != http.StatusCreated {
		t.Fatalf("revoke: got %d %s", r.status, r.body)
	}
	if !waitFor(30*time.Second, func() bool { return len(recv.setsAbout("dave")) == 1 }) {
		t.Fatal("dave's SET never arrived")
	}
	if n := recv.pushesOf("carol"); n != 1 {
		t.Errorf("pushes of carol's SET: got %d; want 1", n)
	}
	if n := len(recv.setsAbout("bob")); n != 1 {
		t.Errorf("SETs about bob: got %d; want 1", n)
	}
}

// TestSSFCorruptKeyE2E: a corrupt signing key file is reported in the
// logs and /readyz (degraded), never a crash, never overwritten; the SET
// waits (its target pending) and goes out once the file is replaced by
// `oidcgate ssf-key rotate`, without a restart.
func TestSSFCorruptKeyE2E(t *testing.T) {
	requireBinary(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	recv := newE2EReceiver(t, "")
	cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	keyFile := filepath.Join(cfg.dataDir, propagate.KeyFile)
	corrupt := []byte("{\"keys\": [ not json")
	if err := os.WriteFile(keyFile, corrupt, 0o600); err != nil {
		t.Fatal(err)
	}
	render := transmitterYAML(cfg, recv)
	gw := startGatewayYAML(t, cfg, render)
	recv.trust(t, gw.public)
	ready := do(t, gw.client, http.MethodGet, gw.internal+"/readyz", "", nil, nil)
	if ready.status != http.StatusOK || !strings.Contains(string(ready.body), `"degraded"`) || !strings.Contains(string(ready.body), "ssf transmitter") {
		t.Errorf("/readyz: got %d %s; want 200 degraded naming the ssf transmitter", ready.status, string(ready.body))
	}
	if !strings.Contains(gw.stderr.String(), "signing key unusable") {
		t.Errorf("no error in the logs:\n%s", gw.stderr.String())
	}
	if r := gw.get(t, propagate.JWKSPath, "", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("JWKS with no usable key: got %d; want 503", r.status)
	}
	if r := gw.revoke(t, map[string]string{"sub": "erin"}); r.status != http.StatusCreated {
		t.Fatalf("revoke: got %d %s", r.status, r.body)
	}
	env := gw.cliEnv(cfg.adminToken)
	if !waitFor(20*time.Second, func() bool {
		_, out, _ := runCLI(t, env, "verify-revocation", "--sub", "erin")
		return strings.Contains(out, "PENDING") && strings.Contains(out, "signing key file")
	}) {
		_, out, _ := runCLI(t, env, "verify-revocation", "--sub", "erin")
		t.Errorf("the target does not say why it waits:\n%s", out)
	}
	if data, _ := os.ReadFile(keyFile); string(data) != string(corrupt) {
		t.Error("the corrupt key file was overwritten")
	}
	if gw.exited() {
		t.Fatalf("the gateway exited:\n%s", gw.stderr.String())
	}
	// The operator's fix: rotate refuses the corrupt file; moved away,
	// rotate starts a new ring, which the running gateway picks up.
	cfgPath := filepath.Join(t.TempDir(), "oidcgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(render("127.0.0.1:1", "127.0.0.1:2")), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCLI(t, []string{"E2E_ADMIN_TOKEN=" + cfg.adminToken}, "ssf-key", "rotate", "--config", cfgPath); code != 1 {
		t.Errorf("ssf-key rotate on a corrupt file: exit %d; want 1", code)
	}
	if err := os.Rename(keyFile, keyFile+".corrupt"); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI(t, []string{"E2E_ADMIN_TOKEN=" + cfg.adminToken}, "ssf-key", "rotate", "--config", cfgPath); code != 0 || !strings.Contains(stdout, "new ssf signing key") {
		t.Fatalf("ssf-key rotate: exit %d\n%s%s", code, stdout, stderr)
	}
	if !waitFor(60*time.Second, func() bool {
		code, _, _ := runCLI(t, env, "verify-revocation", "--sub", "erin")
		return code == 0
	}) {
		_, out, _ := runCLI(t, env, "verify-revocation", "--sub", "erin")
		t.Fatalf("after the fix the SET never went out:\n%s", out)
	}
	if n := len(recv.setsAbout("erin")); n != 1 {
		t.Errorf("SETs about erin: got %d; want 1", n)
	}
	ready = do(t, gw.client, http.MethodGet, gw.internal+"/readyz", "", nil, nil)
	if !strings.Contains(string(ready.body), `"ok"`) {
		t.Errorf("/readyz after the fix: got %s; want ok", string(ready.body))
	}
}
