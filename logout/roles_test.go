package logout

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
)

// roleToken is the fixture token of a credential holding only role r
// (and "all" for the token configured without roles).
func roleToken(r string) string { return "role-" + r + "-0123456789abcdef0123456789abcdef" }

// TestRolesPerEndpoint calls every admin endpoint and method with a token
// of each single role and with one configured without roles: the role the
// endpoint needs passes, every other answers 403 naming it, and the
// refusal is logged by name, never by token.
func TestRolesPerEndpoint(t *testing.T) {
	clk := clocktest.NewRealTimers(t0)
	store, err := cache.Open(cache.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	au := openTestAudit(t, audit.Config{Path: filepath.Join(t.TempDir(), "audit.jsonl"), Clock: clk})
	logs := new(bytes.Buffer)
	admin := AdminConfig{Tokens: []AdminToken{{Name: "all", Token: introspect.Secret(roleToken("all"))}}}
	for _, r := range Roles {
		admin.Tokens = append(admin.Tokens, AdminToken{Name: "only-" + string(r), Token: introspect.Secret(roleToken(string(r))), Roles: []Role{r}})
	}
	cfg := Config{
		Admin:     admin,
		Lifetimes: map[string]time.Duration{issA: time.Hour},
		ClockSkew: skew,
		Store:     &audit.Store{Store: store, Log: au, Clock: clk},
		Replays:   store,
		Clock:     clk,
		Logger:    slog.New(slog.NewJSONHandler(logs, nil)),
		Metrics:   prometheus.NewRegistry(),
	}
	a, err := NewAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewKeyAdmin(KeyAdminConfig{Config: cfg, Records: store, Audit: au})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/revocations", a)
	mux.Handle(StatusPath, a.StatusHandler(store, au))
	mux.Handle("/admin/audit", a.AuditHandler(au))
	mux.Handle(KeysPath, keys)
	mux.Handle(KeysPath+"/", keys)

	// A key to rotate and revoke, made by the keys token.
	w := serve(t, mux, newRequest(http.MethodPost, KeysPath, roleToken("keys"), "application/json", `{"owner":"batch"}`))
	var created CreatedKey
	if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &created) != nil {
		t.Fatalf("create key: %d %s", w.Code, w.Body)
	}
	id := created.Record.ID

	endpoints := []struct {
		method, target, body string
		role                 Role
	}{
		{http.MethodPost, "/admin/revocations", `{"sub":"alice","reason":"r"}`, RoleRevoke},
		{http.MethodPost, "/admin/revocations?wait=replicas&timeout=1s", `{"sub":"bob"}`, RoleRevoke},
		{http.MethodGet, "/admin/revocations", "", RoleRead},
		{http.MethodGet, StatusPath + "?kind=sub&value=alice", "", RoleRead},
		{http.MethodGet, "/admin/audit?limit=5", "", RoleAudit},
		{http.MethodGet, KeysPath, "", RoleKeys},
		{http.MethodPost, KeysPath, `{"owner":"svc"}`, RoleKeys},
		{http.MethodPost, KeysPath + "/" + id + "/rotate", `{"grace":"1m"}`, RoleKeys},
		{http.MethodDelete, KeysPath + "/" + id, "", RoleKeys},
	}
	holders := append([]string{"all"}, "revoke", "keys", "read", "audit")
	for _, ep := range endpoints {
		for _, holder := range holders {
			t.Run(ep.method+" "+ep.target+" by "+holder, func(t *testing.T) {
				allowed := holder == "all" || holder == string(ep.role)
				if !allowed {
					logs.Reset()
				}
				ct := ""
				if ep.body != "" {
					ct = "application/json"
				}
				// The refusals run before the allowed call (holders
				// order "all" first, so a refused rotate/delete
				// happens on a live key either way: nothing changes).
				w := serve(t, mux, newRequest(ep.method, ep.target, roleToken(holder), ct, ep.body))
				if !allowed {
					var body forbiddenResponse
					if w.Code != http.StatusForbidden || json.Unmarshal(w.Body.Bytes(), &body) != nil {
						t.Fatalf("got %d %s; want 403", w.Code, w.Body)
					}
					if body.Error != "forbidden" || body.MissingRole != ep.role || !strings.Contains(body.Description, string(ep.role)) {
						t.Errorf("body: got %+v; want error forbidden naming role %s", body, ep.role)
					}
					line := logs.String()
					if !strings.Contains(line, "role missing") || !strings.Contains(line, `"admin":"only-`+holder+`"`) || !strings.Contains(line, `"role":"`+string(ep.role)+`"`) {
						t.Errorf("log: got %q; want the refusal with name and role", line)
					}
					if strings.Contains(line, roleToken(holder)) || strings.Contains(line, "alice") {
						t.Errorf("log %q holds the token or a revoked value", line)
					}
					return
				}
				if w.Code == http.StatusForbidden || w.Code == http.StatusUnauthorized || w.Code >= 500 {
					t.Errorf("got %d %s; want the endpoint's answer", w.Code, w.Body)
				}
			})
		}
	}
	// Nothing a refused token asked for happened: the only revocations are
	// the "all" token's and the revoke token's.
	entries, _, err := store.List(t.Context(), cache.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Kind == cache.KindSub && e.Initiator != "admin:all" && e.Initiator != "admin:only-revoke" {
			t.Errorf("entry %+v made by a token without the role revoke", e)
		}
	}
}

