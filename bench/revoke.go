package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// revResult is one revocation-latency measurement.
type revResult struct {
	// skipped says why it did not run ("" when it ran).
	skipped string
	n       int
	// call is POST /admin/revocations until its 201 (the entry durable).
	call []time.Duration
	// refuse is from the 201 until the credential was refused where
	// measured (same replica: the very next request).
	refuse []time.Duration
	// immediate counts refusals on the first request after the 201.
	immediate int
	failures  []string
}

func (r revResult) failed() bool { return len(r.failures) > 0 }

// percentile returns the p-th percentile (nearest rank) of d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// revokeBody is the admin API's JSON (logout/request.go): one target.
func revokeBody(i int, value string) []byte {
	kind := "jti"
	if i%2 == 1 {
		kind = "sub"
	}
	b, _ := json.Marshal(map[string]string{kind: value, "reason": "bench"})
	return b
}

// revokeTokens mints n tokens, each with its own subject and jti ("rv-"
// prefix, path /rv so that the throughput counters are not touched).
func (b *bench) revokeTokens(ctx context.Context, prefix string, n int) ([]string, error) {
	return b.is.mintPool(ctx, n, prefix, func(i int) string { return fmt.Sprintf("%s-%d", prefix, i) })
}

// revoke posts the i-th revocation (of the jti or the subject of token i)
// to the admin API at internal and returns when the 201 is in.
func (b *bench) revoke(ctx context.Context, internal, prefix string, i int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, internal+"/admin/revocations",
		bytes.NewReader(revokeBody(i, fmt.Sprintf("%s-%d", prefix, i))))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+b.admin)
	res, err := b.client.Do(req)
	if err != nil {
		return err
	}
	drain(res)
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("admin revoke: status %d; want 201", res.StatusCode)
	}
	return nil
}

// revokeMemory measures, on the throughput gateway (memory backend,
// plan.entries loaded): admin revoke, then the very next request with the
// token must be refused.
func (b *bench) revokeMemory(ctx context.Context) (revResult, error) {
	res := revResult{n: b.p.revocations}
	toks, err := b.revokeTokens(ctx, "mem", res.n)
	if err != nil {
		return res, err
	}
	url := b.gw.public + "/rv/x"
	for i, tok := range toks {
		// The token passes first (its verdict is now cached), so the 401
		// below is the revocation biting through a cache hit.
		if code, err := get(ctx, b.client, url, tok); err != nil || code != http.StatusOK {
			res.failures = append(res.failures, fmt.Sprintf("token %d before revocation: status %d, %v; want 200", i, code, err))
			continue
		}
		t0 := time.Now()
		if err := b.revoke(ctx, b.gw.internal, "mem", i); err != nil {
			res.failures = append(res.failures, fmt.Sprintf("revocation %d: %v", i, err))
			continue
		}
		t1 := time.Now()
		code, err := get(ctx, b.client, url, tok)
		t2 := time.Now()
		if err != nil || code != http.StatusUnauthorized {
			res.failures = append(res.failures, fmt.Sprintf("token %d right after its 201: status %d, %v; want 401", i, code, err))
			continue
		}
		res.immediate++
		res.call = append(res.call, t1.Sub(t0))
		res.refuse = append(res.refuse, t2.Sub(t1))
		if b.revoked == "" {
			b.revoked = tok
		}
	}
	if n := len(res.failures); n > 5 {
		res.failures = append(res.failures[:5], fmt.Sprintf("... and %d more", n-5))
	}
	return res, nil
}

// noRedis is reported when the oidcgate binary refuses the Redis store
// config (a build from before the shared-store issue).
const noRedis = "redis backend: not available in this build"

// redisName names the redis-server process.
const redisName = "redis-server"

// redisStore is the store section for a replica on the shared Redis.
func redisStore(addr string) string {
	return fmt.Sprintf("{backend: redis, redis: {addr: %q}}", addr)
}

