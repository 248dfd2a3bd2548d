package propagate

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/oidcgate/oidcgate/audit"
	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// TargetSSFReceiver is a push of a Security Event Token to an app that
// listens (ssf.receivers): RFC 8417 SETs delivered per RFC 8935.
const TargetSSFReceiver cache.TargetKind = "ssf_receiver"

// The CAEP 1.0 event types the transmitter sends (CAEP 1.0 §3.1, §3.3).
const (
	EventSessionRevoked   = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	EventCredentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
)

// The credential_type of a credential-change for a client and for an API
// key. CAEP 1.0 §3.3 allows "any other credential type supported mutually
// by the Transmitter and the Receiver"; none of its listed ones fits.
const (
	CredentialTypeClient = "oauth-client"
	CredentialTypeAPIKey = "api-key"
)

// eventNames maps the short names ssf.receivers[].events takes to URIs.
var eventNames = map[string]string{
	"session-revoked":   EventSessionRevoked,
	"credential-change": EventCredentialChange,
}

// Receiver is one entry of ssf.receivers: an app that listens for the
// gateway's SETs at an RFC 8935 push endpoint.
type Receiver struct {
	// Endpoint is the receiver's push endpoint: an absolute https URL
	// (http only on a loopback host: RFC 8935 delivers over TLS). It names
	// the receiver in targets and the status API.
	Endpoint string `yaml:"endpoint"`
	// Audience is the SET's aud: the receiver's own identifier. Required.
	Audience string `yaml:"audience"`
	// AuthorizationHeader is sent as the Authorization field of every push
	// (RFC 8935 §3 leaves the authentication method to the parties);
	// "" sends none.
	AuthorizationHeader Secret `yaml:"authorization_header"`
	// Events are the event types the receiver gets: session-revoked,
	// credential-change (short names or the CAEP URIs). Empty means both.
	Events []string `yaml:"events"`
}

// Validate reports every problem of r at once; paths are relative to the
// receiver (e.g. "endpoint: …"). It does no I/O.
func (r Receiver) Validate() error {
	var errs []error
	if msg := checkEndpoint(r.Endpoint); msg != "" {
		errs = append(errs, fmt.Errorf("endpoint: %s", msg))
	}
	if r.Audience == "" || len(r.Audience) > cache.MaxValueLen {
		errs = append(errs, fmt.Errorf("audience: required, at most %d bytes", cache.MaxValueLen))
	}
	if strings.ContainsAny(string(r.AuthorizationHeader), "\r\n\x00") {
		errs = append(errs, errors.New("authorization_header: holds a line break or NUL"))
	}
	for i, ev := range r.Events {
		if eventURI(ev) == "" {
			errs = append(errs, fmt.Errorf("events[%d]: %q is not session-revoked or credential-change", i, ev))
		}
	}
	return errors.Join(errs...)
}

