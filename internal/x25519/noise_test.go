// SPDX-License-Identifier: Apache-2.0

package x25519

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/flynn/noise"
)

// clamped returns a clamped copy of k.
func clamped(k []byte) [Size]byte {
	c := [Size]byte(k)
	clamp(&c)
	return c
}

// TestDHFuncMatchesNoise checks that, from the same deterministic random
// stream, DHFunc(nil) and noise.DH25519 read the same bytes, produce the same
// public keys and private keys that agree after clamping, and compute the same
// shared secrets.
func TestDHFuncMatchesNoise(t *testing.T) {
	ours := DHFunc(nil)
	if ours.DHName() != noise.DH25519.DHName() || ours.DHLen() != noise.DH25519.DHLen() {
		t.Fatalf("DHFunc name/len = %q/%d, want %q/%d", ours.DHName(), ours.DHLen(), noise.DH25519.DHName(), noise.DH25519.DHLen())
	}

	rOurs, rRef := newDeterministic(7), newDeterministic(7)
	var prevOurs, prevRef noise.DHKey
	for i := range 200 {
		kOurs, err := ours.GenerateKeypair(rOurs)
		if err != nil {
			t.Fatal(err)
		}
		kRef, err := noise.DH25519.GenerateKeypair(rRef)
		if err != nil {
			t.Fatal(err)
		}
		if rOurs.n != rRef.n || rOurs.n != Size*(i+1) {
			t.Fatalf("key %d: bytes read = %d (ours), %d (noise), want %d", i, rOurs.n, rRef.n, Size*(i+1))
		}
		if !bytes.Equal(kOurs.Public, kRef.Public) {
			t.Fatalf("key %d: public key %x, noise.DH25519 gives %x", i, kOurs.Public, kRef.Public)
		}
		if [Size]byte(kOurs.Private) != clamped(kRef.Private) {
			t.Fatalf("key %d: private key %x is not the clamped noise.DH25519 key %x", i, kOurs.Private, kRef.Private)
		}
		if i > 0 {
			// Every combination of implementation and private key form
			// must agree on the shared secret.
			want, err := noise.DH25519.DH(kRef.Private, prevRef.Public)
			if err != nil {
				t.Fatal(err)
			}
			for _, dh := range []noise.DHFunc{ours, noise.DH25519} {
				for _, priv := range [][]byte{kOurs.Private, kRef.Private} {
					got, err := dh.DH(priv, prevOurs.Public)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("key %d: shared secret mismatch: %x, want %x", i, got, want)
					}
				}
			}
		}
		prevOurs, prevRef = kOurs, kRef
	}
}

// handshakeResult is the observable outcome of one Noise handshake.
type handshakeResult struct {
	binding    []byte
	transcript [][]byte
}

