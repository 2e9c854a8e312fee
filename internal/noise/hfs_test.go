// SPDX-License-Identifier: Apache-2.0

package noise

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"ubns.dev/netauth/internal/kem"
)

// hfsReference computes an NNhfs handshake from the specifications alone (Noise revision 34
// §5, noise_hfs_spec revision 1 §4 and §5), with crypto/sha256, crypto/hkdf, AES-GCM,
// crypto/ecdh and crypto/mlkem and none of this package's code. flynn/noise has no hfs, so
// this is NNhfs's independent implementation.
type hfsReference struct {
	t      *testing.T
	h, ck  []byte
	k      []byte // nil: no key
	n      uint64
	msg1   []byte
	msg2   []byte
	k1, k2 []byte
}

func (r *hfsReference) mixHash(data []byte) {
	d := sha256.New()
	d.Write(r.h)
	d.Write(data)
	r.h = d.Sum(nil)
}

func (r *hfsReference) mixKey(ikm []byte) {
	out, err := hkdf.Key(sha256.New, ikm, r.ck, "", 64) // HKDF(ck, ikm, 2) of Noise §4.3
	if err != nil {
		r.t.Fatal(err)
	}
	r.ck, r.k, r.n = out[:32], out[32:], 0
}

func (r *hfsReference) encryptAndHash(plaintext []byte) []byte {
	out := bytes.Clone(plaintext)
	if r.k != nil {
		block, err := aes.NewCipher(r.k)
		if err != nil {
			r.t.Fatal(err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			r.t.Fatal(err)
		}
		nonce := binary.BigEndian.AppendUint64(make([]byte, 4), r.n)
		out = gcm.Seal(nil, nonce, plaintext, r.h)
		r.n++
	}
	r.mixHash(out)
	return out
}

// runHFSReference runs both messages: e_i and e_r are the ephemeral private keys, dkSeed the
// initiator's ML-KEM-768 seed (d || z), encRand the responder's 32 bytes of encapsulation
// randomness, p1 and p2 the payloads.
func runHFSReference(t *testing.T, prologue, eI, eR, dkSeed, encRand, p1, p2 []byte) *hfsReference {
	t.Helper()
	name := sha256.Sum256([]byte("Noise_NNhfs_25519+MLKEM768_AESGCM_SHA256")) // 40 bytes > 32: hashed
	r := &hfsReference{t: t, h: name[:], ck: name[:]}
	r.mixHash(prologue)
	privI, err := ecdh.X25519().NewPrivateKey(eI)
	if err != nil {
		t.Fatal(err)
	}
	privR, err := ecdh.X25519().NewPrivateKey(eR)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := mlkem.NewDecapsulationKey768(dkSeed)
	if err != nil {
		t.Fatal(err)
	}
	// -> e, e1
	r.msg1 = append(r.msg1, privI.PublicKey().Bytes()...)
	r.mixHash(privI.PublicKey().Bytes())
	r.msg1 = append(r.msg1, r.encryptAndHash(dk.EncapsulationKey().Bytes())...)
	r.msg1 = append(r.msg1, r.encryptAndHash(p1)...)
	// <- e, ee, ekem1
	r.msg2 = append(r.msg2, privR.PublicKey().Bytes()...)
	r.mixHash(privR.PublicKey().Bytes())
	ee, err := privR.ECDH(privI.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	r.mixKey(ee)
	shared, ct, err := mlkemtest.Encapsulate768(dk.EncapsulationKey(), encRand)
	if err != nil {
		t.Fatal(err)
	}
	r.msg2 = append(r.msg2, r.encryptAndHash(ct)...)
	r.mixKey(shared)
	r.msg2 = append(r.msg2, r.encryptAndHash(p2)...)
	split, err := hkdf.Key(sha256.New, nil, r.ck, "", 64)
	if err != nil {
		t.Fatal(err)
	}
	r.k1, r.k2 = split[:32], split[32:]
	return r
}

// TestHFSReference runs NNhfs handshakes with random prologues, payloads, ephemeral keys, KEM
// keys and encapsulation randomness through this package and through hfsReference, and checks
// that both messages, the payloads, the handshake hash, the chaining key and the Split keys
// agree.
func TestHFSReference(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 30
	}
	r := deterministic(300)
	for iter := range n {
		k := newPair(t, NNhfs, 1000+uint64(iter))
		switch iter % 3 {
		case 0:
			k.prologue = randomBytes(r, 14)
		case 1:
			k.prologue = randomBytes(r, int(r.Uint64()%200))
		default:
			k.prologue = nil
		}
		p1, p2 := randomPayload(r), randomPayload(r)
		if iter < 2 {
			p1, p2 = nil, nil
		}
		ref := runHFSReference(t, k.prologue, k.ei.PrivateKey().Bytes(), k.er.PrivateKey().Bytes(), k.dk.Bytes(), k.encRand, p1, p2)
		i, res := k.initiator(t), k.responder(t)
		msg1, err := i.WriteMessage1(nil, p1)
		if err != nil || !bytes.Equal(msg1, ref.msg1) {
			t.Fatalf("iteration %d: message 1 differs from the reference: %v", iter, err)
		}
		if got, err := res.ReadMessage1(msg1); err != nil || !bytes.Equal(got, p1) {
			t.Fatalf("iteration %d: ReadMessage1: %v", iter, err)
		}
		msg2, err := res.WriteMessage2(nil, p2)
		if err != nil || !bytes.Equal(msg2, ref.msg2) {
			t.Fatalf("iteration %d: message 2 differs from the reference: %v", iter, err)
		}
		if got, err := i.ReadMessage2(msg2); err != nil || !bytes.Equal(got, p2) {
			t.Fatalf("iteration %d: ReadMessage2: %v", iter, err)
		}
		ki, err := i.Split()
		if err != nil {
			t.Fatal(err)
		}
		kr, err := res.Split()
		if err != nil || ki != kr {
			t.Fatalf("iteration %d: the two sides' keys differ: %v", iter, err)
		}
		if !bytes.Equal(ki.HandshakeHash[:], ref.h) || !bytes.Equal(ki.ChainingKey[:], ref.ck) ||
			!bytes.Equal(ki.K1[:], ref.k1) || !bytes.Equal(ki.K2[:], ref.k2) {
			t.Fatalf("iteration %d: h, ck or the Split keys differ from the reference", iter)
		}
	}
}

// countingEncapsulator counts its calls and encapsulates with k's randomness.
func countingEncapsulator(k *pair, calls *int) Encapsulator {
	return func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		*calls++
		return k.encapsulate(ek)
	}
}

