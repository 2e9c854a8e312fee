// SPDX-License-Identifier: Apache-2.0

package noise

import (
	"testing"
	"time"

	"ubns.dev/netauth/internal/kem"
)

// ownExchange runs one complete exchange with this package, both sides: both constructors,
// message 1 written and read, message 2 written and read, both Splits (two X25519 operations).
func ownExchange(b *testing.B, k *pair) {
	i, r := k.initiator(b), k.responder(b)
	if k.p == NNhfs {
		// Encapsulate as a server does (kem.Encapsulate): the tests' derandomized
		// encapsulation parses the key a second time.
		var err error
		if r, err = NewResponderHFS(k.prologue, &k.er, nil); err != nil {
			b.Fatal(err)
		}
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

// flynnExchange runs the same exchange with flynn/noise configured as internal/handshake
// configures it: the same pre-generated ephemeral keys and the same X25519 code, so that the
// two differ only in the Noise state.
func flynnExchange(b *testing.B, k *pair) {
	i := newFlynn(b, k.p, true, k.prologue, &k.ei, k.psk)
	r := newFlynn(b, k.p, false, k.prologue, &k.er, k.psk)
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

// BenchmarkHandshake measures complete NN, NNpsk0 and NNhfs exchanges, both sides in
// process, with this package ("own") and, for NN and NNpsk0, with flynn/noise ("flynn"):
//
//	go test -run '^$' -bench 'Handshake|Symmetric' -benchmem ./internal/noise
//
// NNhfs's exchange includes the ML-KEM-768 work of both sides (the responder parses the
// key and encapsulates, with crypto/rand's randomness as a server does; the initiator
// decapsulates), but not the initiator's key generation.
func BenchmarkHandshake(b *testing.B) {
	for _, p := range patterns {
		k := newPair(b, p, 200)
		b.Run(p.String()+"/own", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ownExchange(b, k)
			}
		})
		if p == NNhfs {
			continue
		}
		b.Run(p.String()+"/flynn", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				flynnExchange(b, k)
			}
		})
	}
}

// BenchmarkHandshakeInterleaved runs the two implementations' exchanges alternately in one
// loop and reports the time of each (own-µs, flynn-µs) and their ratio, so that load from
// other processes on a shared machine falls on both alike.
func BenchmarkHandshakeInterleaved(b *testing.B) {
	for _, p := range flynnPatterns {
		k := newPair(b, p, 201)
		b.Run(p.String(), func(b *testing.B) {
			var own, fl time.Duration
			n := 0
			for b.Loop() {
				// Alternate which goes first, so neither always runs on a warm cache.
				t0 := time.Now()
				if n%2 == 0 {
					ownExchange(b, k)
				} else {
					flynnExchange(b, k)
				}
				t1 := time.Now()
				if n%2 == 0 {
					flynnExchange(b, k)
				} else {
					ownExchange(b, k)
				}
				t2 := time.Now()
				if n%2 == 0 {
					own, fl = own+t1.Sub(t0), fl+t2.Sub(t1)
				} else {
					fl, own = fl+t1.Sub(t0), own+t2.Sub(t1)
				}
				n++
			}
			b.ReportMetric(own.Seconds()*1e6/float64(n), "own-µs")
			b.ReportMetric(fl.Seconds()*1e6/float64(n), "flynn-µs")
			b.ReportMetric(float64(own)/float64(fl), "own/flynn")
		})
	}
}

// BenchmarkSymmetric measures the symmetric state alone (no X25519), the part in which the
// two implementations differ: the operations of one side of an NNpsk0 exchange.
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

// BenchmarkHybridInterleaved runs, in one loop and in rotating order, an NN exchange, an
// NNhfs exchange and the bare ML-KEM-768 operations NNhfs adds (parsing the key,
// encapsulating, decapsulating), and reports the time of each and what NNhfs costs beyond NN
// and those operations (hashing and encrypting the larger messages, one more key): the part
// of the hybrid handshake's cost that is this package's, measured under the same load.
//
//	go test -run '^$' -bench HybridInterleaved -count 10 ./internal/noise
func BenchmarkHybridInterleaved(b *testing.B) {
	nn, hfs := newPair(b, NN, 202), newPair(b, NNhfs, 203)
	ekb := hfs.dk.EncapsulationKey().Bytes()
	bare := func() {
		ek, err := kem.ParseEncapsulationKey(ekb)
		if err != nil {
			b.Fatal(err)
		}
		_, ct, err := kem.Encapsulate(ek)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := hfs.dk.Decapsulate(ct); err != nil {
			b.Fatal(err)
		}
	}
	ops := []func(){func() { ownExchange(b, nn) }, func() { ownExchange(b, hfs) }, bare}
	var spent [3]time.Duration
	n := 0
	for b.Loop() {
		for j := range ops {
			k := (n + j) % len(ops)
			t0 := time.Now()
			ops[k]()
			spent[k] += time.Since(t0)
		}
		n++
	}
	us := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(n) }
	b.ReportMetric(us(spent[0]), "nn-µs")
	b.ReportMetric(us(spent[1]), "nnhfs-µs")
	b.ReportMetric(us(spent[2]), "mlkem-µs")
	b.ReportMetric(us(spent[1]-spent[0]-spent[2]), "rest-µs")
}
