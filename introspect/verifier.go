package introspect

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// Verifier verifies JWT access tokens of the configured issuers and checks
// every verified credential against the revocation store. Its methods are
// safe for concurrent use.
type Verifier struct {
	issuers      map[string]*issuerState
	order        []*issuerState
	revocations  Revocations
	now          func() time.Time
	clk          clock.Clock
	skew         time.Duration
	cacheMaxTTL  time.Duration
	refreshEvery time.Duration
	log          *slog.Logger

	results   *ristretto.Cache[uint64, *result]
	closeOnce sync.Once
	// fetches dedupes concurrent key-set fetches per issuer.
	fetches singleflight.Group
	// remote introspects opaque tokens; nil without an issuer that has an
	// introspection_endpoint.
	remote *remote
	// introspections dedupes concurrent introspections of one token.
	introspections singleflight.Group
	introspected   *prometheus.CounterVec

	refreshes *prometheus.CounterVec
	cacheHit  prometheus.Counter
	cacheMiss prometheus.Counter
}

// issuerState is one configured issuer with defaults applied.
type issuerState struct {
	cfg Issuer
	// types are the accepted typ values, normalised by normalizeTyp.
	types []string
	keys  *keySource
	// endpoints is the discovery document's endpoints once fetched.
	endpoints atomic.Pointer[Endpoints]
}

// result is a cached verification: the token's SHA-256 (the cache key is
// only its first 8 bytes) and what the hot path needs.
type result struct {
	sum    [sha256.Size]byte
	claims *Claims
	cred   cache.Credential
	// byHash names an introspected token by its hash (TokenHashID), so
	// that /revoke can revoke an opaque token; zero for local JWTs.
	byHash cache.Credential
	// until is when the cached result must no longer be used.
	until time.Time
	// inactive, when not nil, makes this a cached negative introspection
	// result: the token is refused for this reason.
	inactive error
}

// New validates cfg, applies defaults and returns a Verifier. It does no
// network I/O: key sets are loaded by Run, Ready or the first Verify.
func New(cfg Config) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("introspect: %w", err)
	}
	if cfg.CacheMaxTTL == 0 {
		cfg.CacheMaxTTL = defaultCacheMaxTTL
	}
	if cfg.CacheMaxEntries == 0 {
		cfg.CacheMaxEntries = defaultCacheMaxEntries
	}
	if cfg.JWKSRefreshInterval == 0 {
		cfg.JWKSRefreshInterval = defaultJWKSRefreshInterval
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
	tokenCache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidcgate_token_cache_total",
		Help: "Verified-token cache lookups, by result (hit, miss).",
	}, []string{"result"})
	introspected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidcgate_introspection_requests_total",
		Help: "Calls to the issuer's introspection endpoint, by result (active, inactive, error).",
	}, []string{"result"})
	if cfg.Metrics != nil {
		var err error
		if refreshes, err = register(cfg.Metrics, refreshes); err != nil {
			return nil, err
		}
		if tokenCache, err = register(cfg.Metrics, tokenCache); err != nil {
			return nil, err
		}
		if introspected, err = register(cfg.Metrics, introspected); err != nil {
			return nil, err
		}
	}

	v := &Verifier{
		issuers:      make(map[string]*issuerState, len(cfg.Issuers)),
		revocations:  cfg.Revocations,
		now:          cfg.Clock.Now,
		clk:          cfg.Clock,
		skew:         cfg.ClockSkew,
		cacheMaxTTL:  cfg.CacheMaxTTL,
		refreshEvery: cfg.JWKSRefreshInterval,
		log:          cfg.Logger,
		refreshes:    refreshes,
		introspected: introspected,
		cacheHit:     tokenCache.WithLabelValues("hit"),
		cacheMiss:    tokenCache.WithLabelValues("miss"),
	}
	for _, is := range cfg.Issuers {
		is = is.WithDefaults()
		st := &issuerState{cfg: is, keys: &keySource{
			issuer:    is,
			client:    cfg.HTTPClient,
			now:       cfg.Clock.Now,
			cooldown:  cfg.JWKSMinRefetchInterval,
			onRefresh: v.refreshed,
		}}
		for _, t := range is.AccessTokenTypes {
			st.types = append(st.types, normalizeTyp(t))
		}
		v.issuers[is.Issuer] = st
		v.order = append(v.order, st)
		if is.IntrospectionEndpoint != "" {
			v.remote = &remote{is: st, client: cfg.HTTPClient}
		}
		for _, r := range []string{"ok", "error"} {
			refreshes.WithLabelValues(is.Issuer, r)
		}
	}

	results, err := ristretto.NewCache(&ristretto.Config[uint64, *result]{
		NumCounters:        10 * cfg.CacheMaxEntries,
		MaxCost:            cfg.CacheMaxEntries,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("introspect: result cache: %w", err)
	}
	v.results = results
	return v, nil
}

