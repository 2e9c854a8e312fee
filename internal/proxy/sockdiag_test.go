// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/sys/unix"
)

// testConn is a loopback TCP connection made by the test.
type testConn struct {
	name           string
	client, server net.Conn
	clientAddr     netip.AddrPort // the client's end
	serverAddr     netip.AddrPort // the listener's end
}

// socketInode returns the inode of a connection's socket, as fstat reports it.
func socketInode(t testing.TB, c net.Conn) uint64 {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return st.Ino
}

// listenLoopback listens on a loopback address ("127.0.0.1" or "::1"), skipping the test
// where the address family is not available.
func listenLoopback(t testing.TB, host string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		if host == "::1" {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// connect finishes a connection whose client end is c by accepting it on ln.
func connect(t testing.TB, name string, ln net.Listener, c net.Conn) *testConn {
	t.Helper()
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return &testConn{
		name:       name,
		client:     c,
		server:     s,
		clientAddr: s.RemoteAddr().(*net.TCPAddr).AddrPort(),
		serverAddr: s.LocalAddr().(*net.TCPAddr).AddrPort(),
	}
}

// dialLoopback connects to ln.
func dialLoopback(t testing.TB, name string, ln net.Listener) *testConn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return connect(t, name, ln, c)
}

// dialFromSocket connects to the IPv4 listener ln from a socket of the given family made
// with the thread's file system uid set to uid (the kernel records the socket's owner when
// the socket is made). With family AF_INET6 the socket connects to ::ffff:127.0.0.1.
func dialFromSocket(t testing.TB, name string, ln net.Listener, family int, uid int) *testConn {
	t.Helper()
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread's fsuid is changed and changed back; the thread is not returned to the
		// runtime (it ends with the goroutine), so a failure to restore it cannot leak.
		runtime.LockOSThread()
		old, err := unix.SetfsuidRetUid(uid)
		if err != nil {
			ch <- result{-1, err}
			return
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		_, _ = unix.SetfsuidRetUid(old)
		ch <- result{fd, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("socket: %v", r.err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	if family == unix.AF_INET6 {
		sa = &unix.SockaddrInet6{Port: port, Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}
	}
	if err := unix.Connect(r.fd, sa); err != nil {
		unix.Close(r.fd)
		t.Fatalf("connect: %v", err)
	}
	f := os.NewFile(uintptr(r.fd), name)
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return connect(t, name, ln, c)
}

func TestSockDiagRequest(t *testing.T) {
	src := netip.MustParseAddrPort("127.0.0.1:38056")
	dst := netip.MustParseAddrPort("127.0.0.2:4143")
	b := sockDiagRequest(7, false, acceptedStates, src, dst)
	ne := binary.NativeEndian
	if len(b) != 72 || ne.Uint32(b) != 72 {
		t.Fatalf("request of %d bytes, header says %d; want 72", len(b), ne.Uint32(b))
	}
	if typ, flags, seq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:]); typ != unix.SOCK_DIAG_BY_FAMILY || flags != unix.NLM_F_REQUEST || seq != 7 {
		t.Errorf("header type %d flags %#x seq %d", typ, flags, seq)
	}
	r := b[16:]
	want := []byte{unix.AF_INET, unix.IPPROTO_TCP, 0, 0}
	want = ne.AppendUint32(want, 1<<1|1<<4|1<<5|1<<8|1<<9|1<<11)
	want = append(want, 0x94, 0xA8, 0x10, 0x2F) // ports 38056 and 4143, big-endian
	want = append(want, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	want = append(want, 127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	want = ne.AppendUint32(want, 1)
	want = append(want, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	if !bytes.Equal(r, want) {
		t.Errorf("request body\n%x, want\n%x", r, want)
	}
	b6 := sockDiagRequest(8, true, 0, netip.MustParseAddrPort("[::1]:1"), netip.MustParseAddrPort("[::1]:2"))
	if b6[16] != unix.AF_INET6 || ne.Uint16(b6[6:]) != unix.NLM_F_REQUEST|unix.NLM_F_DUMP || b6[16+8+4+15] != 1 || b6[16+8+20+15] != 1 {
		t.Errorf("IPv6 dump request %x", b6)
	}
}

// appendNlMsg appends a netlink message, padded to 4 bytes.
func appendNlMsg(b []byte, typ, flags uint16, seq uint32, payload []byte) []byte {
	ne := binary.NativeEndian
	b = ne.AppendUint32(b, uint32(sizeofNlMsghdr+len(payload)))
	b = ne.AppendUint16(b, typ)
	b = ne.AppendUint16(b, flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// inetDiagMsg encodes e as the kernel does, followed by an attribute.
func inetDiagMsg(e socketEntry) []byte {
	ne := binary.NativeEndian
	m := make([]byte, sizeofInetDiagMsg, sizeofInetDiagMsg+8)
	m[0] = unix.AF_INET6
	if e.Local.Addr().Is4() {
		m[0] = unix.AF_INET
	}
	m[1] = e.State
	binary.BigEndian.PutUint16(m[4:], e.Local.Port())
	binary.BigEndian.PutUint16(m[6:], e.Remote.Port())
	copy(m[8:24], e.Local.Addr().AsSlice())
	copy(m[24:40], e.Remote.Addr().AsSlice())
	ne.PutUint32(m[64:], e.UID)
	ne.PutUint32(m[68:], uint32(e.Inode))
	return append(m, 8, 0, 8, 0, 0, 0, 0, 0) // INET_DIAG_SHUTDOWN, as the kernel adds
}

func errnoPayload(errno syscall.Errno) []byte {
	return binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))
}

var (
	diagV4 = socketEntry{netip.MustParseAddrPort("127.0.0.1:38056"), netip.MustParseAddrPort("127.0.0.1:4143"), tcpEstablished, 1000, 4711}
	diagV6 = socketEntry{netip.MustParseAddrPort("[::ffff:127.0.0.1]:38057"), netip.MustParseAddrPort("[::ffff:127.0.0.1]:4143"), tcpFinWait2, 0, 0}
)

func TestParseSockDiagReply(t *testing.T) {
	const seq = 42
	errMsg := func(errno syscall.Errno) []byte {
		return appendNlMsg(nil, unix.NLMSG_ERROR, 0, seq, append(errnoPayload(errno), make([]byte, 16)...))
	}
	for _, tc := range []struct {
		name    string
		reply   []byte
		entries []socketEntry
		done    bool
		errno   syscall.Errno
		err     bool
	}{
		{"exact answer", appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, 0, seq, inetDiagMsg(diagV4)), []socketEntry{diagV4}, true, 0, false},
		{"exact answer, IPv6", appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, 0, seq, inetDiagMsg(diagV6)), []socketEntry{diagV6}, true, 0, false},
		{"not found", errMsg(unix.ENOENT), nil, false, unix.ENOENT, false},
		{"acknowledgement", errMsg(0), nil, true, 0, false},
		{"dump, in part", appendNlMsg(appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI, seq, inetDiagMsg(diagV4)),
			unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI, seq, inetDiagMsg(diagV6)), []socketEntry{diagV4, diagV6}, false, 0, false},
		{"dump, whole", appendNlMsg(appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI, seq, inetDiagMsg(diagV4)),
			unix.NLMSG_DONE, unix.NLM_F_MULTI, seq, errnoPayload(0)), []socketEntry{diagV4}, true, 0, false},
		{"dump failed", appendNlMsg(nil, unix.NLMSG_DONE, unix.NLM_F_MULTI, seq, errnoPayload(unix.ENOENT)), nil, false, unix.ENOENT, false},
		{"empty", nil, nil, false, 0, false},
		{"another request's answer", appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, 0, seq+1, inetDiagMsg(diagV4)), nil, false, 0, true},
		{"short header", []byte{1, 2, 3}, nil, false, 0, true},
		{"short socket message", appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, 0, seq, inetDiagMsg(diagV4)[:71]), nil, false, 0, true},
		{"length beyond the datagram", appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, 0, seq, inetDiagMsg(diagV4))[:60], nil, false, 0, true},
		{"length below the header", binary.NativeEndian.AppendUint32(make([]byte, 0, 16), 8), nil, false, 0, true},
		{"unknown family", appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, 0, seq, append([]byte{unix.AF_UNIX}, inetDiagMsg(diagV4)[1:]...)), nil, false, 0, true},
		{"unknown type", appendNlMsg(nil, 99, 0, seq, nil), nil, false, 0, true},
		{"short error", appendNlMsg(nil, unix.NLMSG_ERROR, 0, seq, []byte{1}), nil, false, 0, true},
		{"message after the answer", appendNlMsg(errMsg(0), unix.SOCK_DIAG_BY_FAMILY, 0, seq, inetDiagMsg(diagV4)), nil, false, 0, true},
	} {
		entries, done, err := parseSockDiagReply(tc.reply, seq)
		switch {
		case tc.errno != 0:
			if !errors.Is(err, tc.errno) {
				t.Errorf("%s: error %v, want %v", tc.name, err, tc.errno)
			}
		case tc.err:
			if err == nil {
				t.Errorf("%s: no error; got %+v, done %v", tc.name, entries, done)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case done != tc.done || fmt.Sprint(entries) != fmt.Sprint(tc.entries):
			t.Errorf("%s: %+v, done %v; want %+v, done %v", tc.name, entries, done, tc.entries, tc.done)
		}
	}
}

