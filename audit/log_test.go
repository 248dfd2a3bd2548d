package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// newAuditClock returns a fake clock that moves one second per reading,
// from 2026-03-01 12:00:01 UTC.
func newAuditClock() *clocktest.Clock {
	return clocktest.NewStepping(time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC), time.Second)
}

func openTestAudit(t *testing.T, cfg Config) *Log {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "audit.jsonl")
	}
	if cfg.Clock == nil {
		cfg.Clock = newAuditClock()
	}
	a, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func testRecord(i int) Record {
	return RecordOf(EventRevocation, cache.Entry{
		Issuer: "https://idp.example", Kind: cache.KindSub, Value: fmt.Sprintf("user-%d", i),
		RevokedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Initiator: "admin:ops",
	})
}

// fileLines returns the lines of path, without newlines.
func fileLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func TestTrigger(t *testing.T) {
	tests := []struct{ initiator, want string }{
		{"backchannel:https://idp jti_sha256:0011", TriggerBackchannel},
		{"frontchannel:https://idp", TriggerFrontchannel},
		{"gateway:sign_out", TriggerRPLogout},
		{"admin:ops", TriggerAdmin},
		{"rfc7009", TriggerRFC7009},
		{"rfc7009:client-a", TriggerRFC7009},
		{"ssf:https://tx jti_sha256:00", TriggerSSF},
		{"universal_logout:https://idp jti_sha256:00", TriggerUniversalLogout},
		{"gateway:other", ""},
		{"", ""},
		{"administrator", ""},
	}
	for _, tt := range tests {
		if got := Trigger(tt.initiator); got != tt.want {
			t.Errorf("Trigger(%q): got %q; want %q", tt.initiator, got, tt.want)
		}
	}
}

func TestAuditConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want []string
	}{
		{Config{Path: "/var/lib/oidcgate/audit.jsonl"}, nil},
		{Config{}, []string{"path: required"}},
		{Config{Path: "audit.jsonl", MaxBytes: -1}, []string{"path: must be an absolute path", "max_bytes: negative"}},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v): got %v; want it to contain %q", tt.cfg, err, w)
			}
		}
		if tt.want == nil && err != nil {
			t.Errorf("Validate(%+v): got %v; want nil", tt.cfg, err)
		}
	}
}

// TestAuditChain checks that every record is in the file when Append
// returns and that the chain continues after a reopen.
func TestAuditChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := openTestAudit(t, Config{Path: path, Replica: "r1"})
	ctx := context.Background()
	for i := range 3 {
		if err := a.Append(ctx, testRecord(i)); err != nil {
			t.Fatal(err)
		}
		if got := len(fileLines(t, path)); got != i+1 {
			t.Fatalf("lines after Append %d returned: got %d; want %d", i+1, got, i+1)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: got %v; want nil", err)
	}
	if err := a.Append(ctx, testRecord(9)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: got %v; want ErrClosed", err)
	}
	b := openTestAudit(t, Config{Path: path, Replica: "r1"})
	if err := b.Append(ctx, testRecord(3)); err != nil {
		t.Fatal(err)
	}
	lines := fileLines(t, path)
	prev := GenesisHash
	for i, l := range lines {
		var r Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		if r.Seq != uint64(i+1) || r.Prev != prev || r.Replica != "r1" || r.Trigger != TriggerAdmin || r.Time.IsZero() {
			t.Errorf("line %d: got seq %d prev %s replica %q trigger %q; want seq %d prev %s replica r1 trigger admin", i+1, r.Seq, r.Prev, r.Replica, r.Trigger, i+1, prev)
		}
		prev = hashLine(l)
	}
	rep, err := VerifyFiles(path)
	if err != nil || rep.Break != nil || rep.Records != 4 || rep.LastHash != prev {
		t.Fatalf("VerifyFiles: got %+v, %v; want 4 intact records ending in %s", rep, err, prev)
	}
}

func TestAuditTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := openTestAudit(t, Config{Path: path})
	if err := a.Append(context.Background(), testRecord(0)); err != nil {
		t.Fatal(err)
	}
	_ = a.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"seq":2,"ti`)
	f.Close()
	if rep, _ := VerifyFiles(path); rep.Break == nil || rep.Break.Why != BreakTruncated {
		t.Fatalf("verify a torn tail: got %+v; want truncated", rep.Break)
	}
	b := openTestAudit(t, Config{Path: path})
	if err := b.Append(context.Background(), testRecord(1)); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyFiles(path); err != nil || rep.Break != nil || rep.Records != 2 {
		t.Fatalf("after reopening: got %+v, %v; want 2 intact records", rep, err)
	}
}

func TestAuditConcurrentAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := openTestAudit(t, Config{Path: path})
	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				errs <- a.Append(context.Background(), testRecord(w*each+i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rep, err := VerifyFiles(path)
	if err != nil || rep.Break != nil || rep.Records != writers*each {
		t.Fatalf("VerifyFiles: got %+v, %v; want %d intact records", rep, err, writers*each)
	}
}

func TestAuditAppendContext(t *testing.T) {
	a := openTestAudit(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either the record was queued and written, or ctx was honoured.
	if err := a.Append(ctx, testRecord(0)); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled ctx: got %v; want nil or context.Canceled", err)
	}
}

func TestAuditRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	a := openTestAudit(t, Config{Path: path, MaxBytes: 1})
	for i := range 4 {
		if err := a.Append(context.Background(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	rotated, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 3 {
		t.Fatalf("rotated files: got %v; want 3", rotated)
	}
	old := fileLines(t, rotated[2])
	var first Record
	if err := json.Unmarshal(fileLines(t, path)[0], &first); err != nil {
		t.Fatal(err)
	}
	if want := hashLine(old[len(old)-1]); first.Prev != want || first.Seq != 4 {
		t.Errorf("new file's first record: got seq %d prev %s; want seq 4 prev %s", first.Seq, first.Prev, want)
	}
	// Given in any order, the files verify as one chain.
	rep, err := VerifyFiles(append([]string{path}, rotated...)...)
	if err != nil || rep.Break != nil || rep.Records != 4 {
		t.Fatalf("VerifyFiles(all): got %+v, %v; want 4 intact records", rep, err)
	}
	// The current file alone lacks its predecessors.
	if rep, _ := VerifyFiles(path); rep.Break == nil || rep.Break.Why != BreakRemoved {
		t.Errorf("VerifyFiles(current only): got %+v; want removed", rep.Break)
	}
	// Reopening an empty current file continues from the newest rotated one.
	_ = a.Close()
	if err := os.Rename(path, path+".20990101T000000.000000000Z"); err != nil {
		t.Fatal(err)
	}
	b := openTestAudit(t, Config{Path: path})
	if err := b.Append(context.Background(), testRecord(5)); err != nil {
		t.Fatal(err)
	}
	all, _ := RotatedFiles(path)
	if rep, err := VerifyFiles(append(all, path)...); err != nil || rep.Break != nil || rep.Records != 5 {
		t.Fatalf("after reopening an empty file: got %+v, %v; want 5 intact records", rep, err)
	}
}

// writeChain writes n records and returns the file's lines.
func writeChain(t *testing.T, path string, n int) [][]byte {
	t.Helper()
	a := openTestAudit(t, Config{Path: path})
	for i := range n {
		if err := a.Append(context.Background(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return fileLines(t, path)
}

func TestVerifyAuditFilesTampering(t *testing.T) {
	dir := t.TempDir()
	orig := writeChain(t, filepath.Join(dir, "orig.jsonl"), 6)
	forged := func(seq uint64, prev string) []byte {
		r := testRecord(99)
		r.Seq, r.Prev, r.Time = seq, prev, time.Date(2026, 3, 1, 12, 0, 3, 0, time.UTC)
		b, _ := json.Marshal(r)
		return b
	}
	lines := func(idx ...int) [][]byte {
		out := make([][]byte, len(idx))
		for i, j := range idx {
			out[i] = orig[j]
		}
		return out
	}
	with := func(ls [][]byte, at int, l []byte) [][]byte {
		out := append([][]byte{}, ls[:at]...)
		return append(append(out, l), ls[at:]...)
	}
	edited := bytes.Replace(orig[2], []byte("user-2"), []byte("user-7"), 1)
	tests := []struct {
		name     string
		lines    [][]byte
		noEOL    bool
		wantWhy  string
		wantLine int
	}{
		{"intact", orig, false, "", 0},
		{"edited middle", with(lines(0, 1, 3, 4, 5), 2, edited), false, BreakEdited, 3},
		{"edited prev", with(lines(0, 1, 2, 4, 5), 3, bytes.Replace(orig[3], []byte(`"prev":"`), []byte(`"prev":"0`), 1)[:len(orig[3])]), false, BreakEdited, 4},
		{"not JSON", with(lines(0, 1, 3, 4, 5), 2, []byte("hello")), false, BreakEdited, 3},
		{"removed middle", lines(0, 1, 3, 4, 5), false, BreakRemoved, 3},
		{"removed first", lines(1, 2, 3, 4, 5), false, BreakRemoved, 1},
		{"swapped", lines(0, 1, 3, 2, 4, 5), false, BreakReordered, 3},
		{"swapped last two", lines(0, 1, 2, 3, 5, 4), false, BreakReordered, 5},
		{"moved back", lines(0, 1, 4, 2, 3, 5), false, BreakReordered, 3},
		{"duplicated", lines(0, 1, 2, 1, 3, 4, 5), false, BreakInserted, 4},
		{"inserted forged", with(orig, 2, forged(3, GenesisHash)), false, BreakInserted, 3},
		{"inserted chained", with(orig, 2, forged(3, hashLine(orig[1]))), false, BreakInserted, 3},
		{"truncated", orig, true, BreakTruncated, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			data := append(bytes.Join(tt.lines, []byte("\n")), '\n')
			if tt.noEOL {
				data = data[:len(data)-1]
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			rep, err := VerifyFiles(path)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.wantWhy == "" && rep.Break != nil:
				t.Fatalf("got break %s; want none", rep.Break)
			case tt.wantWhy == "":
				return
			case rep.Break == nil:
				t.Fatalf("got no break; want %s at line %d", tt.wantWhy, tt.wantLine)
			case rep.Break.Why != tt.wantWhy || rep.Break.Line != tt.wantLine || rep.Break.File != path:
				t.Fatalf("got %s; want %s at %s:%d", rep.Break, tt.wantWhy, path, tt.wantLine)
			}
		})
	}
}

func TestVerifyAuditFilesMissing(t *testing.T) {
	_, err := VerifyFiles(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v; want os.ErrNotExist", err)
	}
}

func TestAuditedStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := openTestAudit(t, Config{Path: path})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st, err := cache.Open(cache.Config{Clock: clocktest.New(now)})
	if err != nil {
		t.Fatalf("cache.Open: %v", err)
	}
	defer st.Close()
	s := &Store{Store: st, Log: a}
	var local []bool
	cancel := st.Subscribe(func(e cache.Entry) { local = append(local, s.Local(e)) })
	defer cancel()
	e := cache.Entry{Issuer: "https://idp", Kind: cache.KindSID, Value: "s1", RevokedAt: now, ExpiresAt: now.Add(time.Hour), Initiator: "backchannel:https://idp jti_sha256:00"}
	if _, err := s.Revoke(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if len(local) != 1 || !local[0] || s.Local(e) {
		t.Errorf("Local during Revoke: got %v (after: %v); want [true] (after: false)", local, s.Local(e))
	}
	recs, err := a.Query(context.Background(), Query{})
	if err != nil || len(recs) != 1 {
		t.Fatalf("records: got %d, %v; want 1", len(recs), err)
	}
	r := recs[0]
	if r.Event != EventRevocation || r.Trigger != TriggerBackchannel || r.ReceivedAt.IsZero() || r.AppliedAt.IsZero() || !r.RevokedAt.Equal(now) {
		t.Errorf("record: got %+v; want a backchannel revocation with received, applied and revoked times", r)
	}
	// A failed audit write fails the call, but the revocation stays.
	_ = a.Close()
	e.Value = "s2"
	if _, err := s.Revoke(context.Background(), e); !errors.Is(err, ErrClosed) {
		t.Fatalf("Revoke with a closed audit: got %v; want ErrClosed", err)
	}
	if _, ok := st.Get(e.Issuer, e.Kind, e.Value); !ok {
		t.Error("the revocation was not applied when its audit record failed")
	}
}

// TestAuditMissingNewline: a complete last record without its newline (it
// may have been acknowledged) is kept on reopen, never cut.
func TestAuditMissingNewline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := openTestAudit(t, Config{Path: path})
	for i := range 2 {
		if err := a.Append(context.Background(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = a.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b[:len(b)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	c := openTestAudit(t, Config{Path: path})
	if err := c.Append(context.Background(), testRecord(2)); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyFiles(path); err != nil || rep.Break != nil || rep.Records != 3 {
		t.Fatalf("after reopening: got %+v, %v; want 3 intact records (none cut)", rep, err)
	}
}
