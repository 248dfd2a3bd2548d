package gateway

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
	"github.com/oidcgate/oidcgate/introspect"
)

// testNow is the fixed time of every test token and verifier.
var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testIssuer is a token issuer with a real Ed25519 key pair, its JWKS served
// by a real HTTP server, and a real introspect.Verifier (fixed clock) backed
// by a real in-memory revocation store.
type testIssuer struct {
	*httptest.Server
	priv  ed25519.PrivateKey
	down  atomic.Bool // the JWKS answers 503: the verifier cannot decide
	store *cache.Store
	v     *introspect.Verifier
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ti := &testIssuer{priv: priv}
	jwks := `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"k1","x":"` +
		base64.RawURLEncoding.EncodeToString(pub) + `"}]}`
	ti.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if ti.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, jwks)
	}))
	t.Cleanup(ti.Close)
	ti.store, err = cache.Open(cache.Config{Clock: clocktest.New(testNow)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ti.store.Close() })
	ti.v, err = introspect.New(introspect.Config{
		Issuers: []introspect.Issuer{{
			Issuer:          ti.URL,
			JWKSURI:         ti.URL + "/jwks",
			Audiences:       []string{"api"},
			AccessTokenAlgs: []string{"EdDSA"},
		}},
		Revocations: ti.store,
		HTTPClient:  ti.Client(),
		Clock:       clocktest.New(testNow),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ti.v.Close)
	return ti
}

// revoke revokes the tokens with this jti.
func (ti *testIssuer) revoke(t testing.TB, jti string) {
	t.Helper()
	_, err := ti.store.Revoke(context.Background(), cache.Entry{
		Issuer: ti.URL, Kind: cache.KindJTI, Value: jti,
		RevokedAt: testNow.Add(-time.Minute), ExpiresAt: testNow.Add(24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
}

type testClaims struct {
	Sub   string
	Scope string
	JTI   string
	Email string
	// EmailVerified is the email_verified claim; nil means true when
	// Email is set, emailVerifiedAbsent leaves it out.
	EmailVerified any
	Exp           time.Time // zero: an hour after testNow
}

// emailVerifiedAbsent, as testClaims.EmailVerified, sends no
// email_verified claim.
const emailVerifiedAbsent = "absent"

// token mints an RFC 9068 access token (typ at+jwt, EdDSA) for c.
func (ti *testIssuer) token(t testing.TB, c testClaims) string {
	t.Helper()
	if c.Exp.IsZero() {
		c.Exp = testNow.Add(time.Hour)
	}
	if c.JTI == "" {
		c.JTI = "jti-" + rand.Text()
	}
	// RFC 9068 §2.2: jti and client_id are required.
	claims := map[string]any{
		"iss": ti.URL, "aud": "api", "sub": c.Sub, "client_id": "client-1",
		"iat": c.Exp.Add(-2 * time.Hour).Unix(), "exp": c.Exp.Unix(),
	}
	for k, v := range map[string]string{"scope": c.Scope, "jti": c.JTI, "email": c.Email} {
		if v != "" {
			claims[k] = v
		}
	}
	switch {
	case c.EmailVerified == emailVerifiedAbsent:
	case c.EmailVerified != nil:
		claims["email_verified"] = c.EmailVerified
	case c.Email != "":
		claims["email_verified"] = true
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}`)) +
		"." + base64.RawURLEncoding.EncodeToString(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(ti.priv, []byte(input)))
}

// countingVerifier counts the calls that reach the verifier.
type countingVerifier struct {
	next  TokenVerifier
	calls atomic.Int64
}

func (c *countingVerifier) Verify(ctx context.Context, raw string) (*introspect.Claims, error) {
	c.calls.Add(1)
	return c.next.Verify(ctx, raw)
}

// brokenVerifier fails with an error that is neither ErrInvalidToken nor
// ErrUnavailable.
type brokenVerifier struct{}

func (brokenVerifier) Verify(context.Context, string) (*introspect.Claims, error) {
	return nil, errors.New("backend exploded")
}

var (
	_ TokenVerifier = (*introspect.Verifier)(nil)
	_ TokenVerifier = (*countingVerifier)(nil)
	_ TokenVerifier = brokenVerifier{}
)

// seen is what the upstream received for one request.
type seen struct {
	URI    string      `json:"uri"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
}

// upstream is a real HTTP server that answers with what it received, as
// JSON, and counts its requests.
type upstream struct {
	*httptest.Server
	hits atomic.Int64
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{URI: r.RequestURI, Host: r.Host, Header: r.Header})
	}))
	t.Cleanup(u.Close)
	return u
}

// serve runs a Gateway for cfg on a real loopback server.
func serve(t testing.TB, cfg Config) *httptest.Server {
	t.Helper()
	gw, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	run(t, gw)
	srv := httptest.NewServer(gw)
	t.Cleanup(srv.Close)
	return srv
}

// rawResponse is a response read off the wire, body included.
type rawResponse struct {
	*http.Response
	body string
}

// rawRequest sends head (request line and header lines, without the final
// empty line) as is on a new connection to srv and reads one response. It
// bypasses the client's URL handling so that the exact request-target is
// tested.
func rawRequest(t testing.TB, srv *httptest.Server, head string) rawResponse {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, head+"\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResponse{Response: res, body: string(body)}
}

// do sends a request with the given headers (set as is, so repeated and
// oddly spelled names reach the wire) through client and returns the
// response with its body read.
func do(t testing.TB, client *http.Client, method, url string, header http.Header) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResponse{Response: res, body: string(body)}
}

// seenBy decodes the upstream's echo from a response body.
func seenBy(t testing.TB, res rawResponse) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(res.body), &s); err != nil {
		t.Fatalf("upstream echo: %v (status %d, body %q)", err, res.StatusCode, res.body)
	}
	return s
}

// syncBuffer is an io.Writer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// run runs gw's background work until the test ends, then closes gw.
func run(t testing.TB, gw *Gateway) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		gw.Close()
	})
}
