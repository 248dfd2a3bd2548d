package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/oidcgate/oidcgate/cache"
)

// TestE2E runs the built binary against a test issuer and a real upstream.
// Cases 1–5 and 10 share one gateway; the others need their own process.
func TestE2E(t *testing.T) {
	requireBinary(t)
	iss := newTestIssuer(t)
	up := newUpstream(t)
	// A data_dir that does not exist yet: serve creates it (0700).
	gw := startGateway(t, gatewayConfig{
		issuer: iss.url, upstream: up.srv.URL, dataDir: filepath.Join(t.TempDir(), "var", "oidcgate"), adminToken: randHex(t, 24),
	})

	t.Run("1 valid tokens reach the upstream with identity headers", func(t *testing.T) {
		t.Parallel()
		testValidTokens(t, gw, iss, up)
	})
	t.Run("2 invalid tokens are refused before the upstream", func(t *testing.T) {
		t.Parallel()
		testInvalidTokens(t, gw, iss, up)
	})
	t.Run("3 spoofed identity headers never reach the upstream", func(t *testing.T) {
		t.Parallel()
		testSpoofedHeaders(t, gw, iss)
	})
	t.Run("4 revocation by jti and sub, API and CLI", func(t *testing.T) {
		t.Parallel()
		testRevoke(t, gw, iss)
	})
	t.Run("5 admin API needs a token and is internal only", func(t *testing.T) {
		t.Parallel()
		testAdminAuth(t, gw, iss)
	})
	t.Run("6 revocations survive kill -9", func(t *testing.T) {
		t.Parallel()
		testKillRestart(t, iss, up)
	})
	t.Run("7 check-config", func(t *testing.T) {
		t.Parallel()
		testCheckConfig(t, iss)
	})
	t.Run("8 demo does what it prints", func(t *testing.T) {
		t.Parallel()
		testDemo(t)
	})
	t.Run("9 SIGTERM drains in-flight requests", func(t *testing.T) {
		t.Parallel()
		testGracefulShutdown(t, iss)
	})
	t.Run("10 metrics and health", func(t *testing.T) {
		t.Parallel()
		testMetrics(t, gw, iss)
	})
	t.Run("unknown kids do not hammer the JWKS endpoint", func(t *testing.T) {
		t.Parallel()
		testUnknownKidFlood(t)
	})
}

// ---- case 1 ----

func testValidTokens(t *testing.T, gw *gatewayProc, iss *testIssuer, up *upstream) {
	for _, tc := range []struct {
		name string
		kid  string
		alg  jwa.SignatureAlgorithm
	}{
		{"RS256", "rsa-1", jwa.RS256()},
		{"ES256", "ec-1", jwa.ES256()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := iss.spec(t, "alice-"+tc.name)
			s.kid, s.alg, s.scope = tc.kid, tc.alg, "read write"
			path := "/api/valid/" + tc.name
			resp := gw.get(t, path+"?q=1", iss.mint(t, s), nil)
			if resp.status != http.StatusOK {
				t.Fatalf("status: got %d; want 200 (body %s)", resp.status, resp.body)
			}
			var e echo
			if err := json.Unmarshal(resp.body, &e); err != nil {
				t.Fatalf("upstream answer: %v (body %s)", err, resp.body)
			}
			if e.Path != path || e.Query != "q=1" {
				t.Errorf("upstream path: got %q?%q; want %q?q=1", e.Path, e.Query, path)
			}
			for _, w := range []struct{ name, want string }{
				{"X-User", s.sub},
				{"X-Scope", "read write"},
				{"X-Forwarded-For", "127.0.0.1"},
				{"X-Forwarded-Proto", "http"},
			} {
				if got := headerValues(e.Header, w.name); !slices.Equal(got, []string{w.want}) {
					t.Errorf("upstream %s: got %q; want [%q]", w.name, got, w.want)
				}
			}
			// No public_url and no route host: X-Forwarded-Host is never
			// the client's Host (issue 20 item 10), so it is not sent.
			if got := headerValues(e.Header, "X-Forwarded-Host"); len(got) != 0 {
				t.Errorf("upstream X-Forwarded-Host: got %q; want none", got)
			}
		})
	}
	t.Run("required scopes", func(t *testing.T) {
		s := iss.spec(t, "alice-scoped")
		resp := gw.get(t, "/scoped/no", iss.mint(t, s), nil)
		if resp.status != http.StatusForbidden {
			t.Errorf("without scope admin: status got %d; want 403 (body %s)", resp.status, resp.body)
		}
		// RFC 6750 §3.1: insufficient_scope.
		if got := resp.header.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) {
			t.Errorf("without scope admin: WWW-Authenticate got %q; want error=\"insufficient_scope\"", got)
		}
		if n := up.hitsFor("/scoped/no"); n != 0 {
			t.Errorf("upstream hits without scope admin: got %d; want 0", n)
		}
		s = iss.spec(t, "alice-scoped")
		s.scope = "read admin"
		if resp := gw.get(t, "/scoped/yes", iss.mint(t, s), nil); resp.status != http.StatusOK {
			t.Errorf("with scope admin: status got %d; want 200 (body %s)", resp.status, resp.body)
		}
	})
}

