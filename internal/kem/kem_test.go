// SPDX-License-Identifier: Apache-2.0

package kem

import (
	"bytes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"
)

// Malformed returns a copy of ek whose first coefficient is 4095, not reduced modulo
// q = 3329: the right size, refused by FIPS 203's modulus check.
func malformed(ek []byte) []byte {
	b := bytes.Clone(ek)
	b[0] = 0xff
	b[1] |= 0x0f
	return b
}

func seed(label string) []byte {
	a, b := sha256.Sum256([]byte(label+" d")), sha256.Sum256([]byte(label+" z"))
	return append(a[:], b[:]...)
}

// TestGenerateFromSeed checks that Generate reads exactly SeedSize bytes and makes the key
// crypto/mlkem makes from them.
func TestGenerateFromSeed(t *testing.T) {
	s := seed("generate")
	r := bytes.NewReader(append(bytes.Clone(s), 0xaa))
	dk, err := Generate(r)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 1 {
		t.Fatalf("Generate read %d bytes, want %d", len(s)+1-r.Len(), SeedSize)
	}
	want, err := mlkem.NewDecapsulationKey768(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dk.Bytes(), s) || !bytes.Equal(dk.EncapsulationKey().Bytes(), want.EncapsulationKey().Bytes()) {
		t.Fatal("Generate's key is not crypto/mlkem's key of the seed")
	}
	if _, err := Generate(bytes.NewReader(s[:SeedSize-1])); err == nil {
		t.Fatal("Generate accepted a short random stream")
	}
}

// TestSizes checks the constants against FIPS 203's ML-KEM-768 and docs/PROTOCOL.md §3.1, §3.2.
func TestSizes(t *testing.T) {
	dk, err := Generate(bytes.NewReader(seed("sizes")))
	if err != nil {
		t.Fatal(err)
	}
	shared, ct := dk.EncapsulationKey().Encapsulate()
	if len(dk.EncapsulationKey().Bytes()) != EncapsulationKeySize || len(ct) != CiphertextSize || len(shared) != SharedKeySize {
		t.Fatal("sizes differ from crypto/mlkem's")
	}
	if EncapsulationKeySize != 1184 || CiphertextSize != 1088 || SharedKeySize != 32 || SeedSize != 64 {
		t.Fatal("sizes differ from docs/PROTOCOL.md")
	}
}

// TestParseEncapsulationKey checks the order of the checks: a key of the wrong size is refused
// by its length (ErrKeySize), a key of the right size that is not reduced modulo q by the
// parser (ErrMalformedKey), and a good key round-trips through encapsulation.
func TestParseEncapsulationKey(t *testing.T) {
	dk, err := Generate(bytes.NewReader(seed("parse")))
	if err != nil {
		t.Fatal(err)
	}
	good := dk.EncapsulationKey().Bytes()
	for _, n := range []int{0, 1, EncapsulationKeySize - 1, EncapsulationKeySize + 1, 2 * EncapsulationKeySize} {
		b := make([]byte, n)
		copy(b, good)
		if _, err := ParseEncapsulationKey(b); !errors.Is(err, ErrKeySize) {
			t.Fatalf("%d-byte key: err = %v, want ErrKeySize", n, err)
		}
	}
	if _, err := ParseEncapsulationKey(malformed(good)); !errors.Is(err, ErrMalformedKey) {
		t.Fatalf("unreduced coefficient: err = %v, want ErrMalformedKey", err)
	}
	// The last coefficient too: bytes 1150-1151 hold the top 12 bits of the last 3 bytes.
	b := bytes.Clone(good)
	b[1151] = 0xff
	b[1150] |= 0xf0
	if _, err := ParseEncapsulationKey(b); !errors.Is(err, ErrMalformedKey) {
		t.Fatalf("unreduced last coefficient: err = %v, want ErrMalformedKey", err)
	}
	ek, err := ParseEncapsulationKey(good)
	if err != nil {
		t.Fatal(err)
	}
	shared, ct, err := Encapsulate(ek)
	if err != nil {
		t.Fatal(err)
	}
	got, err := dk.Decapsulate(ct)
	if err != nil || !bytes.Equal(got, shared) {
		t.Fatalf("decapsulated %x, %v; want %x", got, err, shared)
	}
	// Derandomized encapsulation (the test vectors') gives the same kind of ciphertext.
	shared2, ct2, err := mlkemtest.Encapsulate768(ek, seed("m")[:32])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dk.Decapsulate(ct2); err != nil || !bytes.Equal(got, shared2) {
		t.Fatal("derandomized encapsulation does not decapsulate")
	}
}

// waitFull waits until p holds p.q.Cap() keys.
func waitFull(t testing.TB, p *Pool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for p.q.Len() < p.q.Cap() {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d of %d keys after 20s", p.q.Len(), p.q.Cap())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPoolDistinct checks that Get returns working, distinct keys, from the pool and, once it
// is drained, generated inline.
func TestPoolDistinct(t *testing.T) {
	const size = 8
	p := NewPool(size)
	defer p.Close()
	waitFull(t, p)
	seen := map[string]bool{}
	for i := range 3 * size {
		dk, err := p.Get()
		if err != nil {
			t.Fatal(err)
		}
		ek := string(dk.EncapsulationKey().Bytes())
		if seen[ek] {
			t.Fatalf("Get %d returned a key already handed out", i)
		}
		seen[ek] = true
		shared, ct := dk.EncapsulationKey().Encapsulate()
		if got, err := dk.Decapsulate(ct); err != nil || !bytes.Equal(got, shared) {
			t.Fatal("a pool key does not decapsulate")
		}
	}
}

// TestPoolConcurrent checks that concurrent Get calls racing with Close never hand out one
// key twice. Run it with -race.
func TestPoolConcurrent(t *testing.T) {
	p := NewPool(4)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				dk, err := p.Get()
				if err != nil {
					t.Error(err)
					return
				}
				ek := string(dk.EncapsulationKey().Bytes())
				mu.Lock()
				if seen[ek] {
					t.Error("a key was handed out twice")
				}
				seen[ek] = true
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Millisecond)
	p.Close()
	wg.Wait()
}

// TestPoolClosedAndNil checks that Get keeps working after Close, on a pool of size 0 and on
// a nil pool, and that Close may be called twice.
func TestPoolClosedAndNil(t *testing.T) {
	p := NewPool(2)
	p.Close()
	p.Close()
	if p.q.Len() != 0 {
		t.Fatal("Close left keys in the pool")
	}
	var nilPool *Pool
	for _, q := range []*Pool{p, NewPool(0), nilPool} {
		if dk, err := q.Get(); err != nil || dk == nil {
			t.Fatalf("Get: %v", err)
		}
		q.Close()
	}
}

// TestModulusBoundary checks the modulus check at its edge: coefficients of q - 1 = 3328
// pass, q = 3329 fails.
func TestModulusBoundary(t *testing.T) {
	rho := make([]byte, 32)
	for _, c := range []struct {
		triple []byte // two 12-bit coefficients, little-endian
		ok     bool
	}{{[]byte{0x00, 0x0d, 0xd0}, true}, {[]byte{0x01, 0x1d, 0xd0}, false}} { // 3328, 3328 / 3329, 3329
		b := append(bytes.Repeat(c.triple, 384), rho...)
		if _, err := ParseEncapsulationKey(b); (err == nil) != c.ok {
			t.Fatalf("coefficients %x: err = %v", c.triple, err)
		}
	}
}
