package main

// The end-to-end harness: TestMain builds the real binary once; the helpers
// below run it, stand in for an OpenID provider and an upstream app, and
// mint valid and hostile tokens. Every socket is on 127.0.0.1 and every
// wait is bounded.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Bounds for every wait in the e2e tests. They are ceilings, never sleeps:
// a healthy run finishes far below them.
const (
	readyTimeout = 20 * time.Second // process start until /readyz is 200
	exitTimeout  = 15 * time.Second // SIGTERM until the process has exited
	cliTimeout   = 30 * time.Second // one CLI invocation
	pollInterval = 25 * time.Millisecond
)

// e2eBinary is the oidcgate binary built by TestMain; empty in -short mode,
// where the e2e tests skip and only the unit tests run.
var e2eBinary string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "oidcgate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "oidcgate")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		// A race in the real binary under real traffic makes it exit 66,
		// which the exit-code assertions catch.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building oidcgate:", err)
		return 1
	}
	e2eBinary = bin
	return m.Run()
}

// requireBinary skips t when TestMain did not build the binary.
func requireBinary(t *testing.T) string {
	t.Helper()
	if e2eBinary == "" {
		t.Skip("e2e: the binary is not built in -short mode")
	}
	return e2eBinary
}

// syncBuffer is an io.Writer safe for a child's output and a reading test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is one running oidcgate process.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	kill   context.CancelFunc
}

// startProc runs the binary with args and exactly env (no inherited
// environment, so an operator's OIDCGATE_* never leaks in). On t's end the
// process gets SIGTERM if it still runs (and SIGKILL after exitTimeout),
// and its stderr is logged if t failed.
func startProc(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	ctx, kill := context.WithCancel(context.Background())
	p := &proc{
		name:   name,
		cmd:    exec.CommandContext(ctx, requireBinary(t), args...),
		stdout: &syncBuffer{},
		stderr: &syncBuffer{},
		done:   make(chan struct{}),
		kill:   kill,
	}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		kill()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if code := p.cmd.ProcessState.ExitCode(); code != 0 {
					t.Errorf("%s: exit status after SIGTERM: got %d; want 0", name, code)
				}
			case <-time.After(exitTimeout):
				t.Errorf("%s: still running %s after SIGTERM; killed", name, exitTimeout)
			}
		}
		kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits (bounded) for the process to exit and returns its exit code;
// -1 means it was ended by a signal.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(exitTimeout):
		p.kill()
		<-p.done
		t.Fatalf("%s: did not exit within %s\nstderr:\n%s", p.name, exitTimeout, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// terminate sends SIGTERM and asserts a clean exit (status 0) in bounds.
func (p *proc) terminate(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("%s: SIGTERM: %v", p.name, err)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("%s: exit status after SIGTERM: got %d; want 0\nstderr:\n%s", p.name, code, p.stderr.String())
	}
}

