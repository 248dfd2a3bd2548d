package logout

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// Audit query bounds.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
	// auditWriteTimeout bounds how long a revocation waits for its record.
	auditWriteTimeout = 10 * time.Second
)

// AuditedStore is a Store whose Revoke also writes the "revocation" audit
// record: after Store.Revoke succeeded and before returning, so whoever
// acknowledges a revocation does so only once its record is durable. If
// the record cannot be written, Revoke returns an error (the handler
// answers non-2xx) but the revocation stays applied: failing to audit
// must never leave a session alive. The record is written even when ctx
// is cancelled after the revocation was applied (bounded by 10s).
// Use it by pointer; Store and Audit are required.
type AuditedStore struct {
	Store Store
	Audit *Audit
	// Now is the clock of received_at and applied_at; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	local map[entryKey]int // Revokes of each key in progress through s
}

var _ Store = (*AuditedStore)(nil)

type entryKey struct {
	issuer string
	kind   cache.Kind
	value  string
}

// Revoke applies e through Store, then appends its "revocation" record.
// received_at is when Revoke was called, applied_at when Store.Revoke
// returned.
func (s *AuditedStore) Revoke(ctx context.Context, e cache.Entry) (cache.Entry, error) {
	received := s.now()
	k := entryKey{e.Issuer, e.Kind, e.Value}
	s.mark(k, 1)
	stored, err := s.Store.Revoke(ctx, e)
	s.mark(k, -1)
	if err != nil {
		return stored, err
	}
	rec := RecordOf(EventRevocation, e)
	rec.ReceivedAt, rec.AppliedAt = received, s.now()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditWriteTimeout)
	defer cancel()
	if err := s.Audit.Append(actx, rec); err != nil {
		return stored, fmt.Errorf("logout: revocation applied but its audit record not written: %w", err)
	}
	return stored, nil
}

// List is Store.List.
// Get is the wrapped store's Get.
func (s *AuditedStore) Get(issuer string, kind cache.Kind, value string) (cache.Entry, bool) {
	return s.Store.Get(issuer, kind, value)
}

func (s *AuditedStore) List(ctx context.Context, o cache.ListOptions) ([]cache.Entry, string, error) {
	return s.Store.List(ctx, o)
}

// Local reports whether a Revoke of e's key through s is in progress. The
// store reports an entry to its Subscribe functions before Revoke
// returns, so a subscriber uses Local to tell revocations accepted here
// (audited by Revoke) from those applied from another replica.
func (s *AuditedStore) Local(e cache.Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local[entryKey{e.Issuer, e.Kind, e.Value}] > 0
}

func (s *AuditedStore) mark(k entryKey, d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.local == nil {
		s.local = make(map[entryKey]int)
	}
	if s.local[k] += d; s.local[k] <= 0 {
		delete(s.local, k)
	}
}

func (s *AuditedStore) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

// AuditQuery selects records for Query. Zero fields match all.
type AuditQuery struct {
	// Sub matches records with a target of kind sub whose value is Sub, or
	// the hex SHA-256 of Sub, or whose hex SHA-256 is Sub.
	Sub     string
	Trigger string
	// Since and Until bound the record's time, inclusive.
	Since, Until time.Time
	// Limit caps the result; 0 means 100, more than 1000 means 1000.
	Limit int
}

func (q AuditQuery) match(r *Record) bool {
	if q.Trigger != "" && r.Trigger != q.Trigger {
		return false
	}
	if !q.Since.IsZero() && r.Time.Before(q.Since) || !q.Until.IsZero() && r.Time.After(q.Until) {
		return false
	}
	if q.Sub == "" {
		return true
	}
	subHash := sha256Hex(q.Sub)
	return slices.ContainsFunc(r.Targets, func(t AuditTarget) bool {
		return t.Kind == cache.KindSub && (t.Value == q.Sub || t.Value == subHash || sha256Hex(t.Value) == q.Sub)
	})
}

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

