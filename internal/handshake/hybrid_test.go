// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/mlkem"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// relayFrames copies frames from src to dst, passing the i-th frame through tamper (which may
// change it in place or return another), until src ends; then it closes dst.
func relayFrames(src, dst net.Conn, tamper func(i int, f []byte) []byte) {
	defer dst.Close()
	for i := 0; ; i++ {
		hdr := make([]byte, record.HeaderLen)
		if _, err := io.ReadFull(src, hdr); err != nil {
			return
		}
		body := make([]byte, int(hdr[1])<<8|int(hdr[2]))
		if _, err := io.ReadFull(src, body); err != nil {
			return
		}
		f := append(hdr, body...)
		if tamper != nil {
			f = tamper(i, f)
		}
		if _, err := dst.Write(f); err != nil {
			return
		}
	}
}

// runRelayed runs one handshake (with the verdict) between e's client and server through a
// relay that may alter frames in either direction, and returns both sides' errors.
func runRelayed(t *testing.T, e *env, c2s, s2c func(int, []byte) []byte) (cli *Client, cliErr error, srv *Result, srvErr error) {
	t.Helper()
	cConn, rc := net.Pipe()
	rs, sConn := net.Pipe()
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range []net.Conn{cConn, rc, rs, sConn} {
		_ = c.SetDeadline(deadline)
	}
	var wg sync.WaitGroup
	wg.Go(func() { relayFrames(rc, rs, c2s) })
	wg.Go(func() { relayFrames(rs, rc, s2c) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv, srvErr = RunServer(record.NewConn(sConn), e.srv)
		sConn.Close()
	}()
	cli, cliErr = RunClient(record.NewConn(cConn), e.cli)
	if cliErr == nil && cli.Pending() {
		_, cliErr = cli.ReadVerdict(time.Now())
	}
	cConn.Close()
	<-done
	wg.Wait()
	return cli, cliErr, srv, srvErr
}

// ekOffset is where the encapsulation key starts in a ClientHello frame of either mode.
func ekOffset(hello []byte) int {
	end := len(hello)
	if hello[record.HeaderLen+len(Magic)+1] == ModeResume {
		end -= 16
	}
	return end - KEMKeyLen
}

// TestTamperedKEMFieldsFail alters, in flight, each byte range of the hybrid exchange that the
// transcript covers: the client's encapsulation key (a byte at its start, middle and end, so
// that it still parses or not) and the server's encrypted ciphertext (and the tag after it).
// Every alteration fails the handshake, before any authenticator is sent; untouched, the same
// relay passes.
func TestTamperedKEMFieldsFail(t *testing.T) {
	e := newEnv(t)
	if _, cliErr, _, srvErr := runRelayed(t, e, nil, nil); cliErr != nil || srvErr != nil {
		t.Fatalf("untampered: client %v, server %v", cliErr, srvErr)
	}
	for _, at := range []int{0, 1, KEMKeyLen / 2, KEMKeyLen - 33, KEMKeyLen - 1} {
		_, cliErr, _, srvErr := runRelayed(t, e, func(i int, f []byte) []byte {
			if i == 0 {
				f[ekOffset(f)+at] ^= 0x10
			}
			return f
		}, nil)
		if cliErr == nil || srvErr == nil {
			t.Fatalf("encapsulation key byte %d altered: client %v, server %v", at, cliErr, srvErr)
		}
		var r *Refusal
		if strings.Contains(cliErr.Error(), "refused") {
			// Altered into an unreduced coefficient: the server refuses it outright.
			if !errors.As(srvErr, &r) || r.Code != CodeProtocolError {
				t.Fatalf("encapsulation key byte %d: server %v", at, srvErr)
			}
		} else if !strings.Contains(cliErr.Error(), "ServerHello failed authentication") {
			t.Fatalf("encapsulation key byte %d: client %v", at, cliErr)
		}
	}
	// Message 2: e (32) || ENCRYPT(ct) (1088 + 16) || tag (16), after the mode byte.
	for _, at := range []int{DHLen, DHLen + KEMCtLen/2, DHLen + KEMCtLen - 1, DHLen + KEMCtLen, DHLen + KEMCtLen + 16} {
		_, cliErr, _, srvErr := runRelayed(t, e, nil, func(i int, f []byte) []byte {
			if i == 0 {
				f[record.HeaderLen+1+at] ^= 1
			}
			return f
		})
		if cliErr == nil || !strings.Contains(cliErr.Error(), "ServerHello failed authentication") || srvErr == nil {
			t.Fatalf("ServerHello byte %d altered: client %v, server %v", at, cliErr, srvErr)
		}
	}
}

// TestServerHelloCiphertextSize checks that a full-mode ServerHello whose ciphertext is a byte
// short or long fails the client's handshake before it processes it.
func TestServerHelloCiphertextSize(t *testing.T) {
	e := newEnv(t)
	for _, delta := range []int{-1, 1} {
		_, cliErr, _, _ := runRelayed(t, e, nil, func(i int, f []byte) []byte {
			if i != 0 {
				return f
			}
			n := len(f) - record.HeaderLen + delta
			out := append([]byte{f[0], byte(n >> 8), byte(n)}, f[record.HeaderLen:record.HeaderLen+1+DHLen]...)
			ct := f[record.HeaderLen+1+DHLen : len(f)-16]
			if delta < 0 {
				ct = ct[:len(ct)-1]
			} else {
				ct = append(append([]byte(nil), ct...), 0)
			}
			return append(append(out, ct...), f[len(f)-16:]...)
		})
		// One byte short: a malformed ServerHello; one byte long: more than MaxServerHello.
		if cliErr == nil || !(strings.Contains(cliErr.Error(), "bad ServerHello") || errors.Is(cliErr, record.ErrFrameTooLarge)) {
			t.Fatalf("ciphertext %+d byte: client %v", delta, cliErr)
		}
	}
}

// countingCore counts the calls of a ServerConfig's ephemeral key source and encapsulation.
type countingCore struct {
	ephemerals, encapsulations atomic.Int64
}

func (c *countingCore) install(cfg *ServerConfig) {
	cfg.Ephemeral = func() (x25519.KeyPair, error) { c.ephemerals.Add(1); return x25519.Generate(rand.Reader) }
	cfg.Encapsulate = func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		c.encapsulations.Add(1)
		return kem.Encapsulate(ek)
	}
}