// ---- case 2 ----

func testInvalidTokens(t *testing.T, gw *gatewayProc, iss *testIssuer, up *upstream) {
	now := time.Now()
	valid := iss.spec(t, "mallory")
	with := func(change func(*tokenSpec)) string {
		s := iss.spec(t, "mallory")
		change(&s)
		return iss.mint(t, s)
	}
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	validToken := iss.mint(t, valid)
	dot := strings.Index(validToken, ".")

	type tc struct {
		name       string
		token      string
		wantStatus int
		wantError  string // the error= of WWW-Authenticate; "" means none
	}
	cases := []tc{
		{"expired", with(func(s *tokenSpec) {
			s.iat, s.nbf, s.exp = now.Add(-40*time.Minute), now.Add(-40*time.Minute), now.Add(-10*time.Minute)
		}), 401, "invalid_token"},
		{"wrong iss", with(func(s *tokenSpec) { s.iss = "http://127.0.0.1:9/evil" }), 401, "invalid_token"},
		{"iss with trailing slash", with(func(s *tokenSpec) { s.iss = iss.url + "/" }), 401, "invalid_token"},
		{"wrong aud", with(func(s *tokenSpec) { s.aud = []string{"other-api"} }), 401, "invalid_token"},
		{"future nbf", with(func(s *tokenSpec) {
			s.nbf, s.exp = now.Add(10*time.Minute), now.Add(20*time.Minute)
		}), 401, "invalid_token"},
		// Revocation entries expire after max_token_lifetime: a token that
		// lives longer would outlive its revocation.
		{"lifetime above max_token_lifetime", with(func(s *tokenSpec) { s.exp = now.Add(3 * time.Hour) }), 401, "invalid_token"},
		{"typ JWT instead of at+jwt (RFC 9068 §4)", with(func(s *tokenSpec) { s.typ = "JWT" }), 401, "invalid_token"},
		{"unknown kid", with(func(s *tokenSpec) { s.kid, s.signer = "rsa-unknown", otherRSA }), 401, "invalid_token"},
		{"known kid, other RSA key", with(func(s *tokenSpec) { s.signer = otherRSA }), 401, "invalid_token"},
		{"known kid, other EC key", with(func(s *tokenSpec) { s.kid, s.alg, s.signer = "ec-1", jwa.ES256(), otherEC }), 401, "invalid_token"},
		{"PS256 not in access_token_algs", with(func(s *tokenSpec) { s.alg = jwa.PS256() }), 401, "invalid_token"},
		{"alg none", handToken(t, map[string]any{"alg": "none", "typ": "at+jwt", "kid": "rsa-1"}, valid.claims(), nil), 401, "invalid_token"},
		{"alg none keeping the RS256 signature", handToken(t, map[string]any{"alg": "none", "typ": "at+jwt", "kid": "rsa-1"}, valid.claims(), nil) +
			validToken[strings.LastIndex(validToken, ".")+1:], 401, "invalid_token"},
		{"tampered payload", tamper(t, validToken, func(c map[string]any) { c["sub"] = "admin" }), 401, "invalid_token"},
		{"tampered header", b64.EncodeToString([]byte(`{"alg":"RS256","typ":"at+jwt","kid":"rsa-1","x":1}`)) + validToken[dot:], 401, "invalid_token"},
		// RFC 9068 §2.2: exp and iat are REQUIRED; without exp a revoked
		// jti's entry would expire before the token does.
		{"no exp", with(func(s *tokenSpec) { s.exp = time.Time{} }), 401, "invalid_token"},
		{"no iat", with(func(s *tokenSpec) { s.iat = time.Time{} }), 401, "invalid_token"},
		{"garbage", "not-a-token", 401, "invalid_token"},
		{"three garbage segments", "a.b.c", 401, "invalid_token"},
		{"oversize", strings.Repeat("A", 17<<10), 400, "invalid_request"},
		{"no token", "", 401, ""},
	}
	for name, secret := range iss.publicKeyEncodings(t) {
		cases = append(cases, tc{"HS256 with the public key as secret (" + name + ")", hs256WithKey(t, valid, secret), 401, "invalid_token"})
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := fmt.Sprintf("/api/invalid/%d", i)
			resp := gw.get(t, path, c.token, nil)
			if resp.status != c.wantStatus {
				t.Errorf("status: got %d; want %d (body %s)", resp.status, c.wantStatus, resp.body)
			}
			challenge := resp.header.Get("WWW-Authenticate")
			if !strings.HasPrefix(strings.ToLower(challenge), "bearer") {
				t.Errorf("WWW-Authenticate: got %q; want a Bearer challenge (RFC 6750 §3)", challenge)
			}
			switch {
			case c.wantError == "" && strings.Contains(challenge, "error="):
				// RFC 6750 §3.1: no error code when the request had no token.
				t.Errorf("WWW-Authenticate: got %q; want no error code", challenge)
			case c.wantError != "" && !strings.Contains(challenge, `error="`+c.wantError+`"`):
				t.Errorf("WWW-Authenticate: got %q; want error=%q", challenge, c.wantError)
			}
			if n := up.hitsFor(path); n != 0 {
				t.Errorf("upstream hits: got %d; want 0", n)
			}
			if c.token != "" && strings.Contains(string(resp.body), c.token) {
				t.Errorf("the answer echoes the token")
			}
		})
	}
}

