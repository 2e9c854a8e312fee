// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// acceptedConn checks a descriptor the acceptor passed as a client connection of service s,
// before anything uses it: it must be a TCP socket (SOCK_STREAM, IPPROTO_TCP or
// IPPROTO_MPTCP), not a listening one, connected, and bound to the address of one of s's
// listening sockets (the same family and port, and the same address unless the listener's is
// the wildcard), as the sockets those listeners accept are. It returns the peer and local
// addresses as the monitor read them from the socket. A pipe or file, a listening,
// unconnected or reset socket, a UDP or Unix socket, or a connection that none of the
// service's listeners has is refused, with an error saying which (and the peer address, when
// it is known). Services listen only on TCP (policy: listen host:port), so no other family is
// ever valid.
func (s *service) acceptedConn(f *os.File) (remote, local string, err error) {
	if f == nil {
		return "", "", errors.New("missing")
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return "", "", fmt.Errorf("unusable: %w", err)
	}
	var peer, self syscall.Sockaddr
	var cerr error
	if err := rc.Control(func(fd uintptr) { peer, self, cerr = connectedTCP(int(fd)) }); err != nil {
		return "", "", fmt.Errorf("unusable: %w", err)
	}
	if cerr != nil {
		return "", "", cerr
	}
	remote, local = sockaddrString(peer), sockaddrString(self)
	if !s.listensOn(self) {
		return remote, "", fmt.Errorf("a connection to %s, an address none of the service's listening sockets has", local)
	}
	return remote, local, nil
}

// closeUnlingered closes a connection the acceptor passed and the monitor did not hand over,
// with SO_LINGER off first. The monitor's close may be the last reference to the socket (an
// acceptor can close its own right after sending it), and a last close of a TCP socket whose
// SO_LINGER is on waits, in the closing thread, until its unsent data is acknowledged or the
// linger time, which the acceptor chose, runs out: a peer that never reads holds it that long.
// handoff.Recv has turned SO_LINGER off already when the descriptor arrived; this narrows
// the time an acceptor that keeps a reference has to turn it on again to the two system
// calls here.
func closeUnlingered(c socketHandle) {
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{})
		})
	}
	c.Close()
}

// lingeringCloses bounds the closes of handed-over connections with SO_LINGER on that run in
// goroutines of their own (releaseHandedOver), in each process.
var lingeringCloses = make(chan struct{}, 16)

// socketHandle is a connection's socket as the monitor (*os.File) or the acceptor
// (*net.TCPConn) holds it.
type socketHandle interface {
	SyscallConn() (syscall.RawConn, error)
	Close() error
}

// releaseHandedOver closes this process's copy of a connection handed to a worker. The worker
// may have set SO_LINGER (its right) and closed its own reference already, which leaves the
// last close here, and a last close with SO_LINGER on waits, in the closing thread, for the
// linger time while the client keeps its window shut: a worker taken over, with a client of
// its own, could otherwise pile up blocked threads in the acceptor (whose close, once the
// monitor answered, is the last when the worker adopted and closed the connection first) until
// the Go runtime's limit of 10,000 stopped it, or in the monitor (which closes its copy when
// the worker acknowledges the connection, after the worker may have closed its own). So a
// connection with SO_LINGER on is closed in a goroutine of its own, at most 16 at a time (a
// close that is not the last returns at once); past that, with SO_LINGER turned off first,
// which still sends what is queued. One with it off, the usual case, is simply closed.
func releaseHandedOver(c socketHandle) {
	lingers := false
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			l, err := unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER)
			lingers = err == nil && l.Onoff != 0 && l.Linger > 0
		})
	}
	if !lingers {
		c.Close()
		return
	}
	select {
	case lingeringCloses <- struct{}{}:
		go func() {
			defer func() { <-lingeringCloses }()
			c.Close()
		}()
	default:
		closeUnlingered(c)
	}
}

