// SPDX-License-Identifier: Apache-2.0

package noise

import (
	"crypto/mlkem"
	"errors"
	"fmt"

	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/x25519"
)

// Pattern is a handshake pattern of this package: the two netauth runs (NNhfs, the full
// handshake, docs/PROTOCOL.md §3.2; NNpsk0, the resumption, §4) and NN, NNhfs without its KEM
// tokens, which netauth no longer runs but which is kept because an independent
// implementation (flynn/noise) checks it, and with it every step NNhfs shares.
type Pattern uint8

// The patterns. The zero Pattern is invalid.
const (
	// NN is the full handshake:
	//
	//	-> e
	//	<- e, ee
	NN Pattern = iota + 1
	// NNpsk0 is the resumption, keyed by the ticket's resumption secret:
	//
	//	-> psk, e
	//	<- e, ee
	NNpsk0
	// NNhfs is the full handshake: NN with the "hfs" modifier of the Noise extension
	// "KEM-based Hybrid Forward Secrecy" (noise_hfs_spec, revision 1), instantiated with
	// ML-KEM-768:
	//
	//	-> e, e1
	//	<- e, ee, ekem1
	//
	// e1 is the initiator's ML-KEM-768 encapsulation key and ekem1 the responder's
	// ciphertext, each sent as a static key would be (EncryptAndHash); after ekem1 both sides
	// MixKey(the KEM's shared secret).
	NNhfs
)

// Protocol names (§8), which InitializeSymmetric turns into the initial h and ck. The hfs
// extension names the KEM after the DH function, joined by "+" (§5 of noise_hfs_spec).
const (
	ProtocolNN     = "Noise_NN_25519_AESGCM_SHA256"             // 28 bytes, padded to 32
	ProtocolNNpsk0 = "Noise_NNpsk0_25519_AESGCM_SHA256"         // exactly 32 bytes
	ProtocolNNhfs  = "Noise_NNhfs_25519+MLKEM768_AESGCM_SHA256" // 40 bytes, hashed
)

// Sizes of the KEM functions (noise_hfs_spec §3) for ML-KEM-768 (FIPS 203).
const (
	KEMPublicKeyLen  = kem.EncapsulationKeySize // 1184, e1
	KEMCiphertextLen = kem.CiphertextSize       // 1088, ekem1
	KEMOutputLen     = kem.SharedKeySize        // 32, the input of MixKey
)

// Message sizes with empty payloads, as netauth sends them. A payload of n bytes adds n.
const (
	NNMessage1Size     = DHLen          // e; the payload is in clear (no key yet)
	NNMessage2Size     = DHLen + TagLen // e, tag of the payload
	NNpsk0Message1Size = DHLen + TagLen // e, tag of the payload (psk set a key)
	NNpsk0Message2Size = DHLen + TagLen // e, tag of the payload
	// NNhfs message 1 is e and e1, both in clear (no key yet), and the payload in clear.
	NNhfsMessage1Size = DHLen + KEMPublicKeyLen // 1216
	// NNhfs message 2 is e, the ciphertext encrypted under the key of ee (plus its tag), and
	// the tag of the payload, under the key of ekem1.
	NNhfsMessage2Size = DHLen + KEMCiphertextLen + TagLen + TagLen // 1152
)

// String returns the pattern's name, "NN" or "NNpsk0".
func (p Pattern) String() string {
	switch p {
	case NN:
		return "NN"
	case NNpsk0:
		return "NNpsk0"
	case NNhfs:
		return "NNhfs"
	}
	return fmt.Sprintf("Pattern(%d)", uint8(p))
}

// ProtocolName returns the full Noise protocol name of the pattern, or "" if p is invalid.
func (p Pattern) ProtocolName() string {
	switch p {
	case NN:
		return ProtocolNN
	case NNpsk0:
		return ProtocolNNpsk0
	case NNhfs:
		return ProtocolNNhfs
	}
	return ""
}

// messageSize returns the size of message 1 or 2 with an empty payload.
func (p Pattern) messageSize(message int) int {
	switch {
	case p == NN && message == 1:
		return NNMessage1Size
	case p == NNhfs && message == 1:
		return NNhfsMessage1Size
	case p == NNhfs:
		return NNhfsMessage2Size
	}
	return DHLen + TagLen
}

// State is how far a handshake has come. Each message function runs in one state only; in
// any other it returns ErrState.
type State uint8

