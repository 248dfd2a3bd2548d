package introspect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// defaultSETMaxAge is SETConfig.MaxAge when zero.
const defaultSETMaxAge = 24 * time.Hour

// The event types the gateway acts on (CAEP 1.0 §3, RISC 1.0 §2).
const (
	EventSessionRevoked       = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	EventTokenClaimsChange    = "https://schemas.openid.net/secevent/caep/event-type/token-claims-change"
	EventCredentialChange     = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	EventAssuranceLevelChange = "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change"
	EventAccountDisabled      = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	EventAccountPurged        = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	EventCredentialCompromise = "https://schemas.openid.net/secevent/risc/event-type/credential-compromise"
)

// The error codes of RFC 8935 §2.4 that SETError.Code takes.
const (
	SETInvalidRequest  = "invalid_request"
	SETInvalidKey      = "invalid_key"
	SETInvalidIssuer   = "invalid_issuer"
	SETInvalidAudience = "invalid_audience"
)

// The subject identifier formats a SET may name its subject with (RFC
// 9493 §3.2; complex: SSF 1.0 §3; jwt_id: CAEP 1.0 token-claims-change
// examples, one token by its issuer and jti).
const (
	FormatIssSub  = "iss_sub"
	FormatEmail   = "email"
	FormatOpaque  = "opaque"
	FormatComplex = "complex"
	FormatJWTID   = "jwt_id"
)

// SETError is a refused SET. It wraps ErrInvalidToken; Code is the RFC
// 8935 §2.4 error code a receiver answers with, and Reason is short, safe
// to log and send, and never contains the SET.
type SETError struct {
	Code   string
	Reason string
}

func (e *SETError) Error() string { return "introspect: invalid SET (" + e.Code + "): " + e.Reason }

// Unwrap returns ErrInvalidToken.
func (e *SETError) Unwrap() error { return ErrInvalidToken }

