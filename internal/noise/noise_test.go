// SPDX-License-Identifier: Apache-2.0

package noise

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/x25519"
)

// pair is one handshake's fixed inputs.
type pair struct {
	p        Pattern
	prologue []byte
	ei, er   x25519.KeyPair
	psk      []byte
	// NNhfs: the initiator's decapsulation key and the responder's encapsulation randomness.
	dk      *mlkem.DecapsulationKey768
	encRand []byte
}

// newPair returns deterministic inputs for pattern p.
func newPair(t testing.TB, p Pattern, seed uint64) *pair {
	r := deterministic(seed)
	k := &pair{p: p, prologue: randomBytes(r, 14), ei: generate(t, r), er: generate(t, r)}
	if p == NNpsk0 {
		k.psk = randomBytes(r, KeyLen)
	}
	if p == NNhfs {
		var err error
		if k.dk, err = kem.Generate(r); err != nil {
			t.Fatal(err)
		}
		k.encRand = randomBytes(r, 32)
	}
	return k
}

// encapsulate is the pair's derandomized encapsulation (FIPS 203 ML-KEM.Encaps_internal).
func (k *pair) encapsulate(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
	return mlkemtest.Encapsulate768(ek, k.encRand)
}

func (k *pair) initiator(t testing.TB) *Initiator {
	t.Helper()
	var i *Initiator
	var err error
	if k.p == NNhfs {
		i, err = NewInitiatorHFS(k.prologue, &k.ei, k.dk)
	} else {
		i, err = NewInitiator(k.p, k.prologue, &k.ei, k.psk)
	}
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func (k *pair) responder(t testing.TB) *Responder {
	t.Helper()
	var r *Responder
	var err error
	if k.p == NNhfs {
		r, err = NewResponderHFS(k.prologue, &k.er, k.encapsulate)
	} else {
		r, err = NewResponder(k.p, k.prologue, &k.er, k.psk)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// messages runs the handshake and returns both messages.
func (k *pair) messages(t testing.TB) (msg1, msg2 []byte) {
	t.Helper()
	i, r := k.initiator(t), k.responder(t)
	msg1, err := i.WriteMessage1(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMessage1(msg1); err != nil {
		t.Fatal(err)
	}
	if msg2, err = r.WriteMessage2(nil, nil); err != nil {
		t.Fatal(err)
	}
	return msg1, msg2
}

// afterMessage1 returns an initiator that has written message 1.
func (k *pair) afterMessage1(t testing.TB) *Initiator {
	t.Helper()
	i := k.initiator(t)
	if _, err := i.WriteMessage1(nil, nil); err != nil {
		t.Fatal(err)
	}
	return i
}

// patterns are every pattern of the package; flynnPatterns those flynn/noise also runs.
var (
	patterns      = []Pattern{NN, NNpsk0, NNhfs}
	flynnPatterns = []Pattern{NN, NNpsk0}
)

// TestMessageSizes checks the size constants against the messages netauth sends.
func TestMessageSizes(t *testing.T) {
	want := map[Pattern][2]int{NN: {NNMessage1Size, NNMessage2Size}, NNpsk0: {NNpsk0Message1Size, NNpsk0Message2Size},
		NNhfs: {NNhfsMessage1Size, NNhfsMessage2Size}}
	for _, p := range patterns {
		msg1, msg2 := newPair(t, p, 1).messages(t)
		if len(msg1) != want[p][0] || len(msg2) != want[p][1] {
			t.Errorf("%v: messages of %d and %d bytes, constants say %v", p, len(msg1), len(msg2), want[p])
		}
	}
	if NNMessage1Size != 32 || NNMessage2Size != 48 || NNpsk0Message1Size != 48 || NNpsk0Message2Size != 48 ||
		NNhfsMessage1Size != 1216 || NNhfsMessage2Size != 1152 {
		t.Error("sizes differ from docs/PROTOCOL.md §3.1, §3.2 and §4")
	}
}

// TestTamperedMessage2 flips every bit of message 2: the initiator must refuse each.
func TestTamperedMessage2(t *testing.T) {
	for _, p := range patterns {
		k := newPair(t, p, 2)
		_, msg2 := k.messages(t)
		for bit := range 8 * len(msg2) {
			bad := bytes.Clone(msg2)
			bad[bit/8] ^= 1 << (bit % 8)
			i := k.afterMessage1(t)
			if _, err := i.ReadMessage2(bad); !errors.Is(err, ErrAuth) && !errors.Is(err, x25519.ErrLowOrder) {
				t.Fatalf("%v: bit %d flipped: err = %v, want ErrAuth", p, bit, err)
			}
			if i.State() != StateFailed {
				t.Fatalf("%v: state %v after a failed ReadMessage2", p, i.State())
			}
			if _, err := i.Split(); !errors.Is(err, ErrState) {
				t.Fatalf("%v: Split after a failure: err = %v", p, err)
			}
		}
		// Appending a byte changes the payload's ciphertext: refused too.
		if _, err := k.afterMessage1(t).ReadMessage2(append(bytes.Clone(msg2), 0)); !errors.Is(err, ErrAuth) {
			t.Fatalf("%v: message 2 with a byte appended: err = %v", p, err)
		}
		// And the original still works.
		if _, err := k.afterMessage1(t).ReadMessage2(msg2); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTamperedMessage1 flips every bit of message 1. NNpsk0 authenticates message 1, so the
// responder refuses it; NN and NNhfs do not, so the responder answers and the initiator
// refuses the answer, whose transcript differs (for NNhfs, the responder also encapsulated to
// another key) unless the flip made the encapsulation key malformed, which the responder
// refuses.
func TestTamperedMessage1(t *testing.T) {
	for _, p := range patterns {
		k := newPair(t, p, 3)
		msg1, _ := k.messages(t)
		for bit := range 8 * len(msg1) {
			bad := bytes.Clone(msg1)
			bad[bit/8] ^= 1 << (bit % 8)
			r := k.responder(t)
			_, err := r.ReadMessage1(bad)
			if p == NNpsk0 {
				if !errors.Is(err, ErrAuth) {
					t.Fatalf("NNpsk0: bit %d flipped: err = %v, want ErrAuth", bit, err)
				}
				continue
			}
			if p == NNhfs && errors.Is(err, ErrKEM) && errors.Is(err, kem.ErrMalformedKey) {
				continue // the flip made a coefficient of the encapsulation key >= q
			}
			if err != nil {
				t.Fatalf("%v: bit %d flipped: ReadMessage1: %v", p, bit, err)
			}
			msg2, err := r.WriteMessage2(nil, nil)
			if errors.Is(err, x25519.ErrLowOrder) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := k.afterMessage1(t).ReadMessage2(msg2); !errors.Is(err, ErrAuth) {
				t.Fatalf("%v: bit %d of message 1 flipped: initiator err = %v, want ErrAuth", p, bit, err)
			}
		}
	}
}

// TestWrongPSKOrPrologue checks that a responder with another pre-shared key or prologue
// refuses NNpsk0 message 1, and that an NN initiator refuses the message 2 of a responder
// with another prologue.
func TestWrongPSKOrPrologue(t *testing.T) {
	k := newPair(t, NNpsk0, 4)
	msg1, _ := k.messages(t)
	other := *k
	other.psk = bytes.Clone(k.psk)
	other.psk[31] ^= 1
	if _, err := other.responder(t).ReadMessage1(msg1); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong psk: err = %v, want ErrAuth", err)
	}
	other = *k
	other.prologue = append(bytes.Clone(k.prologue), 0)
	if _, err := other.responder(t).ReadMessage1(msg1); !errors.Is(err, ErrAuth) {
		t.Fatalf("NNpsk0, other prologue: err = %v, want ErrAuth", err)
	}

	k = newPair(t, NN, 5)
	msg1, _ = k.messages(t)
	other = *k
	other.prologue = bytes.Clone(k.prologue)
	other.prologue[0] ^= 1
	r := other.responder(t)
	if _, err := r.ReadMessage1(msg1); err != nil {
		t.Fatal(err)
	}
	msg2, err := r.WriteMessage2(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.afterMessage1(t).ReadMessage2(msg2); !errors.Is(err, ErrAuth) {
		t.Fatalf("NN, other prologue: err = %v, want ErrAuth", err)
	}
}

// lowOrder lists the X25519 public keys whose shared secret is all zero (as in
// internal/x25519's tests), each also with the ignored top bit set.
func lowOrder(t *testing.T) [][DHLen]byte {
	var out [][DHLen]byte
	for _, s := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		u := [DHLen]byte(b)
		out = append(out, u)
		u[31] |= 0x80
		out = append(out, u)
	}
	return out
}

// TestLowOrder checks that a low-order ephemeral key fails the handshake with
// x25519.ErrLowOrder on either side. The messages are otherwise valid (made by a peer that
// "holds" a low-order key, and the pre-shared key), so only the check can refuse them.
func TestLowOrder(t *testing.T) {
	for _, p := range patterns {
		for _, u := range lowOrder(t) {
			// The initiator's e is low-order: the responder's ee fails.
			k := newPair(t, p, 6)
			k.ei.Public = u
			msg1, err := k.initiator(t).WriteMessage1(nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			r := k.responder(t)
			if _, err := r.ReadMessage1(msg1); err != nil {
				t.Fatalf("%v: ReadMessage1: %v", p, err)
			}
			if _, err := r.WriteMessage2(nil, nil); !errors.Is(err, x25519.ErrLowOrder) {
				t.Fatalf("%v: initiator key %x: err = %v, want ErrLowOrder", p, u, err)
			}
			if r.State() != StateFailed {
				t.Fatalf("%v: state %v", p, r.State())
			}

			// The responder's e is low-order: the initiator's ee fails.
			k = newPair(t, p, 7)
			k.er.Public = u
			_, msg2 := k.messages(t)
			i := k.afterMessage1(t)
			if _, err := i.ReadMessage2(msg2); !errors.Is(err, x25519.ErrLowOrder) {
				t.Fatalf("%v: responder key %x: err = %v, want ErrLowOrder", p, u, err)
			}
		}
	}
}

// TestSizes checks that short and oversize messages and oversize payloads are errors, and
// that the largest allowed message works.
func TestSizes(t *testing.T) {
	for _, p := range patterns {
		k := newPair(t, p, 8)
		min1, min2 := p.messageSize(1), p.messageSize(2)
		for n := range min1 {
			if _, err := k.responder(t).ReadMessage1(make([]byte, n)); !errors.Is(err, ErrMessageSize) {
				t.Fatalf("%v: message 1 of %d bytes: err = %v", p, n, err)
			}
		}
		for n := range min2 {
			if _, err := k.afterMessage1(t).ReadMessage2(make([]byte, n)); !errors.Is(err, ErrMessageSize) {
				t.Fatalf("%v: message 2 of %d bytes: err = %v", p, n, err)
			}
		}
		if _, err := k.responder(t).ReadMessage1(make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrMessageSize) {
			t.Fatalf("%v: oversize message 1: err = %v", p, err)
		}
		if _, err := k.afterMessage1(t).ReadMessage2(make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrMessageSize) {
			t.Fatalf("%v: oversize message 2: err = %v", p, err)
		}

		// Payloads: the largest fits exactly, one byte more does not.
		big1, big2 := make([]byte, MaxMessageSize-min1+1), make([]byte, MaxMessageSize-min2+1)
		if _, err := k.initiator(t).WriteMessage1(nil, big1); !errors.Is(err, ErrMessageSize) {
			t.Fatalf("%v: oversize payload 1: err = %v", p, err)
		}
		i, r := k.initiator(t), k.responder(t)
		msg1, err := i.WriteMessage1(nil, big1[1:])
		if err != nil || len(msg1) != MaxMessageSize {
			t.Fatalf("%v: largest message 1: %d bytes, %v", p, len(msg1), err)
		}
		if got, err := r.ReadMessage1(msg1); err != nil || !bytes.Equal(got, big1[1:]) {
			t.Fatalf("%v: largest message 1: %v", p, err)
		}
		r2 := *r // the same state, to try the oversize payload on a copy
		if _, err := r2.WriteMessage2(nil, big2); !errors.Is(err, ErrMessageSize) {
			t.Fatalf("%v: oversize payload 2: err = %v", p, err)
		}
		msg2, err := r.WriteMessage2(nil, big2[1:])
		if err != nil || len(msg2) != MaxMessageSize {
			t.Fatalf("%v: largest message 2: %d bytes, %v", p, len(msg2), err)
		}
		if got, err := i.ReadMessage2(msg2); err != nil || !bytes.Equal(got, big2[1:]) {
			t.Fatalf("%v: largest message 2: %v", p, err)
		}
	}
}

// complete returns both sides of pattern k after message 2, ready for Split.
func (k *pair) complete(t testing.TB) (*Initiator, *Responder) {
	t.Helper()
	i, r := k.initiator(t), k.responder(t)
	msg1, err := i.WriteMessage1(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMessage1(msg1); err != nil {
		t.Fatal(err)
	}
	msg2, err := r.WriteMessage2(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := i.ReadMessage2(msg2); err != nil {
		t.Fatal(err)
	}
	return i, r
}

// TestStepOrder calls every step in every state it does not belong to: each returns
// ErrState, does not panic, and leaves the state failed (wiped).
func TestStepOrder(t *testing.T) {
	type step struct {
		name string
		run  func(*Initiator, *Responder) (State, error)
	}
	steps := []step{
		{"WriteMessage1", func(i *Initiator, _ *Responder) (State, error) {
			_, err := i.WriteMessage1(nil, nil)
			return i.State(), err
		}},
		{"ReadMessage2", func(i *Initiator, _ *Responder) (State, error) {
			_, err := i.ReadMessage2(make([]byte, 48))
			return i.State(), err
		}},
		{"Initiator.Split", func(i *Initiator, _ *Responder) (State, error) {
			_, err := i.Split()
			return i.State(), err
		}},
		{"ReadMessage1", func(_ *Initiator, r *Responder) (State, error) {
			_, err := r.ReadMessage1(make([]byte, 48))
			return r.State(), err
		}},
		{"WriteMessage2", func(_ *Initiator, r *Responder) (State, error) {
			_, err := r.WriteMessage2(nil, nil)
			return r.State(), err
		}},
		{"Responder.Split", func(_ *Initiator, r *Responder) (State, error) {
			_, err := r.Split()
			return r.State(), err
		}},
	}
	for _, p := range patterns {
		k := newPair(t, p, 9)
		msg1, _ := k.messages(t)
		// setups return a fresh pair in a given state, and the steps allowed there.
		setups := []struct {
			state   State
			make    func() (*Initiator, *Responder)
			allowed map[string]bool
		}{
			{StateZeroed, func() (*Initiator, *Responder) { return new(Initiator), new(Responder) }, nil},
			{StateZeroed, func() (*Initiator, *Responder) {
				i, r := k.initiator(t), k.responder(t)
				i.Zero()
				r.Zero()
				return i, r
			}, nil},
			{StateInitialized, func() (*Initiator, *Responder) { return k.initiator(t), k.responder(t) },
				map[string]bool{"WriteMessage1": true, "ReadMessage1": true}},
			{StateMessage1, func() (*Initiator, *Responder) {
				r := k.responder(t)
				if _, err := r.ReadMessage1(msg1); err != nil {
					t.Fatal(err)
				}
				return k.afterMessage1(t), r
			}, map[string]bool{"ReadMessage2": true, "WriteMessage2": true}},
			{StateMessage2, func() (*Initiator, *Responder) { return k.complete(t) },
				map[string]bool{"Initiator.Split": true, "Responder.Split": true}},
			{StateSplit, func() (*Initiator, *Responder) {
				i, r := k.complete(t)
				if _, err := i.Split(); err != nil {
					t.Fatal(err)
				}
				if _, err := r.Split(); err != nil {
					t.Fatal(err)
				}
				return i, r
			}, nil},
			{StateFailed, func() (*Initiator, *Responder) {
				i, r := k.afterMessage1(t), k.responder(t)
				i.ReadMessage2(make([]byte, 48)) // e = 0: low order
				r.ReadMessage1(make([]byte, 3))  // too short
				return i, r
			}, nil},
		}
		for _, s := range setups {
			for _, st := range steps {
				if s.allowed[st.name] {
					continue
				}
				i, r := s.make()
				if i.State() != s.state || r.State() != s.state {
					t.Fatalf("setup for %v gave %v / %v", s.state, i.State(), r.State())
				}
				after, err := st.run(i, r)
				if !errors.Is(err, ErrState) {
					t.Fatalf("%v: %s in state %v: err = %v, want ErrState", p, st.name, s.state, err)
				}
				if after != StateFailed {
					t.Fatalf("%v: %s in state %v left state %v", p, st.name, s.state, after)
				}
			}
		}
	}
}

// TestNewErrors checks the constructors' argument checks.
func TestNewErrors(t *testing.T) {
	k := newPair(t, NN, 10)
	psk := make([]byte, KeyLen)
	wiped := k.er
	wiped.Zero()
	cases := []struct {
		name string
		p    Pattern
		e    *x25519.KeyPair
		psk  []byte
	}{
		{"zero pattern", 0, &k.ei, nil},
		{"unknown pattern", NNhfs + 1, &k.ei, nil},
		{"NNhfs without a KEM key", NNhfs, &k.ei, nil},
		{"no ephemeral", NN, nil, nil},
		{"zero ephemeral", NN, &x25519.KeyPair{}, nil},
		{"wiped ephemeral", NN, &wiped, nil},
		{"NN with psk", NN, &k.ei, psk},
		{"NNpsk0 without psk", NNpsk0, &k.ei, nil},
		{"NNpsk0 short psk", NNpsk0, &k.ei, psk[:31]},
		{"NNpsk0 long psk", NNpsk0, &k.ei, append(psk, 0)},
	}
	for _, c := range cases {
		if i, err := NewInitiator(c.p, nil, c.e, c.psk); err == nil || i != nil {
			t.Errorf("NewInitiator, %s: no error", c.name)
		}
		if r, err := NewResponder(c.p, nil, c.e, c.psk); err == nil || r != nil {
			t.Errorf("NewResponder, %s: no error", c.name)
		}
	}
	h := newPair(t, NNhfs, 10)
	for _, c := range []struct {
		name string
		e    *x25519.KeyPair
		dk   *mlkem.DecapsulationKey768
	}{{"no ephemeral", nil, h.dk}, {"wiped ephemeral", &wiped, h.dk}, {"no decapsulation key", &h.ei, nil}} {
		if i, err := NewInitiatorHFS(nil, c.e, c.dk); err == nil || i != nil {
			t.Errorf("NewInitiatorHFS, %s: no error", c.name)
		}
		if c.dk != nil {
			if r, err := NewResponderHFS(nil, c.e, nil); err == nil || r != nil {
				t.Errorf("NewResponderHFS, %s: no error", c.name)
			}
		}
	}
}

// TestZero checks that Split and Zero wipe every secret, and that the initiator's copy of the
// caller's ephemeral key is its own.
func TestZero(t *testing.T) {
	for _, p := range patterns {
		k := newPair(t, p, 11)
		_, msg2 := k.messages(t)
		i := k.afterMessage1(t)
		if i.hs.e != k.ei || (p == NNpsk0) != (i.hs.ss.cs.hasKey) {
			t.Fatalf("%v: unexpected state after message 1", p)
		}
		if _, err := i.ReadMessage2(msg2); err != nil {
			t.Fatal(err)
		}
		ck, h := i.hs.ss.ck, i.hs.ss.h
		keys, err := i.Split()
		if err != nil {
			t.Fatal(err)
		}
		if keys.ChainingKey != ck || keys.HandshakeHash != h {
			t.Fatalf("%v: Split returned another ck or h", p)
		}
		if i.hs != (handshakeState{state: StateSplit}) {
			t.Fatalf("%v: state not wiped by Split: %+v", p, i.hs)
		}
		if k.ei == (x25519.KeyPair{}) {
			t.Fatalf("%v: the caller's ephemeral key was wiped", p)
		}
		keys.Zero()
		if keys != (Keys{}) {
			t.Fatal("Keys.Zero left secrets")
		}

		r := k.responder(t)
		r.Zero()
		if r.hs != (handshakeState{}) || r.State() != StateZeroed || r.Pattern() != 0 {
			t.Fatalf("%v: Zero left %+v", p, r.hs)
		}
		r = k.responder(t)
		r.ReadMessage1(nil)
		if r.hs != (handshakeState{state: StateFailed}) {
			t.Fatalf("%v: a failure left %+v", p, r.hs)
		}
	}
}

// TestSymmetricSplitKeepsChainingKey checks the documented split of duties: Split wipes the
// cipher key but keeps ck and h for the key schedule; Zero wipes them.
func TestSymmetricSplitKeepsChainingKey(t *testing.T) {
	var s SymmetricState
	s.InitializeSymmetric(ProtocolNN)
	s.MixKey([]byte("input key material"))
	ck, h := s.ChainingKey(), s.GetHandshakeHash()
	if !s.HasKey() {
		t.Fatal("MixKey set no key")
	}
	k1, k2 := s.Split()
	if s.HasKey() || s.cs.k != [KeyLen]byte{} {
		t.Fatal("Split kept the cipher key")
	}
	if s.ChainingKey() != ck || s.GetHandshakeHash() != h {
		t.Fatal("Split changed ck or h")
	}
	want, err := hkdf.Key(sha256.New, nil, ck[:], "", 2*KeyLen)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, append(k1[:], k2[:]...)) {
		t.Fatal("Split is not HKDF(ck, \"\", 2)")
	}
	s.Zero()
	if s != (SymmetricState{}) {
		t.Fatal("Zero left secrets")
	}
}

// TestHKDF checks MixKey and MixKeyAndHash against crypto/hkdf (RFC 5869 with salt ck and
// empty info is Noise's HKDF), for input key material of the lengths netauth uses and will
// use: empty, a DH output or psk (32), an ML-KEM-768 shared secret (32), a concatenation
// (64), and arbitrary lengths.
func TestHKDF(t *testing.T) {
	r := deterministic(12)
	for _, n := range []int{0, 1, 32, 64, 65, 200, 1088, 1184} {
		ikm := randomBytes(r, n)
		var s SymmetricState
		s.InitializeSymmetric(ProtocolNNpsk0)
		s.MixHash(randomBytes(r, 10))
		ck0, h0 := s.ck, s.h

		s.MixKey(ikm)
		want, err := hkdf.Key(sha256.New, ikm, ck0[:], "", 2*HashLen)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s.ck[:], want[:32]) || !bytes.Equal(s.cs.k[:], want[32:]) || s.h != h0 || s.cs.n != 0 {
			t.Fatalf("MixKey(%d bytes) differs from HKDF", n)
		}

		ck1 := s.ck
		s.MixKeyAndHash(ikm)
		want, err = hkdf.Key(sha256.New, ikm, ck1[:], "", 3*HashLen)
		if err != nil {
			t.Fatal(err)
		}
		wantH := sha256.Sum256(append(h0[:], want[32:64]...))
		if !bytes.Equal(s.ck[:], want[:32]) || s.h != wantH || !bytes.Equal(s.cs.k[:], want[64:]) {
			t.Fatalf("MixKeyAndHash(%d bytes) differs from HKDF", n)
		}
	}
}

// TestHMAC checks the written-out HMAC-SHA256 against crypto/hmac, with the data in one
// piece and in several.
func TestHMAC(t *testing.T) {
	r := deterministic(13)
	for n := range 300 {
		key := [HashLen]byte(randomBytes(r, HashLen))
		data := randomBytes(r, n)
		m := hmac.New(sha256.New, key[:])
		m.Write(data)
		want := m.Sum(nil)
		var got [HashLen]byte
		hmacSHA256(&got, &key, data)
		if !bytes.Equal(got[:], want) {
			t.Fatalf("HMAC of %d bytes differs from crypto/hmac", n)
		}
		cut := n / 3
		hmacSHA256(&got, &key, data[:cut], nil, data[cut:])
		if !bytes.Equal(got[:], want) {
			t.Fatalf("HMAC of %d bytes in pieces differs from crypto/hmac", n)
		}
	}
}

// TestInitializeSymmetric checks §5.2's rule for protocol names: padded if they fit in
// HashLen bytes, hashed if not.
func TestInitializeSymmetric(t *testing.T) {
	var s SymmetricState
	s.InitializeSymmetric(ProtocolNN)
	var want [HashLen]byte
	copy(want[:], ProtocolNN)
	if s.h != want || s.ck != want || s.HasKey() {
		t.Fatal("NN: h, ck or k wrong")
	}
	s.InitializeSymmetric(ProtocolNNpsk0)
	if string(s.h[:]) != ProtocolNNpsk0 || s.ck != s.h {
		t.Fatal("NNpsk0: h or ck wrong")
	}
	long := "Noise_XXfallback+psk0_25519_AESGCM_SHA256"
	s.InitializeSymmetric(long)
	if s.h != sha256.Sum256([]byte(long)) || s.ck != s.h {
		t.Fatal("long name not hashed")
	}
}

// TestEncryptDecryptAndHash checks the symmetric state's AEAD steps: the ciphertext depends
// on h, both sides' h agree, decryption in place works, a wrong h fails, and the reserved
// nonce 2^64-1 is refused.
func TestEncryptDecryptAndHash(t *testing.T) {
	var a, b SymmetricState
	for _, s := range []*SymmetricState{&a, &b} {
		s.InitializeSymmetric(ProtocolNN)
		s.MixKey([]byte("shared"))
	}
	// Without a key the plaintext is sent as is, and hashed.
	var c SymmetricState
	c.InitializeSymmetric(ProtocolNN)
	h := c.h
	out, err := c.EncryptAndHash([]byte("x"), []byte("clear"))
	if err != nil || string(out) != "xclear" {
		t.Fatalf("no key: %q, %v", out, err)
	}
	if c.h != sha256.Sum256(append(h[:], "clear"...)) {
		t.Fatal("no key: MixHash(plaintext) missing")
	}

	ct, err := a.EncryptAndHash([]byte("prefix"), []byte("secret payload"))
	if err != nil || !bytes.HasPrefix(ct, []byte("prefix")) || len(ct) != 6+14+TagLen {
		t.Fatalf("EncryptAndHash: %x, %v", ct, err)
	}
	ct = ct[6:]
	inPlace := bytes.Clone(ct)
	pt, err := b.DecryptAndHash(inPlace[:0], inPlace)
	if err != nil || string(pt) != "secret payload" {
		t.Fatalf("DecryptAndHash in place: %q, %v", pt, err)
	}
	if a.h != b.h {
		t.Fatal("h differs after decryption in place")
	}
	// The same ciphertext under the next nonce and h fails.
	if _, err := b.DecryptAndHash(nil, ct); !errors.Is(err, ErrAuth) {
		t.Fatalf("replayed ciphertext: err = %v", err)
	}
	// The reserved nonce.
	a.cs.n = maxNonce
	if _, err := a.EncryptAndHash(nil, nil); !errors.Is(err, ErrNonce) {
		t.Fatalf("nonce 2^64-1: EncryptAndHash err = %v", err)
	}
	b.cs.n = maxNonce
	if _, err := b.DecryptAndHash(nil, make([]byte, TagLen)); !errors.Is(err, ErrNonce) {
		t.Fatalf("nonce 2^64-1: DecryptAndHash err = %v", err)
	}
	a.cs.n = maxNonce - 1
	if _, err := a.EncryptAndHash(nil, nil); err != nil {
		t.Fatalf("nonce 2^64-2: %v", err)
	}
}

// TestNonceEncoding checks the AESGCM nonce of §12.4: 4 zero bytes, then n big-endian.
func TestNonceEncoding(t *testing.T) {
	got := nonce(0x0102030405060708)
	if want := [12]byte{0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8}; got != want {
		t.Fatalf("nonce = %x, want %x", got, want)
	}
}

// TestNames checks the String methods and protocol names.
func TestNames(t *testing.T) {
	if NN.String() != "NN" || NNpsk0.String() != "NNpsk0" || NNhfs.String() != "NNhfs" || Pattern(7).String() != "Pattern(7)" {
		t.Error("Pattern.String")
	}
	if NN.ProtocolName() != "Noise_NN_25519_AESGCM_SHA256" || NNpsk0.ProtocolName() != "Noise_NNpsk0_25519_AESGCM_SHA256" ||
		NNhfs.ProtocolName() != "Noise_NNhfs_25519+MLKEM768_AESGCM_SHA256" || Pattern(0).ProtocolName() != "" {
		t.Error("Pattern.ProtocolName")
	}
	want := []string{"zeroed", "initialized", "message 1 done", "message 2 done", "split", "failed", "State(6)"}
	for s, w := range want {
		if State(s).String() != w {
			t.Errorf("State(%d).String() = %q, want %q", s, State(s).String(), w)
		}
	}
}
