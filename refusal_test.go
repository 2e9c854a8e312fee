// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/record"
)

// --- log capture ---

type capturedLog struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r capturedLog) String() string { return fmt.Sprintf("%v %q %v", r.level, r.msg, r.attrs) }

// logCapture keeps every record logged through its handler.
type logCapture struct {
	mu   sync.Mutex
	recs []capturedLog
}

type captureHandler struct {
	c     *logCapture
	attrs []slog.Attr
	t     testing.TB
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	rec := capturedLog{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.c.mu.Lock()
	h.c.recs = append(h.c.recs, rec)
	h.c.mu.Unlock()
	h.t.Log("server log: " + rec.String())
	return nil
}

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &captureHandler{c: h.c, attrs: append(append([]slog.Attr(nil), h.attrs...), as...), t: h.t}
}

func (h *captureHandler) WithGroup(string) slog.Handler { return h }

// wait returns the first record matching match, waiting up to 5 seconds for it (servers
// log from their own goroutines).
func (c *logCapture) wait(t testing.TB, what string, match func(capturedLog) bool) capturedLog {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		for _, r := range c.recs {
			if match(r) {
				c.mu.Unlock()
				return r
			}
		}
		all := append([]capturedLog(nil), c.recs...)
		c.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("server never logged %s; it logged %v", what, all)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitRefusal waits for a "handshake refused" record with the code and a reason containing
// every one of details.
func (c *logCapture) waitRefusal(t testing.TB, code Code, details ...string) capturedLog {
	t.Helper()
	return c.wait(t, fmt.Sprintf("a refusal (%v) mentioning %q", code, details), func(r capturedLog) bool {
		if !strings.Contains(r.msg, "handshake refused") || r.attrs["code"] != code.String() {
			return false
		}
		for _, d := range details {
			if !strings.Contains(r.attrs["reason"], d) {
				return false
			}
		}
		return true
	})
}

// waitFailure waits for a "handshake failed" record whose error contains detail.
func (c *logCapture) waitFailure(t testing.TB, detail string) capturedLog {
	t.Helper()
	return c.wait(t, fmt.Sprintf("a failed handshake mentioning %q", detail), func(r capturedLog) bool {
		return strings.Contains(r.msg, "handshake failed") && strings.Contains(r.attrs["err"], detail)
	})
}

// newLoggedServer is newTestServer with a log capture.
func newLoggedServer(t *testing.T, modify func(*ServerConfig)) (*testServer, *logCapture) {
	t.Helper()
	lc := &logCapture{}
	ts := newTestServer(t, func(cfg *ServerConfig) {
		cfg.Logger = slog.New(&captureHandler{c: lc, t: t})
		if modify != nil {
			modify(cfg)
		}
	})
	return ts, lc
}

// --- a frame-aware TCP proxy ---

const (
	c2s = 0 // client to server
	s2c = 1 // server to client
)

// frameHook sees each frame relayed in direction dir (idx counts frames per direction). It
// returns the bytes to forward and whether to cut the direction after them.
type frameHook func(dir, idx int, frame []byte) (out []byte, cut bool)

// frameProxy relays TCP connections frame by frame, recording the frames and letting a hook
// alter or cut them.
type frameProxy struct {
	ln     net.Listener
	target string
	hook   frameHook
	mu     sync.Mutex
	conns  []*proxied
	newc   chan struct{}
}

// proxied is one relayed connection.
type proxied struct {
	mu     sync.Mutex
	frames [2][][]byte // as received, before the hook
	done   [2]chan struct{}
}

func newFrameProxy(t *testing.T, ts *testServer, hook frameHook) *frameProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &frameProxy{ln: ln, target: ts.addr, hook: hook, newc: make(chan struct{}, 100)}
	var open []net.Conn
	var openMu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		openMu.Lock()
		for _, c := range open {
			c.Close()
		}
		openMu.Unlock()
	})
	// The proxy's address is trusted like the server's.
	if err := Trust(ts.knownHosts, p.addr(), ts.hostPub); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			cc, err := ln.Accept()
			if err != nil {
				return
			}
			sc, err := net.Dial("tcp", p.target)
			if err != nil {
				cc.Close()
				continue
			}
			openMu.Lock()
			open = append(open, cc, sc)
			openMu.Unlock()
			pc := &proxied{done: [2]chan struct{}{make(chan struct{}), make(chan struct{})}}
			p.mu.Lock()
			p.conns = append(p.conns, pc)
			p.mu.Unlock()
			p.newc <- struct{}{}
			go p.relay(pc, c2s, cc.(*net.TCPConn), sc.(*net.TCPConn))
			go p.relay(pc, s2c, sc.(*net.TCPConn), cc.(*net.TCPConn))
		}
	}()
	return p
}

func (p *frameProxy) addr() string { return p.ln.Addr().String() }

