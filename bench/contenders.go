package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// adminTokenEnv carries the admin token into oidcgate's config (${VAR}),
// so that it never appears on a command line.
const adminTokenEnv = "BENCH_ADMIN_TOKEN"

// env is the environment every child gets: the bench's own, minus any
// role selection, plus extra.
func env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, roleEnv+"=") && !strings.HasPrefix(kv, "GODEBUG=") {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// pinned prefixes a command with taskset when cpus is not empty.
func pinned(cpus, bin string, args ...string) (string, []string) {
	if cpus == "" {
		return bin, args
	}
	return "taskset", append([]string{"-c", cpus, bin}, args...)
}

// startChild starts the bench binary itself in role, listening on listen.
func startChild(self, cpus, role string, extra ...string) (*process, error) {
	bin, args := pinned(cpus, self)
	return startProcess(role, bin, env(append(extra, roleEnv+"="+role)...), args...)
}

// gatewayOpts describes one oidcgate instance.
type gatewayOpts struct {
	name     string
	bin      string
	cpus     string
	dataDir  string
	issuer   string
	upstream string
	// store is the YAML of the store section; "" means the memory backend.
	store   string
	admin   string
	godebug string
}

// gatewayProc is a running oidcgate.
type gatewayProc struct {
	*process
	public, internal string // base URLs
}

// writeGatewayConfig writes the config of o to o.dataDir/../NAME.yaml and
// returns its path and the two listen addresses.
func writeGatewayConfig(o gatewayOpts) (string, string, string, error) {
	pub, err := freeAddr()
	if err != nil {
		return "", "", "", err
	}
	internal, err := freeAddr()
	if err != nil {
		return "", "", "", err
	}
	store := o.store
	if store == "" {
		store = "{backend: memory}"
	}
	cfg := fmt.Sprintf(`listen: %q
internal_listen: %q
data_dir: %q
store: %s
issuers:
  - issuer: %q
    audiences: [%s]
    max_token_lifetime: %s
routes:
  - path_prefix: /
    upstream: %q
    auth: bearer
    required_scopes: [read]
    headers:
      X-User: sub
admin:
  tokens:
    - name: bench
      token: ${%s}
`, pub, internal, o.dataDir, store, o.issuer, audience, tokenLifetime, o.upstream, adminTokenEnv)
	path := filepath.Join(filepath.Dir(o.dataDir), o.name+".yaml")
	return path, pub, internal, os.WriteFile(path, []byte(cfg), 0o600)
}

// checkGatewayConfig runs oidcgate check-config on the config of o and
// returns its complaint, or nil when the binary accepts it.
func checkGatewayConfig(ctx context.Context, o gatewayOpts) error {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	path, _, _, err := writeGatewayConfig(o)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, o.bin, "check-config", path)
	cmd.Env = env(adminTokenEnv + "=" + o.admin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// startGateway writes the config of o and starts oidcgate serve on it; it
// does not wait for readiness.
func startGateway(o gatewayOpts) (*gatewayProc, error) {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, err
	}
	path, pub, internal, err := writeGatewayConfig(o)
	if err != nil {
		return nil, err
	}
	extra := []string{adminTokenEnv + "=" + o.admin}
	if o.godebug != "" {
		extra = append(extra, "GODEBUG="+o.godebug)
	}
	bin, args := pinned(o.cpus, o.bin, "serve", "--config", path, "--log-level", "warn")
	p, err := startProcess(o.name, bin, env(extra...), args...)
	if err != nil {
		return nil, err
	}
	return &gatewayProc{process: p, public: "http://" + pub, internal: "http://" + internal}, nil
}

// startOAuth2Proxy starts oauth2-proxy in front of upstream, accepting the
// bench issuer's JWT bearer tokens for audience (--skip-jwt-bearer-tokens
// with --extra-jwt-issuers), with per-request logging off as oidcgate has
// none, and extra flags. It returns the process and its base URL.
func startOAuth2Proxy(bin, cpus, issuerURL, upstream string, extra ...string) (*process, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, "", err
	}
	b, args := pinned(cpus, bin,
		"--http-address="+addr,
		"--upstream="+upstream+"/",
		"--provider=oidc",
		"--oidc-issuer-url="+issuerURL,
		"--client-id=bench-client",
		"--client-secret=bench-client-secret",
		"--email-domain=*",
		"--skip-jwt-bearer-tokens",
		"--extra-jwt-issuers="+issuerURL+"="+audience,
		"--bearer-token-login-fallback=false",
		"--skip-provider-button",
		"--cookie-secure=false",
		"--request-logging=false",
		"--auth-logging=false",
		"--silence-ping-logging",
	)
	args = append(args, extra...)
	// The cookie secret goes through the environment, never argv.
	p, err := startProcess("oauth2-proxy", b, env("OAUTH2_PROXY_COOKIE_SECRET="+hex.EncodeToString(secret)), args...)
	if err != nil {
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

// waitOAuth2Proxy waits until oauth2-proxy answers its ping path and
// passes a request with tok to the upstream.
func waitOAuth2Proxy(ctx context.Context, c *http.Client, p *process, base, tok string) error {
	if err := waitStatus(ctx, c, p, base+"/ping", http.StatusOK, 30*time.Second); err != nil {
		return err
	}
	code, err := get(ctx, c, base+"/o2p/ready", tok)
	if err != nil {
		return p.failed(err)
	}
	if code != http.StatusOK {
		return p.failed(fmt.Errorf("bearer request: status %d; want 200", code))
	}
	return nil
}

// get sends GET url with a bearer token (none when tok is "") and returns
// the status. A 200 that the upstream did not serve (no marker header) is
// an error.
func get(ctx context.Context, c *http.Client, url, tok string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	drain(res)
	if res.StatusCode == http.StatusOK && res.Header.Get(upstreamMarker) == "" {
		return res.StatusCode, fmt.Errorf("GET %s: 200 without %s", url, upstreamMarker)
	}
	return res.StatusCode, nil
}
