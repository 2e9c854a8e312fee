// SPDX-License-Identifier: Apache-2.0

// Package handoff carries authenticated connections from netauthd to its workers: a control
// channel over a Unix socket pair that passes the connection's descriptor with SCM_RIGHTS
// together with its transport state and identity, and the few messages daemon and worker
// exchange about it.
//
// # Messages
//
// Each message is one SOCK_SEQPACKET datagram, so message boundaries are kept by the kernel:
//
//	version (1 byte, 1) || type (1 byte) || reserved (2 bytes, zero) || ID (8 bytes, big endian) || payload
//
// A TypeConn message carries exactly one descriptor (the connection's socket) and a payload
// made by Conn.Marshal, and so does TypeCommit (the connection, with a monitor request); every
// other type carries no descriptor. TypeAck, TypeDone, TypeExit and TypeAssigned have an empty
// payload, TypeRevoke at most MaxRevokePayload bytes (a key fingerprint, or nothing for every
// connection), and TypeAssign at most MaxRequest bytes (an Assignment). Both Send and Recv
// enforce these rules, and Recv closes every descriptor that arrives where none belongs. A type
// not listed here is unknown and refused: the numbers 7, 9 and 11 belonged to monitor requests
// that no longer exist, and are not reused.
//
// # Handing a connection over
//
// The daemon exports the record layer's state, marshals a Conn, sends it with the socket in
// a TypeConn message, and keeps the socket and the marshaled bytes until the worker answers
// with TypeAck for the same ID: if the channel fails first (Send or Recv returns an error, or
// io.EOF), the worker is gone and the daemon hands the connection to a new one. After the
// TypeAck the daemon closes its descriptor and zeroes the marshaled bytes (clear), so it keeps
// no copy of the keys. The worker parses the payload with ParseConn, zeroes the payload,
// continues the record layer with record.Import over the received socket, and zeroes the
// Conn (Zero) once imported.
//
// # Buffers
//
// A TypeConn message may be up to MaxMessage bytes (about 320 KiB), which is more than the
// default socket send buffer lets one datagram be. Pair raises the send and receive buffers of
// both ends (with SO_SNDBUFFORCE and SO_RCVBUFFORCE when the caller may, which netauthd as root
// may, and otherwise within net.core.wmem_max and rmem_max) and fails if a MaxMessage datagram
// still does not fit. The buffers are an upper bound on kernel memory, not an allocation.
package handoff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/record"
)

// Env names the environment variable holding the worker's control descriptor number.
const Env = "NETAUTH_CONTROL_FD"

// Type is the type of a control message.
type Type uint8

// Message types.
const (
	TypeConn   Type = 1 // daemon -> worker: a connection (with one descriptor)
	TypeAck    Type = 2 // worker -> daemon: connection ID received and adopted
	TypeDone   Type = 3 // worker -> daemon: connection ID closed (payload: none, or DoneAuthFailed)
	TypeExit   Type = 4 // daemon -> worker: stop taking connections and exit once the current ones end
	TypeRevoke Type = 5 // daemon -> worker: close every connection of the given key now (payload: key fingerprint, or empty for all)

	// The monitor protocol, between netauthd's unprivileged acceptor and its monitor. The
	// acceptor chooses each request's ID; the monitor's TypeReply carries the same ID. Types
	// 7, 9 and 11 were requests the acceptor no longer sends (a separate authentication,
	// resumption binder and delivery): they are unknown now, and their numbers stay unused.
	TypeBegin  Type = 6  // acceptor -> monitor: message 1 of a handshake
	TypeAbort  Type = 8  // acceptor -> monitor: a handshake failed after Begin
	TypeReply  Type = 10 // monitor -> acceptor: the answer to a request
	TypeCommit Type = 12 // acceptor -> monitor: message 3 with the connection (one descriptor), to decide and hand over in one step

	// A spare worker's assignment (assign.go): before its first connection, a spare takes a
	// user's credentials, directory, environment and arguments, and says so.
	TypeAssign   Type = 13 // daemon -> spare worker: an Assignment
	TypeAssigned Type = 14 // spare worker -> daemon: assignment taken; it is now that user's worker

	// An instance worker (netauthd's built-in worker of mode instance) says, before it takes
	// any connection, that the user's instance of the service's program accepts connections.
	TypeReady Type = 15 // instance worker -> daemon: the instance accepts connections
)

