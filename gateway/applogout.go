package gateway

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// App logout defaults (AppLogoutConfig zero values).
const (
	defaultLogoutWorkers  = 4
	defaultLogoutQueue    = 1024
	defaultLogoutTimeout  = 5 * time.Second
	defaultLogoutAttempts = 4
	defaultLogoutBackoff  = 500 * time.Millisecond
	defaultRegistrySize   = 100_000
	defaultDrainTimeout   = 10 * time.Second
	maxLogoutBackoff      = 30 * time.Second
)

// The oidcgate_app_logout_total outcomes.
const (
	outcomeOK       = "ok"       // the app answered 2xx or 3xx
	outcomeRejected = "rejected" // the app answered 4xx (not 408/429): not retried
	outcomeFailed   = "failed"   // every attempt failed
	outcomeDropped  = "dropped"  // the queue was full or the gateway closing
	// outcomeNotHonoured: the call succeeded, but the route's app_verify
	// path still answered a status outside expect with the old cookies.
	outcomeNotHonoured = "not_honoured"
)

// AppLogoutObserver learns app logout outcomes; the CLI writes them to
// the audit log. AppLogoutDone is called from the app logout workers and,
// for a call dropped because the queue is full, from the goroutine that
// queued it (a request or the store's subscription): it must not block.
type AppLogoutObserver interface {
	AppLogoutDone(ctx context.Context, o AppLogoutOutcome)
}

// AppLogoutOutcome is the result of one app logout call.
type AppLogoutOutcome struct {
	// Route is the route's label.
	Route string
	// Session is a short digest of the gateway session id, never the id.
	Session string
	// Issuer, Subject and SID are the session's (SID may be empty).
	Issuer, Subject, SID string
	// Outcome is ok (2xx or 3xx, and the honour check, if any, saw the
	// app's session gone), not_honoured (the call succeeded but the
	// route's app_verify path still answered a status outside expect),
	// rejected (4xx other than 408 and 429), failed (every attempt failed)
	// or dropped (never attempted: queue full or gateway closing).
	Outcome string
	// Status is the app's last HTTP status; 0 when none was received.
	Status int
	// Attempts is how many calls were made.
	Attempts int
	// VerifyStatus is the last status of the honour check (app_verify);
	// 0 when none was made or no answer came.
	VerifyStatus int
}

// appLogout calls routes' app_logout_url when a session is revoked. It
// learns a session's real app cookies from a bounded, expiring in-memory
// registry (updated when the gateway seals a Set-Cookie or opens a request
// cookie) and from requests that arrive with app cookies of a revoked
// session (the lazy path). The registry is per replica and forgotten on
// restart: after a restart only the lazy path remains for sessions seen
// before it.
type appLogout struct {
	cfg    AppLogoutConfig
	client *http.Client
	// verifier is client following no redirect: the honour check judges
	// the app's own answer (a 302 to its login page).
	verifier *http.Client
	log      *slog.Logger
	now      func() time.Time
	clk      clock.Clock
	skew     time.Duration
	count    map[string]prometheus.Counter
	// observer learns every outcome; nil means none does.
	observer AppLogoutObserver

	ctx    context.Context // canceled when Close's drain bound passes
	cancel context.CancelFunc
	jobs   chan logoutJob
	wg     sync.WaitGroup

	mu       sync.RWMutex // guards closed, started and sends on jobs
	closed   bool
	started  bool
	unsub    func()
	closeOne sync.Once

	reg registry
}

// logoutJob is either a revocation to match against the registry or one
// call to make.
type logoutJob struct {
	entry *cache.Entry
	call  *logoutCall
}

type logoutCall struct {
	url           string
	route         string
	rt            *route
	session       string // logID of the session id
	iss, sub, sid string // the session's
	cookie        string // the Cookie field: real values, never logged
}

