package logout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

func TestStatusOf(t *testing.T) {
	e := cache.Entry{Issuer: issA, Kind: cache.KindSub, Value: "alice", RevokedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	applied := func(id string, up bool) cache.ReplicaApply {
		return cache.ReplicaApply{ID: id, Up: up, LastSeen: t0, AppliedAt: t0.Add(time.Millisecond)}
	}
	notApplied := func(id string, up bool) cache.ReplicaApply {
		return cache.ReplicaApply{ID: id, Up: up, LastSeen: t0}
	}
	tests := []struct {
		name        string
		st          cache.ApplyStatus
		wantVerdict Verdict
		wantPending []string
		wantDown    []string
	}{
		{"not revoked", cache.ApplyStatus{Replicas: []cache.ReplicaApply{notApplied("a", true), notApplied("b", false)}}, VerdictNotRevoked, nil, nil},
		{"applied everywhere", cache.ApplyStatus{Found: true, Entry: e, Replicas: []cache.ReplicaApply{applied("a", true), applied("b", true)}}, VerdictAppliedEverywhere, nil, nil},
		{"applied on a replica now down", cache.ApplyStatus{Found: true, Entry: e, Replicas: []cache.ReplicaApply{applied("a", true), applied("b", false)}}, VerdictAppliedEverywhere, nil, nil},
		{"pending on an up replica", cache.ApplyStatus{Found: true, Entry: e, Replicas: []cache.ReplicaApply{applied("a", true), notApplied("b", true)}}, VerdictPending, []string{"b"}, nil},
		{"not applied on a down replica", cache.ApplyStatus{Found: true, Entry: e, Replicas: []cache.ReplicaApply{applied("a", true), notApplied("c", false)}}, VerdictDown, nil, []string{"c"}},
		{"down wins over pending", cache.ApplyStatus{Found: true, Entry: e, Replicas: []cache.ReplicaApply{notApplied("b", true), notApplied("c", false)}}, VerdictDown, []string{"b"}, []string{"c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := StatusOf(tt.st)
			if got.Verdict != tt.wantVerdict {
				t.Errorf("verdict: got %q; want %q", got.Verdict, tt.wantVerdict)
			}
			if !slices.Equal(got.Pending, tt.wantPending) && len(got.Pending)+len(tt.wantPending) > 0 {
				t.Errorf("pending: got %v; want %v", got.Pending, tt.wantPending)
			}
			if !slices.Equal(got.Down, tt.wantDown) && len(got.Down)+len(tt.wantDown) > 0 {
				t.Errorf("down: got %v; want %v", got.Down, tt.wantDown)
			}
			if got.Pending == nil || got.Down == nil || got.Replicas == nil {
				t.Errorf("pending, down, replicas: got nil; want empty lists")
			}
			if (got.Entry != nil) != tt.st.Found {
				t.Errorf("entry: got %v; want present %v", got.Entry, tt.st.Found)
			}
			if len(got.Replicas) != len(tt.st.Replicas) {
				t.Fatalf("replicas: got %d; want %d", len(got.Replicas), len(tt.st.Replicas))
			}
			for i, r := range got.Replicas {
				if r.Applied != tt.st.Replicas[i].Applied() || (r.AppliedAt != nil) != r.Applied {
					t.Errorf("replica %d: got applied %v at %v; want %v", i, r.Applied, r.AppliedAt, tt.st.Replicas[i].Applied())
				}
			}
		})
	}
}

// failingApplier is a store that cannot answer.
type failingApplier struct{}

var errStoreDown = errors.New("store down")

func (failingApplier) Applied(context.Context, string, cache.Kind, string) (cache.ApplyStatus, error) {
	return cache.ApplyStatus{}, errStoreDown
}

func TestStatusHandler(t *testing.T) {
	f := newFixture(t, nil)
	h := f.admin.StatusHandler(f.store, nil)
	if w := f.post(t, `{"sub":"alice"}`); w.Code != http.StatusCreated {
		t.Fatalf("revoke: got %d; want 201", w.Code)
	}
	tests := []struct {
		name        string
		method      string
		query       string
		token       string
		wantStatus  int
		wantError   string
		wantVerdict Verdict
	}{
		{"revoked", http.MethodGet, "kind=sub&value=alice", tokOps, http.StatusOK, "", VerdictAppliedEverywhere},
		{"revoked, issuer given", http.MethodGet, "kind=sub&value=alice&issuer=" + issA, tokCI, http.StatusOK, "", VerdictAppliedEverywhere},
		{"not revoked", http.MethodGet, "kind=sub&value=bob", tokOps, http.StatusOK, "", VerdictNotRevoked},
		{"session", http.MethodGet, "kind=session&value=s1", tokOps, http.StatusOK, "", VerdictNotRevoked},
		{"no token", http.MethodGet, "kind=sub&value=alice", "", http.StatusUnauthorized, "unauthorized", ""},
		{"wrong token", http.MethodGet, "kind=sub&value=alice", "x" + tokOps[1:], http.StatusUnauthorized, "unauthorized", ""},
		{"POST", http.MethodPost, "kind=sub&value=alice", tokOps, http.StatusMethodNotAllowed, "method_not_allowed", ""},
		{"no kind", http.MethodGet, "value=alice", tokOps, http.StatusBadRequest, "invalid_request", ""},
		{"unknown kind", http.MethodGet, "kind=email&value=alice", tokOps, http.StatusBadRequest, "invalid_request", ""},
		{"no value", http.MethodGet, "kind=sub", tokOps, http.StatusBadRequest, "invalid_request", ""},
		{"unknown parameter", http.MethodGet, "kind=sub&value=alice&x=1", tokOps, http.StatusBadRequest, "invalid_request", ""},
		{"twice", http.MethodGet, "kind=sub&value=alice&value=bob", tokOps, http.StatusBadRequest, "invalid_request", ""},
		{"unknown issuer", http.MethodGet, "kind=sub&value=alice&issuer=" + issB, tokOps, http.StatusBadRequest, "invalid_request", ""},
		{"issuer with session", http.MethodGet, "kind=session&value=s1&issuer=" + issA, tokOps, http.StatusBadRequest, "invalid_request", ""},
		{"bad query", http.MethodGet, "kind=%zz", tokOps, http.StatusBadRequest, "invalid_request", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(t, h, newRequest(tt.method, StatusPath+"?"+tt.query, tt.token, "", ""))
			if w.Code != tt.wantStatus {
				t.Fatalf("status: got %d; want %d (%s)", w.Code, tt.wantStatus, w.Body)
			}
			if tt.wantError != "" {
				if got := decodeError(t, w).Error; got != tt.wantError {
					t.Errorf("error: got %q; want %q", got, tt.wantError)
				}
				if tt.wantStatus == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
				return
			}
			var got RevocationStatus
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Verdict != tt.wantVerdict {
				t.Errorf("verdict: got %q; want %q", got.Verdict, tt.wantVerdict)
			}
			if len(got.Replicas) != 1 || got.Replicas[0].ID != f.store.ReplicaID() || !got.Replicas[0].Up {
				t.Errorf("replicas: got %+v; want this replica %s, up", got.Replicas, f.store.ReplicaID())
			}
			if tt.wantVerdict == VerdictAppliedEverywhere && (got.Entry == nil || got.Entry.Value != "alice" || got.Replicas[0].AppliedAt == nil) {
				t.Errorf("entry and applied_at: got %+v, %+v; want alice's entry, applied", got.Entry, got.Replicas[0])
			}
		})
	}

	t.Run("store cannot answer", func(t *testing.T) {
		w := serve(t, f.admin.StatusHandler(failingApplier{}, nil), newRequest(http.MethodGet, StatusPath+"?kind=sub&value=alice", tokOps, "", ""))
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("status: got %d; want 503", w.Code)
		}
	})
}

