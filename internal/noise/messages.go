// SPDX-License-Identifier: Apache-2.0

package noise

import (
	"crypto/mlkem"
	"errors"

	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/x25519"
)

// Initiator is the initiator's (client's) side of an NNhfs, NNpsk0 or NN handshake:
//
//	i, err := NewInitiator(NN, prologue, &e, nil)
//	msg1, err := i.WriteMessage1(nil, nil)
//	// ... send msg1, receive msg2 ...
//	payload, err := i.ReadMessage2(msg2)
//	keys, err := i.Split()
//	defer keys.Zero()
//
// Every error is final: the state is wiped, and every later step returns ErrState.
// An Initiator is not safe for concurrent use.
type Initiator struct {
	hs handshakeState
}

// Responder is the responder's (server's) side of an NNhfs, NNpsk0 or NN handshake: ReadMessage1,
// WriteMessage2, Split. Every error is final, as for Initiator. A Responder is not safe for
// concurrent use.
type Responder struct {
	hs handshakeState
}

// NewInitiator starts the initiator of pattern NN or NNpsk0 (Initialize, §5.3) with the
// prologue, the ephemeral key pair e (which it copies, sharing e's private key: the caller
// still owns e and drops it with Zero; one e may start several handshakes, as a client offering
// NNhfs and NNpsk0 at once does) and, for NNpsk0 only, the 32-byte pre-shared key (nil for
// NN). NNhfs needs a KEM key: NewInitiatorHFS.
func NewInitiator(p Pattern, prologue []byte, e *x25519.KeyPair, psk []byte) (*Initiator, error) {
	i := new(Initiator)
	if err := i.hs.initialize(p, prologue, e, psk, nil); err != nil {
		return nil, err
	}
	return i, nil
}

// NewResponder starts the responder of pattern NN or NNpsk0, with arguments as for
// NewInitiator; e is the responder's ephemeral key pair, sent in message 2. NNhfs:
// NewResponderHFS.
func NewResponder(p Pattern, prologue []byte, e *x25519.KeyPair, psk []byte) (*Responder, error) {
	r := new(Responder)
	if err := r.hs.initialize(p, prologue, e, psk, nil); err != nil {
		return nil, err
	}
	return r, nil
}

// NewInitiatorHFS starts the initiator of NNhfs with the prologue, the ephemeral key pair e
// (as for NewInitiator) and the ML-KEM-768 decapsulation key dk whose encapsulation key
// message 1 carries ("e1"). The Initiator keeps a reference to dk until message 2 is read or
// the handshake fails or is zeroed; the caller, which owns dk, should drop its own reference
// as soon as it can (crypto/mlkem gives no way to wipe it).
func NewInitiatorHFS(prologue []byte, e *x25519.KeyPair, dk *mlkem.DecapsulationKey768) (*Initiator, error) {
	if dk == nil {
		return nil, errors.New("noise: NNhfs: no decapsulation key")
	}
	i := new(Initiator)
	if err := i.hs.initialize(NNhfs, prologue, e, nil, &hfsState{dk: dk}); err != nil {
		return nil, err
	}
	return i, nil
}

// NewResponderHFS starts the responder of NNhfs with the prologue, its ephemeral key pair e
// and the encapsulation it runs for "ekem1" (nil: kem.Encapsulate, randomness from
// crypto/rand).
func NewResponderHFS(prologue []byte, e *x25519.KeyPair, encapsulate Encapsulator) (*Responder, error) {
	if encapsulate == nil {
		encapsulate = kem.Encapsulate
	}
	r := new(Responder)
	if err := r.hs.initialize(NNhfs, prologue, e, nil, &hfsState{encapsulate: encapsulate}); err != nil {
		return nil, err
	}
	return r, nil
}

// WriteMessage1 appends message 1 with payload to dst and returns the result:
//
//	NN:     -> e             e.public || payload (in clear: no key yet)
//	NNpsk0: -> psk, e        e.public || ENCRYPT(payload) (payload + 16 bytes)
//	NNhfs:  -> e, e1         e.public || ek (1184 bytes) || payload (all in clear: no key yet)
//
// dst and payload must not overlap.
func (i *Initiator) WriteMessage1(dst, payload []byte) ([]byte, error) {
	hs := &i.hs
	if err := hs.step("WriteMessage1", StateInitialized); err != nil {
		return dst, err
	}
	if err := hs.checkPayload(1, len(payload)); err != nil {
		return dst, err
	}
	if hs.pattern == NNpsk0 {
		hs.tokenPSK()
	}
	out := hs.writeE(dst)
	var err error
	if hs.pattern == NNhfs {
		if out, err = hs.writeE1(out); err != nil {
			return dst, err
		}
	}
	out, err = hs.writePayload(out, payload, 1)
	if err != nil {
		return dst, err
	}
	hs.state = StateMessage1
	return out, nil
}

