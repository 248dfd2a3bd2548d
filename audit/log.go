package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// Audit defaults and bounds.
const (
	// defaultAuditMaxBytes is Config.MaxBytes when zero: 100 MiB.
	defaultAuditMaxBytes = 100 << 20
	// auditQueue bounds the records waiting for the writer; Append blocks
	// (honouring its ctx) while it is full.
	auditQueue = 4096
	// auditMaxBatch bounds the records written with one fsync.
	auditMaxBatch = 512
	// maxAuditLine bounds one line: longer lines are refused when read.
	maxAuditLine = 1 << 20
	// rotatedLayout is the UTC timestamp suffix of a rotated file; it
	// sorts lexically in time order.
	rotatedLayout = "20060102T150405.000000000Z"
)

// GenesisHash is the prev of the first record ever written: 64 zeros.
var GenesisHash = strings.Repeat("0", 2*sha256.Size)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: log closed")

// The event of a Record.
const (
	// EventRevocation is a revocation accepted by this replica.
	EventRevocation = "revocation"
	// EventApplied is a revocation accepted by another replica and applied
	// to this replica's mirror.
	EventApplied = "applied"
	// EventAppLogout is the outcome of one app logout call.
	EventAppLogout = "app_logout"
	// EventRetention records a rotated file that Config.Retention is
	// about to delete, written before the file is deleted.
	EventRetention = "retention"
)

// minRetention is the shortest Config.Retention accepted.
const minRetention = time.Hour

// The trigger of a Record, derived from the entry's Initiator by Trigger.
const (
	TriggerBackchannel  = "backchannel_logout"
	TriggerFrontchannel = "frontchannel_logout"
	TriggerRPLogout     = "rp_logout"
	TriggerAdmin        = "admin"
	TriggerRFC7009      = "rfc7009"
	TriggerSSF          = "ssf"
	// TriggerUniversalLogout: a Global Token Revocation request.
	TriggerUniversalLogout = "universal_logout"
)

// Triggers lists every trigger Trigger returns.
var Triggers = []string{TriggerBackchannel, TriggerFrontchannel, TriggerRPLogout, TriggerAdmin, TriggerRFC7009, TriggerSSF, TriggerUniversalLogout}

// Trigger names the source of a revocation from its initiator:
// "backchannel:<iss> jti_sha256:<hex>" (back-channel logout),
// "frontchannel:<iss>" (front-channel logout), "gateway:sign_out"
// (RP-initiated logout at the gateway), "admin:<token name>" (admin API),
// "rfc7009" or "rfc7009:<client>" (/revoke), "ssf:<transmitter> ..."
// (Shared Signals), "universal_logout:<caller issuer> ..." (Universal
// Logout). Any other initiator yields "".
func Trigger(initiator string) string {
	prefix, _, _ := strings.Cut(initiator, ":")
	switch prefix {
	case "backchannel":
		return TriggerBackchannel
	case "frontchannel":
		return TriggerFrontchannel
	case "admin":
		return TriggerAdmin
	case "rfc7009":
		return TriggerRFC7009
	case "ssf":
		return TriggerSSF
	case "universal_logout":
		return TriggerUniversalLogout
	case "gateway":
		if initiator == "gateway:sign_out" {
			return TriggerRPLogout
		}
	}
	return ""
}

// Target is what a revocation names. Value is the entry's value as
// stored: an identifier (sub, sid, client id, jti, session id) or, for an
// opaque token revoked at /revoke, the token's hash; never a raw token.
type Target struct {
	Issuer string     `json:"issuer,omitempty"`
	Kind   cache.Kind `json:"kind"`
	Value  string     `json:"value"`
}

// AppLogout is the outcome of one app logout call.
type AppLogout struct {
	Route string `json:"route"`
	// Session is a short digest of the gateway session id (never the id).
	Session string `json:"session"`
	// Outcome is ok, not_honoured (the route's app_verify check found the
	// app's session alive after its logout), rejected, failed or dropped.
	Outcome  string `json:"outcome"`
	Status   int    `json:"status,omitempty"`
	Attempts int    `json:"attempts"`
	// VerifyStatus is the app_verify check's status; absent when none.
	VerifyStatus int `json:"verify_status,omitempty"`
}

