package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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

// prefilter returns a test on a raw line that reports true when the line
// cannot match q, decided on its bytes before any parsing; nil when q
// has nothing to test that way. It is sure only of values that JSON
// writes as they are (printable ASCII without quotes, backslash, <, >
// and &), and a sub that is itself a digest (it may match a value's
// digest, which the line does not hold) is not tested.
func (q Query) prefilter() func(line []byte) bool {
	var needles [][][]byte // each inner list: the line must hold one of them
	if q.Event != "" && plainJSON(q.Event) {
		needles = append(needles, [][]byte{[]byte(`"event":"` + q.Event + `"`)})
	}
	if q.Trigger != "" && plainJSON(q.Trigger) {
		needles = append(needles, [][]byte{[]byte(`"trigger":"` + q.Trigger + `"`)})
	}
	if q.Sub != "" && plainJSON(q.Sub) && !isHexHash(q.Sub) {
		needles = append(needles, [][]byte{[]byte(q.Sub), []byte(sha256Hex(q.Sub))})
	}
	if len(needles) == 0 {
		return nil
	}
	return func(line []byte) bool {
		for _, any := range needles {
			if !slices.ContainsFunc(any, func(n []byte) bool { return bytes.Contains(line, n) }) {
				return true
			}
		}
		return false
	}
}

func plainJSON(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
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

// clockSlack is how far back a backward scan reads past q.Since: the
// records of a log are in time order unless the clock stepped back, by
// less than this.
const clockSlack = 5 * time.Minute

// query is Query with limit records at most; 0 means no limit. It reads
// each file backwards, newest first, and stops at the first record older
// than q.Since (less clockSlack): a query about the last minutes reads
// only those, however large the log.
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
		older, err := queryFile(path, q, limit, &out)
		if err != nil {
			return nil, err
		}
		if older || limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, nil
}

// queryFile adds the records of path that q selects to out, newest first,
// until out holds limit (0: no limit). It reports whether it met a record
// older than q.Since less clockSlack (older files hold none that match).
// A file renamed away meanwhile (rotation) yields none.
func queryFile(path string, q Query, limit int, out *[]Record) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("audit: %w", err)
	}
	older := false
	stop := q.Since.Add(-clockSlack)
	miss := q.prefilter()
	if !q.Since.IsZero() {
		// Every record's time is needed to know where to stop.
		miss = nil
	}
	err = scanBackward(f, st.Size(), func(line []byte) bool {
		if miss != nil && miss(line) {
			return true
		}
		var rec Record
		if parseRecord(line, &rec) != nil {
			return true
		}
		if !q.Since.IsZero() && rec.Time.Before(stop) {
			older = true
			return false
		}
		if q.match(&rec) {
			*out = append(*out, rec)
		}
		return limit == 0 || len(*out) < limit
	})
	if err != nil {
		return false, fmt.Errorf("audit: %s: %w", path, err)
	}
	return older, nil
}
