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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/gateway"
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
	rep, err := audit.VerifyAnchor(seq, fs.Args()...)
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
	if rep.Dropped > 0 {
		fmt.Fprintf(stdout, "ok: %d records, chain intact (last hash %s); records 1 to %d were deleted by retention, as the log records\n", rep.Records, rep.LastHash, rep.Dropped)
	} else {
		fmt.Fprintf(stdout, "ok: %d records, chain intact (last hash %s)\n", rep.Records, rep.LastHash)
	}
	return nil
}

// auditedStore is the revocation store with Revoke going through the
// audit (audit.Store); lookups and subscriptions go to the store.
type auditedStore struct {
	revocationStore
	audited *audit.Store
}

func (s auditedStore) Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error) {
	return s.audited.Revoke(ctx, e)
}

// appLogoutAudit records app logout outcomes through the audit feed.
type appLogoutAudit struct{ feed *audit.Feed }

var _ gateway.AppLogoutObserver = appLogoutAudit{}

// AppLogoutDone records an app logout outcome.
func (o appLogoutAudit) AppLogoutDone(_ context.Context, out gateway.AppLogoutOutcome) {
	rec := audit.Record{
		Event:   audit.EventAppLogout,
		Targets: []audit.Target{{Issuer: out.Issuer, Kind: cache.KindSub, Value: out.Subject}},
		AppLogout: &audit.AppLogout{
			Route: out.Route, Session: out.Session, Outcome: out.Outcome, Status: out.Status, Attempts: out.Attempts,
			VerifyStatus: out.VerifyStatus,
		},
	}
	if out.SID != "" {
		rec.Targets = append(rec.Targets, audit.Target{Issuer: out.Issuer, Kind: cache.KindSID, Value: out.SID})
	}
	o.feed.Add(rec)
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
func (a *gatewayApp) openAudit(cfg audit.Config, log *slog.Logger, reg prometheus.Registerer) (revocationStore, gateway.AppLogoutObserver, error) {
	cfg.Replica, cfg.Logger = replicaName(a.store), log
	au, err := audit.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	a.audit = au
	audited := &audit.Store{Store: a.store, Log: au}
	a.feed = audit.NewFeed(au, audited, a.store, log, reg)
	return auditedStore{revocationStore: a.store, audited: audited}, appLogoutAudit{a.feed}, nil
}
