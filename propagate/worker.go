package propagate

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// Store is the part of the revocation store the Worker uses: its entries
// (to derive targets from), the targets themselves and their leases.
// *cache.Store and *cache.Redis implement it.
type Store interface {
	Subscribe(fn func(cache.Entry)) (cancel func())
	List(ctx context.Context, o cache.ListOptions) ([]cache.Entry, string, error)
	AddTargets(ctx context.Context, ts []cache.Target) ([]cache.Target, error)
	UpdateTarget(ctx context.Context, t cache.Target) (bool, error)
	Target(ctx context.Context, t cache.Target) (cache.Target, bool, error)
	PendingTargets(ctx context.Context) ([]cache.Target, error)
	LeaseTarget(ctx context.Context, t cache.Target, holder string, ttl time.Duration) (bool, error)
	ReleaseTarget(ctx context.Context, t cache.Target, holder string) error
	// UserID returns the user id at the issuer's session authority
	// learned for sub (see cache.Store.RecordUserID).
	UserID(ctx context.Context, issuer, sub string) (string, bool, error)
	ReplicaID() string
}

var (
	_ Store = (*cache.Store)(nil)
	_ Store = (*cache.Redis)(nil)
)

// Binding is the session authority of one issuer.
type Binding struct {
	// Issuer is the issuer whose revocations go to Authority.
	Issuer string
	// Config is its session_authority (On and UserIDClaim are used here).
	Config Config
	// Authority makes the calls.
	Authority Authority
}

// WorkerConfig configures a Worker. Zero values mean the documented
// defaults.
type WorkerConfig struct {
	// Store holds entries and targets. Required.
	Store Store
	// Authorities lists at most one Binding per issuer.
	Authorities []Binding
	// SSF pushes SETs to its receivers: each receiver is a target (kind
	// ssf_receiver) worked like an authority, with its own Concurrency
	// workers. Nil pushes nothing.
	SSF *Transmitter
	// Audit receives a record for every target that reaches a final state
	// (done, failed, unsupported); nil records nothing.
	Audit Auditor
	// Holder names this worker in leases; "" means Store.ReplicaID().
	Holder string
	// Concurrency bounds the calls in flight to each authority; 0 means 16.
	Concurrency int
	// MaxAttempts is the retry budget of a target; 0 means 12. A target
	// whose attempts all failed temporarily is failed.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts (full jitter over its upper half); 0 means 500ms and 5m. An
	// authority's Retry-After is honoured even when longer.
	MinBackoff, MaxBackoff time.Duration
	// CallTimeout bounds one call; 0 means 10s.
	CallTimeout time.Duration
	// LeaseTTL is how long a lease lets one replica work on a target; it
	// must exceed CallTimeout; 0 means 3×CallTimeout. Another replica takes
	// a target over this long after its holder died.
	LeaseTTL time.Duration
	// RescanInterval is how often the worker derives targets from every
	// entry again and reloads every pending target (so that nothing is
	// lost to a crash, a full queue or a Redis outage); 0 means 1 minute.
	RescanInterval time.Duration
	// Clock is the clock of backoff, leases and rescans; nil means the
	// wall clock.
	Clock clock.Clock
	// Metrics registers the worker's metrics; nil registers none.
	Metrics prometheus.Registerer
	// Logger receives worker events (never a secret, never a raw value
	// beyond what the audit log holds); nil discards them.
	Logger *slog.Logger
}

// Validate reports every problem of c at once. It does no I/O.
func (c WorkerConfig) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("propagate: worker: nil Store"))
	}
	seen := map[string]bool{}
	for i, b := range c.Authorities {
		switch {
		case b.Authority == nil:
			errs = append(errs, fmt.Errorf("propagate: worker: authorities[%d]: nil Authority", i))
		case seen[b.Issuer]:
			errs = append(errs, fmt.Errorf("propagate: worker: authorities[%d]: issuer %q has two session authorities", i, b.Issuer))
		}
		seen[b.Issuer] = true
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MinBackoff", c.MinBackoff}, {"MaxBackoff", c.MaxBackoff}, {"CallTimeout", c.CallTimeout}, {"LeaseTTL", c.LeaseTTL}, {"RescanInterval", c.RescanInterval}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("propagate: worker: %s: negative", d.name))
		}
	}
	if c.Concurrency < 0 || c.MaxAttempts < 0 {
		errs = append(errs, errors.New("propagate: worker: Concurrency and MaxAttempts must not be negative"))
	}
	if c.LeaseTTL != 0 && c.LeaseTTL <= max(c.CallTimeout, 0) {
		errs = append(errs, errors.New("propagate: worker: LeaseTTL must exceed CallTimeout"))
	}
	if c.LeaseTTL != 0 && c.CallTimeout == 0 && c.LeaseTTL <= workerCallTimeout {
		errs = append(errs, fmt.Errorf("propagate: worker: LeaseTTL must exceed CallTimeout (default %s)", workerCallTimeout))
	}
	return errors.Join(errs...)
}

