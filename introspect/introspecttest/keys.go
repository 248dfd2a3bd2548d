// Package introspecttest is the test kit of the packages that verify or
// mint tokens: the committed test keys, embedded so that every package's
// tests use the same ones (the committed fuzz seeds are signed with them).
// Test code only; the keys are public.
package introspecttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"embed"
	"encoding/pem"
	"fmt"
)

//go:embed keys/*.pem
var keyFiles embed.FS

// Signer returns the committed private key name (rsa1, rsa2, ec256,
// ec384, ed25519). It panics on an unknown name: the keys are part of the
// test kit, not input.
func Signer(name string) crypto.Signer {
	b, err := keyFiles.ReadFile("keys/" + name + ".pem")
	if err != nil {
		panic(fmt.Sprintf("introspecttest: no key %q", name))
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		panic(fmt.Sprintf("introspecttest: %s: no PEM block", name))
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		panic(fmt.Sprintf("introspecttest: %s: %v", name, err))
	}
	return k.(crypto.Signer)
}

// RSA returns the committed RSA key name (rsa1, rsa2).
func RSA(name string) *rsa.PrivateKey { return Signer(name).(*rsa.PrivateKey) }

// ECDSA returns the committed ECDSA key name (ec256, ec384).
func ECDSA(name string) *ecdsa.PrivateKey { return Signer(name).(*ecdsa.PrivateKey) }

// Ed25519 returns the committed Ed25519 key.
func Ed25519() ed25519.PrivateKey { return Signer("ed25519").(ed25519.PrivateKey) }
