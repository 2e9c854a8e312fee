// SPDX-License-Identifier: Apache-2.0

package kem

import (
	"crypto/mlkem"
	"crypto/rand"
	"testing"
)

// The ML-KEM-768 operations of one hybrid handshake, for docs/BENCHMARKS.md's floor rows:
//
//	go test -run '^$' -bench . -benchmem ./internal/kem
//
// The client generates a key (Generate, or GenerateKey768 in the pool) and decapsulates; the
// server parses the client's key and encapsulates (ParseAndEncapsulate).

// BenchmarkGenerate measures key generation from 64 bytes of crypto/rand.
func BenchmarkGenerate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(rand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGenerateKey768 measures crypto/mlkem's own key generation, which the pool runs.
func BenchmarkGenerateKey768(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mlkem.GenerateKey768(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse measures parsing an encapsulation key: the modulus check and the expansion
// of its matrix.
func BenchmarkParse(b *testing.B) {
	dk, _ := mlkem.GenerateKey768()
	ek := dk.EncapsulationKey().Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseEncapsulationKey(ek); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncapsulate measures encapsulation to a parsed key.
func BenchmarkEncapsulate(b *testing.B) {
	dk, _ := mlkem.GenerateKey768()
	ek := dk.EncapsulationKey()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Encapsulate(ek); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseAndEncapsulate measures the server's whole ML-KEM work in a full handshake.
func BenchmarkParseAndEncapsulate(b *testing.B) {
	dk, _ := mlkem.GenerateKey768()
	ekb := dk.EncapsulationKey().Bytes()
	b.ReportAllocs()
	for b.Loop() {
		ek, err := ParseEncapsulationKey(ekb)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := Encapsulate(ek); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecapsulate measures decapsulation (with FIPS 203's re-encryption check).
func BenchmarkDecapsulate(b *testing.B) {
	dk, _ := mlkem.GenerateKey768()
	_, ct := dk.EncapsulationKey().Encapsulate()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dk.Decapsulate(ct); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncapsulationKeyBytes measures encoding the client's key for the ClientHello.
func BenchmarkEncapsulationKeyBytes(b *testing.B) {
	dk, _ := mlkem.GenerateKey768()
	b.ReportAllocs()
	for b.Loop() {
		_ = dk.EncapsulationKey().Bytes()
	}
}
