package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrAnchorMismatch is wrapped by Open's error when the log does not hold
// the record its anchor names: records were removed or changed.
var ErrAnchorMismatch = errors.New("audit: the log does not match its anchor")

// Anchor names one record of the chain: its seq and the hex SHA-256 of
// its line. The chain head, kept outside the log, is an anchor: a hash
// chain alone cannot show its newest records cut off or changed.
type Anchor struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// String is "SEQ:HASH", as `oidcgate audit verify --anchor` takes it.
func (a Anchor) String() string { return strconv.FormatUint(a.Seq, 10) + ":" + a.Hash }

// ParseAnchor reads "SEQ:HASH": a positive seq and 64 lower-case hex
// digits.
func ParseAnchor(s string) (Anchor, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 || len(hash) != 64 || strings.Trim(hash, "0123456789abcdef") != "" {
		return Anchor{}, errors.New("not SEQ:HASH (a positive record number and 64 lower-case hex digits)")
	}
	return Anchor{Seq: n, Hash: hash}, nil
}

// AnchorPath is the file in which the log keeps its last anchor: next to
// path, hidden (".audit.jsonl.head" for "audit.jsonl"), so that a glob of
// the log files (audit.jsonl*) does not take it for one.
func AnchorPath(path string) string {
	dir, base := filepath.Split(filepath.Clean(path))
	return filepath.Join(dir, "."+base+".head")
}

// writeAnchor replaces the anchor file with a atomically: a temporary
// file, fsync'd, renamed over it, and the directory fsync'd.
func writeAnchor(path string, a Anchor) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// readAnchor reads the anchor file; ok is false when there is none.
func readAnchor(path string) (Anchor, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Anchor{}, false, nil
	}
	if err != nil {
		return Anchor{}, false, err
	}
	var a Anchor
	if err := json.Unmarshal(b, &a); err != nil || a.Seq == 0 || len(a.Hash) != 64 {
		return Anchor{}, false, fmt.Errorf("%s is not an anchor file", path)
	}
	return a, true, nil
}

// checkAnchor compares the chain, whose head is (seq, prev), with want:
// the record want.Seq must exist and hash to want.Hash. It reads back
// from the newest file only as far as it must.
func (a *Log) checkAnchor(want Anchor, source string) error {
	mismatch := func(why string) error {
		return fmt.Errorf("%w (%s, %s): %s; check the log with `oidcgate audit verify --anchor %s %s*`; "+
			"to start anyway, remove the anchor (%s) after keeping a copy",
			ErrAnchorMismatch, want, source, why, want, a.cfg.Path, source)
	}
	switch {
	case a.seq < want.Seq:
		return mismatch(fmt.Sprintf("the log ends at record %d, before the anchor's: records were removed", a.seq))
	case a.seq == want.Seq:
		if a.prev != want.Hash {
			return mismatch("its last record differs from the anchor's: it was changed or replaced")
		}
		return nil
	}
	rotated, err := RotatedFiles(a.cfg.Path)
	if err != nil {
		return err
	}
	files := append(slices.Clone(rotated), a.cfg.Path)
	for _, path := range slices.Backward(files) {
		hash, first, found, err := seqHash(path, want.Seq)
		if err != nil {
			return err
		}
		if found {
			if hash != want.Hash {
				return mismatch(fmt.Sprintf("record %d differs from the anchor's: it was changed", want.Seq))
			}
			return nil
		}
		if first != 0 && first < want.Seq {
			break
		}
	}
	return mismatch(fmt.Sprintf("record %d is missing: records were removed", want.Seq))
}

// seqHash returns the line hash of the record numbered seq in path, and
// the seq of the file's first record.
func seqHash(path string, seq uint64) (hash string, first uint64, found bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		raw, torn, err := readLine(r)
		switch {
		case errors.Is(err, io.EOF):
			return "", first, false, nil
		case errors.Is(err, errLineTooLong), torn:
			continue
		case err != nil:
			return "", first, false, err
		}
		var rec struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(raw, &rec) != nil {
			continue
		}
		if first == 0 {
			first = rec.Seq
		}
		if rec.Seq == seq {
			return hashLine(raw), first, true, nil
		}
	}
}
