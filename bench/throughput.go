package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// bench holds one run's shared state.
type bench struct {
	o      options
	p      plan
	info   runInfo
	work   string
	self   string
	is     *issuer
	out    io.Writer
	client *http.Client
	admin  string
	// nginx is the nginx binary; "" skips forward auth.
	nginx string

	procs    []*process
	upstream string // base URL of the app
	control  string // base URL of its counters
	gw       *gatewayProc
	// revoked is a token revoked on gw, shown to oauth2-proxy afterwards.
	revoked string
}

// stopAll stops every tracked process: all at once (a gateway on Redis
// takes about a second to close), and redis-server after the gateways.
func (b *bench) stopAll() {
	for _, last := range []bool{false, true} {
		var wg sync.WaitGroup
		for _, p := range b.procs {
			if (p.name == redisName) == last {
				wg.Go(p.stop)
			}
		}
		wg.Wait()
	}
	b.procs = nil
}

func (b *bench) track(p *process) *process {
	b.procs = append(b.procs, p)
	return p
}

// logf prints progress, stamped with the time since the run started.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "[%6.1fs] "+format+"\n", append([]any{time.Since(b.info.start).Seconds()}, args...)...)
}

// contender is one thing measured under load.
type contender struct {
	name   string
	desc   string
	url    string
	prefix string // upstream counter it must move
	// pids are the processes whose CPU time is the contender's.
	pids []int
	// fwd: forward auth behind nginx, reported in its own section.
	fwd bool
	// authFile is the Authorization header value file; "" sends none.
	authFile string
	// fresh mints a new token for every request.
	fresh bool
}

// round is one measured wrk run of one contender.
type round struct {
	rps       float64
	p50, p99  time.Duration
	cpuPerReq time.Duration
	// util is the process's CPU time over wall time (1.0 = one core busy).
	util     float64
	requests int64
}

// contenderResult is every round of one contender and their medians.
type contenderResult struct {
	name, desc string
	fwd        bool
	rounds     []round
	// failures lists why rounds were not counted; any makes the contender
	// failed, and its numbers are not reported as a result.
	failures []string
	median   round
}

func (c contenderResult) ok() bool { return len(c.failures) == 0 && len(c.rounds) > 0 }

// ratio is one contender's req/s over another's, as the median of the
// per-round quotients (rounds are interleaved, so each pair shares the
// machine's conditions).
type ratio struct {
	what  string
	value float64
	goal  string
	ok    bool // both sides measured
	fwd   bool // a forward-auth ratio
}

// results is everything a run measured.
type results struct {
	throughput []contenderResult
	ratios     []ratio
	revMemory  revResult
	revRedis   revResult
	peer       string
	memory     []memResult
}

func (r results) failed() bool {
	for _, c := range r.throughput {
		if len(c.failures) > 0 {
			return true
		}
	}
	for _, m := range r.memory {
		if m.err != "" {
			return true
		}
	}
	return r.revMemory.failed() || r.revRedis.failed()
}

func (b *bench) run(ctx context.Context) (results, error) {
	var res results
	cs, err := b.startContenders(ctx)
	if err != nil {
		return res, err
	}
	b.logf("throughput: %d contenders, %d connections, warm-up %s, %d rounds of %s (fresh-token rounds %s)",
		len(cs), b.p.conns, b.p.warmup, b.p.rounds, b.p.round, b.p.freshRound)
	res.throughput, res.ratios, err = b.throughput(ctx, cs)
	if err != nil {
		return res, err
	}
	b.logf("revocation latency, memory backend, one replica ...")
	res.revMemory, err = b.revokeMemory(ctx)
	if err != nil {
		return res, err
	}
	res.peer = b.peerBehaviour(ctx, cs)
	b.stopAll()
	b.logf("revocation latency, redis backend, 3 replicas ...")
	res.revRedis, err = b.revokeRedis(ctx)
	if err != nil {
		return res, err
	}
	b.stopAll()
	b.logf("memory and reload time ...")
	res.memory, err = b.memory(ctx)
	return res, err
}

