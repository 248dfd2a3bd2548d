package main

// End-to-end tests of API keys: three `oidcgate serve` processes of the
// built binary on one real redis-server; keys created, used, rotated and
// revoked through `oidcgate keys` and the admin API.

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidcgate/oidcgate/cache/redistest"
	"github.com/oidcgate/oidcgate/logout"
)

// e2eKey is a key made by `oidcgate keys create|rotate --json`.
type e2eKey struct {
	key, id string
}

func (k e2eKey) secret() string { return k.key[len("oag_")+17 : len(k.key)-6] }

func keysCLI(t *testing.T, r *redisReplica, admin string, args ...string) []byte {
	t.Helper()
	code, out, errOut := runCLI(t, r.cliEnv(admin), append([]string{"keys"}, args...)...)
	if code != 0 {
		t.Fatalf("oidcgate keys %v on %s: exit %d\n%s%s", args, r.name, code, out, errOut)
	}
	return []byte(out)
}

func createKey(t *testing.T, r *redisReplica, admin string, args ...string) e2eKey {
	t.Helper()
	var c logout.CreatedKey
	if err := json.Unmarshal(keysCLI(t, r, admin, append([]string{"create", "--json"}, args...)...), &c); err != nil {
		t.Fatal(err)
	}
	return e2eKey{c.Key, c.Record.ID}
}

// keyStatus is the status of GET /api/keys with the key in X-API-Key.
func keyStatus(t *testing.T, r *redisReplica, k e2eKey) int {
	t.Helper()
	return r.get(t, "/api/keys", "", http.Header{"X-API-Key": {k.key}}).status
}

func waitKey(t *testing.T, r *redisReplica, k e2eKey, want int) time.Duration {
	t.Helper()
	start := time.Now()
	var got int
	if !waitFor(propagationTimeout, func() bool { got = keyStatus(t, r, k); return got == want }) {
		t.Errorf("%s: key %s: status %d; want %d within %s", r.name, k.id, got, want, propagationTimeout)
	}
	return time.Since(start)
}

