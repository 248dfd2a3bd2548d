package introspecttest_test

import (
	"testing"

	"github.com/oidcgate/oidcgate/introspect/introspecttest"
)

func TestKeys(t *testing.T) {
	if introspecttest.RSA("rsa1").N.Cmp(introspecttest.RSA("rsa2").N) == 0 {
		t.Error("rsa1 and rsa2 are the same key")
	}
	if got := introspecttest.ECDSA("ec256").Curve.Params().BitSize; got != 256 {
		t.Errorf("ec256: got a %d-bit curve", got)
	}
	if got := introspecttest.ECDSA("ec384").Curve.Params().BitSize; got != 384 {
		t.Errorf("ec384: got a %d-bit curve", got)
	}
	if len(introspecttest.Ed25519()) == 0 {
		t.Error("ed25519: empty key")
	}
	defer func() {
		if recover() == nil {
			t.Error("an unknown key name did not panic")
		}
	}()
	introspecttest.Signer("nope")
}