func newAppLogout(cfg AppLogoutConfig, client *http.Client, log *slog.Logger, clk clock.Clock, skew time.Duration, m *metrics) *appLogout {
	cfg.Workers = cmp.Or(cfg.Workers, defaultLogoutWorkers)
	cfg.QueueSize = cmp.Or(cfg.QueueSize, defaultLogoutQueue)
	cfg.Timeout = cmp.Or(cfg.Timeout, defaultLogoutTimeout)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, defaultLogoutAttempts)
	cfg.Backoff = cmp.Or(cfg.Backoff, defaultLogoutBackoff)
	cfg.RegistrySize = cmp.Or(cfg.RegistrySize, defaultRegistrySize)
	cfg.DrainTimeout = cmp.Or(cfg.DrainTimeout, defaultDrainTimeout)
	a := &appLogout{
		cfg: cfg, client: client, log: log, now: clk.Now, clk: clk, skew: skew,
		count: make(map[string]prometheus.Counter, 4),
		jobs:  make(chan logoutJob, cfg.QueueSize),
		reg:   registry{max: cfg.RegistrySize, m: make(map[regKey]*regEntry)},
	}
	v := *client
	v.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	a.verifier = &v
	for _, o := range []string{outcomeOK, outcomeNotHonoured, outcomeRejected, outcomeFailed, outcomeDropped} {
		a.count[o] = m.appLogout.WithLabelValues(o)
	}
	return a
}

// subscribe registers with the store: what it reports waits in the
// bounded queue until run starts the workers.
func (a *appLogout) subscribe(store SessionStore) {
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.unsub = store.Subscribe(func(e cache.Entry) {
		if e.Kind == cache.KindSession || e.Kind == cache.KindSID || e.Kind == cache.KindSub {
			a.enqueue(logoutJob{entry: &e})
		}
	})
}

// run starts the workers, once; not after close.
func (a *appLogout) run() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.started {
		return
	}
	a.started = true
	for range a.cfg.Workers {
		a.wg.Add(1)
		go a.work()
	}
}

// close stops the subscription, lets the workers finish the queue within
// DrainTimeout, then cancels what is still running. Idempotent.
func (a *appLogout) close() {
	a.closeOne.Do(func() {
		if a.unsub != nil {
			a.unsub()
		}
		a.mu.Lock()
		a.closed = true
		close(a.jobs)
		a.mu.Unlock()
		done := make(chan struct{})
		go func() { a.wg.Wait(); close(done) }()
		t, drained := a.clk.NewTimer(a.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-drained:
			a.cancel()
			<-done
		}
		if a.cancel != nil {
			a.cancel()
		}
	})
}

// enqueue never blocks: a full queue drops the job (counted and logged).
func (a *appLogout) enqueue(j logoutJob) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if !a.closed {
		select {
		case a.jobs <- j:
			return
		default:
		}
	}
	a.count[outcomeDropped].Inc()
	if j.call != nil {
		a.log.LogAttrs(context.Background(), slog.LevelWarn, "app logout dropped",
			slog.String("route", j.call.route), slog.String("session", j.call.session))
		a.report(j.call, outcomeDropped, 0, 0, 0)
	} else {
		a.log.LogAttrs(context.Background(), slog.LevelWarn, "revocation dropped by app logout",
			slog.String("kind", string(j.entry.Kind)))
	}
}

func (a *appLogout) work() {
	defer a.wg.Done()
	for j := range a.jobs {
		if j.entry != nil {
			for _, c := range a.reg.match(*j.entry, a.skew, a.now()) {
				a.call(c)
			}
			continue
		}
		a.call(j.call)
	}
}

// once queues the app logout of one session on one route unless it was
// already done (the lazy path and sign-out).
func (a *appLogout) once(s *session, rt *route, real map[string]string) {
	if rt.logoutURL == "" || len(real) == 0 || !a.reg.take(s, rt, a.now()) {
		return
	}
	a.enqueue(logoutJob{call: newLogoutCall(s.ID, s.Issuer, s.Subject, s.SID, rt, real)})
}

