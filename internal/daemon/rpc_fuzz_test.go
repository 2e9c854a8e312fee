// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"reflect"
	"testing"

	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/record"
)

// monitorSeeds are one valid payload of each monitor protocol message, each field at a
// size it has in practice, and the edges of the length checks.
func monitorSeeds() [][]byte {
	st := &record.State{SendKey: [32]byte{1}, SendNonce: 7, SendCount: 3, RecvKey: [32]byte{2}, RecvNonce: 9,
		RekeyAfter: record.DefaultRekeyAfter, Unread: []byte("raw"), Plain: []byte("plain")}
	b32, b64 := bytes.Repeat([]byte{0xaa}, 32), bytes.Repeat([]byte{0xbb}, 64)
	full1 := bytes.Repeat([]byte{0xcc}, handshake.NoiseMessage1Full)
	resume1 := bytes.Repeat([]byte{0xdd}, handshake.NoiseMessage1Resume)
	full2 := bytes.Repeat([]byte{0xee}, handshake.NoiseMessage2Full)
	resume2 := bytes.Repeat([]byte{0xef}, handshake.NoiseMessage2Resume)
	return [][]byte{
		(&beginRequest{service: "whoami", req: handshake.BeginRequest{Client: "127.0.0.1:4242", Mode: handshake.ModeFull, Noise: full1}}).marshal(),
		(&beginRequest{service: "whoami", req: handshake.BeginRequest{Client: "[::1]:1", Mode: handshake.ModeResume,
			Ticket: bytes.Repeat([]byte{1}, handshake.MaxTicketSize), Noise: resume1}}).marshal(),
		marshalBeginResponse(&handshake.BeginResponse{Session: 42, Noise: full2, HandshakeHash: b32, HostKey: b64, HostSig: b64,
			Service: "whoami"})[1:],
		marshalBeginResponse(&handshake.BeginResponse{Session: 43, Resumed: true, Noise: resume2, HandshakeHash: b32,
			Service: "whoami", User: "alice"})[1:],
		acceptedReply[1:],
		(&sessionRef{service: "whoami", session: 44}).marshal(),
		(&commitRequest{service: "whoami", commit: handshake.CommitRequest{Session: 46, User: "alice", Time: 1, SSHSIG: b64}, state: st}).marshal(),
		(&commitRequest{service: "whoami", commit: handshake.CommitRequest{Session: 47, Resumed: true, Binder: b32}, state: st}).marshal(),
		{},
		{0xff, 0xff},
		(&beginRequest{service: "whoami", req: handshake.BeginRequest{Mode: 2, Noise: append(resume1, 0)}}).marshal(), // one byte over
		marshalBeginResponse(&handshake.BeginResponse{Session: 48, Noise: append(full2, 0)})[1:],                      // one byte over
	}
}

// FuzzMonitorRequest feeds every input to every parser of the monitor protocol (rpc.go): none
// may panic, and whatever one accepts must marshal back to the same bytes (or, for a response
// whose "resumed" byte is neither 0 nor 1, to a message that parses to the same value).
func FuzzMonitorRequest(f *testing.F) {
	for _, s := range monitorSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		in := func() []byte { return append([]byte(nil), p...) } // parsers may wipe their input
		same := func(name string, got []byte) {
			t.Helper()
			if !bytes.Equal(got, p) {
				t.Fatalf("%s: parse then marshal\n got % x\nwant % x", name, got, p)
			}
		}
		if m, err := parseBeginRequest(in()); err == nil {
			same("begin request", m.marshal())
		}
		if r, err := parseBeginResponse(in()); err == nil {
			out := marshalBeginResponse(r)
			if out[0] != 0 {
				t.Fatalf("begin response marshals with status %d", out[0])
			}
			if len(p) > 8 && p[8] <= 1 {
				same("begin response", out[1:])
			}
			r2, err := parseBeginResponse(out[1:])
			if err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("begin response: %+v marshals to what parses as %+v (%v)", r, r2, err)
			}
		}
		if _, err := parseAccepted(in()); err == nil {
			same("accepted reply", acceptedReply[1:])
		}
		if r, err := parseAbort(in()); err == nil {
			same("abort", r.marshal())
		}
		if m, err := parseCommit(in()); err == nil {
			same("commit", m.marshal())
			m.state.Zero()
		}
	})
}

// TestMonitorSeedsParse: each seed of FuzzMonitorRequest is accepted by the parser of its
// message, so the fuzzer starts from valid messages of every kind.
func TestMonitorSeedsParse(t *testing.T) {
	seeds := monitorSeeds()
	parsers := []func([]byte) error{
		func(p []byte) error { _, err := parseBeginRequest(p); return err },
		func(p []byte) error { _, err := parseBeginRequest(p); return err },
		func(p []byte) error { _, err := parseBeginResponse(p); return err },
		func(p []byte) error { _, err := parseBeginResponse(p); return err },
		func(p []byte) error { _, err := parseAccepted(p); return err },
		func(p []byte) error { _, err := parseAbort(p); return err },
		func(p []byte) error { _, err := parseCommit(p); return err },
		func(p []byte) error { _, err := parseCommit(p); return err },
	}
	for i, parse := range parsers {
		if err := parse(append([]byte(nil), seeds[i]...)); err != nil {
			t.Errorf("seed %d does not parse: %v", i, err)
		}
	}
}

// TestMonitorNoiseLimits checks the monitor protocol's limits on Noise messages: the largest of
// protocol version 3 pass (a resume-mode ClientHello's message 1 with the largest ticket, a
// hybrid full handshake's message 2), one byte more is refused.
func TestMonitorNoiseLimits(t *testing.T) {
	for _, n := range []int{handshake.NoiseMessage1Full, handshake.NoiseMessage1Resume, handshake.NoiseMessage1Resume + 1} {
		p := (&beginRequest{service: "whoami", req: handshake.BeginRequest{Client: "192.0.2.1:1", Mode: handshake.ModeResume,
			Ticket: make([]byte, handshake.MaxTicketSize), Noise: make([]byte, n)}}).marshal()
		m, err := parseBeginRequest(p)
		if ok := n <= handshake.NoiseMessage1Resume; ok != (err == nil) || (ok && len(m.req.Noise) != n) {
			t.Errorf("begin request with a %d-byte Noise message: %v", n, err)
		}
	}
	for _, n := range []int{handshake.NoiseMessage2Resume, handshake.NoiseMessage2Full, handshake.NoiseMessage2Full + 1} {
		p := marshalBeginResponse(&handshake.BeginResponse{Session: 1, Noise: make([]byte, n), HandshakeHash: make([]byte, 32),
			HostKey: make([]byte, handshake.MaxHostKeyLen), HostSig: make([]byte, handshake.MaxHostSigLen), Service: "whoami"})[1:]
		r, err := parseBeginResponse(p)
		if ok := n <= handshake.NoiseMessage2Full; ok != (err == nil) || (ok && len(r.Noise) != n) {
			t.Errorf("begin response with a %d-byte Noise message: %v", n, err)
		}
	}
}