// Record is one line of the audit log. Its JSON field names are stable:
// tools read them. Zero fields are omitted, except seq, time, event and
// prev.
type Record struct {
	// Seq numbers the records of one chain from 1; Append sets it.
	Seq uint64 `json:"seq"`
	// Time is when the record was written; Append sets it when zero.
	Time time.Time `json:"time"`
	// Replica names the replica that wrote the record; Append sets it to
	// Config.Replica when empty.
	Replica   string   `json:"replica,omitempty"`
	Event     string   `json:"event"`
	Trigger   string   `json:"trigger,omitempty"`
	Initiator string   `json:"initiator,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Targets   []Target `json:"targets,omitempty"`
	// RevokedAt is when the revocation was accepted (on its origin replica).
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// ReceivedAt is when this replica received the request.
	ReceivedAt time.Time `json:"received_at,omitzero"`
	// AppliedAt is when the revocation was enforced on this replica.
	AppliedAt time.Time  `json:"applied_at,omitzero"`
	AppLogout *AppLogout `json:"app_logout,omitempty"`
	// Dropped is the rotated file a retention record names.
	Dropped *Dropped `json:"dropped,omitempty"`
	// Outcome is the final state of one target (EventTarget).
	Outcome *TargetOutcome `json:"outcome,omitempty"`
	// Prev is the hex SHA-256 of the previous line's bytes (without its
	// newline); GenesisHash for the first record. Append sets it.
	Prev string `json:"prev"`
}

// Dropped names a rotated file deleted by retention and the records it
// held: a verifier starts the chain after LastSeq, at LastHash.
type Dropped struct {
	File     string `json:"file"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	LastHash string `json:"last_hash"`
}

// RecordOf returns the record of entry e for event (EventRevocation or
// EventApplied): trigger, initiator, reason, target and revoked_at. A jti
// target is recorded as "sha256:" and the hex SHA-256 of the jti, never
// the jti (a session already is a digest, cache.SessionDigest).
func RecordOf(event string, e cache.Entry) Record {
	value := e.Value
	if e.Kind == cache.KindJTI {
		value = "sha256:" + sha256Hex(value)
	}
	return Record{
		Event:     event,
		Trigger:   Trigger(e.Initiator),
		Initiator: e.Initiator,
		Reason:    e.Reason,
		Targets:   []Target{{Issuer: e.Issuer, Kind: e.Kind, Value: value}},
		RevokedAt: e.RevokedAt.UTC(),
	}
}

// Config configures a Log. The YAML key is `audit`.
type Config struct {
	// Path is the audit file, an absolute path. Required.
	Path string `yaml:"path"`
	// MaxBytes is the size after which the file is rotated (renamed to
	// Path + "." + a UTC timestamp) before the next write. 0 means 100 MiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// Replica names this replica in every record. Empty leaves it out.
	Replica string `yaml:"-"`
	// Clock is the clock of records and rotation. Nil means the wall
	// clock.
	Clock clock.Clock `yaml:"-"`
	// Logger receives rotation and repair notes. Nil discards.
	Logger *slog.Logger `yaml:"-"`
	// Anchor is "SEQ:HASH", an "audit head" kept outside this host (the
	// gateway logs one at most once a minute). At Open the log must hold
	// that record with that hash, or Open fails. "" means the last head
	// the log wrote to its anchor file (AnchorPath), if any.
	Anchor string `yaml:"anchor"`
	// Retention is how long a rotated file is kept after its rotation; at
	// each rotation older ones are deleted, oldest first, each only once
	// every record in it is anchored (a head saved after it) and a
	// retention record naming it (EventRetention: its seq range and last
	// hash) is durable in the log, so no record is ever dropped silently
	// and VerifyFiles still checks what is left. 0 keeps every file;
	// otherwise at least 1h.
	Retention time.Duration `yaml:"retention"`
}