// startContenders starts the upstream, the bare proxy, oidcgate on a
// data_dir holding plan.entries revocations, and oauth2-proxy if present.
func (b *bench) startContenders(ctx context.Context) ([]contender, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	control, err := freeAddr()
	if err != nil {
		return nil, err
	}
	up, err := startChild(b.self, b.info.cpu.load, "upstream", "BENCH_LISTEN="+listen, "BENCH_CONTROL="+control)
	if err != nil {
		return nil, err
	}
	b.track(up)
	b.upstream, b.control = "http://"+listen, "http://"+control
	if err := waitStatus(ctx, b.client, up, b.control+"/", http.StatusOK, 10*time.Second); err != nil {
		return nil, err
	}
	bareAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	bare, err := startChild(b.self, b.info.cpu.proxy, "bare", "BENCH_LISTEN="+bareAddr, "BENCH_UPSTREAM="+b.upstream)
	if err != nil {
		return nil, err
	}
	b.track(bare)

	dataDir := filepath.Join(b.work, "gw", "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	if err := b.storeFile(dataDir, b.p.entries); err != nil {
		return nil, err
	}
	b.gw, err = startGateway(gatewayOpts{name: "oidcgate", bin: b.o.oidcgate, cpus: b.info.cpu.proxy,
		dataDir: dataDir, issuer: b.is.url, upstream: b.upstream, admin: b.admin})
	if err != nil {
		return nil, err
	}
	b.track(b.gw.process)
	if err := waitStatus(ctx, b.client, b.gw.process, b.gw.internal+"/readyz", http.StatusOK, 2*time.Minute); err != nil {
		return nil, err
	}
	if err := b.checkEntries(ctx, b.gw, b.p.entries); err != nil {
		return nil, err
	}
	if err := waitStatus(ctx, b.client, bare, "http://"+bareAddr+"/bare/ready", http.StatusOK, 10*time.Second); err != nil {
		return nil, err
	}

	tok, err := b.is.mint(benchSub, "cached", time.Now().Add(-time.Second))
	if err != nil {
		return nil, err
	}
	authFile := filepath.Join(b.work, "auth")
	if err := os.WriteFile(authFile, []byte("Bearer "+tok+"\n"), 0o600); err != nil {
		return nil, err
	}
	if code, err := get(ctx, b.client, b.gw.public+"/gw/ready", tok); err != nil || code != http.StatusOK {
		return nil, b.gw.failed(fmt.Errorf("bearer request: status %d, %v; want 200", code, err))
	}
	cs := []contender{
		{name: "upstream direct", desc: "the app itself, no proxy", url: b.upstream + "/direct/x", prefix: "/direct", pids: []int{up.pid()}},
		{name: "bare ReverseProxy", desc: "httputil.ReverseProxy, no auth: the floor for a Go proxy", url: "http://" + bareAddr + "/bare/x", prefix: "/bare", pids: []int{bare.pid()}},
		{name: "oidcgate cached JWT", desc: fmt.Sprintf("one valid RS256 bearer token (verdict cached; revocation checked on every request), %d entries loaded", b.p.entries),
			url: b.gw.public + "/gw/x", prefix: "/gw", pids: []int{b.gw.pid()}, authFile: authFile},
		{name: "oidcgate fresh JWT", desc: fmt.Sprintf("a new RS256 token on every request (signature verified each time, no cache hit), %d entries loaded", b.p.entries),
			url: b.gw.public + "/gw/x", prefix: "/gw", pids: []int{b.gw.pid()}, fresh: true},
	}
	if b.o.oauth2Proxy != "" {
		p, base, err := startOAuth2Proxy(b.o.oauth2Proxy, b.info.cpu.proxy, b.is.url, b.upstream)
		if err != nil {
			return nil, err
		}
		b.track(p)
		if err := waitOAuth2Proxy(ctx, b.client, p, base, tok); err != nil {
			return nil, err
		}
		cs = append(cs, contender{name: "oauth2-proxy", desc: "v7.15.6, --skip-jwt-bearer-tokens with the same issuer (verifies the signature on every request)",
			url: base + "/o2p/x", prefix: "/o2p", pids: []int{p.pid()}, authFile: authFile})
	}
	if b.nginx != "" {
		fwd, err := b.startForwardAuth(ctx, authFile, tok)
		if err != nil {
			return nil, err
		}
		cs = append(cs, fwd...)
	}
	return cs, nil
}

