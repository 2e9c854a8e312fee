// SPDX-License-Identifier: Apache-2.0

package noise

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	mathrand "math/rand/v2"
	"testing"

	flynn "github.com/flynn/noise"
	"ubns.dev/netauth/internal/x25519"
)

// fixedDH is a flynn.DHFunc whose key generation returns one ephemeral key chosen in advance,
// as internal/handshake does, so that flynn/noise and this package run on the same keys.
type fixedDH struct{ kp *x25519.KeyPair }

func (f fixedDH) GenerateKeypair(io.Reader) (flynn.DHKey, error) {
	return flynn.DHKey{Private: f.kp.PrivateKey().Bytes(), Public: bytes.Clone(f.kp.Public[:])}, nil
}

// DH computes with the key pair itself (the only private key flynn/noise gets from
// GenerateKeypair), so that both implementations run the same X25519 code.
func (f fixedDH) DH(priv, pub []byte) ([]byte, error) {
	if !bytes.Equal(priv, f.kp.PrivateKey().Bytes()) || len(pub) != DHLen {
		return nil, errors.New("not the fixed key pair, or a bad X25519 key length")
	}
	out, err := f.kp.DH([DHLen]byte(pub))
	if err != nil {
		return nil, err
	}
	return out[:], nil
}

func (fixedDH) DHLen() int     { return DHLen }
func (fixedDH) DHName() string { return "25519" }