const (
	defaultConcurrency = 16
	defaultMaxAttempts = 12
	defaultMinBackoff  = 500 * time.Millisecond
	defaultMaxBackoff  = 5 * time.Minute
	workerCallTimeout  = 10 * time.Second
	defaultRescan      = time.Minute
	// entryQueue bounds the entries waiting to be planned; past it the
	// worker drops them and rescans (the entries are in the store).
	entryQueue = 4096
	// planBatch bounds the targets added in one store call.
	planBatch = 500
	// retryStoreError is when a target is tried again after the store
	// could not be asked.
	retryStoreError = time.Second
)

// Worker brings every revocation to its session authorities and SSF
// receivers: it derives a target per (entry, authority or receiver) from
// each entry the store applies, keeps it in the store (so that the work
// survives a crash), calls the authority or pushes the SET under a lease
// (one replica at a time), retries with backoff, and records the outcome
// in the store and the audit log. New starts nothing; Run works until its
// context ends.
type Worker struct {
	cfg      WorkerConfig
	log      *slog.Logger
	now      func() time.Time
	holder   string
	byIssuer map[string]*authority
	// byReceiver holds the SSF receivers, by endpoint.
	byReceiver map[string]*authority
	auths      []*authority

	in     chan cache.Entry
	rescan atomic.Bool // an entry was dropped: rescan soon
	wake   chan struct{}

	mu    sync.Mutex
	items map[string]*item // by target ID: every target this worker knows pending
	due   itemHeap         // items not queued or running, by due time

	calls    *prometheus.CounterVec // nil without Metrics
	pushes   *prometheus.CounterVec // nil without Metrics
	inFlight *prometheus.GaugeVec
}

// authority is a Binding, or an SSF receiver, with its queue of ready
// targets.
type authority struct {
	Binding
	name string
	kind cache.TargetKind

	mu      sync.Mutex
	cond    *sync.Cond
	ready   []*item
	stopped bool
	busy    atomic.Int64
}

// item is a pending target in the worker's schedule.
type item struct {
	t     cache.Target
	at    time.Time
	index int // in due; -1 when queued or running
	auth  *authority
}

// The outcomes of a call, the outcome label of
// oidcgate_session_authority_calls_total.
const (
	outcomeDone        = "done"
	outcomeNotFound    = "not_found"
	outcomeUnsupported = "unsupported"
	outcomeRetry       = "retry"
	outcomeFailed      = "failed"
	// outcomeNoUserID: no call was made, the user id at the authority is
	// not known; the target is failed with a note saying so.
	outcomeNoUserID = "no_user_id"
)

