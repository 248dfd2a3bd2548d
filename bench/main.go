package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	if ok, err := runRole(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.TODO(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseOptions(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(2)
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	quick bool
	// out is the directory for RESULTS.md and results.png.
	out string
	// oidcgate is the gateway binary; "" builds it into a temporary dir.
	oidcgate string
	// oauth2Proxy is the oauth2-proxy binary; "" or missing skips it.
	oauth2Proxy string
	wrk         string
	redisServer string
	// nginx runs the forward-auth contenders; missing skips them.
	nginx string
	// pin places load generator and upstream on the first CPU and the
	// proxy under test on the last (taskset), when there are at least 2.
	pin bool
	// command is how the run was invoked, for RESULTS.md.
	command string
	// plan, when not nil, replaces the plan -quick selects (tests).
	plan *plan
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.BoolVar(&o.quick, "quick", false, "short smoke run with tiny counts (seconds, not minutes)")
	fs.StringVar(&o.out, "out", "bench", "`dir` to write RESULTS.md and results.png to")
	fs.StringVar(&o.oidcgate, "oidcgate", "", "oidcgate `binary` (default: go build ./cmd/oidcgate into a temp dir)")
	fs.StringVar(&o.oauth2Proxy, "oauth2-proxy", "", "oauth2-proxy v7.15.6 `binary` (default: skip that contender)")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk `binary`")
	fs.StringVar(&o.nginx, "nginx", "nginx", "nginx `binary` for the forward-auth contenders (default: nginx on the PATH, else /usr/sbin/nginx; missing skips them)")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server `binary` for the Redis revocation test")
	fs.BoolVar(&o.pin, "pin", true, "pin processes to CPUs with taskset (proxy alone on the last CPU)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "bench: unexpected arguments:", fs.Args())
		return o, errors.New("usage")
	}
	// bench/run.sh names itself; run directly, the arguments are enough.
	if o.command = os.Getenv("OIDCGATE_BENCH_COMMAND"); o.command == "" {
		o.command = strings.TrimSpace("go run ./bench " + strings.Join(args, " "))
	}
	return o, nil
}

// plan is how much each part measures. wrk counts durations in whole
// seconds.
type plan struct {
	conns      int
	warmup     time.Duration
	rounds     int
	round      time.Duration
	freshRound time.Duration
	// freshTokens is how many tokens each fresh-token round may use.
	freshTokens int
	entries     int
	revocations int
	memSizes    []int
}

var (
	fullPlan = plan{
		conns: 32, warmup: 2 * time.Second, rounds: 3, round: 3 * time.Second, freshRound: 2 * time.Second, freshTokens: 6000,
		entries: 1_000_000, revocations: 1000,
		memSizes: []int{0, 100_000, 1_000_000, 5_000_000},
	}
	quickPlan = plan{
		conns: 8, warmup: time.Second, rounds: 2, round: time.Second, freshRound: time.Second, freshTokens: 1000,
		entries: 10_000, revocations: 20,
		memSizes: []int{0, 10_000},
	}
)

// cpuSets is where each kind of process runs.
type cpuSets struct{ load, proxy string }

func pinning(on bool) cpuSets {
	n := runtime.NumCPU()
	if !on || n < 2 {
		return cpuSets{}
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return cpuSets{}
	}
	load := "0"
	if n > 2 {
		load = fmt.Sprintf("0-%d", n-2)
	}
	return cpuSets{load: load, proxy: fmt.Sprint(n - 1)}
}

// runInfo describes the machine and the run, for RESULTS.md.
type runInfo struct {
	start           time.Time
	quick           bool
	command         string
	goVersion       string
	cpuModel        string
	cpus            int
	kernel          string
	cpu             cpuSets
	oidcgateVersion string
	oauth2Proxy     string
	nginx           string
	wrkVersion      string
	// loadStart and loadEnd are the 1-minute load averages.
	loadStart, loadEnd string
}

func run(ctx context.Context, o options, stdout io.Writer) error {
	p := fullPlan
	switch {
	case o.plan != nil:
		p = *o.plan
	case o.quick:
		p = quickPlan
	}
	work, err := os.MkdirTemp("", "oidcgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	info := runInfo{start: time.Now().UTC(), quick: o.quick, command: o.command,
		cpus: runtime.NumCPU(), cpu: pinning(o.pin), cpuModel: cpuModel(), kernel: kernel(), loadStart: loadAvg()}
	if info.goVersion, err = output(ctx, "go", "version"); err != nil {
		info.goVersion = runtime.Version()
	}
	if info.wrkVersion, err = wrkVersion(ctx, o.wrk); err != nil {
		return fmt.Errorf("wrk not usable (apt-get install wrk): %w", err)
	}
	if o.oidcgate == "" {
		o.oidcgate = filepath.Join(work, "oidcgate")
		fmt.Fprintln(stdout, "building oidcgate ...")
		// bench is a module of its own: oidcgate is built in its module
		// (the directory bench's go.mod replaces it with).
		root, err := output(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/oidcgate/oidcgate")
		if err != nil {
			return err
		}
		if _, err := output(ctx, "go", "build", "-C", root, "-o", o.oidcgate, "./cmd/oidcgate"); err != nil {
			return err
		}
	}
	if info.oidcgateVersion, err = output(ctx, o.oidcgate, "version"); err != nil {
		return err
	}
	if o.oauth2Proxy != "" {
		if _, err := os.Stat(o.oauth2Proxy); err != nil {
			o.oauth2Proxy = ""
		}
	}
	if o.oauth2Proxy == "" {
		info.oauth2Proxy = "not run (binary absent; bench/run.sh installs it)"
		fmt.Fprintln(stdout, "oauth2-proxy: binary absent, that contender is skipped")
	} else {
		info.oauth2Proxy = oauth2ProxyVersion(ctx, o.oauth2Proxy)
	}
	nginx := nginxBin(o.nginx)
	if nginx == "" {
		info.nginx = "not run (binary absent: apt-get install nginx-light)"
		fmt.Fprintln(stdout, "nginx: binary absent, the forward-auth contenders are skipped")
	} else if info.nginx, err = output(ctx, nginx, "-v"); err != nil {
		return err
	} else {
		info.nginx = strings.TrimPrefix(info.nginx, "nginx version: ")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	is, err := startIssuer()
	if err != nil {
		return err
	}
	defer is.close()
	b := &bench{o: o, p: p, info: info, work: work, self: self, is: is, out: stdout,
		client: newClient(), admin: randomHex(24), nginx: nginx}
	defer b.stopAll()
	res, err := b.run(ctx)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	info.loadEnd = loadAvg()
	md := renderMarkdown(info, p, res)
	if err := os.WriteFile(filepath.Join(o.out, "RESULTS.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := writeChart(filepath.Join(o.out, "results.png"), info, res.throughput); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s\nwrote %s and %s\n", md, filepath.Join(o.out, "RESULTS.md"), filepath.Join(o.out, "results.png"))
	if res.failed() {
		return errors.New("some measurements failed; see RESULTS.md")
	}
	return nil
}

// newClient is the benchmark's own HTTP client (keep-alive, no proxy from
// the environment).
func newClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
}

// output runs a command and returns its trimmed combined output.
func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("%s %v: %w: %s", name, args, err, s)
	}
	return s, nil
}

func ensureDir(dir string) error { return os.MkdirAll(dir, 0o700) }
