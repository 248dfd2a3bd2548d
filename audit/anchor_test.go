package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAnchorAtRestart: the log saves its head as its anchor and, at the
// next Open, refuses a chain that does not hold it (issue 20, item 10).
func TestAnchorAtRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	open := func(anchor string) (*Log, error) {
		return Open(Config{Path: path, Clock: newAuditClock(), Anchor: anchor})
	}
	a, err := open("")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := a.Append(t.Context(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := fileLines(t, path)
	head := Anchor{Seq: 5, Hash: hashLine(lines[4])}
	got, ok, err := readAnchor(AnchorPath(path))
	if err != nil || !ok || got != head {
		t.Fatalf("anchor file: got %+v, %v, %v; want %+v", got, ok, err, head)
	}
	if AnchorPath(path) != filepath.Join(dir, ".audit.jsonl.head") {
		t.Errorf("anchor path: got %s", AnchorPath(path))
	}
	if rotated, _ := RotatedFiles(path); len(rotated) != 0 {
		t.Errorf("the anchor file is taken for a rotated file: %v", rotated)
	}
	reopen := func(t *testing.T, anchor string, wantErr error, wantText string) {
		t.Helper()
		a, err := open(anchor)
		if err == nil {
			_ = a.Close()
		}
		if !errors.Is(err, wantErr) || (err != nil && !strings.Contains(err.Error(), wantText)) {
			t.Fatalf("Open: got %v; want %v with %q", err, wantErr, wantText)
		}
	}
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(t *testing.T, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("intact", func(t *testing.T) { reopen(t, "", nil, "") })
	t.Run("newest records cut off", func(t *testing.T) {
		write(t, append(bytes.Join(lines[:3], []byte("\n")), '\n'))
		defer write(t, original)
		reopen(t, "", ErrAnchorMismatch, "the log ends at record 3, before the anchor's: records were removed")
	})
	t.Run("last record changed", func(t *testing.T) {
		write(t, bytes.Replace(original, []byte("user-4"), []byte("user-X"), 1))
		defer write(t, original)
		reopen(t, "", ErrAnchorMismatch, "changed or replaced")
	})
	t.Run("an older copy restored", func(t *testing.T) {
		write(t, append(bytes.Join(lines[:4], []byte("\n")), '\n'))
		defer write(t, original)
		reopen(t, "", ErrAnchorMismatch, "records were removed")
	})
	t.Run("configured anchor holds", func(t *testing.T) {
		reopen(t, Anchor{Seq: 2, Hash: hashLine(lines[1])}.String(), nil, "")
	})
	t.Run("configured anchor names a changed record", func(t *testing.T) {
		reopen(t, Anchor{Seq: 2, Hash: hashLine(lines[0])}.String(), ErrAnchorMismatch, "record 2 differs from the anchor's")
	})
	t.Run("configured anchor beyond the log", func(t *testing.T) {
		reopen(t, Anchor{Seq: 9, Hash: head.Hash}.String(), ErrAnchorMismatch, "records were removed")
	})
	t.Run("anchor removed by the operator", func(t *testing.T) {
		write(t, append(bytes.Join(lines[:3], []byte("\n")), '\n'))
		defer write(t, original)
		if err := os.Remove(AnchorPath(path)); err != nil {
			t.Fatal(err)
		}
		reopen(t, "", nil, "")
	})
}

func TestParseAnchor(t *testing.T) {
	h := strings.Repeat("ab", 32)
	if a, err := ParseAnchor("12:" + h); err != nil || a.Seq != 12 || a.Hash != h || a.String() != "12:"+h {
		t.Errorf("got %+v, %v", a, err)
	}
	for _, bad := range []string{"", "12", "0:" + h, "-1:" + h, "12:" + h[:63], "12:" + strings.ToUpper(h), "x:" + h} {
		if _, err := ParseAnchor(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	if err := (Config{Path: "/x/audit.jsonl", Anchor: "nope"}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "anchor: ") {
		t.Errorf("Validate with a bad anchor: got %v", err)
	}
}
