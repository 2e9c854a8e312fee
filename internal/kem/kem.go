// SPDX-License-Identifier: Apache-2.0

// Package kem provides the ML-KEM-768 (NIST FIPS 203) operations of netauth's hybrid full
// handshake on crypto/mlkem: decapsulation keys made from a 64-byte seed, encapsulation to a
// peer's key with the size check before any parsing, and a pool of pre-generated
// decapsulation keys for clients.
//
// crypto/mlkem keeps a decapsulation key's secret parts (the seed and the expanded secret
// vector) in memory it gives no way to clear. Dropping the last reference is all a caller can
// do; the memory holds them until the garbage collector frees it and the allocator hands it
// out again (docs/SECURITY.md, "Keys and secrets").
package kem

import (
	"crypto/mlkem"
	"errors"
	"fmt"
	"io"
)

// Sizes of ML-KEM-768, as FIPS 203 defines them.
const (
	EncapsulationKeySize = mlkem.EncapsulationKeySize768 // 1184: what the client sends
	CiphertextSize       = mlkem.CiphertextSize768       // 1088: what the server returns
	SharedKeySize        = mlkem.SharedKeySize           // 32: mixed into the chaining key
	SeedSize             = mlkem.SeedSize                // 64: d || z, a decapsulation key's seed
)

// ErrKeySize is returned by ParseEncapsulationKey for a key that is not EncapsulationKeySize
// bytes long; nothing was parsed.
var ErrKeySize = errors.New("kem: ML-KEM-768 encapsulation key of the wrong size")

// ErrMalformedKey is returned by ParseEncapsulationKey for a key of the right size that
// fails FIPS 203's input check (a coefficient that is not reduced modulo q).
var ErrMalformedKey = errors.New("kem: malformed ML-KEM-768 encapsulation key")

// Generate makes a decapsulation key from SeedSize bytes of rand: the seed d || z of FIPS
// 203's ML-KEM.KeyGen_internal. It reads exactly SeedSize bytes, so a fixed random stream
// gives a fixed key (the test vectors derive the client's key this way), and wipes its copy
// of the seed; crypto/mlkem keeps its own (see the package comment).
func Generate(rand io.Reader) (*mlkem.DecapsulationKey768, error) {
	var seed [SeedSize]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("kem: seed: %w", err)
	}
	dk, err := mlkem.NewDecapsulationKey768(seed[:])
	if err != nil {
		return nil, fmt.Errorf("kem: %w", err)
	}
	return dk, nil
}

// ParseEncapsulationKey parses a peer's encapsulation key. It checks the size first, so a key
// of the wrong size costs nothing (ErrKeySize), then runs crypto/mlkem's parser, which does
// FIPS 203's modulus check and expands the key's matrix (ErrMalformedKey if the check fails).
func ParseEncapsulationKey(b []byte) (*mlkem.EncapsulationKey768, error) {
	if len(b) != EncapsulationKeySize {
		return nil, ErrKeySize
	}
	ek, err := mlkem.NewEncapsulationKey768(b)
	if err != nil {
		return nil, ErrMalformedKey
	}
	return ek, nil
}

// Encapsulate is the encapsulation netauth's servers run: (*mlkem.EncapsulationKey768).Encapsulate,
// with randomness from crypto/rand. Its signature is that of the handshake's Encapsulate
// hook, which tests replace with derandomized encapsulation (crypto/mlkem/mlkemtest).
func Encapsulate(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error) {
	sharedKey, ciphertext = ek.Encapsulate()
	return sharedKey, ciphertext, nil
}