// Query returns the records q selects, newest first, from the current file
// and the rotated ones. Lines that are not records are skipped (audit
// verify is the tool that judges them). A rotated file named before
// q.Since is not read.
func (a *Audit) Query(ctx context.Context, q AuditQuery) ([]Record, error) {
	switch {
	case q.Limit <= 0:
		q.Limit = defaultAuditLimit
	case q.Limit > maxAuditLimit:
		q.Limit = maxAuditLimit
	}
	rotated, err := RotatedAuditFiles(a.cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("logout: audit: %w", err)
	}
	slices.Reverse(rotated)
	files := append([]string{a.cfg.Path}, rotated...)
	var out []Record
	for i, path := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if i > 0 && !q.Since.IsZero() {
			rotatedAt, _ := time.Parse(rotatedLayout, path[len(a.cfg.Path)+1:])
			if rotatedAt.Before(q.Since) {
				break
			}
		}
		recs, err := queryFile(path, q)
		if err != nil {
			return nil, err
		}
		for _, r := range slices.Backward(recs) {
			out = append(out, r)
		}
		if len(out) >= q.Limit {
			return out[:q.Limit], nil
		}
	}
	return out, nil
}

// queryFile returns the records of path that q selects, oldest first. A
// file renamed away meanwhile (rotation) yields none.
func queryFile(path string, q AuditQuery) ([]Record, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("logout: audit: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var out []Record
	for {
		raw, torn, err := readLine(r)
		switch {
		case errors.Is(err, io.EOF):
			return out, nil
		case errors.Is(err, errLineTooLong), torn:
			continue
		case err != nil:
			return nil, fmt.Errorf("logout: audit: %w", err)
		}
		var rec Record
		if parseRecord(raw, &rec) == nil && q.match(&rec) {
			out = append(out, rec)
		}
	}
}

// auditResponse is the body of GET /admin/audit.
type auditResponse struct {
	Records []Record `json:"records"`
}

// AuditHandler serves GET /admin/audit: the records of au, newest first,
// authenticated exactly as the admin revocation API. Query parameters:
// sub, trigger, since and until (RFC 3339), limit (1 to 1000, default
// 100). A nil au is not allowed.
func (a *Admin) AuditHandler(au *Audit) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.authenticate(w, r); !ok {
			return
		}
		if r.Method != http.MethodGet {
			// RFC 9110 §15.5.6: a 405 MUST list the allowed methods.
			w.Header().Set("Allow", "GET")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "")
			return
		}
		q, err := parseAuditQuery(r.URL.RawQuery)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		recs, err := au.Query(r.Context(), q)
		if err != nil {
			a.log.LogAttrs(r.Context(), slog.LevelError, "reading the audit log failed", slog.Any("error", err))
			writeError(w, http.StatusInternalServerError, "server_error", "audit log not read")
			return
		}
		if recs == nil {
			recs = []Record{}
		}
		writeJSON(w, http.StatusOK, auditResponse{Records: recs})
	})
}

func parseAuditQuery(rawQuery string) (AuditQuery, error) {
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return AuditQuery{}, badRequest("query is not valid")
	}
	var q AuditQuery
	for name, vs := range vals {
		if len(vs) != 1 {
			return AuditQuery{}, badRequest("%s: given more than once", truncate(name, 32))
		}
		v := vs[0]
		switch name {
		case "sub":
			if v == "" || len(v) > cache.MaxValueLen {
				return AuditQuery{}, badRequest("sub: empty or longer than %d bytes", cache.MaxValueLen)
			}
			q.Sub = v
		case "trigger":
			if !slices.Contains(Triggers, v) {
				return AuditQuery{}, badRequest("trigger: not one of %s", strings.Join(Triggers, ", "))
			}
			q.Trigger = v
		case "since", "until":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return AuditQuery{}, badRequest("%s: not an RFC 3339 time", name)
			}
			if name == "since" {
				q.Since = t
			} else {
				q.Until = t
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxAuditLimit {
				return AuditQuery{}, badRequest("limit: not an integer from 1 to %d", maxAuditLimit)
			}
			q.Limit = n
		default:
			return AuditQuery{}, badRequest("unknown parameter %q", truncate(name, 32))
		}
	}
	return q, nil
}
