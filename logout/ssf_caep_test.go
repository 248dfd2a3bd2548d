package logout

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/introspect"
)

// TestSSFCAEP checks what each CAEP 1.0 event revokes: token-claims-change
// every credential of the user issued before it; credential-change only
// for change_type revoke, update or delete (or one it does not know),
// never create; assurance-level-change only on a decrease; a jwt_id
// subject that one token.
func TestSSFCAEP(t *testing.T) {
	ts := t0.Add(-10 * time.Minute)
	payload := func(kv ...any) map[string]any {
		return with(map[string]any{"event_timestamp": ts.Unix()}, kv...)
	}
	userAt := []want{{issA, cache.KindSub, "alice", ts}}
	jwtID := map[string]any{"format": "jwt_id", "iss": issA, "jti": "at-7"}
	tests := []struct {
		name  string
		event string
		sub   map[string]any
		extra map[string]any
		want  []want
	}{
		{"token-claims-change revokes the user", introspect.EventTokenClaimsChange, subIssSub, payload("claims", map[string]any{"role": "ro-admin"}), userAt},
		{"token-claims-change of one token", introspect.EventTokenClaimsChange, jwtID, payload("claims", map[string]any{"role": "ro-admin"}), []want{{issA, cache.KindJTI, "at-7", ts}}},
		{"token-claims-change of a token of no configured issuer", introspect.EventTokenClaimsChange, map[string]any{"format": "jwt_id", "iss": "https://other.example", "jti": "at-7"}, payload(), nil},
		{"credential-change create", introspect.EventCredentialChange, subIssSub, payload("credential_type", "fido2-roaming", "change_type", "create"), nil},
		{"credential-change revoke", introspect.EventCredentialChange, subIssSub, payload("credential_type", "password", "change_type", "revoke"), userAt},
		{"credential-change update", introspect.EventCredentialChange, subIssSub, payload("credential_type", "password", "change_type", "update"), userAt},
		{"credential-change delete", introspect.EventCredentialChange, subIssSub, payload("credential_type", "x509", "change_type", "delete"), userAt},
		{"credential-change of an unknown change_type", introspect.EventCredentialChange, subIssSub, payload("credential_type", "pin", "change_type", "rotate"), userAt},
		{"assurance-level-change decrease", introspect.EventAssuranceLevelChange, subIssSub, payload("namespace", "NIST-AAL", "current_level", "nist-aal1", "previous_level", "nist-aal2", "change_direction", "decrease"), userAt},
		{"assurance-level-change decrease of a session", introspect.EventAssuranceLevelChange, subComplex, payload("namespace", "NIST-AAL", "current_level", "nist-aal1", "change_direction", "decrease"), []want{{issA, cache.KindSID, "sid-9", ts}}},
		{"assurance-level-change increase", introspect.EventAssuranceLevelChange, subIssSub, payload("namespace", "NIST-AAL", "current_level", "nist-aal2", "previous_level", "nist-aal1", "change_direction", "increase"), nil},
		{"assurance-level-change without direction", introspect.EventAssuranceLevelChange, subIssSub, payload("namespace", "Retinal Scan", "current_level", "hi-res-scan"), nil},
		{"session-revoked of one token", introspect.EventSessionRevoked, jwtID, payload(), []want{{issA, cache.KindJTI, "at-7", ts}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newSSFFixture(t, ssfOptions{path: "-"})
			c := setClaims(tt.event, tt.sub)
			c["events"] = map[string]any{tt.event: tt.extra}
			w := f.push(t, ssfRequest(setType, f.set(t, c), ""))
			if w.Code != http.StatusAccepted || w.Body.Len() != 0 {
				t.Fatalf("got %d %q; want 202 with an empty body", w.Code, w.Body)
			}
			got := f.entries(t)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries %+v; want %+v", len(got), got, tt.want)
			}
			for i, e := range got {
				if wt := tt.want[i]; e.Issuer != wt.iss || e.Kind != wt.kind || e.Value != wt.value || !e.RevokedAt.Equal(wt.at) {
					t.Errorf("entry %d: got (%s %s %s %v); want (%s %s %s %v)", i, e.Issuer, e.Kind, e.Value, e.RevokedAt, wt.iss, wt.kind, wt.value, wt.at)
				}
			}
			result := resultOK
			if tt.want == nil {
				result = resultIgnored
			}
			if got := ssfCounter(t, f.reg, eventLabels[tt.event], result); got != 1 {
				t.Errorf("oidcgate_ssf_events_total{%s,%s}: got %v; want 1", eventLabels[tt.event], result, got)
			}
		})
	}
}