// observe records real app cookies of a live session.
func (a *appLogout) observe(s *session, rt *route, real map[string]string) {
	a.reg.observe(s, rt, real, a.now())
}

// forget drops one app cookie the app deleted.
func (a *appLogout) forget(sessionID string, rt *route, name string) {
	a.reg.forget(sessionID, rt, name)
}

func newLogoutCall(sessionID, iss, sub, sid string, rt *route, real map[string]string) *logoutCall {
	pairs := make([]string, 0, len(real))
	for _, name := range slices.Sorted(maps.Keys(real)) {
		pairs = append(pairs, name+"="+real[name])
	}
	return &logoutCall{url: rt.logoutURL, route: rt.label, rt: rt, session: logID(sessionID), iss: iss, sub: sub, sid: sid, cookie: strings.Join(pairs, "; ")}
}

// report tells the observer, if any, the outcome of c.
func (a *appLogout) report(c *logoutCall, outcome string, status, attempts, verifyStatus int) {
	if a.observer == nil {
		return
	}
	a.observer.AppLogoutDone(context.Background(), AppLogoutOutcome{
		Route: c.route, Session: c.session, Issuer: c.iss, Subject: c.sub, SID: c.sid,
		Outcome: outcome, Status: status, Attempts: attempts, VerifyStatus: verifyStatus,
	})
}

// call POSTs to the app's logout URL with its real cookies, retrying
// network errors, 408, 429 and 5xx with exponential backoff; after a
// successful call it runs the route's honour check, if any.
func (a *appLogout) call(c *logoutCall) {
	outcome := outcomeFailed
	status, attempts, ok := a.retry(c, http.MethodPost, c.url, a.client)
	if ok {
		outcome = outcomeOK
		if status >= 400 {
			outcome = outcomeRejected
		}
	}
	verifyStatus := 0
	if outcome == outcomeOK && c.rt != nil && c.rt.verifyURL != "" {
		verifyStatus, _, _ = a.retry(c, http.MethodGet, c.rt.verifyURL, a.verifier)
		switch {
		case slices.Contains(c.rt.expect, verifyStatus):
		case a.ctx.Err() != nil:
			// Closing before the check was made: unproven, not done.
			outcome = outcomeFailed
		default:
			outcome = outcomeNotHonoured
			c.rt.notHonoured.Inc()
		}
	}
	a.count[outcome].Inc()
	switch outcome {
	case outcomeNotHonoured:
		// The gateway refuses the sealed cookie regardless; this tells the
		// app's owner that its logout endpoint leaves the session alive.
		a.log.LogAttrs(context.Background(), slog.LevelWarn, "app logout not honoured: the app still serves the session after its logout",
			slog.String("route", c.route), slog.String("session", c.session),
			slog.String("verify_url", c.rt.verifyURL), slog.Int("verify_status", verifyStatus), slog.Any("expect", c.rt.expect))
	default:
		level := slog.LevelInfo
		if outcome != outcomeOK {
			level = slog.LevelWarn
		}
		a.log.LogAttrs(context.Background(), level, "app logout",
			slog.String("route", c.route), slog.String("session", c.session),
			slog.String("outcome", outcome), slog.Int("status", status), slog.Int("attempts", attempts),
			slog.Int("verify_status", verifyStatus))
	}
	a.report(c, outcome, status, attempts, verifyStatus)
}

// retry makes up to MaxAttempts requests (method, target) with c's
// cookies, with exponential backoff between them; ok reports whether an
// answer that is not retried came (status is the last one; 0 for none).
func (a *appLogout) retry(c *logoutCall, method, target string, client *http.Client) (status, attempts int, ok bool) {
	backoff := a.cfg.Backoff
	for attempts < a.cfg.MaxAttempts {
		if attempts > 0 {
			t, waited := a.clk.NewTimer(backoff)
			select {
			case <-waited:
			case <-a.ctx.Done():
				t.Stop()
			}
			backoff = min(2*backoff, maxLogoutBackoff)
		}
		if a.ctx.Err() != nil {
			break
		}
		attempts++
		var retry bool
		status, retry = a.attempt(c, method, target, client)
		if !retry {
			return status, attempts, true
		}
	}
	return status, attempts, false
}