// ---- case 3 ----

func testSpoofedHeaders(t *testing.T, gw *gatewayProc, iss *testIssuer) {
	token := iss.mint(t, iss.spec(t, "alice"))
	for _, tc := range []struct {
		name string
		hdr  http.Header // keys written exactly as given
	}{
		{"X-User", http.Header{"X-User": {"admin"}, "X-Scope": {"admin"}}},
		{"x-user lower case", http.Header{"x-user": {"admin"}, "x-scope": {"admin"}}},
		{"X_User underscore", http.Header{"X_User": {"admin"}, "X_Scope": {"admin"}}},
		{"Connection: X-User", http.Header{"X-User": {"admin"}, "Connection": {"X-User, X-Scope"}}},
		{"all at once", http.Header{
			"X-User": {"admin", "root"}, "x-user": {"admin"}, "X_User": {"admin"}, "x_user": {"admin"},
			"Connection": {"X-User"}, "X-Scope": {"admin"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := gw.get(t, "/api/spoof", token, tc.hdr)
			if resp.status != http.StatusOK {
				t.Fatalf("bearer route status: got %d; want 200 (body %s)", resp.status, resp.body)
			}
			var e echo
			if err := json.Unmarshal(resp.body, &e); err != nil {
				t.Fatal(err)
			}
			if got := headerValues(e.Header, "X-User"); !slices.Equal(got, []string{"alice"}) {
				t.Errorf("bearer route: upstream X-User (any spelling): got %q; want [alice] (headers %v)", got, e.Header)
			}
			if got := headerValues(e.Header, "X-Scope"); !slices.Equal(got, []string{"read"}) {
				t.Errorf("bearer route: upstream X-Scope (any spelling): got %q; want [read]", got)
			}

			resp = gw.get(t, "/public/spoof", "", tc.hdr)
			if resp.status != http.StatusOK {
				t.Fatalf("public route status: got %d; want 200 (body %s)", resp.status, resp.body)
			}
			var pub echo
			if err := json.Unmarshal(resp.body, &pub); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"X-User", "X-Scope"} {
				if got := headerValues(pub.Header, name); len(got) != 0 {
					t.Errorf("public route: upstream %s (any spelling): got %q; want none", name, got)
				}
			}
		})
	}
}

// ---- case 4 ----

