package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// MaxPageScan is the most records one Page call reads. A page whose
// filters match few records ends early with a cursor, so that no request
// reads a whole log, however large.
const MaxPageScan = 2_000

// pageBlock is how much Page reads at once, backwards.
const pageBlock = 64 << 10

// Page is one page of records, newest first.
type Page struct {
	Records []Record
	// Next is the cursor of the following (older) page: pass it as the
	// before of the next call. 0 means nothing older is left.
	Next uint64
	// Scanned is how many records were read to make the page.
	Scanned int
}

// Page returns the records q selects whose seq is below before (0: from
// the newest), newest first, at most q.Limit of them (0 means 100, more
// than 1000 means 1000). It reads backwards from where before points,
// found by binary search in the one file that holds it, and stops after
// q.Limit matches or q.Scan records read, so its cost never grows
// with the size of the log. Lines that are not records are skipped (audit
// verify judges them); a torn last line is not a record yet.
//
// Seqs grow along the chain, across rotated files; a cursor therefore
// stays right when the current file is rotated between two calls.
func (a *Log) Page(ctx context.Context, q Query, before uint64) (Page, error) {
	switch {
	case q.Limit <= 0:
		q.Limit = defaultQueryLimit
	case q.Limit > MaxQueryLimit:
		q.Limit = MaxQueryLimit
	}
	if q.Scan <= 0 || q.Scan > MaxPageScan {
		q.Scan = MaxPageScan
	}
	rotated, err := RotatedFiles(a.cfg.Path)
	if err != nil {
		return Page{}, fmt.Errorf("audit: %w", err)
	}
	slices.Reverse(rotated)
	files := append([]string{a.cfg.Path}, rotated...)
	var p Page
	for i, path := range files {
		if err := ctx.Err(); err != nil {
			return Page{}, err
		}
		if i > 0 && !q.Since.IsZero() {
			// A file is rotated after its last record: one rotated
			// before Since holds nothing that recent, nor do older ones.
			rotatedAt, _ := time.Parse(rotatedLayout, path[len(a.cfg.Path)+1:])
			if rotatedAt.Before(q.Since) {
				break
			}
		}
		done, err := pageFile(path, q, before, &p)
		if err != nil {
			return Page{}, err
		}
		if done {
			return p, nil
		}
	}
	p.Next = 0
	return p, nil
}

// pageFile adds to p the records of path that q selects, with seq below
// before (0: any), newest first. It reports true when the page is full or
// the scan bound reached (p.Next is set then).
func pageFile(path string, q Query, before uint64, p *Page) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		// Renamed away meanwhile (rotation): its records are in the
		// rotated file, which this call did not list; the next page's
		// cursor finds them.
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
	end := st.Size()
	if before > 0 {
		first, ok, err := seqAt(f, 0, end)
		if err != nil {
			return false, err
		}
		if !ok || first >= before {
			// Everything here is at or after the cursor.
			return false, nil
		}
		if end, err = offsetOfSeq(f, end, before); err != nil {
			return false, err
		}
	}
	done := false
	var rec Record
	miss := q.prefilter()
	err = scanBackward(f, end, func(line []byte) bool {
		if miss != nil && miss(line) {
			// Not a match, whatever it is; it counts as read, and its
			// seq is the cursor if the scan ends here.
			p.Scanned++
			if p.Scanned >= q.Scan {
				seq, ok := lineSeq(line)
				if ok && (before == 0 || seq < before) {
					p.Next, done = seq, true
					return false
				}
			}
			return true
		}
		rec = Record{}
		if parseRecord(line, &rec) != nil {
			return true
		}
		if before > 0 && rec.Seq >= before {
			return true
		}
		p.Scanned++
		if q.match(&rec) {
			p.Records = append(p.Records, rec)
		}
		if len(p.Records) >= q.Limit || p.Scanned >= q.Scan {
			p.Next, done = rec.Seq, true
			return false
		}
		return true
	})
	if err != nil {
		return false, fmt.Errorf("audit: %s: %w", path, err)
	}
	return done, nil
}

