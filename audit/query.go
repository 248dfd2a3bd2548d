package audit

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/oidcgate/oidcgate/cache"
)

// Query bounds.
const (
	defaultQueryLimit = 100
	// MaxQueryLimit is the largest Query.Limit honoured.
	MaxQueryLimit = 1000
)

// Query selects records for Query. Zero fields match all.
type Query struct {
	// Sub matches records with a target of kind sub whose value is Sub, or
	// the hex SHA-256 of Sub, or whose hex SHA-256 is Sub.
	Sub     string
	Trigger string
	// Event matches records of this event (EventRevocation, ...).
	Event string
	// Target, when not nil, matches records with exactly this target.
	Target *Target
	// Since and Until bound the record's time, inclusive.
	Since, Until time.Time
	// Limit caps the result; 0 means 100, more than 1000 means 1000. It
	// counts matching records only: every filter applies first.
	Limit int
	// Scan bounds the records one Page call reads; 0 or more than
	// MaxPageScan means MaxPageScan. Query ignores it.
	Scan int
}

func (q Query) match(r *Record) bool {
	if q.Trigger != "" && r.Trigger != q.Trigger || q.Event != "" && r.Event != q.Event {
		return false
	}
	if q.Target != nil && !slices.Contains(r.Targets, *q.Target) {
		return false
	}
	if !q.Since.IsZero() && r.Time.Before(q.Since) || !q.Until.IsZero() && r.Time.After(q.Until) {
		return false
	}
	if q.Sub == "" {
		return true
	}
	subHash := sha256Hex(q.Sub)
	return slices.ContainsFunc(r.Targets, func(t Target) bool {
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
func (a *Log) Query(ctx context.Context, q Query) ([]Record, error) {
	switch {
	case q.Limit <= 0:
		q.Limit = defaultQueryLimit
	case q.Limit > MaxQueryLimit:
		q.Limit = MaxQueryLimit
	}
	return a.query(ctx, q, q.Limit)
}

// AppLogouts returns the outcome of every app logout call recorded since
// since for a session that target ended, newest first, however many
// other records the log holds: the records are filtered before anything
// is counted, and there is no limit (verify-revocation must see a failed
// call, however old or buried). An error means the log could not be
// read; the caller cannot say the revocation is complete then.
func (a *Log) AppLogouts(ctx context.Context, target Target, since time.Time) ([]AppLogout, error) {
	recs, err := a.query(ctx, Query{Event: EventAppLogout, Target: &target, Since: since}, 0)
	if err != nil {
		return nil, err
	}
	out := make([]AppLogout, 0, len(recs))
	for _, r := range recs {
		if r.AppLogout != nil {
			out = append(out, *r.AppLogout)
		}
	}
	return out, nil
}

// query is Query with limit records at most; 0 means no limit.
func (a *Log) query(ctx context.Context, q Query, limit int) ([]Record, error) {
	rotated, err := RotatedFiles(a.cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
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
		if limit > 0 && len(out) >= limit {
			return out[:limit], nil
		}
	}
	return out, nil
}

// queryFile returns the records of path that q selects, oldest first. A
// file renamed away meanwhile (rotation) yields none.
func queryFile(path string, q Query) ([]Record, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
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
			return nil, fmt.Errorf("audit: %w", err)
		}
		var rec Record
		if parseRecord(raw, &rec) == nil && q.match(&rec) {
			out = append(out, rec)
		}
	}
}