// defaultClient is the HTTP client of this package when none is given:
// a timeout, and no redirects (one could lead a key fetch off https, or
// carry a token to another party).
func defaultClient() *http.Client {
	return &http.Client{
		Timeout:       defaultHTTPTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// register registers c with reg, or returns the collector already
// registered under its name (a second Verifier on the same registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("introspect: register metrics: %w", err)
	}
	return c, nil
}

// Close releases the result cache. Call it once Verify is no longer being
// called (after the server has drained); Verify keeps working afterwards,
// without the cache. Close is idempotent.
func (v *Verifier) Close() {
	v.closeOnce.Do(v.results.Close)
}

// Verify verifies raw, a JWT access token, and returns its claims. The
// returned *Claims is shared with the cache: treat it as read-only.
//
// A bad credential's error wraps ErrInvalidToken (and ErrExpired or
// ErrRevoked where that applies) with a reason safe to log; ErrUnavailable
// means no key set could be loaded for the token's issuer. A cached result
// is still checked for expiry and revocation.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if raw == "" {
		return nil, invalid("empty")
	}
	if len(raw) > maxTokenBytes {
		return nil, invalid("longer than %d bytes", maxTokenBytes)
	}
	sum := tokenDigest(raw)
	key := binary.LittleEndian.Uint64(sum[:8])
	// The full digest is compared: the 64-bit key alone could be forced to
	// collide with another token's.
	// until is checked against the injected clock: ristretto's own TTL
	// runs on the wall clock.
	if r, ok := v.results.Get(key); ok && r.sum == sum && v.now().Before(r.until) {
		v.cacheHit.Inc()
		return v.admit(r)
	}
	v.cacheMiss.Inc()
	if v.wantsRemote(raw) {
		return v.verifyRemote(ctx, raw, sum, key)
	}
	c, err := v.verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	r := &result{sum: sum, claims: c, cred: c.Credential()}
	if c.JTI == "" {
		// Without a jti, /revoke names the token by its hash.
		r.byHash = cache.Credential{Issuer: c.Issuer, JTI: TokenHashID(raw)}
	}
	now := v.now()
	if ttl := min(v.cacheMaxTTL, c.ExpiresAt.Sub(now)); ttl > 0 {
		r.until = now.Add(ttl)
		v.results.SetWithTTL(key, r, 1, ttl)
	}
	return v.admit(r)
}

// tokenDigest is SHA-256 of raw without copying it: []byte(raw) would
// allocate a copy of the token on every request. sha256.Sum256 only reads
// its argument, so the string's immutable bytes are never written.
func tokenDigest(raw string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
}

// admit runs the checks whose answer changes after verification: expiry
// and revocation. It runs on every Verify, cached or not.
func (v *Verifier) admit(r *result) (*Claims, error) {
	if r.inactive != nil {
		return nil, invalid("%v", r.inactive)
	}
	if !v.now().Before(r.claims.ExpiresAt.Add(v.skew)) {
		return nil, expired("expired")
	}
	if v.revocations.IsRevoked(&r.cred) || (r.byHash.JTI != "" && v.revocations.IsRevoked(&r.byHash)) {
		return nil, errRevoked
	}
	return r.claims, nil
}

