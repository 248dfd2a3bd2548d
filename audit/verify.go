package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// Why a record breaks the chain (Break.Why).
const (
	// BreakEdited: a line was changed (or is not a record at all).
	BreakEdited = "edited"
	// BreakRemoved: one or more records are missing.
	BreakRemoved = "removed"
	// BreakReordered: a record appears out of its place.
	BreakReordered = "reordered"
	// BreakInserted: a line that was never written by the audit appears.
	BreakInserted = "inserted"
	// BreakTruncated: the last line has no newline (a torn or cut write).
	BreakTruncated = "truncated"
)

// Report is the result of VerifyFiles.
type Report struct {
	// Files are the files checked, in chain order.
	Files []string
	// Records counts the records that verified before the first break.
	Records int
	// LastHash is the hash of the last verified line (GenesisHash if none):
	// kept elsewhere, it detects a later removal of the file's tail.
	LastHash string
	// Break is the first broken record; nil when the chain is intact.
	Break *Break
	// Anchor is the hash of the record whose seq VerifyAnchor was
	// asked about; "" when the verified chain has no such record.
	Anchor string
	// Dropped counts the records before the first file that retention
	// deleted, as a retention record in the chain states (0: the chain
	// starts at its first record).
	Dropped uint64
}

// Break locates the first broken record.
type Break struct {
	File string
	// Line is 1-based, within File.
	Line int
	// Why is BreakEdited, BreakRemoved, BreakReordered, BreakInserted or
	// BreakTruncated.
	Why    string
	Detail string
}

func (b *Break) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", b.File, b.Line, b.Why, b.Detail)
}

// VerifyFiles checks the hash chain across paths as one log: rotated
// files (path.<UTC timestamp>) first, oldest first, then the current one,
// whatever order they are given in. The first record must start the chain
// (prev is GenesisHash), so verifying a log whose oldest files were
// deleted reports them as removed. It reports the first break it finds;
// the error is only for files that cannot be read. A hash chain alone
// cannot tell that the newest records were cut off or the newest record
// changed: compare Records and LastHash with a copy kept elsewhere.
func VerifyFiles(paths ...string) (Report, error) {
	return verifyAudit(0, paths)
}

// VerifyAnchor is VerifyFiles that also reports, in Anchor, the
// hash of the record numbered seq: compared with an "audit head" kept
// outside the file (the gateway logs one at most every minute), it shows
// records removed or changed up to that point, which the chain alone
// cannot.
func VerifyAnchor(seq uint64, paths ...string) (Report, error) {
	return verifyAudit(seq, paths)
}

func verifyAudit(anchor uint64, paths []string) (Report, error) {
	files := sortAuditFiles(paths)
	rep := Report{Files: files, LastHash: GenesisHash}
	lines := &auditLines{files: files}
	defer lines.close()
	dropped, err := droppedHeads(files)
	if err != nil {
		return rep, err
	}
	var (
		prevLine []auditLine // the last two verified lines, newest last
		wantSeq  uint64      = 1
	)
	for {
		l, err := lines.next()
		if errors.Is(err, io.EOF) {
			return rep, nil
		}
		if err != nil {
			return rep, err
		}
		if rep.Records == 0 && l.err == nil && !l.torn && l.rec.Prev != GenesisHash {
			// The oldest files were deleted by retention: the chain
			// starts after the records a retention record names. A
			// retention record is itself in the chain, so it cannot be
			// forged without breaking it.
			if last, ok := dropped[l.rec.Prev]; ok && l.rec.Seq == last+1 {
				rep.LastHash, wantSeq, rep.Dropped = l.rec.Prev, l.rec.Seq, last
			}
		}
		if brk := l.check(rep.LastHash, wantSeq, prevLine, lines); brk != nil {
			rep.Break = brk
			return rep, nil
		}
		rep.Records++
		rep.LastHash = hashLine(l.raw)
		if anchor != 0 && l.rec.Seq == anchor {
			rep.Anchor = rep.LastHash
		}
		wantSeq = l.rec.Seq + 1
		prevLine = append(prevLine, l)
		if len(prevLine) > 2 {
			prevLine = prevLine[1:]
		}
	}
}

