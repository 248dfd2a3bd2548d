package logout

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
	"github.com/oidcgate/oidcgate/introspect"
)

// minAdminTokenLen is the shortest admin token accepted: 32 characters of
// a random token leave nothing to guess.
const minAdminTokenLen = 32

// maxAdminNameLen bounds AdminToken.Name, which is recorded in every
// entry's initiator ("admin:<name>").
const maxAdminNameLen = 64

// defaultSessionMaxAge is Config.SessionMaxAge when zero.
const defaultSessionMaxAge = 24 * time.Hour

// Defaults of ReceiverConfig.
const (
	defaultRatePerSecond       = 50
	defaultBurst               = 500
	defaultSourceRatePerSecond = 5
	defaultSourceBurst         = 50
	// maxSources bounds the client addresses the front-channel receiver
	// keeps a bucket for (see sourceLimiter).
	maxSources = 10_000
)

// maxReceiverIssuerLen bounds the issuers a receiver accepts: the
// initiator of its entries (at most cache.MaxTextLen bytes) names the
// issuer plus a 30-byte prefix and jti digest.
const maxReceiverIssuerLen = cache.MaxTextLen - 64

// AdminToken is one bearer token allowed to call the admin API.
type AdminToken struct {
	// Name identifies the token's holder. It is logged and recorded as the
	// initiator "admin:<name>" of every revocation made with the token.
	// Required: 1 to 64 visible ASCII characters, unique.
	Name string `yaml:"name"`
	// Token is the bearer secret: at least 32 visible ASCII characters (a
	// value with spaces or non-ASCII characters could not be sent in an
	// Authorization header, RFC 6750 §2.1), unique. It is never logged or
	// recorded.
	Token introspect.Secret `yaml:"token"`
	// Roles are what the token may do (see Role). None listed (the key
	// left out) is every role, as before roles existed; check-config warns
	// about it. An empty list (roles: []) is an error.
	Roles []Role `yaml:"roles"`
}

// AdminConfig is the YAML key `admin`. Authentication by mTLS comes with a
// later issue (its client identities will map to roles as tokens do);
// today at least one token is required.
type AdminConfig struct {
	Tokens []AdminToken `yaml:"tokens"`
}

// Validate reports every problem of c at once, each message starting with
// its YAML path relative to `admin` (e.g. "tokens[1].token: shorter than
// 32 characters"). It never includes a token in a message.
func (c AdminConfig) Validate() error {
	var errs []error
	if len(c.Tokens) == 0 {
		errs = append(errs, errors.New("tokens: at least one token is required"))
	}
	names := make(map[string]int, len(c.Tokens))
	digests := make(map[[sha256.Size]byte]int, len(c.Tokens))
	for i, t := range c.Tokens {
		switch {
		case t.Name == "":
			errs = append(errs, fmt.Errorf("tokens[%d].name: required", i))
		case len(t.Name) > maxAdminNameLen:
			errs = append(errs, fmt.Errorf("tokens[%d].name: longer than %d characters", i, maxAdminNameLen))
		case !visibleASCII(t.Name):
			errs = append(errs, fmt.Errorf("tokens[%d].name: only visible ASCII characters are allowed", i))
		default:
			if j, dup := names[t.Name]; dup {
				errs = append(errs, fmt.Errorf("tokens[%d].name: duplicate of tokens[%d].name", i, j))
			} else {
				names[t.Name] = i
			}
		}
		errs = append(errs, validRoles(i, t.Roles)...)
		tok := string(t.Token)
		switch {
		case len(tok) < minAdminTokenLen:
			errs = append(errs, fmt.Errorf("tokens[%d].token: shorter than %d characters", i, minAdminTokenLen))
		case !visibleASCII(tok):
			errs = append(errs, fmt.Errorf("tokens[%d].token: only visible ASCII characters are allowed", i))
		default:
			d := sha256.Sum256([]byte(tok))
			if j, dup := digests[d]; dup {
				errs = append(errs, fmt.Errorf("tokens[%d].token: same as tokens[%d].token", i, j))
			} else {
				digests[d] = i
			}
		}
	}
	return errors.Join(errs...)
}

