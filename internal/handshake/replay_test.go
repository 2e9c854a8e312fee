// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"bytes"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// rpConn wraps a client's connection: it records what the client reads (the server's
// bytes) and writes, and can replace the n-th Write with other bytes.
type rpConn struct {
	net.Conn
	mu      sync.Mutex
	read    bytes.Buffer
	writes  [][]byte
	replace map[int][]byte // index of a Write -> bytes sent instead
}

func (c *rpConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *rpConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	i := len(c.writes)
	c.writes = append(c.writes, append([]byte(nil), p...))
	sub, ok := c.replace[i]
	c.mu.Unlock()
	if ok {
		if _, err := c.Conn.Write(sub); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// rpOutcome is both sides' view of one handshake.
type rpOutcome struct {
	cli        *Client
	cliErr     error // from RunClient, else from ReadVerdict
	session    *Session
	srv        *Result
	srvErr     error
	fromServer []byte // every byte the server sent
	conn       *rpConn
}

// rpRun runs one handshake over loopback TCP with e's configurations. The client's
// connection is an rpConn replacing the Writes in replace; the server closes its end when
// its handshake ends, and everything it sent is collected.
func rpRun(t *testing.T, e *env, replace map[int][]byte) *rpOutcome {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := &rpOutcome{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			o.srvErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		o.srv, o.srvErr = RunServer(record.NewConn(c), e.srv)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	o.conn = &rpConn{Conn: nc, replace: replace}
	rc := record.NewConn(o.conn)
	o.cli, o.cliErr = RunClient(rc, e.cli)
	if o.cliErr == nil && o.cli.Pending() {
		o.session, o.cliErr = o.cli.ReadVerdict(time.Now())
	}
	<-done
	// Collect anything the record layer had not read, up to the server's close.
	_, _ = io.Copy(io.Discard, o.conn)
	o.fromServer = o.conn.read.Bytes()
	return o
}

// rpCheckRefusalBytes checks that a full handshake's server sent exactly its ServerHello,
// its ServerAuth record and a verdict record the size of a bare code: nothing from the
// client is echoed.
func rpCheckRefusalBytes(t *testing.T, e *env, out []byte) {
	t.Helper()
	hostPub, _ := ssh.NewPublicKey(e.srv.HostKey.Public())
	sa := (&serverAuth{HostKey: hostPub.Marshal(), Signature: make([]byte, MaxHostSigLen), Service: e.srv.Service}).marshal()
	want := []int{
		MaxServerHello,
		len(sa) + 1 + record.TagLen,
		len((&verdict{Code: CodeAuthFailed}).marshal()) + 1 + record.TagLen,
	}
	types := []byte{record.FrameServerHello, record.FrameRecord, record.FrameRecord}
	fr := fzFrames(out)
	if len(fr) != len(want) {
		t.Fatalf("server sent %d frames (%d bytes), want ServerHello, ServerAuth and a verdict", len(fr), len(out))
	}
	for i, f := range fr {
		if f[0] != types[i] || len(f)-record.HeaderLen != want[i] {
			t.Fatalf("server frame %d: type 0x%02x, %d bytes; want type 0x%02x, %d bytes", i, f[0], len(f)-record.HeaderLen, types[i], want[i])
		}
	}
}

// replaySigner "signs" by returning a signature captured from another connection.
type replaySigner struct {
	pub ssh.PublicKey
	sig []byte
}

func (s replaySigner) PublicKey() ssh.PublicKey             { return s.pub }
func (s replaySigner) SignStatement([]byte) ([]byte, error) { return s.sig, nil }

// rpCapture runs an accepted full handshake and returns its server-side result and the
// bytes the client wrote.
func rpCapture(t *testing.T, e *env) (*Result, [][]byte) {
	t.Helper()
	o := rpRun(t, e, nil)
	if o.cliErr != nil || o.srvErr != nil {
		t.Fatalf("first connection: client %v, server %v", o.cliErr, o.srvErr)
	}
	if o.srv.Resumed || len(o.srv.Signature) == 0 {
		t.Fatalf("first connection: no authenticator recorded: %+v", o.srv)
	}
	return o.srv, o.conn.writes
}

func rpStatementTime(t *testing.T, stmt []byte) time.Time {
	t.Helper()
	st, err := keys.ParseStatement(stmt)
	if err != nil {
		t.Fatal(err)
	}
	return st.Time
}

// TestReplayedAuthenticator replays connection 1's SSHSIG authenticator (with its time, its
// user and its key) in the ClientAuth of connection 2. The signature covers connection 1's
// handshake hash, so it does not verify on connection 2.
func TestReplayedAuthenticator(t *testing.T) {
	e := newEnv(t)
	e.cli.Session = nil
	first, _ := rpCapture(t, e)
	when := rpStatementTime(t, first.Statement)

	e.cli.Signer = replaySigner{pub: first.Key, sig: first.Signature}
	e.cli.Now = func() time.Time { return when }
	o := rpRun(t, e, nil)
	var re *RefusedError
	if !errors.As(o.cliErr, &re) || re.Code != CodeAuthFailed {
		t.Fatalf("client: %v, want a refusal with code %v", o.cliErr, CodeAuthFailed)
	}
	if msg := o.cliErr.Error(); !strings.Contains(msg, "authentication failed") {
		t.Fatalf("client error %q does not say what failed", msg)
	}
	var r *Refusal
	if !errors.As(o.srvErr, &r) || r.Code != CodeAuthFailed || !strings.Contains(r.Reason, "does not verify") {
		t.Fatalf("server: %v, want an auth-failed refusal for a signature that does not verify", o.srvErr)
	}
	// The server keeps the evidence: who claimed what, and the signature it was shown.
	if r.User != "alice" || !bytes.Equal(r.Signature, first.Signature) || len(r.Statement) == 0 || bytes.Equal(r.Statement, first.Statement) {
		t.Fatalf("refusal record: user %q, signature kept %v, statement is new %v", r.User,
			bytes.Equal(r.Signature, first.Signature), !bytes.Equal(r.Statement, first.Statement))
	}
	rpCheckRefusalBytes(t, e, o.fromServer)
}

// TestReplayedAuthenticatorSameHash simulates a server whose ephemeral keys and
// encapsulations repeat (a broken random generator) and a client replaying the exact message 3
// of an earlier connection: the handshake hash is the same, so the signature verifies, and the
// replay cache is what refuses it.
func TestReplayedAuthenticatorSameHash(t *testing.T) {
	fixed := func(label string) func() (x25519.KeyPair, error) {
		kp, err := x25519.Generate(fzRand(label))
		return func() (x25519.KeyPair, error) { return kp, err }
	}
	e := newEnv(t)
	e.srv.Ephemeral, e.cli.Ephemeral = fixed("stuck server rng"), fixed("stuck client rng")
	dk, err := kem.Generate(fzRand("stuck client KEM rng"))
	if err != nil {
		t.Fatal(err)
	}
	e.cli.KEM = func() (*mlkem.DecapsulationKey768, error) { return dk, nil }
	e.srv.Encapsulate = func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		return mlkemtest.Encapsulate768(ek, make([]byte, 32))
	}
	first, _ := rpCapture(t, e)
	when := rpStatementTime(t, first.Statement)
	e.cli.Signer = replaySigner{pub: first.Key, sig: first.Signature}
	e.cli.Now = func() time.Time { return when }

	o := rpRun(t, e, nil)
	var re *RefusedError
	if !errors.As(o.cliErr, &re) || re.Code != CodeAuthFailed {
		t.Fatalf("client: %v, want a refusal with code %v", o.cliErr, CodeAuthFailed)
	}
	var r *Refusal
	if !errors.As(o.srvErr, &r) || r.Code != CodeAuthFailed || !strings.Contains(r.Reason, "replayed") {
		t.Fatalf("server: %v, want an auth-failed refusal for a replayed authenticator", o.srvErr)
	}
	if !bytes.Equal(r.Statement, first.Statement) {
		t.Fatal("the handshake hash differed: this test did not reach the replay cache")
	}
	rpCheckRefusalBytes(t, e, o.fromServer)

	// Control: the same replay against a server without a replay cache is accepted, so the
	// refusal above came from the cache.
	e.srv.Replay = nil
	if o := rpRun(t, e, nil); o.cliErr != nil || o.srvErr != nil {
		t.Fatalf("without a replay cache: client %v, server %v", o.cliErr, o.srvErr)
	}
}

// TestReplayedClientAuthRecord sends connection 1's encrypted ClientAuth record, byte for
// byte, as message 3 of connection 2: it is encrypted under connection 1's keys, so it fails
// authentication and the server refuses with a protocol error.
func TestReplayedClientAuthRecord(t *testing.T) {
	e := newEnv(t)
	_, writes := rpCapture(t, e)
	if len(writes) != 2 || writes[1][0] != record.FrameRecord {
		t.Fatalf("first connection wrote %d times; want ClientHello then ClientAuth", len(writes))
	}
	o := rpRun(t, e, map[int][]byte{1: writes[1]})
	var re *RefusedError
	if !errors.As(o.cliErr, &re) || re.Code != CodeProtocolError {
		t.Fatalf("client: %v, want a refusal with code %v", o.cliErr, CodeProtocolError)
	}
	var r *Refusal
	if !errors.As(o.srvErr, &r) || r.Code != CodeProtocolError || !errors.Is(r, record.ErrAuth) {
		t.Fatalf("server: %v, want a protocol-error refusal caused by record.ErrAuth", o.srvErr)
	}
	rpCheckRefusalBytes(t, e, o.fromServer)
}

func TestClockSkew(t *testing.T) {
	serverNow := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name   string
		skew   time.Duration // server setting; 0 means the default
		offset time.Duration // client clock minus server clock
		ok     bool
	}{
		{"in sync", 30 * time.Second, 0, true},
		{"ahead at the limit", 30 * time.Second, 30 * time.Second, true},
		{"behind at the limit", 30 * time.Second, -30 * time.Second, true},
		{"ahead past the limit", 30 * time.Second, 31 * time.Second, false},
		{"behind past the limit", 30 * time.Second, -31 * time.Second, false},
		{"default limit, ahead 5m", 0, DefaultMaxClockSkew, true},
		{"default limit, ahead 5m1s", 0, DefaultMaxClockSkew + time.Second, false},
		{"default limit, behind an hour", 0, -time.Hour, false},
		{"client clock at the epoch", 0, -serverNow.Sub(time.Unix(0, 0)), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.srv.MaxClockSkew = tc.skew
			e.srv.Now = func() time.Time { return serverNow }
			e.cli.Now = func() time.Time { return serverNow.Add(tc.offset) }
			o := rpRun(t, e, nil)
			if tc.ok {
				if o.cliErr != nil || o.srvErr != nil {
					t.Fatalf("client %v, server %v; want accepted", o.cliErr, o.srvErr)
				}
				return
			}
			var re *RefusedError
			if !errors.As(o.cliErr, &re) || re.Code != CodeClockSkew {
				t.Fatalf("client: %v, want a refusal with code %v", o.cliErr, CodeClockSkew)
			}
			if msg := o.cliErr.Error(); !strings.Contains(msg, "clock") {
				t.Fatalf("client error %q does not point at the clock", msg)
			}
			var r *Refusal
			if !errors.As(o.srvErr, &r) || r.Code != CodeClockSkew || !strings.Contains(r.Reason, "from server time") {
				t.Fatalf("server: %v, want a clock-skew refusal with the offset", o.srvErr)
			}
			if r.User != "alice" {
				t.Fatalf("refusal names user %q", r.User)
			}
			rpCheckRefusalBytes(t, e, o.fromServer)
		})
	}
}

// TestRefusalsCarryOnlyCodes checks that the verdict a client decrypts carries nothing but
// the code: no ticket, no secret, no lifetime.
func TestRefusalsCarryOnlyCodes(t *testing.T) {
	e := newEnv(t)
	delete(e.allowed, "alice")
	o := rpRun(t, e, nil)
	var re *RefusedError
	if !errors.As(o.cliErr, &re) || re.Code != CodeNotAuthorized || o.session != nil {
		t.Fatalf("client: %v, session %v; want not authorized and no session", o.cliErr, o.session)
	}
	if !strings.Contains(o.cliErr.Error(), "administrator") {
		t.Fatalf("client error %q does not say who can fix it", o.cliErr)
	}
	var r *Refusal
	if !errors.As(o.srvErr, &r) || r.Code != CodeNotAuthorized || !strings.Contains(r.Error(), "key not listed") {
		t.Fatalf("server: %v, want the detailed reason", o.srvErr)
	}
	if strings.Contains(o.cliErr.Error(), "key not listed") {
		t.Fatal("the server's reason reached the client")
	}
	rpCheckRefusalBytes(t, e, o.fromServer)
}
