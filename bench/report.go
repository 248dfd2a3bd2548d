package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return "Linux " + strings.TrimSpace(string(b))
}

func wrkVersion(ctx context.Context, wrk string) (string, error) {
	// wrk -v prints its version and exits non-zero.
	out, _ := output(ctx, wrk, "-v")
	if !strings.HasPrefix(out, "wrk") {
		return "", fmt.Errorf("%s -v: %q", wrk, out)
	}
	return firstLine(out), nil
}

// oauth2ProxyVersion reads the module version from the binary's build
// info (a go-installed oauth2-proxy prints "undefined" for --version).
func oauth2ProxyVersion(ctx context.Context, bin string) string {
	out, err := output(ctx, "go", "version", "-m", bin)
	if err != nil {
		return bin
	}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && strings.HasPrefix(f[1], "github.com/oauth2-proxy/") {
			return f[1] + " " + f[2]
		}
	}
	return bin
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }

// renderMarkdown is RESULTS.md.
func renderMarkdown(info runInfo, p plan, r results) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	title := "oidcgate benchmark results"
	if info.quick {
		title += " (QUICK smoke run: tiny counts, not a result)"
	}
	w("# %s", title)
	w("")
	w("- date: %s", info.start.Format(time.RFC3339))
	w("- machine: %s, %d CPUs, %s", info.cpuModel, info.cpus, info.kernel)
	w("- %s; oidcgate %s; oauth2-proxy: %s; %s; %s", info.goVersion, info.oidcgateVersion, info.oauth2Proxy, info.nginx, info.wrkVersion)
	w("- command: `%s`", info.command)
	w("- load average (1 min) at start / end: %s / %s — anything well above 0 is other work competing for the same CPUs", info.loadStart, info.loadEnd)
	if info.cpu.proxy != "" {
		w("- CPUs are shared: load generator (wrk, 1 thread) and upstream pinned to CPU %s, the proxy under test alone on CPU %s (taskset; Go sets GOMAXPROCS to 1 there). Other work on this machine shares them too.", info.cpu.load, info.cpu.proxy)
	} else {
		w("- no CPU pinning: load generator, upstream and proxy share every CPU with whatever else runs.")
	}
	w("")
	w("## Throughput (%d keep-alive connections, warm-up %s, %d interleaved rounds of %s, fresh-token rounds %s; medians)", p.conns, p.warmup, p.rounds, p.round, p.freshRound)
	w("")
	throughputTable(w, r.throughput, false)
	w("CPU per request is the proxy process's user+system time from /proc/PID/stat over the requests wrk completed (for \"upstream direct\" it is the upstream's). \"proxy CPU busy\" is that time over wall time: near 100%% the proxy's core was the limit; well below it, something else was (the load generator, the upstream, or other work on a shared machine), and req/s then says more about the machine than about the proxy: compare CPU per request instead. Every counted request got a 2xx that the upstream served with the right identity header (the upstream counts per contender and must match wrk's count); the fresh-token rounds must show no token-cache hit. A round that fails any check is listed as FAILED, not averaged in.")
	w("")
	ratioTable(w, r.ratios, false)
	w("## Forward auth behind nginx (auth_request, cached JWT)")
	w("")
	w("The same rounds as above, interleaved with them. A real nginx (%s, one worker) on loopback asks `/oauth2/auth` before proxying each request to the same upstream: once oidcgate's, once oauth2-proxy's (a second instance, with `--set-xauthrequest` so that it answers the user). The server blocks have the shape of the README's nginx snippet (an internal auth location fed `X-Original-Method` and `X-Original-URL`; `auth_request_set` copies the user into `X-User`, which the upstream checks on every request), plus keep-alive to the auth service and the app for both. nginx and the auth service share the proxy CPU; CPU per request is theirs together.", info.nginx)
	w("")
	throughputTable(w, r.throughput, true)
	ratioTable(w, r.ratios, true)
	w("## Revocation → refusal")
	w("")
	w("| setup | revocations | admin call (POST → 201) p50 / p99 | 201 → refused p50 / p99 | refused on the first request after the 201 |")
	w("|---|---:|---|---|---|")
	revRow(w, fmt.Sprintf("memory backend, one replica, %d entries loaded", p.entries), r.revMemory)
	revRow(w, "redis backend, 3 replicas: revoke on A, poll B or C", r.revRedis)
	w("")
	w("For the same replica, \"201 → refused\" is the round trip of the very next request, which must already get 401. For Redis it is the time until the other replica first answers 401, polling as fast as one client can.")
	w("")
	w("Peer behaviour: %s.", r.peer)
	w("")
	w("## Memory and start-up")
	w("")
	w("| revocation entries | reload (start → /readyz 200) | live heap after GC | RSS |")
	w("|---:|---:|---:|---:|")
	for _, m := range r.memory {
		if m.err != "" {
			w("| %d | FAILED: %s | | |", m.entries, firstLine(m.err))
			continue
		}
		w("| %d | %s | %d MB | %d MB |", m.entries, m.reload.Round(time.Millisecond), m.heapMB, m.rss>>20)
	}
	w("")
	w("The gateway loads a data_dir written by the benchmark (bbolt, cache's record layout; the run checks oidcgate_revocation_entries equals the count written). Live heap is what the runtime's gctrace reports as marked live by a GC cycle started after readiness (goal for 1M entries: ≤ 150 MB). RSS is VmRSS from /proc.")
	return b.String()
}

