package main

// Forward auth end to end: real nginx and real Caddy, running the README's
// own snippets, in front of the test upstream, asking the real binary.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireTool returns the path of an installed program: it fails t when
// it is missing and CI is set, and skips t otherwise.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	requireBinary(t)
	p, err := exec.LookPath(name)
	if err != nil {
		if fi, e := os.Stat("/usr/sbin/" + name); e == nil && !fi.IsDir() {
			return "/usr/sbin/" + name
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (install it: apt-get install -y %s): %v", name, pkg, err)
		}
		t.Skipf("%s not found; skipping (set CI to make this fail): %v", name, err)
	}
	return p
}

// readmeSnippet returns the code block of README.md between the markers
// <!-- forward-auth:NAME --> and <!-- /forward-auth:NAME -->, without its
// fences: the tests run what the README shows.
func readmeSnippet(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- forward-auth:"+name+" -->\n")
	block, _, ok2 := strings.Cut(rest, "<!-- /forward-auth:"+name+" -->")
	if !ok || !ok2 {
		t.Fatalf("README.md has no forward-auth:%s snippet", name)
	}
	lines := strings.Split(strings.TrimSpace(block), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "```") || lines[len(lines)-1] != "```" {
		t.Fatalf("README.md forward-auth:%s is not one fenced code block", name)
	}
	return strings.Join(lines[1:len(lines)-1], "\n") + "\n"
}

