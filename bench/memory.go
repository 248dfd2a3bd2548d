package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memResult is one gateway started on a data_dir of n entries.
type memResult struct {
	entries int
	// reload is from process start until /readyz answered 200 (store
	// loaded, listeners up, issuer keys fetched).
	reload time.Duration
	// heapMB is the live heap marked by the first GC cycle begun after
	// readiness (GODEBUG=gctrace=1), in MB as the runtime prints it.
	heapMB int
	// rss is VmRSS once ready.
	rss int64
	err string
}

// gcLine matches a gctrace line: its start (seconds since the process
// started) and heap sizes, start->end->live MB.
var gcLine = regexp.MustCompile(`(?m)^gc \d+ @([0-9.]+)s .* (\d+)->(\d+)->(\d+) MB`)

// memory starts oidcgate once per plan.memSizes on a data_dir of that many
// entries and reports reload time, live heap after a GC, and RSS.
func (b *bench) memory(ctx context.Context) ([]memResult, error) {
	if err := b.restartUpstream(ctx); err != nil {
		return nil, err
	}
	var out []memResult
	for _, n := range b.p.memSizes {
		r, err := b.memoryOne(ctx, n)
		if err != nil {
			return nil, err
		}
		if r.err == "" {
			b.logf("  %9d entries: reload %s, heap %d MB, RSS %d MB", n, r.reload.Round(time.Millisecond), r.heapMB, r.rss>>20)
		}
		out = append(out, r)
	}
	return out, nil
}

func (b *bench) memoryOne(ctx context.Context, n int) (memResult, error) {
	res := memResult{entries: n}
	name := fmt.Sprintf("mem-%d", n)
	dataDir := filepath.Join(b.work, name, "data")
	o := gatewayOpts{name: name, bin: b.o.oidcgate, dataDir: dataDir, issuer: b.is.url,
		upstream: b.upstream, admin: b.admin, godebug: "gctrace=1"}
	if err := ensureDir(dataDir); err != nil {
		return res, err
	}
	if err := b.storeFile(dataDir, n); err != nil {
		return res, err
	}
	start := time.Now()
	g, err := startGateway(o)
	if err != nil {
		return res, err
	}
	defer g.stop()
	if err := waitStatus(ctx, b.client, g.process, g.internal+"/readyz", http.StatusOK, 3*time.Minute); err != nil {
		res.err = err.Error()
		return res, nil
	}
	res.reload = time.Since(start)
	if err := b.checkEntries(ctx, g, n); err != nil {
		res.err = err.Error()
		return res, nil
	}
	// RSS as it stands once ready, before heapAfterGC adds garbage.
	if res.rss, err = rssBytes(g.pid()); err != nil {
		return res, err
	}
	if res.heapMB, err = b.heapAfterGC(ctx, g, res.reload); err != nil {
		res.err = err.Error()
	}
	return res, nil
}

// heapAfterGC makes the gateway collect garbage after it is ready and
// returns the live heap that collection marked. Nothing in the product
// forces a GC, so the benchmark allocates in the gateway from outside:
// health checks carrying 48 KiB of headers, which net/http reads into
// fresh strings. gctrace stamps each cycle with its start since the
// process began; ready bounds that from above, so a cycle stamped later
// began after the store was loaded.
func (b *bench) heapAfterGC(ctx context.Context, g *gatewayProc, ready time.Duration) (int, error) {
	pad := strings.Repeat("x", 1000)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// Requests run to completion (a request cut off mid-headers would hold
	// up the gateway's graceful shutdown); its own client, closed after.
	c := newClient()
	defer c.CloseIdleConnections()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() && ctx.Err() == nil {
				req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodGet, g.internal+"/healthz", nil)
				if err != nil {
					return
				}
				for i := range 48 {
					req.Header.Set("X-Pad-"+strconv.Itoa(i), pad)
				}
				if res, err := c.Do(req); err == nil {
					drain(res)
				}
			}
		})
	}
	defer wg.Wait()
	defer stop.Store(true)
	for {
		for _, m := range gcLine.FindAllStringSubmatch(g.output.String(), -1) {
			at, err := strconv.ParseFloat(m[1], 64)
			if err == nil && at > ready.Seconds() {
				return strconv.Atoi(m[4])
			}
		}
		select {
		case <-ctx.Done():
			return 0, g.failed(fmt.Errorf("no GC after readiness: %w", ctx.Err()))
		case <-g.done:
			return 0, g.failed(fmt.Errorf("exited"))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// storeFile puts a store of n entries into dataDir, copying a file written
// earlier in this run for the same n (writing a million entries takes
// seconds).
func (b *bench) storeFile(dataDir string, n int) error {
	tmpl := filepath.Join(b.work, "stores", fmt.Sprint(n))
	if _, err := os.Stat(filepath.Join(tmpl, storeFile)); err != nil {
		if err := ensureDir(tmpl); err != nil {
			return err
		}
		start := time.Now()
		if err := writeStore(tmpl, b.is.url, n, time.Now()); err != nil {
			return fmt.Errorf("writing %d revocation entries: %w", n, err)
		}
		b.logf("wrote %d revocation entries in %s", n, time.Since(start).Round(time.Millisecond))
	}
	src, err := os.Open(filepath.Join(tmpl, storeFile))
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dataDir, storeFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		_ = dst.Close()
		return err
	}
	return dst.Close()
}
