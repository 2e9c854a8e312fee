// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/record"
)

// Identity is what a handshake established about a connection. On the server it names the
// authenticated user; on the client it names the server's host key and the identity the
// client authenticated as. It is the same value the server's authorization decided on, that
// netauthd hands to its workers with the connection, writes to its audit log and puts in the
// PROXY protocol header of its backend mode (see the fields of identity.Identity).
type Identity = identity.Identity

// Conn is an authenticated, encrypted netauth connection. It implements net.Conn.
//
// On the client, Dial returns as soon as the client may send: writes are pipelined behind the
// handshake, and the server's verdict on a full handshake is read by the first Read (or by
// Handshake). A refusal surfaces there as a *RefusedError.
type Conn struct {
	rc *record.Conn
	id Identity

	mu        sync.Mutex        // guards the fields below
	client    *handshake.Client // client side: pending verdict
	verdict   error             // result of reading the verdict
	onSession func(*handshake.Session)
	onVerdict func(error) // client side: told the verdict once it is final

	authFailed  atomic.Bool // a record from the peer failed authentication
	cleanupOnce sync.Once
	cleanup     func()       // releases the agent connection (client) or reports the close (worker)
	trace       *workerTrace // a worker's connection traced by netauthd -trace; else nil

	// A Conn made by Client or Server runs its handshake on first use: lazy is set until the
	// handshake succeeded, and start (guarded by startMu) runs it once; raw is the
	// connection it runs on.
	lazy     atomic.Bool
	raw      net.Conn
	startMu  sync.Mutex
	start    func(ctx context.Context, c *Conn) error
	startErr error
}

// startHandshake runs the handshake of a Conn made by Client or Server, once; it returns the
// handshake's error to every later call.
func (c *Conn) startHandshake(ctx context.Context) error {
	if !c.lazy.Load() {
		return nil
	}
	c.startMu.Lock()
	defer c.startMu.Unlock()
	if c.start != nil {
		start := c.start
		c.start = nil
		if c.startErr = start(ctx, c); c.startErr == nil {
			c.lazy.Store(false)
		}
	}
	return c.startErr
}

// errNoHandshake is returned by the methods that need a completed handshake.
var errNoHandshake = errors.New("netauth: the handshake has not completed")

// Identity returns what the handshake established (the zero Identity before the handshake
// of a Conn made by Client or Server).
func (c *Conn) Identity() Identity {
	if c.lazy.Load() {
		return Identity{}
	}
	return c.id
}

// Handshake runs the handshake of a Conn made by Client or Server if it has not run yet, and
// waits for the server's verdict on the client's authentication if it is still outstanding:
// it returns a *RefusedError if the server refused. On the server side, and on resumed
// connections, it returns once the handshake has run.
func (c *Conn) Handshake() error {
	return c.HandshakeContext(context.Background())
}

// HandshakeContext is Handshake bounded by ctx. If ctx ends during the handshake of a Conn
// made by Client or Server, the handshake is abandoned and the connection is unusable.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if err := c.startHandshake(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil || !c.client.Pending() {
		return c.verdict
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.rc.SetReadDeadline(d)
		defer c.rc.SetReadDeadline(time.Time{})
	}
	// A read that timed out leaves the verdict pending (the next call reads it); any other
	// outcome is final.
	sess, err := c.client.ReadVerdict(time.Now())
	c.verdict = err
	if sess != nil && c.onSession != nil {
		c.onSession(sess)
	}
	if c.client.Pending() {
		return c.verdict // timed out: the next call reads it
	}
	if c.onVerdict != nil {
		c.onVerdict(err)
	}
	c.release()
	return c.verdict
}

// release runs the cleanup function once.
func (c *Conn) release() {
	c.cleanupOnce.Do(func() {
		if c.cleanup != nil {
			c.cleanup()
		}
	})
}

// Read reads application data. On the client the first Read first reads the server's
// verdict.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	n, err := c.rc.Read(p)
	if n > 0 && c.trace != nil {
		c.trace.firstData()
	}
	if errors.Is(err, record.ErrAuth) {
		c.authFailed.Store(true)
	}
	return n, err
}

// Write writes application data in encrypted records. On a Conn made by Client or Server the
// first Write runs the handshake.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.startHandshake(context.Background()); err != nil {
		return 0, err
	}
	return c.rc.Write(p)
}

// Close sends a close record and closes the connection cleanly: it shuts down the sending
// side and reads, dropping it, what the peer still sends up to the peer's close record, so
// that the connection ends with FINs and not resets (a reset can discard what this side sent
// last). Close does not wait for the peer: unless its close record has already arrived, the
// socket is read and closed in the background, within 250 ms (record.CloseWait) or the read
// deadline if sooner. A Close that interrupts a Read or Write in progress closes at once.
func (c *Conn) Close() error {
	if c.lazy.Load() { // before the handshake completed (a handshake in progress ends)
		err := c.raw.Close()
		c.release()
		return err
	}
	err := c.rc.Close()
	c.release()
	return err
}

// CloseWrite sends a close record and shuts down the sending side; the peer reads io.EOF
// while this side can still read.
func (c *Conn) CloseWrite() error {
	if c.lazy.Load() {
		return errNoHandshake
	}
	return c.rc.CloseWrite()
}

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr {
	if c.raw != nil {
		return c.raw.LocalAddr()
	}
	return c.rc.LocalAddr()
}

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr {
	if c.raw != nil {
		return c.raw.RemoteAddr()
	}
	return c.rc.RemoteAddr()
}

// SetDeadline sets the read and write deadlines. On a Conn made by Client or Server they
// bound the handshake too.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.lazy.Load() {
		return c.raw.SetDeadline(t)
	}
	return c.rc.SetDeadline(t)
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.lazy.Load() {
		return c.raw.SetReadDeadline(t)
	}
	return c.rc.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline. A write that times out leaves the connection
// unable to write.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.lazy.Load() {
		return c.raw.SetWriteDeadline(t)
	}
	return c.rc.SetWriteDeadline(t)
}

// NetConn returns the underlying connection. Reading or writing it directly corrupts the
// netauth stream. In a worker under netauthd it is the socket netauthd handed over, not a
// *net.TCPConn: assert the methods needed instead (CloseWrite, SetLinger, SyscallConn).
func (c *Conn) NetConn() net.Conn {
	if c.raw != nil {
		return c.raw
	}
	return c.rc.NetConn()
}
