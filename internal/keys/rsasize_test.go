// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// fakeRSAKey returns an RSA public key with a random odd modulus of exactly bits bits: enough
// to parse and to cost a verification, without generating primes.
func fakeRSAKey(t *testing.T, bits int) ssh.PublicKey {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), uint(bits-1)))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, bits-1, 1)
	n.SetBit(n, 0, 1)
	pub, err := ssh.NewPublicKey(&rsa.PublicKey{N: n, E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestRSAKeySizeCap checks that ParseSSHSIG refuses RSA keys above MaxRSABits before any
// signature work (a 16384-bit key with a garbage signature costs milliseconds to verify), and
// keeps accepting keys up to the cap.
func TestRSAKeySizeCap(t *testing.T) {
	for _, tc := range []struct {
		bits int
		ok   bool
	}{{2048, true}, {MaxRSABits, true}, {MaxRSABits + 1, false}, {16384, false}} {
		pub := fakeRSAKey(t, tc.bits)
		blob := Assemble(pub, testNamespace, &ssh.Signature{Format: ssh.KeyAlgoRSASHA512, Blob: make([]byte, tc.bits/8)})
		s, err := ParseSSHSIG(blob, testNamespace)
		if tc.ok {
			if err != nil {
				t.Errorf("%d-bit key: %v", tc.bits, err)
				continue
			}
			if err := s.Verify([]byte("message")); err == nil {
				t.Errorf("%d-bit key: a garbage signature verified", tc.bits)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "bits") {
			t.Errorf("%d-bit key: %v, want a refusal naming the size", tc.bits, err)
		}
		if _, err := Verify(blob, testNamespace, []byte("message")); err == nil || !strings.Contains(err.Error(), "bits") {
			t.Errorf("%d-bit key: Verify said %v, want the size refusal", tc.bits, err)
		}
	}
}
