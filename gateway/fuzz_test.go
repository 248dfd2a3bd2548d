package gateway

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/oidcgate/introspect"
)

// fuzzCookies is a session cookie opener with the test secrets.
func fuzzCookies(t testing.TB) *sessionCookies {
	t.Helper()
	sl, err := newSealer(purposeSession, []introspect.Secret{testSecret, testOldSecret})
	if err != nil {
		t.Fatal(err)
	}
	return &sessionCookies{name: DefaultCookieName, seal: sl}
}

func FuzzOpenSession(f *testing.F) {
	c := fuzzCookies(f)
	s := &session{ID: "AAAAAAAAAAAAAAAAAAAAAA", Issuer: "https://idp.example", Subject: "alice", SID: "s1",
		IDToken: "h.p.s", IssuedAt: time.Unix(1700000000, 0), ExpiresAt: time.Unix(1700086400, 0)}
	valid := c.seal.seal(s.marshal(), aadSession)
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add("")
	f.Add("AQ")
	f.Add(strings.Repeat("A", 64))
	f.Fuzz(func(t *testing.T, v string) {
		got, ok := c.open(v, true)
		if !ok {
			return
		}
		// Only a value this key sealed opens; whatever opens re-encodes
		// to the same session.
		again, ok := unmarshalSession(got.marshal(), true)
		if !ok || again != got {
			t.Fatalf("re-encoding %+v: got %+v, %v", got, again, ok)
		}
	})
}

func FuzzReturnPath(f *testing.F) {
	for _, s := range []string{"/", "/app?x=1", "//evil", "/\\evil", "https://evil", "/\t/evil", "/a#b", "/%2F%2Fevil", "/a/../b", "/?next=//evil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://gw.example/")
	f.Fuzz(func(t *testing.T, p string) {
		got := safeReturnPath(p)
		if got != "/" && got != p {
			t.Fatalf("safeReturnPath(%q): got %q; want the input or /", p, got)
		}
		if got[0] != '/' || len(got) > 1 && (got[1] == '/' || got[1] == '\\') || strings.ContainsAny(got, "\\\t\r\n\x00 #") {
			t.Fatalf("safeReturnPath(%q) = %q: not a plain absolute path", p, got)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("safeReturnPath(%q) = %q does not parse: %v", p, got, err)
		}
		if r := base.ResolveReference(u); r.Host != base.Host || r.Scheme != base.Scheme || r.User != nil {
			t.Fatalf("safeReturnPath(%q) = %q leaves the origin: %s", p, got, r)
		}
	})
}