// runCLI runs the binary to completion and returns its exit code and output.
func runCLI(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, requireBinary(t), args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("oidcgate %s: %v", strings.Join(args, " "), err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// waitFor polls cond until it holds or timeout passes; it reports whether
// cond held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
}

// freeLoopbackAddr returns a 127.0.0.1 address that was free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		// The kernel may hand a port just closed here to the next caller
		// before the first process has bound it; parallel tests would
		// then share it (one gateway's /readyz answering for another's).
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

// handedOut are the addresses freeLoopbackAddr has returned in this run.
var handedOut = struct {
	mu    sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newClient returns a client that talks to loopback only: no proxy from
// the environment, no redirects followed, a bounded timeout.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// send sends one request; token, if not empty, goes in Authorization:
// Bearer. hdr entries are copied verbatim (non-canonical keys stay as
// written). It is safe to call from any goroutine.
func send(c *http.Client, method, url, token string, hdr http.Header, body io.Reader) (response, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, url, body)
	if err != nil {
		return response{}, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading body: %w", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// do is send for the test goroutine: a transport error fails t.
func do(t *testing.T, c *http.Client, method, url, token string, hdr http.Header, body io.Reader) response {
	t.Helper()
	resp, err := send(c, method, url, token, hdr, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// ---- the test issuer ----

// testIssuer is an OpenID provider on loopback: discovery and a JWKS with
// an RSA key (RS256, kid rsa-1) and an EC P-256 key (ES256, kid ec-1).
type testIssuer struct {
	srv      *httptest.Server
	url      string
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	mu       sync.Mutex
	jwksHits int
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	for _, k := range []struct {
		pub any
		kid string
		alg jwa.SignatureAlgorithm
	}{{&rk.PublicKey, "rsa-1", jwa.RS256()}, {&ek.PublicKey, "ec-1", jwa.ES256()}} {
		key, err := jwk.Import(k.pub)
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]any{jwk.KeyIDKey: k.kid, jwk.AlgorithmKey: k.alg, jwk.KeyUsageKey: "sig"} {
			if err := key.Set(name, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := set.AddKey(key); err != nil {
			t.Fatal(err)
		}
	}
	jwks, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	iss := &testIssuer{rsaKey: rk, ecKey: ek}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss.url,
			"jwks_uri":                              iss.url + "/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		iss.mu.Lock()
		iss.jwksHits++
		iss.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(jwks)
	})
	iss.srv = httptest.NewServer(mux)
	iss.url = iss.srv.URL
	t.Cleanup(iss.srv.Close)
	return iss
}

func (i *testIssuer) jwksFetches() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.jwksHits
}

// tokenSpec describes one access token. spec() fills in a valid default.
type tokenSpec struct {
	kid   string // rsa-1 (RS256) or ec-1 (ES256); anything else needs signer
	alg   jwa.SignatureAlgorithm
	typ   string
	iss   string
	sub   string
	aud   []string
	scope string
	jti   string
	iat   time.Time // zero: no iat claim
	nbf   time.Time // zero: no nbf claim
	exp   time.Time // zero: no exp claim
	// signer, when set, signs instead of the issuer's key for kid.
	signer crypto.Signer
	// extra holds more claims (e.g. Entra's oid).
	extra map[string]any
}

// spec returns a valid RS256 access token spec for sub with a fresh jti.
func (i *testIssuer) spec(t *testing.T, sub string) tokenSpec {
	now := time.Now()
	return tokenSpec{
		kid: "rsa-1", alg: jwa.RS256(), typ: "at+jwt",
		iss: i.url, sub: sub, aud: []string{"api"}, scope: "read",
		jti: randHex(t, 12), iat: now, nbf: now, exp: now.Add(10 * time.Minute),
	}
}

// mint signs s with jwx.
func (i *testIssuer) mint(t *testing.T, s tokenSpec) string {
	t.Helper()
	b := jwt.NewBuilder().Issuer(s.iss).Subject(s.sub).Audience(s.aud).JwtID(s.jti).
		Claim("client_id", "e2e-client")
	if !s.iat.IsZero() {
		b = b.IssuedAt(s.iat)
	}
	if !s.nbf.IsZero() {
		b = b.NotBefore(s.nbf)
	}
	if !s.exp.IsZero() {
		b = b.Expiration(s.exp)
	}
	if s.scope != "" {
		b = b.Claim("scope", s.scope)
	}
	for k, v := range s.extra {
		b = b.Claim(k, v)
	}
	tok, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	var key any
	switch {
	case s.signer != nil:
		key = s.signer
	case s.kid == "ec-1":
		key = i.ecKey
	default:
		key = i.rsaKey
	}
	hdr := jws.NewHeaders()
	for name, v := range map[string]any{jws.TypeKey: s.typ, jws.KeyIDKey: s.kid} {
		if err := hdr.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(s.alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// claims returns s's payload as a JSON object.
func (s tokenSpec) claims() map[string]any {
	return map[string]any{
		"iss": s.iss, "sub": s.sub, "aud": s.aud, "scope": s.scope, "jti": s.jti,
		"client_id": "e2e-client",
		"iat":       s.iat.Unix(), "nbf": s.nbf.Unix(), "exp": s.exp.Unix(),
	}
}

var b64 = base64.RawURLEncoding

// handToken encodes a JWS by hand, for the tokens jwx refuses to make.
func handToken(t *testing.T, header, payload map[string]any, sig []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(h) + "." + b64.EncodeToString(p) + "." + b64.EncodeToString(sig)
}

// hs256WithKey signs s with HMAC-SHA256 using secret: the algorithm
// confusion attack, where the secret is the issuer's public key.
func hs256WithKey(t *testing.T, s tokenSpec, secret []byte) string {
	t.Helper()
	unsigned := handToken(t, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": s.kid}, s.claims(), nil)
	unsigned = strings.TrimSuffix(unsigned, ".")
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(unsigned))
	return unsigned + "." + b64.EncodeToString(mac.Sum(nil))
}

// publicKeyEncodings returns the RSA public key the way an attacker would
// feed it to HMAC: PKIX PEM, PKCS#1 PEM and raw PKIX DER.
func (i *testIssuer) publicKeyEncodings(t *testing.T) map[string][]byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&i.rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"pkix-pem":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"pkcs1-pem": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&i.rsaKey.PublicKey)}),
		"pkix-der":  der,
	}
}

// tamper re-encodes token's payload with change applied and keeps the
// original signature.
func tamper(t *testing.T, token string, change func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", token)
	}
	raw, err := b64.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	change(claims)
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = b64.EncodeToString(p)
	return strings.Join(parts, ".")
}