// Validate reports every problem of c at once, each message starting with
// its YAML key. It does no I/O.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Path == "":
		errs = append(errs, errors.New("path: required"))
	case !filepath.IsAbs(c.Path):
		errs = append(errs, errors.New("path: must be an absolute path"))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, errors.New("max_bytes: negative"))
	}
	if c.Retention < 0 || c.Retention > 0 && c.Retention < minRetention {
		errs = append(errs, fmt.Errorf("retention: 0 (keep every file) or at least %s", minRetention))
	}
	if c.Anchor != "" {
		if _, err := ParseAnchor(c.Anchor); err != nil {
			errs = append(errs, fmt.Errorf("anchor: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Log is an append-only, hash-chained JSON Lines file. Append is safe
// for concurrent use: one writer goroutine batches concurrent records and
// makes them durable with one fsync per batch (group commit), so no caller
// holds a lock across an fsync.
type Log struct {
	cfg   Config
	log   *slog.Logger
	queue chan *auditReq
	done  chan struct{}

	mu     sync.RWMutex // guards closed and sends on queue
	closed bool
	once   sync.Once

	// Owned by the writer goroutine.
	f      *os.File
	size   int64
	seq    uint64
	prev   string
	broken error // set when the file's state is unknown: every write fails
	// anchored is when the head was last logged (see commit).
	anchored time.Time
	// anchorSeq is the seq of the last head saved as the anchor: records
	// up to it may be dropped by retention.
	anchorSeq uint64
	// head is (seq, prev) as of the last write, for Head.
	head atomic.Pointer[Anchor]
}

// Head returns the chain's head: the seq and hash of the last record
// written (0 and GenesisHash before the first). Safe for concurrent use.
func (a *Log) Head() Anchor {
	if h := a.head.Load(); h != nil {
		return *h
	}
	return Anchor{Hash: GenesisHash}
}

// auditAnchorEvery bounds how often the audit head is logged.
const auditAnchorEvery = time.Minute

type auditReq struct {
	rec  Record
	done chan error
}

// Open validates cfg, opens (or creates) the file and continues its
// chain from its last line. A last line without its newline (a write torn
// by a crash, never acknowledged) is cut off and logged. It starts the
// writer; Close stops it.
func Open(cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	cfg.Path = filepath.Clean(cfg.Path)
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = defaultAuditMaxBytes
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Log{cfg: cfg, log: cfg.Logger, queue: make(chan *auditReq, auditQueue), done: make(chan struct{}), prev: GenesisHash}
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := a.resume(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %s: %w", cfg.Path, err)
	}
	if a.size == 0 {
		if err := a.resumeRotated(); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	if err := a.checkAnchors(); err != nil {
		f.Close()
		return nil, err
	}
	if err := syncDir(cfg.Path); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	a.f = f
	go a.write()
	return a, nil
}

// resume reads f's last line into seq and prev, cutting off a torn tail,
// and leaves f positioned at its end.
func (a *Log) resume(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	line, end, err := lastLine(f, size)
	if err != nil {
		return err
	}
	if end < size {
		tail := make([]byte, size-end)
		if _, err := f.ReadAt(tail, end); err != nil {
			return err
		}
		if completeRecord(tail, line) {
			// A whole record that only lacks its newline (removed by hand,
			// or the newline's write lost): it may have been acknowledged,
			// so it is kept, never cut.
			a.log.Warn("audit log: the last record lacked its newline; restored", "path", a.cfg.Path)
			if _, err := f.WriteAt([]byte("\n"), size); err != nil {
				return err
			}
			size++
			line, end = tail, size
		} else {
			a.log.Warn("audit log: cutting off a torn last line (a write interrupted before it was acknowledged)", "path", a.cfg.Path, "bytes", size-end)
			if err := f.Truncate(end); err != nil {
				return err
			}
			size = end
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		return err
	}
	a.size = size
	if line == nil {
		return nil
	}
	return a.continueFrom(line)
}

// completeRecord reports whether tail is a whole audit record chained to
// prev, the line before it (nil: tail is the file's first record).
func completeRecord(tail, prev []byte) bool {
	var r struct {
		Seq  uint64 `json:"seq"`
		Prev string `json:"prev"`
	}
	if json.Unmarshal(tail, &r) != nil || r.Seq == 0 {
		return false
	}
	if prev == nil {
		// The file's first record: it follows genesis or a rotated file.
		return len(r.Prev) == len(GenesisHash)
	}
	return r.Prev == hashLine(prev)
}

// checkAnchors compares the chain's head with the anchor of the config
// and with the last one the log wrote (AnchorPath): each record they name
// must be in the chain with its hash. A log restored from an old copy, cut
// short or with a changed record does not start.
func (a *Log) checkAnchors() error {
	if a.cfg.Anchor != "" {
		want, err := ParseAnchor(a.cfg.Anchor)
		if err != nil {
			return fmt.Errorf("audit: anchor: %w", err)
		}
		if err := a.checkAnchor(want, "audit.anchor"); err != nil {
			return err
		}
	}
	path := AnchorPath(a.cfg.Path)
	want, ok, err := readAnchor(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if !ok {
		return nil
	}
	if err := a.checkAnchor(want, path); err != nil {
		return err
	}
	a.anchorSeq = want.Seq
	a.log.Info("audit head matches its anchor", "path", a.cfg.Path, "seq", a.seq, "anchor_seq", want.Seq)
	return nil
}

// resumeRotated continues the chain from the newest rotated file when the
// current file is empty (a crash right after a rotation).
func (a *Log) resumeRotated() error {
	rotated, err := RotatedFiles(a.cfg.Path)
	if err != nil || len(rotated) == 0 {
		return err
	}
	last := rotated[len(rotated)-1]
	f, err := os.Open(last)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	line, _, err := lastLine(f, st.Size())
	if err != nil || line == nil {
		return err
	}
	if err := a.continueFrom(line); err != nil {
		return fmt.Errorf("%s: %w", last, err)
	}
	return nil
}

func (a *Log) continueFrom(line []byte) error {
	var r struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(line, &r); err != nil || r.Seq == 0 {
		return errors.New("last line is not an audit record; the chain cannot be continued (run oidcgate audit verify)")
	}
	a.seq, a.prev = r.Seq, hashLine(line)
	a.head.Store(&Anchor{Seq: a.seq, Hash: a.prev})
	return nil
}

// lastLine returns the last complete line of the first size bytes of f
// (without its newline, nil if there is none) and the offset just after
// that line's newline.
func lastLine(f *os.File, size int64) ([]byte, int64, error) {
	const chunk = 64 << 10
	var tail []byte
	for off := size; off > 0; {
		n := min(int64(chunk), off)
		off -= n
		buf := make([]byte, n, n+int64(len(tail)))
		if _, err := f.ReadAt(buf, off); err != nil {
			return nil, 0, err
		}
		tail = append(buf, tail...)
		last := bytes.LastIndexByte(tail, '\n')
		if last < 0 {
			if int64(len(tail)) > maxAuditLine+1 {
				return nil, 0, errors.New("last line longer than 1 MiB")
			}
			continue
		}
		end := off + int64(last) + 1
		start := bytes.LastIndexByte(tail[:last], '\n')
		if start >= 0 || off == 0 {
			return bytes.Clone(tail[start+1 : last]), end, nil
		}
		if int64(len(tail)) > 2*maxAuditLine+2 {
			return nil, 0, errors.New("last line longer than 1 MiB")
		}
	}
	return nil, 0, nil
}

// hashLine is the chain hash of one line (without its newline).
func hashLine(line []byte) string {
	d := sha256.Sum256(line)
	return hex.EncodeToString(d[:])
}

// Append writes r and returns once it is written and fsync'd. It sets
// r.Seq, r.Prev, r.Time (when zero) and r.Replica (when empty). A nil
// error means the record is durable. When ctx ends first, Append returns
// ctx's error; a record already queued may still be written. After Close
// it returns ErrClosed.
func (a *Log) Append(ctx context.Context, r Record) error {
	req := &auditReq{rec: r, done: make(chan error, 1)}
	if err := a.enqueue(ctx, req); err != nil {
		return err
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("audit: %w", ctx.Err())
	}
}

func (a *Log) enqueue(ctx context.Context, req *auditReq) error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return ErrClosed
	}
	select {
	case a.queue <- req:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: %w", ctx.Err())
	}
}

// Close writes the records already queued, stops the writer and closes
// the file. It is idempotent and safe to call concurrently with Append.
func (a *Log) Close() error {
	var err error
	a.once.Do(func() {
		a.mu.Lock()
		a.closed = true
		close(a.queue)
		a.mu.Unlock()
		<-a.done
		if a.broken == nil && a.seq > 0 {
			a.saveAnchor()
		}
		err = a.f.Close()
	})
	return err
}

// saveAnchor writes the head (seq, prev) to the anchor file, which the
// next Open checks the chain against. A failure is logged: the record is
// written, only the check at the next start is weaker.
func (a *Log) saveAnchor() {
	if err := writeAnchor(AnchorPath(a.cfg.Path), Anchor{Seq: a.seq, Hash: a.prev}); err != nil {
		a.log.Error("audit: the head could not be saved as the anchor", "path", AnchorPath(a.cfg.Path), "error", err)
		return
	}
	a.anchorSeq = a.seq
}

// Path is the current file's path.
func (a *Log) Path() string { return a.cfg.Path }

// write is the writer goroutine: it takes what is queued, up to
// auditMaxBatch records, and commits it with one fsync.
func (a *Log) write() {
	defer close(a.done)
	batch := make([]*auditReq, 0, auditMaxBatch)
	buf := make([]byte, 0, 64<<10)
	for first := range a.queue {
		batch = append(batch[:0], first)
	more:
		for len(batch) < auditMaxBatch {
			select {
			case r, ok := <-a.queue:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		buf = a.commit(batch, buf[:0])
	}
}

// commit writes batch and answers each request. It returns buf for reuse.
func (a *Log) commit(batch []*auditReq, buf []byte) []byte {
	if a.broken == nil && a.size >= a.cfg.MaxBytes {
		if err := a.rotate(); err != nil {
			a.broken = fmt.Errorf("audit: rotation failed: %w", err)
			a.log.Error("audit log: rotation failed; refusing every record until restarted", "path", a.cfg.Path, "error", err)
		} else if a.cfg.Retention > 0 {
			a.applyRetention()
		}
	}
	if a.broken != nil {
		for _, r := range batch {
			r.done <- a.broken
		}
		return buf
	}
	seq, prev := a.seq, a.prev
	errs := make([]error, len(batch))
	now := a.cfg.Clock.Now().UTC()
	for i, req := range batch {
		line, err := a.encode(req.rec, seq, prev, now)
		if err != nil {
			errs[i] = err
			continue
		}
		buf = append(append(buf, line...), '\n')
		seq, prev = seq+1, hashLine(line)
	}
	if err := a.persist(buf); err != nil {
		for _, r := range batch {
			r.done <- err
		}
		return buf
	}
	a.seq, a.prev = seq, prev
	a.head.Store(&Anchor{Seq: seq, Hash: prev})
	if now.Sub(a.anchored) >= auditAnchorEvery {
		// The head, logged at most once per interval, goes wherever the
		// logs go: a copy outside this file to check it against later
		// (oidcgate audit verify --anchor SEQ:HASH), since a hash chain
		// alone cannot show its newest records cut off or changed.
		a.anchored = now
		a.log.Info("audit head", "path", a.cfg.Path, "seq", seq, "hash", prev)
		a.saveAnchor()
	}
	for i, r := range batch {
		r.done <- errs[i]
	}
	return buf
}

// encode is rec's line as the record after (seq, prev) written at now.
func (a *Log) encode(rec Record, seq uint64, prev string, now time.Time) ([]byte, error) {
	rec.Seq, rec.Prev = seq+1, prev
	if rec.Time.IsZero() {
		rec.Time = now
	}
	if rec.Replica == "" {
		rec.Replica = a.cfg.Replica
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return line, nil
}

// applyRetention deletes the rotated files rotated more than Retention
// ago, oldest first, stopping at the first one it must keep: one with a
// record not yet anchored, or one it cannot read. Before each deletion a
// retention record naming the file's records is made durable. Runs on
// the writer goroutine.
func (a *Log) applyRetention() {
	rotated, err := RotatedFiles(a.cfg.Path)
	if err != nil {
		a.log.Error("audit retention: rotated files not listed; none deleted", "path", a.cfg.Path, "error", err)
		return
	}
	now := a.cfg.Clock.Now().UTC()
	cutoff := now.Add(-a.cfg.Retention)
	for _, path := range rotated {
		rotatedAt, err := time.Parse(rotatedLayout, path[len(a.cfg.Path)+1:])
		if err != nil || !rotatedAt.Before(cutoff) {
			return
		}
		first, last, lastHash, err := fileRange(path)
		if err != nil {
			a.log.Error("audit retention: file kept, it could not be read", "file", path, "error", err)
			return
		}
		if last == 0 || last > a.anchorSeq {
			a.log.Warn("audit retention: file kept, its records are not all anchored yet", "file", path, "last_seq", last, "anchor_seq", a.anchorSeq)
			return
		}
		line, err := a.encode(Record{Event: EventRetention, Dropped: &Dropped{File: filepath.Base(path), FirstSeq: first, LastSeq: last, LastHash: lastHash}}, a.seq, a.prev, now)
		if err == nil {
			err = a.persist(append(line, '\n'))
		}
		if err != nil {
			a.log.Error("audit retention: file kept, the retention record was not written", "file", path, "error", err)
			return
		}
		a.seq, a.prev = a.seq+1, hashLine(line)
		a.head.Store(&Anchor{Seq: a.seq, Hash: a.prev})
		if err := os.Remove(path); err != nil {
			a.log.Error("audit retention: file not deleted", "file", path, "error", err)
			return
		}
		if err := syncDir(path); err != nil {
			a.log.Error("audit retention: directory not synced", "file", path, "error", err)
		}
		a.log.Info("audit retention: rotated file deleted", "file", path, "first_seq", first, "last_seq", last, "last_hash", lastHash)
	}
}

// fileRange returns the seq of the first and last records of path and the
// hash of its last line.
func fileRange(path string) (first, last uint64, lastHash string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, "", err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		raw, torn, err := readLine(r)
		switch {
		case errors.Is(err, io.EOF):
			return first, last, lastHash, nil
		case err != nil:
			return 0, 0, "", err
		case torn:
			return 0, 0, "", errors.New("torn last line")
		}
		var rec struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(raw, &rec); err != nil || rec.Seq == 0 {
			return 0, 0, "", errors.New("a line is not an audit record")
		}
		if first == 0 {
			first = rec.Seq
		}
		last, lastHash = rec.Seq, hashLine(raw)
	}
}

// persist appends buf and fsyncs. On failure it cuts the file back to its
// last good size so the chain stays intact; if even that fails, the audit
// is broken for good.
func (a *Log) persist(buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	_, err := a.f.Write(buf)
	if err == nil {
		err = a.f.Sync()
	}
	if err == nil {
		a.size += int64(len(buf))
		return nil
	}
	err = fmt.Errorf("audit: write: %w", err)
	if terr := a.f.Truncate(a.size); terr != nil {
		a.broken = err
		a.log.Error("audit log: a failed write could not be undone; refusing every record until restarted", "path", a.cfg.Path, "error", err)
	} else if _, serr := a.f.Seek(a.size, io.SeekStart); serr != nil {
		a.broken = err
	}
	return err
}

// rotate renames the current file to Path.<UTC timestamp> and starts an
// empty one; the chain (seq, prev) continues into it.
func (a *Log) rotate() error {
	if err := a.f.Close(); err != nil {
		return err
	}
	t := a.cfg.Clock.Now().UTC()
	name := a.cfg.Path + "." + t.Format(rotatedLayout)
	for {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		t = t.Add(time.Nanosecond)
		name = a.cfg.Path + "." + t.Format(rotatedLayout)
	}
	if err := os.Rename(a.cfg.Path, name); err != nil {
		return err
	}
	f, err := os.OpenFile(a.cfg.Path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	a.f, a.size = f, 0
	if err := syncDir(a.cfg.Path); err != nil {
		return err
	}
	a.log.Info("audit log rotated", "path", a.cfg.Path, "rotated_to", name, "seq", a.seq)
	return nil
}

// syncDir fsyncs the directory holding path, so a created or renamed file
// survives a crash.
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// RotatedFiles returns the rotated files of the audit file path
// (path.<UTC timestamp>), oldest first.
func RotatedFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if ts, ok := strings.CutPrefix(e.Name(), base+"."); ok && e.Type().IsRegular() && isRotatedSuffix(ts) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	// ReadDir sorts by name and the suffix sorts in time order.
	return out, nil
}

func isRotatedSuffix(s string) bool {
	_, err := time.Parse(rotatedLayout, s)
	return err == nil && len(s) == len(rotatedLayout)
}