// checkEntries fails unless the gateway reports exactly n revocation
// entries: proof that it loaded the file the benchmark wrote.
func (b *bench) checkEntries(ctx context.Context, g *gatewayProc, n int) error {
	m, err := b.metrics(ctx, g)
	if err != nil {
		return err
	}
	if got := m["oidcgate_revocation_entries"]; got != float64(n) {
		return g.failed(fmt.Errorf("oidcgate_revocation_entries: got %v; want %d (store file not loaded as written)", got, n))
	}
	return nil
}

// metrics returns the gateway's /metrics samples by name with labels, as
// exposed (e.g. `oidcgate_token_cache_total{result="hit"}`).
func (b *bench) metrics(ctx context.Context, g *gatewayProc) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.internal+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	res, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer drain(res)
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: status %d", res.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

const (
	cacheHits   = `oidcgate_token_cache_total{result="hit"}`
	cacheMisses = `oidcgate_token_cache_total{result="miss"}`
)

// throughput warms every contender up, then runs the rounds interleaved
// (round 1 of each, round 2 of each, ...), and computes medians and
// ratios.
func (b *bench) throughput(ctx context.Context, cs []contender) ([]contenderResult, []ratio, error) {
	l, err := newLoader(b.o.wrk, b.info.cpu.load, b.work, b.p.conns)
	if err != nil {
		return nil, nil, err
	}
	// The fresh-token contender needs a token per request, minted before
	// any load runs (RS256 signing is slow: it would steal the CPU).
	start := time.Now()
	warmTokens, err := b.is.mintPool(ctx, b.p.freshTokens/3, "warm", func(int) string { return benchSub })
	if err != nil {
		return nil, nil, err
	}
	warmFile, err := l.writeLines("warm.tokens", warmTokens)
	if err != nil {
		return nil, nil, err
	}
	freshFiles := make([]string, b.p.rounds)
	for i := range freshFiles {
		toks, err := b.is.mintPool(ctx, b.p.freshTokens, fmt.Sprintf("r%d", i), func(int) string { return benchSub })
		if err != nil {
			return nil, nil, err
		}
		if freshFiles[i], err = l.writeLines(fmt.Sprintf("round%d.tokens", i), toks); err != nil {
			return nil, nil, err
		}
	}
	b.logf("minted %d tokens in %s", len(warmTokens)+b.p.rounds*b.p.freshTokens, time.Since(start).Round(time.Millisecond))
	for _, c := range cs {
		if b.p.warmup == 0 {
			break
		}
		tf := ""
		if c.fresh {
			tf = warmFile
		}
		if _, err := l.run(ctx, c.url, b.p.warmup, c.authFile, tf); err != nil {
			return nil, nil, err
		}
	}

	out := make([]contenderResult, len(cs))
	for i, c := range cs {
		out[i] = contenderResult{name: c.name, desc: c.desc, fwd: c.fwd}
	}
	for r := range b.p.rounds {
		for i, c := range cs {
			rd, problems, err := b.round(ctx, l, c, freshFiles[r])
			if err != nil {
				return nil, nil, err
			}
			if len(problems) > 0 {
				out[i].failures = append(out[i].failures, fmt.Sprintf("round %d: %s", r+1, strings.Join(problems, ", ")))
				out[i].rounds = append(out[i].rounds, round{})
				continue
			}
			out[i].rounds = append(out[i].rounds, rd)
			b.logf("  round %d %-34s %8.0f req/s  p50 %-9s p99 %-9s cpu/req %s", r+1, c.name, rd.rps, rd.p50, rd.p99, rd.cpuPerReq)
		}
	}
	for i := range out {
		if out[i].ok() {
			out[i].median = medianRound(out[i].rounds)
		}
	}
	return out, ratios(out), nil
}

