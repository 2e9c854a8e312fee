// SPDX-License-Identifier: Apache-2.0

package noise

import (
	"bytes"
	"crypto/mlkem"
	"errors"
	"testing"

	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/x25519"
)

// fuzzPair returns the fixed inputs of the fuzz targets for pattern p and the handshake's
// honest messages.
func fuzzPair(f *testing.F, p Pattern) (k *pair, msg1, msg2 []byte) {
	k = newPair(f, p, 100+uint64(p))
	msg1, msg2 = k.messages(f)
	return k, msg1, msg2
}

// fuzzPattern maps the fuzzer's byte to a pattern: 0 NN, 1 NNpsk0, 2 NNhfs, and so on
// modulo 3.
func fuzzPattern(b byte) Pattern { return patterns[int(b)%len(patterns)] }

// patternByte is fuzzPattern's inverse.
func patternByte(p Pattern) byte {
	for i, q := range patterns {
		if q == p {
			return byte(i)
		}
	}
	panic("unknown pattern")
}

// boundarySeeds adds, for each pattern, messages of the lengths around the limits, the honest
// message, the honest message altered or extended, and a low-order key; for NNhfs also
// messages of the lengths around each of its fields, and the honest message 1 with a
// malformed encapsulation key (a coefficient not reduced modulo q).
func boundarySeeds(f *testing.F, honest map[Pattern][]byte) {
	for _, p := range patterns {
		b := patternByte(p)
		sizes := []int{0, 1, DHLen - 1, DHLen, DHLen + 1, DHLen + TagLen - 1, DHLen + TagLen, DHLen + TagLen + 1, MaxMessageSize, MaxMessageSize + 1}
		if p == NNhfs {
			sizes = append(sizes, NNhfsMessage1Size-1, NNhfsMessage1Size, NNhfsMessage1Size+1,
				DHLen+KEMCiphertextLen+TagLen-1, DHLen+KEMCiphertextLen+TagLen, NNhfsMessage2Size-1, NNhfsMessage2Size, NNhfsMessage2Size+1)
		}
		for _, n := range sizes {
			f.Add(b, make([]byte, n))
		}
		m := honest[p]
		f.Add(b, bytes.Clone(m))
		bad := bytes.Clone(m)
		bad[len(bad)-1] ^= 1
		f.Add(b, bad)
		f.Add(b, append(bytes.Clone(m), 0))
		f.Add(b, m[:len(m)-1])
		low := bytes.Clone(m)
		copy(low, []byte{1}) // u = 1, a point of order 4
		clear(low[1:DHLen])
		f.Add(b, low)
		if p == NNhfs && len(m) == NNhfsMessage1Size {
			bad := bytes.Clone(m)
			bad[DHLen], bad[DHLen+1] = 0xff, bad[DHLen+1]|0x0f
			f.Add(b, bad)
		}
	}
}