func testRevoke(t *testing.T, gw *gatewayProc, iss *testIssuer) {
	mustStatus := func(t *testing.T, what, token string, want int) {
		t.Helper()
		if resp := gw.get(t, "/api/revoke", token, nil); resp.status != want {
			t.Errorf("%s: status got %d; want %d (body %s)", what, resp.status, want, resp.body)
		}
	}
	t.Run("by jti through the API", func(t *testing.T) {
		s := iss.spec(t, "case4-jti")
		tok := iss.mint(t, s)
		other := iss.mint(t, iss.spec(t, "case4-jti"))
		mustStatus(t, "before", tok, 200)
		resp := gw.revoke(t, map[string]string{"jti": s.jti, "reason": "e2e"})
		if resp.status != http.StatusCreated {
			t.Fatalf("revoke: got %d; want 201 (body %s)", resp.status, resp.body)
		}
		var e cache.Entry
		if err := json.Unmarshal(resp.body, &e); err != nil {
			t.Fatal(err)
		}
		if e.Kind != cache.KindJTI || e.Value != s.jti || e.Issuer != iss.url || e.Initiator != "admin:e2e" {
			t.Errorf("entry: got %+v; want jti %s of %s by admin:e2e", e, s.jti, iss.url)
		}
		mustStatus(t, "revoked jti", tok, 401)
		mustStatus(t, "same sub, other jti", other, 200)
	})
	t.Run("by sub through the API", func(t *testing.T) {
		bob := iss.mint(t, iss.spec(t, "case4-bob"))
		carol := iss.mint(t, iss.spec(t, "case4-carol"))
		mustStatus(t, "before", bob, 200)
		resp := gw.revoke(t, map[string]string{"sub": "case4-bob"})
		if resp.status != http.StatusCreated {
			t.Fatalf("revoke: got %d; want 201 (body %s)", resp.status, resp.body)
		}
		var e cache.Entry
		if err := json.Unmarshal(resp.body, &e); err != nil {
			t.Fatal(err)
		}
		mustStatus(t, "revoked sub", bob, 401)
		mustStatus(t, "other sub", carol, 200)

		// A token issued after the revocation (+ clock_skew 1s) is valid.
		// iat has whole seconds and must not be in the future (beyond the
		// skew), so this polls — bounded — for up to ~2s of wall time until
		// a fresh token's iat passes revoked_at + skew.
		const skew = time.Second
		var got int
		ok := waitFor(10*time.Second, func() bool {
			s := iss.spec(t, "case4-bob")
			got = gw.get(t, "/api/revoke", iss.mint(t, s), nil).status
			iat := time.Unix(s.iat.Unix(), 0)
			if got == 401 && iat.After(e.RevokedAt.Add(skew+time.Second)) {
				t.Errorf("token with iat %s refused; revoked_at %s + skew %s is more than 1s earlier", iat, e.RevokedAt, skew)
				return true
			}
			if got == 200 && !iat.After(e.RevokedAt.Add(skew)) {
				t.Errorf("token with iat %s accepted; want refused until revoked_at %s + skew %s", iat, e.RevokedAt, skew)
			}
			return got == 200
		})
		if !ok {
			t.Errorf("new token for the revoked sub: last status %d; want 200 within 10s", got)
		}
	})
	t.Run("by jti through the CLI", func(t *testing.T) {
		s := iss.spec(t, "case4-cli")
		tok := iss.mint(t, s)
		mustStatus(t, "before", tok, 200)
		code, stdout, stderr := runCLI(t, gw.cliEnv(gw.cfg.adminToken), "revoke", "--jti", s.jti, "--reason", "r")
		if code != 0 {
			t.Fatalf("revoke: exit %d; want 0\nstderr: %s", code, stderr)
		}
		var e cache.Entry
		if err := json.Unmarshal([]byte(stdout), &e); err != nil || e.Value != s.jti || e.Reason != "r" {
			t.Errorf("revoke stdout: got %q (%v); want the entry for jti %s with reason r", stdout, err, s.jti)
		}
		mustStatus(t, "revoked by CLI", tok, 401)
	})
	t.Run("CLI with a wrong admin token", func(t *testing.T) {
		s := iss.spec(t, "case4-cli-wrong")
		tok := iss.mint(t, s)
		wrong := randHex(t, 24)
		code, _, stderr := runCLI(t, gw.cliEnv(wrong), "revoke", "--jti", s.jti)
		if code != 1 {
			t.Errorf("exit: got %d; want 1\nstderr: %s", code, stderr)
		}
		if !strings.Contains(stderr, "revocation failed") || !strings.Contains(stderr, "401") {
			t.Errorf("stderr: got %q; want it to say the revocation failed with 401", stderr)
		}
		if strings.Contains(stderr, wrong) {
			t.Errorf("stderr shows the admin token")
		}
		mustStatus(t, "not revoked", tok, 200)
	})
}

// ---- case 5 ----

func testAdminAuth(t *testing.T, gw *gatewayProc, iss *testIssuer) {
	marker := "case5-marker-" + randHex(t, 8)
	if resp := gw.revoke(t, map[string]string{"jti": marker}); resp.status != http.StatusCreated {
		t.Fatalf("revoke marker: got %d; want 201 (body %s)", resp.status, resp.body)
	}
	list := do(t, gw.client, http.MethodGet, gw.internal+"/admin/revocations?value="+marker, gw.cfg.adminToken, nil, nil)
	if list.status != http.StatusOK || !strings.Contains(string(list.body), marker) {
		t.Fatalf("internal list: got %d %s; want 200 listing %s", list.status, list.body, marker)
	}

	t.Run("internal listener refuses", func(t *testing.T) {
		for _, tc := range []struct {
			name, method, token string
		}{
			{"GET without token", http.MethodGet, ""},
			{"GET wrong token", http.MethodGet, randHex(t, 24)},
			{"GET a valid access token", http.MethodGet, iss.mint(t, iss.spec(t, "case5"))},
			{"POST without token", http.MethodPost, ""},
			{"POST wrong token", http.MethodPost, randHex(t, 24)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var resp response
				if tc.method == http.MethodPost {
					resp = gw.adminPost(t, gw.internal, tc.token, map[string]string{"jti": "case5-never"})
				} else {
					resp = do(t, gw.client, tc.method, gw.internal+"/admin/revocations", tc.token, nil, nil)
				}
				if resp.status != http.StatusUnauthorized {
					t.Errorf("status: got %d; want 401", resp.status)
				}
				if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type: got %q; want application/json", ct)
				}
				var body struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(resp.body, &body); err != nil || body.Error == "" {
					t.Errorf("body: got %q; want a JSON error", resp.body)
				}
				if strings.Contains(string(resp.body), marker) {
					t.Errorf("a refused call shows the revocation list")
				}
			})
		}
	})

	t.Run("public listener does not serve it", func(t *testing.T) {
		alice := iss.mint(t, iss.spec(t, "case5-alice"))
		victim := iss.spec(t, "case5-victim")
		victimTok := iss.mint(t, victim)
		for _, tc := range []struct{ name, token string }{
			{"admin token", gw.cfg.adminToken},
			{"valid access token", alice},
			{"no token", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp := do(t, gw.client, http.MethodGet, gw.public+"/admin/revocations", tc.token, nil, nil)
				if strings.Contains(string(resp.body), marker) || strings.Contains(string(resp.body), `"entries"`) {
					t.Errorf("GET on the public listener returned a revocation list: %d %s", resp.status, resp.body)
				}
				if resp.status == http.StatusOK {
					var e echo
					if err := json.Unmarshal(resp.body, &e); err != nil || e.Path != "/admin/revocations" {
						t.Errorf("a 200 on the public listener is not the upstream's echo: %s", resp.body)
					}
				}
				resp = gw.adminPost(t, gw.public, tc.token, map[string]string{"jti": victim.jti})
				if resp.status == http.StatusCreated {
					t.Errorf("POST on the public listener: got 201; want anything else")
				}
			})
		}
		if resp := gw.get(t, "/api/case5", victimTok, nil); resp.status != http.StatusOK {
			t.Errorf("a revocation POSTed to the public listener took effect: status %d; want 200", resp.status)
		}
	})
}

