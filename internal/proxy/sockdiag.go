// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Looking up a TCP client with NETLINK_SOCK_DIAG.
//
// The kernel's inet_diag interface answers a request naming an exact 4-tuple with a hash
// lookup of that one socket (the same lookup an arriving packet gets), where the /proc tables
// cost a walk of every socket on the machine: about 20 ms per connection with 6,000 sockets.
// The proxy therefore asks netlink first and reads /proc (procnet.go) only where netlink is
// not available, which it finds out once, with a probe, and logs.
//
// The request is SOCK_DIAG_BY_FAMILY without NLM_F_DUMP, naming the client's socket: source
// the client's address and port, destination the proxy's. The reply is one inet_diag_msg, or
// NLMSG_ERROR with ENOENT when no socket has that tuple. The answer is believed on the same
// terms as a /proc row (see procnet.go): the socket reported must have the tuple asked for,
// be in a connected state and have a nonzero inode. An exact lookup ignores idiag_states, and
// when no connection matches it can return a listening socket bound to the client's port, or
// the TIME_WAIT remnant of a closed socket (uid 0, inode 0); all of these are refused.
// The request names the loopback device (idiag_if 1): the lookup then finds sockets bound to
// no device and sockets bound to "lo", where idiag_if 0 would miss the latter.
//
// ENOENT is also what the kernel answers when the inet_diag or tcp_diag module is missing, so
// it would be mistaken for "no such socket" and every client refused. The probe tells the two
// apart: a dump request for no states at all walks nothing and ends with NLMSG_DONE when the
// modules are there, and fails with ENOENT when they are not.

// Layout of the kernel's structures (include/uapi/linux/inet_diag.h, netlink.h). Integers are
// in host byte order except ports, which are in network byte order, like the addresses.
const (
	sizeofNlMsghdr     = 16
	sizeofInetDiagReq  = 56 // struct inet_diag_req_v2
	sizeofInetDiagMsg  = 72 // struct inet_diag_msg
	inetDiagNoCookie   = ^uint32(0)
	loopbackIfindex    = 1 // LOOPBACK_IFINDEX: "lo" in every network namespace
	sockDiagReplyBytes = 8192
	sockDiagTimeout    = 2 * time.Second
)

// acceptedStates is the idiag_states mask of connectedState.
const acceptedStates = 1<<tcpEstablished | 1<<tcpFinWait1 | 1<<tcpFinWait2 | 1<<tcpCloseWait | 1<<tcpLastAck | 1<<tcpClosing

// errNoSocket reports that the kernel knows no socket with the tuple asked for.
var errNoSocket = errors.New("no such socket")

// sockDiagSeq numbers requests, so that a reply can be matched to its request.
var sockDiagSeq atomic.Uint32

// sockDiagRequest builds a SOCK_DIAG_BY_FAMILY request for TCP sockets. With dump unset it
// asks for the one socket whose local address is src and whose remote address is dst, both of
// family AF_INET (IPv4 addresses) or AF_INET6; with dump set it asks for every socket in the
// given states.
func sockDiagRequest(seq uint32, dump bool, states uint32, src, dst netip.AddrPort) []byte {
	b := make([]byte, sizeofNlMsghdr+sizeofInetDiagReq)
	ne := binary.NativeEndian
	flags := uint16(unix.NLM_F_REQUEST)
	if dump {
		flags |= unix.NLM_F_DUMP
	}
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	ne.PutUint32(b[12:], 0) // the kernel fills in our port id

	r := b[sizeofNlMsghdr:]
	r[0] = unix.AF_INET
	if src.Addr().Is6() {
		r[0] = unix.AF_INET6
	}
	r[1] = unix.IPPROTO_TCP
	r[2] = 0 // idiag_ext: no extensions
	ne.PutUint32(r[4:], states)
	// struct inet_diag_sockid
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], src.Port())
	binary.BigEndian.PutUint16(id[2:], dst.Port())
	if src.Addr().IsValid() {
		copy(id[4:20], src.Addr().AsSlice())
	}
	if dst.Addr().IsValid() {
		copy(id[20:36], dst.Addr().AsSlice())
	}
	ne.PutUint32(id[36:], loopbackIfindex)
	ne.PutUint32(id[40:], inetDiagNoCookie)
	ne.PutUint32(id[44:], inetDiagNoCookie)
	return b
}