// ---- the upstream app ----

// echo is what the upstream saw, as it answers it.
type echo struct {
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Query  string      `json:"query"`
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
}

// upstream echoes every request's method, path and headers as JSON and
// counts hits per path. Paths under /slow/ are held until release is
// called (or 10s pass), so a test can keep a request in flight.
type upstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	hits    map[string]int
	arrived chan string
	release chan struct{}
	once    sync.Once
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{hits: map[string]int{}, arrived: make(chan string, 16), release: make(chan struct{})}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.hits[r.URL.Path]++
		u.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/slow/") {
			u.arrived <- r.URL.Path
			select {
			case <-u.release:
			case <-time.After(10 * time.Second):
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header})
	}))
	t.Cleanup(u.releaseAll)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) hitsFor(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits[path]
}

func (u *upstream) releaseAll() { u.once.Do(func() { close(u.release) }) }

// headerValues returns every value the upstream got for name, matching
// names case-insensitively and treating '_' as '-' (as CGI-style apps do:
// X_User and X-User both become HTTP_X_USER).
func headerValues(h http.Header, name string) []string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "-") }
	var vs []string
	for k, v := range h {
		if norm(k) == norm(name) {
			vs = append(vs, v...)
		}
	}
	return vs
}

// ---- the gateway under test ----

// gatewayConfig is what differs between the gateways the tests start.
type gatewayConfig struct {
	issuer     string
	upstream   string
	dataDir    string
	adminToken string
	// extraYAML is appended to the config file (top-level keys).
	extraYAML string
}

