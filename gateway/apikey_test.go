package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
)

// keyFixture is a gateway with an api_keys route (/api, scope read) and a
// bearer route without keys (/jwt), over a real store and key verifier on
// a fake clock. The upstream records the headers it saw.
type keyFixture struct {
	srv   *httptest.Server
	store *cache.Store
	clk   *clocktest.Clock
	seen  atomic.Pointer[http.Header]
}

func (f *keyFixture) clock() time.Time { return f.clk.Now() }

func (f *keyFixture) advance(d time.Duration) { f.clk.Advance(d) }

func newKeyFixture(t *testing.T) *keyFixture {
	t.Helper()
	f := &keyFixture{clk: clocktest.New(testNow)}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		f.seen.Store(&h)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	var err error
	f.store, err = cache.Open(cache.Config{Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.store.Close() })
	keys, err := introspect.NewAPIKeys(introspect.KeysConfig{Store: f.store, Issuers: []string{"https://idp.example"}, Clock: f.clk})
	if err != nil {
		t.Fatal(err)
	}
	idp := newTestIssuer(t)
	gw, err := New(Config{
		Routes: []Route{
			{PathPrefix: "/api", Upstream: up.URL, RequiredScopes: []string{"read"}, APIKeys: true,
				Headers: map[string]string{"X-User": "sub", "X-Client": "client_id", "X-Scope": "scope"}},
			{PathPrefix: "/reports", Upstream: up.URL, APIKeys: true},
			{PathPrefix: "/jwt", Upstream: up.URL},
		},
		Verifier: idp.v,
		APIKeys:  keys,
		Metrics:  prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(gw)
	t.Cleanup(f.srv.Close)
	return f
}

// newKey stores a key of owner created now, alive for life.
func (f *keyFixture) newKey(t *testing.T, owner string, life time.Duration, scopes []string, routes ...string) (key, id string) {
	t.Helper()
	key, id, hash, err := introspect.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock()
	if err := f.store.PutKey(context.Background(), cache.KeyRecord{
		ID: id, Owner: owner, Scopes: scopes, Routes: routes, Hash: hash, CreatedAt: now, ExpiresAt: now.Add(life),
	}); err != nil {
		t.Fatal(err)
	}
	return key, id
}

func (f *keyFixture) revoke(t *testing.T, id string, effective time.Time) {
	t.Helper()
	now := f.clock()
	if _, err := f.store.Revoke(context.Background(), cache.Entry{
		Kind: cache.KindKey, Value: id, RevokedAt: now, EffectiveAt: effective, ExpiresAt: now.Add(30 * 24 * time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
}

// get sends GET path with header name: value and returns the status.
func (f *keyFixture) get(t *testing.T, path string, hdr ...string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	f.seen.Store(nil)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestAPIKeyRoute(t *testing.T) {
	f := newKeyFixture(t)
	key, id := f.newKey(t, "ci-bot", time.Hour, []string{"read", "deploy"})

	for _, hdr := range [][]string{{"Authorization", "Bearer " + key}, {"X-API-Key", key}, {"x-api-key", key}} {
		if got := f.get(t, "/api/items", hdr[0], hdr[1]); got != http.StatusOK {
			t.Fatalf("%s: status %d; want 200", hdr[0], got)
		}
		seen := *f.seen.Load()
		if seen.Get("X-User") != "ci-bot" || seen.Get("X-Client") != "ci-bot" || seen.Get("X-Scope") != "read deploy" {
			t.Errorf("upstream identity: X-User %q, X-Client %q, X-Scope %q; want ci-bot, ci-bot, read deploy", seen.Get("X-User"), seen.Get("X-Client"), seen.Get("X-Scope"))
		}
		for name, vals := range seen {
			for _, v := range vals {
				if strings.Contains(v, key) || strings.Contains(v, key[21:64]) {
					t.Errorf("upstream saw the key in %s", name)
				}
			}
		}
	}
	// A key where keys are not accepted is refused, never verified as a JWT.
	if got := f.get(t, "/jwt/x", "Authorization", "Bearer "+key); got != http.StatusUnauthorized {
		t.Errorf("key on a route without api_keys: %d; want 401", got)
	}
	if got := f.get(t, "/api/items", "X-API-Key", key, "X-API-Key", key); got != http.StatusBadRequest {
		t.Errorf("key header twice: %d; want 400", got)
	}
	// Revoked: 401 at once.
	f.revoke(t, id, time.Time{})
	if got := f.get(t, "/api/items", "X-API-Key", key); got != http.StatusUnauthorized {
		t.Errorf("revoked key: %d; want 401", got)
	}
}

func TestAPIKeyRotateExpireScope(t *testing.T) {
	f := newKeyFixture(t)
	old, oldID := f.newKey(t, "svc", 24*time.Hour, []string{"read"})
	// Rotation with a one-hour grace: a new key, the old one scheduled.
	fresh, _ := f.newKey(t, "svc", 24*time.Hour, []string{"read"})
	f.revoke(t, oldID, f.clock().Add(time.Hour))
	for _, k := range []string{old, fresh} {
		if got := f.get(t, "/api/x", "X-API-Key", k); got != http.StatusOK {
			t.Errorf("within the grace: %d; want 200", got)
		}
	}
	f.advance(time.Hour)
	if got := f.get(t, "/api/x", "X-API-Key", old); got != http.StatusUnauthorized {
		t.Errorf("old key after the grace: %d; want 401", got)
	}
	if got := f.get(t, "/api/x", "X-API-Key", fresh); got != http.StatusOK {
		t.Errorf("new key after the grace: %d; want 200", got)
	}
	// Expired.
	short, _ := f.newKey(t, "svc", time.Minute, []string{"read"})
	f.advance(time.Minute)
	if got := f.get(t, "/api/x", "Authorization", "Bearer "+short); got != http.StatusUnauthorized {
		t.Errorf("expired key: %d; want 401", got)
	}
	// Scopes lacking the route's required_scopes, or a route the key is
	// not for: 403.
	weak, _ := f.newKey(t, "svc", time.Hour, []string{"write"})
	if got := f.get(t, "/api/x", "X-API-Key", weak); got != http.StatusForbidden {
		t.Errorf("key without scope read: %d; want 403", got)
	}
	narrow, _ := f.newKey(t, "svc", time.Hour, []string{"read"}, "/reports")
	if got := f.get(t, "/api/x", "X-API-Key", narrow); got != http.StatusForbidden {
		t.Errorf("key for /reports on /api: %d; want 403", got)
	}
	if got := f.get(t, "/reports/q", "X-API-Key", narrow); got != http.StatusOK {
		t.Errorf("key for /reports on /reports: %d; want 200", got)
	}
	// A client revocation of the owner kills its keys.
	if _, err := f.store.Revoke(context.Background(), cache.Entry{Issuer: "https://idp.example", Kind: cache.KindClient, Value: "svc", RevokedAt: f.clock(), ExpiresAt: f.clock().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, "/api/x", "X-API-Key", fresh); got != http.StatusUnauthorized {
		t.Errorf("key after a client revocation of its owner: %d; want 401", got)
	}
}
