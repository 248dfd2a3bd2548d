package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/cache"
	"github.com/oidcgate/oidcgate/clock/clocktest"
)

// lenientUpstream switches protocols on any request that asks (and, with
// always, on every request), echoes lines over the upgraded connection,
// and records the Upgrade and X-User headers it saw.
type lenientUpstream struct {
	*httptest.Server
	hits     atomic.Int64
	upgrades atomic.Int64 // requests that carried an Upgrade header
	users    chan string
}

func newLenientUpstream(t testing.TB, always bool) *lenientUpstream {
	t.Helper()
	u := &lenientUpstream{users: make(chan string, 16)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		up := r.Header.Get("Upgrade")
		if up != "" {
			u.upgrades.Add(1)
		}
		if up == "" && !always {
			_, _ = io.WriteString(w, "plain\n")
			return
		}
		u.users <- r.Header.Get("X-User")
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + up + "\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString("echo " + line)
			_ = brw.Flush()
		}
	}))
	t.Cleanup(u.Close)
	return u
}

// handshake opens a connection to srv, sends head (request line and
// headers, without the final empty line) and reads the response head.
func handshake(t testing.TB, addr, head string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A guard against a hang, not a timing assertion.
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, head+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, res
}

const wsHeaders = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="

// TestH2CUpgradeRefused: an h2c upgrade gets no 101 on any route, and the
// upstream never sees an Upgrade it did not opt into.
func TestH2CUpgradeRefused(t *testing.T) {
	idp := newTestIssuer(t)
	up := newLenientUpstream(t, false)
	srv := serve(t, Config{
		Verifier: idp.v,
		Sessions: idp.store,
		Clock:    clocktest.New(testNow),
		Routes: []Route{
			{PathPrefix: "/public", Upstream: up.URL, Auth: AuthNone},
			{PathPrefix: "/ws", Upstream: up.URL, Auth: AuthNone, WebSocket: true},
			{PathPrefix: "/admin", Upstream: up.URL},
		},
	})
	addr := srv.Listener.Addr().String()
	for _, tt := range []struct{ name, head string }{
		{"h2c on a none route", "GET /public HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"},
		{"h2c on a websocket route", "GET /ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"},
		{"h2c upper case, no settings", "GET /public HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: H2C"},
		{"h2c after websocket", "GET /ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c"},
		{"settings alone", "GET /public HTTP/1.1\r\nHost: gw.test\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"},
		{"h2c on a reserved path", "GET /oauth2/x HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: h2c"},
		{"another protocol on a none route", "GET /public HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: foo/1"},
		{"websocket on a route without websocket", "GET /public HTTP/1.1\r\nHost: gw.test\r\n" + wsHeaders},
		{"upgrade without Connection", "GET /public HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket"},
	} {
		_, _, res := handshake(t, addr, tt.head+"\r\nConnection: close")
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status got %d; want 400", tt.name, res.StatusCode)
		}
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("upstream requests: got %d; want 0", n)
	}
	// An upstream that switches protocols unasked gets no tunnel either.
	always := newLenientUpstream(t, true)
	srv2 := serve(t, Config{Routes: []Route{{Upstream: always.URL, Auth: AuthNone}}})
	_, _, res := handshake(t, srv2.Listener.Addr().String(), "GET /x HTTP/1.1\r\nHost: gw.test\r\nConnection: close")
	if res.StatusCode == http.StatusSwitchingProtocols {
		t.Errorf("unasked 101 from upstream: passed on; want it refused")
	}
	if n := always.upgrades.Load(); n != 0 {
		t.Errorf("upstream saw Upgrade on %d requests; want none", n)
	}
}

