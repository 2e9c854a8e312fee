// SPDX-License-Identifier: Apache-2.0

package limits

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scriptedListener returns the results it is given, in order, then blocks until closed.
type scriptedListener struct {
	results chan func() (net.Conn, error)
	closed  chan struct{}
	once    sync.Once
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	select {
	case r := <-l.results:
		return r()
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *scriptedListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{} }

type pipeConn struct {
	net.Conn
	addr net.Addr
}

func (c pipeConn) RemoteAddr() net.Addr { return c.addr }

// TestAcceptLoop checks the loop every server runs: admitted connections go to Handle with
// their slot held, connections past the per-source limit go to Refuse without taking one, an
// accept error other than the close is retried, and closing the listener ends the loop.
func TestAcceptLoop(t *testing.T) {
	ln := &scriptedListener{results: make(chan func() (net.Conn, error), 8), closed: make(chan struct{})}
	var handled, refused atomic.Int32
	var releases []func()
	var mu sync.Mutex
	loop := &AcceptLoop{
		Limiter:  New(Config{MaxPending: 10, PerSource: 2}),
		Refusals: &Throttle{Every: time.Second},
		Service:  "test",
		Log:      slog.New(slog.DiscardHandler),
		Refuse:   func(nc net.Conn) { refused.Add(1); nc.Close() },
		Handle: func(nc net.Conn, release func()) {
			handled.Add(1)
			mu.Lock()
			releases = append(releases, release)
			mu.Unlock()
		},
		Closed: func() bool {
			select {
			case <-ln.closed:
				return true
			default:
				return false
			}
		},
	}
	from := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
	conn := func() (net.Conn, error) { c, _ := net.Pipe(); return pipeConn{c, from}, nil }
	ln.results <- conn
	ln.results <- func() (net.Conn, error) { return nil, errors.New("too many open files") }
	ln.results <- conn
	ln.results <- conn // a third from the same source: over its limit of 2
	done := make(chan struct{})
	go func() { loop.Run(ln); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for handled.Load()+refused.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if handled.Load() != 2 || refused.Load() != 1 {
		t.Fatalf("handled %d, refused %d; want 2 and 1 (the accept error retried, not fatal)", handled.Load(), refused.Load())
	}
	if n := loop.Limiter.PendingFrom(from); n != 2 {
		t.Fatalf("%d slots held for the source, want 2", n)
	}
	mu.Lock()
	for _, r := range releases {
		r()
	}
	mu.Unlock()
	if n := loop.Limiter.Pending(); n != 0 {
		t.Fatalf("%d slots held after every release", n)
	}
	ln.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not end when its listener was closed")
	}
}