// The states, in the order a successful handshake passes through them.
const (
	StateZeroed      State = iota // not initialized (the zero value), or wiped by Zero
	StateInitialized              // Initialize done (§5.3): ready for message 1
	StateMessage1                 // message 1 written (initiator) or read (responder)
	StateMessage2                 // message 2 written or read: complete, ready for Split
	StateSplit                    // Split returned the keys and wiped the state
	StateFailed                   // a step failed and wiped the state
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case StateZeroed:
		return "zeroed"
	case StateInitialized:
		return "initialized"
	case StateMessage1:
		return "message 1 done"
	case StateMessage2:
		return "message 2 done"
	case StateSplit:
		return "split"
	case StateFailed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Errors of the handshake. Their text never includes message bytes or secrets.
var (
	// ErrState is returned by a step called out of order, and by every step after a failure,
	// Split or Zero.
	ErrState = errors.New("noise: handshake step out of order")
	// ErrMessageSize is returned for a message shorter than its pattern requires or longer
	// than MaxMessageSize, and for a payload too large for one message.
	ErrMessageSize = errors.New("noise: handshake message size out of range")
	// ErrKEM is returned by an NNhfs responder for an encapsulation key (e1) that fails
	// FIPS 203's input check (the error also wraps kem.ErrMalformedKey), and by either side
	// when the KEM fails (an encapsulation hook that errs, or returns outputs of the wrong
	// size).
	ErrKEM = errors.New("noise: ML-KEM-768 failure")
)

// Encapsulator is GENERATE_KEM_CIPHERTEXT of noise_hfs_spec §3 for ML-KEM-768: it returns a
// fresh shared secret and its ciphertext for the encapsulation key. kem.Encapsulate is the
// one netauth's servers use; tests substitute derandomized encapsulation
// (crypto/mlkem/mlkemtest) to make vectors.
type Encapsulator func(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error)

// hfsState is the KEM part of an NNhfs handshake state: the initiator's decapsulation key
// (its "e1" key pair), or the responder's encapsulator and the initiator's encapsulation key
// from message 1. It is held by pointer so that handshakeState stays comparable.
type hfsState struct {
	dk          *mlkem.DecapsulationKey768 // initiator
	encapsulate Encapsulator               // responder
	rek         *mlkem.EncapsulationKey768 // responder, after message 1
}

// Keys is what a completed handshake yields: the Split keys, the handshake hash and the
// final chaining key. Its owner must call Zero when done with it.
type Keys struct {
	// K1 encrypts from the initiator (client) to the responder (server), K2 the other way.
	K1, K2 [KeyLen]byte
	// HandshakeHash is the final h.
	HandshakeHash [HashLen]byte
	// ChainingKey is the final ck, the input of Split and of netauth's key schedule.
	ChainingKey [HashLen]byte
}

// Zero wipes the keys.
func (k *Keys) Zero() { *k = Keys{} }

// handshakeState is the HandshakeState of §5.3 for NN, NNpsk0 and NNhfs: a symmetric state,
// the local ephemeral key pair e, the remote ephemeral public key re, the pre-shared key, and
// for NNhfs the KEM state. Every error is final: fail wipes the state.
type handshakeState struct {
	ss      SymmetricState
	pattern Pattern
	state   State
	e       x25519.KeyPair
	re      [DHLen]byte
	psk     [KeyLen]byte
	kem     *hfsState
}

// initialize is Initialize of §5.3: InitializeSymmetric(protocol_name), MixHash(prologue),
// and the keys. None of the patterns has pre-messages. For NNhfs, kem holds the initiator's
// decapsulation key or the responder's encapsulator.
func (hs *handshakeState) initialize(p Pattern, prologue []byte, e *x25519.KeyPair, psk []byte, kem *hfsState) error {
	hs.zero()
	switch {
	case p != NN && p != NNpsk0 && p != NNhfs:
		return fmt.Errorf("noise: unknown pattern %v", p)
	case (p == NNhfs) != (kem != nil):
		return fmt.Errorf("noise: %v: a KEM key is needed for NNhfs only (NewInitiatorHFS, NewResponderHFS)", p)
	case e == nil || e.PrivateKey() == nil:
		return errors.New("noise: no ephemeral key")
	case p != NNpsk0 && psk != nil:
		return fmt.Errorf("noise: %v takes no pre-shared key", p)
	case p == NNpsk0 && len(psk) != KeyLen:
		return fmt.Errorf("noise: NNpsk0 needs a %d-byte pre-shared key", KeyLen)
	}
	hs.pattern = p
	hs.ss.InitializeSymmetric(p.ProtocolName())
	hs.ss.MixHash(prologue)
	hs.e = *e
	copy(hs.psk[:], psk)
	hs.kem = kem
	hs.state = StateInitialized
	return nil
}

// step checks that the handshake is in state want before the step named name runs. A step
// out of order is an error like any other: it wipes the state.
func (hs *handshakeState) step(name string, want State) error {
	if hs.state != want {
		return hs.fail(fmt.Errorf("%w: %s in state %v", ErrState, name, hs.state))
	}
	return nil
}

// fail wipes the state after a failed step and returns err.
func (hs *handshakeState) fail(err error) error {
	hs.zero()
	hs.state = StateFailed
	return err
}

// zero wipes every secret and returns to StateZeroed. The ephemeral private key, which
// crypto/ecdh does not let us wipe, is dropped (x25519.KeyPair.Zero), and so is the KEM
// state: crypto/mlkem gives no way to wipe a decapsulation key either.
func (hs *handshakeState) zero() {
	hs.ss.Zero()
	hs.e.Zero()
	clear(hs.re[:])
	clear(hs.psk[:])
	hs.kem = nil
	hs.pattern = 0
	hs.state = StateZeroed
}

// checkSize checks that message (1 or 2) with the given length fits its pattern.
func (hs *handshakeState) checkSize(message, n int) error {
	if n < hs.pattern.messageSize(message) || n > MaxMessageSize {
		return hs.fail(fmt.Errorf("noise: %v message %d: %w", hs.pattern, message, ErrMessageSize))
	}
	return nil
}

// tokenPSK processes "psk" (§9.2): MixKeyAndHash(psk). The psk is not needed afterwards.
func (hs *handshakeState) tokenPSK() {
	hs.ss.MixKeyAndHash(hs.psk[:])
	clear(hs.psk[:])
}

// writeE processes "e" for the writer: append e.public, MixHash(e.public), and in a psk
// handshake also MixKey(e.public) (§9.2).
func (hs *handshakeState) writeE(dst []byte) []byte {
	dst = append(dst, hs.e.Public[:]...)
	hs.ss.MixHash(hs.e.Public[:])
	if hs.pattern == NNpsk0 {
		hs.ss.MixKey(hs.e.Public[:])
	}
	return dst
}

// readE processes "e" for the reader: re = the next DHLen bytes, MixHash(re), and in a psk
// handshake also MixKey(re). It returns the rest of the message.
func (hs *handshakeState) readE(msg []byte) []byte {
	copy(hs.re[:], msg[:DHLen])
	hs.ss.MixHash(hs.re[:])
	if hs.pattern == NNpsk0 {
		hs.ss.MixKey(hs.re[:])
	}
	return msg[DHLen:]
}

// tokenEE processes "ee": MixKey(DH(e, re)). A low-order re (an all-zero shared secret) is
// an error wrapping x25519.ErrLowOrder.
func (hs *handshakeState) tokenEE(message int) error {
	dh, err := hs.e.DH(hs.re)
	if err != nil {
		return hs.fail(fmt.Errorf("noise: %v message %d: ee: %w", hs.pattern, message, err))
	}
	hs.ss.MixKey(dh[:])
	clear(dh[:])
	return nil
}

// writeE1 processes "e1" for the writer (noise_hfs_spec §4): the encapsulation key of the
// initiator's decapsulation key, sent as a static public key is, EncryptAndHash(ek). In
// NNhfs message 1 no cipher key is set yet, so it is MixHash(ek) and ek goes in clear.
func (hs *handshakeState) writeE1(dst []byte) ([]byte, error) {
	out, err := hs.ss.EncryptAndHash(dst, hs.kem.dk.EncapsulationKey().Bytes())
	if err != nil {
		return dst, hs.fail(fmt.Errorf("noise: %v message 1: e1: %w", hs.pattern, err))
	}
	return out, nil
}

// readE1 processes "e1" for the reader: DecryptAndHash of the next KEMPublicKeyLen bytes (and
// a tag if a key were set), parsed as an ML-KEM-768 encapsulation key, which runs FIPS 203's
// modulus check. A key that fails it fails the handshake (ErrKEM, wrapping
// kem.ErrMalformedKey), before any other KEM work. It returns the rest of the message.
func (hs *handshakeState) readE1(msg []byte) ([]byte, error) {
	n := KEMPublicKeyLen
	if hs.ss.HasKey() {
		n += TagLen
	}
	if len(msg) < n {
		return nil, hs.fail(fmt.Errorf("noise: %v message 1: e1: %w", hs.pattern, ErrMessageSize))
	}
	var ekb []byte
	if hs.ss.HasKey() {
		var err error
		if ekb, err = hs.ss.DecryptAndHash(nil, msg[:n]); err != nil {
			return nil, hs.fail(fmt.Errorf("noise: %v message 1: e1: %w", hs.pattern, err))
		}
	} else {
		// DecryptAndHash without a key is MixHash of the bytes, which are the plaintext:
		// parse them where they are rather than copy them.
		hs.ss.MixHash(msg[:n])
		ekb = msg[:n]
	}
	ek, err := kem.ParseEncapsulationKey(ekb)
	if err != nil {
		return nil, hs.fail(fmt.Errorf("%w: %v message 1: e1: %w", ErrKEM, hs.pattern, err))
	}
	hs.kem.rek = ek
	return msg[n:], nil
}

// writeEKEM1 processes "ekem1" for the writer: GENERATE_KEM_CIPHERTEXT(re1), the ciphertext
// sent with EncryptAndHash (after ee a key is set: it is encrypted), then MixKey(the shared
// secret), which is wiped.
func (hs *handshakeState) writeEKEM1(dst []byte) ([]byte, error) {
	shared, ct, err := hs.kem.encapsulate(hs.kem.rek)
	defer clear(shared)
	if err != nil || len(shared) != KEMOutputLen || len(ct) != KEMCiphertextLen {
		return dst, hs.fail(fmt.Errorf("%w: %v message 2: ekem1: encapsulation failed", ErrKEM, hs.pattern))
	}
	out, err := hs.ss.EncryptAndHash(dst, ct)
	if err != nil {
		return dst, hs.fail(fmt.Errorf("noise: %v message 2: ekem1: %w", hs.pattern, err))
	}
	hs.ss.MixKey(shared)
	return out, nil
}

// readEKEM1 processes "ekem1" for the reader: DecryptAndHash of the next KEMCiphertextLen
// bytes and their tag (ErrAuth if they were altered), KEM(dk, ciphertext), MixKey(the shared
// secret), which is wiped. It returns the rest of the message.
func (hs *handshakeState) readEKEM1(msg []byte) ([]byte, error) {
	n := KEMCiphertextLen
	if hs.ss.HasKey() {
		n += TagLen
	}
	if len(msg) < n {
		return nil, hs.fail(fmt.Errorf("noise: %v message 2: ekem1: %w", hs.pattern, ErrMessageSize))
	}
	ct, err := hs.ss.DecryptAndHash(nil, msg[:n])
	if err != nil {
		return nil, hs.fail(fmt.Errorf("noise: %v message 2: ekem1: %w", hs.pattern, err))
	}
	shared, err := hs.kem.dk.Decapsulate(ct)
	defer clear(shared)
	if err != nil {
		return nil, hs.fail(fmt.Errorf("%w: %v message 2: ekem1: %w", ErrKEM, hs.pattern, err))
	}
	hs.ss.MixKey(shared)
	return msg[n:], nil
}

// writePayload appends EncryptAndHash(payload).
func (hs *handshakeState) writePayload(dst, payload []byte, message int) ([]byte, error) {
	out, err := hs.ss.EncryptAndHash(dst, payload)
	if err != nil {
		return dst, hs.fail(fmt.Errorf("noise: %v message %d: %w", hs.pattern, message, err))
	}
	return out, nil
}

// readPayload returns DecryptAndHash(rest) in a new slice (nil if empty).
func (hs *handshakeState) readPayload(rest []byte, message int) ([]byte, error) {
	payload, err := hs.ss.DecryptAndHash(nil, rest)
	if err != nil {
		return nil, hs.fail(fmt.Errorf("noise: %v message %d: %w", hs.pattern, message, err))
	}
	if len(payload) == 0 {
		return nil, nil
	}
	return payload, nil
}

// checkPayload checks that message (1 or 2) with a payload of n bytes fits MaxMessageSize.
func (hs *handshakeState) checkPayload(message, n int) error {
	if n > MaxMessageSize-hs.pattern.messageSize(message) {
		return hs.fail(fmt.Errorf("noise: %v message %d: payload: %w", hs.pattern, message, ErrMessageSize))
	}
	return nil
}

// split ends a complete handshake: it returns the Split keys, h and ck, and wipes the state.
func (hs *handshakeState) split() (Keys, error) {
	if err := hs.step("Split", StateMessage2); err != nil {
		return Keys{}, err
	}
	var k Keys
	k.K1, k.K2 = hs.ss.Split()
	k.HandshakeHash = hs.ss.GetHandshakeHash()
	k.ChainingKey = hs.ss.ChainingKey()
	hs.zero()
	hs.state = StateSplit
	return k, nil
}