func TestRolesUnauthenticatedIs401(t *testing.T) {
	f := newFixture(t, nil)
	for _, h := range []http.Handler{f.admin, f.admin.StatusHandler(f.store, nil), f.admin.AuditHandler(openTestAudit(t, audit.Config{}))} {
		w := serve(t, h, newRequest(http.MethodGet, "/admin/x", "", "", ""))
		if w.Code != http.StatusUnauthorized {
			t.Errorf("no token: got %d; want 401 before any role check", w.Code)
		}
	}
}

func TestRoleSet(t *testing.T) {
	if s := RolesOf(nil); s != AllRoles || s.String() != "revoke,keys,read,audit" {
		t.Errorf("no roles: got %v; want every role", s)
	}
	s := RolesOf([]Role{RoleAudit, RoleRead})
	if !s.Has(RoleRead) || !s.Has(RoleAudit) || s.Has(RoleRevoke) || s.Has(RoleKeys) || s.Has("admin") {
		t.Errorf("read+audit: got %v", s)
	}
	if s.String() != "read,audit" {
		t.Errorf("String: got %q; want read,audit", s)
	}
	if RolesOf([]Role{"bogus"}).Has("bogus") {
		t.Error("an unknown role is held")
	}
}

func TestAdminRolesValidate(t *testing.T) {
	tok := func(name string, roles ...Role) AdminToken {
		return AdminToken{Name: name, Token: introspect.Secret(roleToken(name)), Roles: roles}
	}
	tests := []struct {
		name    string
		cfg     AdminConfig
		want    []string
		warning string
	}{
		{"no roles: every role, with a warning", AdminConfig{Tokens: []AdminToken{tok("a")}}, nil, `tokens[0].roles: not set, so "a" has every role`},
		{"roles", AdminConfig{Tokens: []AdminToken{tok("a", RoleRead, RoleAudit)}}, nil, ""},
		{"empty list", AdminConfig{Tokens: []AdminToken{{Name: "a", Token: introspect.Secret(roleToken("a")), Roles: []Role{}}}}, []string{"tokens[0].roles: empty"}, ""},
		{"unknown", AdminConfig{Tokens: []AdminToken{tok("a", RoleRead, "admin")}}, []string{`tokens[0].roles[1]: "admin" is not one of revoke, keys, read, audit`}, ""},
		{"twice", AdminConfig{Tokens: []AdminToken{tok("a", RoleRead, RoleRead)}}, []string{"tokens[0].roles[1]: read listed twice"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("Validate: %v; want nil", err)
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: got %v; want %q", err, w)
				}
			}
			warnings := strings.Join(tt.cfg.Warnings(), "\n")
			if tt.warning == "" && warnings != "" || !strings.Contains(warnings, tt.warning) {
				t.Errorf("Warnings: got %q; want %q", warnings, tt.warning)
			}
		})
	}
}
