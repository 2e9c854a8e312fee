// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// TestBeginModeSizeCrossings calls the core as netauthd's monitor does, with every crossing
// of mode, ticket and Noise message length a compromised acceptor could send (each within the
// monitor protocol's 1232-byte cap): a full mode carrying a resume-mode message (e || ek ||
// tag) or version 2's (e alone), a resume mode without the tag, with version 2's NNpsk0
// message (e || tag, no encapsulation key) or without a ticket, and an unknown mode. Each is
// refused with protocol_error before the core draws an ephemeral key or encapsulates: no
// crossing reaches an X25519-only handshake, nor any key work.
func TestBeginModeSizeCrossings(t *testing.T) {
	e := newEnv(t)
	var n countingCore
	n.install(e.srv)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	full := fullMessage1(t)
	tag := make([]byte, 16)
	resume := append(bytes.Clone(full), tag...)
	ticket := sealAt(t, e.srv.Tickets, time.Now())
	cases := []struct {
		name   string
		mode   byte
		ticket []byte
		noise  []byte
	}{
		{"full mode, e || ek || tag", ModeFull, nil, resume},
		{"full mode, e alone (version 2)", ModeFull, nil, full[:DHLen]},
		{"full mode, e || tag", ModeFull, nil, append(bytes.Clone(full[:DHLen]), tag...)},
		{"full mode with a ticket", ModeFull, ticket, full},
		{"resume mode, e || ek without the tag", ModeResume, ticket, full},
		{"resume mode, e || tag (version 2)", ModeResume, ticket, append(bytes.Clone(full[:DHLen]), tag...)},
		{"resume mode, no ticket", ModeResume, nil, resume},
		{"resume mode, ticket one byte over", ModeResume, make([]byte, MaxTicketSize+1), resume},
		{"mode 2", 2, nil, full},
		{"mode 2, resume-mode message", 2, ticket, resume},
	}
	for _, c := range cases {
		n.ephemerals.Store(0)
		n.encapsulations.Store(0)
		resp, err := core.Begin(&BeginRequest{Client: "192.0.2.1:1", Mode: c.mode, Ticket: c.ticket, Noise: c.noise})
		var r *Refusal
		if resp != nil || !errors.As(err, &r) || r.Code != CodeProtocolError {
			t.Fatalf("%s: Begin: response %v, %v; want protocol_error", c.name, resp != nil, err)
		}
		if n.ephemerals.Load() != 0 || n.encapsulations.Load() != 0 {
			t.Fatalf("%s: %d ephemeral keys drawn, %d encapsulations", c.name, n.ephemerals.Load(), n.encapsulations.Load())
		}
	}
}

// TestResumeHelloGarbageKeyCost measures, in key operations, what a resume-mode ClientHello
// whose encapsulation key is garbage (it fails FIPS 203's modulus check) costs the server:
// with a ticket that opens and the ticket's secret, the server resumes and touches no KEM
// (the key is ignored: one ephemeral, no encapsulation); with a ticket that does not open, or
// a genuine ticket without its secret (a ticket seen on the wire), the fallback refuses the
// key with protocol_error before any encapsulation. No path encapsulates to a malformed key,
// and none draws more than the one ephemeral key of any handshake.
func TestResumeHelloGarbageKeyCost(t *testing.T) {
	e := newEnv(t)
	sess := ticketFor(t, e)
	var n countingCore
	n.install(e.srv)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	garbage := func(req *BeginRequest) *BeginRequest {
		for i := DHLen; i < NoiseMessage1Full; i++ {
			req.Noise[i] = 0xff // every coefficient 4095 >= q
		}
		return req
	}
	wrongSecret := bytes.Repeat([]byte{9}, PSKLen)
	for _, c := range []struct {
		name    string
		req     *BeginRequest
		resumed bool
	}{
		{"valid ticket and secret", garbage(resumeHello(t, sess.Ticket, sess.Secret)), true},
		{"ticket that does not open", garbage(resumeHello(t, append(bytes.Clone(sess.Ticket[:len(sess.Ticket)-1]), sess.Ticket[len(sess.Ticket)-1]^1), sess.Secret)), false},
		{"genuine ticket, not its secret", garbage(resumeHello(t, sess.Ticket, wrongSecret)), false},
	} {
		n.ephemerals.Store(0)
		n.encapsulations.Store(0)
		resp, err := core.Begin(c.req)
		if c.resumed {
			if err != nil || resp == nil || !resp.Resumed {
				t.Fatalf("%s: Begin: response %v, %v; want a resumption", c.name, resp != nil, err)
			}
			core.Abort(resp.Session)
		} else {
			var r *Refusal
			if resp != nil || !errors.As(err, &r) || r.Code != CodeProtocolError {
				t.Fatalf("%s: Begin: response %v, %v; want protocol_error", c.name, resp != nil, err)
			}
		}
		if n.ephemerals.Load() != 1 || n.encapsulations.Load() != 0 {
			t.Fatalf("%s: %d ephemeral keys drawn, %d encapsulations; want 1 and 0", c.name, n.ephemerals.Load(), n.encapsulations.Load())
		}
	}
}

// TestClientRefusesResumeAnswerToFullHello is a server (or a man in the middle) answering a
// full-mode ClientHello with a ServerHello of resume mode, of the right size for it (48
// bytes, no ciphertext): the client, which holds no NNpsk0 state, refuses it and sends nothing
// after its ClientHello. The same ServerHello sent to a client that offered a ticket fails
// authentication: without the ticket's secret no resume-mode answer is accepted, so a server's
// choice of mode never completes a handshake without the ML-KEM secret or the ticket's.
func TestClientRefusesResumeAnswerToFullHello(t *testing.T) {
	e := newEnv(t)
	sess := ticketFor(t, e)
	se, err := x25519.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// e_s || 16 bytes: what an attacker without any secret can send.
	forged := append(append([]byte{ModeResume}, se.Public[:]...), make([]byte, 16)...)
	for _, offer := range []*Session{nil, sess} {
		e.cli.Session = offer
		conn := &fzConn{in: frame(record.FrameServerHello, forged)}
		_, err := RunClient(record.NewConn(conn), e.cli)
		want := "did not offer"
		if offer != nil {
			want = "ServerHello failed authentication"
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("offered ticket %v: client %v, want %q", offer != nil, err, want)
		}
		frames := fzFrames(conn.out.Bytes())
		if len(frames) != 1 || frames[0][0] != record.FrameClientHello {
			t.Fatalf("offered ticket %v: the client sent %d frames, want its ClientHello alone", offer != nil, len(frames))
		}
	}
}
