package logout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/introspect"
)

// SSFPath is where the CLI mounts SSF: on the internal listener, or the
// public one when `ssf.public` is set (DESIGN.md).
const SSFPath = "/ssf/events"

// SETVerifier verifies Shared Signals SETs; *introspect.SETVerifier
// implements it. VerifySET's refusals are *introspect.SETError;
// introspect.ErrUnavailable means it could not decide.
type SETVerifier interface {
	// Transmitter returns the configured transmitter raw claims to come
	// from, unverified.
	Transmitter(raw string) (introspect.Transmitter, bool)
	VerifySET(ctx context.Context, raw string) (*introspect.SET, error)
	// MaxAge is how long after its iat a SET is accepted.
	MaxAge() time.Duration
	// Transmitters lists the configured transmitters.
	Transmitters() []introspect.Transmitter
}

var _ SETVerifier = (*introspect.SETVerifier)(nil)

// maxSETBody bounds a push request's body: introspect refuses SETs longer
// than 16 KiB.
const maxSETBody = 64 << 10

// RFC 8935 §2.4 error codes answered by SSF besides those of
// introspect.SETError.
const (
	setAuthenticationFailed = "authentication_failed"
	// setAccessDenied: the transmitter is not authorised for what the
	// SET asks (here: revoking another issuer's users).
	setAccessDenied = "access_denied"
	// setUnavailable is not an RFC 8935 code: it goes with a 503, a
	// general HTTP error condition (§2.3), never with a 400.
	setUnavailable = "temporarily_unavailable"
)

// ssfReason is the Reason of every entry SSF writes.
const ssfReason = "ssf"

// Values of the labels of oidcgate_ssf_events_total besides resultOK,
// resultInvalid, resultError, resultReplayed and resultRateLimited.
const (
	resultIgnored = "ignored"
	// eventNone labels a push refused before its event type was known.
	eventNone = "none"
	// eventOther labels every event type the gateway does not act on.
	eventOther = "other"
)

// eventLabels names the known event types in metrics.
var eventLabels = map[string]string{
	introspect.EventSessionRevoked:       "session_revoked",
	introspect.EventTokenClaimsChange:    "token_claims_change",
	introspect.EventCredentialChange:     "credential_change",
	introspect.EventAssuranceLevelChange: "assurance_level_change",
	introspect.EventAccountDisabled:      "account_disabled",
	introspect.EventAccountPurged:        "account_purged",
	introspect.EventCredentialCompromise: "credential_compromise",
}

// SSF receives Shared Signals SETs pushed by the configured transmitters
// (RFC 8935, POST /ssf/events) and turns CAEP and RISC events into
// revocations. It is safe for concurrent use.
//
// A valid SET is answered 202 only after its revocations are durable in
// the store; an invalid one is answered 400 with an RFC 8935 §2.4 error
// and changes nothing; a wrong Authorization header is answered 401; a
// verifier, replay-cache or store failure is answered 503 with
// Retry-After, never 202.
//
// What an event revokes (every entry has the reason and initiator of
// provenance: CAEP's reason_admin, else "ssf"; "ssf:<transmitter>
// jti_sha256:<16 hex>" and its initiating_entity):
//   - CAEP session-revoked: the subject's session — (iss, sid) of a complex
//     subject's session — or, with only a user, every credential of the
//     user issued until now (kind sub);
//   - CAEP token-claims-change: every credential of the user issued before
//     the event (its claims changed: every client authenticates again);
//   - CAEP credential-change: every credential of the user issued before
//     the event's event_timestamp (else the SET's iat, never later than
//     now), except for change_type create, which revokes nothing;
//   - CAEP assurance-level-change: with change_direction decrease, as
//     session-revoked; otherwise nothing;
//   - RISC account-disabled, account-purged, credential-compromise: every
//     credential of the user issued until now;
//   - a jwt_id subject (iss, jti), whatever the event: that one token;
//   - any other event type: nothing (logged, answered 202).
//
// The user's issuer: an iss_sub subject names it (an issuer that is not
// configured makes the event change nothing, logged, answered 202); an
// email or opaque subject is revoked as kind sub with the email address
// or id as value under every issuer the transmitter may revoke, which revokes the tokens
// whose sub is that value. A complex subject's opaque session id is a sid
// of the user's iss_sub issuer, or of every issuer the transmitter may revoke. An event naming
// a configured issuer the transmitter may not revoke (introspect.Transmitter.Issuers)
// is refused with access_denied.
type SSF struct {
	receiver
	verifier SETVerifier
	replays  Replays
	// allowed maps each transmitter to the issuers whose users it may
	// revoke (introspect.Transmitter.Issuers).
	allowed map[string][]string
	events  *prometheus.CounterVec
}