// TestHFSMalformedKey checks that a responder refuses an encapsulation key that is not reduced
// modulo q in ReadMessage1, with ErrKEM wrapping kem.ErrMalformedKey, before any encapsulation,
// and leaves its state wiped.
func TestHFSMalformedKey(t *testing.T) {
	k := newPair(t, NNhfs, 301)
	msg1, _ := k.messages(t)
	for _, at := range []int{0, 100, KEMPublicKeyLen - 34} { // in the first, a middle and the last bytes of the 1152-byte vector t
		bad := bytes.Clone(msg1)
		bad[DHLen+at] = 0xff
		bad[DHLen+at+1] |= 0x0f
		calls := 0
		r, err := NewResponderHFS(k.prologue, &k.er, countingEncapsulator(k, &calls))
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.ReadMessage1(bad)
		if !errors.Is(err, ErrKEM) || !errors.Is(err, kem.ErrMalformedKey) {
			t.Fatalf("byte %d: err = %v, want ErrKEM wrapping kem.ErrMalformedKey", at, err)
		}
		if r.State() != StateFailed || r.hs != (handshakeState{state: StateFailed}) {
			t.Fatalf("byte %d: state not wiped", at)
		}
		if _, err := r.WriteMessage2(nil, nil); !errors.Is(err, ErrState) || calls != 0 {
			t.Fatalf("byte %d: WriteMessage2 after the refusal: err = %v, %d encapsulations", at, err, calls)
		}
	}
	// The honest message: one encapsulation.
	calls := 0
	r, err := NewResponderHFS(k.prologue, &k.er, countingEncapsulator(k, &calls))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMessage1(msg1); err != nil || calls != 0 {
		t.Fatalf("ReadMessage1: %v, %d encapsulations", err, calls)
	}
	if _, err := r.WriteMessage2(nil, nil); err != nil || calls != 1 {
		t.Fatalf("WriteMessage2: %v, %d encapsulations", err, calls)
	}
}

// TestHFSKEMSecretMixed checks that the KEM's shared secret, and not only the X25519 one,
// keys the handshake: with the same ephemeral keys, a responder that mixes another secret
// than the ciphertext's (or encapsulates to another key) makes the initiator refuse message 2.
func TestHFSKEMSecretMixed(t *testing.T) {
	k := newPair(t, NNhfs, 302)
	msg1, _ := k.messages(t)
	other, err := kem.Generate(deterministic(303))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]Encapsulator{
		"another shared secret": func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
			shared, ct, err := k.encapsulate(ek)
			shared[0] ^= 1
			return shared, ct, err
		},
		"another key's ciphertext": func(*mlkem.EncapsulationKey768) ([]byte, []byte, error) {
			return mlkemtest.Encapsulate768(other.EncapsulationKey(), k.encRand)
		},
	}
	for name, enc := range cases {
		r, err := NewResponderHFS(k.prologue, &k.er, enc)
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
		if _, err := k.afterMessage1(t).ReadMessage2(msg2); !errors.Is(err, ErrAuth) {
			t.Fatalf("%s: err = %v, want ErrAuth", name, err)
		}
	}
}