// NewWorker validates cfg, applies defaults and registers the metrics. It
// starts nothing.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = defaultConcurrency
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = defaultMaxAttempts
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = defaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = defaultMaxBackoff
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = workerCallTimeout
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 3 * cfg.CallTimeout
	}
	if cfg.RescanInterval == 0 {
		cfg.RescanInterval = defaultRescan
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		cfg:      cfg,
		log:      cfg.Logger,
		now:      cfg.Clock.Now,
		holder:   cfg.Holder,
		byIssuer: make(map[string]*authority),

		byReceiver: make(map[string]*authority),
		in:         make(chan cache.Entry, entryQueue),
		wake:       make(chan struct{}, 1),
		items:      make(map[string]*item),
	}
	if w.holder == "" {
		w.holder = cfg.Store.ReplicaID()
	}
	for _, b := range cfg.Authorities {
		a := &authority{Binding: b, name: b.Authority.Name(), kind: cache.TargetSessionAuthority}
		a.Config = a.Config.WithDefaults()
		a.cond = sync.NewCond(&a.mu)
		w.byIssuer[b.Issuer] = a
		w.auths = append(w.auths, a)
	}
	if cfg.SSF != nil {
		for _, r := range cfg.SSF.receivers {
			a := &authority{name: r.Endpoint, kind: TargetSSFReceiver}
			a.cond = sync.NewCond(&a.mu)
			w.byReceiver[r.Endpoint] = a
			w.auths = append(w.auths, a)
		}
	}
	if err := w.register(cfg.Metrics); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Worker) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	w.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidcgate_session_authority_calls_total",
		Help: "Calls to session authorities, by authority and outcome (done, not_found, unsupported, retry, failed; no_user_id: not made, the user id at the authority is not known).",
	}, []string{"authority", "outcome"})
	w.pushes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidcgate_ssf_pushes_total",
		Help: "SET pushes to SSF receivers, by receiver endpoint and outcome (done, retry, failed).",
	}, []string{"receiver", "outcome"})
	w.inFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "oidcgate_session_authority_calls_in_flight",
		Help: "Calls to a session authority in flight now (at most its concurrency).",
	}, []string{"authority"})
	for _, a := range w.auths {
		if a.kind == TargetSSFReceiver {
			for _, o := range []string{outcomeDone, outcomeRetry, outcomeFailed} {
				w.pushes.WithLabelValues(a.name, o)
			}
			continue
		}
		for _, o := range []string{outcomeDone, outcomeNotFound, outcomeUnsupported, outcomeRetry, outcomeFailed, outcomeNoUserID} {
			w.calls.WithLabelValues(a.name, o)
		}
		w.inFlight.WithLabelValues(a.name)
	}
	for _, c := range []prometheus.Collector{
		w.calls, w.pushes, w.inFlight,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "oidcgate_revocation_targets_pending",
			Help: "Targets of revocations (session authority calls, SSF pushes) this replica knows to be pending.",
		}, func() float64 { return float64(w.Pending()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "oidcgate_revocation_target_oldest_pending_seconds",
			Help: "Age of the oldest pending target (since its revocation was accepted); 0 when none is pending.",
		}, func() float64 { return w.OldestPending().Seconds() }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("propagate: metrics: %w", err)
		}
	}
	return nil
}

// Pending returns how many pending targets the worker knows.
func (w *Worker) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.items)
}

// OldestPending returns the age of the oldest pending target the worker
// knows (from its revocation's acceptance); 0 when none is pending.
func (w *Worker) OldestPending() time.Duration {
	w.mu.Lock()
	var oldest time.Time
	for _, it := range w.items {
		if oldest.IsZero() || it.t.RevokedAt.Before(oldest) {
			oldest = it.t.RevokedAt
		}
	}
	w.mu.Unlock()
	if oldest.IsZero() {
		return 0
	}
	return max(w.now().Sub(oldest), 0)
}

// Plan returns the targets entry e has: one per session authority that
// its issuer names and that its trigger propagates to, for sub, sid and
// client entries, and one per SSF receiver that takes its event
// (Transmitter.Plan). A revocation that came from the authority itself
// (its back-channel or front-channel logout, its SSF event) has no
// authority target: the authority already knows, and echoing it back
// could loop.
func (w *Worker) Plan(e cache.Entry) []cache.Target {
	var ts []cache.Target
	if e.Kind == cache.KindSub || e.Kind == cache.KindSID || e.Kind == cache.KindClient {
		a, ok := w.byIssuer[e.Issuer]
		if ok && !fromIssuer(e.Initiator, e.Issuer) && a.Config.Propagates(audit.Trigger(e.Initiator)) {
			ts = append(ts, cache.TargetOf(e, cache.TargetSessionAuthority, a.name))
		}
	}
	if w.cfg.SSF != nil {
		ts = append(ts, w.cfg.SSF.Plan(e)...)
	}
	return ts
}

// fromIssuer reports whether initiator names an event the issuer itself
// sent: "backchannel:<iss> …", "frontchannel:<iss>", "ssf:<iss> …",
// "universal_logout:<iss> …".
func fromIssuer(initiator, issuer string) bool {
	source, rest, ok := strings.Cut(initiator, ":")
	if !ok {
		return false
	}
	switch source {
	case "backchannel", "frontchannel", "ssf", "universal_logout":
		origin, _, _ := strings.Cut(rest, " ")
		return origin == issuer
	}
	return false
}

// onEntry is the store subscription: it must not block.
func (w *Worker) onEntry(e cache.Entry) {
	select {
	case w.in <- e:
	default:
		w.rescan.Store(true)
		w.signal()
	}
}

