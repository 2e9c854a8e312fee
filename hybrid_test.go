// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"crypto/mlkem"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/record"
)

// helloRelay listens on a port of its own and relays each connection to target, recording the
// first frame of each direction (the ClientHello and the server's answer) after passing it
// through the tamper functions, which may change it in place.
type helloRelay struct {
	ln                   net.Listener
	target               string
	tamperC2S, tamperS2C func([]byte)
	mu                   sync.Mutex
	hellos               [][2][]byte // per connection: ClientHello, ServerHello (as relayed)
}

func startHelloRelay(t *testing.T, target string) *helloRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &helloRelay{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.relay(c)
		}
	}()
	return r
}

// readFrame reads one frame.
func readFrame(c net.Conn) ([]byte, error) {
	f := make([]byte, record.HeaderLen)
	if _, err := io.ReadFull(c, f); err != nil {
		return nil, err
	}
	f = append(f, make([]byte, int(f[1])<<8|int(f[2]))...)
	_, err := io.ReadFull(c, f[record.HeaderLen:])
	return f, err
}

func (r *helloRelay) relay(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	defer s.Close()
	r.mu.Lock()
	i := len(r.hellos)
	r.hellos = append(r.hellos, [2][]byte{})
	tc, ts := r.tamperC2S, r.tamperS2C
	r.mu.Unlock()
	pass := func(dst, src net.Conn, dir int, tamper func([]byte)) {
		defer dst.Close()
		f, err := readFrame(src)
		if err != nil {
			return
		}
		if tamper != nil {
			tamper(f)
		}
		r.mu.Lock()
		r.hellos[i][dir] = bytes.Clone(f)
		r.mu.Unlock()
		if _, err := dst.Write(f); err != nil {
			return
		}
		_, _ = io.Copy(dst, src)
	}
	done := make(chan struct{})
	go func() { pass(s, c, 0, tc); close(done) }()
	pass(c, s, 1, ts)
	<-done
}

func (r *helloRelay) last() [2][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hellos[len(r.hellos)-1]
}

// transcriptHash recomputes a full handshake's handshake hash from its two hellos alone, as
// docs/PROTOCOL.md §3.2 specifies it: everything NNhfs hashes is on the wire (the prologue, the
// client's X25519 and ML-KEM keys, the server's X25519 key, the ciphertext as encrypted, the
// tag).
func transcriptHash(clientHello, serverHello []byte) []byte {
	noise1 := clientHello[len(clientHello)-handshake.NoiseMessage1Full:]
	noise2 := serverHello[record.HeaderLen+1:]
	name := sha256.Sum256([]byte("Noise_NNhfs_25519+MLKEM768_AESGCM_SHA256"))
	h := name[:]
	mix := func(d []byte) {
		s := sha256.New()
		s.Write(h)
		s.Write(d)
		h = s.Sum(nil)
	}
	mix(clientHello[:len(clientHello)-handshake.NoiseMessage1Full]) // prologue
	mix(noise1[:32])                                                // e
	mix(noise1[32:])                                                // e1: ek, in clear
	mix(nil)                                                        // empty payload
	mix(noise2[:32])                                                // e
	mix(noise2[32 : 32+handshake.KEMCtLen+16])                      // ekem1: the encrypted ciphertext
	mix(noise2[32+handshake.KEMCtLen+16:])                          // the payload's tag
	return h
}

