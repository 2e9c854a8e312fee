// SPDX-License-Identifier: Apache-2.0

// Package x25519 provides the X25519 operations of netauth's handshakes on crypto/ecdh:
// ephemeral key pairs, Diffie-Hellman with the low-order check Noise needs, and a pool of
// pre-generated ephemeral keys.
package x25519

import (
	"crypto/ecdh"
	"fmt"
	"io"
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

// ErrNoKey is returned by DH for a key pair without a private key: the zero
// KeyPair, or one wiped by Zero.
const ErrNoKey = Error("x25519: key pair has no private key")

// KeyPair is an ephemeral X25519 key pair.
//
// The private key is parsed once, when the pair is made, into a crypto/ecdh key that
// keeps its public key: DH then costs one scalar multiplication. (Parsing the key for
// every DH, as a function of raw bytes must, recomputes the public key and doubles the
// cost.) crypto/ecdh keeps its copy of the private scalar in memory it does not let a
// caller wipe; Zero drops the reference, and the scalar stays in memory until the
// garbage collector frees it and the memory is allocated again (docs/SECURITY.md, "Keys
// and secrets").
//
// A KeyPair may be copied; the copies share the immutable private key.
type KeyPair struct {
	// Public is the public key, the Montgomery u-coordinate sent as Noise's "e". It is
	// the public key of the private key unless a caller overwrites it (tests do, to send
	// a low-order key).
	Public [Size]byte
	priv   *ecdh.PrivateKey
}

// Generate makes a key pair from 32 bytes of rand. It reads exactly 32 bytes,
// as noise.DH25519 does, so that a fixed random stream gives fixed keys (the test
// vectors derive their ephemeral keys this way). The private key is the
// clamped form of those bytes; X25519 clamps its scalar anyway, so both forms
// give the same public key and the same shared secrets.
//
// crypto/ecdh's GenerateKey is not used: since Go 1.26 it ignores a random
// reader other than crypto/rand's.
func Generate(rand io.Reader) (KeyPair, error) {
	var seed [Size]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return KeyPair{}, err
	}
	return fromSeed(&seed)
}

// fromSeed makes the key pair of 32 secret bytes, clamping seed in place (the
// caller wipes it). crypto/ecdh copies the bytes and computes the public key, a
// scalar multiplication of the base point. The bytes are clamped first so that
// PrivateKey().Bytes() is the scalar X25519 uses, the private key the test
// vectors list.
func fromSeed(seed *[Size]byte) (KeyPair, error) {
	clamp(seed)
	priv, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		// Only when the process forbids X25519 (GODEBUG=fips140=only).
		return KeyPair{}, fmt.Errorf("x25519: %w", err)
	}
	return KeyPair{Public: [Size]byte(priv.PublicKey().Bytes()), priv: priv}, nil
}

// clamp applies the RFC 7748 §5 scalar decoding to k in place.
func clamp(k *[Size]byte) {
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64
}

// PrivateKey returns the private key, nil for the zero KeyPair or after Zero.
// Its Bytes are the clamped scalar.
func (k *KeyPair) PrivateKey() *ecdh.PrivateKey { return k.priv }

// DH returns X25519(k's private key, peer), computed by crypto/ecdh's ECDH. As
// RFC 7748 §5 specifies, the most significant bit of peer is ignored and
// non-canonical encodings are accepted. A low-order peer key, which makes the
// shared secret all zero, is ErrLowOrder. The caller wipes the result.
func (k *KeyPair) DH(peer [Size]byte) ([Size]byte, error) {
	var out [Size]byte
	if k.priv == nil {
		return out, ErrNoKey
	}
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return out, fmt.Errorf("x25519: peer key: %w", err)
	}
	shared, err := k.priv.ECDH(pub)
	if err != nil {
		// For two X25519 keys, ECDH fails only when the shared secret is all zero.
		return out, ErrLowOrder
	}
	copy(out[:], shared)
	clear(shared)
	return out, nil
}

// Zero clears the public key and drops the reference to the private key, which
// crypto/ecdh does not let us wipe (see KeyPair). DH on a zeroed key pair is
// ErrNoKey.
func (k *KeyPair) Zero() { *k = KeyPair{} }