// TestHFSEncapsulatorFailure checks that an encapsulation that fails, or returns outputs of the
// wrong size, fails the handshake with ErrKEM and wipes the state.
func TestHFSEncapsulatorFailure(t *testing.T) {
	k := newPair(t, NNhfs, 304)
	msg1, _ := k.messages(t)
	for name, enc := range map[string]Encapsulator{
		"error": func(*mlkem.EncapsulationKey768) ([]byte, []byte, error) { return nil, nil, errors.New("no") },
		"short secret": func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
			s, c, err := k.encapsulate(ek)
			return s[:31], c, err
		},
		"long ciphertext": func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
			s, c, err := k.encapsulate(ek)
			return s, append(c, 0), err
		},
	} {
		r, err := NewResponderHFS(k.prologue, &k.er, enc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadMessage1(msg1); err != nil {
			t.Fatal(err)
		}
		if _, err := r.WriteMessage2(nil, nil); !errors.Is(err, ErrKEM) || r.hs != (handshakeState{state: StateFailed}) {
			t.Fatalf("%s: err = %v, want ErrKEM and a wiped state", name, err)
		}
	}
}

// TestHFSSharedEphemeral checks the property docs/PROTOCOL.md §4 relies on: a client that
// starts NNhfs and NNpsk0 with one ephemeral key and one prologue, and sends the NNhfs message
// 1 followed by the 16-byte tag of its NNpsk0 message 1 (e || ek || tag), lets the server
// take either: NNpsk0 on the first 32 and the last 16 bytes, or NNhfs on the first 1216; and
// each of the client's states accepts only the message 2 of its own pattern.
func TestHFSSharedEphemeral(t *testing.T) {
	r := deterministic(305)
	for iter := range 10 {
		k := newPair(t, NNhfs, 2000+uint64(iter))
		k.prologue = randomBytes(r, 14)
		psk := randomBytes(r, KeyLen)
		hfs := k.initiator(t)
		pk, err := NewInitiator(NNpsk0, k.prologue, &k.ei, psk)
		if err != nil {
			t.Fatal(err)
		}
		m1hfs, err := hfs.WriteMessage1(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		m1psk, err := pk.WriteMessage1(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m1psk[:DHLen], m1hfs[:DHLen]) {
			t.Fatal("the two messages 1 start with different ephemeral keys")
		}
		wire := append(bytes.Clone(m1hfs), m1psk[DHLen:]...)
		if len(wire) != NNhfsMessage1Size+TagLen {
			t.Fatalf("resume-mode Noise message is %d bytes", len(wire))
		}
		// The server resumes: NNpsk0 on e || tag.
		er := k.er
		srv, err := NewResponder(NNpsk0, k.prologue, &er, psk)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.ReadMessage1(append(bytes.Clone(wire[:DHLen]), wire[NNhfsMessage1Size:]...)); err != nil {
			t.Fatalf("NNpsk0 on the resume-mode message: %v", err)
		}
		m2psk, err := srv.WriteMessage2(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The server falls back: NNhfs on the first 1216 bytes.
		fb := k.responder(t)
		if _, err := fb.ReadMessage1(wire[:NNhfsMessage1Size]); err != nil {
			t.Fatalf("NNhfs on the resume-mode message: %v", err)
		}
		m2hfs, err := fb.WriteMessage2(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pk.ReadMessage2(m2hfs); !errors.Is(err, ErrAuth) {
			t.Fatalf("NNpsk0 state read an NNhfs message 2: err = %v, want ErrAuth", err)
		}
		if _, err := k.afterMessage1(t).ReadMessage2(m2psk); !errors.Is(err, ErrMessageSize) {
			t.Fatalf("NNhfs state read an NNpsk0 message 2: err = %v, want ErrMessageSize", err)
		}
		if _, err := hfs.ReadMessage2(m2hfs); err != nil {
			t.Fatalf("NNhfs state: %v", err)
		}
		kc, _ := hfs.Split()
		ks, _ := fb.Split()
		if kc != ks {
			t.Fatal("client and server keys differ after the fallback")
		}
	}
}
