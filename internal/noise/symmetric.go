// SPDX-License-Identifier: Apache-2.0

// Package noise owns netauth's Noise state: the symmetric state of the Noise Protocol
// Framework (revision 34, §5.1 and §5.2) for the one suite netauth uses, 25519_AESGCM_SHA256,
// and one function per message for the two handshakes netauth runs, NNhfs with ML-KEM-768
// (the full handshake, with the "hfs" modifier of noise_hfs_spec revision 1) and NNpsk0 (the
// resumption), and for NN, which NNhfs extends (§5.3, §7, §9). It reads like the
// specifications on purpose: every step is named as they name it, in the order they perform
// it.
//
// Unlike a general Noise library it exposes the chaining key, from which netauth's key
// schedule derives its secrets, and its MixKey accepts any input key material, such as the
// KEM shared secret.
//
// Nothing here reads from the network or from a random source: the caller supplies the
// ephemeral keys (internal/x25519), the ML-KEM decapsulation key or the encapsulation
// (internal/kem), and the bytes of each message.
package noise

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
)

// Sizes of the 25519_AESGCM_SHA256 suite, as the specification names them.
const (
	DHLen   = 32 // X25519 public keys and shared secrets (§4.1)
	HashLen = 32 // SHA-256 output (§4.3)
	KeyLen  = 32 // AES-256 key, and the length of a pre-shared key (§9)
	TagLen  = 16 // AES-GCM authentication tag (§4.2)
)

// MaxMessageSize is the largest Noise message (§3): 65535 bytes.
const MaxMessageSize = math.MaxUint16

// maxNonce is 2^64-1, which §5.1 reserves: EncryptWithAd and DecryptWithAd refuse it.
const maxNonce = math.MaxUint64

// Errors of the symmetric state. Their text never includes message bytes or secrets.
var (
	// ErrAuth is returned when a handshake message's AEAD tag does not verify: the message was
	// altered, or the peers do not share the same transcript or pre-shared key.
	ErrAuth = errors.New("noise: handshake message failed authentication")
	// ErrNonce is returned when a cipher key's nonces are exhausted (never, in a handshake).
	ErrNonce = errors.New("noise: nonce space exhausted")
)

// cipherState is the CipherState of §5.1: a key k, whether k is set, and the nonce n. The
// AEAD is built from k the first time it is used, since most keys set during a handshake
// encrypt nothing before the next MixKey replaces them.
type cipherState struct {
	k      [KeyLen]byte
	hasKey bool
	n      uint64
	aead   cipher.AEAD
}

// initializeKey sets k = key and n = 0.
func (c *cipherState) initializeKey(key *[KeyLen]byte) {
	c.k = *key
	c.hasKey = true
	c.n = 0
	c.aead = nil
}

// cipher returns the AEAD for k, building it on first use.
func (c *cipherState) cipher() cipher.AEAD {
	if c.aead == nil {
		block, err := aes.NewCipher(c.k[:])
		if err != nil {
			panic("noise: internal error: " + err.Error()) // only for a key length other than 32
		}
		if c.aead, err = cipher.NewGCM(block); err != nil {
			panic("noise: internal error: " + err.Error())
		}
	}
	return c.aead
}

// nonce is the AESGCM nonce of §12.4: 32 bits of zeros followed by the big-endian 64-bit n.
func nonce(n uint64) [12]byte {
	var b [12]byte
	binary.BigEndian.PutUint64(b[4:], n)
	return b
}

// encryptWithAd appends to dst ENCRYPT(k, n++, ad, plaintext) if k is set, else plaintext.
func (c *cipherState) encryptWithAd(dst, ad, plaintext []byte) ([]byte, error) {
	if !c.hasKey {
		return append(dst, plaintext...), nil
	}
	if c.n == maxNonce {
		return dst, ErrNonce
	}
	iv := nonce(c.n)
	c.n++
	return c.cipher().Seal(dst, iv[:], plaintext, ad), nil
}