// String returns the type's name.
func (t Type) String() string {
	switch t {
	case TypeConn:
		return "conn"
	case TypeAck:
		return "ack"
	case TypeDone:
		return "done"
	case TypeExit:
		return "exit"
	case TypeRevoke:
		return "revoke"
	case TypeBegin:
		return "begin"
	case TypeAbort:
		return "abort"
	case TypeReply:
		return "reply"
	case TypeCommit:
		return "commit"
	case TypeAssign:
		return "assign"
	case TypeAssigned:
		return "assigned"
	case TypeReady:
		return "ready"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

const (
	// HeaderLen is the size of a message header: version, type, two reserved bytes, ID.
	HeaderLen = 4 + 8
	// MaxRequest bounds the payload of a monitor request or reply other than TypeCommit.
	MaxRequest = 64 << 10
	// MaxMessage bounds a whole message: header, transport state and identity.
	MaxMessage = HeaderLen + record.MaxStateSize + 64<<10
	// MaxRevokePayload bounds the payload of a TypeRevoke message (a key fingerprint).
	MaxRevokePayload = 256

	messageVersion = 1
	// maxFDs is how many descriptors Recv makes room for. Only one is ever valid; room for
	// more lets Recv receive (and close) a few extra ones itself rather than rely on the
	// kernel dropping them with MSG_CTRUNC.
	maxFDs = 8
	// bufSlack is added to MaxMessage when sizing socket buffers (the kernel reserves a
	// little of the send buffer for its own overhead).
	bufSlack = 4 << 10
)

// Message is one control message.
type Message struct {
	Type Type
	// ID names the connection the message is about (TypeConn, TypeAck, TypeDone); the
	// daemon chooses it.
	ID uint64
	// Payload is the message body: a marshaled Conn for TypeConn, a key fingerprint (or
	// nothing) for TypeRevoke, empty for the other types.
	Payload []byte
}

// check reports whether m is a valid message to travel with nfds descriptors.
func (m *Message) check(nfds int) error {
	switch m.Type {
	case TypeConn:
		if nfds != 1 {
			return fmt.Errorf("handoff: conn message with %d descriptor(s), want 1", nfds)
		}
		if len(m.Payload) == 0 {
			return errors.New("handoff: conn message without a payload")
		}
		if len(m.Payload) > MaxMessage-HeaderLen {
			return fmt.Errorf("handoff: conn payload of %d bytes exceeds %d", len(m.Payload), MaxMessage-HeaderLen)
		}
		return nil
	case TypeCommit:
		if nfds != 1 {
			return fmt.Errorf("handoff: %v message with %d descriptor(s), want 1", m.Type, nfds)
		}
		if len(m.Payload) == 0 || len(m.Payload) > MaxMessage-HeaderLen {
			return fmt.Errorf("handoff: %v payload of %d bytes", m.Type, len(m.Payload))
		}
		return nil
	case TypeBegin, TypeAbort, TypeReply:
		if nfds != 0 {
			return fmt.Errorf("handoff: %v message with %d descriptor(s), want none", m.Type, nfds)
		}
		if len(m.Payload) > MaxRequest {
			return fmt.Errorf("handoff: %v payload of %d bytes exceeds %d", m.Type, len(m.Payload), MaxRequest)
		}
		return nil
	case TypeAssign:
		if nfds != 0 {
			return fmt.Errorf("handoff: %v message with %d descriptor(s), want none", m.Type, nfds)
		}
		if len(m.Payload) == 0 || len(m.Payload) > MaxRequest {
			return fmt.Errorf("handoff: %v payload of %d bytes", m.Type, len(m.Payload))
		}
		return nil
	case TypeAck, TypeDone, TypeExit, TypeRevoke, TypeAssigned, TypeReady:
		if nfds != 0 {
			return fmt.Errorf("handoff: %v message with %d descriptor(s), want none", m.Type, nfds)
		}
		switch {
		case m.Type == TypeRevoke:
			if len(m.Payload) > MaxRevokePayload {
				return fmt.Errorf("handoff: revoke payload of %d bytes exceeds %d", len(m.Payload), MaxRevokePayload)
			}
		case m.Type == TypeDone && len(m.Payload) == 1 && m.Payload[0] == DoneAuthFailed:
		case len(m.Payload) != 0:
			return fmt.Errorf("handoff: %v message with a %d-byte payload, want none", m.Type, len(m.Payload))
		}
		return nil
	}
	return fmt.Errorf("handoff: unknown message type %d", uint8(m.Type))
}

// DoneAuthFailed, as a TypeDone payload, says the worker closed the connection because a
// record from the client failed authentication: a tampered stream, or a socket that is not
// the authenticated client's.
const DoneAuthFailed byte = 1

// marshal returns the message as one datagram.
func (m *Message) marshal() []byte {
	b := make([]byte, HeaderLen+len(m.Payload))
	b[0] = messageVersion
	b[1] = byte(m.Type)
	binary.BigEndian.PutUint64(b[4:], m.ID)
	copy(b[HeaderLen:], m.Payload)
	return b
}

// A MessageError is Recv's error for a message it received and refused: too large,
// truncated, malformed, of an unknown type, or with descriptors where none belong (or none
// where one does). The message was consumed and every descriptor it brought closed, so the
// channel can still be used. HasHeader tells whether the message had a valid header; Type
// and ID are then the header's, so that a peer answering requests can name the one it
// refuses.
type MessageError struct {
	Type      Type
	ID        uint64
	HasHeader bool
	Err       error
}

func (e *MessageError) Error() string { return e.Err.Error() }
func (e *MessageError) Unwrap() error { return e.Err }

// refused returns the MessageError for a consumed message whose first bytes are b.
func refused(b []byte, err error) *MessageError {
	e := &MessageError{Err: err}
	if len(b) >= HeaderLen && b[0] == messageVersion && b[2] == 0 && b[3] == 0 {
		e.Type, e.ID, e.HasHeader = Type(b[1]), binary.BigEndian.Uint64(b[4:HeaderLen]), true
	}
	return e
}

// parseMessage decodes a datagram received with nfds descriptors. The payload aliases b.
func parseMessage(b []byte, nfds int) (*Message, error) {
	if len(b) > MaxMessage {
		return nil, fmt.Errorf("handoff: message of %d bytes exceeds %d", len(b), MaxMessage)
	}
	if len(b) < HeaderLen {
		return nil, fmt.Errorf("handoff: message of %d bytes is shorter than its header", len(b))
	}
	if b[0] != messageVersion {
		return nil, fmt.Errorf("handoff: message version %d, want %d", b[0], messageVersion)
	}
	if b[2] != 0 || b[3] != 0 {
		return nil, errors.New("handoff: reserved header bytes are not zero")
	}
	m := &Message{Type: Type(b[1]), ID: binary.BigEndian.Uint64(b[4:HeaderLen])}
	if len(b) > HeaderLen {
		m.Payload = b[HeaderLen:]
	}
	if err := m.check(nfds); err != nil {
		return nil, err
	}
	return m, nil
}

// Channel is one end of a control channel: a SOCK_SEQPACKET Unix socket pair, so message
// boundaries are kept. Send and Recv are safe for concurrent use by any number of sending
// goroutines (Send is serialized) and one receiving goroutine.
type Channel struct {
	conn   *net.UnixConn
	sc     syscall.RawConn
	sendMu sync.Mutex
}

// Pair makes a connected control channel: the daemon keeps the *Channel, the worker inherits
// the *os.File. Both descriptors are close-on-exec; pass the file to the worker through
// exec.Cmd.ExtraFiles (which clears the flag in the child only) and its number in Env. Pair
// sizes both ends' socket buffers so a MaxMessage datagram fits (see the package comment).
func Pair() (*Channel, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("handoff: socketpair: %w", err)
	}
	for _, fd := range fds {
		if err := sizeBuffers(fd); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			return nil, nil, err
		}
	}
	mine := os.NewFile(uintptr(fds[0]), "netauth-control")
	worker := os.NewFile(uintptr(fds[1]), "netauth-control")
	c, err := newChannel(mine)
	mine.Close()
	if err != nil {
		worker.Close()
		return nil, nil, err
	}
	return c, worker, nil
}