// TestSSFTokenClaimsChangeForcesReauth: after a role change, every
// session and token of the user issued before it is refused; a login
// after it is not — the user authenticates again and gets the new claims.
func TestSSFTokenClaimsChangeForcesReauth(t *testing.T) {
	f := newSSFFixture(t, ssfOptions{path: "-"})
	changed := t0.Add(-time.Minute)
	c := setClaims(introspect.EventTokenClaimsChange, subIssSub)
	c["events"] = map[string]any{introspect.EventTokenClaimsChange: map[string]any{
		"event_timestamp": changed.Unix(),
		"claims":          map[string]any{"groups": []string{"readers"}},
	}}
	if w := f.push(t, ssfRequest(setType, f.set(t, c), "")); w.Code != http.StatusAccepted {
		t.Fatalf("got %d %s; want 202", w.Code, w.Body)
	}
	for _, tt := range []struct {
		name    string
		cred    cache.Credential
		revoked bool
	}{
		{"browser session from before", cache.Credential{Issuer: issA, Sub: "alice", SID: "s-1", SessionID: cache.SessionDigest("gw-1"), IssuedAt: changed.Add(-time.Hour)}, true},
		{"access token from before", cache.Credential{Issuer: issA, Sub: "alice", JTI: "at-1", ClientID: "app", IssuedAt: changed.Add(-time.Second)}, true},
		{"login after the change", cache.Credential{Issuer: issA, Sub: "alice", SID: "s-2", IssuedAt: changed.Add(skew + time.Second)}, false},
		{"another user", cache.Credential{Issuer: issA, Sub: "bob", IssuedAt: changed.Add(-time.Hour)}, false},
	} {
		if got := f.store.IsRevoked(&tt.cred); got != tt.revoked {
			t.Errorf("%s: IsRevoked got %v; want %v", tt.name, got, tt.revoked)
		}
	}
}

// TestSSFProvenanceAudited: initiating_entity and reason_admin reach the
// audit record as its initiator and reason.
func TestSSFProvenanceAudited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var log *audit.Log
	f := newSSFFixture(t, ssfOptions{path: "-", mod: func(c *Config) {
		var err error
		if log, err = audit.Open(audit.Config{Path: path, Replica: "test", Clock: c.Clock}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = log.Close() })
		c.Store = &audit.Store{Store: c.Store.(*cache.Store), Log: log, Clock: c.Clock}
	}})
	tests := []struct {
		name       string
		jti        string
		event      map[string]any
		initiator  string
		wantReason string
	}{
		{"admin, English reason", "set-a", map[string]any{
			"credential_type": "password", "change_type": "revoke", "initiating_entity": "admin",
			"reason_admin": map[string]any{"de": "Passwort vom Helpdesk zurückgesetzt", "en": "Password reset by the helpdesk"},
		}, " initiating_entity:admin", "Password reset by the helpdesk"},
		{"policy, reason in another language, control characters", "set-b", map[string]any{
			"credential_type": "password", "change_type": "update", "initiating_entity": "policy",
			"reason_admin": map[string]any{"it": "Violazione\ndella policy"},
		}, " initiating_entity:policy", "Violazione della policy"},
		{"an initiating_entity CAEP does not define", "set-c", map[string]any{
			"credential_type": "password", "change_type": "delete", "initiating_entity": "mallory\n",
		}, "", "ssf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := setClaims(introspect.EventCredentialChange, map[string]any{"format": "iss_sub", "iss": issA, "sub": "u-" + tt.jti})
			c["jti"] = tt.jti
			c["events"] = map[string]any{introspect.EventCredentialChange: tt.event}
			if w := f.push(t, ssfRequest(setType, f.set(t, c), "")); w.Code != http.StatusAccepted {
				t.Fatalf("got %d %s; want 202", w.Code, w.Body)
			}
			wantInitiator := "ssf:" + transmitter + " jti_sha256:" + digestPrefix(tt.jti) + tt.initiator
			e, ok := f.store.Get(issA, cache.KindSub, "u-"+tt.jti)
			if !ok || e.Initiator != wantInitiator || e.Reason != tt.wantReason {
				t.Errorf("entry: got %+v; want initiator %q, reason %q", e, wantInitiator, tt.wantReason)
			}
			rec := auditRecordOf(t, path, "u-"+tt.jti)
			if rec.Initiator != wantInitiator || rec.Reason != tt.wantReason || rec.Trigger != audit.TriggerSSF {
				t.Errorf("audit record: got trigger %q, initiator %q, reason %q; want ssf, %q, %q", rec.Trigger, rec.Initiator, rec.Reason, wantInitiator, tt.wantReason)
			}
		})
	}
}

// auditRecordOf returns the revocation record of the audit log at path
// whose target's value is value.
func auditRecordOf(t *testing.T, path, value string) audit.Record {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if rec.Event == audit.EventRevocation && len(rec.Targets) == 1 && rec.Targets[0].Value == value {
			return rec
		}
	}
	t.Fatalf("no revocation record for %q in %s", value, path)
	return audit.Record{}
}

// TestSSFJWTIDAllowList: a jwt_id subject of an issuer the transmitter
// may not revoke is refused like any other subject of it.
func TestSSFJWTIDAllowList(t *testing.T) {
	f := newSSFFixture(t, ssfOptions{path: "-", issuers: []string{issA}})
	sub := map[string]any{"format": "jwt_id", "iss": issB, "jti": "at-7"}
	w := f.push(t, ssfRequest(setType, f.set(t, setClaims(introspect.EventTokenClaimsChange, sub)), ""))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"access_denied"`) {
		t.Fatalf("got %d %s; want 400 access_denied", w.Code, w.Body)
	}
	if n := f.store.Len(); n != 0 {
		t.Errorf("store holds %d entries; want none", n)
	}
}
