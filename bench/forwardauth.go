package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Forward auth: a real nginx on loopback, its auth_request asking
// /oauth2/auth of oidcgate on one port and of oauth2-proxy on another, in
// front of the same upstream. The server blocks have the shape of the
// README's nginx snippet (internal auth location fed X-Original-Method and
// X-Original-URL, the identity copied from the auth answer with
// auth_request_set), plus keep-alive to the upstreams, which any
// production nginx in front of a busy service has and which both
// contenders get alike.

// nginxBin resolves the nginx binary: name on the PATH, else Debian's
// /usr/sbin/nginx (not on an ordinary user's PATH). "" when absent.
func nginxBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if name == "nginx" {
		if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
			return "/usr/sbin/nginx"
		}
	}
	return ""
}

// fwdServer is one nginx server block: listen, the auth service at auth
// (host:port), the upstream path prefix, and the auth answer's header
// (nginx variable form) holding the user and the email.
type fwdServer struct {
	listen, auth, prefix, userVar, emailVar string
}

// nginxConf is the whole nginx.conf for dir, the app at upstream
// (host:port) and the servers.
func nginxConf(dir, upstream string, root bool, servers []fwdServer) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	if root {
		// Workers may not drop to nobody: they could not use dir.
		w("user root;")
	}
	w("daemon off;")
	w("worker_processes 1;")
	w("pid %s/nginx.pid;", dir)
	w("error_log %s/error.log warn;", dir)
	w("events { worker_connections 1024; }")
	w("http {")
	w("    access_log off;")
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		w("    %s_temp_path %s/%s;", t, dir, t)
	}
	w("    upstream app { server %s; keepalive 64; }", upstream)
	for i, s := range servers {
		w("    upstream auth%d { server %s; keepalive 64; }", i, s.auth)
		w(`    server {
        listen %[1]s;
        location = /oauth2/auth {
            internal;
            proxy_pass http://auth%[2]d;
            proxy_http_version 1.1;
            proxy_pass_request_body off;
            proxy_set_header Connection "";
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Forwarded-Method "";
            proxy_set_header X-Forwarded-Proto "";
            proxy_set_header X-Forwarded-Host "";
            proxy_set_header X-Forwarded-Uri "";
        }
        location %[3]s/ {
            auth_request /oauth2/auth;
            auth_request_set $fwd_user %[4]s;
            auth_request_set $fwd_email %[5]s;
            proxy_set_header X-User $fwd_user;
            proxy_set_header X-Email $fwd_email;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }
    }`, s.listen, i, s.prefix, s.userVar, s.emailVar)
	}
	w("}")
	return b.String()
}

// startNginx writes the config and starts nginx (master and its one
// worker pinned to cpus).
func startNginx(bin, cpus, work, upstream string, servers []fwdServer) (*process, error) {
	dir := filepath.Join(work, "nginx")
	if err := ensureDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(nginxConf(dir, upstream, os.Geteuid() == 0, servers)), 0o600); err != nil {
		return nil, err
	}
	b, args := pinned(cpus, bin, "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"))
	return startProcess("nginx", b, env(), args...)
}

// waitIngress polls url with tok until it answers 200 from the upstream.
func waitIngress(ctx context.Context, c *http.Client, p *process, url, tok string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		code, err := get(ctx, c, url, tok)
		if err == nil && code == http.StatusOK {
			return nil
		}
		select {
		case <-p.done:
			return p.failed(fmt.Errorf("exited before it was ready (%s: %d, %v)", url, code, err))
		case <-ctx.Done():
			return p.failed(fmt.Errorf("%s not ready: status %d, %v", url, code, err))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// childPids returns the pids whose parent is pid (nginx's workers).
func childPids(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		s := string(b)
		// Field 4 (ppid) is the second after the command's ')'.
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out, nil
}

// startForwardAuth starts nginx in front of the upstream with oidcgate's
// /oauth2/auth (b.gw) and, when o2pBin is set, a second oauth2-proxy
// answering /oauth2/auth with --set-xauthrequest, and returns their
// contenders.
func (b *bench) startForwardAuth(ctx context.Context, authFile, tok string) ([]contender, error) {
	gwListen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	servers := []fwdServer{{listen: gwListen, auth: strings.TrimPrefix(b.gw.public, "http://"), prefix: "/fwd",
		userVar: "$upstream_http_x_user", emailVar: "$upstream_http_x_email"}}
	var o2p *process
	if b.o.oauth2Proxy != "" {
		p, base, err := startOAuth2Proxy(b.o.oauth2Proxy, b.info.cpu.proxy, b.is.url, b.upstream, "--set-xauthrequest")
		if err != nil {
			return nil, err
		}
		o2p = b.track(p)
		if err := waitOAuth2Proxy(ctx, b.client, p, base, tok); err != nil {
			return nil, err
		}
		listen, err := freeAddr()
		if err != nil {
			return nil, err
		}
		servers = append(servers, fwdServer{listen: listen, auth: strings.TrimPrefix(base, "http://"), prefix: "/fwdo2p",
			userVar: "$upstream_http_x_auth_request_user", emailVar: "$upstream_http_x_auth_request_email"})
	}
	ng, err := startNginx(b.nginx, b.info.cpu.proxy, b.work, strings.TrimPrefix(b.upstream, "http://"), servers)
	if err != nil {
		return nil, err
	}
	b.track(ng)
	for _, s := range servers {
		if err := waitIngress(ctx, b.client, ng, "http://"+s.listen+s.prefix+"/ready", tok); err != nil {
			return nil, err
		}
	}
	workers, err := childPids(ng.pid())
	if err != nil {
		return nil, err
	}
	if len(workers) == 0 {
		return nil, ng.failed(fmt.Errorf("no nginx worker under pid %d", ng.pid()))
	}
	nginxPids := append([]int{ng.pid()}, workers...)
	cs := []contender{{name: fwdOidcgate, fwd: true,
		desc:     "nginx auth_request → oidcgate /oauth2/auth (verdict cached; revocation checked on every request), nginx proxies to the upstream; CPU is nginx's plus oidcgate's",
		url:      "http://" + servers[0].listen + "/fwd/x",
		prefix:   "/fwd",
		pids:     slices.Concat(nginxPids, []int{b.gw.pid()}),
		authFile: authFile}}
	if o2p != nil {
		cs = append(cs, contender{name: fwdOAuth2Proxy, fwd: true,
			desc:     "nginx auth_request → oauth2-proxy v7.15.6 /oauth2/auth (--skip-jwt-bearer-tokens, --set-xauthrequest, the same token; verifies the signature on every request); CPU is nginx's plus oauth2-proxy's",
			url:      "http://" + servers[1].listen + "/fwdo2p/x",
			prefix:   "/fwdo2p",
			pids:     slices.Concat(nginxPids, []int{o2p.pid()}),
			authFile: authFile})
	}
	return cs, nil
}

const (
	fwdOidcgate    = "nginx + oidcgate /oauth2/auth"
	fwdOAuth2Proxy = "nginx + oauth2-proxy /oauth2/auth"
)