// sizeBuffers raises a socket's send and receive buffers so one MaxMessage datagram fits,
// forcing past the system limits where the caller has CAP_NET_ADMIN.
func sizeBuffers(fd int) error {
	want := MaxMessage + bufSlack
	for _, o := range [...]struct {
		force, plain int
		name         string
	}{
		{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, "SO_SNDBUF"},
		{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, "SO_RCVBUF"},
	} {
		err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.force, want)
		if errors.Is(err, unix.EPERM) {
			err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.plain, want)
		}
		if err != nil {
			return fmt.Errorf("handoff: setting %s: %w", o.name, err)
		}
	}
	// A Unix datagram may use the send buffer less 32 bytes (the kernel doubles the value
	// set, and caps it at net.core.wmem_max without the FORCE option).
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return fmt.Errorf("handoff: reading SO_SNDBUF: %w", err)
	}
	if got-32 < MaxMessage {
		return fmt.Errorf("handoff: a %d-byte socket send buffer cannot carry a %d-byte message; raise net.core.wmem_max or run with CAP_NET_ADMIN", got, MaxMessage)
	}
	return nil
}

// FromFile wraps an inherited control descriptor (the worker side). It checks that f is a
// SOCK_SEQPACKET Unix socket. FromFile takes f over: it closes f whether or not it succeeds,
// and the Channel holds its own close-on-exec descriptor, so programs the worker starts do not
// inherit the control socket.
func FromFile(f *os.File) (*Channel, error) {
	if f == nil {
		return nil, errors.New("handoff: no control descriptor")
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("handoff: control descriptor: %w", err)
	}
	var domain, typ int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); serr != nil {
			return
		}
		typ, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	}); err != nil {
		return nil, fmt.Errorf("handoff: control descriptor: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("handoff: control descriptor is not a socket: %w", serr)
	}
	if domain != unix.AF_UNIX || typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("handoff: control descriptor is a socket of domain %d type %d, want a Unix SOCK_SEQPACKET socket", domain, typ)
	}
	return newChannel(f)
}

