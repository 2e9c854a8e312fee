// SPDX-License-Identifier: Apache-2.0

package kem

import (
	"bytes"
	"crypto/mlkem"
	"errors"
	"testing"
)

// FuzzParseEncapsulationKey feeds arbitrary bytes to ParseEncapsulationKey: it must not panic,
// must refuse every input of the wrong size with ErrKeySize, and must accept exactly the inputs
// of the right size that crypto/mlkem's own parser accepts (the FIPS 203 modulus check); an
// accepted key encodes back to the same bytes, and encapsulating to it works.
func FuzzParseEncapsulationKey(f *testing.F) {
	dk, err := Generate(bytes.NewReader(seed("fuzz")))
	if err != nil {
		f.Fatal(err)
	}
	good := dk.EncapsulationKey().Bytes()
	f.Add(good)
	f.Add(malformed(good))
	f.Add(good[:EncapsulationKeySize-1])
	f.Add(append(bytes.Clone(good), 0))
	f.Add(make([]byte, EncapsulationKeySize))                                  // all zero: a valid key
	f.Add(bytes.Repeat([]byte{0xff}, EncapsulationKeySize))                    // every coefficient 4095
	f.Add(append(bytes.Repeat([]byte{0x01, 0x1d, 0xd0}, 384), good[1152:]...)) // coefficients 3329 = q
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ek, err := ParseEncapsulationKey(b)
		if len(b) != EncapsulationKeySize {
			if !errors.Is(err, ErrKeySize) || ek != nil {
				t.Fatalf("%d-byte key: %v", len(b), err)
			}
			return
		}
		_, want := mlkem.NewEncapsulationKey768(b)
		if (err == nil) != (want == nil) {
			t.Fatalf("ParseEncapsulationKey: %v, crypto/mlkem: %v", err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("err = %v, want ErrMalformedKey", err)
			}
			return
		}
		if !bytes.Equal(ek.Bytes(), b) {
			t.Fatal("an accepted key does not encode back to its bytes")
		}
		if shared, ct, err := Encapsulate(ek); err != nil || len(shared) != SharedKeySize || len(ct) != CiphertextSize {
			t.Fatalf("encapsulation: %v", err)
		}
	})
}
