package main

// Three `oidcgate serve` processes of the built binary on one real
// redis-server, with one session authority (a loopback Microsoft Graph and
// token endpoint, as Entra documents them): a revocation makes exactly one
// authority call, with the user id (oid) that another replica learned
// from a verified token; every replica's verify-revocation says complete;
// a replica killed -9 in the middle of its call is taken over.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache/redistest"
)

// fakeEntra is a loopback Entra: a client_credentials token endpoint
// (client_secret_post) handing each client_id its own token, and Graph's
// POST /users/{id}/revokeSignInSessions. hang holds the calls for one
// user id until released.
type fakeEntra struct {
	*httptest.Server
	mu      sync.Mutex
	calls   []string // "user-id by client-id"
	hangFor string
	release chan struct{}
	arrived chan string // client id of a held call
}

func newFakeEntra(t *testing.T) *fakeEntra {
	f := &fakeEntra{release: make(chan struct{}), arrived: make(chan string, 4)}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(f.release) }) })
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/token":
			if r.ParseForm() != nil || r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_secret") != "graph-secret" ||
				r.PostForm.Get("scope") != "https://graph.microsoft.com/.default" {
				http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":3600,"access_token":"at-%s"}`, r.PostForm.Get("client_id"))
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/graph/users/") && strings.HasSuffix(r.URL.Path, "/revokeSignInSessions"):
			user := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/graph/users/"), "/revokeSignInSessions")
			client, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer at-")
			if !ok {
				http.Error(w, `{"error":{"code":"InvalidAuthenticationToken"}}`, http.StatusUnauthorized)
				return
			}
			f.mu.Lock()
			f.calls = append(f.calls, user+" by "+client)
			hang := user == f.hangFor
			f.mu.Unlock()
			if hang {
				f.arrived <- client
				select {
				case <-f.release:
				case <-r.Context().Done():
					return
				}
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean","value":true}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// callsFor returns the calls made for user id.
func (f *fakeEntra) callsFor(user string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, user+" by ") {
			out = append(out, c)
		}
	}
	return out
}