// TestEncapsulationKeyCheckedFirst checks that a ClientHello whose encapsulation key has the
// wrong size, or the right size but fails FIPS 203's modulus check, is refused with
// protocol_error before any KEM operation: a wrong size before the core draws an ephemeral key
// (the Noise state that parses the key comes after it) or parses anything, a malformed key
// before any encapsulation. Both through the wire and at the core, as netauthd's monitor is
// called.
func TestEncapsulationKeyCheckedFirst(t *testing.T) {
	e := newEnv(t)
	var n countingCore
	n.install(e.srv)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	good := fullMessage1(t)
	malformed := bytes.Clone(good)
	malformed[DHLen], malformed[DHLen+1] = 0xff, malformed[DHLen+1]|0x0f
	if _, err := kem.ParseEncapsulationKey(malformed[DHLen:]); !errors.Is(err, kem.ErrMalformedKey) {
		t.Fatal("the test's malformed key parses")
	}
	cases := []struct {
		name      string
		noise     []byte
		wantEphem int64 // ephemeral keys drawn: 0 for a size refused before the Noise state
	}{
		{"one byte short", good[:len(good)-1], 0},
		{"one byte long", append(bytes.Clone(good), 0), 0},
		{"ephemeral key only (version 2's message)", good[:DHLen], 0},
		{"malformed", malformed, 1},
	}
	for _, c := range cases {
		n.ephemerals.Store(0)
		n.encapsulations.Store(0)
		// At the core.
		_, err := core.Begin(&BeginRequest{Mode: ModeFull, Noise: c.noise})
		var r *Refusal
		if !errors.As(err, &r) || r.Code != CodeProtocolError {
			t.Fatalf("%s: Begin: %v, want protocol_error", c.name, err)
		}
		if got := n.ephemerals.Load(); got != c.wantEphem || n.encapsulations.Load() != 0 {
			t.Fatalf("%s: Begin drew %d ephemeral keys (want %d) and encapsulated %d times", c.name, got, c.wantEphem, n.encapsulations.Load())
		}
		// Through the wire: the framing side refuses a wrong size itself.
		hello := frame(record.FrameClientHello, (&clientHello{Version: Version, Mode: ModeFull, Noise: c.noise}).body())
		conn := &fzConn{in: hello}
		_, err = RunServer(record.NewConn(conn), e.srv)
		if !errors.As(err, &r) || r.Code != CodeProtocolError ||
			!bytes.Equal(conn.out.Bytes(), []byte{record.FrameAlert, 0, AlertLen, byte(CodeProtocolError), Version}) {
			t.Fatalf("%s: server %v, sent % x", c.name, err, conn.out.Bytes())
		}
		if got := n.ephemerals.Load(); got != 2*c.wantEphem || n.encapsulations.Load() != 0 {
			t.Fatalf("%s: the server drew %d ephemeral keys and encapsulated %d times", c.name, got, n.encapsulations.Load())
		}
	}
	// The same at resume mode: a wrong size is refused before anything; a malformed key is
	// ignored when the server resumes (exercised in TestFuzzSeedOutcomes) and refused when it
	// falls back, as here (the ticket does not open).
	for _, c := range []struct {
		name  string
		noise []byte
		want  int64
	}{
		{"resume, one byte short", append(bytes.Clone(good[:len(good)-1]), make([]byte, 16)...), 0},
		{"resume, malformed, fallback", append(bytes.Clone(malformed), make([]byte, 16)...), 1},
	} {
		n.ephemerals.Store(0)
		_, err := core.Begin(&BeginRequest{Mode: ModeResume, Ticket: make([]byte, 100), Noise: c.noise})
		var r *Refusal
		if !errors.As(err, &r) || r.Code != CodeProtocolError || n.ephemerals.Load() != c.want || n.encapsulations.Load() != 0 {
			t.Fatalf("%s: Begin: %v, %d ephemeral keys, %d encapsulations", c.name, err, n.ephemerals.Load(), n.encapsulations.Load())
		}
	}
	// And a good key: one of each.
	n.ephemerals.Store(0)
	if _, err := core.Begin(&BeginRequest{Mode: ModeFull, Noise: good}); err != nil || n.ephemerals.Load() != 1 || n.encapsulations.Load() != 1 {
		t.Fatalf("good key: %v, %d ephemeral keys, %d encapsulations", err, n.ephemerals.Load(), n.encapsulations.Load())
	}
}