// FuzzParseSockDiagReply checks that the reply parser never panics, that the sockets it
// accepts have addresses of one family, and that they survive being encoded again.
func FuzzParseSockDiagReply(f *testing.F) {
	f.Add(appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, 0, 1, inetDiagMsg(diagV4)))
	f.Add(appendNlMsg(appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, unix.NLM_F_MULTI, 1, inetDiagMsg(diagV6)), unix.NLMSG_DONE, unix.NLM_F_MULTI, 1, errnoPayload(0)))
	f.Add(appendNlMsg(nil, unix.NLMSG_ERROR, 0, 1, errnoPayload(unix.ENOENT)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, done, err := parseSockDiagReply(b, 1)
		if err != nil {
			if entries != nil || done {
				t.Fatalf("an error with results: %+v, done %v, %v", entries, done, err)
			}
			return
		}
		for _, e := range entries {
			if !e.Local.Addr().IsValid() || e.Local.Addr().Is4() != e.Remote.Addr().Is4() {
				t.Fatalf("accepted a socket with bad addresses: %+v", e)
			}
			again, done, err := parseSockDiagReply(appendNlMsg(nil, unix.SOCK_DIAG_BY_FAMILY, 0, 1, inetDiagMsg(e)), 1)
			if err != nil || !done || len(again) != 1 || again[0] != e {
				t.Fatalf("round trip of %+v: %+v, %v, %v", e, again, done, err)
			}
		}
	})
}