// revokeRedis starts its own redis-server and three oidcgate replicas on
// it, revokes on replica A and polls B (alternately the other two) until
// the token is refused. If the binary refuses the Redis config, it reports
// the backend as not available and moves on.
func (b *bench) revokeRedis(ctx context.Context) (revResult, error) {
	res := revResult{n: b.p.revocations}
	if _, err := exec.LookPath(b.o.redisServer); err != nil {
		res.skipped = "redis-server not found (apt-get install redis-server)"
		return res, nil
	}
	addr, err := freeAddr()
	if err != nil {
		return res, err
	}
	base := gatewayOpts{bin: b.o.oidcgate, issuer: b.is.url, upstream: b.upstream, admin: b.admin, store: redisStore(addr)}
	probe := base
	probe.name, probe.dataDir = "redis-probe", filepath.Join(b.work, "redis-probe", "data")
	if err := checkGatewayConfig(ctx, probe); err != nil {
		res.skipped = noRedis
		b.logf("%s (check-config: %s)", noRedis, strings.ReplaceAll(err.Error(), "\n", " "))
		return res, nil
	}
	_, port, _ := strings.Cut(addr, ":")
	rs, err := startProcess(redisName, b.o.redisServer, env(),
		"--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--protected-mode", "yes")
	if err != nil {
		return res, err
	}
	b.track(rs)
	// The upstream was stopped with the throughput contenders.
	if err := b.restartUpstream(ctx); err != nil {
		return res, err
	}
	base.upstream = b.upstream
	var reps []*gatewayProc
	for i := range 3 {
		o := base
		o.name = fmt.Sprintf("replica-%c", 'a'+i)
		o.dataDir = filepath.Join(b.work, o.name, "data")
		g, err := startGateway(o)
		if err != nil {
			return res, err
		}
		b.track(g.process)
		reps = append(reps, g)
	}
	for _, g := range reps {
		if err := waitStatus(ctx, b.client, g.process, g.internal+"/readyz", http.StatusOK, time.Minute); err != nil {
			return res, err
		}
	}
	toks, err := b.revokeTokens(ctx, "redis", res.n)
	if err != nil {
		return res, err
	}
	const pollLimit = 5 * time.Second
	for i, tok := range toks {
		other := reps[1+i%2]
		url := other.public + "/rv/x"
		if code, err := get(ctx, b.client, url, tok); err != nil || code != http.StatusOK {
			res.failures = append(res.failures, fmt.Sprintf("token %d before revocation: status %d, %v; want 200", i, code, err))
			continue
		}
		t0 := time.Now()
		if err := b.revoke(ctx, reps[0].internal, "redis", i); err != nil {
			res.failures = append(res.failures, fmt.Sprintf("revocation %d: %v", i, err))
			continue
		}
		t1 := time.Now()
		for polls := 0; ; polls++ {
			code, err := get(ctx, b.client, url, tok)
			if err == nil && code == http.StatusUnauthorized {
				if polls == 0 {
					res.immediate++
				}
				res.call = append(res.call, t1.Sub(t0))
				res.refuse = append(res.refuse, time.Since(t1))
				break
			}
			if err != nil || code != http.StatusOK || time.Since(t1) > pollLimit {
				res.failures = append(res.failures, fmt.Sprintf("token %d on %s: status %d, %v after %s", i, other.name, code, err, time.Since(t1).Round(time.Millisecond)))
				break
			}
		}
	}
	if n := len(res.failures); n > 5 {
		res.failures = append(res.failures[:5], fmt.Sprintf("... and %d more", n-5))
	}
	return res, nil
}

// restartUpstream starts a new upstream app (after stopAll).
func (b *bench) restartUpstream(ctx context.Context) error {
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	control, err := freeAddr()
	if err != nil {
		return err
	}
	up, err := startChild(b.self, b.info.cpu.load, "upstream", "BENCH_LISTEN="+listen, "BENCH_CONTROL="+control)
	if err != nil {
		return err
	}
	b.track(up)
	b.upstream, b.control = "http://"+listen, "http://"+control
	return waitStatus(ctx, b.client, up, b.control+"/", http.StatusOK, 10*time.Second)
}

// peerBehaviour shows what a JWT-only gateway does with a revoked token:
// one revoked on oidcgate above still passes oauth2-proxy until its exp.
func (b *bench) peerBehaviour(ctx context.Context, cs []contender) string {
	life := fmt.Sprintf("token lifetime used: %s", tokenLifetime)
	for _, c := range cs {
		if c.prefix != "/o2p" {
			continue
		}
		tok := b.revoked
		if tok == "" {
			return life
		}
		base := strings.TrimSuffix(c.url, "/o2p/x")
		gw, err1 := get(ctx, b.client, b.gw.public+"/rv/x", tok)
		o2p, err2 := get(ctx, b.client, base+"/o2prv/x", tok)
		if err1 != nil || err2 != nil {
			return life
		}
		return fmt.Sprintf("oauth2-proxy and JWT-only gateways accept a token until it expires: a token revoked above got %d from oidcgate and %d from oauth2-proxy; %s, so a revoked token keeps working for up to that long", gw, o2p, life)
	}
	return "oauth2-proxy and JWT-only gateways accept a token until it expires; " + life + ", so a revoked token keeps working for up to that long"
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