// seqAt returns the seq of the first record that starts at or after off
// (off 0: the first line; else the line after the newline at or after
// off-1) and before end.
func seqAt(f io.ReaderAt, off, end int64) (uint64, bool, error) {
	start, err := lineStart(f, off, end)
	if err != nil || start >= end {
		return 0, false, err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, start, end-start), 4096)
	for {
		raw, torn, err := readLine(r)
		switch {
		case errors.Is(err, io.EOF):
			return 0, false, nil
		case errors.Is(err, errLineTooLong):
			continue
		case err != nil:
			return 0, false, err
		case torn:
			return 0, false, nil
		}
		var head struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(raw, &head) == nil && head.Seq > 0 {
			return head.Seq, true, nil
		}
	}
}

// lineSeq reads the seq of a raw line cheaply: the writer puts it first.
func lineSeq(line []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"seq":`))
	if !ok {
		return 0, false
	}
	var n uint64
	i := 0
	for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9' && i < 20; i++ {
		n = n*10 + uint64(rest[i]-'0')
	}
	return n, i > 0 && i < len(rest) && rest[i] == ','
}

// lineStart is the offset of the first line starting at or after off.
func lineStart(f io.ReaderAt, off, end int64) (int64, error) {
	if off == 0 {
		return 0, nil
	}
	var buf [4096]byte
	for pos := off - 1; pos < end; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), end-pos)], pos)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return pos + int64(i) + 1, nil
		}
		pos += int64(n)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if n == 0 {
			break
		}
	}
	return end, nil
}

// offsetOfSeq is the offset of the first line whose record has a seq at
// or above seq (end when none has): a binary search over byte offsets,
// since seqs grow along the file.
func offsetOfSeq(f io.ReaderAt, end int64, seq uint64) (int64, error) {
	lo, hi := int64(0), end
	for lo < hi {
		mid := lo + (hi-lo)/2
		s, ok, err := seqAt(f, mid, end)
		if err != nil {
			return 0, err
		}
		if !ok || s >= seq {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lineStart(f, lo, end)
}

// scanBackward calls fn with each complete line of f before end, last
// first, until fn returns false. It holds one block and one line at a
// time; a line longer than maxAuditLine is skipped, as is a last line
// without its newline (torn: still being written). The line passed to fn
// is valid only during the call.
func scanBackward(f io.ReaderAt, end int64, fn func(line []byte) bool) error {
	if end <= 0 {
		return nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], end-1); err != nil {
		return err
	}
	skipFirst := last[0] != '\n'
	block := make([]byte, pageBlock)
	var pending []byte // the end of a line whose start is not read yet
	tooLong := false   // pending was dropped: the line is longer than maxAuditLine
	emit := func(line []byte) bool {
		switch {
		case skipFirst:
			skipFirst = false
			return true
		case tooLong:
			tooLong = false
			return true
		case len(line) == 0:
			return true
		}
		return fn(line)
	}
	for pos := end; pos > 0; {
		n := min(int64(pageBlock), pos)
		pos -= n
		if _, err := f.ReadAt(block[:n], pos); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		data := block[:n]
		if len(pending) > 0 {
			data = append(append(make([]byte, 0, len(data)+len(pending)), data...), pending...)
		}
		for {
			i := bytes.LastIndexByte(data, '\n')
			if i < 0 {
				break
			}
			if !emit(data[i+1:]) {
				return nil
			}
			data = data[:i]
		}
		if len(data) > maxAuditLine {
			// The torn last line, if this is it, is skipped as too long.
			pending, tooLong, skipFirst = nil, true, false
		} else {
			pending = append(pending[:0:0], data...)
		}
	}
	if len(pending) > 0 || tooLong {
		emit(pending)
	}
	return nil
}
