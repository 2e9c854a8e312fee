// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/hkdf"
	"crypto/sha256"

	"ubns.dev/netauth/internal/noise"
	"ubns.dev/netauth/internal/record"
)

// Key-schedule labels (docs/PROTOCOL.md §3.9): the HKDF-Expand info of each secret derived
// from the Noise chaining key after message 2.
const (
	LabelAppClientToServer = "netauth-v2 application client to server"
	LabelAppServerToClient = "netauth-v2 application server to client"
	LabelResumption        = "netauth-v2 resumption"
)

// secrets are what a handshake derives beyond its handshake-record keys: the application
// traffic keys and the resumption secret. They come from the chaining key, which only the
// two ends of the Noise exchange know (in netauthd: the client and the monitor), so whoever
// holds only the handshake-record keys (netauthd's acceptor) can neither read nor write
// application data nor resume the session.
type secrets struct {
	appC2S, appS2C [32]byte
	resumption     [32]byte
}

// deriveSecrets runs the key schedule on a split handshake:
//
//	prk        = HKDF-Extract(salt = ck, ikm = H)
//	appC2S     = HKDF-Expand(prk, LabelAppClientToServer, 32)
//	appS2C     = HKDF-Expand(prk, LabelAppServerToClient, 32)
//	resumption = HKDF-Expand(prk, LabelResumption, 32)
//
// The handshake-record keys are Noise's Split() outputs, HKDF(ck, "") (an extract with an empty
// input), so none of these can be computed from them. It wipes the chaining key in k.
func deriveSecrets(k *noise.Keys) (*secrets, error) {
	prk, err := hkdf.Extract(sha256.New, k.HandshakeHash[:], k.ChainingKey[:])
	clear(k.ChainingKey[:])
	if err != nil {
		return nil, err
	}
	defer clear(prk)
	s := &secrets{}
	for _, out := range []struct {
		label string
		dst   *[32]byte
	}{{LabelAppClientToServer, &s.appC2S}, {LabelAppServerToClient, &s.appS2C}, {LabelResumption, &s.resumption}} {
		b, err := hkdf.Expand(sha256.New, prk, out.label, 32)
		if err != nil {
			s.zero()
			return nil, err
		}
		copy(out.dst[:], b)
		clear(b)
	}
	return s, nil
}

func (s *secrets) zero() {
	if s != nil {
		clear(s.appC2S[:])
		clear(s.appS2C[:])
		clear(s.resumption[:])
	}
}

// appKeys are a session's application traffic keys, each direction from record counter 0.
type appKeys struct {
	ClientToServer, ServerToClient [32]byte
}

// Zero wipes the keys.
func (k *appKeys) Zero() {
	clear(k.ClientToServer[:])
	clear(k.ServerToClient[:])
}

// serverState returns the server's transport state for the application phase of a connection
// whose handshake phase stood at hs (the server's side, just before the Verdict): the
// application keys from counter 0, and the bytes the client sent after its message 3 (already
// application records), still unprocessed. Nothing else of hs carries over: in netauthd hs is
// the acceptor's word, so the application phase rekeys after the server's own interval
// (DefaultRekeyAfter, §7.1), not one the acceptor chose, and starts with no plaintext.
func (k *appKeys) serverState(hs *record.State) *record.State {
	return &record.State{SendKey: k.ServerToClient, RecvKey: k.ClientToServer, RekeyAfter: record.DefaultRekeyAfter,
		Unread: append([]byte(nil), hs.Unread...)}
}

// sealVerdict returns the Verdict record frame, sealed under the server's handshake-record key
// as hs holds it: what goes on the wire before the first application record.
func sealVerdict(hs *record.State, content []byte) ([]byte, error) {
	h := record.NewHalf(hs.SendKey, hs.SendNonce)
	defer h.Zero()
	return h.Seal(nil, record.TypeVerdict, content)
}
