package logout

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
)

const (
	issA = "https://idp-a.example"
	issB = "https://idp-b.example"
	// tokOps and tokCI are the fixture's admin tokens, named ops and ci.
	tokOps = "ops-0123456789abcdef0123456789abcdef"
	tokCI  = "ci-fedcba9876543210fedcba9876543210"
	skew   = 30 * time.Second
)

// t0 is the fixture clock's fixed time.
var t0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

type fixture struct {
	admin *Admin
	store *cache.Store
	reg   *prometheus.Registry
	logs  *bytes.Buffer
}

// newFixture builds an Admin on a real memory store with one issuer
// (issA, 1h) unless mod changes the config.
func newFixture(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	f := &fixture{store: openStore(t), reg: prometheus.NewRegistry(), logs: new(bytes.Buffer)}
	cfg := Config{
		Admin: AdminConfig{Tokens: []AdminToken{
			{Name: "ops", Token: introspect.Secret(tokOps)},
			{Name: "ci", Token: introspect.Secret(tokCI)},
		}},
		Lifetimes: map[string]time.Duration{issA: time.Hour},
		ClockSkew: skew,
		Store:     f.store,
		Clock:     clocktest.New(t0),
		Logger:    slog.New(slog.NewJSONHandler(f.logs, nil)),
		Metrics:   f.reg,
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := NewAdmin(cfg)
	if err != nil {
		t.Fatalf("NewAdmin: %v", err)
	}
	f.admin = a
	return f
}

// openStore opens the real revocation store in memory mode; its clock is
// t0, the fixture's.
func openStore(t testing.TB) *cache.Store {
	t.Helper()
	s, err := cache.Open(cache.Config{Clock: clocktest.New(t0)})
	if err != nil {
		t.Fatalf("cache.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	return s
}

// serve sends one request to h and checks what every answer must have:
// a JSON body, Content-Type application/json and Cache-Control no-store.
func serve(t *testing.T, h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type: got %q; want application/json", got)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control: got %q; want no-store", got)
	}
	if !json.Valid(w.Body.Bytes()) {
		t.Errorf("body is not JSON: %q", w.Body.String())
	}
	return w
}

func newRequest(method, target, token, contentType, body string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

// post sends body as an ops admin's JSON revocation.
func (f *fixture) post(t *testing.T, body string) *httptest.ResponseRecorder {
	t.Helper()
	return serve(t, f.admin, newRequest(http.MethodPost, "/admin/revocations", tokOps, "application/json", body))
}

// get lists with the given query as the ops admin.
func (f *fixture) get(t *testing.T, query string) *httptest.ResponseRecorder {
	t.Helper()
	return serve(t, f.admin, newRequest(http.MethodGet, "/admin/revocations?"+query, tokOps, "", ""))
}

// stored returns every entry in the store.
func (f *fixture) stored(t *testing.T) []cache.Entry {
	t.Helper()
	es, _, err := f.store.List(context.Background(), cache.ListOptions{Limit: 1000})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return es
}

// counter returns oidcgate_admin_revocations_total{kind,result}.
func (f *fixture) counter(t *testing.T, kind, result string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "oidcgate_admin_revocations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func decodeError(t *testing.T, w *httptest.ResponseRecorder) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body.String(), err)
	}
	return e
}

func decodeEntry(t *testing.T, w *httptest.ResponseRecorder) cache.Entry {
	t.Helper()
	var e cache.Entry
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("entry body %q: %v", w.Body.String(), err)
	}
	return e
}
