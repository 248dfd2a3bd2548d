package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// roleEnv selects a child role when the bench binary (or its test binary)
// starts: the upstream app and the bare proxy run in their own processes so
// that each one's CPU time can be read from /proc.
const roleEnv = "OIDCGATE_BENCH_ROLE"

// upstreamMarker is set by the upstream on every answer it serves; a
// counted response without it did not come from the upstream.
const upstreamMarker = "X-Bench-Upstream"

// The path prefixes of the contenders. The upstream counts what it serves
// per prefix and refuses (500) a request on an authenticated prefix that
// arrives without the identity header its proxy must set, or, where want
// is set, with another value. /rv and /o2prv are oidcgate and oauth2-proxy
// under the revocation tests (a subject per token).
var targets = []struct{ prefix, identity, want string }{
	{"/direct", "", ""},
	{"/bare", "", ""},
	{"/gw", "X-User", benchSub},
	{"/o2p", "X-Forwarded-User", benchSub},
	{"/rv", "X-User", ""},
	{"/o2prv", "X-Forwarded-User", ""},
	{"/fwd", "X-User", benchSub},
	{"/fwdo2p", "X-User", benchSub},
}

// runRole runs the child role named by roleEnv, if any, and reports
// whether it did.
func runRole() (bool, error) {
	switch os.Getenv(roleEnv) {
	case "":
		return false, nil
	case "upstream":
		return true, serveUpstream(os.Getenv("BENCH_LISTEN"), os.Getenv("BENCH_CONTROL"))
	case "bare":
		return true, serveBare(os.Getenv("BENCH_LISTEN"), os.Getenv("BENCH_UPSTREAM"))
	default:
		return true, fmt.Errorf("unknown %s %q", roleEnv, os.Getenv(roleEnv))
	}
}

// counter is what the upstream served on one prefix: a count, and the
// first and last time it served (Unix ns) since the last reset.
type counter struct {
	served      atomic.Int64
	first, last atomic.Int64
}

// served is one prefix's counter as the control endpoint reports it.
type served struct {
	Served int64 `json:"served"`
	// First and Last are Unix ns; 0 when nothing was served since the
	// last reset.
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// serveUpstream is the app behind every contender: a small 200 with the
// marker header. Its control listener answers a JSON map of prefix to
// served; with ?reset it also restarts the first/last windows, so that the
// window read after a round is the round's.
func serveUpstream(listen, control string) error {
	counters := make([]counter, len(targets))
	body := []byte("bench upstream ok\n")
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i, t := range targets {
			if r.URL.Path != t.prefix && !strings.HasPrefix(r.URL.Path, t.prefix+"/") {
				continue
			}
			if got := r.Header.Get(t.identity); t.identity != "" && (got == "" || t.want != "" && got != t.want) {
				http.Error(w, "missing or wrong "+t.identity, http.StatusInternalServerError)
				return
			}
			c := &counters[i]
			now := time.Now().UnixNano()
			c.first.CompareAndSwap(0, now)
			c.last.Store(now)
			c.served.Add(1)
			w.Header().Set(upstreamMarker, "ok")
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(body)
			return
		}
		http.NotFound(w, r)
	})
	ctl := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reset := r.URL.Query().Has("reset")
		out := make(map[string]served, len(targets))
		for i, t := range targets {
			c := &counters[i]
			s := served{Served: c.served.Load(), First: c.first.Load(), Last: c.last.Load()}
			if reset {
				s.First, s.Last = c.first.Swap(0), c.last.Swap(0)
			}
			out[t.prefix] = s
		}
		writeJSON(w, out)
	})
	errc := make(chan error, 2)
	go func() { errc <- serveOn(control, ctl) }()
	go func() { errc <- serveOn(listen, app) }()
	return <-errc
}

// serveBare is the floor for any Go proxy: httputil.ReverseProxy with the
// transport settings of gateway.newTransport and no other work.
func serveBare(listen, upstream string) error {
	u, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	return serveOn(listen, &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
		},
	})
}

func serveOn(addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	return srv.ListenAndServe()
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// process is one child process of the benchmark.
type process struct {
	name   string
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Keep the most recent output: error tails and the latest gctrace
	// lines are what is read back.
	if b.buf.Len() > 1<<20 {
		b.buf.Next(b.buf.Len() / 2)
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startProcess starts bin with args and exactly env, its recent output
// (1 to 2 MiB) kept for error messages and gctrace.
func startProcess(name, bin string, env []string, args ...string) (*process, error) {
	p := &process{name: name, cmd: exec.Command(bin, args...), output: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits up to 10s, then kills.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// failed wraps err with the process's recent output.
func (p *process) failed(err error) error {
	out := p.output.String()
	if len(out) > 2000 {
		out = out[len(out)-2000:]
	}
	return fmt.Errorf("%s: %w\n--- %s output (tail) ---\n%s", p.name, err, p.name, out)
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTime returns the user+system CPU time the process has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after its ')'
	// start at field 3, so utime (14) and stime (15) are [11] and [12].
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(u+st) * time.Second / clockTicks, nil
}

// cpuTimes is the CPU time of every process in pids together.
func cpuTimes(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		d, err := cpuTime(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// rssBytes returns the resident set size from /proc/<pid>/status.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// waitStatus polls url until it answers want, the process exits, or
// timeout passes.
func waitStatus(ctx context.Context, c *http.Client, p *process, url string, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if res, err := c.Do(req); err == nil {
			drain(res)
			if res.StatusCode == want {
				return nil
			}
			last = fmt.Errorf("%s: status %d", url, res.StatusCode)
		} else {
			last = err
		}
		select {
		case <-p.done:
			return p.failed(errors.New("exited before it was ready"))
		case <-ctx.Done():
			return p.failed(fmt.Errorf("not ready after %s: %w", timeout, last))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// getJSON decodes the JSON answer of url into v.
func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, res.StatusCode)
	}
	return json.NewDecoder(res.Body).Decode(v)
}
