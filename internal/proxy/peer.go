// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peer is the local process at the other end of an accepted connection.
type peer struct {
	uid  int
	desc string // for log messages: "pid N" or the client's address
}

// procNet is the directory of the kernel's socket tables for this process's network namespace.
const procNet = "/proc/self/net"

// peerOf finds who owns the other end of an accepted local connection: the kernel's peer
// credentials (SO_PEERCRED) for a Unix socket, the socket tables for loopback TCP.
func (p *Proxy) peerOf(c net.Conn) (peer, error) {
	switch c := c.(type) {
	case *net.UnixConn:
		return unixPeer(c)
	case *net.TCPConn:
		client := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		server := c.LocalAddr().(*net.TCPAddr).AddrPort()
		uid, err := p.tcpOwner(client, server)
		if err != nil {
			return peer{desc: client.String()}, err
		}
		return peer{uid: uid, desc: client.String()}, nil
	}
	return peer{desc: c.RemoteAddr().String()}, fmt.Errorf("cannot identify the owner of a %T connection", c)
}

// unixPeer returns the credentials the kernel recorded for the process that connected to a
// Unix socket.
func unixPeer(c *net.UnixConn) (peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer{desc: "unknown process"}, fmt.Errorf("reading peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{desc: "unknown process"}, fmt.Errorf("reading peer credentials: %w", err)
	}
	if credErr != nil {
		return peer{desc: "unknown process"}, fmt.Errorf("reading peer credentials (SO_PEERCRED): %w", credErr)
	}
	return peer{uid: int(cred.Uid), desc: fmt.Sprintf("pid %d", cred.Pid)}, nil
}