// round runs one measured load of c and checks what the upstream and the
// gateway saw. problems lists why it does not count.
func (b *bench) round(ctx context.Context, l *loader, c contender, freshFile string) (round, []string, error) {
	before, err := b.served(ctx, true)
	if err != nil {
		return round{}, nil, err
	}
	var mBefore map[string]float64
	if c.fresh {
		if mBefore, err = b.metrics(ctx, b.gw); err != nil {
			return round{}, nil, err
		}
	}
	cpu0, err := cpuTimes(c.pids)
	if err != nil {
		return round{}, nil, err
	}
	tf, d := "", b.p.round
	if c.fresh {
		tf, d = freshFile, b.p.freshRound
	}
	t0 := time.Now()
	r, err := l.run(ctx, c.url, d, c.authFile, tf)
	if err != nil {
		return round{}, nil, err
	}
	wall := time.Since(t0)
	cpu1, err := cpuTimes(c.pids)
	if err != nil {
		return round{}, nil, err
	}
	after, err := b.served(ctx, false)
	if err != nil {
		return round{}, nil, err
	}
	problems := r.problems()
	// wrk stops with requests in flight: the upstream may have served (or
	// may yet serve) up to one per connection more than wrk counted, never
	// fewer.
	if n := after[c.prefix].Served - before[c.prefix].Served; n < r.Requests || n > r.Requests+int64(b.p.conns) {
		problems = append(problems, fmt.Sprintf("upstream served %d on %s for %d completed requests", n, c.prefix, r.Requests))
	}
	for p, n := range after {
		if p != c.prefix && n.Served != before[p].Served {
			problems = append(problems, fmt.Sprintf("upstream served %d on %s meanwhile", n.Served-before[p].Served, p))
		}
	}
	rps := r.rps()
	if c.fresh {
		// The fresh script stops when its tokens run out, before wrk's
		// -d is over: the rate is over the upstream's served window.
		w := after[c.prefix]
		if w.Last <= w.First {
			problems = append(problems, "no served window")
		} else {
			wall = time.Duration(w.Last - w.First)
			rps = float64(r.Requests) / wall.Seconds()
		}
	}
	if c.fresh {
		m, err := b.metrics(ctx, b.gw)
		if err != nil {
			return round{}, nil, err
		}
		if hits := m[cacheHits] - mBefore[cacheHits]; hits != 0 {
			problems = append(problems, fmt.Sprintf("%v token cache hits", hits))
		}
		if misses := m[cacheMisses] - mBefore[cacheMisses]; misses < float64(r.Requests) {
			problems = append(problems, fmt.Sprintf("%v cache misses for %d requests", misses, r.Requests))
		}
	}
	if len(problems) > 0 {
		return round{}, problems, nil
	}
	cpu := cpu1 - cpu0
	return round{
		rps:       rps,
		p50:       time.Duration(r.P50US) * time.Microsecond,
		p99:       time.Duration(r.P99US) * time.Microsecond,
		cpuPerReq: cpu / time.Duration(r.Requests),
		util:      cpu.Seconds() / wall.Seconds(),
		requests:  r.Requests,
	}, nil, nil
}