func TestStatusRemote(t *testing.T) {
	f := newFixture(t, nil)
	mux := http.NewServeMux()
	mux.Handle(StatusPath, f.admin.StatusHandler(f.store, nil))
	mux.Handle("/admin/revocations", f.admin)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	if _, err := RevokeRemote(ctx, srv.Client(), srv.URL, tokOps, RevokeRequest{JTI: "t-1"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		token       string
		q           StatusQuery
		wantVerdict Verdict
		wantStatus  int // of a RemoteError; 0 for none
	}{
		{"applied", tokOps, StatusQuery{Kind: cache.KindJTI, Value: "t-1"}, VerdictAppliedEverywhere, 0},
		{"value needing escapes", tokOps, StatusQuery{Kind: cache.KindJTI, Value: "a&b=c d"}, VerdictNotRevoked, 0},
		{"bad token", "nope", StatusQuery{Kind: cache.KindJTI, Value: "t-1"}, "", http.StatusUnauthorized},
		{"bad kind", tokOps, StatusQuery{Kind: "email", Value: "t-1"}, "", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := StatusRemote(ctx, srv.Client(), srv.URL, tt.token, tt.q)
			var re *RemoteError
			if tt.wantStatus != 0 {
				if !errors.As(err, &re) || re.StatusCode != tt.wantStatus {
					t.Fatalf("err: got %v; want a RemoteError %d", err, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Verdict != tt.wantVerdict {
				t.Errorf("verdict: got %q; want %q", st.Verdict, tt.wantVerdict)
			}
		})
	}

	t.Run("control characters stripped", func(t *testing.T) {
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, RevocationStatus{Verdict: VerdictPending, Replicas: []ReplicaStatus{{ID: "a\x1b[2J", Name: "h\x07", Addr: "x\r\n"}}, Pending: []string{"a\x1b[2J"}, Down: []string{}})
		}))
		defer evil.Close()
		st, err := StatusRemote(ctx, evil.Client(), evil.URL, tokOps, StatusQuery{Kind: cache.KindJTI, Value: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if r := st.Replicas[0]; r.ID != "a[2J" || r.Name != "h" || r.Addr != "x" || st.Pending[0] != "a[2J" {
			t.Errorf("got %+v, pending %q; want control characters removed", r, st.Pending)
		}
	})
}

// TestStatusAppLogoutBuried: a failed app logout call stays in the status
// however many audit records come after it (issue 20, item 6): the
// records are filtered before anything is counted.
func TestStatusAppLogoutBuried(t *testing.T) {
	f := newFixture(t, nil)
	if w := f.post(t, `{"sub":"alice"}`); w.Code != http.StatusCreated {
		t.Fatalf("revoke: got %d; want 201", w.Code)
	}
	au := openTestAudit(t, audit.Config{Clock: clocktest.New(t0.Add(time.Second))})
	alice := audit.Target{Issuer: issA, Kind: cache.KindSub, Value: "alice"}
	ctx := t.Context()
	failed := audit.Record{Event: audit.EventAppLogout, Targets: []audit.Target{alice},
		AppLogout: &audit.AppLogout{Route: "/app", Session: "abc", Outcome: "failed", Status: 502, Attempts: 5}}
	if err := au.Append(ctx, failed); err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		rec := audit.Record{Event: audit.EventAppLogout, Targets: []audit.Target{{Issuer: issA, Kind: cache.KindSub, Value: fmt.Sprintf("user-%d", i)}},
			AppLogout: &audit.AppLogout{Route: "/app", Session: "s", Outcome: "ok", Status: 200, Attempts: 1}}
		if i%2 == 0 {
			rec = audit.Record{Event: audit.EventRevocation, Trigger: audit.TriggerAdmin, Targets: []audit.Target{alice}}
		}
		if err := au.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	w := serve(t, f.admin.StatusHandler(f.store, au), newRequest(http.MethodGet, StatusPath+"?kind=sub&value=alice", tokOps, "", ""))
	if w.Code != http.StatusOK {
		t.Fatalf("got %d %s; want 200", w.Code, w.Body)
	}
	var st RevocationStatus
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.AppLogouts) != 1 || st.AppLogouts[0].Outcome != "failed" {
		t.Fatalf("app logouts: got %+v; want the one failed call", st.AppLogouts)
	}

	// An audit log that cannot be read gives no verdict: here a
	// directory stands where the file was.
	if err := os.Rename(au.Path(), au.Path()+".aside"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(au.Path(), 0o700); err != nil {
		t.Fatal(err)
	}
	if w := serve(t, f.admin.StatusHandler(f.store, au), newRequest(http.MethodGet, StatusPath+"?kind=sub&value=alice", tokOps, "", "")); w.Code != http.StatusServiceUnavailable {
		t.Errorf("unreadable audit log: got %d; want 503", w.Code)
	}
}

// TestStatusAppLogoutNotHonoured: an app logout whose honour check found
// the app's session alive is a not_honoured target naming the route, and
// the revocation is not complete.
func TestStatusAppLogoutNotHonoured(t *testing.T) {
	f := newFixture(t, nil)
	if w := f.post(t, `{"sub":"alice"}`); w.Code != http.StatusCreated {
		t.Fatalf("revoke: got %d; want 201", w.Code)
	}
	au := openTestAudit(t, audit.Config{Clock: clocktest.New(t0.Add(time.Second))})
	rec := audit.Record{Event: audit.EventAppLogout, Targets: []audit.Target{{Issuer: issA, Kind: cache.KindSub, Value: "alice"}},
		AppLogout: &audit.AppLogout{Route: "/app", Session: "abc", Outcome: "not_honoured", Status: 200, Attempts: 1, VerifyStatus: 200}}
	if err := au.Append(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	w := serve(t, f.admin.StatusHandler(f.store, au), newRequest(http.MethodGet, StatusPath+"?kind=sub&value=alice", tokOps, "", ""))
	var st RevocationStatus
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, ts := range st.Targets {
		if ts.Kind == TargetAppLogout {
			found = ts.State == cache.TargetNotHonoured && ts.Name == "/app session abc" && strings.Contains(ts.LastError, "still answered 200")
		}
	}
	if !found || st.Complete {
		t.Errorf("targets: got %+v, complete %v; want /app session abc not_honoured, not complete", st.Targets, st.Complete)
	}
}
