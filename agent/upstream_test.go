// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/testutil"
)

// startSSHAgent runs a stock OpenSSH ssh-agent in the foreground with extra
// environment variables and returns its socket and process. It is killed
// when the test ends.
func startSSHAgent(t *testing.T, env ...string) (string, *exec.Cmd) {
	t.Helper()
	needTools(t, "ssh-agent", "ssh-add", "ssh-keygen")
	return testutil.StartSSHAgent(t, env...)
}

// userCert makes a CA with ssh-keygen and signs a user certificate for the
// key at keyPath (written to keyPath-cert.pub, where ssh-add finds it).
func userCert(t *testing.T, dir, keyPath string) *ssh.Certificate {
	t.Helper()
	ca := filepath.Join(dir, "user_ca")
	sshKeygen(t, ca)
	testutil.SSHKeygen(t, "-q", "-s", ca, "-I", "alice-cert", "-n", "alice", "-V", "-5m:+1h", keyPath+".pub")
	pub := testutil.ReadPublicKey(t, keyPath+"-cert.pub")
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		t.Fatalf("%s-cert.pub is a %T", keyPath, pub)
	}
	return cert
}

// splitSSHSIG returns the public key blob and the signature of a binary
// SSHSIG signature (keys.ParseSSHSIG refuses certificate keys).
func splitSSHSIG(t *testing.T, blob []byte) ([]byte, *ssh.Signature) {
	t.Helper()
	rest, ok := bytes.CutPrefix(blob, []byte(sshsigMagic))
	if !ok {
		t.Fatal("not an SSHSIG blob")
	}
	var s struct {
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  string
		HashAlg   string
		Signature []byte
	}
	if err := ssh.Unmarshal(rest, &s); err != nil {
		t.Fatal(err)
	}
	if s.Namespace != Namespace || s.HashAlg != "sha512" {
		t.Fatalf("SSHSIG namespace %q hash %q", s.Namespace, s.HashAlg)
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(s.Signature, &sig); err != nil {
		t.Fatal(err)
	}
	return s.PublicKey, &sig
}

// authorizedLines parses ssh-add -L output into key blobs.
func authorizedLines(t *testing.T, out string) [][]byte {
	t.Helper()
	var blobs [][]byte
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			t.Fatalf("ssh-add -L line %q: %v", line, err)
		}
		blobs = append(blobs, pub.Marshal())
	}
	return blobs
}