// runHandshake runs an NN (or NNpsk0 when psk is not nil) handshake between an
// initiator using dhI and a responder using dhR, each with its own random
// stream, then checks that transport messages flow both ways.
func runHandshake(t *testing.T, dhI, dhR noise.DHFunc, randI, randR io.Reader, psk []byte) handshakeResult {
	t.Helper()
	config := func(dh noise.DHFunc, initiator bool, random io.Reader) noise.Config {
		return noise.Config{
			CipherSuite:  noise.NewCipherSuite(dh, noise.CipherAESGCM, noise.HashSHA256),
			Pattern:      noise.HandshakeNN,
			Initiator:    initiator,
			Random:       random,
			Prologue:     []byte("netauth test"),
			PresharedKey: psk,
		}
	}
	hsI, err := noise.NewHandshakeState(config(dhI, true, randI))
	if err != nil {
		t.Fatal(err)
	}
	hsR, err := noise.NewHandshakeState(config(dhR, false, randR))
	if err != nil {
		t.Fatal(err)
	}

	var res handshakeResult
	msg1, _, _, err := hsI.WriteMessage(nil, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	res.transcript = append(res.transcript, msg1)
	if p, _, _, err := hsR.ReadMessage(nil, msg1); err != nil || string(p) != "hello" {
		t.Fatalf("responder read message 1: payload %q, error %v", p, err)
	}
	msg2, csR1, csR2, err := hsR.WriteMessage(nil, []byte("world"))
	if err != nil {
		t.Fatal(err)
	}
	res.transcript = append(res.transcript, msg2)
	p, csI1, csI2, err := hsI.ReadMessage(nil, msg2)
	if err != nil || string(p) != "world" {
		t.Fatalf("initiator read message 2: payload %q, error %v", p, err)
	}
	if csI1 == nil || csR1 == nil {
		t.Fatal("handshake did not complete")
	}

	res.binding = hsI.ChannelBinding()
	if !bytes.Equal(res.binding, hsR.ChannelBinding()) {
		t.Fatalf("channel bindings differ: initiator %x, responder %x", res.binding, hsR.ChannelBinding())
	}

	ct, err := csI1.Encrypt(nil, nil, []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := csR1.Decrypt(nil, nil, ct); err != nil || string(pt) != "ping" {
		t.Fatalf("initiator to responder: %q, %v", pt, err)
	}
	ct, err = csR2.Encrypt(nil, nil, []byte("pong"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := csI2.Decrypt(nil, nil, ct); err != nil || string(pt) != "pong" {
		t.Fatalf("responder to initiator: %q, %v", pt, err)
	}
	return res
}

// TestNoiseHandshakeInterop runs NN and NNpsk0 handshakes with every pairing
// of noise.DH25519 and DHFunc(nil) driven by the same deterministic random
// streams, and checks that every pairing produces the same transcript and the
// same channel binding.
func TestNoiseHandshakeInterop(t *testing.T) {
	psk := bytes.Repeat([]byte{0x42}, 32)
	for _, tc := range []struct {
		name string
		psk  []byte
	}{{"NN", nil}, {"NNpsk0", psk}} {
		t.Run(tc.name, func(t *testing.T) {
			ours := DHFunc(nil)
			pairs := []struct {
				name     string
				dhI, dhR noise.DHFunc
			}{
				{"noise-noise", noise.DH25519, noise.DH25519},
				{"noise-ours", noise.DH25519, ours},
				{"ours-noise", ours, noise.DH25519},
				{"ours-ours", ours, ours},
			}
			var ref handshakeResult
			for i, pair := range pairs {
				got := runHandshake(t, pair.dhI, pair.dhR, newDeterministic(1), newDeterministic(2), tc.psk)
				if i == 0 {
					ref = got
					continue
				}
				if !bytes.Equal(got.binding, ref.binding) {
					t.Errorf("%s: channel binding %x, noise-noise gives %x", pair.name, got.binding, ref.binding)
				}
				for j := range got.transcript {
					if !bytes.Equal(got.transcript[j], ref.transcript[j]) {
						t.Errorf("%s: handshake message %d differs from noise-noise", pair.name, j+1)
					}
				}
			}
		})
	}
}

// TestNoiseHandshakeWithPool runs handshakes whose ephemeral keys come from
// pools, against peers using noise.DH25519 and pools.
func TestNoiseHandshakeWithPool(t *testing.T) {
	poolI, poolR := NewPool(4), NewPool(4)
	defer poolI.Close()
	defer poolR.Close()
	withPoolI, withPoolR := DHFunc(poolI), DHFunc(poolR)
	for range 10 {
		runHandshake(t, withPoolI, withPoolR, nil, nil, nil)
		runHandshake(t, withPoolI, noise.DH25519, nil, nil, nil)
		runHandshake(t, noise.DH25519, withPoolR, nil, nil, nil)
	}
}

// TestDHFuncPoolIgnoresRandom checks that with a pool GenerateKeypair does not
// read from its random argument and still returns valid key pairs.
func TestDHFuncPoolIgnoresRandom(t *testing.T) {
	pool := NewPool(2)
	defer pool.Close()
	dh := DHFunc(pool)
	r := newDeterministic(3)
	for range 5 {
		k, err := dh.GenerateKeypair(r)
		if err != nil {
			t.Fatal(err)
		}
		want, err := noise.DH25519.DH(k.Private, []byte{9, 31: 0})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.Public, want) {
			t.Fatalf("pooled key pair is inconsistent: public %x, want %x", k.Public, want)
		}
	}
	if r.n != 0 {
		t.Errorf("GenerateKeypair with a pool read %d bytes from random, want 0", r.n)
	}
}

// TestDHFuncErrors checks the error cases of the noise.DHFunc.
func TestDHFuncErrors(t *testing.T) {
	dh := DHFunc(nil)
	key, err := dh.GenerateKeypair(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		priv, pub []byte
		want      error
	}{
		{"short private key", key.Private[:31], key.Public, ErrKeyLength},
		{"long private key", append(key.Private[:32:32], 0), key.Public, ErrKeyLength},
		{"short public key", key.Private, key.Public[:31], ErrKeyLength},
		{"nil public key", key.Private, nil, ErrKeyLength},
		{"zero public key", key.Private, make([]byte, 32), ErrLowOrder},
	} {
		out, err := dh.DH(tc.priv, tc.pub)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: error = %v, want %v", tc.name, err, tc.want)
		}
		if out != nil {
			t.Errorf("%s: output %x returned with an error", tc.name, out)
		}
	}
	if _, err := dh.GenerateKeypair(bytes.NewReader(make([]byte, 10))); err == nil {
		t.Error("GenerateKeypair on a short reader succeeded")
	}
}