// served returns the upstream's counters. With settle it first waits
// until they have not moved for quietFor (the previous load's stragglers
// have landed; a proxy on a busy machine may answer a closed connection's
// request much later), up to 5s, then restarts their windows.
func (b *bench) served(ctx context.Context, settle bool) (map[string]served, error) {
	const quietFor, poll = 300 * time.Millisecond, 50 * time.Millisecond
	read := func(q string) (map[string]served, error) {
		var m map[string]served
		if err := getJSON(ctx, b.client, b.control+"/"+q, &m); err != nil {
			return nil, fmt.Errorf("upstream counters: %w", err)
		}
		return m, nil
	}
	if !settle {
		return read("")
	}
	prev, err := read("")
	if err != nil {
		return nil, err
	}
	quiet := time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Since(quiet) < quietFor && time.Now().Before(deadline); {
		time.Sleep(poll)
		m, err := read("")
		if err != nil {
			return nil, err
		}
		if !maps.EqualFunc(m, prev, func(a, b served) bool { return a.Served == b.Served }) {
			prev, quiet = m, time.Now()
		}
	}
	return read("?reset")
}

// medianRound is the per-field median of rs.
func medianRound(rs []round) round {
	pick := func(f func(round) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return median(v)
	}
	return round{
		rps:       pick(func(r round) float64 { return r.rps }),
		p50:       time.Duration(pick(func(r round) float64 { return float64(r.p50) })),
		p99:       time.Duration(pick(func(r round) float64 { return float64(r.p99) })),
		cpuPerReq: time.Duration(pick(func(r round) float64 { return float64(r.cpuPerReq) })),
		util:      pick(func(r round) float64 { return r.util }),
		requests:  int64(pick(func(r round) float64 { return float64(r.requests) })),
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ratios pairs the contenders round by round: req/s, and CPU per request
// (which a shared machine disturbs far less than req/s).
func ratios(rs []contenderResult) []ratio {
	find := func(name string) *contenderResult {
		for i := range rs {
			if rs[i].name == name {
				return &rs[i]
			}
		}
		return nil
	}
	pair := func(what, a, b, goal string, f func(round) float64) ratio {
		x, y := find(a), find(b)
		out := ratio{what: what, goal: goal}
		if x == nil || y == nil || !x.ok() || !y.ok() {
			return out
		}
		var q []float64
		for i := range min(len(x.rounds), len(y.rounds)) {
			q = append(q, f(x.rounds[i])/f(y.rounds[i]))
		}
		out.value, out.ok = median(q), true
		return out
	}
	rps := func(r round) float64 { return r.rps }
	cpu := func(r round) float64 { return float64(r.cpuPerReq) }
	p99 := func(r round) float64 { return float64(r.p99) }
	fwd := func(q ratio) ratio {
		q.fwd = true
		return q
	}
	const (
		cached = "oidcgate cached JWT"
		fresh  = "oidcgate fresh JWT"
		bare   = "bare ReverseProxy"
		o2p    = "oauth2-proxy"
	)
	return []ratio{
		pair("req/s: oidcgate cached JWT ÷ bare ReverseProxy", cached, bare, "≥ 0.85", rps),
		pair("req/s: oidcgate cached JWT ÷ oauth2-proxy", cached, o2p, "≥ 1.5", rps),
		pair("req/s: oidcgate fresh JWT ÷ oauth2-proxy (both verify a signature on every request)", fresh, o2p, "", rps),
		pair("CPU per request: oidcgate cached JWT ÷ bare ReverseProxy", cached, bare, "lower is better", cpu),
		pair("CPU per request: oidcgate cached JWT ÷ oauth2-proxy", cached, o2p, "lower is better", cpu),
		pair("CPU per request: oidcgate fresh JWT ÷ oauth2-proxy", fresh, o2p, "lower is better", cpu),
		fwd(pair("req/s: "+fwdOidcgate+" ÷ "+fwdOAuth2Proxy, fwdOidcgate, fwdOAuth2Proxy, "≥ 1.5", rps)),
		fwd(pair("p99: "+fwdOidcgate+" ÷ "+fwdOAuth2Proxy, fwdOidcgate, fwdOAuth2Proxy, "≤ 0.5", p99)),
		fwd(pair("CPU per request: "+fwdOidcgate+" ÷ "+fwdOAuth2Proxy, fwdOidcgate, fwdOAuth2Proxy, "lower is better", cpu)),
	}
}
