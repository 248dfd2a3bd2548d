package introspect

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock"
)

// API keys.
//
// A key is "oag_" + a 16-character public id + "_" + a 43-character secret
// + a 6-character checksum, all base62 (70 characters). 43 base62
// characters carry 256.03 bits. The checksum is the CRC-32 (IEEE) of
// everything before it, in base62, so that secret scanners can tell a real
// key from a random string offline; it proves nothing, the stored SHA-256
// of the secret does.
const (
	// APIKeyPrefix starts every key.
	APIKeyPrefix = "oag_"
	// APIKeyLen is the length of every key.
	APIKeyLen = len(APIKeyPrefix) + keyIDLen + 1 + keySecretLen + keyChecksumLen

	keyIDLen       = 16
	keySecretLen   = 43
	keyChecksumLen = 6
	base62         = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// NewAPIKey returns a new random key, its public id and the SHA-256 of its
// secret (what the store keeps).
func NewAPIKey() (key, id string, hash [32]byte, err error) {
	idPart, err := randomBase62(keyIDLen)
	if err != nil {
		return "", "", hash, fmt.Errorf("introspect: new key: %w", err)
	}
	secret, err := randomBase62(keySecretLen)
	if err != nil {
		return "", "", hash, fmt.Errorf("introspect: new key: %w", err)
	}
	body := APIKeyPrefix + idPart + "_" + secret
	return body + checksum(body), idPart, sha256.Sum256([]byte(secret)), nil
}

// randomBase62 returns n base62 characters from crypto/rand, without bias
// (bytes of 248 and above are drawn again).
func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out), nil
}

// checksum is the CRC-32 of s as 6 base62 characters.
func checksum(s string) string {
	var out [keyChecksumLen]byte
	c := crc32.ChecksumIEEE([]byte(s))
	for i := keyChecksumLen - 1; i >= 0; i-- {
		out[i] = base62[c%62]
		c /= 62
	}
	return string(out[:])
}

// LooksLikeAPIKey reports whether s starts like a key (it may still be
// malformed): such a bearer value is judged as a key, never as a JWT.
func LooksLikeAPIKey(s string) bool { return strings.HasPrefix(s, APIKeyPrefix) }

// ParseAPIKey checks s's form and checksum and returns its id and the
// SHA-256 of its secret. It does not allocate.
func ParseAPIKey(s string) (id string, hash [32]byte, ok bool) {
	if len(s) != APIKeyLen || !LooksLikeAPIKey(s) || s[len(APIKeyPrefix)+keyIDLen] != '_' {
		return "", hash, false
	}
	idStart := len(APIKeyPrefix)
	secStart := idStart + keyIDLen + 1
	sumStart := secStart + keySecretLen
	for i := idStart; i < len(s); i++ {
		if i != secStart-1 && !isBase62(s[i]) {
			return "", hash, false
		}
	}
	c := crc32.Update(0, crc32.IEEETable, unsafeBytes(s[:sumStart]))
	for i := len(s) - 1; i >= sumStart; i-- {
		if s[i] != base62[c%62] {
			return "", hash, false
		}
		c /= 62
	}
	if c != 0 {
		// Six base62 digits hold more than 32 bits: the leading one must
		// leave nothing over.
		return "", hash, false
	}
	return s[idStart : secStart-1], sha256.Sum256(unsafeBytes(s[secStart:sumStart])), true
}

func isBase62(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
}

// KeyStore is the part of the store API key verification uses;
// *cache.Store and *cache.Redis satisfy it.
type KeyStore interface {
	CheckKey(c *cache.KeyCheck) cache.KeyState
	TouchKey(ctx context.Context, id string, at time.Time) error
}

var (
	_ KeyStore = (*cache.Store)(nil)
	_ KeyStore = (*cache.Redis)(nil)
)

// KeysConfig configures APIKeys.
type KeysConfig struct {
	// Store holds the key records and revocations. Required.
	Store KeyStore
	// Issuers are the configured issuers: a client revocation of a key's
	// owner under any of them revokes the key.
	Issuers []string
	// MaxIdle, when positive, refuses a key unused for that long.
	MaxIdle time.Duration
	// Clock is the clock; nil means the wall clock.
	Clock clock.Clock
	// Logger receives touch failures (never a key); nil discards.
	Logger *slog.Logger
	// Metrics registers oidcgate_api_key_verifications_total; nil
	// registers nothing.
	Metrics prometheus.Registerer
}

// Outcomes of a key verification (the metric's label): the store's states
// and malformed.
const keyMalformed = "malformed"

// touchQueue bounds the pending last-use writes; more are dropped (the
// next use queues again).
const touchQueue = 1024

// APIKeys verifies API keys. Construct it with NewAPIKeys; Run writes the
// approximate last use of keys. It is safe for concurrent use.
type APIKeys struct {
	cfg      KeysConfig
	touchGap time.Duration
	outcomes map[cache.KeyState]prometheus.Counter
	bad      prometheus.Counter
	touches  chan string
	log      *slog.Logger

	mu      sync.Mutex
	pending map[string]bool

	// claims maps a key id to its shared Claims (at most maxKeyClaims).
	claims    sync.Map
	claimsLen atomic.Int64
}

// maxKeyClaims bounds the shared Claims kept.
const maxKeyClaims = 100_000

