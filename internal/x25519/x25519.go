// SPDX-License-Identifier: Apache-2.0

// Package x25519 provides the X25519 operations of netauth's handshakes: fast ephemeral key generation, Diffie-Hellman, and a pool of pre-generated ephemeral keys.
package x25519

import (
	"crypto/subtle"
	"io"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Size is the length in bytes of X25519 private keys, public keys and shared
// secrets.
const Size = 32

// Error is the type of the constant errors returned by this package.
type Error string

// Error returns the error message.
func (e Error) Error() string { return string(e) }

// ErrLowOrder is returned by DH when the peer's public key is a low-order
// point, which makes the shared secret all zero.
const ErrLowOrder = Error("x25519: low-order public key produces an all-zero shared secret")

// KeyPair is an X25519 key pair. Private holds the clamped scalar and Public
// holds the matching Montgomery u-coordinate.
type KeyPair struct {
	Private, Public [Size]byte
}

// Zero wipes a key pair.
func (k *KeyPair) Zero() {
	clear(k.Private[:])
	clear(k.Public[:])
}

// Generate makes a key pair from 32 bytes of rand. It reads exactly 32 bytes,
// the same amount that noise.DH25519 reads, so that both produce the same
// public key from the same random stream. The stored private key is the clamped
// form of those bytes; X25519 clamps its scalar anyway, so both private key
// forms give the same public key and the same shared secrets.
func Generate(rand io.Reader) (KeyPair, error) {
	var seed [Size]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return KeyPair{}, err
	}
	return fromSeed(&seed), nil
}

// fromSeed derives a key pair from 32 secret bytes by a fixed-base scalar
// multiplication on the Edwards curve, mapped to the Montgomery u-coordinate.
// It is much cheaper than a variable-base Montgomery ladder from the base
// point, and yields the same public key.
func fromSeed(seed *[Size]byte) KeyPair {
	var kp KeyPair
	kp.Private = *seed
	clamp(&kp.Private)

	s, err := edwards25519.NewScalar().SetBytesWithClamping(kp.Private[:])
	if err != nil {
		// SetBytesWithClamping fails only for inputs that are not 32 bytes long.
		panic("x25519: unreachable: " + err.Error())
	}
	p := new(edwards25519.Point).ScalarBaseMult(s)
	copy(kp.Public[:], p.BytesMontgomery())
	s.Set(edwards25519.NewScalar())
	return kp
}

// clamp applies the RFC 7748 §5 scalar decoding to k in place.
func clamp(k *[Size]byte) {
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64
}

// DH returns X25519(priv, pub); error if the result is all zero. The scalar is
// clamped as RFC 7748 §5 requires, so both raw and clamped private keys are
// accepted, and the most significant bit of pub is ignored.
func DH(priv, pub [Size]byte) ([Size]byte, error) {
	var out [Size]byte
	clamp(&priv)
	ladder(&out, &priv, &pub)
	clear(priv[:])

	var zero [Size]byte
	if subtle.ConstantTimeCompare(out[:], zero[:]) == 1 {
		return zero, ErrLowOrder
	}
	return out, nil
}

// ladder sets out to the u-coordinate of scalar·u computed with the constant
// time Montgomery ladder of RFC 7748 §5. The scalar must already be clamped.
func ladder(out, scalar, u *[Size]byte) {
	var x1, x2, z2, x3, z3 field.Element
	var a, aa, b, bb, e, c, d, da, cb field.Element

	if _, err := x1.SetBytes(u[:]); err != nil {
		// SetBytes fails only for inputs that are not 32 bytes long.
		panic("x25519: unreachable: " + err.Error())
	}
	x2.One()
	z2.Zero()
	x3.Set(&x1)
	z3.One()

	swap := 0
	for t := 254; t >= 0; t-- {
		kt := int(scalar[t>>3]>>(t&7)) & 1
		swap ^= kt
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = kt

		a.Add(&x2, &z2)
		aa.Square(&a)
		b.Subtract(&x2, &z2)
		bb.Square(&b)
		e.Subtract(&aa, &bb)
		c.Add(&x3, &z3)
		d.Subtract(&x3, &z3)
		da.Multiply(&d, &a)
		cb.Multiply(&c, &b)

		x3.Add(&da, &cb)
		x3.Square(&x3)
		z3.Subtract(&da, &cb)
		z3.Square(&z3)
		z3.Multiply(&z3, &x1)
		x2.Multiply(&aa, &bb)
		z2.Mult32(&e, 121665)
		z2.Add(&z2, &aa)
		z2.Multiply(&z2, &e)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)

	// Invert computes z2^(p-2), which maps zero to zero as RFC 7748 specifies.
	z2.Invert(&z2)
	x2.Multiply(&x2, &z2)
	copy(out[:], x2.Bytes())
}