// TestWebSocketBearer: on an opted-in route the handshake needs the
// route's token; the tunnel works and ends when the token is revoked. Other
// routes refuse the handshake.
func TestWebSocketBearer(t *testing.T) {
	idp := newTestIssuer(t)
	up := newLenientUpstream(t, false)
	srv := serve(t, Config{
		Verifier: idp.v,
		Sessions: idp.store,
		Clock:    clocktest.New(testNow),
		Routes: []Route{
			{PathPrefix: "/ws", Upstream: up.URL, WebSocket: true, Headers: map[string]string{"X-User": "sub"}},
			{PathPrefix: "/api", Upstream: up.URL},
		},
	})
	addr := srv.Listener.Addr().String()
	tok := idp.token(t, testClaims{Sub: "alice", JTI: "ws-1"})

	if _, _, res := handshake(t, addr, "GET /ws HTTP/1.1\r\nHost: gw.test\r\n"+wsHeaders); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: status got %d; want 401", res.StatusCode)
	}
	if _, _, res := handshake(t, addr, "GET /api HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer "+tok+"\r\n"+wsHeaders); res.StatusCode != http.StatusBadRequest {
		t.Errorf("route without websocket: status got %d; want 400", res.StatusCode)
	}
	if n := up.hits.Load(); n != 0 {
		t.Fatalf("upstream requests before a valid handshake: got %d; want 0", n)
	}

	conn, br, res := handshake(t, addr, "GET /ws HTTP/1.1\r\nHost: gw.test\r\nX-User: mallory\r\nAuthorization: Bearer "+tok+"\r\n"+wsHeaders)
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("handshake: got %d Upgrade %q; want 101 websocket", res.StatusCode, res.Header.Get("Upgrade"))
	}
	if got := <-up.users; got != "alice" {
		t.Errorf("upstream X-User: got %q; want alice", got)
	}
	echo(t, conn, br, "ping\n")
	idp.revoke(t, "ws-1")
	waitClosed(t, conn, br)
}

// TestWebSocketBrowser: a session opens a tunnel only from this origin;
// revoking the session ends it.
func TestWebSocketBrowser(t *testing.T) {
	up := newLenientUpstream(t, false)
	e := newEnv(t, func(c *Config) {
		c.Routes = append(c.Routes, Route{PathPrefix: "/live", Upstream: up.URL, Auth: AuthBrowser, WebSocket: true,
			Headers: map[string]string{"X-User": "sub"}})
	})
	b := e.browser(t)
	b.login(e, "/live/")
	cookie := DefaultCookieName + "=" + b.cookie(e, "/", DefaultCookieName)
	addr := e.srv.Listener.Addr().String()
	head := "GET /live/feed HTTP/1.1\r\nHost: " + addr + "\r\nCookie: " + cookie + "\r\n" + wsHeaders
	before := up.hits.Load()
	for _, origin := range []string{"", "\r\nOrigin: https://evil.example", "\r\nOrigin: http://localhost"} {
		if _, _, res := handshake(t, addr, head+origin); res.StatusCode != http.StatusForbidden {
			t.Errorf("Origin %q: status got %d; want 403", origin, res.StatusCode)
		}
	}
	if n := up.hits.Load() - before; n != 0 {
		t.Fatalf("upstream handshakes from other origins: got %d; want 0", n)
	}
	conn, br, res := handshake(t, addr, head+"\r\nOrigin: "+e.srv.URL)
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: got %d; want 101", res.StatusCode)
	}
	if got := <-up.users; got != "alice" {
		t.Errorf("upstream X-User: got %q; want alice", got)
	}
	echo(t, conn, br, "hello\n")
	// The user's sessions end (an issued-before sub revocation, as the
	// IdP's back-channel logout without sid makes).
	e.revoke(t, cache.Entry{Issuer: e.idp.URL, Kind: cache.KindSub, Value: "alice"})
	waitClosed(t, conn, br)
}

// TestTunnelRevokedBeforeRegistration: a revocation that lands between
// authentication and registration still ends the tunnel.
func TestTunnelRevokedBeforeRegistration(t *testing.T) {
	idp := newTestIssuer(t)
	tn := newTunnels(idp.store)
	defer tn.close()
	idp.revoke(t, "gone")
	ctx, done := tn.start(context.Background(), cache.Credential{Issuer: idp.URL, JTI: "gone", Sub: "alice", IssuedAt: testNow}, time.Time{}, testNow)
	defer done()
	if ctx.Err() == nil {
		t.Error("tunnel of a revoked credential: open; want ended")
	}
}

func echo(t *testing.T, conn net.Conn, br *bufio.Reader, line string) {
	t.Helper()
	if _, err := io.WriteString(conn, line); err != nil {
		t.Fatal(err)
	}
	got, err := br.ReadString('\n')
	if err != nil || got != "echo "+line {
		t.Fatalf("over the tunnel: got %q, %v; want %q", got, err, "echo "+line)
	}
}

// waitClosed reads until the gateway closes the connection; the read
// deadline set at the handshake fails the test if it never does.
func waitClosed(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	_, _ = io.WriteString(conn, "after\n")
	for {
		line, err := br.ReadString('\n')
		if err == nil {
			if !strings.HasPrefix(line, "echo") {
				t.Fatalf("unexpected %q", line)
			}
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("tunnel still open after the revocation")
		}
		return
	}
}