// newFlynn starts flynn/noise's state for pattern p, configured as internal/handshake does.
func newFlynn(tb testing.TB, p Pattern, initiator bool, prologue []byte, e *x25519.KeyPair, psk []byte) *flynn.HandshakeState {
	tb.Helper()
	cfg := flynn.Config{
		CipherSuite: flynn.NewCipherSuite(fixedDH{e}, flynn.CipherAESGCM, flynn.HashSHA256),
		Pattern:     flynn.HandshakeNN,
		Initiator:   initiator,
		Prologue:    prologue,
	}
	if p == NNpsk0 {
		cfg.PresharedKey = psk
		cfg.PresharedKeyPlacement = 0
	}
	hs, err := flynn.NewHandshakeState(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return hs
}

// deterministic returns a reproducible random stream.
func deterministic(seed uint64) *mathrand.ChaCha8 {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return mathrand.NewChaCha8(s)
}

// randomBytes returns n bytes from r.
func randomBytes(r *mathrand.ChaCha8, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

// randomPayload returns an empty payload a third of the time (netauth's case), else up to
// 300 random bytes.
func randomPayload(r *mathrand.ChaCha8) []byte {
	if r.Uint64()%3 == 0 {
		return nil
	}
	return randomBytes(r, int(r.Uint64()%301))
}

// generate returns a key pair drawn from r.
func generate(tb testing.TB, r io.Reader) x25519.KeyPair {
	tb.Helper()
	kp, err := x25519.Generate(r)
	if err != nil {
		tb.Fatal(err)
	}
	return kp
}

// TestOracle runs NN and NNpsk0 handshakes with random prologues, payloads, ephemeral keys and
// pre-shared keys through this package and through flynn/noise, and checks that every message,
// every decrypted payload, the handshake hash and both Split keys agree, and that the chaining
// key is the one Split derived the keys from (checked with crypto/hkdf).
func TestOracle(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	for _, p := range flynnPatterns {
		t.Run(p.String(), func(t *testing.T) {
			r := deterministic(uint64(p))
			for iter := range n {
				var prologue []byte
				switch iter % 3 {
				case 0: // netauth's full-mode prologue shape: 14 bytes
					prologue = randomBytes(r, 14)
				case 1:
					prologue = randomBytes(r, int(r.Uint64()%200))
				}
				var psk []byte
				if p == NNpsk0 {
					psk = randomBytes(r, KeyLen)
				}
				ei, er := generate(t, r), generate(t, r)
				p1, p2 := randomPayload(r), randomPayload(r)
				if iter < 2 {
					p1, p2 = nil, nil
				}
				oracleOnce(t, p, prologue, &ei, &er, psk, p1, p2)
			}
		})
	}
}

// oracleOnce runs one handshake on both implementations and compares them.
func oracleOnce(t *testing.T, p Pattern, prologue []byte, ei, er *x25519.KeyPair, psk, p1, p2 []byte) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%v, prologue %x, payloads %d/%d bytes: "+format,
			append([]any{p, prologue, len(p1), len(p2)}, args...)...)
	}
	ini, err := NewInitiator(p, prologue, ei, psk)
	if err != nil {
		fail("NewInitiator: %v", err)
	}
	res, err := NewResponder(p, prologue, er, psk)
	if err != nil {
		fail("NewResponder: %v", err)
	}
	fi := newFlynn(t, p, true, prologue, ei, psk)
	fr := newFlynn(t, p, false, prologue, er, psk)

	// Message 1.
	msg1, err := ini.WriteMessage1(nil, p1)
	if err != nil {
		fail("WriteMessage1: %v", err)
	}
	want1, _, _, err := fi.WriteMessage(nil, p1)
	if err != nil {
		fail("flynn WriteMessage 1: %v", err)
	}
	if !bytes.Equal(msg1, want1) {
		fail("message 1\n got %x\nwant %x", msg1, want1)
	}
	if len(msg1) != p.messageSize(1)+len(p1) {
		fail("message 1 is %d bytes, want %d", len(msg1), p.messageSize(1)+len(p1))
	}
	got1, err := res.ReadMessage1(msg1)
	if err != nil {
		fail("ReadMessage1: %v", err)
	}
	flynn1, _, _, err := fr.ReadMessage(nil, msg1)
	if err != nil {
		fail("flynn ReadMessage 1: %v", err)
	}
	if !bytes.Equal(got1, p1) || !bytes.Equal(flynn1, p1) {
		fail("payload 1: got %x, flynn %x, want %x", got1, flynn1, p1)
	}

	// Message 2.
	msg2, err := res.WriteMessage2(nil, p2)
	if err != nil {
		fail("WriteMessage2: %v", err)
	}
	want2, fr1, fr2, err := fr.WriteMessage(nil, p2)
	if err != nil || fr1 == nil {
		fail("flynn WriteMessage 2: %v", err)
	}
	if !bytes.Equal(msg2, want2) {
		fail("message 2\n got %x\nwant %x", msg2, want2)
	}
	if len(msg2) != p.messageSize(2)+len(p2) {
		fail("message 2 is %d bytes, want %d", len(msg2), p.messageSize(2)+len(p2))
	}
	got2, err := ini.ReadMessage2(msg2)
	if err != nil {
		fail("ReadMessage2: %v", err)
	}
	flynn2, fi1, fi2, err := fi.ReadMessage(nil, msg2)
	if err != nil || fi1 == nil {
		fail("flynn ReadMessage 2: %v", err)
	}
	if !bytes.Equal(got2, p2) || !bytes.Equal(flynn2, p2) {
		fail("payload 2: got %x, flynn %x, want %x", got2, flynn2, p2)
	}

	// Split, handshake hash, chaining key.
	ki, err := ini.Split()
	if err != nil {
		fail("initiator Split: %v", err)
	}
	kr, err := res.Split()
	if err != nil {
		fail("responder Split: %v", err)
	}
	if ki != kr {
		fail("initiator and responder disagree:\n%+v\n%+v", ki, kr)
	}
	if ki.K1 != fi1.UnsafeKey() || ki.K1 != fr1.UnsafeKey() {
		fail("k1 %x, flynn %x / %x", ki.K1, fi1.UnsafeKey(), fr1.UnsafeKey())
	}
	if ki.K2 != fi2.UnsafeKey() || ki.K2 != fr2.UnsafeKey() {
		fail("k2 %x, flynn %x / %x", ki.K2, fi2.UnsafeKey(), fr2.UnsafeKey())
	}
	if ki.K1 == ki.K2 {
		fail("k1 == k2")
	}
	if !bytes.Equal(ki.HandshakeHash[:], fi.ChannelBinding()) || !bytes.Equal(ki.HandshakeHash[:], fr.ChannelBinding()) {
		fail("handshake hash %x, flynn %x", ki.HandshakeHash, fi.ChannelBinding())
	}
	// Split is HKDF(ck, "", 2), which is RFC 5869 HKDF with salt ck, empty input and info.
	split, err := hkdf.Key(sha256.New, nil, ki.ChainingKey[:], "", 2*KeyLen)
	if err != nil {
		fail("hkdf: %v", err)
	}
	if !bytes.Equal(split[:KeyLen], ki.K1[:]) || !bytes.Equal(split[KeyLen:], ki.K2[:]) {
		fail("chaining key %x does not derive the Split keys", ki.ChainingKey)
	}
}

