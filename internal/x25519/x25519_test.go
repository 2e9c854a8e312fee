// SPDX-License-Identifier: Apache-2.0

package x25519

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"testing"
)

// mustHex decodes a hex string of exactly 32 bytes.
func mustHex(t testing.TB, s string) [Size]byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	if len(b) != Size {
		t.Fatalf("hex %q is %d bytes, want %d", s, len(b), Size)
	}
	return [Size]byte(b)
}

// ecdhX25519 computes X25519(scalar, u) with crypto/ecdh as a reference.
func ecdhX25519(t testing.TB, scalar, u [Size]byte) []byte {
	t.Helper()
	priv, err := ecdh.X25519().NewPrivateKey(scalar[:])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdh.X25519().NewPublicKey(u[:])
	if err != nil {
		t.Fatal(err)
	}
	out, err := priv.ECDH(pub)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dh computes X25519(scalar, u) through a key pair made from scalar.
func dh(t testing.TB, scalar, u [Size]byte) ([Size]byte, error) {
	t.Helper()
	kp, err := Generate(bytes.NewReader(scalar[:]))
	if err != nil {
		t.Fatal(err)
	}
	return kp.DH(u)
}

// TestRFC7748Vectors checks the two X25519 test vectors of RFC 7748 §5.2.
func TestRFC7748Vectors(t *testing.T) {
	vectors := []struct{ scalar, u, out string }{
		{
			scalar: "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			u:      "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			out:    "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
		},
		{
			scalar: "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			u:      "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			out:    "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
		},
	}
	for i, v := range vectors {
		scalar, u, want := mustHex(t, v.scalar), mustHex(t, v.u), mustHex(t, v.out)
		got, err := dh(t, scalar, u)
		if err != nil {
			t.Fatalf("vector %d: DH returned error: %v", i, err)
		}
		if got != want {
			t.Errorf("vector %d: DH = %x, want %x", i, got, want)
		}
		if ref := ecdhX25519(t, scalar, u); !bytes.Equal(ref, want[:]) {
			t.Errorf("vector %d: crypto/ecdh = %x, want %x", i, ref, want)
		}
	}
}

// TestRFC7748Iterated checks the iterated X25519 test of RFC 7748 §5.2 after
// 1 and 1,000 iterations.
func TestRFC7748Iterated(t *testing.T) {
	want1 := mustHex(t, "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
	want1000 := mustHex(t, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")

	var k, u [Size]byte
	k[0], u[0] = 9, 9
	for i := 1; i <= 1000; i++ {
		out, err := dh(t, k, u)
		if err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		u, k = k, out
		switch i {
		case 1:
			if k != want1 {
				t.Errorf("after 1 iteration k = %x, want %x", k, want1)
			}
		case 1000:
			if k != want1000 {
				t.Errorf("after 1000 iterations k = %x, want %x", k, want1000)
			}
		}
	}
}

// TestRFC7748AliceBob checks the Diffie-Hellman example of RFC 7748 §6.1,
// including public key generation through Generate.
func TestRFC7748AliceBob(t *testing.T) {
	alicePriv := mustHex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	alicePub := mustHex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	bobPriv := mustHex(t, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
	bobPub := mustHex(t, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
	shared := mustHex(t, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

	alice, err := Generate(bytes.NewReader(alicePriv[:]))
	if err != nil {
		t.Fatal(err)
	}
	if alice.Public != alicePub {
		t.Errorf("Alice public key = %x, want %x", alice.Public, alicePub)
	}
	bob, err := Generate(bytes.NewReader(bobPriv[:]))
	if err != nil {
		t.Fatal(err)
	}
	if bob.Public != bobPub {
		t.Errorf("Bob public key = %x, want %x", bob.Public, bobPub)
	}

	if got, err := alice.DH(bobPub); err != nil || got != shared {
		t.Errorf("Alice: shared secret = %x, %v, want %x", got, err, shared)
	}
	if got, err := bob.DH(alicePub); err != nil || got != shared {
		t.Errorf("Bob: shared secret = %x, %v, want %x", got, err, shared)
	}
}

// TestAgainstEcdh compares Generate and DH with crypto/ecdh used directly on
// random inputs, and checks that the private key is the clamped seed and that a
// key pair made from it is the same.
func TestAgainstEcdh(t *testing.T) {
	curve := ecdh.X25519()
	for i := range 1000 {
		var seed, peerSeed [Size]byte
		rand.Read(seed[:])
		rand.Read(peerSeed[:])

		kp, err := Generate(bytes.NewReader(seed[:]))
		if err != nil {
			t.Fatal(err)
		}
		ref, err := curve.NewPrivateKey(seed[:])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(kp.Public[:], ref.PublicKey().Bytes()) {
			t.Fatalf("iteration %d: public key of %x = %x, crypto/ecdh gives %x", i, seed, kp.Public, ref.PublicKey().Bytes())
		}
		priv := [Size]byte(kp.PrivateKey().Bytes())
		if want := clampedCopy(seed); priv != want {
			t.Fatalf("iteration %d: private key %x, want the clamped seed %x", i, priv, want)
		}
		again, err := Generate(bytes.NewReader(priv[:]))
		if err != nil {
			t.Fatal(err)
		}
		if again.Public != kp.Public {
			t.Fatalf("iteration %d: the clamped private key gives another public key", i)
		}

		// A random peer u-coordinate, which may lie on the twist.
		peer, err := curve.NewPublicKey(peerSeed[:])
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.ECDH(peer)
		if err != nil {
			t.Fatal(err)
		}
		for name, k := range map[string]*KeyPair{"generated": &kp, "from the clamped key": &again} {
			got, err := k.DH(peerSeed)
			if err != nil {
				t.Fatalf("iteration %d %s: %v", i, name, err)
			}
			if !bytes.Equal(got[:], want) {
				t.Fatalf("iteration %d %s: DH(%x) = %x, crypto/ecdh gives %x", i, name, peerSeed, got, want)
			}
		}
	}
}

// clampedCopy returns k clamped as RFC 7748 §5 decodes scalars.
func clampedCopy(k [Size]byte) [Size]byte {
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64
	return k
}

// TestLowOrder checks that DH rejects low-order points, whose shared secret
// is all zero, with ErrLowOrder.
func TestLowOrder(t *testing.T) {
	points := []string{
		// Zero, a point of order 2.
		"0000000000000000000000000000000000000000000000000000000000000000",
		// One, a point of order 4.
		"0100000000000000000000000000000000000000000000000000000000000000",
		// Points of order 8.
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		// p-1, a point of order 4 (non-zero u = -1).
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		// Non-canonical encodings of zero (p) and one (p+1).
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	}
	for _, s := range points {
		for _, highBit := range []byte{0, 0x80} {
			u := mustHex(t, s)
			u[31] |= highBit
			for range 8 {
				kp, err := Generate(rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				out, err := kp.DH(u)
				if !errors.Is(err, ErrLowOrder) {
					t.Fatalf("DH(_, %x) error = %v, want ErrLowOrder", u, err)
				}
				if out != [Size]byte{} {
					t.Fatalf("DH(_, %x) returned non-zero output %x with an error", u, out)
				}
			}
		}
	}
}

// countingReader is a deterministic random stream that counts the bytes read.
type countingReader struct {
	r *mathrand.ChaCha8
	n int
}

// Read fills p from the ChaCha8 stream.
func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// newDeterministic returns a deterministic random stream seeded by seed.
func newDeterministic(seed byte) *countingReader {
	var s [32]byte
	s[0] = seed
	return &countingReader{r: mathrand.NewChaCha8(s)}
}

// TestGenerateReads32 checks that Generate reads exactly 32 bytes, clamps the
// private key, and reports short reads.
func TestGenerateReads32(t *testing.T) {
	r := newDeterministic(1)
	kp, err := Generate(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.n != Size {
		t.Errorf("Generate read %d bytes, want %d", r.n, Size)
	}
	if priv := kp.PrivateKey().Bytes(); priv[0]&7 != 0 || priv[31]&0x80 != 0 || priv[31]&0x40 == 0 {
		t.Errorf("private key %x is not clamped", priv)
	}

	if _, err := Generate(bytes.NewReader(make([]byte, Size-1))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Generate on a short reader: error = %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := Generate(bytes.NewReader(nil)); !errors.Is(err, io.EOF) {
		t.Errorf("Generate on an empty reader: error = %v, want io.EOF", err)
	}
}

// TestZero checks that Zero clears the public key and drops the private key,
// and that DH on a zeroed or zero key pair fails instead of using some key.
func TestZero(t *testing.T) {
	kp, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kp.DH(peer.Public); err != nil {
		t.Fatal(err)
	}
	kp.Zero()
	if kp != (KeyPair{}) || kp.PrivateKey() != nil {
		t.Errorf("after Zero key pair = %+v, want the zero KeyPair", kp)
	}
	for name, k := range map[string]*KeyPair{"zeroed": &kp, "zero": {}} {
		if out, err := k.DH(peer.Public); !errors.Is(err, ErrNoKey) || out != ([Size]byte{}) {
			t.Errorf("DH on a %s key pair = %x, %v, want ErrNoKey", name, out, err)
		}
	}
}

// TestDHParsesOnlyThePeerKey checks that DH does not parse the private key
// again, which would recompute the public key and double its cost: it allocates
// no more than parsing the peer key and one crypto/ecdh ECDH with a parsed key.
func TestDHParsesOnlyThePeerKey(t *testing.T) {
	kp, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv := kp.PrivateKey()
	ref := testing.AllocsPerRun(100, func() {
		pub, err := ecdh.X25519().NewPublicKey(peer.Public[:])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := priv.ECDH(pub); err != nil {
			t.Fatal(err)
		}
	})
	got := testing.AllocsPerRun(100, func() {
		if _, err := kp.DH(peer.Public); err != nil {
			t.Fatal(err)
		}
	})
	if got > ref {
		t.Errorf("DH allocates %v times, parsing the peer key and ECDH %v", got, ref)
	}
}
