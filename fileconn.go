// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fileConn is a connected stream socket that netauthd handed to this worker, used as a
// net.Conn as it came. net.FileConn would duplicate the descriptor, register the copy with
// the runtime's poller, ask the kernel for both addresses and the socket type, and set
// TCP_NODELAY and keep-alives again (the acceptor set them): a dozen system calls on every
// connection. The descriptor arrives in non-blocking mode (the acceptor's), so the *os.File
// is already served by the poller, deadlines included; the addresses are the ones netauthd
// sent with it.
type fileConn struct {
	f             *os.File
	local, remote net.Addr
}

// newFileConn wraps f, which it takes over, with the addresses netauthd sent. It fails (and
// leaves f alone) if f is not pollable or an address does not parse: the caller then falls
// back to net.FileConn.
func newFileConn(f *os.File, local, remote string) (*fileConn, bool) {
	l, err1 := netip.ParseAddrPort(local)
	r, err2 := netip.ParseAddrPort(remote)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	// A pollable File accepts a deadline; a blocking one says os.ErrNoDeadline.
	if err := f.SetDeadline(time.Time{}); err != nil {
		return nil, false
	}
	return &fileConn{f: f, local: net.TCPAddrFromAddrPort(l), remote: net.TCPAddrFromAddrPort(r)}, true
}

func (c *fileConn) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	return n, c.opError("read", err)
}

func (c *fileConn) Write(p []byte) (int, error) {
	n, err := c.f.Write(p)
	return n, c.opError("write", err)
}

// opError reports an error of the descriptor's File as net's own connections do: io.EOF as it
// is, anything else in a *net.OpError (a closed descriptor as net.ErrClosed), so that a caller
// that asks whether a read error is a net.Error timeout (net/http's server does, after it
// interrupts its own background read with a past deadline) gets the answer it would from a
// *net.TCPConn.
func (c *fileConn) opError(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, os.ErrClosed) {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.local, Addr: c.remote, Err: err}
}
func (c *fileConn) Close() error         { return c.f.Close() }
func (c *fileConn) LocalAddr() net.Addr  { return c.local }
func (c *fileConn) RemoteAddr() net.Addr { return c.remote }

func (c *fileConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *fileConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *fileConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// CloseWrite shuts down the sending side, as (*net.TCPConn).CloseWrite does.
func (c *fileConn) CloseWrite() error {
	raw, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) }); err != nil {
		return err
	}
	if serr != nil {
		return &net.OpError{Op: "shutdown", Net: "tcp", Source: c.local, Addr: c.remote, Err: os.NewSyscallError("shutdown", serr)}
	}
	return nil
}

// SetLinger sets SO_LINGER as (*net.TCPConn).SetLinger does (a negative sec: the default).
func (c *fileConn) SetLinger(sec int) error {
	raw, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	l := &unix.Linger{}
	if sec >= 0 {
		l.Onoff, l.Linger = 1, int32(sec)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, l) }); err != nil {
		return err
	}
	return serr
}

// SyscallConn gives the raw descriptor, as net.TCPConn's does.
func (c *fileConn) SyscallConn() (syscall.RawConn, error) {
	return c.f.SyscallConn()
}