func (p *frameProxy) relay(pc *proxied, dir int, src, dst *net.TCPConn) {
	defer close(pc.done[dir])
	defer dst.CloseWrite()
	for idx := 0; ; idx++ {
		hdr := make([]byte, record.HeaderLen)
		n, err := io.ReadFull(src, hdr)
		if err != nil {
			if n > 0 {
				pc.add(dir, hdr[:n])
				_, _ = dst.Write(hdr[:n])
			}
			return
		}
		f := append(hdr, make([]byte, int(hdr[1])<<8|int(hdr[2]))...)
		n, err = io.ReadFull(src, f[record.HeaderLen:])
		if err != nil {
			pc.add(dir, f[:record.HeaderLen+n])
			_, _ = dst.Write(f[:record.HeaderLen+n])
			return
		}
		pc.add(dir, f)
		out, cut := f, false
		if p.hook != nil {
			out, cut = p.hook(dir, idx, append([]byte(nil), f...))
		}
		if _, err := dst.Write(out); err != nil {
			return
		}
		if cut {
			// Keep reading (and dropping) so the sender sees no reset.
			go func() { _, _ = io.Copy(io.Discard, src) }()
			return
		}
	}
}

// frame waits for frame i of direction dir and returns it.
func (pc *proxied) frame(t *testing.T, dir, i int) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pc.mu.Lock()
		if i < len(pc.frames[dir]) {
			f := pc.frames[dir][i]
			pc.mu.Unlock()
			return f
		}
		pc.mu.Unlock()
		select {
		case <-pc.done[dir]:
			t.Fatalf("direction %d ended before frame %d", dir, i)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("frame %d of direction %d never came", i, dir)
		}
	}
}

func (pc *proxied) add(dir int, f []byte) {
	pc.mu.Lock()
	pc.frames[dir] = append(pc.frames[dir], append([]byte(nil), f...))
	pc.mu.Unlock()
}

// conn returns the i-th proxied connection, waiting for it.
func (p *frameProxy) conn(t *testing.T, i int) *proxied {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		p.mu.Lock()
		if i < len(p.conns) {
			pc := p.conns[i]
			p.mu.Unlock()
			return pc
		}
		p.mu.Unlock()
		select {
		case <-p.newc:
		case <-deadline:
			t.Fatalf("proxy never saw connection %d", i)
		}
	}
}

// ended waits until direction dir of the connection has ended and returns its frames.
func (pc *proxied) ended(t *testing.T, dir int) [][]byte {
	t.Helper()
	select {
	case <-pc.done[dir]:
	case <-time.After(5 * time.Second):
		t.Fatalf("direction %d of a proxied connection did not end", dir)
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.frames[dir]
}

// flipAt returns a hook flipping the lowest bit of byte off (negative: from the end) of
// frame idx in direction dir.
func flipAt(dir, idx, off int) frameHook {
	return func(d, i int, f []byte) ([]byte, bool) {
		if d == dir && i == idx {
			if off < 0 {
				off += len(f)
			}
			f[off] ^= 1
		}
		return f, false
	}
}

// cutAt returns a hook that forwards keep bytes of frame idx in direction dir and then ends
// that direction without a close record.
func cutAt(dir, idx, keep int) frameHook {
	return func(d, i int, f []byte) ([]byte, bool) {
		if d == dir && i == idx {
			return f[:keep], true
		}
		return f, false
	}
}

// --- expected server output ---

// serverAuthBody is the size of the ServerAuth record body of a server for service.
func serverAuthBody(service string) int {
	// host key (4+11+4+32: a plain key, no certificate) and signature (4+11+4+64), each with
	// a 2-byte length; service.
	return 2 + 51 + 2 + handshake.MaxHostSigLen + 2 + len(service) + 1 + record.TagLen
}

// refusalVerdictBody is the size of a verdict record that carries only a code:
// code(1) lifetime(4) empty ticket(2), the inner type and the tag.
const refusalVerdictBody = 1 + 4 + 2 + 1 + record.TagLen

// checkRefusalFrames checks that the server sent exactly ServerHello, ServerAuth and a
// verdict of a bare code, then ended the stream: nothing the client sent is echoed, and no
// detail of the refusal is disclosed.
func checkRefusalFrames(t *testing.T, frames [][]byte, service string) {
	t.Helper()
	want := []struct {
		typ  byte
		body int
	}{
		{record.FrameServerHello, handshake.MaxServerHello},
		{record.FrameRecord, serverAuthBody(service)},
		{record.FrameRecord, refusalVerdictBody},
	}
	if len(frames) != len(want) {
		t.Fatalf("server sent %d frames, want ServerHello, ServerAuth and a verdict", len(frames))
	}
	for i, w := range want {
		f := frames[i]
		if f[0] != w.typ || len(f)-record.HeaderLen != w.body {
			t.Fatalf("server frame %d: type 0x%02x with %d bytes; want type 0x%02x with %d", i, f[0], len(f)-record.HeaderLen, w.typ, w.body)
		}
	}
}

// alertBytes is the whole of what a server sends to refuse before keys exist.
func alertBytes(code Code) []byte { return handshake.AlertFrame(code) }

// readUntilClosed reads everything from c until the peer closes (or 5 seconds pass) and
// reports whether the connection ended by the peer closing it.
func readUntilClosed(t *testing.T, c net.Conn) ([]byte, bool) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
		}
	}
}

