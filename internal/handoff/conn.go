// SPDX-License-Identifier: Apache-2.0

package handoff

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/record"
)

// Limits on the identity fields of a Conn. They are generous next to what a handshake
// accepts (names of 64 bytes, Ed25519 host keys, 16 KiB SSHSIG signatures, 1 KiB
// statements) and together fit the 64 KiB MaxMessage allows for the identity.
const (
	MaxNameLen      = 256      // User and Service
	MaxUserKeyLen   = 16 << 10 // UserKey, SSH wire form (an SSHSIG signature holds one)
	MaxHostKeyLen   = 1 << 10  // HostKey, SSH wire form
	MaxHashLen      = 64       // HandshakeHash
	MaxStatementLen = 4 << 10  // Statement
	MaxSignatureLen = 16 << 10 // Signature
	MaxAddrLen      = 256      // RemoteAddr and LocalAddr
	MaxPendingLen   = 4 << 10  // Pending (a sealed Verdict record: code, lifetime, ticket)
)

const (
	connVersion = 1
	// connOverhead is everything in a marshaled Conn but the field contents: version,
	// length prefixes, flags and time.
	connOverhead = 1 + 3 + 9*4 + 1 + 8 + 4 // the Pending field's prefix is counted in Marshal
	// maxIdentity is the largest identity part of a marshaled Conn.
	maxIdentity = connOverhead + 2*MaxNameLen + MaxUserKeyLen + MaxHostKeyLen + MaxHashLen +
		MaxStatementLen + MaxSignatureLen + 2*MaxAddrLen + 4 + MaxPendingLen
)

// The identity must fit the 64 KiB MaxMessage leaves beside the transport state.
const _ = uint(64<<10 - maxIdentity)

// Conn is the payload of a TypeConn message: a connection's transport state and the identity
// its handshake established. It is secret: State holds the keys.
type Conn struct {
	// State is the record layer's exported state (record.Conn.Export).
	State *record.State
	// Identity is who the handshake authenticated, as the monitor verified it; its keys
	// travel in SSH wire form, and must parse.
	identity.Identity
	// RemoteAddr and LocalAddr are the connection's addresses as the daemon saw them, for
	// logs.
	RemoteAddr string
	LocalAddr  string
	// Pending, if not empty, is the Verdict record frame the worker sends first, sealed
	// under the handshake-record key: the connection was handed over together with the
	// decision. State holds the application keys that follow it.
	Pending []byte
}

// Marshal encodes c. The result holds the keys: zero it (clear) once it is sent and no longer
// needed for a retry. A Conn without a State, or with fields beyond the limits, marshals to
// bytes ParseConn refuses.
func (c *Conn) Marshal() []byte {
	var st []byte
	if c.State != nil {
		st = c.State.Marshal()
		defer clear(st)
	}
	ukey, hkey := wire(c.Key), wire(c.HostKey)
	size := connOverhead + len(st) + len(c.User) + len(ukey) + len(hkey) + len(c.Service) +
		len(c.HandshakeHash) + len(c.Statement) + len(c.Signature) + len(c.RemoteAddr) + len(c.LocalAddr) + 4 + len(c.Pending)
	// Sized exactly, so the builder never copies the secret bytes into a second buffer.
	b := cryptobyte.NewBuilder(make([]byte, 0, size))
	b.AddUint8(connVersion)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(st) })
	addField(b, []byte(c.User))
	addField(b, ukey)
	addField(b, hkey)
	addField(b, []byte(c.Service))
	var flags uint8
	if c.Resumed {
		flags |= 1
	}
	b.AddUint8(flags)
	b.AddUint64(uint64(c.AuthTime.Unix()))
	b.AddUint32(uint32(c.AuthTime.Nanosecond()))
	addField(b, c.HandshakeHash)
	addField(b, c.Statement)
	addField(b, c.Signature)
	addField(b, []byte(c.RemoteAddr))
	addField(b, []byte(c.LocalAddr))
	addField(b, c.Pending)
	return b.BytesOrPanic()
}