// TestUpstreamOpenSSH chains the agent to a stock ssh-agent holding an
// Ed25519 key and a user certificate for it, and drives it with ssh-add
// and ssh-keygen.
func TestUpstreamOpenSSH(t *testing.T) {
	upSock, upCmd := startSSHAgent(t)
	dir := t.TempDir()
	upKey := filepath.Join(dir, "up")
	upPub := sshKeygen(t, upKey)
	cert := userCert(t, dir, upKey)
	if out, err := openSSH(upSock, nil, nil, "ssh-add", upKey); err != nil {
		t.Fatalf("ssh-add to ssh-agent: %v\n%s", err, out)
	}

	a := New(Options{Upstream: upSock, UpstreamTimeout: 2 * time.Second})
	ownKey, ownPub := newEd25519(t)
	if err := a.Add(ownKey); err != nil {
		t.Fatal(err)
	}
	sock := serve(t, a)
	if err := a.CheckUpstream(); err != nil {
		t.Fatalf("CheckUpstream: %v", err)
	}

	// ssh-add -L lists the agent's own key first, then the upstream's key
	// and certificate.
	out, err := openSSH(sock, nil, nil, "ssh-add", "-L")
	if err != nil {
		t.Fatalf("ssh-add -L: %v\n%s", err, out)
	}
	got := authorizedLines(t, out)
	want := [][]byte{ownPub.Marshal(), upPub.Marshal(), cert.Marshal()}
	if len(got) != len(want) {
		t.Fatalf("ssh-add -L lists %d identities, want 3:\n%s", len(got), out)
	}
	if !bytes.Equal(got[0], want[0]) {
		t.Errorf("ssh-add -L: first identity is not the agent's own key:\n%s", out)
	}
	for _, w := range want[1:] {
		if !bytes.Contains(bytes.Join(got[1:], []byte{0}), w) {
			t.Errorf("ssh-add -L does not list an upstream identity:\n%s", out)
		}
	}

	// netauth-sign with the upstream key, and with its certificate.
	c := dial(t, sock)
	stmt := statementFor(t, newHostKey(t))
	for _, pub := range []ssh.PublicKey{upPub, cert} {
		blob, err := SignStatement(c, pub, stmt)
		if err != nil {
			t.Fatalf("SignStatement with the upstream %s: %v", pub.Type(), err)
		}
		named, sig := splitSSHSIG(t, blob)
		if !bytes.Equal(named, pub.Marshal()) {
			t.Errorf("SSHSIG for the upstream %s names another key", pub.Type())
		}
		if err := upPub.Verify(keys.SignedData(Namespace, stmt), sig); err != nil {
			t.Errorf("signature by the upstream %s does not verify: %v", pub.Type(), err)
		}
	}

	// ssh-keygen -Y sign through the agent: the plain sign request is passed
	// on to the upstream.
	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := openSSH(sock, nil, nil, "ssh-keygen", "-Y", "sign", "-f", upKey+".pub", "-n", "file", msg); err != nil {
		t.Fatalf("ssh-keygen -Y sign with the upstream key: %v\n%s", err, out)
	}
	armored, err := os.ReadFile(msg + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	blob, err := keys.Unarmor(armored)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := keys.Verify(blob, "file", []byte("hello\n")); err != nil || !bytes.Equal(got.Marshal(), upPub.Marshal()) {
		t.Errorf("keys.Verify of ssh-keygen's signature: %v", err)
	}

	// ssh-add -d cannot remove an upstream key through the agent.
	if out, err := openSSH(sock, nil, nil, "ssh-add", "-d", upKey+".pub"); err == nil {
		t.Errorf("ssh-add -d of an upstream key succeeded:\n%s", out)
	}
	if out, _ := openSSH(upSock, nil, nil, "ssh-add", "-L"); !strings.Contains(out, strings.Fields(string(ssh.MarshalAuthorizedKey(upPub)))[1]) {
		t.Errorf("the upstream lost its key:\n%s", out)
	}

	// Locked, the agent lists and uses no upstream key either.
	if err := c.Lock([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	if l, err := c.List(); err != nil || len(l) != 0 {
		t.Errorf("locked: List = %d keys, %v; want none", len(l), err)
	}
	if _, err := c.Sign(upPub, []byte("data")); err == nil {
		t.Error("locked: signing with an upstream key succeeded")
	}
	if err := c.Unlock([]byte("pw")); err != nil {
		t.Fatal(err)
	}

	// The upstream dies: the agent's own key still lists and signs; the
	// upstream key gives an error naming the upstream.
	upCmd.Process.Kill()
	upCmd.Wait()
	l, err := c.List()
	if err != nil || len(l) != 1 || !bytes.Equal(l[0].Blob, ownPub.Marshal()) {
		t.Errorf("upstream gone: List = %v, %v; want the own key only", l, err)
	}
	if _, err := SignStatement(c, ownPub, stmt); err != nil {
		t.Errorf("upstream gone: signing with the own key: %v", err)
	}
	if _, err := SignStatement(c, upPub, stmt); err == nil {
		t.Error("upstream gone: signing with the upstream key succeeded")
	}
	_, err = a.Sign(upPub, []byte("data"))
	if err == nil || !strings.Contains(err.Error(), "upstream agent at "+upSock) {
		t.Errorf("upstream gone: Sign error %v does not name the upstream agent", err)
	}
}

// TestUpstreamConfirmation: a key added to the upstream with ssh-add -c
// asks the user (through SSH_ASKPASS) for every signature made through the
// agent; approval signs, refusal fails.
func TestUpstreamConfirmation(t *testing.T) {
	dir := t.TempDir()
	answer := filepath.Join(dir, "answer")
	asked := filepath.Join(dir, "asked")
	askpass := filepath.Join(dir, "askpass")
	script := "#!/bin/sh\necho \"$1\" >> " + asked + "\nexec test \"$(cat " + answer + ")\" = yes\n"
	if err := os.WriteFile(askpass, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	upSock, _ := startSSHAgent(t, "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=:0")
	upKey := filepath.Join(dir, "up")
	upPub := sshKeygen(t, upKey)
	if out, err := openSSH(upSock, nil, nil, "ssh-add", "-c", upKey); err != nil {
		t.Fatalf("ssh-add -c: %v\n%s", err, out)
	}
	a := New(Options{Upstream: upSock})
	c := dial(t, serve(t, a))
	stmt := statementFor(t, newHostKey(t))

	if err := os.WriteFile(answer, []byte("yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	blob, err := SignStatement(c, upPub, stmt)
	if err != nil {
		t.Fatalf("approved: SignStatement: %v", err)
	}
	if _, err := keys.Verify(blob, Namespace, stmt); err != nil {
		t.Errorf("approved: signature does not verify: %v", err)
	}
	if b, _ := os.ReadFile(asked); len(b) == 0 {
		t.Fatal("the upstream signed without asking")
	}

	if err := os.WriteFile(answer, []byte("no\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := SignStatement(c, upPub, stmt); err == nil {
		t.Error("denied: SignStatement succeeded")
	}
	_, err = a.Sign(upPub, []byte("data"))
	if err == nil || !strings.Contains(err.Error(), "declined") {
		t.Errorf("denied: Sign error %v does not say the upstream refused or the user declined", err)
	}
	if b, _ := os.ReadFile(asked); strings.Count(string(b), "\n") < 3 {
		t.Errorf("the upstream asked %d times, want 3:\n%s", strings.Count(string(b), "\n"), b)
	}
}

// TestUpstreamLoop: an agent whose upstream is itself, or a chain of
// netauth agents back to itself, refuses it and still serves its own keys
// without hanging.
func TestUpstreamLoop(t *testing.T) {
	// Two agents chained to each other.
	lnA, sockA, err := Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lnB, sockB, err := Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := New(Options{Upstream: sockB, Socket: sockA, UpstreamTimeout: 5 * time.Second})
	b := New(Options{Upstream: sockA, Socket: sockB, UpstreamTimeout: 5 * time.Second})
	keyA, pubA := newEd25519(t)
	if err := a.Add(keyA); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Serve(ctx, lnA)
	go b.Serve(ctx, lnB)

	start := time.Now()
	if err := a.CheckUpstream(); !errors.Is(err, ErrUpstreamLoop) {
		t.Errorf("A→B→A: CheckUpstream = %v, want ErrUpstreamLoop", err)
	}
	if err := b.CheckUpstream(); !errors.Is(err, ErrUpstreamLoop) {
		t.Errorf("B→A→B: CheckUpstream = %v, want ErrUpstreamLoop", err)
	}
	c := dial(t, sockA)
	l, err := c.List()
	if err != nil || len(l) != 1 || !bytes.Equal(l[0].Blob, pubA.Marshal()) {
		t.Errorf("A→B→A: List = %v, %v; want A's own key", l, err)
	}
	_, other := newEd25519(t)
	if _, err := a.Sign(other, []byte("x")); !errors.Is(err, ErrUpstreamLoop) {
		t.Errorf("A→B→A: Sign with an unknown key = %v, want ErrUpstreamLoop", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("loop detection took %v; it waited for a timeout", took)
	}

	// An agent whose upstream is its own socket.
	lnS, sockS, err := Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Upstream: sockS, Socket: sockS})
	go s.Serve(ctx, lnS)
	if err := s.CheckUpstream(); !errors.Is(err, ErrUpstreamLoop) {
		t.Errorf("self: CheckUpstream = %v, want ErrUpstreamLoop", err)
	}
	// Without Socket, the chain check finds it too.
	s.socket = ""
	if err := s.CheckUpstream(); !errors.Is(err, ErrUpstreamLoop) {
		t.Errorf("self, socket not known: CheckUpstream = %v, want ErrUpstreamLoop", err)
	}
}

// TestUpstreamSilent: an upstream that accepts connections but never
// answers costs its keys only, within the configured bound.
func TestUpstreamSilent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "silent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	a := New(Options{Upstream: sock, UpstreamTimeout: 300 * time.Millisecond, UpstreamSignTimeout: 300 * time.Millisecond})
	key, pub := newEd25519(t)
	if err := a.Add(key); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l, err := a.List()
	if err != nil || len(l) != 1 || !bytes.Equal(l[0].Blob, pub.Marshal()) {
		t.Errorf("List = %v, %v; want the own key", l, err)
	}
	if _, err := a.Sign(pub, []byte("x")); err != nil {
		t.Errorf("Sign with the own key: %v", err)
	}
	_, other := newEd25519(t)
	_, err = a.Sign(other, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "no answer within") || !strings.Contains(err.Error(), sock) {
		t.Errorf("Sign with an upstream key: %v; want a timeout naming %s", err, sock)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v, want about 600ms", took)
	}
}

// TestUpstreamChainThrough: a netauth agent chained to another netauth
// agent (no loop) lists and signs with the other's keys.
func TestUpstreamChainThrough(t *testing.T) {
	inner := New(Options{})
	key, pub := newEd25519(t)
	if err := inner.Add(key); err != nil {
		t.Fatal(err)
	}
	innerSock := serve(t, inner)
	outer := New(Options{Upstream: innerSock})
	if err := outer.CheckUpstream(); err != nil {
		t.Fatalf("CheckUpstream: %v", err)
	}
	c := dial(t, serve(t, outer))
	l, err := c.List()
	if err != nil || len(l) != 1 || !bytes.Equal(l[0].Blob, pub.Marshal()) {
		t.Fatalf("List = %v, %v; want the inner agent's key", l, err)
	}
	stmt := statementFor(t, newHostKey(t))
	blob, err := SignStatement(c, pub, stmt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Verify(blob, Namespace, stmt); err != nil {
		t.Error(err)
	}
	var _ sshagent.ExtendedAgent = c
}