// decryptWithAd appends to dst DECRYPT(k, n++, ad, ciphertext) if k is set, else ciphertext.
// A failed decryption leaves n unchanged (§5.1).
func (c *cipherState) decryptWithAd(dst, ad, ciphertext []byte) ([]byte, error) {
	if !c.hasKey {
		return append(dst, ciphertext...), nil
	}
	if c.n == maxNonce {
		return dst, ErrNonce
	}
	iv := nonce(c.n)
	out, err := c.cipher().Open(dst, iv[:], ciphertext, ad)
	if err != nil {
		return dst, ErrAuth
	}
	c.n++
	return out, nil
}

// zero wipes k. The AEAD's expanded key schedule belongs to crypto/aes, which offers no way
// to wipe it; dropping the reference is all that can be done.
func (c *cipherState) zero() {
	clear(c.k[:])
	c.hasKey = false
	c.n = 0
	c.aead = nil
}

// SymmetricState is the SymmetricState of §5.2 for SHA-256 and AES-256-GCM: the chaining key
// ck, the handshake hash h, and a cipher key k with its nonce n.
//
// The zero value is not ready for use: call InitializeSymmetric first. A SymmetricState holds
// secrets; call Zero when it is no longer needed. It must not be copied after first use
// (a copy duplicates the secrets).
type SymmetricState struct {
	ck [HashLen]byte
	h  [HashLen]byte
	cs cipherState
}

// InitializeSymmetric starts the state for protocolName (§5.2): h is the name padded with
// zero bytes to HashLen if it fits, else its hash; ck = h; no cipher key.
func (s *SymmetricState) InitializeSymmetric(protocolName string) {
	if len(protocolName) <= HashLen {
		s.h = [HashLen]byte{}
		copy(s.h[:], protocolName)
	} else {
		s.h = sha256.Sum256([]byte(protocolName))
	}
	s.ck = s.h
	s.cs.zero()
}

// MixKey mixes input key material into the chaining key and sets a new cipher key (§5.2):
// ck, temp_k = HKDF(ck, ikm, 2); InitializeKey(temp_k). ikm is a DH output, a KEM shared
// secret, or (for a psk handshake) an ephemeral public key; any length is accepted.
func (s *SymmetricState) MixKey(ikm []byte) {
	var tempK [KeyLen]byte
	hkdf2(&s.ck, &tempK, &s.ck, ikm)
	s.cs.initializeKey(&tempK)
	clear(tempK[:])
}

// MixHash sets h = HASH(h || data) (§5.2).
func (s *SymmetricState) MixHash(data []byte) {
	d := sha256.New()
	d.Write(s.h[:])
	d.Write(data)
	d.Sum(s.h[:0])
}

// MixKeyAndHash mixes a pre-shared key into both the chaining key and the handshake hash
// (§5.2): ck, temp_h, temp_k = HKDF(ck, ikm, 3); MixHash(temp_h); InitializeKey(temp_k).
func (s *SymmetricState) MixKeyAndHash(ikm []byte) {
	var tempH, tempK [HashLen]byte
	hkdf3(&s.ck, &tempH, &tempK, &s.ck, ikm)
	s.MixHash(tempH[:])
	s.cs.initializeKey(&tempK)
	clear(tempH[:])
	clear(tempK[:])
}

// GetHandshakeHash returns h (§5.2). After the last handshake message it is the handshake
// hash that authenticators sign and channel bindings use.
func (s *SymmetricState) GetHandshakeHash() [HashLen]byte { return s.h }

// ChainingKey returns ck, the secret from which netauth's key schedule derives its keys.
// The caller owns the copy and must wipe it when done.
func (s *SymmetricState) ChainingKey() [HashLen]byte { return s.ck }

// HasKey reports whether a cipher key is set, that is whether EncryptAndHash encrypts.
func (s *SymmetricState) HasKey() bool { return s.cs.hasKey }

// EncryptAndHash appends ciphertext = EncryptWithAd(h, plaintext) to dst and calls
// MixHash(ciphertext) (§5.2). Without a cipher key the ciphertext is the plaintext.
func (s *SymmetricState) EncryptAndHash(dst, plaintext []byte) ([]byte, error) {
	out, err := s.cs.encryptWithAd(dst, s.h[:], plaintext)
	if err != nil {
		return dst, err
	}
	s.MixHash(out[len(dst):])
	return out, nil
}