// verify checks raw fully, except revocation.
func (v *Verifier) verify(ctx context.Context, raw string) (*Claims, error) {
	u, err := parseCompact(raw)
	if err != nil {
		return nil, err
	}
	alg := u.header.alg
	// RFC 8725 §3.1, §3.2: never "none" nor HMAC, whatever the issuer.
	if !isAsymmetricAlg(alg) {
		return nil, invalid("alg %.20q not allowed", alg)
	}
	// The unverified iss only picks the issuer whose keys must verify the
	// token; the lookup is an exact match (RFC 9068 §4, RFC 7519 §4.1.1).
	is, ok := v.issuers[u.iss]
	if !ok {
		return nil, invalid("unknown issuer %.100q", u.iss)
	}
	if !slices.Contains(is.cfg.AccessTokenAlgs, alg) {
		return nil, invalid("alg %s not allowed for this issuer", alg)
	}
	// RFC 9068 §4: the typ header must be checked so that other JWTs of the
	// issuer (ID tokens, logout tokens) are not taken for access tokens.
	if u.header.typ == "" {
		return nil, invalid("typ missing")
	}
	if !slices.Contains(is.types, normalizeTyp(u.header.typ)) {
		return nil, invalid("typ %.40q not accepted", u.header.typ)
	}
	if name, ok := otherKindClaim(u.claims); ok {
		return nil, invalid("%s claim: not an access token", name)
	}
	if err := v.verifySignature(ctx, is, u, raw); err != nil {
		return nil, err
	}
	c, err := u.toClaims()
	if err != nil {
		return nil, err
	}
	if err := v.checkClaims(is, c); err != nil {
		return nil, err
	}
	return c, nil
}

// otherKindClaims are claims that mark a JWT as another kind of token of
// the same issuer: nonce and at_hash an ID token (OpenID Connect Core
// §2, §3.1.3.6), events a logout token or a SET (Back-Channel Logout 1.0
// §2.4, RFC 8417 §2.2).
var otherKindClaims = [...]string{"nonce", "at_hash", "events"}

// otherKindClaim returns the first of otherKindClaims present in claims.
// RFC 8725 §3.11 and §3.12: when typ is a generic "JWT" (Ory Hydra), the
// kinds of JWT must be told apart by mutually exclusive rules; an access
// token carrying one of these claims is refused whatever the issuer's
// typ and audience settings, so that another RP's ID token or a logout
// token is never taken for a bearer token.
func otherKindClaim(claims map[string]json.RawMessage) (string, bool) {
	for _, name := range otherKindClaims {
		if _, ok := claims[name]; ok {
			return name, true
		}
	}
	return "", false
}

// verifySignature checks raw's signature with the key of is that its
// header names. The caller has already checked the alg against is's
// allow-list for this kind of token.
func (v *Verifier) verifySignature(ctx context.Context, is *issuerState, u *unverified, raw string) error {
	alg := u.header.alg
	pub, err := v.key(ctx, is, alg, u.header.kid)
	if err != nil {
		return err
	}
	return checkSignature(raw, alg, pub)
}

// checkSignature verifies raw, a compact JWS, with pub under alg.
func checkSignature(raw, alg string, pub any) error {
	sa, ok := jwa.LookupSignatureAlgorithm(alg)
	if !ok {
		return invalid("alg %s not supported", alg)
	}
	if _, err := jws.Verify([]byte(raw),
		jws.WithKey(sa, pub),
		jws.WithCompact(),
		jws.WithAlgorithmMatch(true),
		jws.WithCritValidation(true),
	); err != nil {
		return invalid("signature does not verify")
	}
	return nil
}

