package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/logout"
)

// revokeTimeout bounds one revoke call, connection included.
const revokeTimeout = 15 * time.Second

func cmdRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("revoke", "revoke --sub|--sid|--jti|--client|--session|--key VALUE [--issuer ISS] [--reason TEXT] [--effective-at TIME] [--wait [--wait-timeout D]] [--url URL]\n\n"+
		"--effective-at (RFC 3339, with --client or --key only) schedules the revocation: credentials\n"+
		"issued before TIME keep working until TIME and are refused after it.\n"+
		"With --wait it answers only when every live replica has applied the revocation, or says\n"+
		"which have not by the timeout (exit 1).\n"+
		"The admin token is read from $OIDCGATE_ADMIN_TOKEN or --token-file (never a flag: flags show in ps).\n"+
		"The admin API URL is --url, else $OIDCGATE_ADMIN_URL, else "+defaultAdminURL(), stderr)
	target := addTargetFlags(fs, targetHelp{
		cache.KindSub:     "revoke every credential of this subject issued until now",
		cache.KindSID:     "revoke this IdP session id",
		cache.KindJTI:     "revoke the token with this jti",
		cache.KindClient:  "revoke every token issued to this client_id until now",
		cache.KindSession: "revoke this gateway session id",
		cache.KindKey:     "revoke the API key with this id (no issuer)",
	})
	reason := fs.String("reason", "", "free text recorded with the revocation")
	effectiveAt := fs.String("effective-at", "", "RFC 3339 `time` from which the revocation holds (--client or --key only)")
	wait := fs.Bool("wait", false, "answer only when every live replica has applied it (or name those that have not)")
	waitTimeout := fs.Duration("wait-timeout", 5*time.Second, "how long --wait waits (at most 30s)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	kind, value, err := target.one(fs)
	if err != nil {
		return err
	}
	if *effectiveAt != "" {
		if !kind.Schedulable() {
			return fmt.Errorf("%w: --effective-at goes with --client or --key only", errUsage)
		}
		if _, err := time.Parse(time.RFC3339, *effectiveAt); err != nil {
			return fmt.Errorf("%w: --effective-at: not an RFC 3339 time (like 2026-12-04T22:00:00Z): %q", errUsage, *effectiveAt)
		}
	}
	baseURL, token, err := target.api()
	if err != nil {
		return err
	}
	req := logout.RevokeRequest{Issuer: *target.issuer, Reason: *reason, EffectiveAt: *effectiveAt}
	switch kind {
	case cache.KindSub:
		req.Sub = value
	case cache.KindSID:
		req.SID = value
	case cache.KindJTI:
		req.JTI = value
	case cache.KindClient:
		req.ClientID = value
	case cache.KindSession:
		req.Session = value
	case cache.KindKey:
		req.Key = value
	}
	if *wait {
		req.Wait = *waitTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, revokeTimeout+req.Wait)
	defer cancel()
	entry, applied, err := logout.RevokeRemoteWait(ctx, &http.Client{Timeout: revokeTimeout + req.Wait}, baseURL, token, req)
	if err != nil {
		return fmt.Errorf("revocation failed: %w", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(entry); err != nil {
		return err
	}
	if applied == nil {
		return nil
	}
	if !applied.Applied {
		return fmt.Errorf("%w: stored, but not yet applied by the live replica(s) %s within %s", errNotApplied, strings.Join(applied.Pending, ", "), *waitTimeout)
	}
	fmt.Fprintf(stderr, "applied by every live replica")
	if len(applied.Down) > 0 {
		fmt.Fprintf(stderr, " (down, not waited for: %s)", strings.Join(applied.Down, ", "))
	}
	fmt.Fprintln(stderr)
	return nil
}

func defaultAdminURL() string {
	if u := os.Getenv("OIDCGATE_ADMIN_URL"); u != "" {
		return u
	}
	return "http://" + defaultInternalListen
}

func adminToken(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("OIDCGATE_ADMIN_TOKEN"); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("%w: no admin token: set OIDCGATE_ADMIN_TOKEN or pass --token-file", errUsage)
}

// targetHelp is the help text of each target flag; a command has the
// target flags it has help for.
type targetHelp map[cache.Kind]string

// targetFlags are the flags shared by the commands that call the admin
// API about one revocation target (revoke, verify-revocation): exactly
// one of --sub, --sid, --jti, --client, --session (and --key for revoke);
// --issuer; and how to reach the API (--url, --token-file).
type targetFlags struct {
	values    map[cache.Kind]*string
	names     []string // "--sub", … in usage order
	issuer    *string
	baseURL   *string
	tokenFile *string
}

// targetFlagNames are the target flags, in the order of the usage text.
var targetFlagNames = []struct {
	name string
	kind cache.Kind
}{
	{"sub", cache.KindSub}, {"sid", cache.KindSID}, {"jti", cache.KindJTI},
	{"client", cache.KindClient}, {"session", cache.KindSession}, {"key", cache.KindKey},
}

func addTargetFlags(fs *flag.FlagSet, help targetHelp) *targetFlags {
	t := &targetFlags{values: make(map[cache.Kind]*string, len(targetFlagNames))}
	for _, f := range targetFlagNames {
		if h, ok := help[f.kind]; ok {
			t.values[f.kind] = fs.String(f.name, "", h)
			t.names = append(t.names, "--"+f.name)
		}
	}
	t.issuer = fs.String("issuer", "", "issuer the value belongs to (default: the gateway's only issuer)")
	t.baseURL = fs.String("url", "", "base `URL` of the gateway's internal listener")
	t.tokenFile = fs.String("token-file", "", "read the admin token from this `file`")
	return t
}

// one returns the one target given, or a usage error.
func (t *targetFlags) one(fs *flag.FlagSet) (cache.Kind, string, error) {
	var kind cache.Kind
	var value string
	set := 0
	for k, v := range t.values {
		if *v != "" {
			kind, value = k, *v
			set++
		}
	}
	if set != 1 {
		fs.Usage()
		return "", "", fmt.Errorf("%w: give exactly one of %s", errUsage, strings.Join(t.names, ", "))
	}
	return kind, value, nil
}

// api returns the admin API's base URL and the admin token.
func (t *targetFlags) api() (baseURL, token string, err error) {
	if token, err = adminToken(*t.tokenFile); err != nil {
		return "", "", err
	}
	if *t.baseURL == "" {
		return defaultAdminURL(), token, nil
	}
	return *t.baseURL, token, nil
}
