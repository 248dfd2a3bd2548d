package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/gateway"
	"github.com/oidcgate/oidcgate/logout"
)

// errAuditBroken is returned by `audit verify` when the chain is broken.
var errAuditBroken = errors.New("audit log chain broken")

// cmdAudit runs `oidcgate audit verify FILE...`.
func cmdAudit(args []string, stdout, stderr io.Writer) error {
	const synopsis = "audit verify FILE... (the current file and its rotated files, in any order)"
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprintf(stderr, "Usage: oidcgate %s\n", synopsis)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return flag.ErrHelp
		}
		return fmt.Errorf("%w: the only audit command is verify", errUsage)
	}
	fs := newFlags("audit verify", synopsis, stderr)
	anchor := fs.String("anchor", "", "`SEQ:HASH` of an \"audit head\" log line kept elsewhere: the log must hold that record unchanged")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("%w: at least one audit file is required", errUsage)
	}
	var seq uint64
	var hash string
	if *anchor != "" {
		s, h, ok := strings.Cut(*anchor, ":")
		n, err := strconv.ParseUint(s, 10, 64)
		if !ok || err != nil || n == 0 || len(h) != 64 {
			return fmt.Errorf("%w: --anchor wants SEQ:HASH (a record number and a 64-digit hex SHA-256)", errUsage)
		}
		seq, hash = n, strings.ToLower(h)
	}
	rep, err := logout.VerifyAuditAnchor(seq, fs.Args()...)
	if err != nil {
		return err
	}
	if rep.Break != nil {
		fmt.Fprintf(stdout, "broken: %s (%d records verified before it)\n", rep.Break, rep.Records)
		return errAuditBroken
	}
	if seq != 0 && rep.Anchor != hash {
		if rep.Anchor == "" {
			fmt.Fprintf(stdout, "broken: record %d of the anchor is missing (%d records, last hash %s): records were removed\n", seq, rep.Records, rep.LastHash)
		} else {
			fmt.Fprintf(stdout, "broken: record %d does not match the anchor (hash %s): the log was changed up to it\n", seq, rep.Anchor)
		}
		return errAuditBroken
	}
	fmt.Fprintf(stdout, "ok: %d records, chain intact (last hash %s)\n", rep.Records, rep.LastHash)
	return nil
}

// auditedStore is the revocation store with Revoke going through the
// audit (logout.AuditedStore); lookups and subscriptions go to the store.
type auditedStore struct {
	revocationStore
	audited *logout.AuditedStore
}

func (s auditedStore) Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error) {
	return s.audited.Revoke(ctx, e)
}

// Audit feed bounds.
const (
	auditFeedQueue   = 4096
	auditFeedWorkers = 4
)

// auditFeed writes the records nobody waits for — revocations applied
// from another replica and app logout outcomes — off the goroutine that
// reports them, through a bounded queue: a full queue drops the record
// (counted in oidcgate_audit_dropped_total and logged) rather than block
// the store or the gateway.
type auditFeed struct {
	audit   *logout.Audit
	audited *logout.AuditedStore
	log     *slog.Logger
	dropped *prometheus.CounterVec
	jobs    chan logout.Record
	wg      sync.WaitGroup
	unsub   func()

	mu     sync.RWMutex // guards closed and sends on jobs
	closed bool
	once   sync.Once
}

var _ gateway.AppLogoutObserver = (*auditFeed)(nil)

func newAuditFeed(au *logout.Audit, audited *logout.AuditedStore, store revocationStore, log *slog.Logger, reg prometheus.Registerer) *auditFeed {
	f := &auditFeed{
		audit: au, audited: audited, log: log,
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oidcgate_audit_dropped_total",
			Help: "Audit records not written, by event (applied, app_logout) and reason (queue_full, write_failed).",
		}, []string{"event", "reason"}),
		jobs: make(chan logout.Record, auditFeedQueue),
	}
	reg.MustRegister(f.dropped)
	for _, ev := range []string{logout.EventApplied, logout.EventAppLogout} {
		f.dropped.WithLabelValues(ev, "queue_full")
		f.dropped.WithLabelValues(ev, "write_failed")
	}
	for range auditFeedWorkers {
		f.wg.Add(1)
		go f.work()
	}
	f.unsub = store.Subscribe(f.applied)
	return f
}

// applied records an entry the store applied that was not revoked through
// the audited store here: one from another replica.
func (f *auditFeed) applied(e cache.Entry) {
	if f.audited.Local(e) {
		return
	}
	rec := logout.RecordOf(logout.EventApplied, e)
	rec.AppliedAt = time.Now().UTC()
	f.add(rec)
}

// AppLogoutDone records an app logout outcome.
func (f *auditFeed) AppLogoutDone(_ context.Context, o gateway.AppLogoutOutcome) {
	rec := logout.Record{
		Event:   logout.EventAppLogout,
		Targets: []logout.AuditTarget{{Issuer: o.Issuer, Kind: cache.KindSub, Value: o.Subject}},
		AppLogout: &logout.AuditAppLogout{
			Route: o.Route, Session: o.Session, Outcome: o.Outcome, Status: o.Status, Attempts: o.Attempts,
		},
	}
	if o.SID != "" {
		rec.Targets = append(rec.Targets, logout.AuditTarget{Issuer: o.Issuer, Kind: cache.KindSID, Value: o.SID})
	}
	f.add(rec)
}

// add queues rec without blocking.
func (f *auditFeed) add(rec logout.Record) {
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
	f.log.Warn("audit record dropped: queue full", "event", rec.Event)
}

func (f *auditFeed) work() {
	defer f.wg.Done()
	for rec := range f.jobs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := f.audit.Append(ctx, rec)
		cancel()
		if err != nil {
			f.dropped.WithLabelValues(rec.Event, "write_failed").Inc()
			f.log.Error("audit record not written", "event", rec.Event, "error", err)
		}
	}
}

// close stops the subscription and writes what is queued. Idempotent.
func (f *auditFeed) close() {
	f.once.Do(func() {
		f.unsub()
		f.mu.Lock()
		f.closed = true
		close(f.jobs)
		f.mu.Unlock()
		f.wg.Wait()
	})
}

// replicaName names this replica in audit records: the host name and the
// store's replica id (the id verify-revocation shows), so that replicas on
// one host stay apart.
func replicaName(store any) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "oidcgate"
	}
	if s, ok := store.(interface{ ReplicaID() string }); ok && s.ReplicaID() != "" {
		return host + "/" + s.ReplicaID()
	}
	return host
}

// openAudit opens the audit log and returns the store the revocation
// sources use (Revoke audited) and the app logout observer.
func (a *gatewayApp) openAudit(cfg logout.AuditConfig, log *slog.Logger, reg prometheus.Registerer) (revocationStore, gateway.AppLogoutObserver, error) {
	cfg.Replica, cfg.Logger = replicaName(a.store), log
	au, err := logout.OpenAudit(cfg)
	if err != nil {
		return nil, nil, err
	}
	a.audit = au
	audited := &logout.AuditedStore{Store: a.store, Audit: au}
	a.feed = newAuditFeed(au, audited, a.store, log, reg)
	return auditedStore{revocationStore: a.store, audited: audited}, a.feed, nil
}
