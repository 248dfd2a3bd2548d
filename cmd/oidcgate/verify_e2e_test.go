package main

// End-to-end tests of `oidcgate verify-revocation`: three `oidcgate serve`
// processes of the built binary share one redis-server; one is stopped
// before a revocation and must be named.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/cache/redistest"
	"github.com/oidcgate/oidcgate/logout"
)

// startVerifyReplica is startRedisReplica with a short heartbeat, so that a
// stopped replica counts as down within 300ms.
func startVerifyReplica(top, t *testing.T, name string, cfg gatewayConfig, redisAddr string) *redisReplica {
	t.Helper()
	listen, internal := freeLoopbackAddr(t), freeLoopbackAddr(t)
	path := filepath.Join(cfg.dataDir, "oidcgate.yaml")
	text := cfg.configYAML(listen, internal) + fmt.Sprintf(`store:
  backend: redis
  redis:
    addr: %q
    key_prefix: verify
    timeout: 500ms
  heartbeat_interval: 100ms
`, redisAddr)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &redisReplica{name: name, configPath: path, gatewayProc: &gatewayProc{
		public: "http://" + listen, internal: "http://" + internal, cfg: cfg, client: newClient(top),
	}}
	r.start(top, t)
	return r
}

// verify runs `oidcgate verify-revocation` against r.
func (r *redisReplica) verify(t *testing.T, admin string, args ...string) (int, string, string) {
	t.Helper()
	return runCLI(t, r.cliEnv(admin), append([]string{"verify-revocation"}, args...)...)
}