// parseSockDiagReply parses one datagram received in answer to request seq. It returns the
// sockets it reports, and done when the answer is complete: after a single-part message (the
// answer to an exact lookup), NLMSG_DONE or NLMSG_ERROR. An NLMSG_ERROR or an NLMSG_DONE
// carrying an error is returned as the error's syscall.Errno. Anything malformed, or answering
// another request, is an error.
func parseSockDiagReply(b []byte, seq uint32) (entries []socketEntry, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < sizeofNlMsghdr {
			return nil, false, fmt.Errorf("sock_diag reply: %d trailing bytes, too short for a message header", len(b))
		}
		n := ne.Uint32(b[0:])
		typ := ne.Uint16(b[4:])
		flags := ne.Uint16(b[6:])
		if n < sizeofNlMsghdr || uint64(n) > uint64(len(b)) {
			return nil, false, fmt.Errorf("sock_diag reply: message length %d with %d bytes left", n, len(b))
		}
		if got := ne.Uint32(b[8:]); got != seq {
			return nil, false, fmt.Errorf("sock_diag reply: sequence number %d, want %d", got, seq)
		}
		payload := b[sizeofNlMsghdr:n]
		// Messages are padded to 4 bytes; the last one may lack its padding.
		next := min((uint64(n)+3)&^3, uint64(len(b)))
		b = b[next:]
		if done {
			return nil, false, errors.New("sock_diag reply: a message after the end of the answer")
		}
		switch typ {
		case unix.NLMSG_NOOP:
			continue
		case unix.NLMSG_ERROR:
			if len(payload) < 4 {
				return nil, false, fmt.Errorf("sock_diag reply: error message of %d bytes", len(payload))
			}
			if errno := int32(ne.Uint32(payload)); errno < 0 {
				return nil, false, syscall.Errno(-errno)
			} else if errno > 0 {
				return nil, false, fmt.Errorf("sock_diag reply: error message with positive code %d", errno)
			}
			done = true // an acknowledgement
		case unix.NLMSG_DONE:
			if len(payload) >= 4 {
				if errno := int32(ne.Uint32(payload)); errno < 0 {
					return nil, false, syscall.Errno(-errno)
				}
			}
			done = true
		case unix.SOCK_DIAG_BY_FAMILY:
			e, err := parseInetDiagMsg(payload)
			if err != nil {
				return nil, false, err
			}
			entries = append(entries, e)
			done = flags&unix.NLM_F_MULTI == 0
		default:
			return nil, false, fmt.Errorf("sock_diag reply: unexpected message type %d", typ)
		}
	}
	return entries, done, nil
}

// parseInetDiagMsg parses a struct inet_diag_msg (attributes after it are ignored).
func parseInetDiagMsg(m []byte) (socketEntry, error) {
	if len(m) < sizeofInetDiagMsg {
		return socketEntry{}, fmt.Errorf("sock_diag reply: socket message of %d bytes, want at least %d", len(m), sizeofInetDiagMsg)
	}
	ne := binary.NativeEndian
	var e socketEntry
	sport := binary.BigEndian.Uint16(m[4:])
	dport := binary.BigEndian.Uint16(m[6:])
	switch m[0] {
	case unix.AF_INET:
		e.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m[8:12])), sport)
		e.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(m[24:28])), dport)
	case unix.AF_INET6:
		e.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(m[8:24])), sport)
		e.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(m[24:40])), dport)
	default:
		return socketEntry{}, fmt.Errorf("sock_diag reply: socket of address family %d", m[0])
	}
	e.State = m[1]
	e.UID = ne.Uint32(m[64:])
	e.Inode = uint64(ne.Uint32(m[68:]))
	return e, nil
}

// sockDiag sends one request and returns the sockets the kernel reports.
func sockDiag(dump bool, states uint32, src, dst netip.AddrPort) ([]socketEntry, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("opening a NETLINK_SOCK_DIAG socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(sockDiagTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("setting a timeout on the NETLINK_SOCK_DIAG socket: %w", err)
	}
	seq := sockDiagSeq.Add(1)
	req := sockDiagRequest(seq, dump, states, src, dst)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sending a sock_diag request: %w", err)
	}
	buf := make([]byte, sockDiagReplyBytes)
	var entries []socketEntry
	for {
		n, _, rflags, from, err := unix.Recvmsg(fd, buf, nil, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receiving the sock_diag reply: %w", err)
		}
		if nl, ok := from.(*unix.SockaddrNetlink); !ok || nl.Pid != 0 {
			return nil, fmt.Errorf("sock_diag reply from %v, not from the kernel", from)
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return nil, errors.New("sock_diag reply truncated")
		}
		es, done, err := parseSockDiagReply(buf[:n], seq)
		if err != nil {
			return nil, err
		}
		entries = append(entries, es...)
		if done {
			return entries, nil
		}
	}
}

