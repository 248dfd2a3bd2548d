package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/logout"
)

// Sizes of BenchmarkPages (issue 17, "Speed").
const (
	benchEntries = 1_000_000
	benchRecords = 100_000
)

// writeBenchAudit writes a valid chain of n revocation records to path,
// one per second up to now (so the overview's chart has 3 hours of them).
func writeBenchAudit(b *testing.B, path string, n int, now time.Time) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	prev := audit.GenesisHash
	var buf []byte
	for i := 1; i <= n; i++ {
		at := now.Add(-time.Duration(n-i) * time.Second)
		r := audit.RecordOf(audit.EventRevocation, cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: fmt.Sprintf("user-%d", i), RevokedAt: at, Initiator: "admin:ops", Reason: "offboarding"})
		r.Seq, r.Time, r.Replica, r.Prev = uint64(i), at, "bench", prev
		r.AppliedAt = at.Add(time.Duration(i%50) * time.Millisecond)
		line, err := json.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		d := sha256.Sum256(line)
		prev = hex.EncodeToString(d[:])
		buf = append(append(buf, line...), '\n')
		if len(buf) > 1<<20 {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			buf = buf[:0]
		}
	}
	if _, err := f.Write(buf); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPages renders every console page with 1,000,000 stored
// revocations and 100,000 audit records: each must take at most 50 ms of
// server time. ns/op is that time.
func BenchmarkPages(b *testing.B) {
	now := t0.Add(24 * time.Hour)
	clk := clocktest.New(now)
	store, err := cache.Open(cache.Config{Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	ctx := context.Background()
	for i := range benchEntries {
		e := cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: fmt.Sprintf("user-%d", i), RevokedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour), Initiator: "admin:ops", Reason: "offboarding"}
		if _, err := store.Revoke(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	writeBenchAudit(b, path, benchRecords, now)
	au, err := audit.Open(audit.Config{Path: path, Replica: "bench", Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = au.Close() })
	admin := logout.AdminConfig{Tokens: []logout.AdminToken{{Name: "all", Token: introspect.Secret(tokenOf("all"))}}}
	reg := prometheus.NewRegistry()
	lcfg := logout.Config{Admin: admin, Lifetimes: map[string]time.Duration{iss: 24 * time.Hour}, Store: &audit.Store{Store: store, Log: au, Clock: clk}, Replays: store, Clock: clk, Logger: slog.New(slog.DiscardHandler), Metrics: reg}
	a, err := logout.NewAdmin(lcfg)
	if err != nil {
		b.Fatal(err)
	}
	a.SetTargets(store, nil)
	keys, err := logout.NewKeyAdmin(logout.KeyAdminConfig{Config: lcfg, Records: store, Audit: au})
	if err != nil {
		b.Fatal(err)
	}
	c, err := New(Config{Auth: a.Authenticator(), Secret: strings.Repeat("s", 32), Revocations: a, Status: a.StatusHandler(store, au), Keys: keys,
		Audit: au, Store: store, Metrics: reg, Issuers: []string{iss}, Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	value, err := c.seal.seal(session{Token: tokenOf("all"), CSRF: "csrf", Expires: now.Add(time.Hour).Unix()})
	if err != nil {
		b.Fatal(err)
	}
	cookie := &http.Cookie{Name: CookieName, Value: value}
	pages := []struct{ name, target string }{
		{"overview", Prefix},
		{"search sub found", Prefix + "search?kind=sub&value=user-99999"},
		{"search sub not found", Prefix + "search?kind=sub&value=nobody"},
		{"follow", Prefix + "follow?kind=sub&value=user-500000"},
		{"status.json", Prefix + "status.json?kind=sub&value=user-500000"},
		{"revoke form", Prefix + "revoke"},
		{"audit newest", Prefix + "audit"},
		{"audit middle cursor", Prefix + "audit?cursor=50000"},
		{"audit huge cursor", Prefix + "audit?cursor=18446744073709551615"},
		{"audit sub filter", Prefix + "audit?sub=user-10"},
		{"audit filter no match", Prefix + "audit?sub=nobody"},
		{"keys", Prefix + "keys"},
		{"signin", Prefix + "signin"},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, p.target, nil)
				r.AddCookie(cookie)
				w := httptest.NewRecorder()
				c.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %.300s", p.target, w.Code, w.Body)
				}
			}
		})
	}
	b.Run("verify chain (action, not a page)", func(b *testing.B) {
		for b.Loop() {
			r := httptest.NewRequest(http.MethodPost, Prefix+"audit/verify", strings.NewReader("csrf=csrf"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.AddCookie(cookie)
			w := httptest.NewRecorder()
			c.ServeHTTP(w, r)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Intact") {
				b.Fatalf("verify: %d %.300s", w.Code, w.Body)
			}
		}
	})
}
