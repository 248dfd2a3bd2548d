package propagate

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/oidcgate/oidcgate/clock"
)

// KeyFile is the name of the transmitter's key file in data_dir.
const KeyFile = "ssf-signing-keys.json"

const (
	// keyBits is the size of a generated key: the CAEP interoperability
	// profile 1.0 ("Event Signatures") requires RS256 with at least 2048
	// bits.
	keyBits = 2048
	// maxKeyFile bounds the key file that is read.
	maxKeyFile = 1 << 20
	// maxKeys bounds the keys a file may hold.
	maxKeys = 16
	// DefaultKeyGrace is how long a retired key stays in the JWKS after a
	// rotation, by default.
	DefaultKeyGrace = 24 * time.Hour
)

// ErrKeyFile is wrapped by every error about the key file's contents.
var ErrKeyFile = errors.New("propagate: ssf signing key file")

// KeyRing holds the gateway's own SET signing keys, kept in one file
// (mode 0600) in data_dir: the newest key not retired signs; every key not
// past its published_until is in the JWKS. It re-reads the file when the
// file changes (a rotation by `oidcgate ssf-key rotate` takes effect
// without a restart). A file that cannot be read or parsed is never
// overwritten: Err reports it (for /readyz and the logs), the keys loaded
// before stay in use, and with none SETs wait (their targets stay
// pending) until the file is fixed. It is safe for concurrent use.
type KeyRing struct {
	path string
	clk  clock.Clock

	mu    sync.Mutex
	stamp os.FileInfo // of the file last read, nil before
	keys  []ringKey   // oldest first
	err   error       // the last read's problem; nil when the file was fine
}

// ringKey is one key of the ring.
type ringKey struct {
	kid       string
	priv      *rsa.PrivateKey
	created   time.Time
	retired   time.Time // zero while it signs
	published time.Time // published_until; zero: no end
}

// keyFileJSON is the file's format.
type keyFileJSON struct {
	Keys []keyJSON `json:"keys"`
}

type keyJSON struct {
	KID            string    `json:"kid"`
	CreatedAt      time.Time `json:"created_at"`
	RetiredAt      time.Time `json:"retired_at,omitzero"`
	PublishedUntil time.Time `json:"published_until,omitzero"`
	// PrivateKey is a PEM PKCS#8 RSA private key.
	PrivateKey string `json:"private_key"`
}

// OpenKeyRing loads the key file at path, creating it with a new key when
// it does not exist. It always returns a usable ring; the error is the
// ring's Err (a file that is corrupt, unreadable or cannot be created) and
// is returned so the caller can log it: the ring keeps trying on each use.
func OpenKeyRing(path string, clk clock.Clock) (*KeyRing, error) {
	r := &KeyRing{path: path, clk: clock.Or(clk)}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if err := r.create(); err != nil && !errors.Is(err, fs.ErrExist) {
			r.err = err
			return r, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked()
	return r, r.err
}

// create writes a new file with one key; fs.ErrExist when another process
// was first.
func (r *KeyRing) create() error {
	k, err := newRingKey(r.clk.Now())
	if err != nil {
		return err
	}
	data, err := encodeKeys([]ringKey{k})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("propagate: creating the ssf signing key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = os.Remove(r.path)
		return fmt.Errorf("propagate: writing the ssf signing key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		_ = os.Remove(r.path)
		return fmt.Errorf("propagate: writing the ssf signing key file: %w", err)
	}
	return f.Close()
}

// Err reports the key file's problem, nil when it was read fine.
func (r *KeyRing) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked()
	return r.err
}

// refreshLocked re-reads the file when it changed (or the last read
// failed). A failed read keeps the keys read before.
func (r *KeyRing) refreshLocked() {
	fi, err := os.Stat(r.path)
	if err != nil {
		r.err = fmt.Errorf("%w %s: %w", ErrKeyFile, r.path, err)
		return
	}
	if r.err == nil && r.stamp != nil && os.SameFile(r.stamp, fi) && fi.ModTime().Equal(r.stamp.ModTime()) && fi.Size() == r.stamp.Size() && fi.Mode() == r.stamp.Mode() {
		return
	}
	keys, err := readKeys(r.path, fi)
	if err != nil {
		r.err = err
		return
	}
	r.keys, r.stamp, r.err = keys, fi, nil
}

// readKeys reads and checks the key file.
func readKeys(path string, fi os.FileInfo) ([]ringKey, error) {
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w %s: not a regular file", ErrKeyFile, path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w %s: readable by others (mode %o); want 0600", ErrKeyFile, path, fi.Mode().Perm())
	}
	if fi.Size() > maxKeyFile {
		return nil, fmt.Errorf("%w %s: larger than %d bytes", ErrKeyFile, path, maxKeyFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	keys, err := decodeKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	}
	return keys, nil
}

// decodeKeys parses a key file; it never returns a ring without a
// signing key.
func decodeKeys(data []byte) ([]ringKey, error) {
	var f keyFileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, errors.New("not valid JSON")
	}
	if len(f.Keys) == 0 || len(f.Keys) > maxKeys {
		return nil, fmt.Errorf("holds %d keys; want 1 to %d", len(f.Keys), maxKeys)
	}
	keys := make([]ringKey, 0, len(f.Keys))
	seen := map[string]bool{}
	signing := false
	for i, kj := range f.Keys {
		block, rest := pem.Decode([]byte(kj.PrivateKey))
		if block == nil || block.Type != "PRIVATE KEY" || len(rest) > 0 {
			return nil, fmt.Errorf("keys[%d]: private_key is not one PEM PKCS#8 key", i)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: private_key does not parse", i)
		}
		priv, ok := k.(*rsa.PrivateKey)
		if !ok || priv.N.BitLen() < keyBits {
			return nil, fmt.Errorf("keys[%d]: not an RSA key of at least %d bits", i, keyBits)
		}
		if err := priv.Validate(); err != nil {
			return nil, fmt.Errorf("keys[%d]: invalid RSA key", i)
		}
		kid := thumbprint(&priv.PublicKey)
		if kj.KID != kid || seen[kid] {
			return nil, fmt.Errorf("keys[%d]: kid is not the key's RFC 7638 thumbprint, or listed twice", i)
		}
		seen[kid] = true
		signing = signing || kj.RetiredAt.IsZero()
		keys = append(keys, ringKey{kid: kid, priv: priv, created: kj.CreatedAt, retired: kj.RetiredAt, published: kj.PublishedUntil})
	}
	if !signing {
		return nil, errors.New("every key is retired: none signs")
	}
	return keys, nil
}

