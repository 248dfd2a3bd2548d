package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/introspect"
)

// sealWith seals s as the session cookie of a gateway whose current secret
// is secret.
func sealWith(t testing.TB, secret string, s *session) string {
	t.Helper()
	sl, err := newSealer(purposeSession, []introspect.Secret{introspect.Secret(secret)})
	if err != nil {
		t.Fatal(err)
	}
	return sl.seal(s.marshal(), aadSession)
}

func TestSessionCookie(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Session.PreviousSecrets = []introspect.Secret{testOldSecret}
	})
	now := e.clock.Now()
	good := &session{ID: newSessionID(), Issuer: e.idp.URL, Subject: "alice", SID: "sid-1", Email: "a@example.com", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	valid := sealWith(t, testSecret, good)
	appKey, err := newSealer(purposeApp, []introspect.Secret{testSecret})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name   string
		cookie string
		want   int
	}{
		{"valid", valid, 200},
		{"previous secret still opens", sealWith(t, testOldSecret, good), 200},
		{"unknown secret", sealWith(t, "another secret of at least thirty-two chars", good), 302},
		{"tampered ciphertext", flip(valid, len(valid)-30), 302},
		{"tampered key id", flip(valid, 2), 302},
		{"tampered version", "Ag" + valid[2:], 302},
		{"truncated", valid[:len(valid)-1], 302},
		{"truncated to the header", valid[:30], 302},
		{"empty", "", 302},
		{"not base64", valid[:20] + "!" + valid[21:], 302},
		{"sealed for another purpose", appKey.seal(good.marshal(), aadSession), 302},
		{"expired", sealWith(t, testSecret, &session{ID: good.ID, Issuer: good.Issuer, Subject: "alice", IssuedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Second)}), 302},
		{"oversized", strings.Repeat("A", maxSessionCookie+1), 302},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := e.browser(t)
			b.setCookie(e, &http.Cookie{Name: DefaultCookieName, Value: tt.cookie})
			res := b.get(e.srv.URL+"/app/", nil)
			if res.StatusCode != tt.want {
				t.Fatalf("status: got %d; want %d", res.StatusCode, tt.want)
			}
			if tt.want == 200 {
				if got := seenBy(t, res).Header.Get("X-User"); got != "alice" {
					t.Errorf("X-User: got %q; want alice", got)
				}
				return
			}
			if tt.cookie != "" && b.cookie(e, "/", DefaultCookieName) != "" {
				t.Error("the bad session cookie was not cleared")
			}
		})
	}
}

func TestSessionMarshal(t *testing.T) {
	in := session{ID: newSessionID(), Issuer: "https://idp", Subject: "s", SID: "x", Email: "e", Name: "n", IDToken: "a.b.c",
		IssuedAt: time.Unix(1700000000, 0), ExpiresAt: time.Unix(1700003600, 0)}
	out, ok := unmarshalSession(in.marshal(), true)
	if !ok || out != in {
		t.Fatalf("round trip: got %+v, %v; want %+v", out, ok, in)
	}
	b := in.marshal()
	for i := range b {
		if _, ok := unmarshalSession(b[:i], true); ok {
			t.Errorf("a %d-byte prefix decodes", i)
		}
	}
	if _, ok := unmarshalSession(append(b, 0), true); ok {
		t.Error("trailing bytes decode")
	}
}

func TestSessionChunks(t *testing.T) {
	e := newEnv(t, nil)
	b := e.browser(t)
	e.idp.setUser(user{Sub: "alice", SID: "sid-1", Email: strings.Repeat("a", 6000) + "@example.com"})
	res := b.login(e, "/app/")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("chunked session: got %d; want 200", res.StatusCode)
	}
	if b.cookie(e, "/", DefaultCookieName+"_0") == "" || b.cookie(e, "/", DefaultCookieName+"_1") == "" || b.cookie(e, "/", DefaultCookieName) != "" {
		t.Fatal("want the session in chunks _0, _1, ...")
	}
	for _, c := range []string{"_0", "_1", "_2"} {
		if v := b.cookie(e, "/", DefaultCookieName+c); len(DefaultCookieName+c)+1+len(v) > chunkSize {
			t.Errorf("chunk %s: %d bytes", c, len(v))
		}
	}
	if got := seenBy(t, res).Header.Get("X-Email"); !strings.HasSuffix(got, "@example.com") {
		t.Errorf("X-Email: got %q", got)
	}
	// A missing chunk is a missing session.
	b.setCookie(e, &http.Cookie{Name: DefaultCookieName + "_0", Value: "", MaxAge: -1})
	if res := b.get(e.srv.URL+"/app/", nil); res.StatusCode != http.StatusFound {
		t.Errorf("without chunk 0: got %d; want 302", res.StatusCode)
	}
	// A smaller session replaces the chunks; stale ones are cleared.
	e.idp.setUser(user{Sub: "alice", SID: "sid-1"})
	if res := b.login(e, "/app/"); res.StatusCode != http.StatusOK {
		t.Fatalf("small session: got %d", res.StatusCode)
	}
	if b.cookie(e, "/", DefaultCookieName) == "" {
		t.Error("no unchunked session cookie")
	}
	for _, c := range []string{"_0", "_1", "_2"} {
		if b.cookie(e, "/", DefaultCookieName+c) != "" {
			t.Errorf("stale chunk %s kept", c)
		}
	}
}

func TestCookieValue(t *testing.T) {
	for _, tt := range []struct {
		name   string
		header []string
		want   string
		ok     bool
	}{
		{"one", []string{"a=1; s=v; b=2"}, "v", true},
		{"quoted", []string{`s="v"`}, "v", true},
		{"absent", []string{"a=1"}, "", false},
		{"twice in one field", []string{"s=mine; s=planted"}, "", false},
		{"twice across fields", []string{"s=mine", "s=planted"}, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cookieValue(http.Header{"Cookie": tt.header}, "s")
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestCookieNames(t *testing.T) {
	if got := defaultCookieName(true); got != "__Host-oidcgate_session" {
		t.Errorf("https default: got %q", got)
	}
	if got := defaultCookieName(false); got != DefaultCookieName {
		t.Errorf("http default: got %q", got)
	}
	for _, tt := range []struct {
		name, base string
		own        bool
	}{
		{"__Host-oidcgate_session", "__Host-oidcgate_session", true},
		{"__Host-oidcgate_session_1", "__Host-oidcgate_session", true},
		{"__Secure-oidcgate_session_login_abc", "__Host-oidcgate_session", true},
		{"__Host-oidcgate_session_login_abc", "__Host-oidcgate_session", false},
		{"oidcgate_session_login_abc", "oidcgate_session", true},
		{"JSESSIONID", "__Host-oidcgate_session", false},
	} {
		if got := ownCookie(tt.name, tt.base); got != tt.own {
			t.Errorf("ownCookie(%q, %q): got %v; want %v", tt.name, tt.base, got, tt.own)
		}
	}
	if got := loginCookieBase("__Host-x"); got != "__Secure-x" {
		t.Errorf("loginCookieBase: got %q; want __Secure-x", got)
	}
}