// replaceAll replaces each old (which must occur) by its new.
func replaceAll(t *testing.T, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("snippet has no %q to replace", pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// ingress is a running nginx or Caddy.
type ingress struct {
	url  string // http://127.0.0.1:port
	logs *syncBuffer
}

// startIngress runs cmd (its output to a buffer) until t ends and waits
// until addr accepts connections.
func startIngress(t *testing.T, name, addr, logFile string, cmd *exec.Cmd) *ingress {
	t.Helper()
	in := &ingress{url: "http://" + addr, logs: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = in.logs, in.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		// The process group: nginx's workers go with their master.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(exitTimeout):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("%s output:\n%s\n%s", name, in.logs.String(), b)
		}
	})
	ok := waitFor(readyTimeout, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	select {
	case <-done:
		b, _ := os.ReadFile(logFile)
		t.Fatalf("%s exited before serving:\n%s\n%s", name, in.logs.String(), b)
	default:
	}
	if !ok {
		t.Fatalf("%s did not listen on %s within %s", name, addr, readyTimeout)
	}
	return in
}

// startNginx runs nginx with the README's server block, its addresses
// replaced: the gateway at gw, the app at app, listening on addr.
func startNginx(t *testing.T, addr, gw, app string) *ingress {
	t.Helper()
	bin := requireTool(t, "nginx", "nginx-light")
	dir := t.TempDir()
	server := replaceAll(t, readmeSnippet(t, "nginx"),
		"listen 80;", "listen "+addr+";",
		"http://oidcgate:8080", "http://"+gw,
		"http://app:3000", app)
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s}
`, dir, server)
	if os.Geteuid() == 0 {
		// Workers may not drop to nobody: they could not use dir.
		conf = "user root;\n" + conf
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"))
	return startIngress(t, "nginx", addr, filepath.Join(dir, "error.log"), cmd)
}

// startCaddy runs Caddy with the README's Caddyfile, its addresses
// replaced.
func startCaddy(t *testing.T, addr, gw, app string) *ingress {
	t.Helper()
	bin := requireTool(t, "caddy", "caddy")
	dir := t.TempDir()
	site := replaceAll(t, readmeSnippet(t, "caddy"),
		"app.example.com {", "http://"+addr+" {\n\tbind 127.0.0.1",
		"oidcgate:8080", gw,
		"app:3000", strings.TrimPrefix(app, "http://"))
	conf := fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n\tstorage file_system %s\n}\n\n%s", filepath.Join(dir, "storage"), site)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "PATH=/usr/bin:/bin"}
	return startIngress(t, "caddy", addr, path, cmd)
}

// fwdGateway starts the gateway for an ingress at ingressURL: its routes
// have no upstream, /api is a bearer API and / a browser app, and only
// loopback may ask it.
func fwdGateway(t *testing.T, issuer *demoIssuer, ingressURL string) *gatewayProc {
	t.Helper()
	cfg := gatewayConfig{dataDir: t.TempDir(), adminToken: randHex(t, 16)}
	return startGatewayYAML(t, cfg, func(listen, internal string) string {
		return fmt.Sprintf(`listen: %q
internal_listen: %q
public_url: %q
data_dir: %q
clock_skew: 1s
session:
  secret: "e2e-session-secret-0123456789abcdefghij"
issuers:
  - issuer: %q
    audiences: [%s]
    client_id: %s
    client_secret: %q
    max_token_lifetime: 1h
routes:
  - path_prefix: /api
    headers: {X-User: sub, X-Email: email}
  - path_prefix: /
    auth: browser
    headers: {X-User: sub}
forward_auth:
  trusted_proxies: [127.0.0.1]
admin:
  tokens: [{name: e2e, token: "${E2E_ADMIN_TOKEN}"}]
`, listen, internal, ingressURL, cfg.dataDir, issuer.url, demoAudience, demoClientID, issuer.clientSecret)
	})
}

// demoToken asks the demo issuer for an access token of sub.
func demoToken(t *testing.T, c *http.Client, issuer *demoIssuer, sub string) string {
	t.Helper()
	r := do(t, c, http.MethodPost, issuer.url+"/token", "",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(url.Values{"sub": {sub}}.Encode()))
	if r.status != http.StatusOK {
		t.Fatalf("demo issuer /token: %d %s", r.status, r.body)
	}
	return strings.TrimSpace(string(r.body))
}

// checkBearerThroughIngress runs the bearer cases through an ingress: the
// upstream sees the gateway's identity and never a client-sent one, and a
// refused request never reaches it.
func checkBearerThroughIngress(t *testing.T, in *ingress, gw *gatewayProc, issuer *demoIssuer, up *upstream) {
	t.Helper()
	c := newClient(t)
	alice := demoToken(t, c, issuer, "alice")
	forged := http.Header{"X-User": {"mallory"}, "X-Email": {"mallory@evil.example"}, "X_User": {"mallory"}}

	r := do(t, c, http.MethodGet, in.url+"/api/valid?q=1", alice, forged, nil)
	if r.status != http.StatusOK {
		t.Fatalf("valid token: got %d %s; want 200", r.status, r.body)
	}
	var e echo
	mustJSON(t, r.body, &e)
	if got := headerValues(e.Header, "X-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("upstream X-User: got %q; want exactly [alice] from the gateway", got)
	}
	// The token has no email claim: the client's copy must not get through
	// (an empty value, as the gateway answers for a missing claim, may).
	if got := headerValues(e.Header, "X-Email"); len(got) > 1 || len(got) == 1 && got[0] != "" {
		t.Errorf("upstream X-Email: got %q; want none or empty (the claim is missing, the client's copy dropped)", got)
	}
	if e.Path != "/api/valid" || e.Query != "q=1" {
		t.Errorf("upstream request: got %s?%s; want /api/valid?q=1", e.Path, e.Query)
	}

	carol := demoToken(t, c, issuer, "carol")
	if r := do(t, c, http.MethodGet, in.url+"/api/carol-before", carol, nil, nil); r.status != http.StatusOK {
		t.Fatalf("carol before revocation: got %d %s; want 200", r.status, r.body)
	}
	if r := gw.revoke(t, map[string]string{"sub": "carol", "issuer": issuer.url, "reason": "e2e"}); r.status != http.StatusCreated {
		t.Fatalf("revoke carol: got %d %s; want 201", r.status, r.body)
	}
	tampered := tamper(t, alice, func(m map[string]any) { m["sub"] = "root" })
	for _, tc := range []struct {
		name, path, token, challenge string
	}{
		{"no token", "/api/none", "", `Bearer realm="oidcgate"`},
		{"tampered token", "/api/tampered", tampered, `error="invalid_token"`},
		{"revoked user's token", "/api/revoked", carol, `error="invalid_token"`},
	} {
		r := do(t, c, http.MethodGet, in.url+tc.path, tc.token, forged, nil)
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: got %d %s; want 401", tc.name, r.status, r.body)
		}
		if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, tc.challenge) {
			t.Errorf("%s: WWW-Authenticate %q; want it to contain %q", tc.name, got, tc.challenge)
		}
		if n := up.hitsFor(tc.path); n != 0 {
			t.Errorf("%s: the upstream was reached %d times; want never", tc.name, n)
		}
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

func TestForwardAuthNginx(t *testing.T) {
	requireTool(t, "nginx", "nginx-light")
	issuer, err := startDemoIssuer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(issuer.close)
	up := newUpstream(t)
	addr := freeLoopbackAddr(t)
	gw := fwdGateway(t, issuer, "http://"+addr)
	issuer.setBackchannel(gw.public + "/oauth2/backchannel-logout")
	in := startNginx(t, addr, strings.TrimPrefix(gw.public, "http://"), up.srv.URL)

	t.Run("bearer", func(t *testing.T) { checkBearerThroughIngress(t, in, gw, issuer, up) })

	t.Run("browser", func(t *testing.T) {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		b := newClient(t)
		b.Jar = jar
		page := in.url + "/app/page?x=1&y=2"
		nav := http.Header{"Accept": {"text/html"}, "X-User": {"mallory"}}

		// No session: nginx's error_page sends the browser to /oauth2/start.
		r := do(t, b, http.MethodGet, page, "", nav, nil)
		loc := resolve(t, page, r.header.Get("Location"))
		if r.status != http.StatusFound || loc != in.url+"/oauth2/start?rd=/app/page?x=1&y=2" {
			t.Fatalf("no session: got %d to %q; want 302 to /oauth2/start?rd=/app/page?x=1&y=2", r.status, loc)
		}
		// The gateway starts the login at the issuer.
		r = do(t, b, http.MethodGet, loc, "", nav, nil)
		authz := r.header.Get("Location")
		if r.status != http.StatusFound || !strings.HasPrefix(authz, issuer.url+"/authorize?") {
			t.Fatalf("/oauth2/start: got %d to %q; want 302 to the issuer", r.status, authz)
		}
		// dave logs in; the issuer sends him back to the callback on
		// nginx's origin.
		r = do(t, b, http.MethodPost, authz, "", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			strings.NewReader(url.Values{"sub": {"dave"}}.Encode()))
		cb := r.header.Get("Location")
		if r.status != http.StatusFound || !strings.HasPrefix(cb, in.url+"/oauth2/callback?") {
			t.Fatalf("login: got %d to %q; want 302 to %s/oauth2/callback", r.status, cb, in.url)
		}
		r = do(t, b, http.MethodGet, cb, "", nav, nil)
		if back := resolve(t, cb, r.header.Get("Location")); r.status != http.StatusFound || back != page {
			t.Fatalf("callback: got %d to %q; want 302 back to %s", r.status, back, page)
		}
		// The cookie alone keeps the browser in, with the gateway's
		// identity reaching the app.
		for i := range 2 {
			r = do(t, b, http.MethodGet, page, "", nav, nil)
			if r.status != http.StatusOK {
				t.Fatalf("with the session (%d): got %d %s; want 200", i, r.status, r.body)
			}
			var e echo
			mustJSON(t, r.body, &e)
			if got := headerValues(e.Header, "X-User"); len(got) != 1 || got[0] != "dave" {
				t.Errorf("upstream X-User: got %q; want [dave]", got)
			}
		}
		// The IdP logs dave out over the back channel: the ingress refuses
		// his very next request.
		r = do(t, newClient(t), http.MethodPost, issuer.url+"/backchannel-logout", "",
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(url.Values{"sub": {"dave"}}.Encode()))
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "200 OK") {
			t.Fatalf("back-channel logout: got %d %s; want the gateway's 200", r.status, r.body)
		}
		hits := up.hitsFor("/app/page")
		r = do(t, b, http.MethodGet, page, "", nav, nil)
		if r.status != http.StatusFound || !strings.Contains(r.header.Get("Location"), "/oauth2/start?rd=") {
			t.Errorf("after the back-channel logout: got %d to %q; want 302 to log in again", r.status, r.header.Get("Location"))
		}
		if n := up.hitsFor("/app/page") - hits; n != 0 {
			t.Errorf("the app was reached %d times after the logout; want never", n)
		}
	})
}

func TestForwardAuthCaddy(t *testing.T) {
	requireTool(t, "caddy", "caddy")
	issuer, err := startDemoIssuer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(issuer.close)
	up := newUpstream(t)
	addr := freeLoopbackAddr(t)
	gw := fwdGateway(t, issuer, "http://"+addr)
	in := startCaddy(t, addr, strings.TrimPrefix(gw.public, "http://"), up.srv.URL)

	t.Run("bearer", func(t *testing.T) { checkBearerThroughIngress(t, in, gw, issuer, up) })

	// The redirecting variant: a navigation without a session is sent to
	// log in on Caddy's origin, an API call gets 401.
	c := newClient(t)
	r := do(t, c, http.MethodGet, in.url+"/app/page?x=1&y=2", "", http.Header{"Accept": {"text/html"}}, nil)
	want := in.url + "/oauth2/start?rd=" + url.QueryEscape("/app/page?x=1&y=2")
	if r.status != http.StatusFound || r.header.Get("Location") != want {
		t.Errorf("navigation without a session: got %d to %q; want 302 to %q", r.status, r.header.Get("Location"), want)
	}
	if r := do(t, c, http.MethodGet, in.url+"/app/page", "", http.Header{"Accept": {"application/json"}}, nil); r.status != http.StatusUnauthorized {
		t.Errorf("API call without a session: got %d; want 401", r.status)
	}
	if n := up.hitsFor("/app/page"); n != 0 {
		t.Errorf("the app was reached %d times without a session; want never", n)
	}
	// /oauth2/start is served through Caddy and goes to the issuer.
	if r := do(t, c, http.MethodGet, want, "", nil, nil); r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), issuer.url+"/authorize?") {
		t.Errorf("/oauth2/start through Caddy: got %d to %q; want 302 to the issuer", r.status, r.header.Get("Location"))
	}
}

// resolve resolves a Location against the request URL.
func resolve(t *testing.T, base, loc string) string {
	t.Helper()
	b, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.Parse(loc)
	if err != nil {
		t.Fatalf("Location %q: %v", loc, err)
	}
	return l.String()
}