func TestVerifyRevocationE2E(t *testing.T) {
	requireBinary(t)
	top := t
	srv := redistest.Start(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	admin := randHex(t, 24)
	reps := make([]*redisReplica, 3)
	for i := range reps {
		cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: admin}
		reps[i] = startVerifyReplica(top, t, fmt.Sprintf("replica %d", i+1), cfg, srv.Addr)
	}
	addr := func(r *redisReplica) string { return strings.TrimPrefix(r.internal, "http://") }

	t.Run("usage errors exit 2", func(t *testing.T) {
		for _, args := range [][]string{{}, {"--sub", "a", "--jti", "b"}, {"--bogus"}} {
			if code, out, errOut := reps[0].verify(t, admin, args...); code != 2 {
				t.Errorf("verify-revocation %v: exit %d; want 2\n%s%s", args, code, out, errOut)
			}
		}
	})

	t.Run("not revoked exits 1", func(t *testing.T) {
		code, out, errOut := reps[0].verify(t, admin, "--sub", "verify-nobody")
		if code != 1 || !strings.Contains(out, "NOT REVOKED") {
			t.Errorf("exit %d, output %q; want 1 and NOT REVOKED\n%s", code, out, errOut)
		}
	})

	t.Run("applied everywhere after a normal revocation", func(t *testing.T) {
		if code, out, errOut := runCLI(t, reps[0].cliEnv(admin), "revoke", "--sub", "verify-alice"); code != 0 {
			t.Fatalf("oidcgate revoke: exit %d\n%s%s", code, out, errOut)
		}
		var code int
		var out, errOut string
		if !waitFor(propagationTimeout, func() bool {
			code, out, errOut = reps[1].verify(t, admin, "--sub", "verify-alice")
			return code == 0
		}) {
			t.Fatalf("verify-revocation: exit %d; want 0 within %s\n%s%s", code, propagationTimeout, out, errOut)
		}
		if !strings.Contains(out, "APPLIED EVERYWHERE") || !strings.Contains(out, "all 3 replica(s)") {
			t.Errorf("output: got %q; want APPLIED EVERYWHERE on all 3 replica(s)", out)
		}
		for _, r := range reps {
			if !strings.Contains(out, addr(r)) {
				t.Errorf("output does not name %s (%s):\n%s", r.name, addr(r), out)
			}
		}
	})

	t.Run("a replica stopped before the revocation is named", func(t *testing.T) {
		victim := reps[2]
		if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := victim.wait(t); code != 0 {
			t.Errorf("exit after SIGTERM: got %d; want 0", code)
		}
		reps[0].mustRevoke(t, map[string]string{"sub": "verify-bob"})
		var code int
		var out, errOut string
		if !waitFor(propagationTimeout, func() bool {
			code, out, errOut = reps[1].verify(t, admin, "--sub", "verify-bob")
			return strings.Contains(out, "NOT APPLIED ON DOWN REPLICAS")
		}) {
			t.Fatalf("verify-revocation: output %q; want NOT APPLIED ON DOWN REPLICAS within %s\n%s", out, propagationTimeout, errOut)
		}
		if code != 1 {
			t.Errorf("exit: got %d; want 1", code)
		}
		down := ""
		for line := range strings.Lines(out) {
			if strings.Contains(line, "NOT APPLIED ON DOWN REPLICAS") {
				down = line
			}
		}
		if !strings.Contains(down, addr(victim)) || strings.Contains(down, addr(reps[0])) || strings.Contains(down, addr(reps[1])) {
			t.Errorf("verdict line %q: want it to name %s (%s) alone", down, victim.name, addr(victim))
		}

		// --json names the same replica by id.
		code, jsonOut, _ := reps[0].verify(t, admin, "--sub", "verify-bob", "--json")
		var st logout.RevocationStatus
		if err := json.Unmarshal([]byte(jsonOut), &st); err != nil {
			t.Fatalf("--json: %v\n%s", err, jsonOut)
		}
		if code != 1 || st.Verdict != logout.VerdictDown || len(st.Down) != 1 {
			t.Fatalf("--json: exit %d, verdict %q, down %v; want 1, %s, one replica", code, st.Verdict, st.Down, logout.VerdictDown)
		}
		for _, r := range st.Replicas {
			if (r.ID == st.Down[0]) != (r.Addr == addr(victim)) {
				t.Errorf("replica %s at %s: down list %v does not match the stopped replica %s", r.ID, r.Addr, st.Down, addr(victim))
			}
		}

		// Restarted, it resynchronises and acknowledges what it missed.
		victim.start(top, t)
		if !waitFor(propagationTimeout, func() bool {
			code, out, errOut = reps[1].verify(t, admin, "--sub", "verify-bob")
			return code == 0
		}) {
			t.Errorf("after restart: exit %d; want 0 within %s\n%s%s", code, propagationTimeout, out, errOut)
		}
	})

	t.Run("a replica killed (kill -9) is down after three heartbeats", func(t *testing.T) {
		victim := reps[2]
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		victim.wait(t)
		reps[1].mustRevoke(t, map[string]string{"sub": "verify-carol"})
		var code int
		var out, errOut string
		if !waitFor(propagationTimeout, func() bool {
			code, out, errOut = reps[0].verify(t, admin, "--sub", "verify-carol")
			return strings.Contains(out, "NOT APPLIED ON DOWN REPLICAS")
		}) {
			t.Fatalf("verify-revocation: output %q; want NOT APPLIED ON DOWN REPLICAS within %s\n%s", out, propagationTimeout, errOut)
		}
		if code != 1 || !strings.Contains(out, addr(victim)) {
			t.Errorf("exit %d, output %q; want 1, naming %s", code, out, addr(victim))
		}
		t.Logf("verify-revocation output:\n%s", out)
	})
}

// TestStoreHeartbeatConfig checks store.heartbeat_interval (kept here, with
// the feature it serves, rather than in config_test.go).
func TestStoreHeartbeatConfig(t *testing.T) {
	redisStore := StoreConfig{Backend: "redis", Redis: cache.RedisOptions{Addr: "127.0.0.1:6379"}}
	tests := []struct {
		name string
		cfg  StoreConfig
		want string // prefix of the only problem; "" for none
	}{
		{"redis, set", withHeartbeat(redisStore, time.Second), ""},
		{"redis, default", redisStore, ""},
		{"redis, too short", withHeartbeat(redisStore, time.Millisecond), "store.heartbeat_interval: "},
		{"redis, negative", withHeartbeat(redisStore, -time.Second), "store.heartbeat_interval: "},
		{"memory", StoreConfig{Backend: "memory", HeartbeatInterval: time.Second}, "store.heartbeat_interval: only used with backend: redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.cfg.validate(t.TempDir())
			switch {
			case tt.want == "" && len(errs) != 0:
				t.Errorf("got %v; want no problem", errs)
			case tt.want != "" && (len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), tt.want)):
				t.Errorf("got %v; want one problem starting %q", errs, tt.want)
			}
		})
	}
}

func withHeartbeat(c StoreConfig, d time.Duration) StoreConfig {
	c.HeartbeatInterval = d
	return c
}