// TestOracleSharedEphemeral checks the property docs/PROTOCOL.md §4 relies on: a client that
// starts NN and NNpsk0 with one ephemeral key and one prologue sends an NNpsk0 message 1 whose
// first 32 bytes are its NN message 1, so a server that falls back to NN on those 32 bytes
// completes with the client's NN state (and not with its NNpsk0 state), as with flynn/noise.
func TestOracleSharedEphemeral(t *testing.T) {
	r := deterministic(99)
	for range 20 {
		prologue := randomBytes(r, 14)
		psk := randomBytes(r, KeyLen)
		ec, es := generate(t, r), generate(t, r)
		nn, err := NewInitiator(NN, prologue, &ec, nil)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := NewInitiator(NNpsk0, prologue, &ec, psk)
		if err != nil {
			t.Fatal(err)
		}
		m1nn, err := nn.WriteMessage1(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		m1psk, err := pk.WriteMessage1(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(m1psk) != NNpsk0Message1Size || !bytes.Equal(m1psk[:NNMessage1Size], m1nn) {
			t.Fatalf("NNpsk0 message 1 %x does not start with NN message 1 %x", m1psk, m1nn)
		}
		// The server falls back: NN on the first 32 bytes.
		srv, err := NewResponder(NN, prologue, &es, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.ReadMessage1(m1psk[:NNMessage1Size]); err != nil {
			t.Fatal(err)
		}
		m2, err := srv.WriteMessage2(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(m2) != NNMessage2Size {
			t.Fatalf("message 2 is %d bytes", len(m2))
		}
		if _, err := pk.ReadMessage2(m2); !errors.Is(err, ErrAuth) {
			t.Fatalf("NNpsk0 state read an NN message 2: err = %v, want ErrAuth", err)
		}
		if _, err := nn.ReadMessage2(m2); err != nil {
			t.Fatalf("NN state: %v", err)
		}
		kc, _ := nn.Split()
		ks, _ := srv.Split()
		if kc != ks {
			t.Fatal("client and server keys differ after the fallback")
		}
	}
}

// cacophony holds the NN and NNpsk0 vectors for 25519_AESGCM_SHA256 from cacophony's
// vectors/cacophony.txt (github.com/haskell-cryptography/cacophony, public domain), an
// implementation independent of flynn/noise. Messages 0 and 1 are the handshake; 2 to 5 are
// transport messages, alternately initiator to responder (k1) and back (k2), nonces from 0,
// empty associated data.
var cacophony = []struct {
	pattern                Pattern
	prologue, psk          string
	initEphemeral, respEph string
	handshakeHash          string
	payloads, ciphertexts  [6]string
}{
	{
		pattern:       NN,
		prologue:      "4a6f686e2047616c74",
		initEphemeral: "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
		respEph:       "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
		handshakeHash: "6301958d25cd7d1ffe6ad7d0ca2ad284b4e478d9acd9198f7750432d225043d0",
		payloads: [6]string{"4c756477696720766f6e204d69736573", "4d757272617920526f746862617264",
			"462e20412e20486179656b", "4361726c204d656e676572",
			"4a65616e2d426170746973746520536179", "457567656e2042f6686d20766f6e2042617765726b"},
		ciphertexts: [6]string{
			"ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573",
			"95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843934ff73eebb9d930ebf62b8e4db8133ca936872b5551efd7c9989c646d8cf0",
			"8d372b94914e80018211a344b8b1c5a2869492a0db46990c0362f3",
			"e183b0abd55550f9955fb05476d988c6f27628d7bbde111c39ccbc",
			"167293a79ad6a647114c4f4eb55bdf713a0d44ae48765c07fc4e57743100825021",
			"2b67a18ae246069c51687bee89141041d9d35a821f852975d169a4f80f75c735807a1fd157",
		},
	},
	{
		pattern:       NNpsk0,
		prologue:      "4a6f686e2047616c74",
		psk:           "54686973206973206d7920417573747269616e20706572737065637469766521",
		initEphemeral: "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
		respEph:       "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
		handshakeHash: "9f3b1f9afd7767767b5b9d1069844a6154fdbdcc36dfb3e31c0fffc5c973d530",
		payloads: [6]string{"4c756477696720766f6e204d69736573", "4d757272617920526f746862617264",
			"462e20412e20486179656b", "4361726c204d656e676572",
			"4a65616e2d426170746973746520536179", "457567656e2042f6686d20766f6e2042617765726b"},
		ciphertexts: [6]string{
			"ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79447c37a89fc17813788d30df2d59501d6066f5f8aecc3406bbd9829f2d24a531b1",
			"95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088432f29d79368ef9de4e1ae7a362fb05bf0ad668e026bf5714554497b3a720461",
			"7c01e898a6201f36aecee532e29cd0b7f8ffa29d3366ad0dce39a6",
			"a9ff535aace3db6a1da1a7fb00fe2de2622bb373abad9fb42c00e0",
			"6cfc49a3e65472edc2d0152abe5ce950170a8a47c959f30bd48b5f0aacf29adbfd",
			"9bc86e6d974ed21ba04604a94aa68de21677eb409ead070c0cd569b069ee19ba142aa4c1a9",
		},
	},
}

// TestCacophonyVectors reproduces the Noise test vectors of an independent implementation:
// both handshake messages, the handshake hash, and transport messages under the Split keys.
func TestCacophonyVectors(t *testing.T) {
	for _, v := range cacophony {
		t.Run(v.pattern.String(), func(t *testing.T) {
			hx := func(s string) []byte {
				b, err := hex.DecodeString(s)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			ei := generate(t, bytes.NewReader(hx(v.initEphemeral)))
			er := generate(t, bytes.NewReader(hx(v.respEph)))
			var psk []byte
			if v.psk != "" {
				psk = hx(v.psk)
			}
			ini, err := NewInitiator(v.pattern, hx(v.prologue), &ei, psk)
			if err != nil {
				t.Fatal(err)
			}
			res, err := NewResponder(v.pattern, hx(v.prologue), &er, psk)
			if err != nil {
				t.Fatal(err)
			}
			msg1, err := ini.WriteMessage1(nil, hx(v.payloads[0]))
			if err != nil || !bytes.Equal(msg1, hx(v.ciphertexts[0])) {
				t.Fatalf("message 1 = %x, %v\nwant %s", msg1, err, v.ciphertexts[0])
			}
			if p, err := res.ReadMessage1(msg1); err != nil || !bytes.Equal(p, hx(v.payloads[0])) {
				t.Fatalf("ReadMessage1 = %x, %v", p, err)
			}
			msg2, err := res.WriteMessage2(nil, hx(v.payloads[1]))
			if err != nil || !bytes.Equal(msg2, hx(v.ciphertexts[1])) {
				t.Fatalf("message 2 = %x, %v\nwant %s", msg2, err, v.ciphertexts[1])
			}
			if p, err := ini.ReadMessage2(msg2); err != nil || !bytes.Equal(p, hx(v.payloads[1])) {
				t.Fatalf("ReadMessage2 = %x, %v", p, err)
			}
			ki, err := ini.Split()
			if err != nil {
				t.Fatal(err)
			}
			kr, err := res.Split()
			if err != nil || kr != ki {
				t.Fatalf("responder Split differs: %v", err)
			}
			if hex.EncodeToString(ki.HandshakeHash[:]) != v.handshakeHash {
				t.Fatalf("handshake hash %x, want %s", ki.HandshakeHash, v.handshakeHash)
			}
			// Transport messages, as a Noise CipherState sends them: nonce n, empty ad.
			var c1, c2 cipherState
			c1.initializeKey(&ki.K1)
			c2.initializeKey(&ki.K2)
			for m := 2; m < 6; m++ {
				c := &c1
				if m%2 == 1 {
					c = &c2
				}
				ct, err := c.encryptWithAd(nil, nil, hx(v.payloads[m]))
				if err != nil || !bytes.Equal(ct, hx(v.ciphertexts[m])) {
					t.Fatalf("transport message %d = %x, %v\nwant %s", m, ct, err, v.ciphertexts[m])
				}
			}
		})
	}
}
