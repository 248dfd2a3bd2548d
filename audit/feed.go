package audit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
)

// Feed bounds.
const (
	feedQueue   = 4096
	feedWorkers = 4
)

// Subscriber reports every entry its store applies (cache.Store and
// cache.Redis); the returned function ends the subscription.
type Subscriber interface {
	Subscribe(fn func(cache.Entry)) (cancel func())
}

// Feed writes the records nobody waits for — revocations applied from
// another replica and app logout outcomes — off the goroutine that
// reports them, through a bounded queue: a full queue drops the record
// (counted in oidcgate_audit_dropped_total and logged) rather than block
// the store or the gateway.
type Feed struct {
	log     *Log
	audited *Store
	logger  *slog.Logger
	dropped *prometheus.CounterVec
	jobs    chan Record
	wg      sync.WaitGroup
	unsub   func()

	mu     sync.RWMutex // guards closed and sends on jobs
	closed bool
	once   sync.Once
}

// NewFeed starts the feed of l: it subscribes to store, records every
// entry applied there that audited did not revoke, and registers its
// counter with reg. Close stops it.
func NewFeed(l *Log, audited *Store, store Subscriber, logger *slog.Logger, reg prometheus.Registerer) *Feed {
	f := &Feed{
		log: l, audited: audited, logger: logger,
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oidcgate_audit_dropped_total",
			Help: "Audit records not written, by event (applied, app_logout) and reason (queue_full, write_failed).",
		}, []string{"event", "reason"}),
		jobs: make(chan Record, feedQueue),
	}
	reg.MustRegister(f.dropped)
	for _, ev := range []string{EventApplied, EventAppLogout} {
		f.dropped.WithLabelValues(ev, "queue_full")
		f.dropped.WithLabelValues(ev, "write_failed")
	}
	for range feedWorkers {
		f.wg.Add(1)
		go f.work()
	}
	f.unsub = store.Subscribe(f.applied)
	return f
}

// applied records an entry the store applied that was not revoked through
// the audited store here: one from another replica.
func (f *Feed) applied(e cache.Entry) {
	if f.audited.Local(e) {
		return
	}
	rec := RecordOf(EventApplied, e)
	rec.AppliedAt = f.log.cfg.Clock.Now().UTC()
	f.Add(rec)
}

// Add queues rec without blocking.
func (f *Feed) Add(rec Record) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if !f.closed {
		select {
		case f.jobs <- rec:
			return
		default:
		}
	}
	f.dropped.WithLabelValues(rec.Event, "queue_full").Inc()
	f.logger.Warn("audit record dropped: queue full", "event", rec.Event)
}

func (f *Feed) work() {
	defer f.wg.Done()
	for rec := range f.jobs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := f.log.Append(ctx, rec)
		cancel()
		if err != nil {
			f.dropped.WithLabelValues(rec.Event, "write_failed").Inc()
			f.logger.Error("audit record not written", "event", rec.Event, "error", err)
		}
	}
}

// Close stops the subscription and writes what is queued. Idempotent.
func (f *Feed) Close() {
	f.once.Do(func() {
		f.unsub()
		f.mu.Lock()
		f.closed = true
		close(f.jobs)
		f.mu.Unlock()
		f.wg.Wait()
	})
}