// ---- case 6 ----

func testKillRestart(t *testing.T, iss *testIssuer, up *upstream) {
	cfg := gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: randHex(t, 24)}
	gw := startGateway(t, cfg)

	const n = 50
	specs := make([]tokenSpec, n)
	tokens := make([]string, n)
	for i := range specs {
		specs[i] = iss.spec(t, fmt.Sprintf("case6-user-%d", i))
		tokens[i] = iss.mint(t, specs[i])
	}
	subTok := iss.mint(t, iss.spec(t, "case6-sub"))
	keep := iss.mint(t, iss.spec(t, "case6-keep"))

	var wg sync.WaitGroup
	errs := make(chan string, n+1)
	work := make(chan map[string]string)
	for range 8 {
		wg.Go(func() {
			for body := range work {
				resp, err := gw.sendAdminPost(gw.internal, cfg.adminToken, body)
				if err != nil || resp.status != http.StatusCreated {
					errs <- fmt.Sprintf("revoke %v: got %d %s (%v); want 201", body, resp.status, resp.body, err)
				}
			}
		})
	}
	for _, s := range specs {
		work <- map[string]string{"jti": s.jti, "reason": "case6"}
	}
	work <- map[string]string{"sub": "case6-sub"}
	close(work)
	wg.Wait()
	// SIGKILL right after the last 201: nothing may be lost.
	if err := gw.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if code := gw.wait(t); code != -1 {
		t.Errorf("exit after SIGKILL: got %d; want -1 (killed)", code)
	}

	gw = startGateway(t, cfg)
	for i, tok := range tokens {
		if resp := gw.get(t, "/api/case6", tok, nil); resp.status != http.StatusUnauthorized {
			t.Errorf("after restart, token with revoked jti #%d: got %d; want 401", i, resp.status)
		}
	}
	if resp := gw.get(t, "/api/case6", subTok, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("after restart, token of the revoked sub: got %d; want 401", resp.status)
	}
	if resp := gw.get(t, "/api/case6", keep, nil); resp.status != http.StatusOK {
		t.Errorf("after restart, unrevoked token: got %d; want 200", resp.status)
	}
	if v, ok := metricValue(t, gw, "oidcgate_revocation_entries"); !ok || v < n+1 {
		t.Errorf("oidcgate_revocation_entries after restart: got %v (found %v); want >= %d", v, ok, n+1)
	}
	gw.terminate(t)
}

// ---- case 7 ----

