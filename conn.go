// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
)

// Identity is what a handshake established about a connection. On the server it names the
// authenticated user; on the client it names the server's host key and the identity the
// client authenticated as.
type Identity struct {
	// User is the authenticated user name.
	User string
	// Key is the user's public key; KeyType and KeyFingerprint describe it
	// ("ssh-ed25519", "SHA256:...").
	Key            ssh.PublicKey
	KeyType        string
	KeyFingerprint string
	// HostKey is the server's Ed25519 host key and HostKeyFingerprint its fingerprint.
	HostKey            ssh.PublicKey
	HostKeyFingerprint string
	// Service is the service name the server announced.
	Service string
	// Resumed reports whether the connection was authenticated with a ticket (no signature).
	Resumed bool
	// AuthTime is when the user last signed an authenticator: the time of this handshake, or
	// for a resumed connection the time of the full handshake that issued the ticket.
	AuthTime time.Time
	// HandshakeHash is the Noise handshake hash, unique to this connection (channel binding).
	HandshakeHash []byte
	// Statement and Signature are the signed authenticator of a full handshake (SSHSIG in
	// namespace "netauth-v1@ubns.dev"); anyone can check them with ssh-keygen -Y verify.
	// Empty for resumed connections.
	Statement []byte
	Signature []byte
}

func identityOf(r *handshake.Result) Identity {
	id := Identity{
		User:          r.User,
		Key:           r.UserKey,
		HostKey:       r.HostKey,
		Service:       r.Service,
		Resumed:       r.Resumed,
		AuthTime:      r.Issued,
		HandshakeHash: r.HandshakeHash,
		Statement:     r.Statement,
		Signature:     r.Signature,
	}
	if r.UserKey != nil {
		id.KeyType, id.KeyFingerprint = r.UserKey.Type(), keys.Fingerprint(r.UserKey)
	}
	if r.HostKey != nil {
		id.HostKeyFingerprint = keys.Fingerprint(r.HostKey)
	}
	return id
}

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

	authFailed  atomic.Bool // a record from the peer failed authentication
	cleanupOnce sync.Once
	cleanup     func() // releases the agent connection (client) or reports the close (worker)
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
	if errors.Is(err, record.ErrAuth) {
		c.authFailed.Store(true)
	}
	return n, err
}

// Write writes application data in encrypted records.
func (c *Conn) Write(p []byte) (int, error) { return c.rc.Write(p) }

// Close sends a close record and closes the connection.
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

// Authenticator returns the signed authenticator of a full handshake: the statement text and
// the signature in the armored form ssh-keygen uses, so that
//
//	ssh-keygen -Y verify -f allowed_signers -I USER -n netauth-v1@ubns.dev -s SIGFILE < STATEMENTFILE
//
// checks it. It returns nil slices for resumed connections (no signature was made).
func (id Identity) Authenticator() (statement, armoredSignature []byte) {
	if len(id.Signature) == 0 {
		return nil, nil
	}
	return id.Statement, keys.Armor(id.Signature)
}