// FuzzResponderReadMessage1 feeds arbitrary bytes to a responder as message 1. It must never
// panic; an NN message 1 is accepted exactly when its size is in range (NN does not
// authenticate message 1) and its payload is the rest of the message, in clear; an NNhfs
// message 1 likewise, except that it is refused with ErrKEM exactly when its encapsulation key
// (bytes 32 to 1216) fails crypto/mlkem's own parser; an NNpsk0 message 1 is accepted only if
// it is the honest one (the fuzzer does not hold the psk). When accepted, message 2 is
// written unless the key was low-order.
func FuzzResponderReadMessage1(f *testing.F) {
	pairs := map[Pattern]*pair{}
	honest := map[Pattern][]byte{}
	for _, p := range patterns {
		pairs[p], honest[p], _ = fuzzPair(f, p)
	}
	boundarySeeds(f, honest)
	f.Fuzz(func(t *testing.T, pb byte, msg []byte) {
		p := fuzzPattern(pb)
		r := pairs[p].responder(t)
		payload, err := r.ReadMessage1(msg)
		inRange := len(msg) >= p.messageSize(1) && len(msg) <= MaxMessageSize
		switch {
		case !inRange:
			if !errors.Is(err, ErrMessageSize) {
				t.Fatalf("%v: %d-byte message 1: err = %v, want ErrMessageSize", p, len(msg), err)
			}
		case p == NN:
			if err != nil || !bytes.Equal(payload, msg[DHLen:]) {
				t.Fatalf("NN: message 1 refused or payload wrong: %v", err)
			}
		case p == NNhfs:
			_, perr := mlkem.NewEncapsulationKey768(msg[DHLen:NNhfsMessage1Size])
			if perr != nil {
				if !errors.Is(err, ErrKEM) || !errors.Is(err, kem.ErrMalformedKey) {
					t.Fatalf("NNhfs: malformed encapsulation key: err = %v, want ErrKEM", err)
				}
			} else if err != nil || !bytes.Equal(payload, msg[NNhfsMessage1Size:]) {
				t.Fatalf("NNhfs: message 1 refused or payload wrong: %v", err)
			}
		case !bytes.Equal(msg, honest[p]):
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("NNpsk0: forged message 1 accepted: err = %v", err)
			}
		case err != nil:
			t.Fatalf("NNpsk0: honest message 1 refused: %v", err)
		}
		if err != nil {
			if r.State() != StateFailed || r.hs != (handshakeState{state: StateFailed}) {
				t.Fatalf("state not wiped after %v", err)
			}
			return
		}
		msg2, err := r.WriteMessage2(nil, nil)
		if errors.Is(err, x25519.ErrLowOrder) {
			return
		}
		if err != nil || len(msg2) != p.messageSize(2) {
			t.Fatalf("WriteMessage2: %d bytes, %v", len(msg2), err)
		}
		if _, err := r.Split(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzInitiatorReadMessage2 feeds arbitrary bytes to an initiator that has sent message 1.
// It must never panic, and must accept the message exactly when it is the honest responder's
// message 2 (anything else fails authentication, or the size or low-order checks), with the
// responder's keys.
func FuzzInitiatorReadMessage2(f *testing.F) {
	pairs := map[Pattern]*pair{}
	honest := map[Pattern][]byte{}
	keys := map[Pattern]Keys{}
	for _, p := range patterns {
		var msg1 []byte
		pairs[p], msg1, honest[p] = fuzzPair(f, p)
		r := pairs[p].responder(f)
		if _, err := r.ReadMessage1(msg1); err != nil {
			f.Fatal(err)
		}
		if _, err := r.WriteMessage2(nil, nil); err != nil {
			f.Fatal(err)
		}
		var err error
		if keys[p], err = r.Split(); err != nil {
			f.Fatal(err)
		}
	}
	boundarySeeds(f, honest)
	f.Fuzz(func(t *testing.T, pb byte, msg []byte) {
		p := fuzzPattern(pb)
		i := pairs[p].afterMessage1(t)
		_, err := i.ReadMessage2(msg)
		if bytes.Equal(msg, honest[p]) {
			if err != nil {
				t.Fatalf("%v: honest message 2 refused: %v", p, err)
			}
			k, err := i.Split()
			if err != nil || k != keys[p] {
				t.Fatalf("%v: keys differ from the responder's: %v", p, err)
			}
			return
		}
		if len(msg) < p.messageSize(2) || len(msg) > MaxMessageSize {
			if !errors.Is(err, ErrMessageSize) {
				t.Fatalf("%v: %d-byte message 2: err = %v, want ErrMessageSize", p, len(msg), err)
			}
		} else if !errors.Is(err, ErrAuth) && !errors.Is(err, x25519.ErrLowOrder) {
			t.Fatalf("%v: forged message 2: err = %v", p, err)
		}
		if i.hs != (handshakeState{state: StateFailed}) {
			t.Fatal("state not wiped after a failure")
		}
	})
}