// check judges l, given the hash and seq the chain expects and the last
// verified lines, looking ahead in lines when it must; nil means l is in
// its place.
func (l auditLine) check(wantPrev string, wantSeq uint64, verified []auditLine, lines *auditLines) *Break {
	brk := func(at auditLine, why, detail string) *Break {
		return &Break{File: at.file, Line: at.n, Why: why, Detail: detail}
	}
	if l.torn {
		return brk(l, BreakTruncated, "the last line has no newline")
	}
	if l.err != nil {
		return brk(l, BreakEdited, "not an audit record: "+l.err.Error())
	}
	if l.rec.Prev == wantPrev && l.rec.Seq == wantSeq {
		return nil
	}
	next, nextErr := lines.peek()
	hasNext := nextErr == nil && !next.torn && next.err == nil
	// The next line continues the chain as if l were absent: l was moved
	// here (a later line links to it) or added (none does).
	if hasNext && next.rec.Prev == wantPrev && next.rec.Seq == wantSeq {
		if l.rec.Prev == hashLine(next.raw) || lines.findPrev(hashLine(l.raw)) {
			return brk(l, BreakReordered, fmt.Sprintf("seq %d where seq %d belongs", l.rec.Seq, wantSeq))
		}
		return brk(l, BreakInserted, fmt.Sprintf("the next line continues the chain without this one (seq %d)", l.rec.Seq))
	}
	// l links to the line before the last verified one: that one was added
	// in a way that matched the chain, and l is where it shows.
	if len(verified) == 2 && l.rec.Prev == hashLine(verified[0].raw) && l.rec.Seq == verified[1].rec.Seq {
		v := verified[1]
		return brk(v, BreakInserted, fmt.Sprintf("the following line links past it (seq %d)", v.rec.Seq))
	}
	switch {
	case l.rec.Seq > wantSeq:
		if lines.findSeq(wantSeq) {
			return brk(l, BreakReordered, fmt.Sprintf("seq %d where seq %d belongs; seq %d comes later", l.rec.Seq, wantSeq, wantSeq))
		}
		return brk(l, BreakRemoved, fmt.Sprintf("seq %d follows seq %d: %d record(s) missing before this line", l.rec.Seq, wantSeq-1, l.rec.Seq-wantSeq))
	case l.rec.Seq < wantSeq:
		return brk(l, BreakReordered, fmt.Sprintf("seq %d where seq %d belongs", l.rec.Seq, wantSeq))
	case len(verified) == 0:
		return brk(l, BreakEdited, "prev does not match the start of the chain")
	}
	// Seq is right, prev is not: the previous line changed, unless this
	// line itself changed (then the next line does not link to it either).
	if hasNext && next.rec.Prev != hashLine(l.raw) {
		return brk(l, BreakEdited, "prev does not match the previous line and the next line does not link to this one")
	}
	v := verified[len(verified)-1]
	return brk(v, BreakEdited, "the line's hash no longer matches the next record's prev")
}

// sortAuditFiles orders paths as one chain: for each base path, its
// rotated files by timestamp, then the base file itself.
func sortAuditFiles(paths []string) []string {
	out := slices.Clone(paths)
	key := func(p string) (string, string) {
		if i := len(p) - len(rotatedLayout) - 1; i > 0 && p[i] == '.' && isRotatedSuffix(p[i+1:]) {
			return p[:i], p[i+1:]
		}
		return p, "~" // after every timestamp
	}
	slices.SortStableFunc(out, func(a, b string) int {
		ab, at := key(a)
		bb, bt := key(b)
		if c := strings.Compare(ab, bb); c != 0 {
			return c
		}
		return strings.Compare(at, bt)
	})
	return out
}

// auditLine is one line of a file being read.
type auditLine struct {
	file string
	n    int
	raw  []byte // without the newline
	rec  Record
	err  error // the line is not a record
	torn bool  // the file's last line has no newline
}

// auditLines reads the lines of several files in order, with one line of
// lookahead.
type auditLines struct {
	files  []string
	i      int
	f      *os.File
	r      *bufio.Reader
	n      int
	peeked *auditLine
}

func (ls *auditLines) close() {
	if ls.f != nil {
		ls.f.Close()
		ls.f = nil
	}
}

