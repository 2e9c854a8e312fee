// SPDX-License-Identifier: Apache-2.0

package noise

import (
	"testing"
)

// BenchmarkHandshake runs complete NN and NNpsk0 exchanges, both sides in process, with this
// package ("own") and with flynn/noise configured as internal/handshake configures it
// ("flynn": the same pre-generated ephemeral keys and the same X25519 code), so that the two
// differ only in the Noise state. Each iteration: both constructors, message 1 written and
// read, message 2 written and read, both Splits (two X25519 operations in all).
//
//	go test -run '^$' -bench Handshake -benchmem -count 5 ./internal/noise
func BenchmarkHandshake(b *testing.B) {
	for _, p := range patterns {
		k := newPair(b, p, 200)
		b.Run(p.String()+"/own", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				i, err := NewInitiator(p, k.prologue, &k.ei, k.psk)
				if err != nil {
					b.Fatal(err)
				}
				r, err := NewResponder(p, k.prologue, &k.er, k.psk)
				if err != nil {
					b.Fatal(err)
				}
				msg1, err := i.WriteMessage1(nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.ReadMessage1(msg1); err != nil {
					b.Fatal(err)
				}
				msg2, err := r.WriteMessage2(nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := i.ReadMessage2(msg2); err != nil {
					b.Fatal(err)
				}
				ki, err := i.Split()
				if err != nil {
					b.Fatal(err)
				}
				kr, err := r.Split()
				if err != nil {
					b.Fatal(err)
				}
				ki.Zero()
				kr.Zero()
			}
		})
		b.Run(p.String()+"/flynn", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				i := newFlynn(b, p, true, k.prologue, &k.ei, k.psk)
				r := newFlynn(b, p, false, k.prologue, &k.er, k.psk)
				msg1, _, _, err := i.WriteMessage(nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, _, err := r.ReadMessage(nil, msg1); err != nil {
					b.Fatal(err)
				}
				msg2, r1, r2, err := r.WriteMessage(nil, nil)
				if err != nil || r1 == nil || r2 == nil {
					b.Fatal(err)
				}
				_, i1, i2, err := i.ReadMessage(nil, msg2)
				if err != nil || i1 == nil || i2 == nil {
					b.Fatal(err)
				}
				_ = i.ChannelBinding()
			}
		})
	}
}

// BenchmarkSymmetric measures the symmetric state alone (no X25519), the part in which the
// two implementations differ: the operations of an NNpsk0 exchange on one side.
func BenchmarkSymmetric(b *testing.B) {
	var dh, e [32]byte
	b.ReportAllocs()
	for b.Loop() {
		var s SymmetricState
		s.InitializeSymmetric(ProtocolNNpsk0)
		s.MixHash(e[:14])
		s.MixKeyAndHash(dh[:])
		s.MixHash(e[:])
		s.MixKey(e[:])
		tag, _ := s.EncryptAndHash(nil, nil)
		s.MixHash(e[:])
		s.MixKey(e[:])
		s.MixKey(dh[:])
		s.EncryptAndHash(tag[:0], nil)
		s.Split()
		s.Zero()
	}
}