// DecryptAndHash appends plaintext = DecryptWithAd(h, ciphertext) to dst and calls
// MixHash(ciphertext) (§5.2). Without a cipher key the plaintext is the ciphertext. On
// failure it returns ErrAuth and the state is no longer usable (h has moved on): the
// handshake has failed. To decrypt in place, pass ciphertext[:0] as dst.
func (s *SymmetricState) DecryptAndHash(dst, ciphertext []byte) ([]byte, error) {
	ad := s.h
	// Hash the ciphertext before decrypting, which may overwrite it in place.
	s.MixHash(ciphertext)
	return s.cs.decryptWithAd(dst, ad[:], ciphertext)
}

// Split returns the two transport keys (§5.2): k1, k2 = HKDF(ck, "", 2); k1 encrypts from
// the initiator to the responder and k2 from the responder to the initiator. netauth's
// record layer is the transport CipherState: record.NewHalf(k, 0).
//
// Split wipes the handshake's cipher key but keeps ck and h, which the key schedule reads
// after the handshake (ChainingKey, GetHandshakeHash); Zero wipes them.
func (s *SymmetricState) Split() (k1, k2 [KeyLen]byte) {
	hkdf2(&k1, &k2, &s.ck, nil)
	s.cs.zero()
	return k1, k2
}

// Zero wipes ck, h and the cipher key. The state must be initialized again before reuse.
func (s *SymmetricState) Zero() {
	clear(s.ck[:])
	clear(s.h[:])
	s.cs.zero()
}

// hmacSHA256 sets out = HMAC-SHA256(key, data...) (RFC 2104; §4.3 HMAC-HASH). It is written
// out rather than taken from crypto/hmac, whose keyed state the compiler cannot keep on the
// stack: a handshake computes 20 to 30 of these. The tests check it against crypto/hmac.
func hmacSHA256(out, key *[HashLen]byte, data ...[]byte) {
	// The key is shorter than the block: K is key || zeros.
	var pad [sha256.BlockSize]byte
	copy(pad[:], key[:])
	for i := range pad {
		pad[i] ^= 0x36 // K XOR ipad
	}
	d := sha256.New()
	d.Write(pad[:])
	for _, b := range data {
		d.Write(b)
	}
	var inner [HashLen]byte
	d.Sum(inner[:0])
	for i := range pad {
		pad[i] ^= 0x36 ^ 0x5c // K XOR opad
	}
	d.Reset()
	d.Write(pad[:])
	d.Write(inner[:])
	d.Sum(out[:0])
	clear(pad[:])
	clear(inner[:])
}

// hkdf2 is HKDF(ck, ikm, 2) of §4.3, with HMAC-SHA256:
//
//	temp_key = HMAC-HASH(ck, ikm)
//	output1  = HMAC-HASH(temp_key, 0x01)
//	output2  = HMAC-HASH(temp_key, output1 || 0x02)
//
// out1 and out2 may alias ck.
func hkdf2(out1, out2, ck *[HashLen]byte, ikm []byte) {
	var tempKey [HashLen]byte
	hmacSHA256(&tempKey, ck, ikm)
	hmacSHA256(out1, &tempKey, []byte{0x01})
	hmacSHA256(out2, &tempKey, out1[:], []byte{0x02})
	clear(tempKey[:])
}

// hkdf3 is HKDF(ck, ikm, 3) of §4.3: hkdf2's outputs and
//
//	output3  = HMAC-HASH(temp_key, output2 || 0x03)
//
// The outputs may alias ck.
func hkdf3(out1, out2, out3, ck *[HashLen]byte, ikm []byte) {
	var tempKey [HashLen]byte
	hmacSHA256(&tempKey, ck, ikm)
	hmacSHA256(out1, &tempKey, []byte{0x01})
	hmacSHA256(out2, &tempKey, out1[:], []byte{0x02})
	hmacSHA256(out3, &tempKey, out2[:], []byte{0x03})
	clear(tempKey[:])
}
