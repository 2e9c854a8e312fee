// SPDX-License-Identifier: Apache-2.0

package record

import (
	"errors"
	"net"

	"golang.org/x/crypto/cryptobyte"
)

// ErrDetached is returned by a Conn whose state was exported for another process.
var ErrDetached = errors.New("netauth: connection handed over to another process")

// MaxStateSize bounds a marshaled State: keys, counters, and at most one read buffer of
// unprocessed and decrypted bytes.
const MaxStateSize = 2*rbufSize + 256

const stateVersion = 1

// State is the transport state of a keyed Conn: both directions' keys and counters and the
// bytes received but not yet consumed. It moves a live connection to another process, which
// continues the record layer exactly where this one stopped. It is secret.
type State struct {
	SendKey    [32]byte
	SendNonce  uint64
	SendCount  uint64 // records sent since the last rekey
	RecvKey    [32]byte
	RecvNonce  uint64
	RekeyAfter uint64
	Unread     []byte // raw bytes received and not yet processed
	Plain      []byte // decrypted application data not yet read
}

// Export returns the connection's transport state and detaches the Conn: afterwards it
// refuses reads and writes, and Close closes the socket without a close record (the peer's
// session continues in the process that imports the state). Queued unsent bytes are an error:
// a handoff happens only between records.
func (c *Conn) Export() (*State, error) {
	c.in.Lock()
	defer c.in.Unlock()
	c.out.Lock()
	defer c.out.Unlock()
	s, err := c.snapshotLocked()
	if err != nil {
		return nil, err
	}
	c.detachLocked()
	return s, nil
}

// Snapshot returns the connection's transport state without detaching it: the Conn stays
// usable, for the case where another process may or may not take the connection over. Once it
// has, call Detach; the two must not both go on using the keys.
func (c *Conn) Snapshot() (*State, error) {
	c.in.Lock()
	defer c.in.Unlock()
	c.out.Lock()
	defer c.out.Unlock()
	return c.snapshotLocked()
}

// Detach ends this Conn's part in the session after a Snapshot was taken over elsewhere: it
// wipes the keys and refuses reads and writes, and Close sends no close record.
func (c *Conn) Detach() {
	c.in.Lock()
	defer c.in.Unlock()
	c.out.Lock()
	defer c.out.Unlock()
	if c.in.half != nil && c.out.half != nil {
		c.detachLocked()
	}
}

func (c *Conn) snapshotLocked() (*State, error) {
	if c.in.half == nil || c.out.half == nil {
		return nil, ErrNoKeys
	}
	if c.in.err != nil {
		return nil, c.in.err
	}
	if c.out.err != nil {
		return nil, c.out.err
	}
	if len(c.out.buf) != 0 {
		return nil, errors.New("netauth: cannot export a connection with unsent data")
	}
	return &State{
		SendKey: c.out.half.key, SendNonce: c.out.half.nonce, SendCount: c.out.sent,
		RecvKey: c.in.half.key, RecvNonce: c.in.half.nonce, RekeyAfter: c.out.rekeyAfter,
		Unread: append([]byte(nil), c.in.buf[c.in.pos:c.in.end]...),
		Plain:  append([]byte(nil), c.in.plain...),
	}, nil
}

func (c *Conn) detachLocked() {
	c.in.half.Zero()
	c.out.half.Zero()
	clear(c.in.buf)
	c.in.plain = nil
	c.in.err, c.out.err = ErrDetached, ErrDetached
	c.out.closed = true // no close record: the session lives on elsewhere
}

// Import continues a connection from an exported state over nc (the same socket, received
// from the exporting process).
func Import(nc net.Conn, s *State) (*Conn, error) {
	if len(s.Unread)+len(s.Plain) > rbufSize {
		return nil, errors.New("netauth: imported state holds more than a read buffer")
	}
	c := NewConn(nc)
	c.in.half = NewHalf(s.RecvKey, s.RecvNonce)
	c.out.half = NewHalf(s.SendKey, s.SendNonce)
	c.out.sent = s.SendCount
	if s.RekeyAfter != 0 {
		c.out.rekeyAfter = s.RekeyAfter
	}
	// Decrypted bytes go first in the buffer, then the raw bytes still to be processed.
	if need := len(s.Plain) + len(s.Unread); need > len(c.in.buf) {
		c.growLocked(need)
	}
	n := copy(c.in.buf, s.Plain)
	c.in.plain = c.in.buf[:n:n]
	c.in.pos = n
	c.in.end = n + copy(c.in.buf[n:], s.Unread)
	return c, nil
}

// Marshal encodes the state.
func (s *State) Marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(stateVersion)
	b.AddBytes(s.SendKey[:])
	b.AddUint64(s.SendNonce)
	b.AddUint64(s.SendCount)
	b.AddBytes(s.RecvKey[:])
	b.AddUint64(s.RecvNonce)
	b.AddUint64(s.RekeyAfter)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.Unread) })
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.Plain) })
	return b.BytesOrPanic()
}

// ParseState decodes a marshaled state; the size limit is checked first.
func ParseState(p []byte) (*State, error) {
	if len(p) > MaxStateSize {
		return nil, errors.New("netauth: transport state too large")
	}
	in := cryptobyte.String(p)
	s := &State{}
	var v uint8
	var sk, rk []byte
	var unread, plain cryptobyte.String
	if !in.ReadUint8(&v) || v != stateVersion || !in.ReadBytes(&sk, 32) || !in.ReadUint64(&s.SendNonce) ||
		!in.ReadUint64(&s.SendCount) || !in.ReadBytes(&rk, 32) || !in.ReadUint64(&s.RecvNonce) ||
		!in.ReadUint64(&s.RekeyAfter) || !in.ReadUint24LengthPrefixed(&unread) ||
		!in.ReadUint24LengthPrefixed(&plain) || !in.Empty() || len(unread)+len(plain) > rbufSize {
		return nil, errors.New("netauth: malformed transport state")
	}
	copy(s.SendKey[:], sk)
	copy(s.RecvKey[:], rk)
	s.Unread, s.Plain = append([]byte(nil), unread...), append([]byte(nil), plain...)
	return s, nil
}

// Zero wipes the keys and buffered data.
func (s *State) Zero() {
	clear(s.SendKey[:])
	clear(s.RecvKey[:])
	clear(s.Unread)
	clear(s.Plain)
}
