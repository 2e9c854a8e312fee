// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"bytes"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"testing"
	"time"
	"ubns.dev/netauth/internal/identity"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

type keySigner struct{ s ssh.Signer }

func (k keySigner) PublicKey() ssh.PublicKey { return k.s.PublicKey() }
func (k keySigner) SignStatement(stmt []byte) ([]byte, error) {
	return keys.Sign(k.s, Namespace, stmt)
}

func newSigner(t testing.TB) keySigner {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return keySigner{s}
}

func randomEphemeral() (x25519.KeyPair, error) { return x25519.Generate(rand.Reader) }

// fullMessage1 returns a well-formed full-mode Noise message 1 (NNhfs: e || ek) with fresh
// keys, as a client that is gone after sending it would leave.
func fullMessage1(t testing.TB) []byte {
	t.Helper()
	kp, err := x25519.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		t.Fatal(err)
	}
	return append(kp.Public[:], dk.EncapsulationKey().Bytes()...)
}

// env is a server and client configuration pair for tests.
type env struct {
	srv     *ServerConfig
	cli     *ClientConfig
	allowed map[string]ssh.PublicKey
}

// eligibleKey is an Eligible that finds the user's key: the one keyOf returns, if its hash is
// the one wanted.
func eligibleKey(keyOf func(user string) ssh.PublicKey) func(*Result) error {
	return func(r *Result) error {
		if k := keyOf(r.User); k != nil && identity.KeyHash(k) == r.KeyHash {
			r.SetKey(k)
			return nil
		}
		return errors.New("key not listed")
	}
}

// admitting is an Authorize that admits, with no admission, what check allows.
func admitting(check func(*Result) error) func(*Result) (any, error) {
	return func(r *Result) (any, error) { return nil, check(r) }
}

// admitAll is an Authorize that admits everyone, with no admission.
func admitAll(*Result) (any, error) { return nil, nil }

func newEnv(t testing.TB) *env {
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	user := newSigner(t)
	e := &env{allowed: map[string]ssh.PublicKey{"alice": user.PublicKey()}}
	e.srv = &ServerConfig{
		HostKey:   hostKey,
		Service:   "echo",
		Tickets:   NewTicketKeys(time.Hour, rand.Reader),
		Eligible:  eligibleKey(func(user string) ssh.PublicKey { return e.allowed[user] }),
		Replay:    NewReplayCache(0),
		Ephemeral: randomEphemeral,
	}
	e.srv.Authorize = admitting(e.srv.Eligible)
	hostPub, _ := ssh.NewPublicKey(hostKey.Public())
	e.cli = &ClientConfig{
		User:   "alice",
		Signer: user,
		CheckHostKey: func(k ssh.PublicKey, _ string) error {
			if !bytes.Equal(k.Marshal(), hostPub.Marshal()) {
				return errors.New("wrong host key")
			}
			return nil
		},
		Ephemeral: randomEphemeral,
	}
	return e
}

type outcome struct {
	cli     *Client
	cliErr  error
	srv     *Result
	srvErr  error
	cliConn *record.Conn
	srvConn *record.Conn
}

// run performs one handshake over loopback TCP and returns both sides' results.
func (e *env) run(t testing.TB) *outcome {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := &outcome{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			o.srvErr = err
			return
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		o.srvConn = record.NewConn(c)
		o.srv, o.srvErr = RunServer(o.srvConn, e.srv)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	o.cliConn = record.NewConn(c)
	o.cli, o.cliErr = RunClient(o.cliConn, e.cli)
	<-done
	t.Cleanup(func() { o.cliConn.Close(); o.srvConn.Close() })
	return o
}

func TestFullThenResume(t *testing.T) {
	e := newEnv(t)
	o, sess := e.fullSession(t)
	if o.srv.Resumed || o.srv.User != "alice" || !bytes.Equal(o.srv.HandshakeHash, o.cli.Result.HandshakeHash) {
		t.Fatalf("server result %+v", o.srv)
	}
	if _, err := keys.Verify(o.srv.Signature, Namespace, o.srv.Statement); err != nil {
		t.Fatalf("recorded authenticator does not verify: %v", err)
	}
	// Application data both ways.
	go o.srvConn.Write([]byte("pong"))
	if _, err := o.cliConn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(o.srvConn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if _, err := io.ReadFull(o.cliConn, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}

	// Resume with the session.
	sess2, err := ParseSession(sess.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	e.cli.Session = sess2
	o2 := e.run(t)
	if o2.cliErr != nil || o2.srvErr != nil {
		t.Fatalf("resume: client %v, server %v", o2.cliErr, o2.srvErr)
	}
	if !o2.srv.Resumed || !o2.cli.Result.Resumed || o2.srv.User != "alice" {
		t.Fatalf("not resumed: server %+v client %+v", o2.srv, o2.cli.Result)
	}
	if s, err := o2.cli.ReadVerdict(time.Now()); err != nil || s != nil {
		t.Fatalf("resumption verdict: session %v, %v (want accepted, no new ticket)", s, err)
	}
	if bytes.Equal(o2.srv.HandshakeHash, o.srv.HandshakeHash) {
		t.Fatal("resumed handshake reused the handshake hash")
	}

	// Revoking the key makes the server refuse the ticket and fall back to a full handshake,
	// which then refuses the user.
	delete(e.allowed, "alice")
	o3 := e.run(t)
	if o3.cliErr != nil {
		t.Fatalf("fallback: %v", o3.cliErr)
	}
	if o3.cli.Result.Resumed || !o3.cli.Result.Offered {
		t.Fatalf("expected fallback to a full handshake: %+v", o3.cli.Result)
	}
	_, err = o3.cli.ReadVerdict(time.Now())
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeNotAuthorized {
		t.Fatalf("client error %v, want not authorized", err)
	}
	var r *Refusal
	if !errors.As(o3.srvErr, &r) || r.Code != CodeNotAuthorized {
		t.Fatalf("server error %v", o3.srvErr)
	}
}