func (w *Worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run works until ctx ends: it derives and loads the pending targets,
// then follows the store, calling authorities. It returns nil when ctx
// ends, after the calls in flight have returned (they are cancelled; a
// cancelled call stays pending, for a later run or another replica).
func (w *Worker) Run(ctx context.Context) error {
	cancel := w.cfg.Store.Subscribe(w.onEntry)
	defer cancel()
	var wg sync.WaitGroup
	for _, a := range w.auths {
		for range w.cfg.Concurrency {
			wg.Go(func() { w.serve(ctx, a) })
		}
	}
	defer func() {
		for _, a := range w.auths {
			a.mu.Lock()
			a.stopped = true
			a.cond.Broadcast()
			a.mu.Unlock()
		}
		wg.Wait()
	}()
	w.reconcile(ctx)
	rescan, rescanC := w.cfg.Clock.NewTicker(w.cfg.RescanInterval)
	defer rescan.Stop()
	timer, timerC := w.cfg.Clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(w.dispatch())
		select {
		case <-ctx.Done():
			return nil
		case e := <-w.in:
			w.planEntries(ctx, w.drain(e))
		case <-w.wake:
			if w.rescan.Swap(false) {
				w.reconcile(ctx)
			}
		case <-rescanC:
			w.reconcile(ctx)
		case <-timerC:
		}
	}
}

// drain returns e and the entries queued behind it, up to planBatch.
func (w *Worker) drain(e cache.Entry) []cache.Entry {
	es := []cache.Entry{e}
	for len(es) < planBatch {
		select {
		case e := <-w.in:
			es = append(es, e)
		default:
			return es
		}
	}
	return es
}

// planEntries adds the targets of es to the store and schedules the
// pending ones. When the store fails, a rescan follows.
func (w *Worker) planEntries(ctx context.Context, es []cache.Entry) {
	var ts []cache.Target
	for _, e := range es {
		ts = append(ts, w.Plan(e)...)
	}
	if len(ts) == 0 {
		return
	}
	stored, err := w.cfg.Store.AddTargets(ctx, ts)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("targets not recorded; rescanning", "targets", len(ts), "error", err)
			w.rescan.Store(true)
		}
		return
	}
	w.schedule(stored)
}

// reconcile derives the targets of every entry again (adding those a
// crash or a full queue lost) and schedules every pending target in the
// store (also those another replica added).
func (w *Worker) reconcile(ctx context.Context) {
	if len(w.auths) == 0 {
		return
	}
	o := cache.ListOptions{Limit: 1000}
	for {
		es, next, err := w.cfg.Store.List(ctx, o)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("rescan of entries failed", "error", err)
				w.rescan.Store(true)
			}
			return
		}
		for len(es) > 0 {
			n := min(len(es), planBatch)
			w.planEntries(ctx, es[:n])
			es = es[n:]
		}
		if next == "" {
			break
		}
		o.Cursor = next
	}
	pending, err := w.cfg.Store.PendingTargets(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("pending targets not loaded", "error", err)
			w.rescan.Store(true)
		}
		return
	}
	w.schedule(pending)
}

// schedule adds the pending targets among ts to the schedule, due at their
// NextAt; a target already scheduled keeps its place unless ts holds a
// later version.
func (w *Worker) schedule(ts []cache.Target) {
	w.mu.Lock()
	defer w.mu.Unlock()
	added := false
	for _, t := range ts {
		if t.State != cache.TargetPending {
			continue
		}
		a := w.authorityOf(t)
		if a == nil {
			continue
		}
		if it, ok := w.items[t.ID()]; ok {
			if t.RevokedAt.After(it.t.RevokedAt) {
				it.t = t
			}
			continue
		}
		it := &item{t: t, at: t.NextAt, auth: a}
		w.items[t.ID()] = it
		heap.Push(&w.due, it)
		added = true
	}
	if added {
		w.signal()
	}
}

// authorityOf returns the authority or receiver t names, nil when none is
// configured (a target left by an earlier configuration stays pending,
// shown).
func (w *Worker) authorityOf(t cache.Target) *authority {
	switch t.Kind {
	case cache.TargetSessionAuthority:
		if a, ok := w.byIssuer[t.Issuer]; ok && a.name == t.Name {
			return a
		}
	case TargetSSFReceiver:
		return w.byReceiver[t.Name]
	}
	return nil
}