// sockDiagLookup asks the kernel for the TCP socket whose local address is local and whose
// remote address is remote. It returns errNoSocket if there is none.
func sockDiagLookup(local, remote netip.AddrPort) (socketEntry, error) {
	local, remote = unmapAddrPort(local), unmapAddrPort(remote)
	if local.Addr().Is4() != remote.Addr().Is4() {
		return socketEntry{}, fmt.Errorf("addresses %s and %s are of different families", local, remote)
	}
	// An IPv4 lookup also finds an IPv6 socket connected to an IPv4-mapped address: the
	// kernel hashes such a socket under its IPv4 addresses.
	entries, err := sockDiag(false, acceptedStates, local, remote)
	if errors.Is(err, unix.ENOENT) {
		return socketEntry{}, errNoSocket
	}
	if err != nil {
		return socketEntry{}, err
	}
	if len(entries) != 1 {
		return socketEntry{}, fmt.Errorf("sock_diag: %d sockets in the answer to an exact lookup", len(entries))
	}
	return entries[0], nil
}

// errNotLive reports that the socket found is not one a process holds open and connected.
var errNotLive = errors.New("not an open connected socket")

// sockDiagOwner returns the uid and inode of the live connected TCP socket whose local
// address is client and whose remote address is server: the owner of the client's end of a
// connection to the proxy. It fails if there is no such socket (errNoSocket), or if the one
// found is not believed (errNotLive; see the comment at the top of this file).
func sockDiagOwner(client, server netip.AddrPort) (uid uint32, inode uint64, err error) {
	e, err := sockDiagLookup(client, server)
	if err != nil {
		return 0, 0, fmt.Errorf("looking up %s -> %s with sock_diag: %w", client, server, err)
	}
	if unmapAddrPort(e.Local) != unmapAddrPort(client) || unmapAddrPort(e.Remote) != unmapAddrPort(server) {
		return 0, 0, fmt.Errorf("looking up %s -> %s with sock_diag: the kernel reported the socket %s -> %s (state %d): %w",
			client, server, e.Local, e.Remote, e.State, errNotLive)
	}
	if !connectedState(e.State) || e.Inode == 0 {
		return 0, 0, fmt.Errorf("looking up %s -> %s with sock_diag: the socket is in state %d with inode %d (closed by its owner?): %w",
			client, server, e.State, e.Inode, errNotLive)
	}
	return e.UID, e.Inode, nil
}

// probeSockDiag checks that the kernel answers TCP sock_diag requests: a dump of the sockets
// in no state, which walks no socket table.
func probeSockDiag() error {
	entries, err := sockDiag(true, 0, netip.AddrPortFrom(netip.IPv4Unspecified(), 0), netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		return err
	}
	if len(entries) != 0 {
		return fmt.Errorf("sock_diag: %d sockets reported for an empty set of states", len(entries))
	}
	return nil
}

// sockDiagUnavailable reports whether err, from the probe, means that this kernel or sandbox
// does not offer sock_diag, rather than a passing failure.
func sockDiagUnavailable(err error) bool {
	for _, e := range []error{unix.EPROTONOSUPPORT, unix.EAFNOSUPPORT, unix.EACCES, unix.EPERM, unix.ENOENT,
		unix.EOPNOTSUPP, unix.ENOSYS, unix.EINVAL, unix.ECONNREFUSED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ownerFinder finds the uid owning the client end of a loopback TCP connection: with
// sock_diag when the kernel offers it, else from the /proc tables.
type ownerFinder struct {
	log     *slog.Logger
	procNet string
	probe   func() error // probeSockDiag, replaced in tests

	mu      sync.Mutex
	decided bool
	useProc bool
}

func newOwnerFinder(log *slog.Logger) *ownerFinder {
	return &ownerFinder{log: log, procNet: procNet, probe: probeSockDiag}
}

// owner returns the uid owning the live socket connected from client to server. It fails
// closed: any doubt is an error.
func (f *ownerFinder) owner(client, server netip.AddrPort) (int, error) {
	if f.useSockDiag() {
		uid, _, err := sockDiagOwner(client, server)
		if err != nil {
			return 0, err
		}
		return int(uid), nil
	}
	return tcpOwner(f.procNet, client, server)
}

// useSockDiag probes sock_diag until the answer is known, and reports whether to use it.
// While a probe fails for a passing reason (out of file descriptors, say), /proc is used.
func (f *ownerFinder) useSockDiag() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.decided {
		return !f.useProc
	}
	err := f.probe()
	switch {
	case err == nil:
		f.decided = true
	case sockDiagUnavailable(err):
		f.decided, f.useProc = true, true
		f.log.Warn(fmt.Sprintf("netlink sock_diag is not available (%v); looking up the owners of TCP connections in %s/tcp and tcp6, which is slow when the machine has many sockets", err, f.procNet),
			"err", err)
	default:
		f.log.Warn(fmt.Sprintf("probing netlink sock_diag failed (%v); looking this connection's owner up in %s/tcp and tcp6", err, f.procNet),
			"err", err)
		return false
	}
	return !f.useProc
}
