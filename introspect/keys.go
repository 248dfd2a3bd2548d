package introspect

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// maxDocumentBytes bounds a discovery document or key set.
const maxDocumentBytes = 1 << 20

// verifyKey is one usable public key of an issuer's key set.
type verifyKey struct {
	kid string
	// alg is the JWK "alg"; "" when the JWK does not name one.
	alg string
	// pub is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	pub any
}

// usableFor reports whether k may verify a signature made with alg: each
// key is used only with its own alg (RFC 8725 §3.1), so a JWK "alg" must
// equal alg, and the key type (and curve) must fit it (RFC 7518 §3.3-3.5,
// RFC 8037 §3.1).
func (k *verifyKey) usableFor(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return alg == "ES256"
		case elliptic.P384():
			return alg == "ES384"
		case elliptic.P521():
			return alg == "ES512"
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// keySet is an issuer's parsed key set; it is never modified once built.
type keySet struct {
	keys []verifyKey
}

// newKeySet keeps the keys of set that can verify signatures: public
// RSA, EC (P-256/384/521) and Ed25519 keys whose "use" is absent or "sig"
// (RFC 7517 §4.2) and whose "key_ops", if present, include "verify" (RFC
// 7517 §4.3). Entries jwx could not parse and every other key are skipped.
func newKeySet(set jwk.Set) (*keySet, error) {
	ks := &keySet{}
	for i := range set.Len() {
		k, ok := set.Key(i)
		if !ok || jwk.IsUnsupportedKey(k) {
			continue
		}
		if use, ok := k.KeyUsage(); ok && use != string(jwk.ForSignature) {
			continue
		}
		if ops, ok := k.KeyOps(); ok && !slices.Contains(ops, jwk.KeyOpVerify) {
			continue
		}
		if kt := k.KeyType(); kt != jwa.RSA() && kt != jwa.EC() && kt != jwa.OKP() {
			continue
		}
		pk, err := k.PublicKey()
		if err != nil {
			continue
		}
		var pub any
		if err := jwk.Export(pk, &pub); err != nil {
			continue
		}
		vk := verifyKey{pub: pub}
		vk.kid, _ = k.KeyID()
		if a, ok := k.Algorithm(); ok {
			vk.alg = a.String()
		}
		switch pub.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			ks.keys = append(ks.keys, vk)
		}
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("no usable signing key")
	}
	return ks, nil
}

// selection is the outcome of looking for a token's key.
type selection int

const (
	keyFound     selection = iota
	keyNotFound            // no key with that kid (or none usable without kid): refetch may help
	keyWrongAlg            // the kid exists but its key is not for this alg
	keyAmbiguous           // more than one key fits
)

// find returns the one key for a token signed with alg and naming kid (""
// when the token has no kid). Without a kid it accepts only a set with
// exactly one key usable for alg.
func (ks *keySet) find(alg, kid string) (any, selection) {
	var found *verifyKey
	n, kidSeen := 0, false
	for i := range ks.keys {
		k := &ks.keys[i]
		if kid != "" && k.kid != kid {
			continue
		}
		kidSeen = true
		if k.usableFor(alg) {
			found = k
			n++
		}
	}
	switch {
	case n == 1:
		return found.pub, keyFound
	case n > 1:
		return nil, keyAmbiguous
	case kid != "" && kidSeen:
		return nil, keyWrongAlg
	}
	return nil, keyNotFound
}

// keySource holds one issuer's current key set and fetches new ones, at
// most once per cooldown. A failed fetch keeps the previous set.
type keySource struct {
	issuer    Issuer
	client    *http.Client
	now       func() time.Time
	cooldown  time.Duration
	keys      atomic.Pointer[keySet]
	onRefresh func(issuer string, err error)

	mu sync.Mutex
	// lastAttempt is when the last fetch started; zero before the first.
	lastAttempt time.Time
	// lastErr is the result of the last fetch.
	lastErr error
}

// newRefreshCounter is oidcgate_jwks_refresh_total, shared by the
// Verifier (per issuer) and the SETVerifier (per transmitter).
func newRefreshCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oidcgate_jwks_refresh_total",
		Help: "Key set fetches per issuer, by result (ok, error).",
	}, []string{"issuer", "result"})
}

// errCooldown reports a fetch skipped because the last one was too recent.
var errCooldown = errors.New("key set fetched recently")

// refresh fetches the key set unless the last attempt is less than the
// cooldown ago. Callers serialise it per issuer (singleflight), so the
// check and the fetch do not race with another refresh of the issuer.
func (s *keySource) refresh(ctx context.Context) error {
	now := s.now()
	s.mu.Lock()
	if !s.lastAttempt.IsZero() && now.Sub(s.lastAttempt) < s.cooldown {
		s.mu.Unlock()
		return errCooldown
	}
	s.lastAttempt = now
	s.mu.Unlock()

	ks, err := s.fetch(ctx)
	if err == nil {
		s.keys.Store(ks)
	}
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	s.onRefresh(s.issuer.Issuer, err)
	return err
}