// dispatch moves the due items to their authority's queue and returns the
// time until the next is due.
func (w *Worker) dispatch() time.Duration {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.due.Len() > 0 {
		it := w.due[0]
		if d := it.at.Sub(now); d > 0 {
			return d
		}
		heap.Pop(&w.due)
		a := it.auth
		a.mu.Lock()
		a.ready = append(a.ready, it)
		a.cond.Signal()
		a.mu.Unlock()
	}
	return time.Hour
}

// serve is one of an authority's Concurrency workers.
func (w *Worker) serve(ctx context.Context, a *authority) {
	for {
		a.mu.Lock()
		for len(a.ready) == 0 && !a.stopped {
			a.cond.Wait()
		}
		if a.stopped {
			a.mu.Unlock()
			return
		}
		it := a.ready[0]
		a.ready[0] = nil
		a.ready = a.ready[1:]
		a.mu.Unlock()
		w.work(ctx, a, it)
	}
}

// retryAt puts it back in the schedule, due at.
func (w *Worker) retryAt(it *item, at time.Time) {
	w.mu.Lock()
	it.at = at
	heap.Push(&w.due, it)
	w.mu.Unlock()
	w.signal()
}

// forget takes it out of the schedule.
func (w *Worker) forget(it *item) {
	w.mu.Lock()
	if w.items[it.t.ID()] == it {
		delete(w.items, it.t.ID())
	}
	w.mu.Unlock()
}

// work makes one attempt at it under a lease.
func (w *Worker) work(ctx context.Context, a *authority, it *item) {
	if ctx.Err() != nil {
		return
	}
	store := w.cfg.Store
	w.mu.Lock()
	t := it.t
	w.mu.Unlock()
	ok, err := store.LeaseTarget(ctx, t, w.holder, w.cfg.LeaseTTL)
	if err != nil {
		w.retryAt(it, w.now().Add(retryStoreError))
		return
	}
	if !ok {
		// Another replica works on it; look again when its lease would
		// have run out.
		w.retryAt(it, w.now().Add(w.cfg.LeaseTTL))
		return
	}
	defer func() {
		if err := store.ReleaseTarget(context.WithoutCancel(ctx), t, w.holder); err != nil {
			w.log.Warn("lease not released; it runs out", "error", err)
		}
	}()
	cur, found, err := store.Target(ctx, t)
	switch {
	case err != nil:
		w.retryAt(it, w.now().Add(retryStoreError))
		return
	case !found || cur.State.Final() || cur.RevokedAt.Before(t.RevokedAt):
		w.forget(it)
		return
	case cur.RevokedAt.After(t.RevokedAt):
		w.mu.Lock()
		it.t = cur
		w.mu.Unlock()
	}
	t = cur
	if now := w.now(); t.NextAt.After(now) {
		// Another replica's attempt failed and set the next one.
		w.retryAt(it, t.NextAt)
		return
	}
	out, callErr := w.call(ctx, a, t)
	if ctx.Err() != nil {
		// Shutting down: the attempt does not count; the target stays
		// pending in the store.
		return
	}
	next := w.judge(t, out, callErr)
	switch {
	case a.kind == TargetSSFReceiver && w.pushes != nil:
		w.pushes.WithLabelValues(a.name, out).Inc()
	case a.kind == cache.TargetSessionAuthority && w.calls != nil:
		w.calls.WithLabelValues(a.name, out).Inc()
	}
	updated, err := store.UpdateTarget(context.WithoutCancel(ctx), next)
	if err != nil {
		w.log.Error("target state not recorded; retrying", "authority", a.name, "error", err)
		w.retryAt(it, w.now().Add(retryStoreError))
		return
	}
	if !next.State.Final() {
		w.mu.Lock()
		it.t = next
		w.mu.Unlock()
		w.retryAt(it, next.NextAt)
		return
	}
	w.forget(it)
	if updated {
		w.record(context.WithoutCancel(ctx), next)
	}
}