// --- helpers ---

// dialVerdict dials and waits for the server's verdict.
func dialVerdict(addr string, cfg *Config) (*Conn, error) {
	c, err := Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// countingSigner counts the signatures made.
type countingSigner struct {
	ssh.Signer
	mu sync.Mutex
	n  int
}

func (s *countingSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return s.Signer.Sign(r, data)
}

func (s *countingSigner) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// revocableKeys is a KeySource safe for concurrent use and change.
type revocableKeys struct {
	mu   sync.Mutex
	keys map[string][]ssh.PublicKey
}

func (k *revocableKeys) Keys(_ context.Context, user string) ([]ssh.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]ssh.PublicKey(nil), k.keys[user]...), nil
}

func (k *revocableKeys) set(user string, keys ...ssh.PublicKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[user] = keys
}

// echoOnce checks the connection carries data both ways through an echo server.
func echoOnce(t *testing.T, c *Conn) {
	t.Helper()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
}

// --- host keys ---

// TestRefuseUnknownHostKey: a client that does not know the server's host key stops after
// the server's ServerAuth, before signing or sending anything about the user.
func TestRefuseUnknownHostKey(t *testing.T) {
	ts, logs := newLoggedServer(t, nil)
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	p := newFrameProxy(t, ts, nil)
	cfg := ts.clientConfig(alice)
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts") // does not exist
	signer := &countingSigner{Signer: alice.signer}
	cfg.Signer = signer

	_, err := Dial("tcp", p.addr(), cfg)
	var hke *HostKeyError
	if !errors.As(err, &hke) {
		t.Fatalf("Dial: %v, want a *HostKeyError", err)
	}
	if want := ssh.FingerprintSHA256(ts.hostPub); hke.Fingerprint != want || hke.Changed || hke.Revoked {
		t.Fatalf("HostKeyError %+v, want an unknown key with fingerprint %s", hke, want)
	}
	msg := err.Error()
	for _, s := range []string{"unknown host key", hke.Fingerprint, "netauth trust " + p.addr()} {
		if !strings.Contains(msg, s) {
			t.Fatalf("error %q does not contain %q", msg, s)
		}
	}
	if signer.count() != 0 {
		t.Fatal("the client signed an authenticator for an untrusted server")
	}
	pc := p.conn(t, 0)
	if sent := pc.ended(t, c2s); len(sent) != 1 || sent[0][0] != record.FrameClientHello {
		t.Fatalf("client sent %d frames to an untrusted server; want only its ClientHello", len(sent))
	}
	logs.waitFailure(t, "reading ClientAuth")
}

func TestRefuseChangedHostKey(t *testing.T) {
	ts, logs := newLoggedServer(t, nil)
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	p := newFrameProxy(t, ts, nil)
	// Pin another key for the proxy's address.
	impostor := newTestUser(t, "host").signer.PublicKey()
	cfg := ts.clientConfig(alice)
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	if err := Trust(cfg.KnownHostsFile, p.addr(), impostor); err != nil {
		t.Fatal(err)
	}
	signer := &countingSigner{Signer: alice.signer}
	cfg.Signer = signer

	_, err := Dial("tcp", p.addr(), cfg)
	var hke *HostKeyError
	if !errors.As(err, &hke) {
		t.Fatalf("Dial: %v, want a *HostKeyError", err)
	}
	if want := ssh.FingerprintSHA256(ts.hostPub); hke.Fingerprint != want || !hke.Changed {
		t.Fatalf("HostKeyError %+v, want a changed key with fingerprint %s", hke, want)
	}
	msg := err.Error()
	for _, s := range []string{"HOST KEY CHANGED", hke.Fingerprint, ssh.FingerprintSHA256(impostor), "netauth trust " + p.addr(), cfg.KnownHostsFile} {
		if !strings.Contains(msg, s) {
			t.Fatalf("error %q does not contain %q", msg, s)
		}
	}
	if signer.count() != 0 {
		t.Fatal("the client signed an authenticator for a server with a changed key")
	}
	if sent := p.conn(t, 0).ended(t, c2s); len(sent) != 1 {
		t.Fatalf("client sent %d frames to a server with a changed key; want only its ClientHello", len(sent))
	}
	logs.waitFailure(t, "reading ClientAuth")
}