// NewSSF validates the fields of cfg it uses (all but Admin; at least one
// issuer in Lifetimes; SETs and Replays set), applies the defaults and
// registers oidcgate_ssf_events_total{event,result}. Receivers' rate
// applies per transmitter.
func NewSSF(cfg Config) (*SSF, error) {
	errs := cfg.sharedProblems()
	errs = append(errs, prefixed("receivers.", cfg.Receivers.Validate())...)
	if len(cfg.Lifetimes) == 0 {
		errs = append(errs, errors.New("lifetimes: at least one issuer is required to revoke for"))
	}
	if cfg.SETs == nil {
		errs = append(errs, errors.New("sets: required"))
	}
	if cfg.Replays == nil {
		errs = append(errs, errors.New("replays: required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	cfg = cfg.withDefaults()
	events, err := registerCounter(cfg.Metrics, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidcgate_ssf_events_total",
		Help: "Shared Signals SETs pushed, by event (session_revoked, credential_change, account_disabled, account_purged, credential_compromise, other, none) and result (ok, ignored, invalid, unauthorized, replayed, rate_limited, error).",
	}, []string{"event", "result"}))
	if err != nil {
		return nil, err
	}
	for _, e := range eventLabels {
		events.WithLabelValues(e, resultOK)
	}
	var transmitters []string
	allowed := make(map[string][]string)
	configured := slices.Sorted(maps.Keys(cfg.Lifetimes))
	for i, t := range cfg.SETs.Transmitters() {
		transmitters = append(transmitters, t.Issuer)
		a, err := t.AllowedIssuers(configured)
		if err != nil {
			errs = append(errs, prefixed(fmt.Sprintf("sets.transmitters[%d].", i), err)...)
		}
		allowed[t.Issuer] = a
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("logout: %w", err)
	}
	return &SSF{
		receiver: newReceiver(cfg, transmitters),
		verifier: cfg.SETs,
		replays:  cfg.Replays,
		allowed:  allowed,
		events:   events,
	}, nil
}

// ServeHTTP handles one push (RFC 8935 §2). It never logs the SET or a
// subject in clear: it logs the transmitter, the event type and SHA-256
// prefixes of the jti and the revoked values.
func (s *SSF) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowOnly(w, r, http.MethodPost) {
		// RFC 8935 §2: the transmitter POSTs.
		s.count(eventNone, resultInvalid)
		writeSETError(w, http.StatusMethodNotAllowed, introspect.SETInvalidRequest, "method must be POST")
		return
	}
	raw, problem := setBody(w, r)
	if problem != "" {
		s.refuse(w, r, eventNone, introspect.SETInvalidRequest, problem, nil)
		return
	}
	if t, ok := s.verifier.Transmitter(raw); ok && t.AuthorizationHeader != "" && !sameSecret(r.Header.Get("Authorization"), string(t.AuthorizationHeader)) {
		// RFC 8935 §4.1: the transmitter authenticates with the header
		// agreed for it. A failed HTTP authentication is answered 401 with
		// a challenge (RFC 9110 §11.6.1, §15.5.2), before any signature
		// is checked; the body carries §2.4's authentication_failed.
		s.count(eventNone, resultUnauthorized)
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "ssf push refused: Authorization header missing or wrong", slog.String("transmitter", t.Issuer))
		scheme, _, _ := strings.Cut(string(t.AuthorizationHeader), " ")
		w.Header().Set("WWW-Authenticate", scheme+` realm="oidcgate-ssf"`)
		writeSETError(w, http.StatusUnauthorized, setAuthenticationFailed, "the transmitter could not be authenticated")
		return
	}
	set, err := s.verifier.VerifySET(r.Context(), raw)
	if se, ok := errors.AsType[*introspect.SETError](err); ok {
		// RFC 8935 §2.3: a SET that fails parsing or validation is answered
		// 400 with the §2.4 code.
		s.refuse(w, r, eventNone, se.Code, "SET refused: "+se.Reason, nil)
		return
	}
	if err != nil {
		s.unavailable(w, r, eventNone, "SET could not be verified", err, nil)
		return
	}
	event := eventOther
	if l, ok := eventLabels[set.EventType]; ok {
		event = l
	}
	attrs := []slog.Attr{
		slog.String("transmitter", set.Transmitter.Issuer),
		slog.String("jti_sha256", digestPrefix(set.JTI)),
		slog.String("event", set.EventType),
		slog.String("subject_format", set.Subject.Format),
	}
	entries, skipped, denied := s.plan(set)
	if denied != "" {
		// The transmitter may not revoke this issuer's users (issue 20):
		// refused, so that it learns its event did nothing. RFC 8935
		// §2.4: access_denied.
		s.refuse(w, r, event, setAccessDenied, "the transmitter may not revoke users of "+denied, attrs)
		return
	}
	if len(entries) == 0 {
		// Unknown events, and subjects of no configured issuer: accepted
		// (the transmitter did nothing wrong) and changed nothing.
		s.count(event, resultIgnored)
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "ssf event accepted and ignored: "+skipped, attrs...)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// Charged only for verified SETs, so forged ones cannot use up a
	// transmitter's budget; before the jti is recorded, so a refused SET
	// may be pushed again.
	if !s.limit(w, set.Transmitter.Issuer) {
		s.count(event, resultRateLimited)
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "ssf push rate limited", attrs...)
		writeSETError(w, http.StatusTooManyRequests, setUnavailable, "too many events from this transmitter; retry later")
		return
	}

	ctx, cancel := detached(r)
	defer cancel()
	// RFC 8417 §2.2: jti identifies the SET. Its side effect happens once:
	// a transmitter retrying a SET it already delivered (RFC 8935 §2
	// leaves duplicates to the recipient) gets the 202 it missed, and
	// nothing is revoked again.
	replayed, replayErr, err := revokeOnce(ctx, s.replays, s.store, ssfReplayKey(set.Transmitter.Issuer, set.JTI), set.IssuedAt.Add(s.verifier.MaxAge()), entries)
	if replayErr != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "ssf: replay cache unavailable", append(attrs, slog.Any("error", replayErr))...)
	}
	switch {
	case err != nil:
		s.unavailable(w, r, event, "revocation not stored", err, attrs)
		return
	case replayed:
		s.count(event, resultReplayed)
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "ssf SET already received; not acted on again", attrs...)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	for _, e := range entries {
		attrs = append(attrs, slog.String(string(e.Kind)+"_sha256", digestPrefix(e.Value)))
	}
	// RFC 8935 §2.2: validated and persisted (Store.Revoke returned nil),
	// only now 202 Accepted, with an empty body.
	s.count(event, resultOK)
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "ssf event stored", attrs...)
	w.WriteHeader(http.StatusAccepted)
}