func testCheckConfig(t *testing.T, iss *testIssuer) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("every problem with its path", func(t *testing.T) {
		bad := write("bad.yaml", `listen: 127.0.0.1:18080
internal_listen: 127.0.0.1:19091
issuers:
  - issuer: `+iss.url+`
    audiences: [api]
    max_token_lifetime: 1h
routes:
  - path_prefix: /
    upstream: "not a url"
    upstrem: http://127.0.0.1:1
admin:
  tokens:
    - name: ops
      token: short
`)
		code, stdout, stderr := runCLI(t, nil, "check-config", bad)
		if code != 1 {
			t.Errorf("exit: got %d; want 1", code)
		}
		if strings.Contains(stdout, "ok") {
			t.Errorf("stdout: got %q; want no ok", stdout)
		}
		for _, path := range []string{`routes\[0\]\.upstream`, `routes\[0\]\.upstrem`, `data_dir`, `admin\.tokens\[0\]\.token`} {
			if !regexp.MustCompile(`(?m)^` + path + `: `).MatchString(stderr) {
				t.Errorf("stderr lacks a line starting %q:\n%s", path+": ", stderr)
			}
		}
		if strings.Contains(stderr, "short\n") || strings.Contains(stderr, `"short"`) {
			t.Errorf("stderr shows the admin token:\n%s", stderr)
		}
	})
	good := gatewayConfig{issuer: iss.url, upstream: "http://127.0.0.1:1", dataDir: dir}
	goodPath := write("good.yaml", good.configYAML("127.0.0.1:18080", "127.0.0.1:19091"))
	t.Run("good config", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, []string{"E2E_ADMIN_TOKEN=" + randHex(t, 24)}, "check-config", goodPath)
		if code != 0 || !strings.Contains(stdout, "ok") {
			t.Errorf("got exit %d, stdout %q; want 0 and ok\nstderr: %s", code, stdout, stderr)
		}
	})
	t.Run("internal_listen on every interface", func(t *testing.T) {
		path := write("open.yaml", good.configYAML("127.0.0.1:18080", "0.0.0.0:19091"))
		code, stdout, stderr := runCLI(t, []string{"E2E_ADMIN_TOKEN=" + randHex(t, 24)}, "check-config", path)
		if code != 0 || !strings.Contains(stdout, "ok") || !strings.Contains(stderr, "warning: internal_listen") {
			t.Errorf("got exit %d, stdout %q, stderr %q; want 0, ok and an internal_listen warning", code, stdout, stderr)
		}
	})
	t.Run("unset variable", func(t *testing.T) {
		code, _, stderr := runCLI(t, nil, "check-config", goodPath)
		if code != 1 {
			t.Errorf("exit: got %d; want 1", code)
		}
		if !regexp.MustCompile(`(?m)^admin\.tokens\[0\]\.token: .*E2E_ADMIN_TOKEN`).MatchString(stderr) {
			t.Errorf("stderr does not name E2E_ADMIN_TOKEN at admin.tokens[0].token:\n%s", stderr)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if code, _, _ := runCLI(t, nil, "check-config"); code != 2 {
			t.Errorf("no file: exit got %d; want 2", code)
		}
		if code, _, _ := runCLI(t, nil, "check-config", filepath.Join(dir, "missing.yaml")); code != 1 {
			t.Errorf("missing file: exit got %d; want 1", code)
		}
	})
}

// ---- case 8 ----

func testDemo(t *testing.T) {
	tmp := t.TempDir()
	p := startProc(t, "oidcgate demo", []string{"TMPDIR=" + tmp},
		"demo", "--listen", "127.0.0.1:0", "--internal-listen", "127.0.0.1:0")
	if !waitFor(readyTimeout, func() bool {
		return p.exited() || strings.Contains(p.stdout.String(), "/admin/revocations\n")
	}) || p.exited() {
		t.Fatalf("demo did not print its instructions within %s\nstdout:\n%s\nstderr:\n%s", readyTimeout, p.stdout, p.stderr)
	}
	out := p.stdout.String()
	find := func(what, re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("demo output lacks the %s (%s):\n%s", what, re, out)
		}
		return m[1]
	}
	loopback := func(what, raw string) string {
		t.Helper()
		u, err := url.Parse(raw)
		if err != nil || u.Hostname() != "127.0.0.1" {
			t.Fatalf("%s %q is not a 127.0.0.1 URL", what, raw)
		}
		return raw
	}
	adminURL := loopback("admin URL", find("export line", `export OIDCGATE_ADMIN_URL=(\S+) `))
	adminToken := find("admin token", `OIDCGATE_ADMIN_TOKEN=(\S+)`)
	mintURL := loopback("token URL", find("mint line", `curl -s -X POST -d sub=alice (\S+)\)`))
	helloURL := loopback("hello URL", find("hello line", `curl -i -H "Authorization: Bearer \$TOKEN" (\S+)`))
	revokeArgs := shellFields(t, find("revoke line", `(?m)go run \./cmd/oidcgate (revoke .*)$`))
	dataDir := find("data_dir", `data_dir:\s+(\S+)`)
	consoleURL := loopback("console URL", find("console URL", `console:\s+(\S+)`))
	if r := do(t, newClient(t), http.MethodGet, consoleURL, "", nil, nil); r.status != http.StatusSeeOther || r.header.Get("Location") != "/admin/ui/signin" {
		t.Errorf("demo console %s: got %d %q; want 303 to the sign-in page", consoleURL, r.status, r.header.Get("Location"))
	}
	if want := loopback("gateway URL", find("gateway URL", `gateway:\s+(\S+)`)); !strings.HasPrefix(helloURL, want+"/") {
		t.Errorf("hello URL %q is not under the gateway URL %q", helloURL, want)
	}
	if fi, err := os.Stat(dataDir); err != nil || !fi.IsDir() || !strings.HasPrefix(dataDir, tmp) {
		t.Fatalf("data_dir %q: %v; want a directory under TMPDIR %s", dataDir, err, tmp)
	}

	c := newClient(t)
	if !waitFor(readyTimeout, func() bool {
		resp, err := send(c, http.MethodGet, adminURL+"/readyz", "", nil, nil)
		return err == nil && resp.status == http.StatusOK
	}) {
		t.Fatalf("demo /readyz not 200 within %s", readyTimeout)
	}

	// TOKEN=$(curl -s -X POST -d sub=alice ISSUER/token)
	resp := do(t, c, http.MethodPost, mintURL, "", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader("sub=alice"))
	if resp.status != http.StatusOK {
		t.Fatalf("mint: got %d; want 200 (%s)", resp.status, resp.body)
	}
	token := strings.TrimSpace(string(resp.body))
	// curl -i -H "Authorization: Bearer $TOKEN" GATEWAY/hello   # 200
	if resp := do(t, c, http.MethodGet, helloURL, token, nil, nil); resp.status != http.StatusOK || !strings.Contains(string(resp.body), "alice") {
		t.Errorf("hello before revocation: got %d %s; want 200 mentioning alice", resp.status, resp.body)
	}
	// go run ./cmd/oidcgate revoke --sub alice --reason "offboarded"
	env := []string{"OIDCGATE_ADMIN_URL=" + adminURL, "OIDCGATE_ADMIN_TOKEN=" + adminToken}
	if code, _, stderr := runCLI(t, env, revokeArgs...); code != 0 {
		t.Fatalf("%v: exit %d; want 0\nstderr: %s", revokeArgs, code, stderr)
	}
	// curl -i -H "Authorization: Bearer $TOKEN" GATEWAY/hello   # 401
	if resp := do(t, c, http.MethodGet, helloURL, token, nil, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("hello after revocation: got %d %s; want 401", resp.status, resp.body)
	}
	// curl -s -H "Authorization: Bearer $OIDCGATE_ADMIN_TOKEN" ADMIN/admin/revocations
	if resp := do(t, c, http.MethodGet, adminURL+"/admin/revocations", adminToken, nil, nil); resp.status != http.StatusOK || !strings.Contains(string(resp.body), "offboarded") {
		t.Errorf("admin list: got %d %s; want 200 with the offboarded entry", resp.status, resp.body)
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	testDemoBrowser(t, p, find("app URL", `open (\S+/app) and log in`), find("logout line", `curl -s -X POST -d sub=bob (\S+/backchannel-logout)`))

	p.terminate(t)
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("data_dir %s after exit: stat error %v; want it removed", dataDir, err)
	}
}