// --- user keys ---

func TestRefuseUnknownUserKey(t *testing.T) {
	ts, logs := newLoggedServer(t, nil)
	alice := newTestUser(t, "alice")
	ts.allow(newTestUser(t, "alice")) // alice has a key, but not this one
	p := newFrameProxy(t, ts, nil)

	c, err := Dial("tcp", p.addr(), ts.clientConfig(alice))
	if err == nil {
		err = c.Handshake()
		// A Read reports the same refusal.
		if _, rerr := c.Read(make([]byte, 1)); !errors.Is(rerr, err) && rerr.Error() != err.Error() {
			t.Fatalf("Read after a refusal: %v, Handshake: %v", rerr, err)
		}
		c.Close()
	}
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeNotAuthorized {
		t.Fatalf("client: %v, want a *RefusedError with %v", err, CodeNotAuthorized)
	}
	for _, s := range []string{"not authorized", "administrator", "public key"} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not contain %q", err, s)
		}
	}
	fp := ssh.FingerprintSHA256(alice.signer.PublicKey())
	if strings.Contains(err.Error(), fp) {
		t.Fatal("client error carries server-side detail")
	}
	checkRefusalFrames(t, p.conn(t, 0).ended(t, s2c), "test")
	rec := logs.waitRefusal(t, CodeNotAuthorized, fp, `"alice"`)
	if rec.attrs["user"] != "alice" || rec.attrs["key"] != fp {
		t.Fatalf("refusal log %v lacks the user or the key", rec)
	}
}

// TestRefuseOtherUsersKey: bob's key claiming to be alice is refused, though bob's key is
// valid for bob.
func TestRefuseOtherUsersKey(t *testing.T) {
	ts, logs := newLoggedServer(t, nil)
	alice, bob := newTestUser(t, "alice"), newTestUser(t, "bob")
	ts.allow(alice)
	ts.allow(bob)
	ts.serveEcho()
	p := newFrameProxy(t, ts, nil)

	cfg := ts.clientConfig(alice)
	cfg.Signer = bob.signer
	_, err := dialVerdict(p.addr(), cfg)
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeNotAuthorized {
		t.Fatalf("bob as alice: %v, want a *RefusedError with %v", err, CodeNotAuthorized)
	}
	checkRefusalFrames(t, p.conn(t, 0).ended(t, s2c), "test")
	bobFP := ssh.FingerprintSHA256(bob.signer.PublicKey())
	rec := logs.waitRefusal(t, CodeNotAuthorized, bobFP, `"alice"`)
	if rec.attrs["user"] != "alice" || rec.attrs["key"] != bobFP {
		t.Fatalf("refusal log %v does not name the claimed user and the key used", rec)
	}

	// Control: the same key is accepted for bob.
	c, err := dialVerdict(ts.addr, ts.clientConfig(bob))
	if err != nil {
		t.Fatalf("bob as bob: %v", err)
	}
	defer c.Close()
	if id := c.Identity(); id.User != "bob" || id.KeyFingerprint != bobFP {
		t.Fatalf("identity %+v", id)
	}
	echoOnce(t, c)
}

// failingKeys is a KeySource whose directory is down.
type failingKeys struct{}

func (failingKeys) Keys(context.Context, string) ([]ssh.PublicKey, error) {
	return nil, errors.New("ldap: dial tcp 10.0.0.5:636: connection refused")
}

// TestRefuseKeyLookupFailure: when the server cannot look up the user's keys the client gets
// "internal error", and only the server's log says why.
func TestRefuseKeyLookupFailure(t *testing.T) {
	ts, logs := newLoggedServer(t, func(cfg *ServerConfig) { cfg.Keys = failingKeys{} })
	alice := newTestUser(t, "alice")
	p := newFrameProxy(t, ts, nil)
	_, err := dialVerdict(p.addr(), ts.clientConfig(alice))
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeInternalError {
		t.Fatalf("client: %v, want a *RefusedError with %v", err, CodeInternalError)
	}
	if strings.Contains(err.Error(), "ldap") || strings.Contains(err.Error(), "10.0.0.5") {
		t.Fatalf("client error %q discloses the server's internals", err)
	}
	checkRefusalFrames(t, p.conn(t, 0).ended(t, s2c), "test")
	logs.waitRefusal(t, CodeInternalError, "ldap: dial tcp 10.0.0.5:636: connection refused")
}

// --- records in transit ---

// acceptOne returns the next connection the server accepts.
func acceptOne(t *testing.T, ts *testServer) <-chan *Conn {
	ch := make(chan *Conn, 1)
	go func() {
		c, err := ts.ln.AcceptNetauth()
		if err != nil {
			close(ch)
			return
		}
		t.Cleanup(func() { c.Close() })
		ch <- c
	}()
	return ch
}

