package propagate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/propagate"
)

const receiverAudience = "https://app.example.com/"

// received is one SET a receiver accepted.
type received struct {
	jti       string
	eventType string
	subject   introspect.SubjectID
	event     map[string]any
	at        time.Time
}

// ssfReceiver is a real RFC 8935 push endpoint on loopback that verifies
// each SET against the transmitter's published JWKS (introspect's SET
// verifier: signature, typ, iss, aud, iat, jti, one event) and checks the
// Authorization header. The same server publishes the transmitter's
// metadata and JWKS, as the gateway's public listener does.
type ssfReceiver struct {
	srv      *httptest.Server
	verifier *introspect.SETVerifier
	// answer, when set, answers a push before it is verified; false lets
	// the push through to verification.
	answer atomic.Pointer[func(w http.ResponseWriter, n int) bool]
	pushes atomic.Int64

	mu   sync.Mutex
	got  []received
	jtis map[string]int
	seen chan received
}

func (r *ssfReceiver) issuer() string   { return r.srv.URL }
func (r *ssfReceiver) endpoint() string { return r.srv.URL + "/events" }

func newSSFReceiver(t *testing.T, tx *atomic.Pointer[propagate.Transmitter]) *ssfReceiver {
	t.Helper()
	r := &ssfReceiver{jtis: map[string]int{}, seen: make(chan received, 64)}
	mux := http.NewServeMux()
	mux.Handle(propagate.JWKSPath, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { tx.Load().JWKSHandler().ServeHTTP(w, req) }))
	mux.Handle(propagate.ConfigurationPath, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tx.Load().ConfigurationHandler().ServeHTTP(w, req)
	}))
	mux.HandleFunc("/events", r.serve)
	r.srv = httptest.NewServer(mux)
	t.Cleanup(r.srv.Close)
	var err error
	r.verifier, err = introspect.NewSETVerifier(introspect.SETConfig{Transmitters: []introspect.Transmitter{{
		Issuer: r.issuer(), JWKSURI: r.issuer() + propagate.JWKSPath, Audience: receiverAudience,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *ssfReceiver) serve(w http.ResponseWriter, req *http.Request) {
	n := int(r.pushes.Add(1))
	if f := r.answer.Load(); f != nil && (*f)(w, n) {
		return
	}
	fail := func(code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"err": code, "description": desc})
	}
	// RFC 8935 §2: POST, application/secevent+jwt.
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); req.Method != http.MethodPost || mt != "application/secevent+jwt" {
		fail("invalid_request", "not a SET push")
		return
	}
	if req.Header.Get("Authorization") != "Bearer push-secret" {
		fail("authentication_failed", "wrong Authorization")
		return
	}
	raw, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
	if err != nil {
		fail("invalid_request", "body unreadable")
		return
	}
	set, err := r.verifier.VerifySET(req.Context(), string(raw))
	if err != nil {
		var se *introspect.SETError
		if errors.As(err, &se) {
			fail(string(se.Code), se.Error())
			return
		}
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	got := received{jti: set.JTI, eventType: set.EventType, subject: set.Subject, event: set.Event, at: time.Now()}
	r.mu.Lock()
	r.jtis[set.JTI]++
	first := r.jtis[set.JTI] == 1
	if first {
		r.got = append(r.got, got)
	}
	r.mu.Unlock()
	if first {
		r.seen <- got
	}
	w.WriteHeader(http.StatusAccepted)
}

func (r *ssfReceiver) setAnswer(f func(w http.ResponseWriter, n int) bool) { r.answer.Store(&f) }

// distinct returns the SETs received, one per jti.
func (r *ssfReceiver) distinct() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

type ssfEnv struct {
	store *cache.Store
	recv  *ssfReceiver
	tx    *propagate.Transmitter
	keys  *propagate.KeyRing
	audit *memAudit
	dir   string
}

// newSSFEnv is a store, a receiver and a transmitter (signing key in a
// fresh data dir) pushing to it; the worker runs until the test ends.
func newSSFEnv(t *testing.T, mutate func(*propagate.Receiver, *propagate.WorkerConfig)) *ssfEnv {
	t.Helper()
	e := &ssfEnv{dir: t.TempDir(), audit: &memAudit{}}
	var err error
	e.store, err = cache.Open(cache.Config{Path: filepath.Join(e.dir, "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.store.Close() })
	var txp atomic.Pointer[propagate.Transmitter]
	e.recv = newSSFReceiver(t, &txp)
	e.keys, err = propagate.OpenKeyRing(filepath.Join(e.dir, propagate.KeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := propagate.Receiver{Endpoint: e.recv.endpoint(), Audience: receiverAudience, AuthorizationHeader: "Bearer push-secret"}
	wc := propagate.WorkerConfig{Store: e.store, Audit: e.audit}
	if mutate != nil {
		mutate(&rc, &wc)
	}
	e.tx, err = propagate.NewTransmitter(propagate.TransmitterConfig{Issuer: e.recv.issuer(), Receivers: []propagate.Receiver{rc}, Keys: e.keys})
	if err != nil {
		t.Fatal(err)
	}
	txp.Store(e.tx)
	wc.SSF = e.tx
	run(t, wc)
	return e
}

// waitTarget waits until the receiver target of the entry is final.
func (e *ssfEnv) waitTarget(t *testing.T, issuer string, kind cache.Kind, value string) cache.Target {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ts, err := e.store.Targets(context.Background(), issuer, kind, value)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ts {
			if x.Kind == propagate.TargetSSFReceiver && x.State.Final() {
				return x
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver target of %s %s never final: %+v", kind, value, ts)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitAudit waits until n targets are audited (the record follows the
// store update) and returns them.
func (e *ssfEnv) waitAudit(t *testing.T, n int) []cache.Target {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := e.audit.all()
		if len(a) >= n || time.Now().After(deadline) {
			return a
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func revokeEntry(t *testing.T, s *cache.Store, e cache.Entry) cache.Entry {
	t.Helper()
	now := time.Now()
	if e.RevokedAt.IsZero() {
		e.RevokedAt = now
	}
	e.ExpiresAt = now.Add(time.Hour)
	got, err := s.Revoke(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestSSFTransmitter: every revocation the store accepts reaches the
// receiver as one verified SET of the right CAEP event type and subject,
// and its target ends done and audited.
func TestSSFTransmitter(t *testing.T) {
	e := newSSFEnv(t, nil)
	tests := []struct {
		entry     cache.Entry
		eventType string
		subject   introspect.SubjectID
	}{
		{cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "alice", Initiator: "admin:ops", Reason: "offboarding"}, propagate.EventSessionRevoked,
			introspect.SubjectID{Format: introspect.FormatIssSub, Issuer: iss, Subject: "alice"}},
		{cache.Entry{Issuer: iss, Kind: cache.KindSID, Value: "sid-1", Initiator: "backchannel:" + iss}, propagate.EventSessionRevoked,
			introspect.SubjectID{Format: introspect.FormatComplex, Session: &introspect.SubjectID{Format: introspect.FormatIssSub, Issuer: iss, Subject: "sid-1"}}},
		{cache.Entry{Kind: cache.KindSession, Value: cache.SessionDigest("gw-session"), Initiator: "rp_logout"}, propagate.EventSessionRevoked,
			introspect.SubjectID{Format: introspect.FormatComplex, Session: &introspect.SubjectID{Format: introspect.FormatOpaque, ID: cache.SessionDigest("gw-session")}}},
		{cache.Entry{Issuer: iss, Kind: cache.KindClient, Value: "billing", Initiator: "admin:ops"}, propagate.EventCredentialChange,
			introspect.SubjectID{Format: introspect.FormatOpaque, ID: "billing"}},
		{cache.Entry{Kind: cache.KindKey, Value: "key-1", Initiator: "admin:ops"}, propagate.EventCredentialChange,
			introspect.SubjectID{Format: introspect.FormatOpaque, ID: "key-1"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.entry.Kind), func(t *testing.T) {
			stored := revokeEntry(t, e.store, tt.entry)
			got := <-e.recv.seen
			if got.eventType != tt.eventType {
				t.Errorf("event type: got %s; want %s", got.eventType, tt.eventType)
			}
			if got.subject.Format != tt.subject.Format || got.subject.Issuer != tt.subject.Issuer || got.subject.Subject != tt.subject.Subject || got.subject.ID != tt.subject.ID ||
				(tt.subject.Session != nil && (got.subject.Session == nil || *got.subject.Session != *tt.subject.Session)) {
				t.Errorf("subject: got %+v; want %+v", got.subject, tt.subject)
			}
			if ts, _ := got.event["event_timestamp"].(float64); int64(ts) != stored.RevokedAt.Unix() {
				t.Errorf("event_timestamp: got %v; want %d", got.event["event_timestamp"], stored.RevokedAt.Unix())
			}
			if ra, _ := got.event["reason_admin"].(map[string]any); ra["en"] == "" || ra["en"] == nil {
				t.Errorf("reason_admin: got %v; want a non-empty en", got.event["reason_admin"])
			}
			if tt.eventType == propagate.EventCredentialChange && got.event["change_type"] != "revoke" {
				t.Errorf("change_type: got %v; want revoke", got.event["change_type"])
			}
			tg := e.waitTarget(t, stored.Issuer, stored.Kind, stored.Value)
			if tg.State != cache.TargetDone || tg.Attempts != 1 || tg.Name != e.recv.endpoint() {
				t.Errorf("target: got %+v; want done after 1 attempt", tg)
			}
		})
	}
	first := e.recv.distinct()[0]
	if got := first.event["reason_admin"].(map[string]any)["en"]; got != "offboarding" {
		t.Errorf("reason_admin of the sub revocation: got %v; want the entry's reason", got)
	}
	if got := first.event["initiating_entity"]; got != "admin" {
		t.Errorf("initiating_entity of an admin revocation: got %v; want admin", got)
	}
	// A single token (jti) has no session a receiver could hold: no SET.
	revokeEntry(t, e.store, cache.Entry{Issuer: iss, Kind: cache.KindJTI, Value: "jti-1", Initiator: "admin:ops"})
	revokeEntry(t, e.store, cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "bob", Initiator: "admin:ops"})
	if got := <-e.recv.seen; got.subject.Subject != "bob" {
		t.Errorf("after a jti revocation: got a SET for %+v; want bob's only", got.subject)
	}
	if n := len(e.recv.distinct()); n != len(tests)+1 {
		t.Errorf("SETs received: got %d; want %d (one per revocation)", n, len(tests)+1)
	}
	if n := len(e.waitAudit(t, len(tests)+1)); n != len(tests)+1 {
		t.Errorf("audited targets: got %d; want %d", n, len(tests)+1)
	}
}

// TestSSFReceiverDown: a receiver that is down gets the SET once it is
// back; every attempt carries the same jti, so it counts one SET.
func TestSSFReceiverDown(t *testing.T) {
	e := newSSFEnv(t, nil)
	e.recv.setAnswer(func(w http.ResponseWriter, n int) bool {
		if n <= 3 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	revokeEntry(t, e.store, cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "alice", Initiator: "admin:ops"})
	tg := e.waitTarget(t, iss, cache.KindSub, "alice")
	if tg.State != cache.TargetDone || tg.Attempts != 4 {
		t.Errorf("target: got %+v; want done after 4 attempts", tg)
	}
	if n := len(e.recv.distinct()); n != 1 {
		t.Errorf("SETs: got %d distinct; want 1", n)
	}
}

// TestSSFRefused: a 400 with an RFC 8935 err code is a permanent failure,
// recorded with the receiver's code and never retried.
func TestSSFRefused(t *testing.T) {
	e := newSSFEnv(t, nil)
	e.recv.setAnswer(func(w http.ResponseWriter, _ int) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"err":"invalid_request","description":"unknown subject"}`))
		return true
	})
	revokeEntry(t, e.store, cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "alice", Initiator: "admin:ops"})
	tg := e.waitTarget(t, iss, cache.KindSub, "alice")
	if tg.State != cache.TargetFailed || tg.Attempts != 1 || !strings.Contains(tg.LastError, "invalid_request") {
		t.Errorf("target: got %+v; want failed after 1 attempt with invalid_request", tg)
	}
	// Another revocation goes through the same worker after it: the
	// refused one was not tried again meanwhile.
	e.recv.setAnswer(func(http.ResponseWriter, int) bool { return false })
	revokeEntry(t, e.store, cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "bob", Initiator: "admin:ops"})
	e.waitTarget(t, iss, cache.KindSub, "bob")
	if n := e.recv.pushes.Load(); n != 2 {
		t.Errorf("pushes: got %d; want 2 (the refused SET not retried)", n)
	}
	if a := e.waitAudit(t, 2); len(a) != 2 || a[0].State != cache.TargetFailed {
		t.Errorf("audit: got %+v; want the failure, then bob's", a)
	}
}

// TestSSFBadReceivers: a receiver that answers slowly, or with an endless
// body, costs one bounded attempt each (then a retry), never a hang.
func TestSSFBadReceivers(t *testing.T) {
	e := newSSFEnv(t, func(_ *propagate.Receiver, wc *propagate.WorkerConfig) {
		wc.CallTimeout, wc.LeaseTTL = 200*time.Millisecond, time.Second
	})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	e.recv.setAnswer(func(w http.ResponseWriter, n int) bool {
		switch n {
		case 1: // slow: answers after the call timeout
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			w.WriteHeader(http.StatusAccepted)
			return true
		case 2: // endless body
			w.WriteHeader(http.StatusBadRequest)
			chunk := []byte(strings.Repeat(`{"err":"`, 1024))
			for range 1 << 14 {
				if _, err := w.Write(chunk); err != nil {
					break
				}
			}
			return true
		}
		return false
	})
	revokeEntry(t, e.store, cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "alice", Initiator: "admin:ops"})
	tg := e.waitTarget(t, iss, cache.KindSub, "alice")
	if tg.State != cache.TargetDone || tg.Attempts != 3 {
		t.Errorf("target: got %+v; want done on the 3rd attempt", tg)
	}
}

// TestSSFNoEcho: a revocation that came from a receiver's own SSF stream
// is not sent back to it (same party: its audience, or its endpoint's
// origin); other receivers still get it.
func TestSSFNoEcho(t *testing.T) {
	tx, err := propagate.NewTransmitter(propagate.TransmitterConfig{
		Issuer: "https://gw.example.com",
		Keys:   &propagate.KeyRing{},
		Receivers: []propagate.Receiver{
			{Endpoint: "https://app.example.com/ssf/events", Audience: "https://app.example.com/"},
			{Endpoint: "https://other.example.com/events", Audience: "urn:other"},
			{Endpoint: "https://creds.example.com/events", Audience: "urn:creds", Events: []string{"credential-change"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	names := func(e cache.Entry) []string {
		var out []string
		for _, t := range tx.Plan(e) {
			out = append(out, t.Name)
		}
		return out
	}
	now := time.Now()
	e := cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "alice", RevokedAt: now, ExpiresAt: now.Add(time.Hour)}
	for _, tt := range []struct {
		initiator string
		want      []string
	}{
		{"admin:ops", []string{"https://app.example.com/ssf/events", "https://other.example.com/events"}},
		{"ssf:https://app.example.com jti_sha256:0123", []string{"https://other.example.com/events"}},
		{"ssf:https://app.example.com/ jti_sha256:0123", []string{"https://other.example.com/events"}},
		{"ssf:urn:other jti_sha256:0123", []string{"https://app.example.com/ssf/events"}},
		{"ssf:https://idp.example.com jti_sha256:0123", []string{"https://app.example.com/ssf/events", "https://other.example.com/events"}},
	} {
		e.Initiator = tt.initiator
		if got := names(e); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %q; want %q", tt.initiator, got, tt.want)
		}
	}
	e.Kind, e.Initiator = cache.KindClient, "admin:ops"
	if got := names(e); len(got) != 3 {
		t.Errorf("client revocation: got %q; want every receiver", got)
	}
}

func TestReceiverValidate(t *testing.T) {
	for _, tt := range []struct {
		r    propagate.Receiver
		want []string
	}{
		{propagate.Receiver{Endpoint: "https://app/events", Audience: "a", Events: []string{"session-revoked", propagate.EventCredentialChange}}, nil},
		{propagate.Receiver{Endpoint: "http://127.0.0.1:9/e", Audience: "a"}, nil},
		{propagate.Receiver{Endpoint: "http://app/events", Audience: "", AuthorizationHeader: "x\r\ny", Events: []string{"account-disabled"}}, []string{
			"endpoint: must be https (http only on a loopback host)",
			"audience: required",
			"authorization_header: holds a line break or NUL",
			`events[0]: "account-disabled" is not session-revoked or credential-change`,
		}},
		{propagate.Receiver{Endpoint: "/events", Audience: "a"}, []string{"endpoint: required: an absolute URL"}},
	} {
		err := tt.r.Validate()
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: got %v; want %q", tt.r, err, w)
			}
		}
		if tt.want == nil && err != nil {
			t.Errorf("%+v: got %v; want valid", tt.r, err)
		}
	}
}

// TestKeyRing: the key is created 0600 on first use, published, rotated
// with the old key kept in the JWKS for the grace period; a corrupt file
// is reported, never overwritten, and its targets wait until it is fixed.
func TestKeyRing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, propagate.KeyFile)
	clk := clocktest.New(time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC))
	ring, err := propagate.OpenKeyRing(path, clk)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	first := kids(t, ring)
	if len(first) != 1 {
		t.Fatalf("JWKS: got %q; want one key", first)
	}
	again, err := propagate.OpenKeyRing(path, clk)
	if err != nil || !slices.Equal(kids(t, again), first) {
		t.Fatalf("reopened: got %q, %v; want the same key", kids(t, again), err)
	}
	kid, err := propagate.RotateKeys(path, time.Hour, clk)
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(t, ring); !slices.Equal(got, []string{first[0], kid}) {
		t.Errorf("after rotation: JWKS got %q; want the old and the new key", got)
	}
	clk.Advance(2 * time.Hour)
	if got := kids(t, ring); !slices.Equal(got, []string{kid}) {
		t.Errorf("after the grace: JWKS got %q; want the new key only", got)
	}

	// A corrupt file: the error is reported, the file is left as it is.
	corrupt := []byte(`{"keys":[{"kid":"x","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}]}`)
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, corrupt, 0o600); err != nil {
		t.Fatal(err)
	}
	broken, err := propagate.OpenKeyRing(bad, clk)
	if err == nil || !errors.Is(err, propagate.ErrKeyFile) || broken.Err() == nil {
		t.Fatalf("corrupt file: got %v; want an ErrKeyFile", err)
	}
	if _, err := propagate.RotateKeys(bad, 0, clk); err == nil {
		t.Error("rotating a corrupt file: got nil; want an error")
	}
	if data, _ := os.ReadFile(bad); string(data) != string(corrupt) {
		t.Error("the corrupt file was overwritten")
	}
	tx, err := propagate.NewTransmitter(propagate.TransmitterConfig{Issuer: "https://gw.example.com", Keys: broken,
		Receivers: []propagate.Receiver{{Endpoint: "https://app.example.com/e", Audience: "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	target := tx.Plan(cache.Entry{Issuer: iss, Kind: cache.KindSub, Value: "alice", RevokedAt: now, ExpiresAt: now.Add(time.Hour)})[0]
	var ce *propagate.CallError
	if err := tx.Push(context.Background(), target); !errors.As(err, &ce) || !ce.Temporary || !errors.Is(err, propagate.ErrKeyFile) {
		t.Errorf("push with a corrupt key file: got %v; want a temporary ErrKeyFile (the target waits)", err)
	}
	// Fixed (here: replaced by a good ring), it signs again.
	good, _ := os.ReadFile(path)
	if err := os.WriteFile(bad, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := broken.Err(); err != nil {
		t.Errorf("after the fix: got %v; want nil", err)
	}
	// Readable by others: refused.
	if err := os.Chmod(bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := broken.Err(); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Errorf("mode 0644: got %v; want a refusal", err)
	}
}

func kids(t *testing.T, r *propagate.KeyRing) []string {
	t.Helper()
	data, err := r.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct {
			Kid, Alg, Kty string
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		if k.Alg != "RS256" || k.Kty != "RSA" {
			t.Errorf("key %+v: want RSA RS256", k)
		}
		out = append(out, k.Kid)
	}
	return out
}

// TestSSFConfiguration: the transmitter metadata names the issuer, the
// JWKS on the public listener and RFC 8935 push.
func TestSSFConfiguration(t *testing.T) {
	e := newSSFEnv(t, nil)
	res, err := http.Get(e.recv.issuer() + propagate.ConfigurationPath)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var c propagate.Configuration
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := propagate.Configuration{SpecVersion: "1_0", Issuer: e.recv.issuer(), JWKSURI: e.recv.issuer() + propagate.JWKSPath, DeliveryMethodsSupported: []string{"urn:ietf:rfc:8935"}}
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Errorf("configuration: got %+v; want %+v", c, want)
	}
	res, err = http.Post(e.recv.issuer()+propagate.JWKSPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to the JWKS: got %d; want 405", res.StatusCode)
	}
}