// attempt makes one request; retry reports whether it may be repeated.
func (a *appLogout) attempt(c *logoutCall, method, target string, client *http.Client) (status int, retry bool) {
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, http.NoBody)
	if err != nil {
		return 0, false
	}
	req.Header.Set("Cookie", c.cookie)
	res, err := client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		a.log.LogAttrs(ctx, slog.LevelDebug, "app logout attempt failed",
			slog.String("route", c.route), slog.String("session", c.session), slog.String("method", method), slog.String("error", err.Error()))
		return 0, true
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	s := res.StatusCode
	return s, s == http.StatusRequestTimeout || s == http.StatusTooManyRequests || s >= 500
}

// registry remembers, per session and route, the real app cookies and what
// a revocation entry is matched on. It is bounded: when full, expired
// entries are swept, then an arbitrary one is forgotten.
type registry struct {
	mu  sync.Mutex
	max int
	m   map[regKey]*regEntry
}

type regKey struct {
	session string
	route   *route
}

type regEntry struct {
	iss, sub, sid string
	iat, exp      time.Time
	cookies       map[string]string
	done          bool // app logout queued: never again for this session
}

func (g *registry) entry(s *session, rt *route, now time.Time) *regEntry {
	k := regKey{s.ID, rt}
	if e, ok := g.m[k]; ok {
		return e
	}
	if len(g.m) >= g.max {
		for k, e := range g.m {
			if !e.exp.After(now) {
				delete(g.m, k)
			}
		}
		for k := range g.m {
			if len(g.m) < g.max {
				break
			}
			delete(g.m, k)
		}
	}
	e := &regEntry{iss: s.Issuer, sub: s.Subject, sid: s.SID, iat: s.IssuedAt, exp: s.ExpiresAt, cookies: map[string]string{}}
	g.m[k] = e
	return e
}

func (g *registry) observe(s *session, rt *route, real map[string]string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entry(s, rt, now)
	if e.done {
		return
	}
	for name, v := range real {
		e.cookies[name] = strings.Clone(v)
	}
}

func (g *registry) forget(sessionID string, rt *route, name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.m[regKey{sessionID, rt}]; ok {
		delete(e.cookies, name)
	}
}

// take marks the session's app logout on rt as done; false when it
// already was.
func (g *registry) take(s *session, rt *route, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.entry(s, rt, now)
	if e.done {
		return false
	}
	e.done, e.cookies = true, nil
	return true
}

// match returns the calls for every remembered session that e revokes
// (session id; iss and sid; iss and sub issued at or before RevokedAt +
// skew) and marks them done.
func (g *registry) match(e cache.Entry, skew time.Duration, now time.Time) []*logoutCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	var calls []*logoutCall
	for k, r := range g.m {
		if r.done || len(r.cookies) == 0 || !r.exp.After(now) {
			continue
		}
		var hit bool
		switch e.Kind {
		case cache.KindSession:
			hit = cache.SessionDigest(k.session) == e.Value
		case cache.KindSID:
			hit = r.iss == e.Issuer && r.sid != "" && r.sid == e.Value
		case cache.KindSub:
			hit = r.iss == e.Issuer && r.sub == e.Value && !r.iat.After(e.RevokedAt.Add(skew))
		}
		if hit && k.route.logoutURL != "" {
			calls = append(calls, newLogoutCall(k.session, r.iss, r.sub, r.sid, k.route, r.cookies))
			r.done, r.cookies = true, nil
		}
	}
	return calls
}
