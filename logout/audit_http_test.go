package logout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

func TestAuditHandler(t *testing.T) {
	f := newFixture(t, nil)
	at := func(m int) time.Time { return time.Date(2026, 3, 1, 12, m, 0, 0, time.UTC) }
	clk := clocktest.New(at(0))
	a := openTestAudit(t, audit.Config{Path: filepath.Join(t.TempDir(), "audit.jsonl"), MaxBytes: 600, Clock: clk})
	add := func(m int, initiator, sub string) {
		clk.Set(at(m))
		r := audit.RecordOf(audit.EventRevocation, cache.Entry{Issuer: issA, Kind: cache.KindSub, Value: sub, RevokedAt: at(m), Initiator: initiator})
		if err := a.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	add(1, "admin:ops", "alice")
	add(2, "backchannel:"+issA+" jti_sha256:00", "alice")
	add(3, "admin:ops", "bob")
	add(4, "rfc7009", "carol")
	add(5, "admin:ci", sha256Hex("dave"))
	if rotated, _ := audit.RotatedFiles(a.Path()); len(rotated) == 0 {
		t.Fatal("no rotation happened; the test wants records across files")
	}
	h := f.admin.AuditHandler(a)
	tests := []struct {
		query      string
		wantStatus int
		wantMins   []int // the records' minutes, newest first
	}{
		{"", http.StatusOK, []int{5, 4, 3, 2, 1}},
		{"sub=alice", http.StatusOK, []int{2, 1}},
		{"sub=" + sha256Hex("alice"), http.StatusOK, []int{2, 1}},
		{"sub=dave", http.StatusOK, []int{5}},
		{"trigger=admin", http.StatusOK, []int{5, 3, 1}},
		{"since=2026-03-01T12:02:00Z&until=2026-03-01T12:04:00Z", http.StatusOK, []int{4, 3, 2}},
		{"since=2026-03-01T12:04:00Z", http.StatusOK, []int{5, 4}},
		{"limit=2", http.StatusOK, []int{5, 4}},
		{"sub=nobody", http.StatusOK, []int{}},
		{"limit=0", http.StatusBadRequest, nil},
		{"limit=1001", http.StatusBadRequest, nil},
		{"since=yesterday", http.StatusBadRequest, nil},
		{"trigger=magic", http.StatusBadRequest, nil},
		{"sub=a&sub=b", http.StatusBadRequest, nil},
		{"kind=sub", http.StatusBadRequest, nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			w := serve(t, h, newRequest(http.MethodGet, "/admin/audit?"+tt.query, tokCI, "", ""))
			if w.Code != tt.wantStatus {
				t.Fatalf("status: got %d %s; want %d", w.Code, w.Body, tt.wantStatus)
			}
			if tt.wantMins == nil {
				return
			}
			var body struct {
				Records []audit.Record `json:"records"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Records == nil {
				t.Fatalf("body %s: %v; want a records array", w.Body, err)
			}
			got := []int{}
			for _, r := range body.Records {
				got = append(got, r.Time.Minute())
			}
			if !slices.Equal(got, tt.wantMins) {
				t.Errorf("records (minutes): got %v; want %v", got, tt.wantMins)
			}
		})
	}
}

func TestAuditHandlerAuth(t *testing.T) {
	f := newFixture(t, nil)
	h := f.admin.AuditHandler(openTestAudit(t, audit.Config{}))
	tests := []struct {
		name, method, token string
		wantStatus          int
		wantChallenge       string
	}{
		{"no token", http.MethodGet, "", http.StatusUnauthorized, `Bearer realm="oidcgate-admin"`},
		{"wrong token", http.MethodGet, "x" + tokOps, http.StatusUnauthorized, `Bearer realm="oidcgate-admin", error="invalid_token"`},
		{"post", http.MethodPost, tokOps, http.StatusMethodNotAllowed, ""},
		{"ok", http.MethodGet, tokOps, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(t, h, newRequest(tt.method, "/admin/audit", tt.token, "", ""))
			if w.Code != tt.wantStatus || w.Header().Get("WWW-Authenticate") != tt.wantChallenge {
				t.Errorf("got %d, challenge %q; want %d, %q", w.Code, w.Header().Get("WWW-Authenticate"), tt.wantStatus, tt.wantChallenge)
			}
		})
	}
}

// openTestAudit opens an audit log in a temporary directory, closed when
// the test ends.
func openTestAudit(t *testing.T, cfg audit.Config) *audit.Log {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "audit.jsonl")
	}
	a, err := audit.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// TestAuditHandlerPages walks the log page by page with next_cursor: every
// record once, newest first; bad cursors are 400.
func TestAuditHandlerPages(t *testing.T) {
	f := newFixture(t, nil)
	clk := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	a := openTestAudit(t, audit.Config{Path: filepath.Join(t.TempDir(), "audit.jsonl"), MaxBytes: 1000, Clock: clk})
	for i := range 12 {
		clk.Advance(time.Minute)
		r := audit.RecordOf(audit.EventRevocation, cache.Entry{Issuer: issA, Kind: cache.KindSub, Value: "u" + strconv.Itoa(i), RevokedAt: clk.Now(), Initiator: "admin:ops"})
		if err := a.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	h := f.admin.AuditHandler(a)
	var seqs []uint64
	cursor := ""
	for range 20 {
		target := "/admin/audit?limit=5"
		if cursor != "" {
			target += "&cursor=" + cursor
		}
		w := serve(t, h, newRequest(http.MethodGet, target, tokOps, "", ""))
		var body struct {
			Records    []audit.Record `json:"records"`
			NextCursor *string        `json:"next_cursor"`
		}
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.NextCursor == nil {
			t.Fatalf("%s: %d %s; want 200 with records and next_cursor", target, w.Code, w.Body)
		}
		for _, r := range body.Records {
			seqs = append(seqs, r.Seq)
		}
		if cursor = *body.NextCursor; cursor == "" {
			break
		}
	}
	want := []uint64{12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	if !slices.Equal(seqs, want) {
		t.Errorf("seqs: got %v; want %v", seqs, want)
	}
	for _, bad := range []string{"cursor=0", "cursor=-1", "cursor=abc", "cursor=99999999999999999999999", "cursor=1&cursor=2"} {
		if w := serve(t, h, newRequest(http.MethodGet, "/admin/audit?"+bad, tokOps, "", "")); w.Code != http.StatusBadRequest {
			t.Errorf("%s: got %d; want 400", bad, w.Code)
		}
	}
	// A cursor beyond the newest record is a page of the newest ones.
	if w := serve(t, h, newRequest(http.MethodGet, "/admin/audit?cursor=18446744073709551615", tokOps, "", "")); w.Code != http.StatusOK {
		t.Errorf("huge cursor: got %d; want 200", w.Code)
	}
}