// ReadMessage1 processes message 1 and returns its payload (nil if empty). A wrong
// pre-shared key or an altered NNpsk0 message 1 fails with ErrAuth; an NNhfs encapsulation key
// that fails FIPS 203's modulus check with ErrKEM (wrapping kem.ErrMalformedKey), before any
// KEM or DH operation; a message shorter than NNMessage1Size (NN), NNpsk0Message1Size
// (NNpsk0) or NNhfsMessage1Size (NNhfs), or longer than MaxMessageSize, with ErrMessageSize.
func (r *Responder) ReadMessage1(msg []byte) ([]byte, error) {
	hs := &r.hs
	if err := hs.step("ReadMessage1", StateInitialized); err != nil {
		return nil, err
	}
	if err := hs.checkSize(1, len(msg)); err != nil {
		return nil, err
	}
	if hs.pattern == NNpsk0 {
		hs.tokenPSK()
	}
	rest := hs.readE(msg)
	if hs.pattern == NNhfs {
		var err error
		if rest, err = hs.readE1(rest); err != nil {
			return nil, err
		}
	}
	payload, err := hs.readPayload(rest, 1)
	if err != nil {
		return nil, err
	}
	hs.state = StateMessage1
	return payload, nil
}

// WriteMessage2 appends message 2 with payload to dst and returns the result:
//
//	NN, NNpsk0: <- e, ee          e.public || ENCRYPT(payload) (payload + 16 bytes)
//	NNhfs:      <- e, ee, ekem1   e.public || ENCRYPT(ciphertext) (1088 + 16 bytes)
//	                              || ENCRYPT(payload) (payload + 16 bytes)
//
// It fails, wrapping x25519.ErrLowOrder, if the initiator's ephemeral key was a low-order
// point, and with ErrKEM if the encapsulation fails. dst and payload must not overlap. After
// it, the handshake is complete: call Split.
func (r *Responder) WriteMessage2(dst, payload []byte) ([]byte, error) {
	hs := &r.hs
	if err := hs.step("WriteMessage2", StateMessage1); err != nil {
		return dst, err
	}
	if err := hs.checkPayload(2, len(payload)); err != nil {
		return dst, err
	}
	out := hs.writeE(dst)
	if err := hs.tokenEE(2); err != nil {
		return dst, err
	}
	var err error
	if hs.pattern == NNhfs {
		if out, err = hs.writeEKEM1(out); err != nil {
			return dst, err
		}
	}
	out, err = hs.writePayload(out, payload, 2)
	if err != nil {
		return dst, err
	}
	hs.state = StateMessage2
	return out, nil
}

// ReadMessage2 processes message 2 and returns its payload (nil if empty). An altered
// message, or one from a responder with another transcript, pre-shared key or KEM secret,
// fails with ErrAuth; a low-order ephemeral key with an error wrapping x25519.ErrLowOrder; a
// message shorter than NNMessage2Size (NN, NNpsk0) or NNhfsMessage2Size (NNhfs), or longer
// than MaxMessageSize, with ErrMessageSize. After it, the handshake is complete: call Split.
func (i *Initiator) ReadMessage2(msg []byte) ([]byte, error) {
	hs := &i.hs
	if err := hs.step("ReadMessage2", StateMessage1); err != nil {
		return nil, err
	}
	if err := hs.checkSize(2, len(msg)); err != nil {
		return nil, err
	}
	rest := hs.readE(msg)
	if err := hs.tokenEE(2); err != nil {
		return nil, err
	}
	if hs.pattern == NNhfs {
		var err error
		if rest, err = hs.readEKEM1(rest); err != nil {
			return nil, err
		}
	}
	payload, err := hs.readPayload(rest, 2)
	if err != nil {
		return nil, err
	}
	hs.state = StateMessage2
	return payload, nil
}

// Split ends a complete handshake (§5.2 Split): it returns the transport keys, the
// handshake hash and the chaining key, and wipes the handshake state. The caller owns the
// returned Keys and must Zero them.
func (i *Initiator) Split() (Keys, error) { return i.hs.split() }

// Split ends a complete handshake, as Initiator.Split does.
func (r *Responder) Split() (Keys, error) { return r.hs.split() }

// State returns how far the handshake has come.
func (i *Initiator) State() State { return i.hs.state }

// State returns how far the handshake has come.
func (r *Responder) State() State { return r.hs.state }

// Pattern returns the handshake's pattern (0 once the state is wiped).
func (i *Initiator) Pattern() Pattern { return i.hs.pattern }

// Pattern returns the handshake's pattern (0 once the state is wiped).
func (r *Responder) Pattern() Pattern { return r.hs.pattern }

// Zero wipes the handshake's secrets (chaining key, handshake hash, cipher key, ephemeral
// key, pre-shared key) and drops its KEM key, for a handshake abandoned before Split. Later
// steps return ErrState.
func (i *Initiator) Zero() { i.hs.zero() }

// Zero wipes the handshake's secrets, as Initiator.Zero does.
func (r *Responder) Zero() { r.hs.zero() }