func TestKeysE2E(t *testing.T) {
	requireBinary(t)
	top := t
	srv := redistest.Start(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	admin := randHex(t, 24)
	reps := make([]*redisReplica, 3)
	var dirs []string
	for i := range reps {
		dir := t.TempDir()
		dirs = append(dirs, dir)
		cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: dir, adminToken: admin,
			extraYAML: fmt.Sprintf("audit:\n  path: %q\n", filepath.Join(dir, "audit.jsonl"))}
		reps[i] = startRedisReplica(top, t, fmt.Sprintf("replica %d", i+1), cfg, srv.Addr)
	}
	a, b, c := reps[0], reps[1], reps[2]
	var made []e2eKey

	t.Run("created on A works on B; upstream sees the owner, not the key; revoked on C refused on A and B", func(t *testing.T) {
		k := createKey(t, a, admin, "--owner", "ci-bot", "--scope", "read", "--scope", "deploy")
		made = append(made, k)
		waitKey(t, b, k, http.StatusOK)
		resp := b.get(t, "/api/keys", k.key, nil)
		var e echo
		if err := json.Unmarshal(resp.body, &e); resp.status != http.StatusOK || err != nil {
			t.Fatalf("Bearer key on B: %d %s", resp.status, resp.body)
		}
		if e.Header.Get("X-User") != "ci-bot" || e.Header.Get("X-Client") != "ci-bot" || e.Header.Get("X-Scope") != "read deploy" {
			t.Errorf("upstream identity: %v", e.Header)
		}
		if strings.Contains(string(resp.body), k.secret()) || e.Header.Get("Authorization") != "" {
			t.Errorf("the upstream saw the key: %s", resp.body)
		}
		keysCLI(t, c, admin, "revoke", k.id)
		for _, r := range []*redisReplica{a, b, c} {
			waitKey(t, r, k, http.StatusUnauthorized)
		}
	})

	t.Run("revocation latency across replicas", func(t *testing.T) {
		// Wall time on a shared machine is reported, not asserted.
		var lat []time.Duration
		for range 10 {
			k := createKey(t, a, admin, "--owner", "latency")
			made = append(made, k)
			waitKey(t, b, k, http.StatusOK)
			waitKey(t, a, k, http.StatusOK)
			if resp := do(t, c.client, http.MethodDelete, c.internal+"/admin/keys/"+k.id, admin, nil, nil); resp.status != http.StatusOK {
				t.Fatalf("DELETE on C: %d %s", resp.status, resp.body)
			}
			start := time.Now()
			for _, r := range []*redisReplica{a, b} {
				waitFor(propagationTimeout, func() bool { return keyStatus(t, r, k) == http.StatusUnauthorized })
				lat = append(lat, time.Since(start))
			}
		}
		slices.Sort(lat)
		t.Logf("key revoked on C (from DELETE's answer) until refused on A and B, polled over HTTP: p50 %s, max %s over %d", lat[len(lat)/2], lat[len(lat)-1], len(lat))
	})

	t.Run("rotate with grace; client revocation kills the owner's keys", func(t *testing.T) {
		old := createKey(t, a, admin, "--owner", "rotator")
		var rot logout.CreatedKey
		if err := json.Unmarshal(keysCLI(t, b, admin, "rotate", old.id, "--grace", "1h", "--json"), &rot); err != nil {
			t.Fatal(err)
		}
		fresh := e2eKey{rot.Key, rot.Record.ID}
		made = append(made, old, fresh)
		for _, r := range reps {
			waitKey(t, r, old, http.StatusOK)
			waitKey(t, r, fresh, http.StatusOK)
		}
		if code, out, errOut := runCLI(t, c.cliEnv(admin), "revoke", "--client", "rotator"); code != 0 {
			t.Fatalf("oidcgate revoke --client: %d %s%s", code, out, errOut)
		}
		for _, r := range reps {
			waitKey(t, r, old, http.StatusUnauthorized)
			waitKey(t, r, fresh, http.StatusUnauthorized)
		}
	})

	t.Run("Redis outage and kill -9 lose neither a key nor a revocation", func(t *testing.T) {
		doomed := createKey(t, a, admin, "--owner", "outage")
		waitKey(t, c, doomed, http.StatusOK)
		srv.Kill(t)
		born := createKey(t, a, admin, "--owner", "outage")
		keysCLI(t, b, admin, "revoke", doomed.id)
		if got := keyStatus(t, a, born); got != http.StatusOK {
			t.Errorf("key created on A with Redis down, on A: %d; want 200", got)
		}
		if got := keyStatus(t, b, doomed); got != http.StatusUnauthorized {
			t.Errorf("key revoked on B with Redis down, on B: %d; want 401", got)
		}
		srv.Restart(t)
		for _, r := range reps {
			waitKey(t, r, born, http.StatusOK)
			waitKey(t, r, doomed, http.StatusUnauthorized)
		}
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c.wait(t)
		late := createKey(t, a, admin, "--owner", "kill")
		keysCLI(t, b, admin, "revoke", born.id)
		c.start(top, t)
		if got := keyStatus(t, c, late); got != http.StatusOK {
			t.Errorf("key created while C was dead, on C once ready: %d; want 200", got)
		}
		if got := keyStatus(t, c, born); got != http.StatusUnauthorized {
			t.Errorf("key revoked while C was dead, on C once ready: %d; want 401", got)
		}
		made = append(made, doomed, born, late)
	})

	t.Run("the secret appears nowhere", func(t *testing.T) {
		resp := do(t, a.client, http.MethodGet, a.internal+"/admin/keys", admin, nil, nil)
		places := map[string][]byte{"GET /admin/keys": resp.body}
		for i, r := range reps {
			places[fmt.Sprintf("logs of replica %d", i+1)] = []byte(r.stderr.String() + r.stdout.String())
		}
		for _, dir := range dirs {
			_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if data, err := os.ReadFile(path); err == nil {
						places[path] = data
					}
				}
				return nil
			})
		}
		places["redis"] = dumpRedis(t, srv.Addr)
		if len(places["redis"]) == 0 {
			t.Fatal("nothing dumped from redis")
		}
		for _, k := range made {
			for where, data := range places {
				if strings.Contains(string(data), k.secret()) {
					t.Errorf("the secret of key %s is in %s", k.id, where)
				}
			}
		}
	})
}

// dumpRedis returns the value of every key in Redis (strings, hashes,
// streams, sets), concatenated.
func dumpRedis(t *testing.T, addr string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc := redis.NewClient(&redis.Options{Addr: addr})
	defer rc.Close()
	var out strings.Builder
	iter := rc.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		out.WriteString(key + "\n")
		switch typ := rc.Type(ctx, key).Val(); typ {
		case "string":
			out.WriteString(rc.Get(ctx, key).Val())
		case "hash":
			for f, v := range rc.HGetAll(ctx, key).Val() {
				out.WriteString(f + "=" + v + "\n")
			}
		case "stream":
			for _, m := range rc.XRange(ctx, key, "-", "+").Val() {
				for f, v := range m.Values {
					fmt.Fprintf(&out, "%s=%v\n", f, v)
				}
			}
		case "set":
			out.WriteString(strings.Join(rc.SMembers(ctx, key).Val(), "\n"))
		case "zset":
			out.WriteString(strings.Join(rc.ZRange(ctx, key, 0, -1).Val(), "\n"))
		default:
			t.Errorf("redis key %q of type %s not dumped", key, typ)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return []byte(out.String())
}