// setBody returns the SET of a push, or a problem description that is
// safe to send (it never quotes the input).
func setBody(w http.ResponseWriter, r *http.Request) (string, string) {
	// RFC 8935 §2: the Content-Type MUST be application/secevent+jwt.
	body, problem := pushedBody(w, r, "application/secevent+jwt", false, maxSETBody)
	if problem != "" {
		return "", problem
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return "", "body is empty"
	}
	return string(body), ""
}

// sameSecret compares got with want in constant time over SHA-256
// digests, so that neither the content nor the length of want leaks.
func sameSecret(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// ssfReplayKey is the replay-cache key of a SET: a digest of its
// transmitter and jti, length-prefixed so that no two pairs collide.
func ssfReplayKey(transmitter, jti string) string {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(transmitter))))
	h.Write([]byte(transmitter))
	h.Write([]byte(jti))
	return "ssf-jti:" + hex.EncodeToString(h.Sum(nil))
}

// plan returns the entries set revokes; none, with the reason, when it
// revokes nothing; or, in denied, a configured issuer the event names
// whose users its transmitter may not revoke.
func (s *SSF) plan(set *introspect.SET) (entries []cache.Entry, skipped, denied string) {
	now := s.now().UTC()
	user, session := splitSubject(set.Subject)
	allowed := s.allowed[set.Transmitter.Issuer]
	var targets []target
	switch set.EventType {
	case introspect.EventSessionRevoked:
		targets = s.sessionOrUser(session, user, allowed)
	case introspect.EventAssuranceLevelChange:
		// CAEP 1.0 §3.4: a downgrade means the sessions established at the
		// higher level no longer hold; an increase (or a change whose
		// direction the transmitter does not give) takes nothing away.
		if dir, _ := set.Event["change_direction"].(string); dir != "decrease" {
			return nil, "assurance level not decreased", ""
		}
		targets = s.sessionOrUser(session, user, allowed)
	case introspect.EventCredentialChange:
		// CAEP 1.0 §3.3: change_type create is a new credential (a FIDO
		// key enrolled, a certificate issued): nothing the user holds is
		// compromised, so nothing is revoked. revoke, update and delete
		// are; so is a missing or unknown change_type (it is REQUIRED:
		// refusing to act on it could leave a stolen credential in use).
		if ct, _ := set.Event["change_type"].(string); ct == "create" {
			return nil, "credential-change create revokes nothing", ""
		}
		targets = s.userOrSession(user, session, allowed)
	case introspect.EventTokenClaimsChange, introspect.EventAccountDisabled, introspect.EventAccountPurged, introspect.EventCredentialCompromise:
		// The subject's every credential (token-claims-change, CAEP 1.0
		// §3.2: a role or group changed, so every client must
		// authenticate again to get the new claims); a subject that is
		// only a session loses that session.
		targets = s.userOrSession(user, session, allowed)
	default:
		return nil, "event type not acted on", ""
	}
	for _, t := range targets {
		if !slices.Contains(allowed, t.issuer) {
			return nil, "", t.issuer
		}
	}
	if len(targets) == 0 {
		return nil, "subject of no configured issuer", ""
	}
	// The event's time (event_timestamp, else the SET's iat): credentials
	// issued before it are the ones to revoke (CAEP 1.0 credential-change
	// says so; for the others it is when the session or account ended).
	// The same SET then always stores the same entries, so processing it
	// twice changes nothing. A time after now is never used, so that a
	// later login is never revoked in advance.
	revokedAt := set.IssuedAt
	if ts, ok := eventTimestamp(set.Event); ok {
		revokedAt = ts
	}
	if revokedAt.IsZero() || revokedAt.After(now) {
		revokedAt = now
	}
	reason, initiator := provenance(set)
	entries = make([]cache.Entry, 0, len(targets))
	for _, t := range targets {
		e := cache.Entry{Issuer: t.issuer, Kind: t.kind, Value: t.value, RevokedAt: revokedAt, Reason: reason, Initiator: initiator}
		e.ExpiresAt = s.retention.expiresAt(e)
		if !e.ExpiresAt.After(now) {
			// Every credential it would revoke has expired already.
			continue
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil, "event older than every credential it could revoke", ""
	}
	return entries, "", ""
}

// initiatingEntities are the values of CAEP 1.0 §2's initiating_entity.
var initiatingEntities = []string{"admin", "user", "policy", "system"}

// provenance is what an entry of set records as its reason and
// initiator: CAEP 1.0 §2's reason_admin (its "en" message, else the one
// of the first language tag in order; "ssf" without one), and
// "ssf:<transmitter> jti_sha256:<16 hex>" followed by
// " initiating_entity:<admin|user|policy|system>" when the event names
// one. Both depend on the SET alone, so the same SET stores the same
// entries.
func provenance(set *introspect.SET) (reason, initiator string) {
	initiator = "ssf:" + set.Transmitter.Issuer + " jti_sha256:" + digestPrefix(set.JTI)
	if ie, _ := set.Event["initiating_entity"].(string); slices.Contains(initiatingEntities, ie) {
		initiator += " initiating_entity:" + ie
	}
	reason = ssfReason
	if msgs, ok := set.Event["reason_admin"].(map[string]any); ok {
		tags := slices.Sorted(maps.Keys(msgs))
		if i := slices.Index(tags, "en"); i > 0 {
			tags[0], tags[i] = tags[i], tags[0]
		}
		for _, tag := range tags {
			if msg, ok := msgs[tag].(string); ok && strings.TrimSpace(msg) != "" {
				reason = truncate(oneLine(msg), cache.MaxTextLen-len("…"))
				break
			}
		}
	}
	return reason, initiator
}

// oneLine is s with every control character replaced by a space: a
// reason is shown on one line, in logs and `verify-revocation`.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// sessionOrUser are the targets of an event about a session: the session
// when the subject names one, else every credential of the user.
func (s *SSF) sessionOrUser(session, user *introspect.SubjectID, allowed []string) []target {
	if session != nil {
		return s.sessionTargets(session, user, allowed)
	}
	return s.userTargets(user, allowed)
}

// userOrSession are the targets of an event about a user: every
// credential of the user, or the session when the subject is only one.
func (s *SSF) userOrSession(user, session *introspect.SubjectID, allowed []string) []target {
	if user != nil {
		return s.userTargets(user, allowed)
	}
	return s.sessionTargets(session, nil, allowed)
}

// target is one (issuer, kind, value) an event revokes.
type target struct {
	issuer string
	kind   cache.Kind
	value  string
}

// splitSubject returns the user and the session a subject names; either
// may be nil (a complex subject), never both.
func splitSubject(sub introspect.SubjectID) (user, session *introspect.SubjectID) {
	if sub.Format == introspect.FormatComplex {
		return sub.User, sub.Session
	}
	return &sub, nil
}

// userTargets are kind sub entries for user: under its iss_sub issuer
// when that is configured, else (email, opaque) under every issuer.
func (s *SSF) userTargets(user *introspect.SubjectID, allowed []string) []target {
	if user.Format == introspect.FormatJWTID {
		return s.tokenTarget(user)
	}
	if user.Format == introspect.FormatIssSub {
		if _, ok := s.retention.lifetimes[user.Issuer]; !ok {
			return nil
		}
		return []target{{user.Issuer, cache.KindSub, user.Subject}}
	}
	return everyIssuer(allowed, cache.KindSub, subjectValue(user))
}

// sessionTargets are kind sid entries for session: an iss_sub session
// names its issuer and sid; another format's id is a sid of the user's
// iss_sub issuer, or of every issuer of allowed.
func (s *SSF) sessionTargets(session, user *introspect.SubjectID, allowed []string) []target {
	if session.Format == introspect.FormatJWTID {
		return s.tokenTarget(session)
	}
	if session.Format == introspect.FormatIssSub {
		if _, ok := s.retention.lifetimes[session.Issuer]; !ok {
			return nil
		}
		return []target{{session.Issuer, cache.KindSID, session.Subject}}
	}
	if user != nil && user.Format == introspect.FormatIssSub {
		if _, ok := s.retention.lifetimes[user.Issuer]; !ok {
			return nil
		}
		return []target{{user.Issuer, cache.KindSID, subjectValue(session)}}
	}
	return everyIssuer(allowed, cache.KindSID, subjectValue(session))
}

// tokenTarget is the jti entry of a jwt_id subject: that one token of its
// issuer, whatever the event (CAEP 1.0 §3.2's examples name the token
// whose claims changed this way); none when the issuer is not configured.
func (s *SSF) tokenTarget(id *introspect.SubjectID) []target {
	if _, ok := s.retention.lifetimes[id.Issuer]; !ok {
		return nil
	}
	return []target{{id.Issuer, cache.KindJTI, id.JTI}}
}

// everyIssuer is (iss, kind, value) for every issuer of issuers.
func everyIssuer(issuers []string, kind cache.Kind, value string) []target {
	out := make([]target, 0, len(issuers))
	for _, iss := range issuers {
		out = append(out, target{iss, kind, value})
	}
	return out
}

// subjectValue is the identifying value of a non-complex subject.
func subjectValue(id *introspect.SubjectID) string {
	switch id.Format {
	case introspect.FormatIssSub:
		return id.Subject
	case introspect.FormatEmail:
		return id.Email
	}
	return id.ID
}

// eventTimestamp is the CAEP event_timestamp of event (a NumericDate).
func eventTimestamp(event map[string]any) (time.Time, bool) {
	f, ok := event["event_timestamp"].(float64)
	if !ok || math.IsNaN(f) || f < 0 || f > 253402300799 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

func (s *SSF) count(event, result string) { s.events.WithLabelValues(event, result).Inc() }

// refuse answers 400 with an RFC 8935 §2.3 error: Content-Type
// application/json and {"err", "description"}. description never quotes
// the request.
func (s *SSF) refuse(w http.ResponseWriter, r *http.Request, event, code, description string, attrs []slog.Attr) {
	s.count(event, resultInvalid)
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "ssf push refused", append(attrs, slog.String("err", code), slog.String("problem", description))...)
	writeSETError(w, http.StatusBadRequest, code, description)
}

// unavailable answers 503 with Retry-After: the SET was not judged or not
// acted on, so it must not be acknowledged (RFC 8935 §2.2: 202 only once
// it is validated and persisted), and a 400 would tell the transmitter
// the SET is bad.
func (s *SSF) unavailable(w http.ResponseWriter, r *http.Request, event, description string, cause error, attrs []slog.Attr) {
	s.count(event, resultError)
	s.notDone(w, r, "ssf event not done: "+description, cause, attrs)
	writeSETError(w, http.StatusServiceUnavailable, setUnavailable, description+"; retry later")
}

// setErrorBody is RFC 8935 §2.3's error object.
type setErrorBody struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

func writeSETError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, setErrorBody{Err: code, Description: description})
}