// TestSockDiagOwner finds the owner and inode of real loopback connections, IPv4, IPv6 and
// from an IPv6 socket connected to an IPv4-mapped address, and still after a half-close.
func TestSockDiagOwner(t *testing.T) {
	requireSockDiag(t)
	ln4 := listenLoopback(t, "127.0.0.1")
	conns := []*testConn{
		dialLoopback(t, "IPv4", ln4),
		dialFromSocket(t, "IPv4-mapped", ln4, unix.AF_INET6, os.Getuid()),
	}
	if ln6, err := net.Listen("tcp", "[::1]:0"); err == nil {
		defer ln6.Close()
		conns = append(conns, dialLoopback(t, "IPv6", ln6))
	} else {
		t.Logf("no IPv6 loopback: %v", err)
	}
	if os.Getuid() == 0 {
		// A socket bound to the loopback device is found too (the lookup names it).
		d := net.Dialer{Control: func(_, _ string, raw syscall.RawConn) error {
			var err error
			if cerr := raw.Control(func(fd uintptr) { err = unix.BindToDevice(int(fd), "lo") }); cerr != nil {
				return cerr
			}
			return err
		}}
		c, err := d.Dial("tcp", ln4.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, connect(t, "bound to lo", ln4, c))
	}
	half := dialLoopback(t, "half-closed", ln4)
	if err := half.client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	conns = append(conns, half)
	for _, c := range conns {
		uid, inode, err := sockDiagOwner(c.clientAddr, c.serverAddr)
		if err != nil || int(uid) != os.Getuid() || inode != socketInode(t, c.client) {
			t.Errorf("%s: sockDiagOwner(%s, %s) = %d, %d, %v; want uid %d inode %d",
				c.name, c.clientAddr, c.serverAddr, uid, inode, err, os.Getuid(), socketInode(t, c.client))
		}
		// Where no connection matches, the kernel's exact lookup falls back to a listening
		// socket on the local address: it is not believed.
		if _, _, err := sockDiagOwner(c.serverAddr, c.serverAddr); !errors.Is(err, errNotLive) {
			t.Errorf("%s: lookup of the listener's address: %v, want errNotLive", c.name, err)
		}
		nowhere := netip.AddrPortFrom(c.serverAddr.Addr(), 1)
		if _, _, err := sockDiagOwner(c.clientAddr, nowhere); !errors.Is(err, errNoSocket) {
			t.Errorf("%s: lookup of a tuple nobody has: %v, want errNoSocket", c.name, err)
		}
	}
}