func setError(code, format string, args ...any) error {
	return &SETError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// Transmitter is one trusted Shared Signals transmitter, an entry of the
// YAML list `ssf.transmitters`.
type Transmitter struct {
	// Issuer is the exact "iss" of the transmitter's SETs: an https URL
	// (http only on a loopback host). Required, unique.
	Issuer string `yaml:"issuer"`
	// JWKSURI is the URL of the transmitter's key set. Required.
	JWKSURI string `yaml:"jwks_uri"`
	// Audience is the "aud" the transmitter gives this receiver; a SET
	// must name it. Required.
	Audience string `yaml:"audience"`
	// AuthorizationHeader, when set, is the exact Authorization header
	// value the transmitter sends with every push (RFC 8935 §4.1); a push
	// without it is refused. "" means the SET's signature is the only
	// authentication.
	AuthorizationHeader Secret `yaml:"authorization_header"`
	// Issuers are the configured OIDC issuers (issuers[].issuer) whose
	// users and sessions this transmitter's events may revoke; an event
	// naming another configured issuer is refused with access_denied.
	// Empty means the configured issuer whose issuer is this
	// transmitter's own (an IdP signalling about its own users); a
	// transmitter that is not a configured issuer must list them.
	Issuers []string `yaml:"issuers"`
}

// AllowedIssuers returns the issuers among configured whose users t may
// revoke (see Transmitter.Issuers), or every problem, each prefixed with
// its YAML key relative to the transmitter entry.
func (t Transmitter) AllowedIssuers(configured []string) ([]string, error) {
	if len(t.Issuers) == 0 {
		if slices.Contains(configured, t.Issuer) {
			return []string{t.Issuer}, nil
		}
		return nil, errors.New("issuers: required: the transmitter is not a configured issuer; list the issuers whose users it may revoke")
	}
	var errs []error
	for i, iss := range t.Issuers {
		switch {
		case !slices.Contains(configured, iss):
			errs = append(errs, fmt.Errorf("issuers[%d]: not a configured issuer", i))
		case slices.Index(t.Issuers, iss) < i:
			errs = append(errs, fmt.Errorf("issuers[%d]: duplicate of issuers[%d]", i, slices.Index(t.Issuers, iss)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Clone(t.Issuers), nil
}

// problems lists every problem of t, each prefixed with its YAML key.
func (t Transmitter) problems() []error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	if t.Issuer == "" {
		add("issuer", errors.New("required"))
	} else {
		add("issuer", checkURL(t.Issuer))
	}
	if len(t.Issuer) > cache.MaxTextLen-64 {
		add("issuer", fmt.Errorf("longer than %d bytes", cache.MaxTextLen-64))
	}
	if t.JWKSURI == "" {
		add("jwks_uri", errors.New("required"))
	} else {
		add("jwks_uri", checkURL(t.JWKSURI))
	}
	if t.Audience == "" {
		add("audience", errors.New("required"))
	}
	if h := string(t.AuthorizationHeader); h != "" {
		// RFC 9110 §5.5: a field value has no control characters; leading
		// and trailing whitespace is not part of it, so it could never match.
		for i := range len(h) {
			if h[i] < ' ' || h[i] > '~' {
				add("authorization_header", errors.New("only printable ASCII characters are allowed"))
				break
			}
		}
		if h[0] == ' ' || h[len(h)-1] == ' ' {
			add("authorization_header", errors.New("must not start or end with a space"))
		}
	}
	return errs
}

// SETConfig configures a SETVerifier. Only Transmitters is required.
type SETConfig struct {
	// Transmitters are the trusted transmitters; at least one, no
	// duplicate issuers.
	Transmitters []Transmitter `yaml:"transmitters"`
	// ClockSkew is the leeway for iat; 0 means none.
	ClockSkew time.Duration `yaml:"-"`
	// MaxAge refuses SETs issued longer ago (iat); a SET carries no exp
	// (SSF 1.0 §4.1), so this bounds how long its jti must be remembered
	// against replay. 0 means 24h.
	MaxAge time.Duration `yaml:"-"`
	// JWKSMinRefetchInterval is the per-transmitter cooldown between
	// key-set fetches; 0 means 30s.
	JWKSMinRefetchInterval time.Duration `yaml:"-"`
	// HTTPClient fetches key sets; nil means a client of this package with
	// a 10s timeout that follows no redirects.
	HTTPClient *http.Client `yaml:"-"`
	// Clock is the clock; nil means the wall clock.
	Clock clock.Clock `yaml:"-"`
	// Logger receives key-set refresh events; nil discards.
	Logger *slog.Logger `yaml:"-"`
	// Metrics registers oidcgate_jwks_refresh_total (labelled with the
	// transmitter's issuer); nil registers nothing.
	Metrics prometheus.Registerer `yaml:"-"`
}

// Validate reports every problem of c at once, each prefixed with its
// YAML path relative to `ssf` (e.g. "transmitters[0].audience:
// required"). It does no I/O.
func (c SETConfig) Validate() error {
	var errs []error
	if len(c.Transmitters) == 0 {
		errs = append(errs, errors.New("transmitters: at least one transmitter is required"))
	}
	seen := make(map[string]int, len(c.Transmitters))
	for n, t := range c.Transmitters {
		for _, e := range t.problems() {
			errs = append(errs, fmt.Errorf("transmitters[%d].%w", n, e))
		}
		if first, dup := seen[t.Issuer]; dup && t.Issuer != "" {
			errs = append(errs, fmt.Errorf("transmitters[%d].issuer: duplicate of transmitters[%d]", n, first))
		} else if !dup {
			seen[t.Issuer] = n
		}
	}
	for _, f := range []struct {
		field string
		d     time.Duration
	}{
		{"clock_skew", c.ClockSkew},
		{"max_age", c.MaxAge},
		{"jwks_min_refetch_interval", c.JWKSMinRefetchInterval},
	} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative", f.field))
		}
	}
	return errors.Join(errs...)
}

// SubjectID is a subject identifier (RFC 9493 §3) of a format the gateway
// understands. Exactly the members of Format are set.
type SubjectID struct {
	// Format is FormatIssSub, FormatEmail, FormatOpaque, FormatJWTID or
	// FormatComplex.
	Format string
	// Issuer and Subject are the iss and sub of FormatIssSub; Issuer and
	// JTI the iss and jti of FormatJWTID.
	Issuer  string
	Subject string
	JTI     string
	// Email is the address of FormatEmail, as sent.
	Email string
	// ID is the identifier of FormatOpaque.
	ID string
	// User and Session are the members of FormatComplex that the gateway
	// acts on (at least one is set; each is iss_sub, email or opaque); the
	// complex subject's other members are ignored.
	User    *SubjectID
	Session *SubjectID
}

// SET is a verified Security Event Token (RFC 8417) of the SSF 1.0
// profile, carrying exactly one event.
type SET struct {
	// Transmitter is the configured transmitter that issued it.
	Transmitter Transmitter
	JTI         string
	IssuedAt    time.Time
	// EventType is the URI naming the one event.
	EventType string
	// Subject is the top-level sub_id, or the event's "subject" member
	// (CAEP events of SSF drafts put it there).
	Subject SubjectID
	// Event is the event's payload, decoded as encoding/json decodes into
	// any; it includes "subject" when the subject was given there.
	Event map[string]any
}

// SETVerifier verifies SETs pushed by the configured transmitters. Its
// methods are safe for concurrent use.
type SETVerifier struct {
	transmitters map[string]*transmitterState
	now          func() time.Time
	skew         time.Duration
	maxAge       time.Duration
	log          *slog.Logger
	refreshes    *prometheus.CounterVec
	// fetches dedupes concurrent key-set fetches per transmitter.
	fetches singleflight.Group
}

type transmitterState struct {
	cfg  Transmitter
	keys *keySource
}

// NewSETVerifier validates cfg, applies defaults and returns a
// SETVerifier. It does no network I/O: a transmitter's key set is fetched
// by the first VerifySET that needs it, and again (at most once per
// cooldown) when a SET names an unknown key.
func NewSETVerifier(cfg SETConfig) (*SETVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("introspect: ssf: %w", err)
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = defaultSETMaxAge
	}
	if cfg.JWKSMinRefetchInterval == 0 {
		cfg.JWKSMinRefetchInterval = defaultJWKSMinRefetchInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultClient()
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	refreshes := newRefreshCounter()
	if cfg.Metrics != nil {
		var err error
		if refreshes, err = register(cfg.Metrics, refreshes); err != nil {
			return nil, err
		}
	}
	v := &SETVerifier{
		transmitters: make(map[string]*transmitterState, len(cfg.Transmitters)),
		now:          cfg.Clock.Now,
		skew:         cfg.ClockSkew,
		maxAge:       cfg.MaxAge,
		log:          cfg.Logger,
		refreshes:    refreshes,
	}
	for _, t := range cfg.Transmitters {
		v.transmitters[t.Issuer] = &transmitterState{cfg: t, keys: &keySource{
			issuer:    Issuer{Issuer: t.Issuer, JWKSURI: t.JWKSURI},
			client:    cfg.HTTPClient,
			now:       cfg.Clock.Now,
			cooldown:  cfg.JWKSMinRefetchInterval,
			onRefresh: v.refreshed,
		}}
	}
	return v, nil
}

// MaxAge is how long after its iat a SET is accepted; a receiver must
// remember a SET's jti at least this long (plus the clock skew).
func (v *SETVerifier) MaxAge() time.Duration { return v.maxAge + v.skew }

// Transmitters returns the configured transmitters, in no particular
// order.
func (v *SETVerifier) Transmitters() []Transmitter {
	out := make([]Transmitter, 0, len(v.transmitters))
	for _, t := range v.transmitters {
		out = append(out, t.cfg)
	}
	return out
}

// refreshed records the outcome of a key-set fetch.
func (v *SETVerifier) refreshed(issuer string, err error) {
	if err != nil {
		v.refreshes.WithLabelValues(issuer, "error").Inc()
		v.log.Warn("introspect: transmitter key set refresh failed; keeping the previous keys", "transmitter", issuer, "error", err)
		return
	}
	v.refreshes.WithLabelValues(issuer, "ok").Inc()
}

// Transmitter returns the configured transmitter that raw names as its
// issuer, without verifying anything, so that a receiver can check the
// transmitter's Authorization header before spending a signature
// verification. false when raw is malformed or names no transmitter.
func (v *SETVerifier) Transmitter(raw string) (Transmitter, bool) {
	if len(raw) > maxTokenBytes || !compactAlphabet(raw) {
		return Transmitter{}, false
	}
	u, err := parseCompact(raw)
	if err != nil {
		return Transmitter{}, false
	}
	t, ok := v.transmitters[u.iss]
	if !ok {
		return Transmitter{}, false
	}
	return t.cfg, true
}

// VerifySET verifies raw, a SET pushed by a transmitter, against RFC 8417
// and the SSF 1.0 SET profile, except the jti replay check, which needs
// state the caller keeps. A refused SET's error is a *SETError (wrapping
// ErrInvalidToken) whose Code maps to RFC 8935 §2.4; ErrUnavailable means
// the transmitter's keys could not be loaded (the caller must not
// acknowledge the SET).
func (v *SETVerifier) VerifySET(ctx context.Context, raw string) (*SET, error) {
	if len(raw) > maxTokenBytes {
		return nil, setError(SETInvalidRequest, "longer than %d bytes", maxTokenBytes)
	}
	// parseCompact refuses JWE, JSON serialization, crit and b64: a SET
	// here is a compact JWS (RFC 8417 §2, RFC 7515 §7.1). Its decoder
	// skips CR and LF, so they are refused first: one SET, one encoding.
	if !compactAlphabet(raw) {
		return nil, setError(SETInvalidRequest, "not a compact JWS (characters outside base64url and '.')")
	}
	u, err := parseCompact(raw)
	if err != nil {
		return nil, setError(SETInvalidRequest, "%s", reasonOf(err))
	}
	// RFC 8417 §2.3 and SSF 1.0 §4.1: SETs are explicitly typed
	// secevent+jwt, which also keeps ID, access and logout tokens (and a
	// SET of another profile that omits typ) from passing for one.
	if u.header.typ == "" {
		return nil, setError(SETInvalidRequest, "typ missing")
	}
	if normalizeTyp(u.header.typ) != "application/secevent+jwt" {
		return nil, setError(SETInvalidRequest, "typ %.40q is not secevent+jwt", u.header.typ)
	}
	// RFC 8935 §2: the SET Issuer must be one the recipient accepts SETs
	// from; the lookup is exact.
	t, ok := v.transmitters[u.iss]
	if !ok {
		return nil, setError(SETInvalidIssuer, "unknown transmitter %.100q", u.iss)
	}
	alg := u.header.alg
	// RFC 8725 §3.1: never "none" nor HMAC (keyed with a public key).
	if !isAsymmetricAlg(alg) {
		return nil, setError(SETInvalidRequest, "alg %.20q not allowed", alg)
	}
	pub, err := t.keys.key(ctx, &v.fetches, alg, u.header.kid)
	if errors.Is(err, ErrUnavailable) {
		return nil, err
	}
	if err != nil {
		return nil, setError(SETInvalidKey, "%s", reasonOf(err))
	}
	if err := checkSignature(raw, alg, pub); err != nil {
		return nil, setError(SETInvalidKey, "%s", reasonOf(err))
	}
	return v.checkClaims(t, u)
}

// reasonOf is the reason of a tokenError, else its message.
func reasonOf(err error) string {
	if te, ok := errors.AsType[*tokenError](err); ok {
		return te.reason
	}
	return err.Error()
}

// checkClaims judges the verified claims of a SET of t.
func (v *SETVerifier) checkClaims(t *transmitterState, u *unverified) (*SET, error) {
	m := u.claims
	// RFC 8935 §2: the recipient must be an intended audience.
	av, ok := m["aud"]
	if !ok {
		return nil, setError(SETInvalidAudience, "aud missing")
	}
	aud, ok := stringOrArray(av)
	if !ok {
		return nil, setError(SETInvalidRequest, "aud is not a string or an array of strings")
	}
	if !slices.Contains(aud, t.cfg.Audience) {
		return nil, setError(SETInvalidAudience, "aud does not name this receiver")
	}
	// SSF 1.0 §4.1: the subject is sub_id, never sub, and a SET has no
	// exp (RFC 8417 §2.2: exp is not useful for a statement of fact).
	if _, ok := m["sub"]; ok {
		return nil, setError(SETInvalidRequest, "sub present (SSF SETs name their subject with sub_id)")
	}
	if _, ok := m["exp"]; ok {
		return nil, setError(SETInvalidRequest, "exp present")
	}
	// RFC 8417 §2.2: iat and jti are REQUIRED.
	iv, ok := m["iat"]
	if !ok {
		return nil, setError(SETInvalidRequest, "iat missing")
	}
	iat, ok := numericDate(iv)
	if !ok {
		return nil, setError(SETInvalidRequest, "iat is not a NumericDate")
	}
	now := v.now()
	if iat.After(now.Add(v.skew)) {
		return nil, setError(SETInvalidRequest, "issued in the future (iat)")
	}
	if now.Sub(iat) > v.maxAge+v.skew {
		return nil, setError(SETInvalidRequest, "issued longer ago than %s (iat)", v.maxAge)
	}
	var jti string
	if !stringMember(m, "jti", &jti) {
		return nil, setError(SETInvalidRequest, "jti is not a string")
	}
	if jti == "" {
		return nil, setError(SETInvalidRequest, "jti missing")
	}
	// RFC 8417 §2.2: events is a JSON object whose members are JSON
	// objects; SSF 1.0 §4.1: exactly one event per SET.
	var events map[string]json.RawMessage
	ev, ok := m["events"]
	if !ok || unmarshalObject(ev, &events) != nil {
		return nil, setError(SETInvalidRequest, "events missing or not a JSON object")
	}
	if len(events) != 1 {
		return nil, setError(SETInvalidRequest, "events has %d members; want exactly one", len(events))
	}
	var eventType string
	var payload json.RawMessage
	for k, p := range events {
		eventType, payload = k, p
	}
	if eventType == backchannelLogoutEvent {
		// A logout token is never a SET pushed here (OpenID Connect
		// Back-Channel Logout 1.0 §2.4 uses its own endpoint and typ).
		return nil, setError(SETInvalidRequest, "a back-channel logout token is not a Shared Signals event")
	}
	var event map[string]json.RawMessage
	if unmarshalObject(payload, &event) != nil {
		return nil, setError(SETInvalidRequest, "the event is not a JSON object")
	}
	sub, err := setSubject(m, event)
	if err != nil {
		return nil, err
	}
	var decoded map[string]any
	if err := json.Unmarshal(payload, &decoded); err != nil {
		return nil, setError(SETInvalidRequest, "the event is not valid JSON")
	}
	return &SET{
		Transmitter: t.cfg,
		JTI:         jti,
		IssuedAt:    iat,
		EventType:   eventType,
		Subject:     sub,
		Event:       decoded,
	}, nil
}

// setSubject returns the SET's subject: the top-level sub_id (RFC 9493 §4,
// SSF 1.0 §3), or the event's "subject" member (CAEP events of SSF
// drafts). Exactly one must be present.
func setSubject(claims, event map[string]json.RawMessage) (SubjectID, error) {
	top, hasTop := claims["sub_id"]
	inEvent, hasEvent := event["subject"]
	switch {
	case hasTop && hasEvent:
		return SubjectID{}, setError(SETInvalidRequest, "subject given both as sub_id and in the event")
	case hasEvent:
		return parseSubjectID(inEvent, true)
	case hasTop:
		return parseSubjectID(top, true)
	}
	return SubjectID{}, setError(SETInvalidRequest, "sub_id missing")
}

// parseSubjectID decodes a subject identifier of format iss_sub, email,
// opaque, jwt_id or (when allowComplex) complex. RFC 9493 §3.2: each format's
// members are REQUIRED strings; a value longer than cache.MaxValueLen
// could not be revoked and is refused.
func parseSubjectID(raw json.RawMessage, allowComplex bool) (SubjectID, error) {
	var m map[string]json.RawMessage
	if unmarshalObject(raw, &m) != nil {
		return SubjectID{}, setError(SETInvalidRequest, "subject identifier is not a JSON object")
	}
	str := func(name string) (string, error) {
		var s string
		if !stringMember(m, name, &s) || s == "" {
			return "", setError(SETInvalidRequest, "subject identifier member %q missing or not a string", name)
		}
		if len(s) > cache.MaxValueLen {
			return "", setError(SETInvalidRequest, "subject identifier member %q longer than %d bytes", name, cache.MaxValueLen)
		}
		return s, nil
	}
	format, err := str("format")
	if err != nil {
		return SubjectID{}, err
	}
	id := SubjectID{Format: format}
	switch format {
	case FormatIssSub:
		if id.Issuer, err = str("iss"); err != nil {
			return SubjectID{}, err
		}
		id.Subject, err = str("sub")
	case FormatEmail:
		id.Email, err = str("email")
	case FormatOpaque:
		id.ID, err = str("id")
	case FormatJWTID:
		if id.Issuer, err = str("iss"); err != nil {
			return SubjectID{}, err
		}
		id.JTI, err = str("jti")
	case FormatComplex:
		if !allowComplex {
			return SubjectID{}, setError(SETInvalidRequest, "a complex subject's member is itself complex")
		}
		for _, f := range []struct {
			name string
			dst  **SubjectID
		}{{"user", &id.User}, {"session", &id.Session}} {
			if v, ok := m[f.name]; ok {
				s, err := parseSubjectID(v, false)
				if err != nil {
					return SubjectID{}, err
				}
				*f.dst = &s
			}
		}
		if id.User == nil && id.Session == nil {
			return SubjectID{}, setError(SETInvalidRequest, "complex subject has neither user nor session")
		}
	default:
		return SubjectID{}, setError(SETInvalidRequest, "subject identifier format %.40q not supported", format)
	}
	if err != nil {
		return SubjectID{}, err
	}
	return id, nil
}