// configYAML renders the e2e config; the admin token is read from
// ${E2E_ADMIN_TOKEN}.
func (c gatewayConfig) configYAML(listen, internal string) string {
	q := func(s string) string {
		b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted scalar
		return string(b)
	}
	return fmt.Sprintf(`# oidcgate e2e config
listen: %[1]s
internal_listen: %[2]s
data_dir: %[3]s
clock_skew: 1s
issuers:
  - issuer: %[4]s
    audiences: [api]
    access_token_algs: [RS256, ES256]
    max_token_lifetime: 1h
routes:
  - path_prefix: /public
    upstream: %[5]s
    auth: none
  - path_prefix: /scoped
    upstream: %[5]s
    auth: bearer
    required_scopes: [admin]
    headers: {X-User: sub, X-Scope: scope}
  - path_prefix: /
    upstream: %[5]s
    api_keys: true
    headers:
      X-User: sub
      X-Client: client_id
      X-Scope: scope
admin:
  tokens:
    - name: e2e
      token: ${E2E_ADMIN_TOKEN}
`, q(listen), q(internal), q(c.dataDir), q(c.issuer), q(c.upstream)) + c.extraYAML
}

// gatewayProc is a running `oidcgate serve`.
type gatewayProc struct {
	*proc
	public   string // http://127.0.0.1:port of the proxy listener
	internal string // http://127.0.0.1:port of the internal listener
	cfg      gatewayConfig
	client   *http.Client
}

// startGateway writes cfg to a file, runs `oidcgate serve --config FILE`
// and waits until the internal /readyz answers 200.
func startGateway(t *testing.T, cfg gatewayConfig) *gatewayProc {
	t.Helper()
	return startGatewayYAML(t, cfg, cfg.configYAML)
}

// startGatewayYAML is startGateway with the config file that render
// writes for the two listen addresses; cfg.adminToken is the
// ${E2E_ADMIN_TOKEN} of the file.
func startGatewayYAML(t *testing.T, cfg gatewayConfig, render func(listen, internal string) string) *gatewayProc {
	t.Helper()
	listen, internal := freeLoopbackAddr(t), freeLoopbackAddr(t)
	path := filepath.Join(t.TempDir(), "oidcgate.yaml")
	if err := os.WriteFile(path, []byte(render(listen, internal)), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{
		proc:     startProc(t, "oidcgate serve", []string{"E2E_ADMIN_TOKEN=" + cfg.adminToken}, "serve", "--config", path),
		public:   "http://" + listen,
		internal: "http://" + internal,
		cfg:      cfg,
		client:   newClient(t),
	}
	g.waitReady(t)
	return g
}

func (g *gatewayProc) waitReady(t *testing.T) {
	t.Helper()
	var last string
	ok := waitFor(readyTimeout, func() bool {
		if g.exited() {
			return true
		}
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, g.internal+"/readyz", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := g.client.Do(req)
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		return resp.StatusCode == http.StatusOK
	})
	if g.exited() {
		t.Fatalf("oidcgate serve exited (status %d) before it was ready\nstderr:\n%s", g.cmd.ProcessState.ExitCode(), g.stderr.String())
	}
	if !ok {
		t.Fatalf("/readyz not 200 within %s (last: %s)\nstderr:\n%s", readyTimeout, last, g.stderr.String())
	}
}

func (g *gatewayProc) get(t *testing.T, path, token string, hdr http.Header) response {
	t.Helper()
	return do(t, g.client, http.MethodGet, g.public+path, token, hdr, nil)
}

// revoke POSTs body to the internal admin API with the admin token.
func (g *gatewayProc) revoke(t *testing.T, body map[string]string) response {
	t.Helper()
	return g.adminPost(t, g.internal, g.cfg.adminToken, body)
}

func (g *gatewayProc) adminPost(t *testing.T, base, token string, body map[string]string) response {
	t.Helper()
	resp, err := g.sendAdminPost(base, token, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// sendAdminPost is adminPost for any goroutine.
func (g *gatewayProc) sendAdminPost(base, token string, body map[string]string) (response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return response{}, err
	}
	return send(g.client, http.MethodPost, base+"/admin/revocations", token,
		http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(b))
}

// cliEnv is the environment for `oidcgate revoke` against g.
func (g *gatewayProc) cliEnv(adminToken string) []string {
	return []string{"OIDCGATE_ADMIN_URL=" + g.internal, "OIDCGATE_ADMIN_TOKEN=" + adminToken}
}