// newChannel wraps a duplicate of f's descriptor; the caller still closes f.
func newChannel(f *os.File) (*Channel, error) {
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("handoff: control socket: %w", err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("handoff: control socket is a %T, want a Unix socket", nc)
	}
	sc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("handoff: control socket: %w", err)
	}
	return &Channel{conn: uc, sc: sc}, nil
}

// Send sends m, with fd for TypeConn (exactly one descriptor) and nil otherwise. It refuses
// messages that break the rules Recv enforces. Send does not take fd over: the caller still
// closes it, and should keep it until the worker acknowledges the connection. Send zeroes its
// own copy of the message; the caller zeroes m.Payload when it no longer needs it. An error
// means the message was not delivered (for example because the worker has exited).
func (c *Channel) Send(m *Message, fd *os.File) error {
	if fd == nil {
		// Not SendConn(m, fd): a nil *os.File would be a non-nil syscall.Conn.
		return c.SendConn(m, nil)
	}
	return c.SendConn(m, fd)
}

// SendConn is Send with the descriptor of conn (nil for none), which may be a socket the
// caller goes on using, such as a *net.TCPConn: its own descriptor is sent, without the copy
// that taking it as an *os.File (File) makes first.
func (c *Channel) SendConn(m *Message, conn syscall.Conn) error {
	if m == nil {
		return errors.New("handoff: send of a nil message")
	}
	n := 0
	if conn != nil {
		n = 1
	}
	if err := m.check(n); err != nil {
		return err
	}
	b := m.marshal()
	defer clear(b)
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if conn == nil {
		return c.write(m, b, nil)
	}
	// Control keeps the descriptor open during the send and, unlike os.File's Fd, leaves its
	// blocking mode alone.
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("handoff: sending %v %d: descriptor: %w", m.Type, m.ID, err)
	}
	var werr error
	if err := rc.Control(func(s uintptr) {
		werr = c.write(m, b, unix.UnixRights(int(s)))
	}); err != nil {
		return fmt.Errorf("handoff: sending %v %d: descriptor: %w", m.Type, m.ID, err)
	}
	return werr
}