func encodeKeys(keys []ringKey) ([]byte, error) {
	f := keyFileJSON{Keys: make([]keyJSON, 0, len(keys))}
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			return nil, err
		}
		f.Keys = append(f.Keys, keyJSON{
			KID: k.kid, CreatedAt: k.created.UTC(), RetiredAt: k.retired, PublishedUntil: k.published,
			PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		})
	}
	return json.MarshalIndent(f, "", "  ")
}

func newRingKey(now time.Time) (ringKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, keyBits)
	if err != nil {
		return ringKey{}, fmt.Errorf("propagate: generating an ssf signing key: %w", err)
	}
	return ringKey{kid: thumbprint(&priv.PublicKey), priv: priv, created: now.UTC()}, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of pub (SHA-256, base64url):
// the members e, kty, n in lexicographic order, no whitespace (§3.1).
func thumbprint(pub *rsa.PublicKey) string {
	j := `{"e":"` + b64(big.NewInt(int64(pub.E)).Bytes()) + `","kty":"RSA","n":"` + b64(pub.N.Bytes()) + `"}`
	d := sha256.Sum256([]byte(j))
	return b64(d[:])
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signer returns the newest key that is not retired.
func (r *KeyRing) signer() (ringKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refreshLocked()
	for i := len(r.keys) - 1; i >= 0; i-- {
		if r.keys[i].retired.IsZero() {
			return r.keys[i], nil
		}
	}
	if r.err != nil {
		return ringKey{}, r.err
	}
	return ringKey{}, fmt.Errorf("%w: no signing key", ErrKeyFile)
}

// jwk is a public RSA JWK (RFC 7517 §4, RFC 7518 §6.3.1).
type jwk struct {
	Kty string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// JWKS returns the public keys receivers verify SETs with: every key not
// past its published_until (RFC 7517 §5).
func (r *KeyRing) JWKS() ([]byte, error) {
	r.mu.Lock()
	now := r.clk.Now()
	r.refreshLocked()
	keys, err := r.keys, r.err
	r.mu.Unlock()
	if len(keys) == 0 {
		return nil, err
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, k := range keys {
		if !k.published.IsZero() && !k.published.After(now) {
			continue
		}
		pub := k.priv.PublicKey
		set.Keys = append(set.Keys, jwk{Kty: "RSA", Use: "sig", Alg: "RS256", Kid: k.kid, N: b64(pub.N.Bytes()), E: b64(big.NewInt(int64(pub.E)).Bytes())})
	}
	return json.Marshal(set)
}

// RotateKeys adds a new signing key to the key file at path (creating the
// file if there is none) and retires the one that signed: it stays in the
// JWKS for grace (0 means DefaultKeyGrace), so receivers holding a SET it
// signed, or a cached JWKS, can still verify. Keys whose grace has passed
// are dropped. A corrupt file is refused, never overwritten. The file is
// replaced atomically; a running gateway picks the new key up on its next
// SET or JWKS request. It returns the new key's kid.
func RotateKeys(path string, grace time.Duration, clk clock.Clock) (string, error) {
	clk = clock.Or(clk)
	if grace <= 0 {
		grace = DefaultKeyGrace
	}
	now := clk.Now().UTC()
	var keys []ringKey
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", fmt.Errorf("%w %s: %w", ErrKeyFile, path, err)
	default:
		if keys, err = readKeys(path, fi); err != nil {
			return "", fmt.Errorf("%w (move it away to start a new key ring)", err)
		}
	}
	kept := keys[:0]
	for _, k := range keys {
		if k.retired.IsZero() {
			k.retired, k.published = now, now.Add(grace)
		}
		if k.published.After(now) {
			kept = append(kept, k)
		}
	}
	k, err := newRingKey(now)
	if err != nil {
		return "", err
	}
	kept = append(kept, k)
	if len(kept) > maxKeys {
		kept = kept[len(kept)-maxKeys:]
	}
	data, err := encodeKeys(kept)
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return "", err
	}
	return k.kid, nil
}

// writeFileAtomic replaces path by data (mode 0600) through a synced
// temporary file in the same directory and a rename.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ssf-keys-*")
	if err != nil {
		return fmt.Errorf("propagate: writing the ssf signing key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("propagate: writing the ssf signing key file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("propagate: writing the ssf signing key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("propagate: writing the ssf signing key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("propagate: writing the ssf signing key file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("propagate: writing the ssf signing key file: %w", err)
	}
	return nil
}

// signRS256 returns the compact JWS (RFC 7515 §7.1) of header and claims,
// both JSON, signed with k (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3).
func signRS256(k ringKey, header, claims []byte) (string, error) {
	input := b64(header) + "." + b64(claims)
	d := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, k.priv, crypto.SHA256, d[:])
	if err != nil {
		return "", err
	}
	return input + "." + b64(sig), nil
}
