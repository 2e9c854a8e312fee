// SPDX-License-Identifier: Apache-2.0

package x25519

import (
	"crypto/ecdh"
	"crypto/rand"
	"testing"
)

// BenchmarkGenerate measures key generation by fixed-base Edwards
// multiplication.
func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDH measures the Montgomery ladder.
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
		if _, err := DH(a.Private, peer.Public); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPoolGet measures Get when the pool holds keys, which is the cost a
// handshake pays while the refilling goroutine keeps up. To keep the run short
// the pool is refilled, with the timer stopped, by copies of one key pair
// rather than by the background goroutine.
func BenchmarkPoolGet(b *testing.B) {
	const size = 1024
	kp, err := Generate(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	p := &Pool{
		keys: make(chan KeyPair, size),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	close(p.done)
	defer p.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += size {
		b.StopTimer()
		for len(p.keys) < size {
			p.keys <- kp
		}
		b.StartTimer()
		for range min(size, b.N-i) {
			p.Get()
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
		p.Get()
	}
}

// BenchmarkEcdhGenerateKey is the crypto/ecdh baseline for BenchmarkGenerate.
func BenchmarkEcdhGenerateKey(b *testing.B) {
	curve := ecdh.X25519()
	b.ReportAllocs()
	for b.Loop() {
		k, err := curve.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		_ = k.PublicKey()
	}
}

// BenchmarkEcdhECDH is the crypto/ecdh baseline for BenchmarkDH, with both
// keys already parsed.
func BenchmarkEcdhECDH(b *testing.B) {
	curve := ecdh.X25519()
	a, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	peer, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.ECDH(peer.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEcdhECDHFromBytes is the crypto/ecdh cost of a DH starting from
// raw 32-byte keys, as a noise.DHFunc must: NewPrivateKey computes the public
// key before ECDH runs.
func BenchmarkEcdhECDHFromBytes(b *testing.B) {
	curve := ecdh.X25519()
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
		priv, err := curve.NewPrivateKey(a.Private[:])
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