func (ls *auditLines) next() (auditLine, error) {
	if ls.peeked != nil {
		l := *ls.peeked
		ls.peeked = nil
		return l, nil
	}
	return ls.read()
}

func (ls *auditLines) peek() (auditLine, error) {
	if ls.peeked == nil {
		l, err := ls.read()
		if err != nil {
			return l, err
		}
		ls.peeked = &l
	}
	return *ls.peeked, nil
}

// findPrev reports whether a later line (from the peeked one on) has
// prev. It consumes the lines it reads.
func (ls *auditLines) findPrev(prev string) bool {
	for {
		l, err := ls.next()
		if err != nil {
			return false
		}
		if l.err == nil && l.rec.Prev == prev {
			return true
		}
	}
}

// findSeq reports whether a later line (from the peeked one on) has seq.
// It consumes the lines it reads.
func (ls *auditLines) findSeq(seq uint64) bool {
	for {
		l, err := ls.next()
		if err != nil {
			return false
		}
		if l.err == nil && l.rec.Seq == seq {
			return true
		}
	}
}

func (ls *auditLines) read() (auditLine, error) {
	for {
		if ls.f == nil {
			if ls.i >= len(ls.files) {
				return auditLine{}, io.EOF
			}
			f, err := os.Open(ls.files[ls.i])
			if err != nil {
				return auditLine{}, fmt.Errorf("audit: %w", err)
			}
			ls.f, ls.r, ls.n = f, bufio.NewReaderSize(f, 64<<10), 0
		}
		raw, torn, err := readLine(ls.r)
		if errors.Is(err, io.EOF) {
			ls.close()
			ls.i++
			continue
		}
		ls.n++
		l := auditLine{file: ls.files[ls.i], n: ls.n, raw: raw, torn: torn}
		if err != nil {
			if !errors.Is(err, errLineTooLong) {
				return l, fmt.Errorf("audit: %s: %w", l.file, err)
			}
			l.err = err
			return l, nil
		}
		l.err = parseRecord(raw, &l.rec)
		return l, nil
	}
}

var errLineTooLong = errors.New("line longer than 1 MiB")

// readLine reads one line without its newline; torn reports a last line
// without one. A line longer than maxAuditLine is consumed, not kept, and
// reported as errLineTooLong.
func readLine(r *bufio.Reader) (line []byte, torn bool, err error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > maxAuditLine+1 {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if tooLong {
				return nil, true, errLineTooLong
			}
			if len(buf) == 0 {
				return nil, false, io.EOF
			}
			return buf, true, nil
		case err != nil:
			return nil, false, err
		case tooLong:
			return nil, false, errLineTooLong
		}
		return buf[:len(buf)-1], false, nil
	}
}

// parseRecord decodes one line strictly: a JSON object with the fields of
// Record only, seq at least 1 and prev a 64-digit lowercase hex hash.
func parseRecord(raw []byte, r *Record) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(r); err != nil {
		return errors.New("not a JSON record")
	}
	if dec.More() {
		return errors.New("trailing data after the record")
	}
	if r.Seq == 0 {
		return errors.New("seq missing")
	}
	if !isHexHash(r.Prev) {
		return errors.New("prev is not a SHA-256 hash")
	}
	return nil
}

func isHexHash(s string) bool {
	if len(s) != len(GenesisHash) {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// droppedHeads maps the last hash of each file deleted by retention, as
// the retention records of files state, to its last seq.
func droppedHeads(files []string) (map[string]uint64, error) {
	out := make(map[string]uint64)
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		r := bufio.NewReaderSize(f, 64<<10)
		for {
			raw, torn, err := readLine(r)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil && !errors.Is(err, errLineTooLong) {
				f.Close()
				return nil, err
			}
			if torn || err != nil || !bytes.Contains(raw, []byte(`"event":"retention"`)) {
				continue
			}
			var rec Record
			if parseRecord(raw, &rec) == nil && rec.Event == EventRetention && rec.Dropped != nil {
				out[rec.Dropped.LastHash] = rec.Dropped.LastSeq
			}
		}
		f.Close()
	}
	return out, nil
}