// TestSockDiagOwnerClosed checks that a closed client socket is not found: neither its
// ownerless remnant after an orderly close, nor a socket reset and gone.
func TestSockDiagOwnerClosed(t *testing.T) {
	requireSockDiag(t)
	ln := listenLoopback(t, "127.0.0.1")
	closed := dialLoopback(t, "closed", ln)
	reset := dialLoopback(t, "reset", ln)
	for _, c := range []*testConn{closed, reset} {
		if _, _, err := sockDiagOwner(c.clientAddr, c.serverAddr); err != nil {
			t.Fatalf("%s: before the close: %v", c.name, err)
		}
	}
	if err := closed.client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := reset.client.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := reset.client.Close(); err != nil {
		t.Fatal(err)
	}
	// The remnant of the orderly close is still in the kernel's tables, without an owner.
	_, _, err := sockDiagOwner(closed.clientAddr, closed.serverAddr)
	if !errors.Is(err, errNotLive) {
		t.Errorf("closed: sockDiagOwner: %v, want errNotLive", err)
	}
	_, _, err = sockDiagOwner(reset.clientAddr, reset.serverAddr)
	if !errors.Is(err, errNoSocket) {
		t.Errorf("reset: sockDiagOwner: %v, want errNoSocket", err)
	}
}

// procLookup scans /proc/self/net/tcp and tcp6 for the live connected socket from local to
// remote, returning its uid and inode.
func procLookup(t testing.TB, local, remote netip.AddrPort) (uid uint32, inode uint64, found bool) {
	t.Helper()
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(procNet, name))
		if errors.Is(err, os.ErrNotExist) && name == "tcp6" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if i == 0 || strings.TrimSpace(line) == "" {
				continue
			}
			e, err := parseProcNetTCPLine(line)
			if err != nil {
				t.Fatal(err)
			}
			if !connectedState(e.State) || e.Inode == 0 || unmapAddrPort(e.Local) != unmapAddrPort(local) || unmapAddrPort(e.Remote) != unmapAddrPort(remote) {
				continue
			}
			if found {
				t.Fatalf("two live sockets from %s to %s in /proc", local, remote)
			}
			uid, inode, found = e.UID, e.Inode, true
		}
	}
	return uid, inode, found
}

// TestSockDiagAgreesWithProc compares the two lookups on live connections of several kinds
// and owners, and on closed ones.
func TestSockDiagAgreesWithProc(t *testing.T) {
	requireSockDiag(t)
	ln4 := listenLoopback(t, "127.0.0.1")
	var conns []*testConn
	for i := range 3 {
		conns = append(conns, dialLoopback(t, fmt.Sprintf("IPv4 %d", i), ln4))
	}
	conns = append(conns, dialFromSocket(t, "IPv4-mapped", ln4, unix.AF_INET6, os.Getuid()))
	if os.Getuid() == 0 {
		conns = append(conns, dialFromSocket(t, "uid 65534", ln4, unix.AF_INET, nobody))
		conns = append(conns, dialFromSocket(t, "IPv4-mapped uid 65534", ln4, unix.AF_INET6, nobody))
	}
	if ln6, err := net.Listen("tcp", "[::1]:0"); err == nil {
		defer ln6.Close()
		conns = append(conns, dialLoopback(t, "IPv6", ln6), dialLoopback(t, "IPv6 2", ln6))
	}
	closed := dialLoopback(t, "closed", ln4)
	closed.client.Close()
	reset := dialLoopback(t, "reset", ln4)
	reset.client.(*net.TCPConn).SetLinger(0)
	reset.client.Close()
	conns = append(conns, closed, reset)

	for _, c := range conns {
		wantUID, wantInode, found := procLookup(t, c.clientAddr, c.serverAddr)
		uid, inode, err := sockDiagOwner(c.clientAddr, c.serverAddr)
		if found != (err == nil) || found && (uid != wantUID || inode != wantInode) {
			t.Errorf("%s: sock_diag says %d, %d, %v; /proc says uid %d inode %d found %v", c.name, uid, inode, err, wantUID, wantInode, found)
		}
		live := c != closed && c != reset
		if found != live {
			t.Errorf("%s: found %v, want %v", c.name, found, live)
		}
		if live && c.name == "uid 65534" && uid != nobody {
			t.Errorf("%s: uid %d", c.name, uid)
		}
		if live && inode != socketInode(t, c.client) {
			t.Errorf("%s: inode %d, the socket's is %d", c.name, inode, socketInode(t, c.client))
		}
	}
}