// NewAPIKeys returns the verifier of cfg. It starts nothing.
func NewAPIKeys(cfg KeysConfig) (*APIKeys, error) {
	if cfg.Store == nil {
		return nil, errors.New("introspect: NewAPIKeys needs a Store")
	}
	if cfg.MaxIdle < 0 {
		return nil, errors.New("introspect: max_idle must not be negative")
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidcgate_api_key_verifications_total",
		Help: "API keys presented, by outcome (valid, malformed, unknown, expired, revoked, idle).",
	}, []string{"outcome"})
	if cfg.Metrics != nil {
		var err error
		if vec, err = register(cfg.Metrics, vec); err != nil {
			return nil, err
		}
	}
	k := &APIKeys{
		cfg:      cfg,
		touchGap: time.Hour,
		outcomes: map[cache.KeyState]prometheus.Counter{},
		bad:      vec.WithLabelValues(keyMalformed),
		touches:  make(chan string, touchQueue),
		log:      cfg.Logger,
		pending:  map[string]bool{},
	}
	// Touch often enough that a key in use never looks idle.
	if cfg.MaxIdle > 0 {
		k.touchGap = min(k.touchGap, cfg.MaxIdle/4)
	}
	for _, s := range []cache.KeyState{cache.KeyValid, cache.KeyUnknown, cache.KeyExpired, cache.KeyRevoked, cache.KeyIdle} {
		k.outcomes[s] = vec.WithLabelValues(s.String())
	}
	return k, nil
}

// ErrKeyRefused is wrapped (with ErrInvalidToken) by Check's error for a
// key that is well formed but may not be used; the state says why.
var ErrKeyRefused = fmt.Errorf("%w: api key refused", ErrInvalidToken)

// errKeyMalformed is Check's error for a value that is not a key.
var errKeyMalformed = fmt.Errorf("%w: not a well-formed api key", ErrInvalidToken)

// Check verifies raw and, on success, fills c (id, owner, scope, times).
// A malformed key is refused before the store is asked. Every refusal
// wraps ErrInvalidToken. It does not allocate.
func (k *APIKeys) Check(raw string, c *cache.KeyCheck) error {
	id, hash, ok := ParseAPIKey(raw)
	if !ok {
		k.bad.Inc()
		return errKeyMalformed
	}
	c.ID, c.Hash = id, hash
	c.Issuers, c.MaxIdle, c.Now = k.cfg.Issuers, k.cfg.MaxIdle, k.cfg.Clock.Now()
	state := k.cfg.Store.CheckKey(c)
	k.outcomes[state].Inc()
	if state != cache.KeyValid {
		return ErrKeyRefused
	}
	if c.Now.Sub(c.LastUsedAt) >= k.touchGap {
		k.touch(id)
	}
	return nil
}

// Verify is Check returning the key's identity as Claims: Subject and
// ClientID are the owner, Scopes the key's, IssuedAt its creation,
// ExpiresAt its expiry, JTI its id; Issuer is empty. Extra holds
// token_type "api_key" and, when the key is limited to routes, "routes".
// The Claims of a key are built once and shared (read-only): a key's
// record never changes but for its last use.
func (k *APIKeys) Verify(raw string) (*Claims, error) {
	var c cache.KeyCheck
	if err := k.Check(raw, &c); err != nil {
		return nil, err
	}
	if cl, ok := k.claims.Load(c.ID); ok {
		return cl.(*Claims), nil
	}
	cl := &Claims{
		Subject:   c.Owner,
		ClientID:  c.Owner,
		Scopes:    strings.Fields(c.Scope),
		IssuedAt:  c.CreatedAt,
		ExpiresAt: c.ExpiresAt,
		JTI:       c.ID,
		Extra:     map[string]any{"token_type": "api_key"},
	}
	if c.Routes != "" {
		cl.Extra["routes"] = c.Routes
	}
	if k.claimsLen.Add(1) > maxKeyClaims {
		// Bounded: start again rather than grow with every key ever used.
		k.claims.Clear()
		k.claimsLen.Store(1)
	}
	k.claims.Store(c.ID, cl)
	return cl, nil
}

// Match reports whether raw is a well-formed key whose id and secret match
// a stored record, whatever its state, and returns its id and expiry: the
// holder of a key may revoke it.
func (k *APIKeys) Match(raw string) (id string, expiresAt time.Time, ok bool) {
	id, hash, ok := ParseAPIKey(raw)
	if !ok {
		return "", time.Time{}, false
	}
	c := cache.KeyCheck{ID: id, Hash: hash, Now: k.cfg.Clock.Now()}
	if k.cfg.Store.CheckKey(&c) == cache.KeyUnknown {
		return "", time.Time{}, false
	}
	return id, c.ExpiresAt, true
}

// touch queues a last-use write of id unless one is pending; it never
// blocks.
func (k *APIKeys) touch(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pending[id] {
		return
	}
	select {
	case k.touches <- id:
		k.pending[id] = true
	default:
	}
}

// Run writes the queued last uses until ctx is done, then returns nil.
func (k *APIKeys) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-k.touches:
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := k.cfg.Store.TouchKey(tctx, id, k.cfg.Clock.Now())
			cancel()
			if err != nil && !errors.Is(err, cache.ErrKeyNotFound) {
				k.log.Warn("api key last use not recorded", "key_id", id, "error", err)
			}
			k.mu.Lock()
			delete(k.pending, id)
			k.mu.Unlock()
		}
	}
}

// unsafeBytes views s as bytes without copying, for the hash functions of
// the hot path, which only read their input.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