func recvConn(t *testing.T, ch <-chan *Conn) *Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("Accept failed")
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("server accepted no connection")
	}
	return nil
}

// Frame indexes of a full handshake without resumption.
const (
	c2sHello, c2sClientAuth, c2sFirstData        = 0, 1, 2
	s2cHello, s2cServerAuth, s2cVerdict, s2cData = 0, 1, 2, 3
)

func TestRefuseTamperedRecord(t *testing.T) {
	setup := func(t *testing.T, hook frameHook) (*testServer, *logCapture, *frameProxy, *Config) {
		ts, logs := newLoggedServer(t, nil)
		alice := newTestUser(t, "alice")
		ts.allow(alice)
		p := newFrameProxy(t, ts, hook)
		cfg := ts.clientConfig(alice)
		cfg.DisableResumption = true
		return ts, logs, p, cfg
	}

	t.Run("client to server data", func(t *testing.T) {
		ts, _, p, cfg := setup(t, flipAt(c2s, c2sFirstData, record.HeaderLen))
		acc := acceptOne(t, ts)
		c, err := Dial("tcp", p.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("transfer 100 to alice")); err != nil {
			t.Fatal(err)
		}
		sc := recvConn(t, acc)
		buf := make([]byte, 64)
		for range 2 {
			n, err := sc.Read(buf)
			if n != 0 || !errors.Is(err, record.ErrAuth) {
				t.Fatalf("server Read = %q, %v; want no data and a record authentication error", buf[:n], err)
			}
		}
		if !strings.Contains(fmt.Sprint(record.ErrAuth), "tampered") {
			t.Fatal("ErrAuth does not say what happened")
		}
	})

	t.Run("server to client data", func(t *testing.T) {
		ts, _, p, cfg := setup(t, flipAt(s2c, s2cData, -1))
		acc := acceptOne(t, ts)
		c, err := Dial("tcp", p.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc := recvConn(t, acc)
		if _, err := sc.Write([]byte("balance: 100")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		for range 2 {
			n, err := c.Read(buf)
			if n != 0 || !errors.Is(err, record.ErrAuth) {
				t.Fatalf("client Read = %q, %v; want no data and a record authentication error", buf[:n], err)
			}
		}
	})

	t.Run("ClientAuth", func(t *testing.T) {
		_, logs, p, cfg := setup(t, flipAt(c2s, c2sClientAuth, record.HeaderLen+5))
		_, err := dialVerdict(p.addr(), cfg)
		var re *RefusedError
		if !errors.As(err, &re) || re.Code != CodeProtocolError {
			t.Fatalf("client: %v, want a *RefusedError with %v", err, CodeProtocolError)
		}
		checkRefusalFrames(t, p.conn(t, 0).ended(t, s2c), "test")
		logs.waitRefusal(t, CodeProtocolError, "instead of ClientAuth", "record authentication failed")
	})

	t.Run("ServerAuth", func(t *testing.T) {
		_, logs, p, cfg := setup(t, flipAt(s2c, s2cServerAuth, -3))
		signer := &countingSigner{Signer: cfg.Signer}
		cfg.Signer = signer
		_, err := Dial("tcp", p.addr(), cfg)
		if !errors.Is(err, record.ErrAuth) || !strings.Contains(err.Error(), "ServerAuth") {
			t.Fatalf("client: %v, want a record authentication error reading ServerAuth", err)
		}
		if signer.count() != 0 {
			t.Fatal("the client signed after a tampered ServerAuth")
		}
		logs.waitFailure(t, "reading ClientAuth")
	})
}

func TestRefuseTruncatedStream(t *testing.T) {
	setup := func(t *testing.T, hook frameHook) (*testServer, *frameProxy, *Config) {
		ts, _ := newLoggedServer(t, nil)
		alice := newTestUser(t, "alice")
		ts.allow(alice)
		p := newFrameProxy(t, ts, hook)
		cfg := ts.clientConfig(alice)
		cfg.DisableResumption = true
		return ts, p, cfg
	}
	payload := bytes.Repeat([]byte("0123456789"), 10)

	t.Run("server to client, mid-record", func(t *testing.T) {
		ts, p, cfg := setup(t, cutAt(s2c, s2cData, record.HeaderLen+20))
		acc := acceptOne(t, ts)
		c, err := Dial("tcp", p.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc := recvConn(t, acc)
		if _, err := sc.Write(payload); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if len(got) != 0 || !errors.Is(err, record.ErrTruncated) || errors.Is(err, io.EOF) {
			t.Fatalf("client ReadAll = %d bytes, %v; want ErrTruncated", len(got), err)
		}
		if !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("error %q does not say the stream was truncated", err)
		}
	})

	t.Run("server to client, between records", func(t *testing.T) {
		ts, p, cfg := setup(t, cutAt(s2c, s2cData+1, 0))
		acc := acceptOne(t, ts)
		c, err := Dial("tcp", p.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc := recvConn(t, acc)
		if _, err := sc.Write(payload); err != nil {
			t.Fatal(err)
		}
		if _, err := sc.Write([]byte("and the rest")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if !bytes.Equal(got, payload) || !errors.Is(err, record.ErrTruncated) {
			t.Fatalf("client ReadAll = %d bytes, %v; want the first record then ErrTruncated", len(got), err)
		}
	})

	t.Run("client to server, mid-record", func(t *testing.T) {
		ts, p, cfg := setup(t, cutAt(c2s, c2sFirstData, 7))
		acc := acceptOne(t, ts)
		c, err := Dial("tcp", p.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		sc := recvConn(t, acc)
		got, err := io.ReadAll(sc)
		if len(got) != 0 || !errors.Is(err, record.ErrTruncated) {
			t.Fatalf("server ReadAll = %d bytes, %v; want ErrTruncated", len(got), err)
		}
	})

	t.Run("clean close is io.EOF", func(t *testing.T) {
		ts, p, cfg := setup(t, nil)
		acc := acceptOne(t, ts)
		c, err := Dial("tcp", p.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
		c.Close()
		sc := recvConn(t, acc)
		got, err := io.ReadAll(sc)
		if !bytes.Equal(got, payload) || err != nil {
			t.Fatalf("server ReadAll = %d bytes, %v; want the data and a clean end", len(got), err)
		}
	})
}

// --- tickets ---

// staleCache is a ticket cache that believes its sessions live an hour, whatever the server
// said: it makes the client offer a ticket the server considers expired.
type staleCache struct {
	TicketCache
	mu      sync.Mutex
	offered int
	tickets [][]byte
}

func (c *staleCache) Put(id string, s []byte, _ time.Time) {
	sess, err := handshake.ParseSession(s)
	if err != nil {
		panic(err)
	}
	sess.Expiry = time.Now().Add(time.Hour)
	c.mu.Lock()
	c.tickets = append(c.tickets, append([]byte(nil), sess.Ticket...))
	c.mu.Unlock()
	c.TicketCache.Put(id, sess.Marshal(), sess.Expiry)
}

func (c *staleCache) Get(id string) ([]byte, bool) {
	s, ok := c.TicketCache.Get(id)
	if ok {
		c.mu.Lock()
		c.offered++
		c.mu.Unlock()
	}
	return s, ok
}

// helloModes returns the mode bytes of the ClientHello and ServerHello of a proxied
// connection.
func helloModes(t *testing.T, pc *proxied) (client, server byte) {
	t.Helper()
	ch, sh := pc.frame(t, c2s, 0), pc.frame(t, s2c, 0)
	if ch[0] != record.FrameClientHello || sh[0] != record.FrameServerHello {
		t.Fatal("proxied connection lacks the hellos")
	}
	return ch[record.HeaderLen+len(handshake.Magic)+1], sh[record.HeaderLen]
}

// TestExpiredTicketFallsBack: a ticket past its lifetime is declined and the client falls
// back to a full handshake, transparently.
func TestExpiredTicketFallsBack(t *testing.T) {
	var mu sync.Mutex
	var resumedCalls []bool
	ts, _ := newLoggedServer(t, func(cfg *ServerConfig) {
		cfg.TicketLifetime = time.Second // the wire carries whole seconds
		cfg.Authorize = func(_ context.Context, id *Identity) error {
			mu.Lock()
			resumedCalls = append(resumedCalls, id.Resumed)
			mu.Unlock()
			return nil
		}
	})
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	ts.serveEcho()
	p := newFrameProxy(t, ts, nil)
	cfg := ts.clientConfig(alice)
	cache := &staleCache{TicketCache: NewMemoryTicketCache(4)}
	cfg.TicketCache = cache

	c, err := dialVerdict(p.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(cache.tickets) != 1 {
		t.Fatalf("%d tickets issued, want 1", len(cache.tickets))
	}
	time.Sleep(2100 * time.Millisecond) // no clock hook in the public API

	c, err = dialVerdict(p.addr(), cfg)
	if err != nil {
		t.Fatalf("dial with an expired ticket: %v", err)
	}
	defer c.Close()
	if id := c.Identity(); id.Resumed || id.User != "alice" || len(id.Signature) == 0 {
		t.Fatalf("identity %+v, want a full handshake", id)
	}
	echoOnce(t, c)
	cm, sm := helloModes(t, p.conn(t, 1))
	if cache.offered != 1 || cm != handshake.ModeResume || sm != handshake.ModeFull {
		t.Fatalf("offered %d, ClientHello mode %d, ServerHello mode %d; want the ticket offered and declined", cache.offered, cm, sm)
	}
	if len(cache.tickets) != 2 || bytes.Equal(cache.tickets[0], cache.tickets[1]) {
		t.Fatal("the fallback handshake did not issue a fresh ticket")
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(resumedCalls) != "[false false]" {
		t.Fatalf("authorization calls (resumed?) %v; the expired ticket must not reach authorization", resumedCalls)
	}
}

// TestRevokedKeyRefusesTicket: once the key is removed, its ticket no longer resumes, and the
// full handshake it falls back to is refused.
func TestRevokedKeyRefusesTicket(t *testing.T) {
	rk := &revocableKeys{keys: map[string][]ssh.PublicKey{}}
	ts, logs := newLoggedServer(t, func(cfg *ServerConfig) { cfg.Keys = rk })
	alice := newTestUser(t, "alice")
	rk.set("alice", alice.signer.PublicKey())
	ts.serveEcho()
	p := newFrameProxy(t, ts, nil)
	cfg := ts.clientConfig(alice)

	for i, wantResumed := range []bool{false, true} {
		c, err := dialVerdict(p.addr(), cfg)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if c.Identity().Resumed != wantResumed {
			t.Fatalf("dial %d: resumed %v", i, c.Identity().Resumed)
		}
		echoOnce(t, c)
		c.Close()
	}
	rk.set("alice")

	_, err := dialVerdict(p.addr(), cfg)
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeNotAuthorized {
		t.Fatalf("after revocation: %v, want a *RefusedError with %v", err, CodeNotAuthorized)
	}
	pc := p.conn(t, 2)
	if cm, sm := helloModes(t, pc); cm != handshake.ModeResume || sm != handshake.ModeFull {
		t.Fatalf("ClientHello mode %d, ServerHello mode %d; want the ticket offered and declined", cm, sm)
	}
	checkRefusalFrames(t, pc.ended(t, s2c), "test")
	logs.waitRefusal(t, CodeNotAuthorized, ssh.FingerprintSHA256(alice.signer.PublicKey()), `"alice"`)
	// The refused ticket was dropped from the cache.
	if _, ok := cfg.TicketCache.Get("netauth-v1 alice@" + p.addr() + " "); ok {
		t.Fatal("the declined session is still cached")
	}
}

// --- hostile or broken clients ---

func TestRefuseOversizedFrame(t *testing.T) {
	for _, n := range []int{record.MaxBody, handshake.MaxClientHello + 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ts, logs := newLoggedServer(t, func(cfg *ServerConfig) { cfg.HandshakeTimeout = 10 * time.Second })
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			// Only the header: the server must answer without waiting for the body.
			if _, err := c.Write([]byte{record.FrameClientHello, byte(n >> 8), byte(n)}); err != nil {
				t.Fatal(err)
			}
			got, closed := readUntilClosed(t, c)
			if !bytes.Equal(got, alertBytes(CodeProtocolError)) || !closed {
				t.Fatalf("server sent % x (closed %v), want exactly the alert % x and a close", got, closed, alertBytes(CodeProtocolError))
			}
			// The handshake timeout is 10s: an alert well before it was not waiting for the
			// body (the margin absorbs a loaded machine).
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("alert took %v: the server waited for the body", d)
			}
			logs.waitRefusal(t, CodeProtocolError, "oversized ClientHello", fmt.Sprintf("frame of %d bytes", n))
		})
	}
}

func TestRefuseGarbage(t *testing.T) {
	hello := []byte(handshake.Magic)
	cases := []struct {
		name   string
		in     []byte
		code   Code
		reason string
	}{
		{"HTTP request", []byte("GET / HTTP/1.1\r\n\r\n"), CodeProtocolError, "instead of ClientHello"},
		{"SSH banner", []byte("SSH-2.0-OpenSSH_9.6\r\n"), CodeProtocolError, "instead of ClientHello"},
		{"record instead of ClientHello", []byte{record.FrameRecord, 0, 4, 'a', 'b', 'c', 'd'}, CodeProtocolError, "instead of ClientHello"},
		{"empty ClientHello", []byte{record.FrameClientHello, 0, 0}, CodeProtocolError, "malformed ClientHello"},
		{"ClientHello of junk", append([]byte{record.FrameClientHello, 0, 9}, "junkjunk!"...), CodeProtocolError, "malformed ClientHello"},
		{"version 1", append(append([]byte{record.FrameClientHello, 0, byte(len(hello) + 1)}, hello...), 1), CodeVersionUnsupported, "version"},
		{"a later version", append(append([]byte{record.FrameClientHello, 0, byte(len(hello) + 1)}, hello...), handshake.Version+1), CodeVersionUnsupported, "version"},
		// A TLS record header reads as frame type 0x16 with length 0x0301 (769 bytes, within
		// the ClientHello limit); this record is shorter, so the server must judge the frame
		// by its type without waiting for 769 bytes that never come.
		{"short TLS record", append([]byte{0x16, 0x03, 0x01, 0x00, 0x30}, make([]byte, 0x30)...), CodeProtocolError, "instead of ClientHello"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts, logs := newLoggedServer(t, func(cfg *ServerConfig) { cfg.HandshakeTimeout = 10 * time.Second })
			start := time.Now()
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			got, closed := readUntilClosed(t, c)
			if !bytes.Equal(got, alertBytes(tc.code)) || !closed {
				t.Fatalf("server sent %q (closed %v), want exactly the alert % x and a close", got, closed, alertBytes(tc.code))
			}
			if d := time.Since(start); d > 5*time.Second { // well before the 10s handshake timeout
				t.Fatalf("the alert took %v", d)
			}
			logs.waitRefusal(t, tc.code, tc.reason)
		})
	}
}

// TestStalledHandshake: a client that stalls mid-handshake delays nobody else and is
// disconnected when its handshake deadline passes.
func TestStalledHandshake(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ts, logs := newLoggedServer(t, func(cfg *ServerConfig) { cfg.HandshakeTimeout = timeout })
	alice := newTestUser(t, "alice")
	ts.allow(alice)

	// On a loaded machine a normal handshake may itself take longer than the timeout; the
	// scenario is then inconclusive and is tried again.
	for attempt := 1; ; attempt++ {
		acc := acceptOne(t, ts)
		stalled, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer stalled.Close()
		stallStart := time.Now()
		// Half a full-mode ClientHello (its body is 7+2+2+32 bytes), then nothing.
		if _, err := stalled.Write(append([]byte{record.FrameClientHello, 0, 43}, handshake.Magic+string([]byte{handshake.Version, handshake.ModeFull})...)); err != nil {
			t.Fatal(err)
		}

		// Meanwhile a normal client is served at once.
		start := time.Now()
		c, err := dialVerdict(ts.addr, ts.clientConfig(alice))
		if err != nil {
			t.Fatalf("dial beside a stalled client: %v", err)
		}
		defer c.Close()
		sc := recvConn(t, acc)
		elapsed := time.Since(start)
		if sc.Identity().User != "alice" {
			t.Fatalf("accepted %+v", sc.Identity())
		}
		if elapsed >= timeout {
			if attempt < 3 {
				t.Logf("attempt %d: the normal handshake took %v; trying again", attempt, elapsed)
				continue
			}
			t.Fatalf("the normal client took %v, not less than the stalled client's %v timeout", elapsed, timeout)
		}
		_ = stalled.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := stalled.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("the stalled connection ended before the normal client was served: %v", err)
		}

		// The stalled connection is closed once its deadline passes.
		got, closed := readUntilClosed(t, stalled)
		waited := time.Since(stallStart)
		if !closed {
			t.Fatal("the server did not close the stalled connection")
		}
		if len(got) != 0 && !bytes.Equal(got, alertBytes(CodeTimeout)) {
			t.Fatalf("server sent % x to a stalled client; want nothing or a timeout alert", got)
		}
		if waited < timeout-20*time.Millisecond || waited > 5*time.Second {
			t.Fatalf("stalled connection closed after %v, want about %v", waited, timeout)
		}
		logs.waitFailure(t, "timeout")
		return
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestRefuseOverloaded(t *testing.T) {
	ts, logs := newLoggedServer(t, func(cfg *ServerConfig) {
		cfg.MaxPendingHandshakes = 2
		cfg.HandshakeTimeout = 10 * time.Second
	})
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	ts.serveEcho()

	// Two clients hold both handshake slots.
	var holders []net.Conn
	for range 2 {
		h, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		holders = append(holders, h)
	}
	// Connections are accepted in order, so by the time this one is, both slots are taken.
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	got, closed := readUntilClosed(t, raw)
	if !bytes.Equal(got, alertBytes(CodeOverloaded)) || !closed {
		t.Fatalf("excess connection got % x (closed %v), want exactly the alert % x", got, closed, alertBytes(CodeOverloaded))
	}

	_, err = Dial("tcp", ts.addr, ts.clientConfig(alice))
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeOverloaded {
		t.Fatalf("Dial: %v, want a *RefusedError with %v", err, CodeOverloaded)
	}
	if !strings.Contains(err.Error(), "try again later") {
		t.Fatalf("error %q does not say what to do", err)
	}
	logs.wait(t, "a warning about too many handshakes", func(r capturedLog) bool {
		return r.level == slog.LevelWarn && strings.Contains(r.msg, "too many handshakes")
	})

	// Once the holders go away their slots are free again.
	for _, h := range holders {
		h.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := dialVerdict(ts.addr, ts.clientConfig(alice))
		if err == nil {
			echoOnce(t, c)
			c.Close()
			break
		}
		if !errors.As(err, &re) || re.Code != CodeOverloaded || time.Now().After(deadline) {
			t.Fatalf("dial after the holders left: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
