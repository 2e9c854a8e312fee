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
}

// Identity returns what the handshake established.
func (c *Conn) Identity() Identity { return c.id }

// Handshake waits for the server's verdict on the client's authentication, if it is still
// outstanding, and returns a *RefusedError if the server refused. On the server side, and on
// resumed connections, it returns nil at once.
func (c *Conn) Handshake() error {
	return c.HandshakeContext(context.Background())
}

// HandshakeContext is Handshake bounded by ctx.
func (c *Conn) HandshakeContext(ctx context.Context) error {
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

// Write writes application data in encrypted records.
func (c *Conn) Write(p []byte) (int, error) { return c.rc.Write(p) }

// Close sends a close record and closes the connection cleanly: it shuts down the sending
// side and reads, dropping it, what the peer still sends up to the peer's close record, so
// that the connection ends with FINs and not resets (a reset can discard what this side sent
// last). Close does not wait for the peer: unless its close record has already arrived, the
// socket is read and closed in the background, within 250 ms (record.CloseWait) or the read
// deadline if sooner. A Close that interrupts a Read or Write in progress closes at once.
func (c *Conn) Close() error {
	err := c.rc.Close()
	c.release()
	return err
}

// CloseWrite sends a close record and shuts down the sending side; the peer reads io.EOF
// while this side can still read.
func (c *Conn) CloseWrite() error { return c.rc.CloseWrite() }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.rc.LocalAddr() }

// RemoteAddr returns the remote network address.
func (c *Conn) RemoteAddr() net.Addr { return c.rc.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.rc.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.rc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline. A write that times out leaves the connection
// unable to write.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.rc.SetWriteDeadline(t) }

// NetConn returns the underlying connection. Reading or writing it directly corrupts the
// netauth stream.
func (c *Conn) NetConn() net.Conn { return c.rc.NetConn() }