func TestSessionAuthorityRedisE2E(t *testing.T) {
	requireBinary(t)
	top := t
	srv := redistest.Start(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	entra := newFakeEntra(t)
	admin := randHex(t, 24)
	reps := make([]*redisReplica, 3)
	for i := range reps {
		name := fmt.Sprintf("replica-%d", i+1)
		cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: admin}
		listen, internal := freeLoopbackAddr(t), freeLoopbackAddr(t)
		path := filepath.Join(cfg.dataDir, "oidcgate.yaml")
		// Each replica signs in to Graph as its own client, so the fake
		// can tell which replica made a call.
		text := fmt.Sprintf(`listen: %q
internal_listen: %q
data_dir: %q
clock_skew: 1s
issuers:
  - issuer: %q
    audiences: [api]
    access_token_algs: [RS256]
    max_token_lifetime: 1h
    session_authority:
      type: entra
      url: %q
      token_url: %q
      client_id: %q
      client_secret: graph-secret
routes:
  - path_prefix: /
    upstream: %q
    auth: bearer
admin:
  tokens: [{name: e2e, token: "${E2E_ADMIN_TOKEN}"}]
store:
  backend: redis
  redis: {addr: %q, key_prefix: authority, timeout: 500ms}
  heartbeat_interval: 200ms
`, listen, internal, cfg.dataDir, iss.url, entra.URL+"/graph", entra.URL+"/token", name, up.srv.URL, srv.Addr)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		reps[i] = &redisReplica{name: name, configPath: path, gatewayProc: &gatewayProc{
			public: "http://" + listen, internal: "http://" + internal, cfg: cfg, client: newClient(top),
		}}
		reps[i].start(top, t)
	}
	// learn presents a token of sub carrying oid to r: r verifies it and
	// learns sub → oid for every replica.
	learn := func(t *testing.T, r *redisReplica, sub, oid string) {
		t.Helper()
		s := iss.spec(t, sub)
		s.extra = map[string]any{"oid": oid}
		if got := r.get(t, "/app", iss.mint(t, s), nil).status; got != http.StatusOK {
			t.Fatalf("%s: token of %s: %d; want 200", r.name, sub, got)
		}
	}
	complete := func(t *testing.T, r *redisReplica, sub string) string {
		t.Helper()
		var code int
		var out, errOut string
		if !waitFor(90*time.Second, func() bool {
			code, out, errOut = r.verify(t, admin, "--sub", sub)
			return code == 0
		}) {
			t.Fatalf("%s: verify-revocation --sub %s: exit %d; want 0\n%s%s", r.name, sub, code, out, errOut)
		}
		return out
	}

	t.Run("one revocation, one call with the oid learned elsewhere, complete on every replica", func(t *testing.T) {
		learn(t, reps[0], "pw-alice", "oid-alice")
		if code, out, errOut := runCLI(t, reps[1].cliEnv(admin), "revoke", "--sub", "pw-alice"); code != 0 {
			t.Fatalf("revoke on %s: exit %d\n%s%s", reps[1].name, code, out, errOut)
		}
		for _, r := range reps {
			out := complete(t, r, "pw-alice")
			if !strings.Contains(out, "session_authority entra") || !strings.Contains(out, ": done after 1 attempt(s)") || !strings.Contains(out, "COMPLETE") {
				t.Errorf("%s: verify-revocation:\n%s\nwant the entra target done after 1 attempt and COMPLETE", r.name, out)
			}
		}
		if calls := entra.callsFor("oid-alice"); len(calls) != 1 {
			t.Errorf("Graph calls for oid-alice: got %q; want exactly one", calls)
		}
		if calls := entra.callsFor("pw-alice"); len(calls) != 0 {
			t.Errorf("Graph was called with the pairwise sub: %q", calls)
		}
	})

	t.Run("no oid known: failed with a note, no call", func(t *testing.T) {
		if code, out, errOut := runCLI(t, reps[2].cliEnv(admin), "revoke", "--sub", "pw-nobody"); code != 0 {
			t.Fatalf("revoke: exit %d\n%s%s", code, out, errOut)
		}
		var out string
		if !waitFor(60*time.Second, func() bool {
			var code int
			code, out, _ = reps[0].verify(t, admin, "--sub", "pw-nobody")
			return code == 1 && strings.Contains(out, "FAILED after 1 attempt")
		}) {
			t.Fatalf("verify-revocation --sub pw-nobody: %s\nwant exit 1 with the target failed", out)
		}
		if !strings.Contains(out, "no oid is known for this subject") || !strings.Contains(out, "NOT COMPLETE") {
			t.Errorf("verify-revocation:\n%s\nwant the note naming the missing oid and NOT COMPLETE", out)
		}
		var st struct {
			Targets []struct{ Kind, State, Note string }
		}
		_, js, _ := reps[1].verify(t, admin, "--sub", "pw-nobody", "--json")
		if err := json.Unmarshal([]byte(js), &st); err != nil {
			t.Fatalf("--json: %v\n%s", err, js)
		}
		found := false
		for _, tg := range st.Targets {
			if tg.Kind == "session_authority" {
				found = tg.State == "failed" && strings.Contains(tg.Note, "no oid is known")
			}
		}
		if !found {
			t.Errorf("--json targets: %s; want the session_authority target failed with the note", js)
		}
		if calls := entra.callsFor("pw-nobody"); len(calls) != 0 {
			t.Errorf("Graph called for an unknown subject: %q", calls)
		}
	})

	t.Run("the replica holding the call is killed -9; another takes over", func(t *testing.T) {
		learn(t, reps[2], "pw-bob", "oid-bob")
		entra.mu.Lock()
		entra.hangFor = "oid-bob"
		entra.mu.Unlock()
		if code, out, errOut := runCLI(t, reps[0].cliEnv(admin), "revoke", "--sub", "pw-bob"); code != 0 {
			t.Fatalf("revoke: exit %d\n%s%s", code, out, errOut)
		}
		var holder string
		select {
		case holder = <-entra.arrived:
		case <-time.After(60 * time.Second):
			t.Fatal("Graph was never called for oid-bob")
		}
		var victim *redisReplica
		for _, r := range reps {
			if r.name == holder {
				victim = r
			}
		}
		if victim == nil {
			t.Fatalf("the call came from %q, not a replica", holder)
		}
		entra.mu.Lock()
		entra.hangFor = ""
		entra.mu.Unlock()
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		victim.wait(t)
		// The lease (30s) runs out; another replica calls again.
		if !waitFor(90*time.Second, func() bool { return len(entra.callsFor("oid-bob")) >= 2 }) {
			t.Fatalf("no replica took the call over: calls %q", entra.callsFor("oid-bob"))
		}
		// Restarted, the killed replica resynchronises; then every
		// replica says complete.
		victim.start(top, t)
		for _, r := range reps {
			if out := complete(t, r, "pw-bob"); !strings.Contains(out, ": done after") {
				t.Errorf("%s: verify-revocation:\n%s\nwant the target done", r.name, out)
			}
		}
		calls := entra.callsFor("oid-bob")
		if len(calls) != 2 || calls[0] != "oid-bob by "+victim.name || calls[1] == calls[0] {
			t.Errorf("Graph calls for oid-bob: got %q; want the killed %s's, then one by another replica", calls, victim.name)
		}
		t.Logf("calls for oid-bob: %q", calls)
	})
}