// TestOpenSSHAgentHandshakeIsHybrid runs full handshakes signed by a stock OpenSSH ssh-agent
// through a relay that sees the wire, and checks that they are hybrid: the ClientHello is
// version 3 and carries an ML-KEM-768 encapsulation key that crypto/mlkem parses, the
// ServerHello carries the 1088-byte ciphertext (encrypted), and the handshake hash the user
// signed through the agent is the one recomputed from those bytes, so the transcript covers
// both. Altering the encapsulation key or the ciphertext in flight fails the handshake. A
// resumption's ClientHello carries an encapsulation key too (for a hybrid fallback).
func TestOpenSSHAgentHandshakeIsHybrid(t *testing.T) {
	dir := t.TempDir()
	keyPath, pub := sshKeygen(t, dir, "ed25519")
	sock := startOpenSSHAgent(t)
	sshAdd(t, sock, keyPath)
	ts := newTestServer(t, nil)
	ts.keys["alice"] = append(ts.keys["alice"], pub)
	ts.serveEcho()
	relay := startHelloRelay(t, ts.addr)
	addr := relay.ln.Addr().String()
	known := filepath.Join(dir, "known_hosts")
	if err := Trust(known, addr, ts.hostPub); err != nil {
		t.Fatal(err)
	}
	full := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: known, DisableResumption: true}

	c, err := Dial("tcp", addr, full)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	stmt, _ := c.Identity().Authenticator()
	c.Close()
	hellos := relay.last()
	ch, sh := hellos[0], hellos[1]
	if len(ch) != record.HeaderLen+1227 || ch[record.HeaderLen+7] != 3 || ch[record.HeaderLen+8] != handshake.ModeFull {
		t.Fatalf("ClientHello of %d bytes, version %d, mode %d; want a 1227-byte version-3 full-mode body", len(ch)-record.HeaderLen, ch[record.HeaderLen+7], ch[record.HeaderLen+8])
	}
	if _, err := mlkem.NewEncapsulationKey768(ch[len(ch)-handshake.KEMKeyLen:]); err != nil {
		t.Fatalf("the ClientHello's last 1184 bytes are not an ML-KEM-768 encapsulation key: %v", err)
	}
	if len(sh) != record.HeaderLen+1153 || sh[0] != record.FrameServerHello || sh[record.HeaderLen] != handshake.ModeFull {
		t.Fatalf("ServerHello of %d bytes; want a 1153-byte full-mode body", len(sh)-record.HeaderLen)
	}
	want := "handshake-hash " + hex.EncodeToString(transcriptHash(ch, sh)) + "\n"
	if !strings.Contains(string(stmt), want) {
		t.Fatalf("the signed statement does not name the hybrid transcript's hash %s:\n%s", want, stmt)
	}

	// Tampering, in flight, with the encapsulation key or with the ciphertext.
	for name, tamper := range map[string][2]func([]byte){
		"encapsulation key": {func(f []byte) { f[len(f)-500] ^= 0x01 }, nil},
		"ciphertext":        {nil, func(f []byte) { f[record.HeaderLen+1+32+500] ^= 0x01 }},
	} {
		relay.mu.Lock()
		relay.tamperC2S, relay.tamperS2C = tamper[0], tamper[1]
		relay.mu.Unlock()
		c, err := Dial("tcp", addr, full)
		if err == nil {
			err = c.Handshake()
			c.Close()
		}
		if err == nil {
			t.Fatalf("%s altered in flight: the handshake succeeded", name)
		}
	}
	relay.mu.Lock()
	relay.tamperC2S, relay.tamperS2C = nil, nil
	relay.mu.Unlock()

	// A resumption: its ClientHello carries e || ek || tag.
	resume := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: known, TicketCache: NewMemoryTicketCache(4)}
	if id := dialEcho(t, addr, resume); id.Resumed {
		t.Fatal("first connection resumed")
	}
	if id := dialEcho(t, addr, resume); !id.Resumed {
		t.Fatal("second connection did not resume")
	}
	hellos = relay.last()
	ch, sh = hellos[0], hellos[1]
	ticketLen := int(ch[record.HeaderLen+9])<<8 | int(ch[record.HeaderLen+10])
	if ch[record.HeaderLen+8] != handshake.ModeResume || len(ch) != record.HeaderLen+11+ticketLen+handshake.NoiseMessage1Resume ||
		len(sh) != record.HeaderLen+49 || sh[record.HeaderLen] != handshake.ModeResume {
		t.Fatalf("resumption: ClientHello of %d bytes (ticket %d), ServerHello of %d", len(ch)-record.HeaderLen, ticketLen, len(sh)-record.HeaderLen)
	}
	if _, err := mlkem.NewEncapsulationKey768(ch[len(ch)-16-handshake.KEMKeyLen : len(ch)-16]); err != nil {
		t.Fatalf("the resume-mode ClientHello carries no ML-KEM-768 encapsulation key: %v", err)
	}
}