// addField adds a field with a 32-bit length, so that Marshal never fails: limits are
// ParseConn's to enforce.
func addField(b *cryptobyte.Builder, v []byte) {
	b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

// readField reads a field of at most max bytes into *out (aliasing the input).
func readField(s *cryptobyte.String, out *[]byte, max int) bool {
	var n uint32
	if !s.ReadUint32(&n) || n > uint32(max) {
		return false
	}
	return s.ReadBytes(out, int(n))
}

// ParseConn decodes a marshaled Conn. It checks every limit before copying, refuses anything
// Marshal would not have produced, and copies what it keeps, so the caller can zero b
// afterwards (and should: b holds the keys).
func ParseConn(b []byte) (*Conn, error) {
	if len(b) > MaxMessage-HeaderLen {
		return nil, fmt.Errorf("handoff: conn payload of %d bytes exceeds %d", len(b), MaxMessage-HeaderLen)
	}
	s := cryptobyte.String(b)
	var (
		v, flags                               uint8
		st                                     cryptobyte.String
		user, ukey, hkey, svc, hash, stmt, sig []byte
		raddr, laddr, pending                  []byte
		sec                                    uint64
		nsec                                   uint32
	)
	if !s.ReadUint8(&v) || v != connVersion {
		return nil, errors.New("handoff: malformed conn: unknown version")
	}
	if !s.ReadUint24LengthPrefixed(&st) || len(st) > record.MaxStateSize {
		return nil, errors.New("handoff: malformed conn: bad transport state length")
	}
	if !readField(&s, &user, MaxNameLen) || !readField(&s, &ukey, MaxUserKeyLen) ||
		!readField(&s, &hkey, MaxHostKeyLen) || !readField(&s, &svc, MaxNameLen) ||
		!s.ReadUint8(&flags) || !s.ReadUint64(&sec) || !s.ReadUint32(&nsec) ||
		!readField(&s, &hash, MaxHashLen) || !readField(&s, &stmt, MaxStatementLen) ||
		!readField(&s, &sig, MaxSignatureLen) || !readField(&s, &raddr, MaxAddrLen) ||
		!readField(&s, &laddr, MaxAddrLen) || !readField(&s, &pending, MaxPendingLen) || !s.Empty() {
		return nil, errors.New("handoff: malformed conn: bad identity fields")
	}
	if flags&^1 != 0 {
		return nil, fmt.Errorf("handoff: malformed conn: unknown flags %#x", flags)
	}
	if nsec >= uint32(time.Second) {
		return nil, errors.New("handoff: malformed conn: nanoseconds out of range")
	}
	state, err := record.ParseState(st)
	if err != nil {
		return nil, fmt.Errorf("handoff: malformed conn: %w", err)
	}
	userKey, err := ssh.ParsePublicKey(ukey)
	if err != nil {
		state.Zero()
		return nil, fmt.Errorf("handoff: malformed conn: user key: %w", err)
	}
	hostKey, err := ssh.ParsePublicKey(hkey)
	if err != nil {
		state.Zero()
		return nil, fmt.Errorf("handoff: malformed conn: host key: %w", err)
	}
	c := &Conn{State: state, RemoteAddr: string(raddr), LocalAddr: string(laddr), Pending: clone(pending)}
	c.User, c.Service, c.Resumed = string(user), string(svc), flags&1 != 0
	c.SetKey(userKey)
	c.SetHostKey(hostKey)
	c.AuthTime = time.Unix(int64(sec), int64(nsec)).UTC()
	c.HandshakeHash, c.Statement, c.Signature = clone(hash), clone(stmt), clone(sig)
	return c, nil
}

// wire is k's SSH wire form (empty for no key).
func wire(k ssh.PublicKey) []byte {
	if k == nil {
		return nil
	}
	return k.Marshal()
}

// clone copies b, keeping an empty field nil.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// Zero wipes the transport state: the keys and the buffered bytes, and the pending verdict.
// The identity fields, which are not secret and may be shared with the connection's Identity,
// are left alone.
func (c *Conn) Zero() {
	if c.State != nil {
		c.State.Zero()
	}
	clear(c.Pending)
}
