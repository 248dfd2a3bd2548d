package cache_test

import (
	"strings"
	"testing"

	"github.com/oidcgate/oidcgate/cache"
)

func TestSessionDigest(t *testing.T) {
	id := "k3Jd9Q2x-LmP0aZ7vB4nWg"
	d := cache.SessionDigest(id)
	if !strings.HasPrefix(d, "sha256:") || len(d) != len("sha256:")+43 || strings.Contains(d, id) {
		t.Fatalf("got %q; want sha256: and 43 base64url characters, without the id", d)
	}
	if got := cache.SessionDigest(d); got != d {
		t.Errorf("digest of a digest: got %q; want it unchanged %q", got, d)
	}
	if got := cache.SessionDigest(id); got != d {
		t.Errorf("not deterministic: %q then %q", d, got)
	}
	for _, v := range []string{"sha256:short", "sha256:" + strings.Repeat("*", 43), "SHA256:" + d[7:]} {
		if got := cache.SessionDigest(v); got == v {
			t.Errorf("%q is not a digest but was kept as one", v)
		}
	}
}