// shellFields splits a printed command line the way a POSIX shell would
// for the simple quoting the demo uses (double quotes, no escapes).
func shellFields(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	inQuote, inField := false, false
	for _, r := range line {
		switch {
		case r == '"':
			inQuote, inField = !inQuote, true
		case r == ' ' && !inQuote:
			if inField {
				out = append(out, cur.String())
				cur.Reset()
				inField = false
			}
		default:
			cur.WriteRune(r)
			inField = true
		}
	}
	if inQuote {
		t.Fatalf("unbalanced quotes in %q", line)
	}
	if inField {
		out = append(out, cur.String())
	}
	return out
}

// ---- case 9 ----

func testGracefulShutdown(t *testing.T, iss *testIssuer) {
	up := newUpstream(t)
	gw := startGateway(t, gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: randHex(t, 24)})
	token := iss.mint(t, iss.spec(t, "case9"))

	type result struct {
		resp response
		err  error
	}
	got := make(chan result, 1)
	c := newClient(t)
	go func() {
		resp, err := send(c, http.MethodGet, gw.public+"/slow/case9", token, nil, nil)
		got <- result{resp, err}
	}()

	select {
	case <-up.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached the upstream")
	}
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Shutdown has begun once the public listener refuses new connections.
	host := strings.TrimPrefix(gw.public, "http://")
	if !waitFor(10*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", host, time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	}) {
		t.Fatal("the public listener still accepts connections 10s after SIGTERM")
	}
	if gw.exited() {
		t.Fatal("the process exited with a request in flight")
	}
	up.releaseAll()
	select {
	case r := <-got:
		var e echo
		if r.err == nil {
			r.err = json.Unmarshal(r.resp.body, &e)
		}
		if r.err != nil || r.resp.status != http.StatusOK || e.Path != "/slow/case9" {
			t.Errorf("in-flight request: got %d %s (%v); want 200 from /slow/case9", r.resp.status, r.resp.body, r.err)
		}
	case <-time.After(exitTimeout):
		t.Fatal("the in-flight request did not complete")
	}
	if code := gw.wait(t); code != 0 {
		t.Errorf("exit after SIGTERM: got %d; want 0", code)
	}
}

// ---- case 10 ----

