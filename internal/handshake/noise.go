// SPDX-License-Identifier: Apache-2.0

// Package handshake implements netauth's handshake (docs/PROTOCOL.md §3-§5): the Noise NN full
// handshake with host and user authentication, the Noise NNpsk0 resumption with tickets, and
// the server's ticket keys. It runs over a record.Conn and leaves it keyed.
package handshake

import (
	"ubns.dev/netauth/internal/noise"
	"ubns.dev/netauth/internal/record"
)

// pattern is the Noise pattern of a handshake: NN, or NNpsk0 when resuming with a ticket's
// secret.
func pattern(psk []byte) noise.Pattern {
	if psk != nil {
		return noise.NNpsk0
	}
	return noise.NN
}

// halves turns the Noise split into record-layer directions for the given side, and wipes
// the split keys.
func halves(k *noise.Keys, initiator bool) (send, recv *record.Half) {
	c2s, s2c := record.NewHalf(k.K1, 0), record.NewHalf(k.K2, 0)
	k.Zero()
	if initiator {
		return c2s, s2c
	}
	return s2c, c2s
}

// prologue returns the Noise prologue for a ClientHello frame: every byte of the frame before
// the Noise message, header included.
func prologue(body []byte, noiseLen int) []byte {
	n := len(body)
	p := make([]byte, 0, record.HeaderLen+n-noiseLen)
	p = append(p, record.FrameClientHello, byte(n>>8), byte(n))
	return append(p, body[:n-noiseLen]...)
}