// checkClaims judges the verified claims of an access token of is.
func (v *Verifier) checkClaims(is *issuerState, c *Claims) error {
	now := v.now()
	// RFC 9068 §2.2: exp, iat and sub are required.
	switch {
	case c.ExpiresAt.IsZero():
		return invalid("exp missing")
	case c.IssuedAt.IsZero():
		return invalid("iat missing")
	case c.Subject == "":
		return invalid("sub missing")
	}
	// RFC 9068 §2.2: jti and client_id are required too, unless the issuer
	// is known to omit them.
	if !is.cfg.InsecureAccessTokenWithoutJTIClientID {
		switch {
		case c.JTI == "":
			return invalid("jti missing (RFC 9068 §2.2; see insecure_access_token_without_jti_client_id)")
		case c.ClientID == "":
			return invalid("client_id missing (RFC 9068 §2.2; see insecure_access_token_without_jti_client_id)")
		}
	}
	// RFC 7519 §4.1.4: the current time MUST be before exp.
	if !now.Before(c.ExpiresAt.Add(v.skew)) {
		return expired("expired")
	}
	// RFC 7519 §4.1.5: not accepted before nbf.
	if !c.NotBefore.IsZero() && now.Before(c.NotBefore.Add(-v.skew)) {
		return invalid("not valid yet (nbf)")
	}
	if c.IssuedAt.After(now.Add(v.skew)) {
		return invalid("issued in the future (iat)")
	}
	life := c.ExpiresAt.Sub(c.IssuedAt)
	if life < 0 {
		return invalid("exp before iat")
	}
	if life > is.cfg.MaxTokenLifetime {
		return invalid("lifetime %s longer than max_token_lifetime", life)
	}
	// RFC 9068 §4, RFC 7519 §4.1.3: aud must name this resource server.
	if !is.cfg.InsecureSkipAudienceCheck && !audienceAccepted(is, c.Audience) {
		return invalid("aud does not name an accepted audience")
	}
	return nil
}

// key returns the one key of is that may verify a token signed with alg
// naming kid; see keySource.key.
func (v *Verifier) key(ctx context.Context, is *issuerState, alg, kid string) (any, error) {
	return is.keys.key(ctx, &v.fetches, alg, kid)
}

// refresh fetches is's key set unless it was fetched within the cooldown,
// sharing one fetch among concurrent callers; see keySource.sharedRefresh.
func (v *Verifier) refresh(ctx context.Context, is *issuerState) error {
	return is.keys.sharedRefresh(ctx, &v.fetches)
}

// refreshed records the outcome of a key-set fetch.
func (v *Verifier) refreshed(issuer string, err error) {
	if err != nil {
		v.refreshes.WithLabelValues(issuer, "error").Inc()
		v.log.Warn("introspect: key set refresh failed; keeping the previous keys", "issuer", issuer, "error", err)
		return
	}
	v.refreshes.WithLabelValues(issuer, "ok").Inc()
	v.log.Debug("introspect: key set refreshed", "issuer", issuer)
}

// Run loads every issuer's key set and refreshes it every
// JWKSRefreshInterval (subject to the cooldown) until ctx is done, then
// returns nil. A failed refresh keeps the previous keys.
func (v *Verifier) Run(ctx context.Context) error {
	t, tick := v.clk.NewTicker(v.refreshEvery)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for _, is := range v.order {
			wg.Go(func() { _ = v.refresh(ctx, is) })
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
	}
}

// Ready returns nil when every issuer has a key set. It tries once (within
// the cooldown) to load the missing ones; otherwise the error wraps
// ErrUnavailable and names each issuer without keys.
func (v *Verifier) Ready(ctx context.Context) error {
	errs := make([]error, len(v.order))
	var wg sync.WaitGroup
	for n, is := range v.order {
		if is.keys.keys.Load() != nil {
			continue
		}
		wg.Go(func() {
			err := v.refresh(ctx, is)
			if is.keys.keys.Load() != nil {
				return
			}
			if errors.Is(err, errCooldown) {
				err = is.keys.lastError()
			}
			errs[n] = fmt.Errorf("%w: issuer %s has no key set: %v", ErrUnavailable, is.cfg.Issuer, err)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