// validRoles reports the problems of tokens[i].roles.
func validRoles(i int, roles []Role) []error {
	if roles != nil && len(roles) == 0 {
		return []error{fmt.Errorf("tokens[%d].roles: empty; list at least one of %s, or leave roles out for every role", i, roleNames())}
	}
	var errs []error
	seen := RoleSet(0)
	for j, r := range roles {
		b := roleBit(r)
		switch {
		case b == 0:
			errs = append(errs, fmt.Errorf("tokens[%d].roles[%d]: %q is not one of %s", i, j, truncate(string(r), 32), roleNames()))
		case seen&b != 0:
			errs = append(errs, fmt.Errorf("tokens[%d].roles[%d]: %s listed twice", i, j, r))
		}
		seen |= b
	}
	return errs
}

func roleNames() string {
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// Warnings lists what is valid but unsafe in c, each starting with its
// YAML path relative to `admin`: a token without roles holds every role.
func (c AdminConfig) Warnings() []string {
	var out []string
	for i, t := range c.Tokens {
		if t.Roles == nil {
			out = append(out, fmt.Sprintf("tokens[%d].roles: not set, so %q has every role (%s); list only the roles it needs", i, t.Name, roleNames()))
		}
	}
	return out
}

// visibleASCII reports whether s has only characters from '!' to '~'.
func visibleASCII(s string) bool {
	for i := range len(s) {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// Config is everything this package needs. The CLI assembles it: Admin
// from the YAML key `admin`, the rest from `issuers`, `session.max_age`
// and `clock_skew` and from the running process (Store, Verifier, Replays,
// Now, Logger, Metrics). One Config may serve NewAdmin, NewBackchannel and
// NewFrontchannel.
type Config struct {
	// Admin configures the admin revocation API.
	Admin AdminConfig
	// Lifetimes maps each configured issuer to its max_token_lifetime (must
	// be positive); its keys are the known issuers. An entry for an issuer
	// expires at RevokedAt + lifetime + 2×ClockSkew: a token issued up to
	// ClockSkew after the revocation is still revoked (its issuer's clock may
	// run ahead) and is accepted up to ClockSkew past its exp, so the entry
	// must outlive both allowances. Browser sessions of an issuer must not
	// outlive its lifetime (the CLI refuses a session.max_age longer than
	// the login issuer's max_token_lifetime), or a sid or sub entry would
	// expire while a session it revoked still lived. Nil or empty means no
	// issuer is known: only session revocations can be made.
	Lifetimes map[string]time.Duration
	// SessionMaxAge is the longest a gateway session lives; a session entry
	// expires at RevokedAt + SessionMaxAge + ClockSkew (replica clocks may
	// differ by ClockSkew). Zero means 24h.
	SessionMaxAge time.Duration
	// ClockSkew is the clock difference tolerated between the IdP and the
	// gateway and between replicas. Zero means none.
	ClockSkew time.Duration
	// KeyMaxLifetime is api_keys.max_lifetime: how long a key entry must
	// be kept. Zero means DefaultKeyMaxLifetime.
	KeyMaxLifetime time.Duration
	// Store is the revocation store. Required.
	Store Store
	// Receivers configures the back- and front-channel logout receivers;
	// NewAdmin ignores it.
	Receivers ReceiverConfig
	// LiveSIDs knows the (issuer, sid) pairs of live gateway sessions;
	// *cache.Store and *cache.Redis implement it. Required by
	// NewFrontchannel, unused by the others.
	LiveSIDs LiveSIDs
	// FrontchannelOff lists the configured issuers whose front-channel
	// logouts are refused (YAML issuers[].frontchannel_logout: false):
	// those that end sessions by back-channel logout, which carries proof
	// of origin. Nil means every issuer's are accepted.
	FrontchannelOff []string
	// FrontchannelWithoutISS is the issuer a front-channel logout with a
	// sid but no iss is taken for: the one issuer that logs browsers in,
	// when it sets issuers[].frontchannel_logout_without_iss (Microsoft
	// Entra ID sends no iss). "" refuses such requests (400).
	FrontchannelWithoutISS string
	// Verifier verifies back-channel logout tokens; *introspect.Verifier
	// implements it. Required by NewBackchannel, unused by the others.
	Verifier LogoutTokenVerifier
	// Replays is the replay cache of logout-token and SET jtis;
	// *cache.Store implements it. Required by NewBackchannel and NewSSF,
	// unused by the others.
	Replays Replays
	// SETs verifies Shared Signals SETs; *introspect.SETVerifier
	// implements it. Required by NewSSF, unused by the others.
	SETs SETVerifier
	// Assertions verifies the JWTs that authenticate Universal Logout
	// requests; *introspect.Verifier implements it. Required by
	// NewUniversalLogout, unused by the others.
	Assertions AssertionVerifier
	// PublicURL is the gateway's public_url: a Universal Logout JWT's aud
	// must be PublicURL + UniversalLogoutPath. Required by
	// NewUniversalLogout, unused by the others.
	PublicURL string
	// Emails resolves the email subjects of Universal Logout requests;
	// nil answers every email subject 404. Unused by the others.
	Emails EmailDirectory
	// Clock is the clock. Nil means the wall clock.
	Clock clock.Clock
	// Logger receives one info line per accepted revocation. Nil means
	// discard.
	Logger *slog.Logger
	// Metrics registers this package's collectors. Nil means they are
	// kept but not exported. A collector of the same name already
	// registered is shared, so several handlers may use one registry.
	Metrics prometheus.Registerer
}

// Validate reports every problem of c that NewAdmin cares about at once,
// each message starting with the path of the field
// ("admin.tokens[0].name: required", `lifetimes["https://idp"]: not
// positive`). It does no I/O. NewBackchannel and NewFrontchannel judge
// the fields they use instead (see validateReceiver): they need no admin
// tokens.
func (c Config) Validate() error {
	errs := prefixed("admin.", c.Admin.Validate())
	errs = append(errs, c.sharedProblems()...)
	errs = append(errs, prefixed("receivers.", c.Receivers.Validate())...)
	return errors.Join(errs...)
}

// validateReceiver reports every problem of c that NewBackchannel
// (needVerifier) or NewFrontchannel cares about: everything but Admin.
func (c Config) validateReceiver(needVerifier bool) error {
	errs := c.sharedProblems()
	errs = append(errs, prefixed("receivers.", c.Receivers.Validate())...)
	if len(c.Lifetimes) == 0 {
		errs = append(errs, errors.New("lifetimes: at least one issuer is required to receive logouts"))
	}
	for _, iss := range slices.Sorted(maps.Keys(c.Lifetimes)) {
		if len(iss) > maxReceiverIssuerLen && len(iss) <= cache.MaxValueLen {
			errs = append(errs, fmt.Errorf("lifetimes: an issuer is longer than %d bytes, too long to name as a logout's initiator", maxReceiverIssuerLen))
		}
	}
	if needVerifier && c.Verifier == nil {
		errs = append(errs, errors.New("verifier: required"))
	}
	if needVerifier && c.Replays == nil {
		errs = append(errs, errors.New("replays: required"))
	}
	return errors.Join(errs...)
}

// sharedProblems lists the problems of the fields every constructor uses.
func (c Config) sharedProblems() []error {
	var errs []error
	for _, iss := range slices.Sorted(maps.Keys(c.Lifetimes)) {
		switch {
		case iss == "":
			errs = append(errs, errors.New(`lifetimes[""]: empty issuer`))
		case len(iss) > cache.MaxValueLen:
			errs = append(errs, fmt.Errorf("lifetimes: an issuer is longer than %d bytes", cache.MaxValueLen))
		case c.Lifetimes[iss] <= 0:
			errs = append(errs, fmt.Errorf("lifetimes[%q]: max_token_lifetime not positive", iss))
		}
	}
	if c.SessionMaxAge < 0 {
		errs = append(errs, errors.New("session_max_age: negative"))
	}
	if c.ClockSkew < 0 {
		errs = append(errs, errors.New("clock_skew: negative"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("store: required"))
	}
	return errs
}

// ReceiverConfig tunes the back- and front-channel logout receivers.
// Zero values mean the documented defaults.
type ReceiverConfig struct {
	// RatePerSecond is how many logouts per second each configured issuer
	// may have accepted, sustained, per receiver (back- and front-channel
	// are counted apart). 0 means 50.
	RatePerSecond float64 `yaml:"rate_per_second"`
	// Burst is how many logouts an issuer may have accepted at once above
	// the sustained rate. 0 means 500.
	Burst int `yaml:"burst"`
	// SourceRatePerSecond is how many front-channel logout requests per
	// second one client address (an IPv4 address, an IPv6 /64) may make,
	// sustained, whatever their issuer and outcome. 0 means 5.
	SourceRatePerSecond float64 `yaml:"source_rate_per_second"`
	// SourceBurst is how many front-channel logout requests one client
	// address may make at once above its sustained rate. 0 means 50.
	SourceBurst int `yaml:"source_burst"`
}

// Validate reports every problem of c at once, each message starting with
// its YAML key. It does no I/O.
func (c ReceiverConfig) Validate() error {
	var errs []error
	if c.RatePerSecond < 0 || math.IsNaN(c.RatePerSecond) || math.IsInf(c.RatePerSecond, 0) {
		errs = append(errs, errors.New("rate_per_second: not a finite, non-negative number"))
	}
	if c.Burst < 0 {
		errs = append(errs, errors.New("burst: negative"))
	}
	if c.SourceRatePerSecond < 0 || math.IsNaN(c.SourceRatePerSecond) || math.IsInf(c.SourceRatePerSecond, 0) {
		errs = append(errs, errors.New("source_rate_per_second: not a finite, non-negative number"))
	}
	if c.SourceBurst < 0 {
		errs = append(errs, errors.New("source_burst: negative"))
	}
	return errors.Join(errs...)
}

// withDefaults returns c with its zero fields defaulted.
func (c ReceiverConfig) withDefaults() ReceiverConfig {
	if c.RatePerSecond == 0 {
		c.RatePerSecond = defaultRatePerSecond
	}
	if c.Burst == 0 {
		c.Burst = defaultBurst
	}
	if c.SourceRatePerSecond == 0 {
		c.SourceRatePerSecond = defaultSourceRatePerSecond
	}
	if c.SourceBurst == 0 {
		c.SourceBurst = defaultSourceBurst
	}
	return c
}

// withDefaults returns c with every zero field that has a default filled.
func (c Config) withDefaults() Config {
	if c.SessionMaxAge == 0 {
		c.SessionMaxAge = defaultSessionMaxAge
	}
	c.Clock = clock.Or(c.Clock)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// prefixed splits a joined error into its parts and puts prefix in front
// of each, so nested Validate results read as full paths.
func prefixed(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, prefixed(prefix, e)...)
		}
		return out
	}
	return []error{fmt.Errorf("%s%w", prefix, err)}
}

// retention says how long an entry is kept: until no credential it revokes
// can still be accepted. Every revocation source of this package uses it.
type retention struct {
	lifetimes      map[string]time.Duration
	sessionMaxAge  time.Duration
	keyMaxLifetime time.Duration
	skew           time.Duration
}

// retention is c's retention rules; c has its defaults applied.
func (c Config) retention() retention {
	return retention{lifetimes: maps.Clone(c.Lifetimes), sessionMaxAge: c.SessionMaxAge, keyMaxLifetime: cmp.Or(c.KeyMaxLifetime, DefaultKeyMaxLifetime), skew: c.ClockSkew}
}

// expiresAt returns when e may be forgotten; e.Issuer must be a key of
// r.lifetimes unless e.Kind is cache.KindSession. The durations are added
// one by one so that no sum of durations can overflow.
//
// A key entry is kept for the longest a key may live, plus the time its
// record is kept (no key it names can be accepted later). A scheduled
// entry counts from its EffectiveAt.
func (r retention) expiresAt(e cache.Entry) time.Time {
	from := e.RevokedAt
	if e.EffectiveAt.After(from) {
		from = e.EffectiveAt
	}
	switch e.Kind {
	case cache.KindSession:
		return from.Add(r.sessionMaxAge).Add(r.skew)
	case cache.KindKey:
		return from.Add(r.keyMaxLifetime).Add(cache.KeyRetention)
	}
	return from.Add(r.lifetimes[e.Issuer]).Add(r.skew).Add(r.skew)
}
