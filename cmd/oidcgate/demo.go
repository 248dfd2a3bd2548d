package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/oidcgate/oidcgate/gateway"
	"github.com/oidcgate/oidcgate/introspect"
	"github.com/oidcgate/oidcgate/logout"
)

// Demo settings: everything runs on loopback, nothing leaves the machine.
const (
	demoAudience      = "demo-api"
	demoTokenLifetime = 10 * time.Minute
	demoPreferredPub  = "127.0.0.1:8080"
	demoPreferredInt  = "127.0.0.1:9091"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--listen ADDR] [--internal-listen ADDR]", stderr)
	pub := fs.String("listen", demoPreferredPub, "gateway `address` (a free port is used if it is taken)")
	intl := fs.String("internal-listen", demoPreferredInt, "admin/metrics `address` (a free port is used if it is taken)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dataDir, err := os.MkdirTemp("", "oidcgate-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)

	issuer, err := startDemoIssuer()
	if err != nil {
		return err
	}
	defer issuer.close()
	app, err := startDemoApp()
	if err != nil {
		return err
	}
	defer app.close()

	adminToken, err := randomHex(24)
	if err != nil {
		return err
	}
	cfg := &Config{
		Listen:         freeAddr(*pub),
		InternalListen: freeAddr(*intl),
		DataDir:        dataDir,
		Issuers: []introspect.Issuer{{
			Issuer:           issuer.url,
			Audiences:        []string{demoAudience},
			MaxTokenLifetime: time.Hour,
		}},
		Routes: []gateway.Route{
			{PathPrefix: "/public", Upstream: app.url, Auth: gateway.AuthNone},
			{PathPrefix: "/", Upstream: app.url, Auth: gateway.AuthBearer,
				RequiredScopes: []string{"read"},
				Headers:        map[string]string{"X-User": "sub", "X-Scope": "scope"}},
		},
		Admin: logout.AdminConfig{Tokens: []logout.AdminToken{{Name: "demo", Token: introspect.Secret(adminToken)}}},
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	gw, err := newGateway(cfg, newLogger(stderr, slog.LevelWarn))
	if err != nil {
		return err
	}
	pubURL := "http://" + gw.publicLn.Addr().String()
	intURL := "http://" + gw.intLn.Addr().String()
	fmt.Fprintf(stdout, `oidcgate demo is running (Ctrl-C stops it).

  gateway:      %[1]s   (routes: /public -> no auth, / -> bearer token with scope "read")
  admin API:    %[2]s
  demo issuer:  %[3]s   (mints RS256 access tokens, aud %[4]q)
  demo app:     %[5]s
  data_dir:     %[6]s   (the revocation store; removed on exit)

Try it in another shell:

  export OIDCGATE_ADMIN_URL=%[2]s OIDCGATE_ADMIN_TOKEN=%[7]s
  TOKEN=$(curl -s -X POST -d sub=alice %[3]s/token)
  curl -i -H "Authorization: Bearer $TOKEN" %[1]s/hello      # 200: the app greets alice
  go run ./cmd/oidcgate revoke --sub alice --reason "offboarded"
  curl -i -H "Authorization: Bearer $TOKEN" %[1]s/hello      # 401: revoked, on every request from now on
  curl -s -H "Authorization: Bearer $OIDCGATE_ADMIN_TOKEN" %[2]s/admin/revocations

`, pubURL, intURL, issuer.url, demoAudience, app.url, dataDir, adminToken)
	return gw.run(ctx)
}

// freeAddr returns preferred if it can be bound now, else a free loopback
// port, so the demo starts even where 8080 is taken. It returns the address
// actually bound, so that a preferred port 0 becomes a concrete port (two
// "127.0.0.1:0" flags must not end up as one address).
func freeAddr(preferred string) string {
	if ln, err := net.Listen("tcp", preferred); err == nil {
		defer ln.Close()
		return ln.Addr().String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return preferred
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// demoIssuer is a minimal OpenID provider: discovery, JWKS and a token
// endpoint that mints an access token for any subject it is given. It
// exists only for the demo and is never part of serve.
type demoIssuer struct {
	url  string
	key  jwk.Key
	srv  *http.Server
	done chan struct{}
}

func startDemoIssuer() (*demoIssuer, error) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	key, err := jwk.Import(raw)
	if err != nil {
		return nil, err
	}
	if err := key.Set(jwk.KeyIDKey, "demo-1"); err != nil {
		return nil, err
	}
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		return nil, err
	}
	if err := pub.Set(jwk.AlgorithmKey, jwa.RS256()); err != nil {
		return nil, err
	}
	if err := pub.Set(jwk.KeyUsageKey, "sig"); err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &demoIssuer{url: "http://" + ln.Addr().String(), key: key, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                d.url,
			"jwks_uri":                              d.url + "/jwks",
			"token_endpoint":                        d.url + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, set) })
	mux.HandleFunc("POST /token", d.mint)
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(d.done)
		_ = d.srv.Serve(ln)
	}()
	return d, nil
}

// mint answers POST /token (form: sub, scope) with a bare access token, so
// that TOKEN=$(curl ...) works in a shell.
func (d *demoIssuer) mint(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	sub := r.PostForm.Get("sub")
	if sub == "" {
		sub = "alice"
	}
	scope := r.PostForm.Get("scope")
	if scope == "" {
		scope = "read"
	}
	jti, err := randomHex(16)
	if err != nil {
		http.Error(w, "no randomness", http.StatusInternalServerError)
		return
	}
	now := time.Now()
	tok, err := jwt.NewBuilder().
		Issuer(d.url).Subject(sub).Audience([]string{demoAudience}).
		IssuedAt(now).NotBefore(now).Expiration(now.Add(demoTokenLifetime)).JwtID(jti).
		Claim("client_id", "demo-client").Claim("scope", scope).Build()
	if err != nil {
		http.Error(w, "cannot build token", http.StatusInternalServerError)
		return
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "at+jwt"); err != nil {
		http.Error(w, "cannot build token", http.StatusInternalServerError)
		return
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), d.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		http.Error(w, "cannot sign token", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "%s\n", signed)
}

func (d *demoIssuer) close() {
	_ = d.srv.Close()
	<-d.done
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// demoApp is the legacy app behind the gateway: it trusts the identity
// headers the gateway sets and says who it thinks is calling.
type demoApp struct {
	url string
	srv *http.Server
}

func startDemoApp() (*demoApp, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &demoApp{url: "http://" + ln.Addr().String()}
	a.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.Header.Get("X-User")
		msg := "hello, anonymous visitor"
		if user != "" {
			msg = "hello, " + user
		}
		writeJSON(w, map[string]string{
			"app":     "demo legacy app",
			"message": msg,
			"path":    r.URL.Path,
			"scope":   r.Header.Get("X-Scope"),
			"via":     strings.Join(r.Header.Values("X-Forwarded-For"), ","),
		})
	})}
	go func() {
		if err := a.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "demo app:", err)
		}
	}()
	return a, nil
}

// close stops the demo app.
func (a *demoApp) close() { _ = a.srv.Close() }
