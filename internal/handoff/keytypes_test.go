// SPDX-License-Identifier: Apache-2.0

package handoff

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/record"
)

// TestConnCarriesEveryKeyType: the worker parses the user's key the monitor verified; every
// type and size a key source accepts (Ed25519, ECDSA on the three curves, RSA up to the
// 8192-bit cap, and the security-key types) comes through with the same wire form, type and
// fingerprint, so the worker, the application and the PROXY header name the key the monitor
// verified and audited, and no accepted user is turned away at the handoff.
func TestConnCarriesEveryKeyType(t *testing.T) {
	var pubs []ssh.PublicKey
	add := func(k any) {
		t.Helper()
		p, err := ssh.NewPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, p)
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	add(edPub)
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		add(&k.PublicKey)
	}
	// A public key only needs a modulus of the right size: no 8192-bit key generation.
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 8192))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, 8191, 1).SetBit(n, 0, 1)
	add(&rsa.PublicKey{N: n, E: 65537})
	// Security keys, in the wire form OpenSSH writes: the public key and the application.
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	point, _ := ec.PublicKey.ECDH()
	for _, wire := range [][]byte{
		skWire("sk-ssh-ed25519@openssh.com", func(b *cryptobyte.Builder) { addString(b, edPub) }),
		skWire("sk-ecdsa-sha2-nistp256@openssh.com", func(b *cryptobyte.Builder) {
			addString(b, []byte("nistp256"))
			addString(b, point.Bytes())
		}),
	} {
		p, err := ssh.ParsePublicKey(wire)
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, p)
	}
	for _, k := range pubs {
		c := withKeys(&Conn{State: &record.State{}})
		c.SetKey(k)
		got, err := ParseConn(c.Marshal())
		if err != nil {
			t.Fatalf("%s (%d bytes): %v", k.Type(), len(k.Marshal()), err)
		}
		if string(got.Key.Marshal()) != string(k.Marshal()) || got.KeyType != k.Type() ||
			got.KeyFingerprint != ssh.FingerprintSHA256(k) {
			t.Fatalf("%s: came through as %s %s", k.Type(), got.KeyType, got.KeyFingerprint)
		}
	}
}

func addString(b *cryptobyte.Builder, v []byte) {
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

// skWire is the SSH wire form of a security-key public key of type typ, whose key fields
// body adds, for the application "ssh:".
func skWire(typ string, body func(*cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	addString(&b, []byte(typ))
	body(&b)
	addString(&b, []byte("ssh:"))
	return b.BytesOrPanic()
}