func checkEndpoint(s string) string {
	u, err := url.Parse(s)
	switch {
	case s == "" || err != nil || u.Host == "" || u.Opaque != "":
		return "required: an absolute URL"
	case len(s) > cache.MaxValueLen:
		return fmt.Sprintf("longer than %d bytes", cache.MaxValueLen)
	case u.User != nil || u.Fragment != "":
		return "must hold no user info or fragment"
	case u.Scheme == "https":
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
	default:
		return "must be https (http only on a loopback host)"
	}
	return ""
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func eventURI(name string) string {
	if uri, ok := eventNames[name]; ok {
		return uri
	}
	for _, uri := range eventNames {
		if uri == name {
			return uri
		}
	}
	return ""
}

// TransmitterConfig configures a Transmitter.
type TransmitterConfig struct {
	// Issuer is the SETs' iss: the gateway's public_url. Required.
	Issuer string
	// Receivers are ssf.receivers; none is allowed (nothing is pushed).
	Receivers []Receiver
	// Keys signs the SETs. Required.
	Keys *KeyRing
	// Client makes the pushes; nil means a client of this package. Either
	// way no redirect is followed (the Authorization header must not
	// travel elsewhere; a redirect is a failed attempt).
	Client *http.Client
	// Clock gives the SETs' iat; nil means the wall clock.
	Clock clock.Clock
	// Logger receives refused pushes; nil discards.
	Logger *slog.Logger
}

// Validate reports every problem of c at once. It does no I/O.
func (c TransmitterConfig) Validate() error {
	var errs []error
	if u, err := url.Parse(c.Issuer); c.Issuer == "" || err != nil || u.Host == "" {
		errs = append(errs, errors.New("propagate: transmitter: Issuer (public_url) must be an absolute URL"))
	}
	if c.Keys == nil {
		errs = append(errs, errors.New("propagate: transmitter: nil Keys"))
	}
	errs = append(errs, ValidateReceivers(c.Receivers))
	return errors.Join(errs...)
}

// ValidateReceivers reports every problem of the ssf.receivers list,
// each with its path relative to `ssf` ("receivers[1].audience: …"): each
// receiver's, and an endpoint listed twice (it names the target).
func ValidateReceivers(rs []Receiver) error {
	var errs []error
	seen := map[string]int{}
	for i, r := range rs {
		for _, err := range unjoin(r.Validate()) {
			errs = append(errs, fmt.Errorf("receivers[%d].%w", i, err))
		}
		if j, dup := seen[r.Endpoint]; dup {
			errs = append(errs, fmt.Errorf("receivers[%d].endpoint: same as receivers[%d]", i, j))
		}
		seen[r.Endpoint] = i
	}
	return errors.Join(errs...)
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Transmitter pushes a SET to each receiver a revocation concerns. Its
// targets are worked by the Worker (WorkerConfig.SSF) like session
// authority calls: durable, leased, retried, audited. New starts nothing.
type Transmitter struct {
	issuer    string
	receivers []receiver
	keys      *KeyRing
	client    *http.Client
	clk       clock.Clock
	log       *slog.Logger
}

type receiver struct {
	Receiver
	events []string // URIs
}

// NewTransmitter validates cfg and applies the defaults.
func NewTransmitter(cfg TransmitterConfig) (*Transmitter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{}
	}
	t := &Transmitter{
		issuer: cfg.Issuer, keys: cfg.Keys, client: noRedirects(client),
		clk: clock.Or(cfg.Clock), log: cfg.Logger,
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	for _, r := range cfg.Receivers {
		rc := receiver{Receiver: r}
		for _, ev := range r.Events {
			rc.events = append(rc.events, eventURI(ev))
		}
		if len(rc.events) == 0 {
			rc.events = []string{EventSessionRevoked, EventCredentialChange}
		}
		t.receivers = append(t.receivers, rc)
	}
	return t, nil
}

// Keys returns the transmitter's key ring.
func (t *Transmitter) Keys() *KeyRing { return t.keys }

// eventOf returns the CAEP event type a revocation of kind k is told as:
// session-revoked for a user's or a session's sessions, credential-change
// for a client's or an API key's; "" for a single token (jti), which no
// receiver can have a session of.
func eventOf(k cache.Kind) string {
	switch k {
	case cache.KindSub, cache.KindSID, cache.KindSession:
		return EventSessionRevoked
	case cache.KindClient, cache.KindKey:
		return EventCredentialChange
	}
	return ""
}

// Plan returns the targets entry e has: one per receiver whose events
// include e's event type, except a receiver that is the same party as the
// SSF transmitter the revocation came from (see sameParty).
func (t *Transmitter) Plan(e cache.Entry) []cache.Target {
	ev := eventOf(e.Kind)
	if ev == "" {
		return nil
	}
	var out []cache.Target
	for _, r := range t.receivers {
		if !slices.Contains(r.events, ev) || sameParty(e.Initiator, r.Receiver) {
			continue
		}
		out = append(out, cache.TargetOf(e, TargetSSFReceiver, r.Endpoint))
	}
	return out
}

// sameParty reports whether a revocation with initiator came from the SSF
// stream of receiver r itself ("ssf:<transmitter issuer> …"): the
// transmitter's issuer is r's audience, or has the origin (scheme, host,
// port) of r's endpoint. That party already knows; telling it again could
// loop between two gateways. Every other receiver is told, even of events
// another transmitter sent.
func sameParty(initiator string, r Receiver) bool {
	rest, ok := strings.CutPrefix(initiator, "ssf:")
	if !ok {
		return false
	}
	iss, _, _ := strings.Cut(rest, " ")
	if iss == "" {
		return false
	}
	if iss == r.Audience {
		return true
	}
	a, err1 := url.Parse(iss)
	b, err2 := url.Parse(r.Endpoint)
	return err1 == nil && err2 == nil && a.Host != "" &&
		strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}

// receiverOf returns the receiver a target names.
func (t *Transmitter) receiverOf(name string) (receiver, bool) {
	for _, r := range t.receivers {
		if r.Endpoint == name {
			return r, true
		}
	}
	return receiver{}, false
}

const (
	// maxPushAnswer bounds what is read of a receiver's answer: an RFC
	// 8935 §2.3 error is a small JSON object; an endless body is cut.
	maxPushAnswer = 16 << 10
	// maxErrDescription bounds the receiver's description kept in a
	// target's last_error.
	maxErrDescription = 200
)

// Push makes one attempt to deliver t's SET to its receiver. nil means
// the receiver acknowledged it (202, RFC 8935 §2.2). A *CallError with
// !Temporary is a permanent refusal (400 with an RFC 8935 §2.4 err code):
// retrying the same SET cannot help. Any other error may be retried.
func (t *Transmitter) Push(ctx context.Context, target cache.Target) error {
	r, ok := t.receiverOf(target.Name)
	if !ok {
		return &CallError{Op: "push", Temporary: true, Err: errors.New("no such receiver configured")}
	}
	set, err := t.sign(r, target)
	if err != nil {
		// The key file is unusable: the target waits for it to be fixed.
		return &CallError{Op: "sign", Temporary: true, Err: err}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Endpoint, strings.NewReader(set))
	if err != nil {
		return &CallError{Op: "push", Err: err}
	}
	// RFC 8935 §2: the SET is the body of a POST whose Content-Type MUST
	// be application/secevent+jwt; an error answer is JSON.
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if r.AuthorizationHeader != "" {
		req.Header.Set("Authorization", string(r.AuthorizationHeader))
	}
	res, err := t.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &CallError{Op: "push", Temporary: true, Err: err}
	}
	defer res.Body.Close()
	body, readErr := io.ReadAll(io.LimitReader(res.Body, maxPushAnswer))
	switch {
	case res.StatusCode == http.StatusAccepted:
		// RFC 8935 §2.2: 202 is the acknowledgement; the body is ignored.
		return nil
	case res.StatusCode == http.StatusBadRequest && readErr == nil:
		// RFC 8935 §2.3: a 400 with a JSON object whose err is a code
		// (§2.4) is a refusal of this SET: permanent.
		if msg, ok := refusal(body); ok {
			return &CallError{Op: "push", Status: res.StatusCode, Err: errors.New("refused: " + msg)}
		}
	}
	return &CallError{Op: "push", Status: res.StatusCode, Temporary: true, RetryAfter: retryAfter(res.Header.Get("Retry-After"), t.clk.Now()),
		Err: fmt.Errorf("answered %d, not 202", res.StatusCode)}
}

// refusal reads an RFC 8935 §2.3 error answer: a JSON object whose err
// is a code (§2.4). It returns "err: description", printable and bounded;
// false when body is no such object.
func refusal(body []byte) (string, bool) {
	var e struct {
		Err         string `json:"err"`
		Description string `json:"description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Err == "" {
		return "", false
	}
	return printableText(e.Err, 64) + ": " + printableText(e.Description, maxErrDescription), true
}

// printableText is s cut to n bytes of printable valid UTF-8.
func printableText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// sign returns the SET of target for receiver r.
func (t *Transmitter) sign(r receiver, target cache.Target) (string, error) {
	k, err := t.keys.signer()
	if err != nil {
		return "", err
	}
	claims, err := t.claims(r, target, t.clk.Now())
	if err != nil {
		return "", err
	}
	// RFC 8417 §2.3: explicit typing (typ secevent+jwt), which the SSF
	// 1.0 SET profile requires of every SET.
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "secevent+jwt", "kid": k.kid})
	return signRS256(k, header, claims)
}

// setJTI is the SET's jti: the same for every attempt at one target of
// one revocation, so that a receiver that acknowledged an attempt whose
// answer was lost takes the retry as the duplicate it is (RFC 8417 §2.2
// jti; RFC 8935 §4 leaves duplicate detection to the recipient).
func setJTI(target cache.Target) string {
	d := sha256.Sum256([]byte(target.ID() + "\x00" + target.RevokedAt.UTC().Format(time.RFC3339Nano)))
	return b64(d[:18])
}

// claims builds the SET (RFC 8417 §2.2; SSF 1.0: subject in a top-level
// sub_id, no sub, no exp, exactly one event).
func (t *Transmitter) claims(r receiver, target cache.Target, now time.Time) ([]byte, error) {
	evType := eventOf(target.EntryKind)
	if evType == "" {
		return nil, fmt.Errorf("propagate: no event for a %s revocation", target.EntryKind)
	}
	event := map[string]any{
		// CAEP 1.0 §3.1, §3.3: event_timestamp MUST be when the session
		// revocation (credential change) occurred: the entry's RevokedAt
		// (for a scheduled revocation, when it takes effect).
		"event_timestamp":   target.RevokedAt.Unix(),
		"initiating_entity": initiatingEntity(target.Initiator),
		// CAEP interoperability profile 1.0: reason_admin MUST be a
		// non-empty value in both event types.
		"reason_admin": map[string]string{"en": reasonAdmin(target)},
	}
	if evType == EventCredentialChange {
		// CAEP 1.0 §3.3: credential_type and change_type are REQUIRED.
		event["change_type"] = "revoke"
		event["credential_type"] = CredentialTypeClient
		if target.EntryKind == cache.KindKey {
			event["credential_type"] = CredentialTypeAPIKey
		}
	}
	c := map[string]any{
		"iss":    t.issuer,
		"aud":    r.Audience,
		"iat":    now.Unix(),
		"jti":    setJTI(target),
		"sub_id": subjectOf(target),
		"events": map[string]any{evType: event},
	}
	return json.Marshal(c)
}

// subjectOf is the SET's subject (RFC 9493) for a revocation:
//   - sub: iss_sub of the user;
//   - sid: complex, its session iss_sub (the IdP's issuer and sid), as the
//     gateway's own receiver reads it;
//   - session: complex, its session opaque with the gateway session's
//     digest (the id itself never leaves the gateway);
//   - client: opaque, the client_id (RFC 9493 has no client format; the
//     credential-change's credential_type says it is a client);
//   - key: opaque, the API key's id.
func subjectOf(t cache.Target) map[string]any {
	opaque := func(id string) map[string]string { return map[string]string{"format": "opaque", "id": id} }
	switch t.EntryKind {
	case cache.KindSub:
		return map[string]any{"format": "iss_sub", "iss": t.Issuer, "sub": t.Value}
	case cache.KindSID:
		return map[string]any{"format": "complex", "session": map[string]string{"format": "iss_sub", "iss": t.Issuer, "sub": t.Value}}
	case cache.KindSession:
		return map[string]any{"format": "complex", "session": opaque(t.Value)}
	}
	return map[string]any{"format": "opaque", "id": t.Value}
}

// initiatingEntity maps who revoked to CAEP 1.0 §2's initiating_entity:
// an operator (admin API, revoke CLI) is admin; a user's own logout (RP,
// back- or front-channel logout) is user; another system's event (SSF,
// Universal Logout, an RFC 7009 call) is system.
func initiatingEntity(initiator string) string {
	switch audit.Trigger(initiator) {
	case audit.TriggerAdmin:
		return "admin"
	case audit.TriggerBackchannel, audit.TriggerFrontchannel, audit.TriggerRPLogout:
		return "user"
	}
	return "system"
}

// reasonAdmin is the revocation's reason as given to the gateway, else
// what happened there: the kind and trigger, never a raw value.
func reasonAdmin(t cache.Target) string {
	if t.Reason != "" {
		return t.Reason
	}
	return fmt.Sprintf("%s revocation at the gateway (trigger %s)", t.EntryKind, audit.Trigger(t.Initiator))
}

// Configuration is the gateway's SSF transmitter configuration metadata
// (SSF 1.0 §7.1), served at /.well-known/ssf-configuration.
type Configuration struct {
	SpecVersion              string   `json:"spec_version"`
	Issuer                   string   `json:"issuer"`
	JWKSURI                  string   `json:"jwks_uri"`
	DeliveryMethodsSupported []string `json:"delivery_methods_supported"`
}

// The public paths of the transmitter's metadata and keys.
const (
	ConfigurationPath = "/.well-known/ssf-configuration"
	JWKSPath          = "/.well-known/ssf-jwks.json"
)

// Configuration returns the metadata. Receivers are configured, not
// created through a stream management API, so it names no
// configuration_endpoint (SSF 1.0 §7.1.1: OPTIONAL).
func (t *Transmitter) Configuration() Configuration {
	return Configuration{
		SpecVersion: "1_0",
		Issuer:      t.issuer,
		JWKSURI:     strings.TrimSuffix(t.issuer, "/") + JWKSPath,
		// SSF 1.0 §7.1.1: the push delivery method URN (RFC 8935).
		DeliveryMethodsSupported: []string{"urn:ietf:rfc:8935"},
	}
}

// ConfigurationHandler serves Configuration (GET, HEAD).
func (t *Transmitter) ConfigurationHandler() http.Handler {
	body, _ := json.Marshal(t.Configuration())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !getOnly(w, r) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(body)
	})
}

// JWKSHandler serves the key ring's public keys (GET, HEAD); 503 when the
// key file holds none that can be read.
func (t *Transmitter) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !getOnly(w, r) {
			return
		}
		data, err := t.keys.JWKS()
		if err != nil || data == nil {
			w.Header().Set("Retry-After", "60")
			http.Error(w, "signing keys unavailable", http.StatusServiceUnavailable)
			return
		}
		// RFC 7517 §8.5.1: application/jwk-set+json. A short cache lets a
		// rotation reach receivers quickly.
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(data)
	})
}

func getOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	// RFC 9110 §15.5.6: a 405 MUST list the allowed methods.
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}