// key returns the one key of s that may verify a token signed with alg
// naming kid. A missing key causes one refetch of the key set, at most one
// per issuer per cooldown however many tokens ask; fetches dedupes the
// refetch among concurrent callers.
func (s *keySource) key(ctx context.Context, fetches *singleflight.Group, alg, kid string) (any, error) {
	for fetched := false; ; fetched = true {
		if ks := s.keys.Load(); ks != nil {
			pub, sel := ks.find(alg, kid)
			switch sel {
			case keyFound:
				return pub, nil
			case keyWrongAlg:
				return nil, invalid("key %.64q is not for alg %s", kid, alg)
			case keyAmbiguous:
				return nil, invalid("more than one key fits kid %.64q and alg %s", kid, alg)
			}
		}
		if fetched {
			break
		}
		if err := s.sharedRefresh(ctx, fetches); err != nil && ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
	// Without keys, or with a failing key source, a missing key may just not
	// have been fetched: could not decide.
	if s.keys.Load() == nil || s.lastError() != nil {
		return nil, fmt.Errorf("%w: no key set for issuer %s", ErrUnavailable, s.issuer.Issuer)
	}
	return nil, invalid("no key for kid %.64q and alg %s", kid, alg)
}

// sharedRefresh is refresh shared among concurrent callers through
// fetches (keyed by the issuer). The fetch outlives a caller whose ctx
// ends (it is bounded by its own timeout), so that one cancelled request
// does not fail the others waiting for it.
func (s *keySource) sharedRefresh(ctx context.Context, fetches *singleflight.Group) error {
	ch := fetches.DoChan(s.issuer.Issuer, func() (any, error) {
		return nil, s.refresh(context.WithoutCancel(ctx))
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lastError returns the error of the last fetch; nil before the first
// and after a successful one.
func (s *keySource) lastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// fetch loads the key set from JWKSURI, or from the jwks_uri of the
// discovery document.
func (s *keySource) fetch(ctx context.Context) (*keySet, error) {
	ctx, cancel := context.WithTimeout(ctx, defaultHTTPTimeout)
	defer cancel()
	uri := s.issuer.JWKSURI
	if uri == "" {
		var err error
		if uri, err = s.discover(ctx); err != nil {
			return nil, err
		}
	}
	body, err := getJSON(ctx, s.client, uri)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	// RFC 7517 §5: a JWK Set is an object with a "keys" array; jwk.Parse
	// would also accept a single JWK.
	var probe struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &probe); err != nil || probe.Keys == nil {
		return nil, errors.New(`jwks: not a JWK Set (want an object with a "keys" array)`)
	}
	// Non-strict parsing keeps the keys we understand when the set also
	// holds key types jwx cannot parse (they become placeholders that
	// newKeySet skips).
	set, err := jwk.Parse(body, jwk.WithStrictKeySetParsing(false))
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	ks, err := newKeySet(set)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return ks, nil
}

// discover returns the jwks_uri of the issuer's discovery document.
func (s *keySource) discover(ctx context.Context) (string, error) {
	doc, err := fetchDiscovery(ctx, s.client, s.issuer)
	if err != nil {
		return "", err
	}
	if err := checkURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery: jwks_uri: %w", err)
	}
	return doc.JWKSURI, nil
}

// discovery is the part of an OpenID Connect Discovery 1.0 document (RFC
// 8414 metadata) this package uses.
type discovery struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
	// RFC 9207 §3.
	AuthorizationResponseIss bool   `json:"authorization_response_iss_parameter_supported"`
	RevocationEndpoint       string `json:"revocation_endpoint"`
	IntrospectionEndpoint    string `json:"introspection_endpoint"`
}

// fetchDiscovery loads is's discovery document and checks that it names
// is (OpenID Connect Discovery 1.0 §4.3).
func fetchDiscovery(ctx context.Context, client *http.Client, is Issuer) (*discovery, error) {
	body, err := getJSON(ctx, client, is.Discovery)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var doc discovery
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	// OpenID Connect Discovery 1.0 §4.3: the issuer value returned MUST be
	// identical to the issuer the document was retrieved for.
	if doc.Issuer != is.Issuer {
		return nil, fmt.Errorf("discovery: issuer %.200q does not match the configured issuer", doc.Issuer)
	}
	return &doc, nil
}

// getJSON GETs uri and returns its body: status 200, a JSON media type,
// at most maxDocumentBytes.
func getJSON(ctx context.Context, client *http.Client, uri string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", uri, resp.StatusCode)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return nil, fmt.Errorf("GET %s: content type %.100q is not JSON", uri, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", uri, err)
	}
	if len(body) > maxDocumentBytes {
		return nil, fmt.Errorf("GET %s: body larger than %d bytes", uri, maxDocumentBytes)
	}
	return body, nil
}
