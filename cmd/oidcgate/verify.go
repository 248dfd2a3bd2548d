package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/logout"
)

// errNotApplied is returned (exit 1) when a revocation is not applied on
// every replica, or an app logout call it caused did not succeed.
var errNotApplied = errors.New("the revocation is not applied everywhere")

func cmdVerifyRevocation(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify-revocation", "verify-revocation --sub|--sid|--jti|--client|--session VALUE [--issuer ISS] [--json] [--url URL]\n\n"+
		"Asks a running gateway whether every replica has applied the revocation; exit 0 when\n"+
		"it is applied everywhere, 1 otherwise (pending, down replicas, not revoked, or no answer).\n"+
		"The admin token is read from $OIDCGATE_ADMIN_TOKEN or --token-file (never a flag: flags show in ps).\n"+
		"The admin API URL is --url, else $OIDCGATE_ADMIN_URL, else "+defaultAdminURL(), stderr)
	target := addTargetFlags(fs, targetHelp{
		cache.KindSub:     "the subject whose revocation to verify",
		cache.KindSID:     "the IdP session id",
		cache.KindJTI:     "the token jti",
		cache.KindClient:  "the client_id",
		cache.KindSession: "the gateway session id",
	})
	asJSON := fs.Bool("json", false, "print the admin API's JSON answer instead of text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	kind, value, err := target.one(fs)
	if err != nil {
		return err
	}
	baseURL, token, err := target.api()
	if err != nil {
		return err
	}
	q := logout.StatusQuery{Kind: kind, Value: value, Issuer: *target.issuer}
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout)
	defer cancel()
	st, err := logout.StatusRemote(ctx, &http.Client{Timeout: revokeTimeout}, baseURL, token, q)
	if err != nil {
		return fmt.Errorf("could not verify: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else {
		printStatus(stdout, q, st)
	}
	if st.Verdict != logout.VerdictAppliedEverywhere {
		return fmt.Errorf("%w (%s)", errNotApplied, st.Verdict)
	}
	for _, l := range st.AppLogouts {
		switch l.Outcome {
		case "ok":
		case "not_honoured":
			// The gateway refuses the session everywhere, but the app
			// still serves it: its logout endpoint is broken.
			return fmt.Errorf("%w: the app of route %s did not honour its logout for session %s (app_verify answered %d)", errNotApplied, l.Route, l.Session, l.VerifyStatus)
		default:
			// The gateway refuses the session everywhere, but the app's own
			// session may live on: not done.
			return fmt.Errorf("%w: the app logout of %s for session %s: %s", errNotApplied, l.Route, l.Session, l.Outcome)
		}
	}
	if !st.Complete {
		return fmt.Errorf("%w: not every target is done", errNotApplied)
	}
	return nil
}