func testMetrics(t *testing.T, gw *gatewayProc, iss *testIssuer) {
	if resp := gw.get(t, "/api/metrics", iss.mint(t, iss.spec(t, "case10")), nil); resp.status != http.StatusOK {
		t.Fatalf("request: got %d; want 200", resp.status)
	}
	if resp := gw.get(t, "/api/metrics", "", nil); resp.status != http.StatusUnauthorized {
		t.Fatalf("request: got %d; want 401", resp.status)
	}
	resp := do(t, gw.client, http.MethodGet, gw.internal+"/metrics", "", nil, nil)
	if resp.status != http.StatusOK {
		t.Fatalf("/metrics: got %d; want 200", resp.status)
	}
	for _, name := range []string{"oidcgate_requests_total", "oidcgate_revocation_entries"} {
		if !regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? `).Match(resp.body) {
			t.Errorf("/metrics lacks a sample of %s:\n%s", name, resp.body)
		}
	}
	if resp := do(t, gw.client, http.MethodGet, gw.internal+"/healthz", "", nil, nil); resp.status != http.StatusOK {
		t.Errorf("/healthz: got %d; want 200", resp.status)
	}
	if resp := do(t, gw.client, http.MethodGet, gw.public+"/metrics", "", nil, nil); strings.Contains(string(resp.body), "oidcgate_") {
		t.Errorf("the public listener serves metrics")
	}
}

// metricValue returns the value of an unlabelled sample on /metrics.
func metricValue(t *testing.T, gw *gatewayProc, name string) (float64, bool) {
	t.Helper()
	resp := do(t, gw.client, http.MethodGet, gw.internal+"/metrics", "", nil, nil)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(resp.body)
	if m == nil {
		return 0, false
	}
	var v float64
	if _, err := fmt.Sscan(string(m[1]), &v); err != nil {
		return 0, false
	}
	return v, true
}

// ---- unknown kid flood ----

// testUnknownKidFlood sends tokens with random unknown kids: each must be
// 401, and the gateway must not refetch the JWKS for every one of them (a
// cheap way to make it hammer the IdP).
func testUnknownKidFlood(t *testing.T) {
	iss := newTestIssuer(t)
	up := newUpstream(t)
	gw := startGateway(t, gatewayConfig{issuer: iss.url, upstream: up.srv.URL, dataDir: t.TempDir(), adminToken: randHex(t, 24)})
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	before := iss.jwksFetches()
	const n = 20
	for i := range n {
		s := iss.spec(t, "flood")
		s.kid, s.signer = "random-"+randHex(t, 6), other
		if resp := gw.get(t, "/api/flood", iss.mint(t, s), nil); resp.status != http.StatusUnauthorized {
			t.Errorf("token %d with unknown kid: got %d; want 401", i, resp.status)
		}
	}
	if fetched := iss.jwksFetches() - before; fetched > 3 {
		t.Errorf("JWKS fetches for %d unknown kids: got %d; want at most 3", n, fetched)
	}
	if resp := gw.get(t, "/api/flood", iss.mint(t, iss.spec(t, "flood-ok")), nil); resp.status != http.StatusOK {
		t.Errorf("valid token after the flood: got %d; want 200", resp.status)
	}
}

// testDemoBrowser follows the demo's browser steps: log in at the demo
// issuer through the gateway, see the app's own session, have the issuer
// send a back-channel logout, and see that session gone.
func testDemoBrowser(t *testing.T, demo *proc, appURL, logoutURL string) {
	t.Helper()
	b := newBrowser(t, "bob")
	var view struct {
		Message    string `json:"message"`
		AppSession string `json:"app_session"`
		New        bool   `json:"new_session"`
	}
	login := func() {
		t.Helper()
		// 1. open /app: the gateway sends the browser to the issuer's login
		// form; "log in as bob" posts it.
		resp, err := b.follow.Get(appURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasSuffix(resp.Request.URL.Path, "/authorize") {
			t.Fatalf("open %s: got %d at %s; want the issuer's login form", appURL, resp.StatusCode, resp.Request.URL)
		}
		resp, err = b.follow.PostForm(resp.Request.URL.String(), url.Values{"sub": {"bob"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&view); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("log in: got %d at %s (%v); want the app", resp.StatusCode, resp.Request.URL, err)
		}
	}
	login()
	first := view
	if first.Message != "hello, bob" || !first.New || first.AppSession == "" {
		t.Fatalf("after login: got %+v; want a new app session for bob", first)
	}
	if sealed := b.cookie(appURL, demoAppCookie); sealed == "" || strings.Contains(sealed, first.AppSession) {
		t.Errorf("browser cookie %s: got %q; want the sealed form of %q", demoAppCookie, sealed, first.AppSession)
	}
	// 2. the issuer logs bob out everywhere.
	c := newClient(t)
	r := do(t, c, http.MethodPost, logoutURL, "", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader("sub=bob"))
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "gateway answered 200") {
		t.Fatalf("back-channel logout: got %d %s", r.status, r.body)
	}
	// 3. reload: sent to log in again; the app's own session was ended.
	if status, err := b.peek(appURL); err != nil || status != http.StatusFound {
		t.Errorf("reload after logout: got %d %v; want 302 to log in", status, err)
	}
	if !waitFor(10*time.Second, func() bool {
		return strings.Contains(demo.stderr.String(), "session "+first.AppSession+" ended by the gateway")
	}) {
		t.Errorf("the demo app's session %s was not ended through its logout URL", first.AppSession)
	}
	// Logged out by subject, bob may log in again once the clock skew
	// (1s in the demo) has passed; the gateway answers 403 until then.
	time.Sleep(1100 * time.Millisecond)
	login()
	if view.AppSession == first.AppSession || !view.New {
		t.Errorf("after logging in again: got %+v; want a new app session", view)
	}
}
