package main

// End-to-end tests of store.backend: redis: three `oidcgate serve`
// processes of the built binary share one redis-server that the test
// starts, kills and restarts (cache/redistest).

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache/redistest"
)

// propagationTimeout bounds each wait for a revocation to reach a replica
// (milliseconds when healthy; seconds after a Redis restart).
const propagationTimeout = 20 * time.Second

// redisReplica is one gateway of the cluster; it keeps its addresses and
// data_dir, so that it can be killed and started again as the same
// replica.
type redisReplica struct {
	*gatewayProc
	name       string
	configPath string
}

// startRedisReplica writes the e2e config plus a redis store section and
// starts the gateway; top owns the process (it outlives subtests).
func startRedisReplica(top, t *testing.T, name string, cfg gatewayConfig, redisAddr string) *redisReplica {
	t.Helper()
	listen, internal := freeLoopbackAddr(t), freeLoopbackAddr(t)
	path := filepath.Join(cfg.dataDir, "oidcgate.yaml")
	text := cfg.configYAML(listen, internal) + fmt.Sprintf(`store:
  backend: redis
  redis:
    addr: %q
    key_prefix: e2e
    timeout: 500ms
  on_unavailable: fail_open
  max_staleness: 1m
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

// start runs the replica's process and waits until /readyz is 200.
func (r *redisReplica) start(top, t *testing.T) {
	t.Helper()
	r.proc = startProc(top, r.name, []string{"E2E_ADMIN_TOKEN=" + r.cfg.adminToken}, "serve", "--config", r.configPath)
	r.waitReady(t)
}

// ready returns /readyz's status code and JSON status.
func (r *redisReplica) ready(t *testing.T) (int, string) {
	t.Helper()
	resp := do(t, r.client, http.MethodGet, r.internal+"/readyz", "", nil, nil)
	var body struct{ Status string }
	if err := json.Unmarshal(resp.body, &body); err != nil {
		t.Fatalf("%s /readyz: %v (body %s)", r.name, err, resp.body)
	}
	return resp.status, body.Status
}

// waitStatus polls until token gets want from r.
func (r *redisReplica) waitStatus(t *testing.T, token string, want int) {
	t.Helper()
	var got int
	if !waitFor(propagationTimeout, func() bool {
		got = r.get(t, "/api/redis", token, nil).status
		return got == want
	}) {
		t.Errorf("%s: status got %d; want %d within %s", r.name, got, want, propagationTimeout)
	}
}

func (r *redisReplica) mustRevoke(t *testing.T, body map[string]string) {
	t.Helper()
	if resp := r.revoke(t, body); resp.status != http.StatusCreated {
		t.Fatalf("%s: revoke %v: got %d; want 201 (body %s)", r.name, body, resp.status, resp.body)
	}
}

func TestRedisE2E(t *testing.T) {
	requireBinary(t)
	top := t // owns the processes, which outlive the subtests
	srv := redistest.Start(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	admin := randHex(t, 24)
	reps := make([]*redisReplica, 3)
	for i := range reps {
		cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: admin}
		reps[i] = startRedisReplica(t, t, fmt.Sprintf("replica %d", i+1), cfg, srv.Addr)
	}
	for _, r := range reps {
		if code, status := r.ready(t); code != http.StatusOK || status != "ok" {
			t.Fatalf("%s /readyz: got %d %q; want 200 ok", r.name, code, status)
		}
	}

	t.Run("revoked on one replica, enforced by all", func(t *testing.T) {
		s := iss.spec(t, "redis-1")
		tok := iss.mint(t, s)
		for _, r := range reps {
			r.waitStatus(t, tok, http.StatusOK)
		}
		reps[0].mustRevoke(t, map[string]string{"jti": s.jti, "reason": "e2e redis"})
		for _, r := range reps {
			r.waitStatus(t, tok, http.StatusUnauthorized)
		}
		// `oidcgate revoke` against another replica.
		cli := iss.mint(t, iss.spec(t, "redis-cli-user"))
		if code, out, errOut := runCLI(t, reps[2].cliEnv(admin), "revoke", "--sub", "redis-cli-user"); code != 0 {
			t.Fatalf("oidcgate revoke: exit %d\n%s%s", code, out, errOut)
		}
		for _, r := range reps {
			r.waitStatus(t, cli, http.StatusUnauthorized)
		}
	})

	t.Run("revoke --wait answers once every live replica applied it", func(t *testing.T) {
		toks := make([]string, 5)
		for i := range toks {
			toks[i] = iss.mint(t, iss.spec(t, fmt.Sprintf("redis-wait-%d", i)))
		}
		for i, tok := range toks {
			code, out, errOut := runCLI(t, reps[i%3].cliEnv(admin), "revoke", "--sub", fmt.Sprintf("redis-wait-%d", i), "--wait")
			if code != 0 || !strings.Contains(errOut, "applied by every live replica") {
				t.Fatalf("oidcgate revoke --wait: exit %d\n%s%s", code, out, errOut)
			}
			// No polling: the answer means it is enforced everywhere.
			for _, r := range reps {
				if got := r.get(t, "/api/redis", tok, nil).status; got != http.StatusUnauthorized {
					t.Errorf("%s right after revoke --wait returned: got %d; want 401", r.name, got)
				}
			}
		}
	})

	t.Run("Redis down: revoke enforced at once, delivered when back", func(t *testing.T) {
		s := iss.spec(t, "redis-2")
		tok := iss.mint(t, s)
		srv.Kill(t)
		reps[1].mustRevoke(t, map[string]string{"jti": s.jti})
		if got := reps[1].get(t, "/api/redis", tok, nil).status; got != http.StatusUnauthorized {
			t.Errorf("replica 2 right after its revoke with Redis down: got %d; want 401", got)
		}
		if code, status := reps[1].ready(t); code != http.StatusOK || status != "degraded" {
			t.Errorf("replica 2 /readyz with Redis down: got %d %q; want 200 degraded", code, status)
		}
		if got := reps[0].get(t, "/api/redis", tok, nil).status; got != http.StatusOK {
			t.Errorf("replica 1 with Redis down: got %d; want 200 (it cannot know yet)", got)
		}
		srv.Restart(t)
		for _, r := range reps {
			r.waitStatus(t, tok, http.StatusUnauthorized)
		}
		for _, r := range reps {
			var code int
			var status string
			if !waitFor(propagationTimeout, func() bool { code, status = r.ready(t); return status == "ok" }) {
				t.Errorf("%s /readyz after Redis is back: got %d %q; want 200 ok", r.name, code, status)
			}
		}
	})

	t.Run("replica killed, revoked elsewhere, restarted", func(t *testing.T) {
		victim := reps[2]
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := victim.wait(t); code != -1 {
			t.Errorf("exit after SIGKILL: got %d; want -1", code)
		}
		s := iss.spec(t, "redis-3")
		tok := iss.mint(t, s)
		subTok := iss.mint(t, iss.spec(t, "redis-3-sub"))
		keep := iss.mint(t, iss.spec(t, "redis-3-keep"))
		reps[0].mustRevoke(t, map[string]string{"jti": s.jti})
		reps[1].mustRevoke(t, map[string]string{"sub": "redis-3-sub"})
		victim.start(top, t)
		for _, tk := range []string{tok, subTok} {
			if got := victim.get(t, "/api/redis", tk, nil).status; got != http.StatusUnauthorized {
				t.Errorf("restarted replica, once ready: got %d; want 401", got)
			}
		}
		if got := victim.get(t, "/api/redis", keep, nil).status; got != http.StatusOK {
			t.Errorf("restarted replica, unrevoked token: got %d; want 200", got)
		}
	})

	t.Run("10,000 concurrent revocations reach every replica", func(t *testing.T) {
		base := make([]float64, len(reps))
		for i, r := range reps {
			if !waitFor(propagationTimeout, func() bool {
				base[i], _ = metricValue(t, r.gatewayProc, "oidcgate_revocation_entries")
				b0, _ := metricValue(t, reps[0].gatewayProc, "oidcgate_revocation_entries")
				return base[i] == b0
			}) {
				t.Fatalf("replicas disagree before the flood: %v", base)
			}
		}
		const n, workers = 10000, 32
		work := make(chan int)
		errs := make(chan string, workers)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range work {
					r := reps[rand.IntN(len(reps))]
					resp, err := r.sendAdminPost(r.internal, admin, map[string]string{"jti": fmt.Sprintf("flood-%d", i)})
					if err != nil || resp.status != http.StatusCreated {
						select {
						case errs <- fmt.Sprintf("%s: revoke #%d: %d %s %v", r.name, i, resp.status, resp.body, err):
						default:
						}
					}
				}
			})
		}
		for i := range n {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		want := base[0] + n
		for _, r := range reps {
			var got float64
			if !waitFor(60*time.Second, func() bool {
				got, _ = metricValue(t, r.gatewayProc, "oidcgate_revocation_entries")
				return got == want
			}) {
				t.Errorf("%s: oidcgate_revocation_entries got %v; want exactly %v", r.name, got, want)
			}
			if v, ok := metricValue(t, r.gatewayProc, "oidcgate_store_queue_depth"); !ok || v != 0 {
				t.Errorf("%s: oidcgate_store_queue_depth got %v (found %v); want 0", r.name, v, ok)
			}
		}
	})
}
