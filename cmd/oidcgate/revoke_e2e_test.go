package main

// End-to-end tests of `oidcgate revoke --key` and `--effective-at` (issue
// 14): the built binary, one gateway, keys made with `oidcgate keys`.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/logout"
)

func TestRevokeKeyAndEffectiveAtE2E(t *testing.T) {
	requireBinary(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	admin := randHex(t, 24)
	gw := startGateway(t, gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: admin})
	env := gw.cliEnv(admin)

	newKey := func(t *testing.T, owner string) e2eKey {
		t.Helper()
		code, out, errOut := runCLI(t, env, "keys", "create", "--owner", owner, "--json")
		var c logout.CreatedKey
		if code != 0 || json.Unmarshal([]byte(out), &c) != nil {
			t.Fatalf("oidcgate keys create: exit %d\n%s%s", code, out, errOut)
		}
		return e2eKey{c.Key, c.Record.ID}
	}
	keyStatus := func(t *testing.T, k e2eKey) int {
		t.Helper()
		return gw.get(t, "/api/keys", "", http.Header{"X-API-Key": {k.key}}).status
	}
	revoke := func(t *testing.T, args ...string) cache.Entry {
		t.Helper()
		code, out, errOut := runCLI(t, env, append([]string{"revoke"}, args...)...)
		var e cache.Entry
		if code != 0 || json.Unmarshal([]byte(out), &e) != nil {
			t.Fatalf("oidcgate revoke %v: exit %d\n%s%s", args, code, out, errOut)
		}
		return e
	}

	t.Run("--key revokes the key at once", func(t *testing.T) {
		k := newKey(t, "revoke-key")
		if got := keyStatus(t, k); got != http.StatusOK {
			t.Fatalf("fresh key: %d; want 200", got)
		}
		e := revoke(t, "--key", k.id, "--reason", "leaked")
		if e.Kind != cache.KindKey || e.Value != k.id || e.Issuer != "" || !e.EffectiveAt.IsZero() {
			t.Errorf("stored entry: got %+v; want kind key, value %s, no issuer, not scheduled", e, k.id)
		}
		if got := keyStatus(t, k); got != http.StatusUnauthorized {
			t.Errorf("after revoke --key: %d; want 401", got)
		}
	})

	t.Run("--key --effective-at in the future: the key works until then", func(t *testing.T) {
		k := newKey(t, "scheduled-key")
		at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		e := revoke(t, "--key", k.id, "--effective-at", at.Format(time.RFC3339))
		if !e.EffectiveAt.Equal(at) {
			t.Errorf("effective_at: got %s; want %s", e.EffectiveAt, at)
		}
		if got := keyStatus(t, k); got != http.StatusOK {
			t.Errorf("key scheduled for revocation in an hour: %d; want 200", got)
		}
		var list struct {
			Keys []struct {
				ID        string    `json:"id"`
				RevokesAt time.Time `json:"revokes_at"`
			} `json:"keys"`
		}
		resp := do(t, gw.client, http.MethodGet, gw.internal+"/admin/keys?owner=scheduled-key", admin, nil, nil)
		if err := json.Unmarshal(resp.body, &list); err != nil || len(list.Keys) != 1 || !list.Keys[0].RevokesAt.Equal(at) {
			t.Errorf("GET /admin/keys: %s; want the key with revokes_at %s", resp.body, at)
		}
	})

	t.Run("--client --effective-at: tokens issued before keep working until then, refused after", func(t *testing.T) {
		before := iss.mint(t, iss.spec(t, "sched-user"))
		if got := gw.get(t, "/api/x", before, nil).status; got != http.StatusOK {
			t.Fatalf("token before: %d; want 200", got)
		}
		// Whole seconds: RFC 3339 as typed by an operator. Two seconds
		// ahead leaves the CLI time to return on a loaded machine; the
		// "still works" check is made only while the time is still ahead.
		at := time.Now().Add(2 * time.Second).UTC().Truncate(time.Second).Add(time.Second)
		e := revoke(t, "--client", "e2e-client", "--effective-at", at.Format(time.RFC3339))
		if e.Kind != cache.KindClient || e.Value != "e2e-client" || !e.EffectiveAt.Equal(at) {
			t.Errorf("stored entry: got %+v; want client e2e-client effective at %s", e, at)
		}
		got := gw.get(t, "/api/x", before, nil).status
		if time.Now().Before(at) && got != http.StatusOK {
			t.Errorf("token issued before effective_at, asked before it: %d; want 200", got)
		}
		if !waitFor(propagationTimeout+3*time.Second, func() bool { return gw.get(t, "/api/x", before, nil).status == http.StatusUnauthorized }) {
			t.Fatalf("token issued before effective_at still accepted after it")
		}
		// Issued after effective_at plus the clock skew (1s; iat is in whole
		// seconds): it works.
		waitFor(6*time.Second, func() bool { return time.Now().After(at.Add(2 * time.Second)) })
		after := iss.mint(t, iss.spec(t, "sched-user"))
		if got := gw.get(t, "/api/x", after, nil).status; got != http.StatusOK {
			t.Errorf("token issued after effective_at: %d; want 200", got)
		}
	})

	t.Run("bad usage exits 2 before any call", func(t *testing.T) {
		for _, args := range [][]string{
			{"--key", "x", "--sub", "y"},
			{"--sub", "alice", "--effective-at", "2030-01-01T00:00:00Z"},
			{"--key", "x", "--effective-at", "tomorrow"},
			{"--client", "c", "--effective-at", "2030-01-01 00:00:00"},
		} {
			if code, out, errOut := runCLI(t, env, append([]string{"revoke"}, args...)...); code != 2 {
				t.Errorf("revoke %v: exit %d; want 2\n%s%s", args, code, out, errOut)
			}
		}
		resp := do(t, gw.client, http.MethodGet, gw.internal+"/admin/revocations?kind=sub", admin, nil, nil)
		if strings.Contains(string(resp.body), `"alice"`) {
			t.Errorf("a refused command stored an entry: %s", resp.body)
		}
	})
}
