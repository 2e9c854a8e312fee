// SPDX-License-Identifier: Apache-2.0

// Package handshake implements netauth's handshake (docs/PROTOCOL.md §3-§5): the hybrid
// full handshake (Noise NNhfs: X25519 and ML-KEM-768) with host and user authentication, the
// Noise NNpsk0 resumption with tickets, and the server's ticket keys. It runs over a
// record.Conn and leaves it keyed.
package handshake

import (
	"ubns.dev/netauth/internal/noise"
	"ubns.dev/netauth/internal/record"
)

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

// psk0Message1 returns NNpsk0 message 1 (e || tag) from a resume-mode ClientHello's Noise
// message (e || ek || tag).
func psk0Message1(msg []byte) []byte {
	m := make([]byte, 0, noise.NNpsk0Message1Size)
	m = append(m, msg[:noise.DHLen]...)
	return append(m, msg[NoiseMessage1Full:]...)
}

// prologue returns the Noise prologue of the ClientHello m whose Noise message has noiseLen
// bytes: every byte of the frame before the Noise message, header included (the header's
// length counts the Noise message). m.Noise is not read.
func prologue(m *clientHello, noiseLen int) []byte {
	head := (&clientHello{Version: m.Version, Mode: m.Mode, Ticket: m.Ticket}).body()
	n := len(head) + noiseLen
	p := make([]byte, 0, record.HeaderLen+len(head))
	p = append(p, record.FrameClientHello, byte(n>>8), byte(n))
	return append(p, head...)
}