// requireSockDiag skips a test where the kernel offers no sock_diag.
func requireSockDiag(t testing.TB) {
	t.Helper()
	if err := probeSockDiag(); err != nil {
		if os.Getenv("NETAUTH_REQUIRE_SOCK_DIAG") != "" {
			t.Fatalf("sock_diag: %v", err)
		}
		t.Skipf("sock_diag not available: %v", err)
	}
}

func TestProbeSockDiag(t *testing.T) {
	err := probeSockDiag()
	if err != nil && !sockDiagUnavailable(err) {
		t.Errorf("probeSockDiag: %v, neither success nor unavailability", err)
	}
	t.Logf("probeSockDiag: %v", err)
}

// TestOwnerFinderFallback checks the choice between sock_diag and /proc: a probe that finds
// sock_diag unavailable switches to /proc once, with one warning; a passing failure uses
// /proc for the connection at hand and probes again next time.
func TestOwnerFinderFallback(t *testing.T) {
	ln := listenLoopback(t, "127.0.0.1")
	c := dialLoopback(t, "conn", ln)
	var logs testutil.Buffer
	f := newOwnerFinder(slog.New(slog.NewTextHandler(&logs, nil)))
	probes := 0
	f.probe = func() error { probes++; return fmt.Errorf("opening a NETLINK_SOCK_DIAG socket: %w", unix.EMFILE) }
	for range 2 {
		if uid, err := f.owner(c.clientAddr, c.serverAddr); err != nil || uid != os.Getuid() {
			t.Errorf("owner after a passing probe failure = %d, %v", uid, err)
		}
	}
	if probes != 2 || f.decided {
		t.Errorf("after passing failures: %d probes, decided %v; want 2, false", probes, f.decided)
	}
	f.probe = func() error {
		probes++
		return fmt.Errorf("opening a NETLINK_SOCK_DIAG socket: %w", unix.EPROTONOSUPPORT)
	}
	for range 3 {
		if uid, err := f.owner(c.clientAddr, c.serverAddr); err != nil || uid != os.Getuid() {
			t.Errorf("owner with /proc = %d, %v", uid, err)
		}
	}
	if probes != 3 || !f.decided || !f.useProc {
		t.Errorf("after unavailability: %d probes, decided %v, /proc %v; want 3, true, true", probes, f.decided, f.useProc)
	}
	if n := strings.Count(logs.String(), "netlink sock_diag is not available"); n != 1 {
		t.Errorf("unavailability logged %d times, want once:\n%s", n, logs.String())
	}
	if _, err := f.owner(c.serverAddr, c.serverAddr); err == nil {
		t.Errorf("the /proc fallback found an owner for a tuple nobody has")
	}

	// Where sock_diag works, a finder uses it and refuses a closed client.
	if probeSockDiag() == nil {
		f := newOwnerFinder(slog.New(slog.DiscardHandler))
		f.procNet = "/nonexistent" // /proc must not be needed
		if uid, err := f.owner(c.clientAddr, c.serverAddr); err != nil || uid != os.Getuid() {
			t.Errorf("owner with sock_diag = %d, %v", uid, err)
		}
		c.client.Close()
		if _, err := f.owner(c.clientAddr, c.serverAddr); err == nil {
			t.Errorf("owner with sock_diag found an owner for a closed client")
		}
	}
}

// BenchmarkOwner compares the two lookups of a connection's owner, with the sockets the
// machine has and with 6,000 more (3,000 loopback connections). Run it with
// go test -bench Owner ./internal/proxy/.
func BenchmarkOwner(b *testing.B) {
	ln := listenLoopback(b, "127.0.0.1")
	c := dialLoopback(b, "conn", ln)
	run := func(b *testing.B) {
		b.Run("sock_diag", func(b *testing.B) {
			requireSockDiag(b)
			for b.Loop() {
				if _, _, err := sockDiagOwner(c.clientAddr, c.serverAddr); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("proc", func(b *testing.B) {
			for b.Loop() {
				if _, err := tcpOwner(procNet, c.clientAddr, c.serverAddr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("sockets=existing", run)
	b.Run("sockets=+6000", func(b *testing.B) {
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < 6500 {
			b.Skipf("needs 6,500 file descriptors (limit %d, %v)", lim.Cur, err)
		}
		extra := listenLoopback(b, "127.0.0.1")
		for i := range 3000 {
			dialLoopback(b, fmt.Sprint(i), extra)
		}
		time.Sleep(10 * time.Millisecond)
		run(b)
	})
}