// TestHybridSecretKeysTheSession checks, end to end, that the ML-KEM shared secret keys the
// session: a server whose encapsulation mixes a secret other than its ciphertext's (the same
// X25519 keys, the same transcript up to then) fails the handshake at the client, and one
// whose ciphertext differs (another encapsulation) yields another handshake hash.
func TestHybridSecretKeysTheSession(t *testing.T) {
	e := newEnv(t)
	ce, _ := x25519.Generate(rand.Reader)
	se, _ := x25519.Generate(rand.Reader)
	dk, _ := mlkem.GenerateKey768()
	e.cli.Ephemeral = func() (x25519.KeyPair, error) { return ce, nil }
	e.srv.Ephemeral = func() (x25519.KeyPair, error) { return se, nil }
	e.cli.KEM = func() (*mlkem.DecapsulationKey768, error) { return dk, nil }
	e.srv.Replay = nil // the same client keys twice
	var hashes [][]byte
	for range 2 {
		e.srv.Encapsulate = nil
		cli, cliErr, _, srvErr := runRelayed(t, e, nil, nil)
		if cliErr != nil || srvErr != nil {
			t.Fatalf("client %v, server %v", cliErr, srvErr)
		}
		hashes = append(hashes, cli.Result.HandshakeHash)
	}
	if bytes.Equal(hashes[0], hashes[1]) {
		t.Fatal("two encapsulations to one key, with the same X25519 keys, gave one handshake hash")
	}
	e.srv.Encapsulate = func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		shared, ct, err := kem.Encapsulate(ek)
		shared[31] ^= 1
		return shared, ct, err
	}
	if _, cliErr, _, _ := runRelayed(t, e, nil, nil); cliErr == nil || !strings.Contains(cliErr.Error(), "ServerHello failed authentication") {
		t.Fatalf("a server mixing another KEM secret: client %v", cliErr)
	}
}

// TestVersion2TicketFallsBack seals a ticket of format 2, as a version-2 server sharing these
// ticket keys would have issued after an X25519-only full handshake: it does not open, so a
// client offering it gets a (hybrid) full handshake, never a resumption keyed by that secret.
func TestVersion2TicketFallsBack(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	sealAt(t, e.srv.Tickets, now) // makes the current key
	c := testTicket()
	c.Issued, c.Expiry = uint64(now.Unix()), uint64(now.Add(time.Hour).Unix())
	c.KeyHash = [32]byte{}
	copy(c.Secret[:], bytes.Repeat([]byte{7}, 32))
	pt := c.marshal()
	if pt[0] != 3 {
		t.Fatalf("this version seals ticket format %d, want 3", pt[0])
	}
	pt[0] = 2
	k := e.srv.Tickets.keys[0]
	block, _ := aes.NewCipher(k.key[:])
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, ticketNonceLen)
	ticket := gcm.Seal(append(k.id[:len(k.id):len(k.id)], nonce...), nonce, pt, append([]byte(ticketAD), k.id[:]...))
	if _, err := e.srv.Tickets.open(ticket, now); !errors.Is(err, ErrTicketInvalid) {
		t.Fatalf("format-2 ticket: open: %v, want ErrTicketInvalid", err)
	}
	pt[0] = 3
	if _, err := e.srv.Tickets.open(gcm.Seal(append(k.id[:len(k.id):len(k.id)], nonce...), nonce, pt, append([]byte(ticketAD), k.id[:]...)), now); err != nil {
		t.Fatalf("the same ticket in format 3: %v", err)
	}
	e.cli.Session = &Session{Ticket: ticket, Secret: c.Secret[:], Expiry: now.Add(time.Hour), HostKey: make([]byte, 1), UserKey: make([]byte, 1), Service: "echo", User: "alice"}
	cli, cliErr, srv, srvErr := runRelayed(t, e, nil, nil)
	if cliErr != nil || srvErr != nil || !cli.Result.Offered || cli.Result.Resumed || srv.Resumed {
		t.Fatalf("client %v, server %v; want a full handshake after the offered ticket", cliErr, srvErr)
	}
}