// connectedTCP checks that fd is a connected, non-listening IPv4 or IPv6 TCP socket and
// returns its peer and local addresses. They are read with package syscall's getsockname and
// getpeername, which, unlike x/sys/unix's, do not ask the socket's protocol again for each
// (to tell L2TP sockets apart, which SO_PROTOCOL has ruled out here).
func connectedTCP(fd int) (peer, self syscall.Sockaddr, err error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, nil, fmt.Errorf("not a socket (%w)", err)
	}
	if typ != unix.SOCK_STREAM {
		return nil, nil, fmt.Errorf("a socket of type %d, not a stream socket", typ)
	}
	// Go's listeners are Multipath TCP where the kernel has it, so a client that speaks it
	// arrives on an IPPROTO_MPTCP socket: TCP too, as far as the handshake is concerned.
	if proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil || (proto != unix.IPPROTO_TCP && proto != unix.IPPROTO_MPTCP) {
		return nil, nil, fmt.Errorf("a stream socket of protocol %d, not TCP", proto)
	}
	if self, err = syscall.Getsockname(fd); err != nil {
		return nil, nil, fmt.Errorf("a socket without an address (%w)", err)
	}
	switch self.(type) {
	case *syscall.SockaddrInet4, *syscall.SockaddrInet6:
	default:
		return nil, nil, errors.New("not an IPv4 or IPv6 socket")
	}
	if peer, err = syscall.Getpeername(fd); err != nil {
		// A listening socket has no peer either: say which it is (asked only here, as a
		// connected socket is never a listening one).
		if listening, lerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); lerr != nil || listening != 0 {
			return nil, nil, errors.New("a listening socket")
		}
		return nil, nil, fmt.Errorf("not connected (%w)", err)
	}
	return peer, self, nil
}

// listensOn reports whether one of the service's listening sockets accepts connections on
// local address sa: the same family and port, and the same address unless the listener's
// is the wildcard.
func (s *service) listensOn(sa syscall.Sockaddr) bool {
	for _, lsa := range s.listenAddrs() {
		switch a := sa.(type) {
		case *syscall.SockaddrInet4:
			if l, ok := lsa.(*syscall.SockaddrInet4); ok && l.Port == a.Port && (l.Addr == [4]byte{} || l.Addr == a.Addr) {
				return true
			}
		case *syscall.SockaddrInet6:
			if l, ok := lsa.(*syscall.SockaddrInet6); ok && l.Port == a.Port && (l.Addr == [16]byte{} || l.Addr == a.Addr) {
				return true
			}
		}
	}
	return false
}

// listenAddrs returns the local addresses of the service's listening sockets, as the
// kernel reports them (the port a ":0" was given, say), read once: a listening socket's
// address does not change.
func (s *service) listenAddrs() []syscall.Sockaddr {
	s.addrsOnce.Do(func() {
		for _, ln := range s.listeners {
			sc, ok := ln.(syscall.Conn)
			if !ok {
				continue
			}
			rc, err := sc.SyscallConn()
			if err != nil {
				continue
			}
			var lsa syscall.Sockaddr
			var lerr error
			if err := rc.Control(func(fd uintptr) { lsa, lerr = syscall.Getsockname(int(fd)) }); err == nil && lerr == nil {
				s.addrs = append(s.addrs, lsa)
			}
		}
	})
	return s.addrs
}

// sockaddrString formats an IPv4 or IPv6 socket address as host:port, as the net package
// does.
func sockaddrString(sa syscall.Sockaddr) string {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return (&net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}).String()
	case *syscall.SockaddrInet6:
		zone := ""
		if a.ZoneId != 0 {
			zone = strconv.Itoa(int(a.ZoneId))
			if ifi, err := net.InterfaceByIndex(int(a.ZoneId)); err == nil {
				zone = ifi.Name
			}
		}
		return (&net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port, Zone: zone}).String()
	}
	return ""
}
