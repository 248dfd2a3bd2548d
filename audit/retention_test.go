package audit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRetention: rotated files older than Retention are deleted, but
// only once their records are anchored and a retention record naming
// them is in the chain; what is left still verifies (issue 20, item 3).
func TestRetention(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	clk := newAuditClock()
	logs := new(bytes.Buffer)
	cfg := Config{Path: path, MaxBytes: 1, Retention: time.Hour, Clock: clk, Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	a, err := Open(cfg)
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
	before, _ := RotatedFiles(path)
	if len(before) != 4 {
		t.Fatalf("rotated files: got %d; want 4", len(before))
	}

	// Not anchored: the anchor file is gone, so nothing may be dropped.
	if err := os.Remove(AnchorPath(path)); err != nil {
		t.Fatal(err)
	}
	a, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	if err := a.Append(t.Context(), testRecord(5)); err != nil {
		t.Fatal(err)
	}
	if after, _ := RotatedFiles(path); len(after) != 5 {
		t.Fatalf("unanchored: rotated files: got %d; want all 5 kept", len(after))
	}
	if !strings.Contains(logs.String(), "its records are not all anchored yet") {
		t.Errorf("keeping unanchored files was not logged: %s", logs)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}

	// Anchored (Close saved the head): the files rotated over an hour ago
	// go, each after its retention record.
	a, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	if err := a.Append(t.Context(), testRecord(6)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	after, _ := RotatedFiles(path)
	if len(after) != 1 {
		t.Fatalf("anchored: rotated files: got %v; want 1 (the one rotated just now)", after)
	}
	var dropped []Dropped
	for _, line := range fileLines(t, path) {
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		if r.Event == EventRetention {
			dropped = append(dropped, *r.Dropped)
		}
	}
	if len(dropped) != 5 || dropped[0].FirstSeq != 1 || dropped[4].LastSeq != 5 || dropped[0].File != filepath.Base(before[0]) {
		t.Fatalf("retention records: got %+v; want 5 naming seq 1 to 5", dropped)
	}
	rep, err := VerifyFiles(append(after, path)...)
	if err != nil || rep.Break != nil || rep.Dropped != 5 {
		t.Fatalf("verify after retention: got %+v, %v; want intact, 5 dropped", rep, err)
	}
	// Without the retention records, a missing oldest file is a removal.
	lines := fileLines(t, path)
	var kept [][]byte
	for _, l := range lines {
		if !bytes.Contains(l, []byte(`"event":"retention"`)) {
			kept = append(kept, l)
		}
	}
	if err := os.WriteFile(path, append(bytes.Join(kept, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, _ := VerifyFiles(append(after, path)...); rep.Break == nil {
		t.Error("verify: a chain whose start was dropped without a retention record is intact")
	}
}

func TestRetentionConfig(t *testing.T) {
	for _, r := range []time.Duration{-time.Hour, time.Minute} {
		if err := (Config{Path: "/x/a", Retention: r}).Validate(); err == nil || !strings.HasPrefix(err.Error(), "retention: ") {
			t.Errorf("retention %s: got %v", r, err)
		}
	}
	if err := (Config{Path: "/x/a", Retention: 720 * time.Hour}).Validate(); err != nil {
		t.Error(err)
	}
}
