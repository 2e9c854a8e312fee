// SPDX-License-Identifier: Apache-2.0

package x25519

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"
)

// BenchmarkGenerate measures key generation: 32 bytes from crypto/rand and
// crypto/ecdh's NewPrivateKey, which computes the public key.
func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDH measures DH with a generated key pair: parsing the peer's key and
// crypto/ecdh's ECDH.
func BenchmarkDH(b *testing.B) {
	a, err := Generate(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	peer, err := Generate(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.DH(peer.Public); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPoolGetDrained measures Get when callers outrun the refilling
// goroutine, so that most keys are generated inline.
func BenchmarkPoolGetDrained(b *testing.B) {
	p := NewPool(16)
	defer p.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Get(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDHReparse is what DH would cost if it took the private key as
// bytes, as a noise.DHFunc must: crypto/ecdh's NewPrivateKey computes the public
// key again before ECDH runs. KeyPair keeps the parsed key to avoid this.
func BenchmarkDHReparse(b *testing.B) {
	curve := ecdh.X25519()
	a, err := Generate(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	peer, err := Generate(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	raw := a.PrivateKey().Bytes()
	b.ReportAllocs()
	for b.Loop() {
		priv, err := curve.NewPrivateKey(raw)
		if err != nil {
			b.Fatal(err)
		}
		pub, err := curve.NewPublicKey(peer.Public[:])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := priv.ECDH(pub); err != nil {
			b.Fatal(err)
		}
	}
}