// throughputTable writes the table and descriptions of the contenders
// whose fwd is fwd.
func throughputTable(w func(string, ...any), cs []contenderResult, fwd bool) {
	w("| contender | req/s | p50 | p99 | CPU per request | proxy CPU busy | rounds |")
	w("|---|---:|---:|---:|---:|---:|---|")
	n := 0
	for _, c := range cs {
		if c.fwd != fwd {
			continue
		}
		n++
		if !c.ok() {
			w("| %s | FAILED | | | | | %s |", c.name, strings.Join(c.failures, "; "))
			continue
		}
		rps := make([]string, len(c.rounds))
		for i, rd := range c.rounds {
			rps[i] = fmt.Sprintf("%.0f", rd.rps)
		}
		m := c.median
		w("| %s | %.0f | %s | %s | %s | %.0f%% | %s |", c.name, m.rps, ms(m.p50), ms(m.p99), us(m.cpuPerReq), 100*m.util, strings.Join(rps, ", "))
	}
	if n == 0 {
		w("| not run (nginx absent) | | | | | | |")
	}
	w("")
	for _, c := range cs {
		if c.fwd == fwd {
			w("- **%s**: %s", c.name, c.desc)
		}
	}
	w("")
}

// ratioTable writes the ratios whose fwd is fwd.
func ratioTable(w func(string, ...any), rs []ratio, fwd bool) {
	w("| ratio (median of the per-round quotients) | value | goal |")
	w("|---|---:|---|")
	for _, q := range rs {
		if q.fwd != fwd {
			continue
		}
		v := "n/a (a side was not measured)"
		if q.ok {
			v = fmt.Sprintf("%.2f×", q.value)
		}
		w("| %s | %s | %s |", q.what, v, q.goal)
	}
	w("")
}

func revRow(w func(string, ...any), name string, r revResult) {
	switch {
	case r.skipped != "":
		w("| %s | %s | | | |", name, r.skipped)
	case r.failed():
		w("| %s | FAILED | %s | | |", name, strings.Join(r.failures, "; "))
	default:
		w("| %s | %d | %s / %s | %s / %s | %d of %d |", name, r.n,
			ms(percentile(r.call, 50)), ms(percentile(r.call, 99)),
			ms(percentile(r.refuse, 50)), ms(percentile(r.refuse, 99)), r.immediate, r.n)
	}
}

// writeChart draws req/s and p99 per contender side by side.
func writeChart(path string, info runInfo, cs []contenderResult) error {
	var names []string
	var rps, p99 plotter.Values
	for _, c := range cs {
		if !c.ok() {
			continue
		}
		names = append(names, strings.ReplaceAll(c.name, " ", "\n"))
		rps = append(rps, c.median.rps)
		p99 = append(p99, float64(c.median.p99)/1e6)
	}
	suffix := ""
	if info.quick {
		suffix = " (quick smoke run)"
	}
	left, err := barPlot("requests per second (median)"+suffix, "req/s", names, rps)
	if err != nil {
		return err
	}
	right, err := barPlot("p99 latency (median)"+suffix, "ms", names, p99)
	if err != nil {
		return err
	}
	const width, height = 12 * vg.Inch, 4.5 * vg.Inch
	img := vgimg.New(width, height)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 4, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	canvases := plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func barPlot(title, unit string, names []string, v plotter.Values) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	p.Y.Min = 0
	if len(v) == 0 {
		return p, nil
	}
	bars, err := plotter.NewBarChart(v, vg.Points(36))
	if err != nil {
		return nil, err
	}
	bars.Color = plotter.DefaultLineStyle.Color
	p.Add(bars)
	p.Y.Max *= 1.08
	p.NominalX(names...)
	return p, nil
}

// loadAvg is the 1-minute load average from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f, _, _ := strings.Cut(string(b), " ")
	return f
}
