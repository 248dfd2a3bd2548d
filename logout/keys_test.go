package logout

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
)

// keyFixture is a KeyAdmin on a memory store with an audited store and a
// settable clock.
type keyFixture struct {
	admin     *KeyAdmin
	store     *cache.Store
	clock     *clocktest.Clock
	auditPath string
	reg       *prometheus.Registry
}

func newKeyFixture(t *testing.T, keys KeysConfig) *keyFixture {
	t.Helper()
	clk := clocktest.NewRealTimers(t0)
	store, err := cache.Open(cache.Config{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	au, err := audit.Open(audit.Config{Path: path, Replica: "test", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = au.Close() })
	reg := prometheus.NewRegistry()
	a, err := NewKeyAdmin(KeyAdminConfig{
		Config: Config{
			Admin:     AdminConfig{Tokens: []AdminToken{{Name: "ops", Token: introspect.Secret(tokOps)}}},
			Lifetimes: map[string]time.Duration{issA: time.Hour},
			Store:     &audit.Store{Store: store, Log: au, Clock: clk},
			Replays:   store,
			Clock:     clk,
			Metrics:   reg,
		},
		Keys:    keys,
		Records: store,
		Audit:   au,
		Routes:  []string{"api", "reports"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &keyFixture{admin: a, store: store, clock: clk, auditPath: path, reg: reg}
}

func (f *keyFixture) do(t *testing.T, method, target, body string) (int, string) {
	t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	w := serve(t, f.admin, newRequest(method, target, tokOps, ct, body))
	return w.Code, w.Body.String()
}

func (f *keyFixture) create(t *testing.T, body string) CreatedKey {
	t.Helper()
	code, out := f.do(t, http.MethodPost, "/admin/keys", body)
	if code != http.StatusCreated {
		t.Fatalf("create %s: %d %s", body, code, out)
	}
	var c CreatedKey
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// use verifies key as the gateway would, at the fixture's clock.
func (f *keyFixture) use(t *testing.T, key string) error {
	t.Helper()
	k, err := introspect.NewAPIKeys(introspect.KeysConfig{Store: f.store, Issuers: []string{issA}, Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Verify(key)
	return err
}

func TestKeyAdminLifecycle(t *testing.T) {
	f := newKeyFixture(t, KeysConfig{})
	c := f.create(t, `{"owner":"ci-bot","scopes":["read","deploy"],"description":"CI","routes":["api"]}`)
	if !strings.HasPrefix(c.Key, "oag_"+c.Record.ID+"_") || c.Record.Owner != "ci-bot" || c.Record.State != "active" ||
		c.Record.CreatedBy != "admin:ops" || !c.Record.ExpiresAt.Equal(t0.Add(DefaultKeyLifetime)) {
		t.Fatalf("created %+v", c)
	}
	if err := f.use(t, c.Key); err != nil {
		t.Fatalf("new key refused: %v", err)
	}

	// The list never shows the key, its secret or its hash.
	code, list := f.do(t, http.MethodGet, "/admin/keys?owner=ci-bot", "")
	rec, _ := f.store.Key(c.Record.ID)
	secret := c.Key[len("oag_")+17 : len(c.Key)-6]
	for _, leak := range []string{c.Key, secret, fmt.Sprintf("%x", rec.Hash), string(rec.Hash[:])} {
		if strings.Contains(list, leak) {
			t.Errorf("GET /admin/keys shows a secret or hash: %s", list)
		}
	}
	var kl KeyList
	if err := json.Unmarshal([]byte(list), &kl); code != http.StatusOK || err != nil || len(kl.Keys) != 1 || kl.Keys[0].ID != c.Record.ID {
		t.Fatalf("list: %d %s", code, list)
	}
	if _, other := f.do(t, http.MethodGet, "/admin/keys?owner=nobody", ""); other != `{"keys":[]}`+"\n" {
		t.Errorf("list of another owner: %s", other)
	}

	// Rotate with a grace: both work until it ends, then only the new one.
	code, out := f.do(t, http.MethodPost, "/admin/keys/"+c.Record.ID+"/rotate", `{"grace":"1h"}`)
	if code != http.StatusCreated {
		t.Fatalf("rotate: %d %s", code, out)
	}
	var rot CreatedKey
	if err := json.Unmarshal([]byte(out), &rot); err != nil {
		t.Fatal(err)
	}
	if rot.Record.Owner != "ci-bot" || strings.Join(rot.Record.Scopes, " ") != "read deploy" || rot.Record.ID == c.Record.ID {
		t.Errorf("rotated record %+v", rot.Record)
	}
	f.clock.Advance(59 * time.Minute)
	if err := f.use(t, c.Key); err != nil {
		t.Errorf("old key refused within the grace: %v", err)
	}
	if err := f.use(t, rot.Key); err != nil {
		t.Errorf("new key refused: %v", err)
	}
	_, list = f.do(t, http.MethodGet, "/admin/keys?owner=ci-bot", "")
	if !strings.Contains(list, `"state":"rotating"`) {
		t.Errorf("old key not shown rotating: %s", list)
	}
	f.clock.Advance(time.Minute)
	if err := f.use(t, c.Key); err == nil {
		t.Error("old key accepted after the grace")
	}
	if err := f.use(t, rot.Key); err != nil {
		t.Errorf("new key refused after the grace: %v", err)
	}

	// Delete: dead at once.
	if code, out := f.do(t, http.MethodDelete, "/admin/keys/"+rot.Record.ID, ""); code != http.StatusOK || !strings.Contains(out, `"state":"revoked"`) {
		t.Fatalf("delete: %d %s", code, out)
	}
	if err := f.use(t, rot.Key); err == nil {
		t.Error("deleted key accepted")
	}
	if code, out := f.do(t, http.MethodPost, "/admin/keys/"+rot.Record.ID+"/rotate", ""); code != http.StatusConflict {
		t.Errorf("rotate of a revoked key: %d %s; want 409", code, out)
	}

	// The audit log has every step, and never the key, its secret or hash.
	log, err := os.ReadFile(f.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{`"event":"key_created"`, `"event":"key_rotated"`, `"event":"revocation"`, `"initiator":"admin:ops"`} {
		if !strings.Contains(string(log), ev) {
			t.Errorf("audit log lacks %s:\n%s", ev, log)
		}
	}
	for _, k := range []string{c.Key, rot.Key} {
		if strings.Contains(string(log), k[len("oag_")+17:len(k)-6]) {
			t.Error("audit log holds a key's secret")
		}
	}
	if strings.Contains(string(log), fmt.Sprintf("%x", rec.Hash)) {
		t.Error("audit log holds a key's hash")
	}
	if got := testutil.ToFloat64(mustGauge(t, f.reg, "revoked")); got != 2 {
		t.Errorf("oidcgate_api_keys{state=revoked} = %v; want 2", got)
	}
}

// mustGauge finds the oidcgate_api_keys sample of state.
func mustGauge(t *testing.T, reg *prometheus.Registry, state string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "oidcgate_api_keys" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == state {
				g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
				g.Set(m.GetGauge().GetValue())
				return g
			}
		}
	}
	t.Fatalf("no oidcgate_api_keys{state=%q}", state)
	return nil
}

func TestKeyAdminBadRequests(t *testing.T) {
	f := newKeyFixture(t, KeysConfig{MaxLifetime: 48 * time.Hour, MaxPerOwner: 2})
	for _, tt := range []struct {
		body, want string
	}{
		{`{"scopes":["a"]}`, "owner: "},
		{`{"owner":"a b"}`, "owner: "},
		{`{"owner":"x","scopes":"read"}`, "scopes: "},
		{`{"owner":"x","scopes":["a b"]}`, "scopes: "},
		{`{"owner":"x","expires_in":"soon"}`, "expires_in: "},
		{`{"owner":"x","expires_in":"-1h"}`, "expires_in: "},
		{`{"owner":"x","expires_in":"49h"}`, "expires_in: longer than api_keys.max_lifetime"},
		{`{"owner":"x","routes":["nope"]}`, "routes: "},
		{`{"owner":"x","description":"` + strings.Repeat("d", 201) + `"}`, "description: "},
		{`{"owner":"x","bogus":1}`, `unknown field \"bogus\"`},
		{`{"owner":"x"} {}`, "body: data after the JSON object"},
		{`[]`, "body: "},
	} {
		code, out := f.do(t, http.MethodPost, "/admin/keys", tt.body)
		if code != http.StatusBadRequest || !strings.Contains(out, tt.want) {
			t.Errorf("POST %s: %d %s; want 400 naming %q", tt.body, code, out, tt.want)
		}
	}
	if _, total := f.store.Keys(""); total != 0 {
		t.Fatalf("%d keys stored from bad requests", total)
	}
	for _, p := range []string{"/admin/keys/nope", "/admin/keys/nope/rotate"} {
		method := http.MethodDelete
		if strings.HasSuffix(p, "rotate") {
			method = http.MethodPost
		}
		if code, out := f.do(t, method, p, ""); code != http.StatusNotFound {
			t.Errorf("%s %s: %d %s; want 404", method, p, code, out)
		}
	}
	c := f.create(t, `{"owner":"x"}`)
	if code, out := f.do(t, http.MethodPost, "/admin/keys/"+c.Record.ID+"/rotate", `{"grace":"forever"}`); code != http.StatusBadRequest || !strings.Contains(out, "grace: ") {
		t.Errorf("bad grace: %d %s", code, out)
	}
	if code, out := f.do(t, http.MethodGet, "/admin/keys?who=x", ""); code != http.StatusBadRequest || !strings.Contains(out, `\"who\"`) {
		t.Errorf("bad list parameter: %d %s", code, out)
	}
	// The cap per owner.
	f.create(t, `{"owner":"x"}`)
	if code, out := f.do(t, http.MethodPost, "/admin/keys", `{"owner":"x"}`); code != http.StatusConflict || !strings.Contains(out, "max_per_owner") {
		t.Errorf("third key of a capped owner: %d %s; want 409 naming max_per_owner", code, out)
	}
	f.create(t, `{"owner":"y"}`)
}

func TestKeyAdminClientRevocationAndSweep(t *testing.T) {
	f := newKeyFixture(t, KeysConfig{MaxIdle: 2 * time.Hour})
	a := f.create(t, `{"owner":"ci-bot"}`)
	b := f.create(t, `{"owner":"other","expires_in":"1h"}`)
	// A client revocation of the owner kills its keys, not others'.
	f.clock.Advance(time.Second)
	if _, err := f.admin.store.Revoke(t.Context(), cache.Entry{Issuer: issA, Kind: cache.KindClient, Value: "ci-bot", RevokedAt: f.clock.Now(), ExpiresAt: f.clock.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := f.use(t, a.Key); err == nil {
		t.Error("key accepted after a client revocation of its owner")
	}
	if err := f.use(t, b.Key); err != nil {
		t.Errorf("another owner's key refused: %v", err)
	}
	// b expires after 1h; an idle key is disabled after 2h, audited once.
	c := f.create(t, `{"owner":"idler"}`)
	f.clock.Advance(2 * time.Hour)
	f.admin.Sweep(t.Context())
	f.admin.Sweep(t.Context())
	if e, ok := f.store.Get("", cache.KindKey, c.Record.ID); !ok || e.Reason != "max_idle" {
		t.Errorf("idle key entry = %+v, %t; want reason max_idle", e, ok)
	}
	log, _ := os.ReadFile(f.auditPath)
	if n := strings.Count(string(log), `"event":"key_expired"`); n != 1 {
		t.Errorf("key_expired records: %d; want 1\n%s", n, log)
	}
	if n := strings.Count(string(log), `"reason":"max_idle"`); n != 1 {
		t.Errorf("max_idle revocation records: %d; want 1", n)
	}
}

func TestAdminScheduledClientRevocation(t *testing.T) {
	f := newFixture(t, nil)
	at := t0.Add(time.Hour).Format(time.RFC3339)
	w := f.post(t, `{"client_id":"ci-bot","effective_at":"`+at+`"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if e := decodeEntry(t, w); e.EffectiveAt.Format(time.RFC3339) != at || e.Kind != cache.KindClient {
		t.Errorf("entry %+v; want client scheduled at %s", e, at)
	}
	for body, want := range map[string]string{
		`{"sub":"u","effective_at":"` + at + `"}`: "effective_at: only with client_id or key",
		`{"client_id":"c","effective_at":"soon"}`: "effective_at: not an RFC 3339 time",
		`{"key":"k","issuer":"` + issA + `"}`:     "issuer: not allowed with key",
	} {
		w := f.post(t, body)
		if e := decodeError(t, w); w.Code != http.StatusBadRequest || !strings.HasPrefix(e.Description, want) {
			t.Errorf("%s: %d %q; want 400 %q", body, w.Code, e.Description, want)
		}
	}
	if w := f.post(t, `{"key":"SomeKeyId"}`); w.Code != http.StatusCreated {
		t.Errorf("key revocation: %d %s", w.Code, w.Body)
	}
}
