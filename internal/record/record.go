// SPDX-License-Identifier: Apache-2.0

// Package record implements netauth's framing and record layer: the frame format shared by
// handshake messages and encrypted records, AES-256-GCM records keyed by the Noise handshake,
// rekeying, the clean close, and the export of the transport state for a handoff to another
// process. docs/PROTOCOL.md §6 and §7 specify what this package implements.
package record

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"math"
	"slices"
)

// Frame layout: every byte on the wire belongs to a frame of a 1-byte type, a 2-byte big-endian
// body length and the body.
const (
	HeaderLen = 3     // type(1) || length(2)
	MaxBody   = 65535 // largest body a 2-byte length can carry
	TagLen    = 16    // AES-GCM authentication tag
	// MaxPlaintext is the most application data one record carries: the body holds the
	// ciphertext of content || inner type, plus the tag.
	MaxPlaintext = MaxBody - TagLen - 1
)

// Frame types.
const (
	FrameClientHello byte = 0x01 // plaintext, first client message
	FrameServerHello byte = 0x02 // plaintext, server's Noise response
	FrameAlert       byte = 0x15 // plaintext, an error code before keys exist
	FrameRecord      byte = 0x17 // encrypted record
)

// Inner record types, the last plaintext byte of every encrypted record.
const (
	TypeData       byte = 0x00 // application data
	TypeClose      byte = 0x01 // sender will send nothing more; content: empty, or a reason (CloseRevoked)
	TypeRekey      byte = 0x02 // sender switches to the next key after this record
	TypeServerAuth byte = 0x03 // full handshake: host key and signature
	TypeClientAuth byte = 0x04 // full handshake: user and SSHSIG authenticator
	TypeVerdict    byte = 0x05 // server's decision (and, after a full handshake, a ticket)
	TypeBinder     byte = 0x06 // resumption: the client's proof that it holds the ticket's secret
)

// CloseRevoked is the reason a server gives in its close record (one byte, the docs/PROTOCOL.md
// §8 code access_revoked) when it ends a connection because the client's access was revoked.
const CloseRevoked byte = 9

// maxNonce is reserved by Noise for rekeying and never used for a record.
const maxNonce = math.MaxUint64

// Errors returned by the record layer. Their text never includes peer-supplied bytes.
var (
	ErrAuth          = errors.New("netauth: record authentication failed (tampered or corrupted stream)")
	ErrNonceLimit    = errors.New("netauth: record nonce space exhausted")
	ErrFrameTooShort = errors.New("netauth: encrypted record shorter than its tag")
)

// Half is one direction of the record layer: an AES-256-GCM key and the next nonce.
type Half struct {
	key   [32]byte
	nonce uint64
	aead  cipher.AEAD
	nb    [12]byte // the nonce's bytes, here rather than on the stack, from where they escape
}

// NewHalf returns a direction keyed with key whose next record uses nonce.
func NewHalf(key [32]byte, nonce uint64) *Half {
	h := &Half{key: key, nonce: nonce}
	h.aead = newGCM(&h.key)
	return h
}

func newGCM(key *[32]byte) cipher.AEAD {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("netauth: internal error: " + err.Error())
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("netauth: internal error: " + err.Error())
	}
	return aead
}

// Key returns the current key and next nonce (for exporting the transport state).
func (h *Half) Key() ([32]byte, uint64) { return h.key, h.nonce }

func nonceBytes(n uint64) [12]byte {
	var b [12]byte
	binary.BigEndian.PutUint64(b[4:], n)
	return b
}

// nonceFor returns the nonce n in h's nonce buffer.
func (h *Half) nonceFor(n uint64) []byte {
	h.nb = nonceBytes(n)
	return h.nb[:]
}

// Seal appends to dst one encrypted record frame holding content with inner type typ.
// content must not exceed MaxPlaintext.
func (h *Half) Seal(dst []byte, typ byte, content []byte) ([]byte, error) {
	if len(content) > MaxPlaintext {
		panic("netauth: internal error: record content too large")
	}
	if h.nonce == maxNonce {
		return dst, ErrNonceLimit
	}
	bodyLen := len(content) + 1 + TagLen
	start := len(dst)
	dst = slices.Grow(dst, HeaderLen+bodyLen)
	dst = append(dst, FrameRecord, byte(bodyLen>>8), byte(bodyLen))
	dst = append(dst, content...)
	dst = append(dst, typ)
	n := h.nonceFor(h.nonce)
	h.nonce++
	hdr := dst[start : start+HeaderLen]
	pt := dst[start+HeaderLen:]
	out := h.aead.Seal(pt[:0], n, pt, hdr)
	return dst[:start+HeaderLen+len(out)], nil
}

// Open authenticates and decrypts, in place, the body of a record frame whose 3-byte header
// is hdr. It returns the inner type and the content (aliasing body).
func (h *Half) Open(hdr, body []byte) (typ byte, content []byte, err error) {
	return h.OpenTo(body, hdr, body)
}

// OpenTo is Open decrypting into dst instead, which must either be body itself or not
// overlap it, and hold at least len(body)-TagLen bytes (the content and the inner type). The
// content returned aliases dst. If the record does not open, dst is overwritten with zeros.
func (h *Half) OpenTo(dst, hdr, body []byte) (typ byte, content []byte, err error) {
	if len(body) < TagLen+1 {
		return 0, nil, ErrFrameTooShort
	}
	if len(dst) < len(body)-TagLen {
		panic("netauth: internal error: record destination too small")
	}
	if h.nonce == maxNonce {
		return 0, nil, ErrNonceLimit
	}
	pt, err := h.aead.Open(dst[:0], h.nonceFor(h.nonce), body, hdr)
	if err != nil {
		return 0, nil, ErrAuth
	}
	h.nonce++
	return pt[len(pt)-1], pt[:len(pt)-1], nil
}

// Rekey replaces the key with REKEY(k) as Noise defines it: the first 32 bytes of the
// encryption of 32 zero bytes under the reserved nonce 2^64-1. The nonce counter continues.
func (h *Half) Rekey() {
	var zeros [32]byte
	n := nonceBytes(maxNonce)
	out := h.aead.Seal(nil, n[:], zeros[:], nil)
	copy(h.key[:], out[:32])
	clear(out)
	h.aead = newGCM(&h.key)
}

// halfState is a saved key and nonce, to take back a record that was never sent.
type halfState struct {
	key   [32]byte
	nonce uint64
}

func (h *Half) save() halfState { return halfState{h.key, h.nonce} }

func (h *Half) restore(s halfState) {
	if s.key != h.key {
		h.key = s.key
		h.aead = newGCM(&h.key)
	}
	h.nonce = s.nonce
}

// Zero wipes the key. The Half must not be used afterwards.
func (h *Half) Zero() {
	clear(h.key[:])
	h.aead = nil
}
