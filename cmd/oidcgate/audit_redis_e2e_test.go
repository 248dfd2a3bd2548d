package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache/redistest"
)

// TestAuditAcrossReplicas: with Redis, a revocation accepted by replica 1
// is recorded there as a "revocation", and each other replica records
// when it applied it ("applied", with the origin's revoked_at); every
// file's chain verifies.
func TestAuditAcrossReplicas(t *testing.T) {
	requireBinary(t)
	srv := redistest.Start(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	admin := randHex(t, 24)
	reps := make([]*redisReplica, 2)
	paths := make([]string, len(reps))
	for i := range reps {
		dir := t.TempDir()
		paths[i] = filepath.Join(dir, "audit.jsonl")
		cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: dir, adminToken: admin,
			extraYAML: fmt.Sprintf("audit:\n  path: %q\n", paths[i])}
		reps[i] = startRedisReplica(t, t, fmt.Sprintf("replica %d", i+1), cfg, srv.Addr)
	}
	reps[0].mustRevoke(t, map[string]string{"sub": "audited-user", "reason": "offboarding"})

	find := func(path, event string) (audit.Record, bool) {
		recs, err := readAudit(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Event == event && len(r.Targets) == 1 && r.Targets[0].Value == "audited-user" {
				return r, true
			}
		}
		return audit.Record{}, false
	}
	rev, ok := find(paths[0], audit.EventRevocation)
	if !ok || rev.Trigger != audit.TriggerAdmin || rev.Reason != "offboarding" || rev.AppliedAt.IsZero() {
		t.Fatalf("replica 1: revocation record: got %+v, %v; want trigger admin, reason offboarding, applied", rev, ok)
	}
	var applied audit.Record
	if !waitFor(propagationTimeout, func() bool { applied, ok = find(paths[1], audit.EventApplied); return ok }) {
		t.Fatalf("replica 2 wrote no applied record within %s", propagationTimeout)
	}
	if !applied.RevokedAt.Equal(rev.RevokedAt) || applied.AppliedAt.Before(rev.RevokedAt) || applied.Replica == rev.Replica || applied.Trigger != audit.TriggerAdmin {
		t.Errorf("replica 2 applied record: got %+v; want the origin's revoked_at %s, applied after it, by another replica, trigger admin", applied, rev.RevokedAt)
	}
	if lag := applied.AppliedAt.Sub(rev.RevokedAt); lag > time.Minute {
		t.Errorf("applied %s after the revocation", lag)
	}
	for i, p := range paths {
		if code, out, errOut := runCLI(t, nil, "audit", "verify", p); code != 0 || !strings.Contains(out, "chain intact") {
			t.Errorf("replica %d: audit verify: got %d %q %q", i+1, code, out, errOut)
		}
	}
}

// readAudit decodes an audit file's records.
func readAudit(path string) ([]audit.Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var recs []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}