// write sends one datagram. Callers hold sendMu.
func (c *Channel) write(m *Message, b, oob []byte) error {
	n, oobn, err := c.conn.WriteMsgUnix(b, oob, nil)
	if err != nil {
		return fmt.Errorf("handoff: sending %v %d: %w", m.Type, m.ID, err)
	}
	if n != len(b) || oobn != len(oob) {
		return fmt.Errorf("handoff: sending %v %d: short write (%d of %d bytes)", m.Type, m.ID, n, len(b))
	}
	return nil
}

// Recv receives the next message and, for TypeConn and TypeCommit, its descriptor
// (close-on-exec; the caller owns it). It returns io.EOF when the peer has closed its end, and
// an error wrapping io.EOF (test with errors.Is) when the peer closed it without reading every
// message sent to it: a daemon then hands the connections the worker did not acknowledge to
// another. It refuses, with a *MessageError, a message that is too large, truncated,
// malformed, of an unknown type, or that carries descriptors where none belong (or too many
// to receive); it closes every descriptor such a message brought. Every descriptor received
// has SO_LINGER turned off at once (see unlinger), so that no close of it, here or by the
// caller, waits for as long as its sender chose. A refused message is consumed, so Recv may be called again: a worker normally closes the channel to a daemon that
// sends one, while netauthd's monitor refuses the request and goes on serving its acceptor.
//
// Recv first learns the size of the pending datagram (MSG_PEEK|MSG_TRUNC), checks it against
// MaxMessage, and then receives it into a buffer of exactly that size: a daemon with many
// workers does not hold a MaxMessage buffer per channel. MSG_TRUNC and MSG_CTRUNC on the
// receive itself are still checked.
func (c *Channel) Recv() (*Message, *os.File, error) {
	var (
		m    *Message
		f    *os.File
		rerr error
	)
	err := c.sc.Read(func(fd uintptr) bool {
		m, f, rerr = recv(int(fd))
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("handoff: receive: %w", err)
	}
	if rerr != nil {
		return nil, nil, rerr
	}
	return m, f, nil
}

// recv receives one datagram from the non-blocking socket fd; it returns an error wrapping
// unix.EAGAIN when none is pending.
func recv(fd int) (*Message, *os.File, error) {
	var peek [HeaderLen]byte
	size, err := retry(func() (int, error) {
		n, _, _, _, err := unix.Recvmsg(fd, peek[:], nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		return n, err
	})
	if err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return nil, nil, err
		}
		if errors.Is(err, unix.ECONNRESET) {
			// The peer closed its end with messages of ours still unread.
			return nil, nil, fmt.Errorf("handoff: peer closed the channel without reading every message: %w (%w)", io.EOF, err)
		}
		return nil, nil, fmt.Errorf("handoff: receive: %w", err)
	}
	if size > MaxMessage {
		// Consume the datagram without its body; the kernel discards what does not fit.
		_, fds, _ := recvInto(fd, peek[:])
		closeFDs(fds)
		return nil, nil, refused(peek[:], fmt.Errorf("handoff: message of %d bytes exceeds %d", size, MaxMessage))
	}
	// One byte more than announced, so a datagram that grew in between shows as MSG_TRUNC.
	buf := make([]byte, size+1)
	n, fds, err := recvInto(fd, buf)
	if err != nil {
		clear(buf)
		closeFDs(fds)
		return nil, nil, err
	}
	// Like the net package, take an empty datagram as the end of the stream: the kernel
	// reports the peer's close that way, and no valid message is empty.
	if n == 0 && len(fds) == 0 {
		return nil, nil, io.EOF
	}
	if n != size {
		err := refused(buf[:n], fmt.Errorf("handoff: message of %d bytes announced as %d", n, size))
		clear(buf)
		closeFDs(fds)
		return nil, nil, err
	}
	m, err := parseMessage(buf[:n], len(fds))
	if err != nil {
		merr := refused(buf[:n], err)
		clear(buf)
		closeFDs(fds)
		return nil, nil, merr
	}
	var f *os.File
	if len(fds) == 1 {
		f = os.NewFile(uintptr(fds[0]), "netauth-conn")
	}
	return m, f, nil
}

