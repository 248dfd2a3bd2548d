package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The load generator is wrk (HTTP/1.1 keep-alive, a fixed number of
// connections on one thread). Two small Lua scripts drive it: one sends a
// fixed Authorization header (computed once, so wrk stays on its fast
// path), the other a different pre-minted token on every request, never
// reusing one. Both print one JSON line with wrk's own totals and latency
// percentiles, which the benchmark parses.
const luaCommon = `
local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  local reused = 0
  for _, t in ipairs(threads) do reused = reused + (t:get("reused") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"reused":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), reused))
end
`

// luaStatic: args[1] is a file holding the whole Authorization header
// value, or absent for no header.
const luaStatic = luaCommon + `
reused = 0
function init(args)
  if args[1] then
    local f = assert(io.open(args[1]))
    wrk.headers["Authorization"] = f:read("*l")
    f:close()
  end
end
`

// luaFresh: args[1] is a file of tokens, one a line, args[2] how many to
// hold back. Each request takes the next token. Once all but the held-back
// ones are taken, the thread stops (wrk still waits out -d, so the round's
// rate comes from the upstream's served window, not wrk's duration); the
// held-back tokens cover requests already being written when it stops. A
// token sent twice would be a cache hit: it is counted in reused, and the
// round is reported as failed.
const luaFresh = luaCommon + `
local tokens = {}
local i = 0
local reserve = 0
reused = 0
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  reserve = tonumber(args[2])
end
function request()
  i = i + 1
  local t = tokens[i]
  if not t then
    reused = reused + 1
    t = tokens[#tokens]
  end
  return wrk.format(nil, nil, {Authorization = "Bearer " .. t})
end
function response(status, headers, body)
  if i + reserve >= #tokens then wrk.thread:stop() end
end
`

// loadResult is one wrk run.
type loadResult struct {
	Requests   int64 `json:"requests"`
	DurationUS int64 `json:"duration_us"`
	Connect    int64 `json:"connect"`
	Read       int64 `json:"read"`
	Write      int64 `json:"write"`
	Status     int64 `json:"status"`
	Timeout    int64 `json:"timeout"`
	P50US      int64 `json:"p50_us"`
	P99US      int64 `json:"p99_us"`
	Reused     int64 `json:"reused"`
}

func (r loadResult) rps() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// problems lists what makes the run unusable as a result: socket errors,
// non-2xx/3xx answers (wrk counts status >= 400), reused tokens.
func (r loadResult) problems() []string {
	var out []string
	for _, c := range []struct {
		n    int64
		what string
	}{
		{r.Connect, "connect errors"}, {r.Read, "read errors"}, {r.Write, "write errors"},
		{r.Timeout, "timeouts"}, {r.Status, "non-2xx answers"}, {r.Reused, "reused tokens (cache hits)"},
	} {
		if c.n > 0 {
			out = append(out, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	if r.Requests == 0 {
		out = append(out, "no requests completed")
	}
	return out
}

// loader runs wrk with the scripts written once into dir.
type loader struct {
	wrk     string
	cpus    string // taskset CPU list for wrk; "" runs it unpinned
	conns   int
	static  string
	fresh   string
	workDir string
}

func newLoader(wrk, cpus, dir string, conns int) (*loader, error) {
	l := &loader{wrk: wrk, cpus: cpus, conns: conns, workDir: dir,
		static: filepath.Join(dir, "static.lua"), fresh: filepath.Join(dir, "fresh.lua")}
	if err := os.WriteFile(l.static, []byte(luaStatic), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(l.fresh, []byte(luaFresh), 0o600); err != nil {
		return nil, err
	}
	return l, nil
}

// writeLines writes one token a line to a new file in the loader's
// directory and returns its path.
func (l *loader) writeLines(name string, lines []string) (string, error) {
	p := filepath.Join(l.workDir, name)
	return p, os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// seconds is d rounded up to whole seconds, at least 1: wrk's duration
// resolution.
func seconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
}

// run loads url for d (whole seconds, see seconds). authFile (may be "") holds the Authorization value
// for the static script; tokenFile (may be "") switches to the fresh
// script.
func (l *loader) run(ctx context.Context, url string, d time.Duration, authFile, tokenFile string) (loadResult, error) {
	args := []string{l.wrk, "-t1", "-c" + strconv.Itoa(l.conns),
		"-d" + strconv.Itoa(seconds(d)) + "s", "--timeout", "5s"}
	switch {
	case tokenFile != "":
		args = append(args, "-s", l.fresh, url, "--", tokenFile, strconv.Itoa(l.conns))
	case authFile != "":
		args = append(args, "-s", l.static, url, "--", authFile)
	default:
		args = append(args, "-s", l.static, url)
	}
	if l.cpus != "" {
		args = append([]string{"taskset", "-c", l.cpus}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return loadResult{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "BENCH_RESULT "); ok {
			var r loadResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				return loadResult{}, fmt.Errorf("wrk result %q: %w", rest, err)
			}
			return r, nil
		}
	}
	return loadResult{}, errors.New("wrk printed no result line:\n" + out.String() + stderr.String())
}