// call makes the call t asks of a, bounded by CallTimeout, and returns
// its outcome label and the call's error.
func (w *Worker) call(ctx context.Context, a *authority, t cache.Target) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	defer cancel()
	if a.kind == TargetSSFReceiver {
		err := w.cfg.SSF.Push(cctx, t)
		var ce *CallError
		switch {
		case err == nil:
			return outcomeDone, nil
		case errors.As(err, &ce) && !ce.Temporary:
			return outcomeFailed, err
		}
		return outcomeRetry, err
	}
	a.busy.Add(1)
	if w.inFlight != nil {
		w.inFlight.WithLabelValues(a.name).Inc()
	}
	defer func() {
		a.busy.Add(-1)
		if w.inFlight != nil {
			w.inFlight.WithLabelValues(a.name).Dec()
		}
	}()
	value := t.Value
	if t.EntryKind == cache.KindSub && a.Config.UserIDClaim != "sub" {
		// Issue 12: the authority names users by another claim (Entra:
		// oid; its sub is pairwise). Only a user id learned from a verified
		// token or login of this subject, or named by the admin revocation,
		// is used: never a guess, never a wider call.
		id, ok, err := w.cfg.Store.UserID(cctx, t.Issuer, t.Value)
		switch {
		case err != nil:
			return outcomeRetry, fmt.Errorf("propagate: the user's %s could not be looked up: %w", a.Config.UserIDClaim, err)
		case !ok:
			return outcomeNoUserID, fmt.Errorf("%w: no %s is known for this subject: the gateway has verified no token or login of this subject carrying %s within the retention; end the user at the authority by hand", errNoUserID, a.Config.UserIDClaim, a.Config.UserIDClaim)
		}
		value = id
	}
	err := Call(cctx, a.Authority, t.EntryKind, value)
	var ce *CallError
	switch {
	case err == nil:
		return outcomeDone, nil
	case errors.Is(err, ErrNotFound):
		return outcomeNotFound, err
	case errors.Is(err, ErrUnsupported):
		return outcomeUnsupported, err
	case errors.As(err, &ce) && !ce.Temporary:
		return outcomeFailed, err
	}
	return outcomeRetry, err
}

// errNoUserID: the user id at the authority cannot be derived.
var errNoUserID = errors.New("propagate: no user id")

// judge returns t after an attempt with outcome out and error err.
func (w *Worker) judge(t cache.Target, out string, err error) cache.Target {
	now := w.now().UTC()
	t.Attempts++
	t.LastError = ""
	if err != nil {
		t.LastError = clip(err.Error())
	}
	t.NextAt = time.Time{}
	switch out {
	case outcomeDone:
		t.State, t.CompletedAt = cache.TargetDone, now
	case outcomeNotFound:
		t.State, t.CompletedAt = cache.TargetDone, now
		t.Note = "unknown to the authority: nothing to end"
		t.LastError = ""
	case outcomeUnsupported:
		t.State, t.CompletedAt = cache.TargetUnsupported, now
		t.Note = clip(fmt.Sprintf("the authority has no call for a %s revocation; nothing wider was ended", t.EntryKind))
	case outcomeFailed:
		t.State, t.CompletedAt = cache.TargetFailed, now
	case outcomeNoUserID:
		t.State, t.CompletedAt = cache.TargetFailed, now
		t.Note = clip(t.LastError)
		t.LastError = ""
	default:
		if t.Attempts >= w.cfg.MaxAttempts {
			t.State, t.CompletedAt = cache.TargetFailed, now
			t.Note = fmt.Sprintf("retry budget of %d attempts spent", w.cfg.MaxAttempts)
			break
		}
		delay := w.backoff(t.Attempts)
		var ce *CallError
		if errors.As(err, &ce) && ce.RetryAfter > delay {
			delay = ce.RetryAfter
		}
		t.NextAt = now.Add(delay)
	}
	return t
}

// backoff returns the delay after attempt n (1, 2, ...): MinBackoff·2^(n−1)
// capped at MaxBackoff, with jitter over its upper half so that replicas
// and targets that failed together do not retry together.
func (w *Worker) backoff(n int) time.Duration {
	d := w.cfg.MaxBackoff
	if n-1 < 40 {
		d = min(w.cfg.MinBackoff<<(n-1), w.cfg.MaxBackoff)
	}
	half := d / 2
	return half + rand.N(half+1)
}

// clip bounds s to cache.MaxTextLen bytes of valid UTF-8.
func clip(s string) string {
	if len(s) > cache.MaxTextLen {
		s = s[:cache.MaxTextLen-3]
	}
	return strings.ToValidUTF8(s, "")
}

// itemHeap orders items by due time.
type itemHeap []*item

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h itemHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *itemHeap) Push(x any) {
	it := x.(*item)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.index = -1
	return it
}
