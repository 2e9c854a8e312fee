// SPDX-License-Identifier: Apache-2.0

// Package handshake implements netauth's handshake (docs/PROTOCOL.md §3-§5): the Noise NN full
// handshake with host and user authentication, the Noise NNpsk0 resumption with tickets, and
// the server's ticket keys. It runs over a record.Conn and leaves it keyed.
package handshake

import (
	"errors"
	"io"

	"github.com/flynn/noise"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// fixedDH is a noise.DHFunc whose key generation returns one ephemeral key chosen in advance
// (from a pool, or from deterministic randomness for test vectors). It lets a client offer the
// same ephemeral to the NN and the NNpsk0 handshakes, so the server can pick either.
type fixedDH struct{ kp *x25519.KeyPair }

func (f fixedDH) GenerateKeypair(io.Reader) (noise.DHKey, error) {
	return noise.DHKey{Private: f.kp.Private[:], Public: f.kp.Public[:]}, nil
}

func (fixedDH) DH(priv, pub []byte) ([]byte, error) {
	if len(priv) != DHLen || len(pub) != DHLen {
		return nil, errors.New("bad X25519 key length")
	}
	out, err := x25519.DH([32]byte(priv), [32]byte(pub))
	if err != nil {
		return nil, err
	}
	return out[:], nil
}

func (fixedDH) DHLen() int     { return DHLen }
func (fixedDH) DHName() string { return "25519" }

// newNoise starts a Noise NN (psk == nil) or NNpsk0 handshake state.
func newNoise(initiator bool, prologue []byte, eph *x25519.KeyPair, psk []byte) (*noise.HandshakeState, error) {
	cfg := noise.Config{
		CipherSuite: noise.NewCipherSuite(fixedDH{eph}, noise.CipherAESGCM, noise.HashSHA256),
		Pattern:     noise.HandshakeNN,
		Initiator:   initiator,
		Prologue:    prologue,
	}
	if psk != nil {
		cfg.PresharedKey = psk
		cfg.PresharedKeyPlacement = 0
	}
	return noise.NewHandshakeState(cfg)
}

// halves turns the Noise split into record-layer directions.
func halves(send, recv *noise.CipherState) (*record.Half, *record.Half) {
	sk, rk := send.UnsafeKey(), recv.UnsafeKey()
	s, r := record.NewHalf(sk, 0), record.NewHalf(rk, 0)
	clear(sk[:])
	clear(rk[:])
	return s, r
}

// prologue returns the Noise prologue for a ClientHello frame: every byte of the frame before
// the Noise message, header included.
func prologue(body []byte, noiseLen int) []byte {
	n := len(body)
	p := make([]byte, 0, record.HeaderLen+n-noiseLen)
	p = append(p, record.FrameClientHello, byte(n>>8), byte(n))
	return append(p, body[:n-noiseLen]...)
}
