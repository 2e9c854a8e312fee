// SPDX-License-Identifier: Apache-2.0

// Package testutil holds the helpers netauth's tests share: loopback TCP connection pairs, a
// buffer safe for concurrent use, in-memory SSH keys, a bounded flood of connections from one
// source address, a real OpenSSH ssh-agent that accepts connections before it is used,
// ssh-keygen and the public keys it writes, and headless Chromium run as a given user
// (Browser). It is imported by tests only, and imports no other netauth package, so any
// package's own tests can use it.
package testutil

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TCPPair returns both ends of a loopback TCP connection (buffered by the kernel, unlike
// net.Pipe, so one goroutine can write and then read). Both ends have a 20-second deadline
// and are closed when the test ends.
func TCPPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	deadline := time.Now().Add(20 * time.Second)
	_ = a.SetDeadline(deadline)
	_ = r.c.SetDeadline(deadline)
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a.(*net.TCPConn), r.c.(*net.TCPConn)
}

// Buffer is a bytes.Buffer safe for concurrent use, for logs and a child's output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Signer returns a new Ed25519 SSH key held in memory.
func Signer(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Flood is a set of connections opened from one source address, and what the server did
// with them.
type Flood struct {
	Refused  atomic.Int32 // answered with exactly the refusal bytes, then closed
	Closed   atomic.Int32 // closed by the server otherwise
	OpenedAt time.Time

	mu    sync.Mutex
	conns []net.Conn
}

// StartFlood opens n connections to addr from src (any 127.0.0.0/8 address is local on
// Linux, so a test can choose the source); payload(i), if not nil, is what connection i sends
// (nil: nothing, a stalled client). A reader per connection counts it as Refused when the
// server answers exactly refusal and closes, and as Closed when it ends it otherwise. All are
// closed when the test ends; none lives longer than limit.
func StartFlood(t testing.TB, addr string, src net.IP, n int, limit time.Duration, refusal []byte, payload func(i int) []byte) *Flood {
	t.Helper()
	f := &Flood{OpenedAt: time.Now()}
	t.Cleanup(f.Close)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 2 * time.Second}
	for i := range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood connection %d from %v: %v", i, src, err)
		}
		_ = c.SetDeadline(time.Now().Add(limit))
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		if payload != nil {
			if p := payload(i); p != nil {
				_, _ = c.Write(p)
			}
		}
		go func() {
			var got []byte
			buf := make([]byte, 64)
			for {
				m, err := c.Read(buf)
				got = append(got, buf[:m]...)
				if err != nil {
					if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
						return // closed here, or still pending when the test ended
					}
					if bytes.Equal(got, refusal) {
						f.Refused.Add(1)
					} else {
						f.Closed.Add(1)
					}
					return
				}
			}
		}()
	}
	return f
}

// Close closes every connection of the flood.
func (f *Flood) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// WaitRefused waits until want connections have been refused, then checks that no more are
// refused (nor closed otherwise) for a moment.
func (f *Flood) WaitRefused(t testing.TB, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for int(f.Refused.Load()) < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if got, other := f.Refused.Load(), f.Closed.Load(); int(got) != want || other != 0 {
		t.Fatalf("%d flood connections refused and %d closed otherwise, want exactly %d and 0", got, other, want)
	}
}

// OpenDir returns a new temporary directory that every user may read and enter (mode 0755),
// removed when the test ends: for files that processes the test runs as other users must
// reach (t.TempDir's parent is private).
func OpenDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// SelfCopy copies the running test binary to dir/name, executable by everyone, and returns
// its path: a program the test can run as another user.
func SelfCopy(t testing.TB, dir, name string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// CountingListener is a net.Listener that counts the connections it accepted (N).
type CountingListener struct {
	net.Listener
	N atomic.Int64
}

// Accept accepts a connection and counts it.
func (l *CountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.N.Add(1)
	}
	return c, err
}

// OpenDescriptors returns how many descriptors this process has open.
func OpenDescriptors(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads (a log several goroutines
// write while the test reads it).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