// printStatus writes the verdict, then one line per replica.
func printStatus(w io.Writer, q logout.StatusQuery, st logout.RevocationStatus) {
	what := fmt.Sprintf("%s %q", q.Kind, q.Value)
	if st.Entry != nil && st.Entry.Issuer != "" {
		what += fmt.Sprintf(" (issuer %q)", st.Entry.Issuer)
	}
	names := func(ids []string) string {
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = replicaLabel(st.Replicas, id)
		}
		return strings.Join(out, ", ")
	}
	n := len(st.Replicas)
	switch st.Verdict {
	case logout.VerdictAppliedEverywhere:
		fmt.Fprintf(w, "APPLIED EVERYWHERE: %s is revoked on all %d replica(s)\n", what, n)
	case logout.VerdictPending:
		fmt.Fprintf(w, "PENDING: %s is not yet applied on %d of %d replica(s), which are up: %s\n", what, len(st.Pending), n, names(st.Pending))
	case logout.VerdictDown:
		fmt.Fprintf(w, "NOT APPLIED ON DOWN REPLICAS: %s is not applied on %d of %d replica(s), which are down: %s\n", what, len(st.Down), n, names(st.Down))
		if len(st.Pending) > 0 {
			fmt.Fprintf(w, "  and not yet applied on replica(s) that are up: %s\n", names(st.Pending))
		}
	case logout.VerdictNotRevoked:
		fmt.Fprintf(w, "NOT REVOKED: no revocation of %s is recorded\n", what)
	default:
		fmt.Fprintf(w, "UNKNOWN VERDICT %q for %s\n", st.Verdict, what)
	}
	if st.Entry != nil {
		fmt.Fprintf(w, "  revoked at %s by %q, kept until %s\n", st.Entry.RevokedAt.Format(time.RFC3339Nano), st.Entry.Initiator, st.Entry.ExpiresAt.Format(time.RFC3339))
	}
	for _, r := range st.Replicas {
		state := "up"
		if !r.Up {
			state = "DOWN"
		}
		if r.LastSeen != nil {
			state += " (last seen " + r.LastSeen.Format(time.RFC3339Nano) + ")"
		}
		applied := "NOT APPLIED"
		if r.AppliedAt != nil {
			applied = "applied " + r.AppliedAt.Format(time.RFC3339Nano)
			if st.Entry != nil {
				applied += fmt.Sprintf(" (+%s)", r.AppliedAt.Sub(st.Entry.RevokedAt).Round(time.Millisecond))
			}
		}
		if st.Verdict == logout.VerdictNotRevoked {
			applied = "-"
		}
		fmt.Fprintf(w, "  replica %s  %s  %s\n", replicaLabel(st.Replicas, r.ID), state, applied)
	}
	for _, l := range st.AppLogouts {
		line := fmt.Sprintf("  app logout %s session %s: %s (status %d, %d attempt(s))", l.Route, l.Session, l.Outcome, l.Status, l.Attempts)
		if l.VerifyStatus != 0 {
			line += fmt.Sprintf(", app_verify answered %d", l.VerifyStatus)
		}
		fmt.Fprintln(w, line)
	}
	printTargets(w, st)
}

// printTargets writes one line per target beyond replicas and app
// logouts (printed above), then whether the revocation is complete.
func printTargets(w io.Writer, st logout.RevocationStatus) {
	open := 0
	for _, t := range st.Targets {
		if t.State != cache.TargetDone && t.State != cache.TargetUnsupported {
			open++
		}
		if t.Kind == logout.TargetReplica || t.Kind == logout.TargetAppLogout {
			continue
		}
		line := fmt.Sprintf("  %s %s: %s", t.Kind, t.Name, strings.ToUpper(string(t.State)))
		if t.State == cache.TargetDone {
			line = fmt.Sprintf("  %s %s: done", t.Kind, t.Name)
		}
		if t.Attempts > 0 {
			line += fmt.Sprintf(" after %d attempt(s)", t.Attempts)
		}
		if t.CompletedAt != nil {
			line += " at " + t.CompletedAt.Format(time.RFC3339Nano)
		}
		if t.NextAt != nil {
			line += ", next attempt at " + t.NextAt.Format(time.RFC3339Nano)
		}
		if t.LastError != "" {
			line += "; last error: " + t.LastError
		}
		if t.Note != "" {
			line += " (" + t.Note + ")"
		}
		fmt.Fprintln(w, line)
	}
	switch {
	case st.Entry == nil:
	case st.Complete:
		fmt.Fprintf(w, "COMPLETE: every one of %d target(s) is done or unsupported\n", len(st.Targets))
	default:
		fmt.Fprintf(w, "NOT COMPLETE: %d of %d target(s) are not done\n", open, len(st.Targets))
	}
}

// replicaLabel is "id (name addr)" of the replica id, as far as known.
func replicaLabel(rs []logout.ReplicaStatus, id string) string {
	for _, r := range rs {
		if r.ID != id {
			continue
		}
		var where []string
		if r.Name != "" {
			where = append(where, r.Name)
		}
		if r.Addr != "" {
			where = append(where, r.Addr)
		}
		if len(where) == 0 {
			return id
		}
		return id + " (" + strings.Join(where, " ") + ")"
	}
	return id
}