// recvInto receives one datagram into buf with room for maxFDs descriptors, which arrive
// close-on-exec. It returns the descriptors received even with an error, except EAGAIN;
// truncated data or control messages are errors (a MessageError: the datagram is consumed).
func recvInto(fd int, buf []byte) (int, []int, error) {
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	var n, oobn, flags int
	_, err := retry(func() (int, error) {
		var err error
		n, oobn, flags, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		return n, err
	})
	if err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return 0, nil, err
		}
		return 0, nil, fmt.Errorf("handoff: receive: %w", err)
	}
	fds, perr := parseRights(oob[:oobn])
	unlinger(fds)
	switch {
	case flags&unix.MSG_CTRUNC != 0:
		closeFDs(fds)
		return 0, nil, refused(buf[:n], errors.New("handoff: message carried more descriptors than allowed (control data truncated)"))
	case perr != nil:
		closeFDs(fds)
		return 0, nil, refused(buf[:n], perr)
	case flags&unix.MSG_TRUNC != 0:
		return n, fds, refused(buf[:n], errors.New("handoff: message truncated"))
	}
	return n, fds, nil
}

// parseRights returns the descriptors in the SCM_RIGHTS control messages of oob. It returns
// those it could parse even with an error, so the caller can close them.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("handoff: malformed control data: %w", err)
	}
	var fds []int
	var bad error
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("handoff: unexpected control message (level %d type %d)", msgs[i].Header.Level, msgs[i].Header.Type)
			continue
		}
		r, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			bad = fmt.Errorf("handoff: malformed descriptor list: %w", err)
			continue
		}
		fds = append(fds, r...)
	}
	return fds, bad
}

// retry calls f until it fails with something other than EINTR.
func retry(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// closeFDs closes descriptors received where none belong, with SO_LINGER off first (see
// unlinger).
func closeFDs(fds []int) {
	unlinger(fds)
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// unlinger turns SO_LINGER off on each descriptor that is a socket (and does nothing to the
// others). The sender of a descriptor chooses its socket options, and the last close of a TCP
// socket with SO_LINGER on waits, in the closing thread, until its unsent data is acknowledged
// or the linger time runs out: a sender that closes its own reference after sending, with data
// queued to a peer that never reads, would otherwise make the receiver's close of it (of a
// connection refused, or of one sent where none belongs) hang for as long as it likes.
func unlinger(fds []int) {
	for _, fd := range fds {
		_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{})
	}
}

// SetReadDeadline sets the deadline for Recv: past it, a waiting Recv returns an error
// wrapping os.ErrDeadlineExceeded. A zero t means none.
func (c *Channel) SetReadDeadline(t time.Time) error {
	if err := c.conn.SetReadDeadline(t); err != nil {
		return fmt.Errorf("handoff: setting the receive deadline: %w", err)
	}
	return nil
}

// SetWriteDeadline sets the deadline for Send. Send waits while the peer's queue is full, so
// a daemon sets one to keep a worker that stopped reading from holding it up. Past the
// deadline Send returns an error wrapping os.ErrDeadlineExceeded. A zero t means none.
func (c *Channel) SetWriteDeadline(t time.Time) error {
	if err := c.conn.SetWriteDeadline(t); err != nil {
		return fmt.Errorf("handoff: setting the send deadline: %w", err)
	}
	return nil
}

// Close closes this end of the channel; the peer's Recv then returns io.EOF and its Send
// fails. A Recv blocked on this end returns an error wrapping net.ErrClosed.
func (c *Channel) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("handoff: close: %w", err)
	}
	return nil
}
