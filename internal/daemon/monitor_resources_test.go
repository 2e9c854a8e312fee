// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/record"
)

// quietAcceptor replaces the testbed's acceptor with a channel the test writes raw datagrams
// to and from which nothing is read unless the test reads it: the monitor serves it as it
// serves the real acceptor. It returns the acceptor's end.
func quietAcceptor(t *testing.T, tb *testbed) *net.UnixConn {
	t.Helper()
	tb.d.mu.Lock()
	real := tb.d.acceptor
	tb.d.acceptor = nil
	tb.d.mu.Unlock()
	if real != nil {
		real.cmd.Process.Kill()
		<-real.exited
	}
	monitorEnd, f, err := handoff.Pair()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		tb.d.serveAcceptor(&acceptor{ch: monitorEnd, exited: make(chan struct{})})
	}()
	t.Cleanup(func() {
		c.Close()
		<-served
		monitorEnd.Close()
	})
	return c.(*net.UnixConn)
}

// rawDatagram is a monitor request as the acceptor sends it: header and payload.
func rawDatagram(typ handoff.Type, id uint64, payload []byte) []byte {
	b := make([]byte, handoff.HeaderLen, handoff.HeaderLen+len(payload))
	b[0], b[1] = 1, byte(typ)
	binary.BigEndian.PutUint64(b[4:], id)
	return append(b, payload...)
}

// goroutinesSettle waits until the number of goroutines has not changed for 300 ms (at most
// limit) and returns it.
func goroutinesSettle(limit time.Duration) int {
	deadline := time.Now().Add(limit)
	n := runtime.NumGoroutine()
	for time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// TestMonitorBoundsRequestsInFlight: an acceptor that sends requests faster than the monitor
// answers them, here by never reading the answers, holds at most maxRequestsInFlight of the
// monitor's goroutines; its further requests wait in the channel. The monitor used to start a
// goroutine for every message it read: 200,000 Aborts left 199,000 goroutines and 560 MiB
// behind in five seconds, without bound (the root monitor, and every worker with it, at the
// mercy of the OOM killer). Once the acceptor is gone, everything is released, and the monitor
// serves the next one.
func TestMonitorBoundsRequestsInFlight(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	base := goroutinesSettle(5 * time.Second)
	func() {
		c := quietAcceptor(t, tb)
		abort := (&sessionRef{service: "whoami", session: 1}).marshal()
		const flood = 20000
		sent := 0
		c.SetWriteDeadline(time.Now().Add(3 * time.Second))
		for ; sent < flood; sent++ {
			if _, err := c.Write(rawDatagram(handoff.TypeAbort, uint64(sent+1), abort)); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal(err)
				}
				break // the monitor reads no more: the channel holds the rest back
			}
		}
		grown := goroutinesSettle(10*time.Second) - base
		t.Logf("%d requests sent without reading a reply; %d more goroutines", sent, grown)
		if grown > maxRequestsInFlight+50 {
			t.Fatalf("%d requests left %d more goroutines in the monitor, want at most %d", sent, grown, maxRequestsInFlight+50)
		}
		c.Close() // the acceptor goes: the replies waiting for it fail
	}()
	waitUntil(t, 10*time.Second, func() string {
		return fmt.Sprintf("%d goroutines left, %d before the flood", runtime.NumGoroutine(), base)
	}, func() bool { return runtime.NumGoroutine() <= base+10 })
	newEvilAcceptor(t, tb).legit(t)
}

// lingeringConn returns a TCP connection to addr as accepted by ln, whose send queue holds
// data the client (returned too) never reads, with SO_LINGER on for linger: the last close of
// the returned descriptor waits up to linger for that data to be acknowledged. It is the only
// descriptor left of the accepted socket.
func lingeringConn(t *testing.T, addr string, ln net.Listener, linger time.Duration) (*os.File, net.Conn) {
	t.Helper()
	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1024) })
		return err
	}}
	client, err := dialer.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := accepted.(*net.TCPConn).File() // blocking, unlike accepted's own descriptor
	accepted.Close()
	if err != nil {
		t.Fatal(err)
	}
	fd := rawFD(t, f)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	queued := 0
	for buf := make([]byte, 64<<10); ; {
		n, err := unix.Write(fd, buf)
		if err != nil {
			break
		}
		queued += n
	}
	if queued == 0 {
		t.Fatal("no data queued on the connection")
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: int32(linger / time.Second)}); err != nil {
		t.Fatal(err)
	}
	return f, client
}

// TestMonitorCloseDoesNotLinger: a connection the acceptor passes with SO_LINGER on, data
// queued to a client that never reads it, and no reference of its own left, is refused and
// closed at once: the monitor's close does not wait out the linger time. It used to: the close
// of the refused descriptor held the request's goroutine, and an OS thread, for as long as the
// acceptor chose (up to forever while the client keeps its window shut); enough of them
// exhaust the runtime's 10,000 threads, which kills the root monitor. The same holds for a
// descriptor sent with a request that carries none, which the channel itself closes.
func TestMonitorCloseDoesNotLinger(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	e := newEvilAcceptor(t, tb)
	const linger = 30 * time.Second
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	commit := (&commitRequest{service: "whoami", commit: handshake.CommitRequest{Session: 1}, state: &record.State{}}).marshal()
	for _, tc := range []struct {
		name    string
		typ     handoff.Type
		payload []byte
		ln      net.Listener
	}{
		{"commit for a session that does not exist", handoff.TypeCommit, commit, e.ln},
		{"commit with a connection accepted elsewhere", handoff.TypeCommit, commit, other},
		{"begin with a descriptor", handoff.TypeBegin, (&beginRequest{service: "whoami", req: handshake.BeginRequest{Mode: handshake.ModeFull, Noise: make([]byte, 32)}}).marshal(), e.ln},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := lingeringConn(t, tc.ln.Addr().String(), tc.ln, linger)
			start := time.Now()
			wait, err := e.rawSend(tc.typ, tc.payload, rawFD(t, f))
			f.Close() // the monitor's is the last reference
			if err != nil {
				t.Fatal(err)
			}
			reply, err := wait()
			if err != nil {
				t.Fatalf("after %v: %v (the monitor's close of the descriptor lingers)", time.Since(start).Round(time.Millisecond), err)
			}
			if reply[0] != byte(handshake.CodeProtocolError) {
				t.Fatalf("reply %x, want protocol_error", reply)
			}
			e.legit(t)
		})
	}
}

// twoServices is whoamiService and a second service, other, both granted to alice.
const twoServices = whoamiService + `
service other {
    listen 127.0.0.1:0
    program WORKER
    args whoami
    users netauth-alice
}
`

// TestMonitorRefusesOtherDescriptors: descriptors of every other kind the acceptor could pass
// with Commit, beyond TestMonitorRefusesBadDescriptors's, are refused for what they are before
// anything is decided, and the monitor goes on serving: Unix sequenced-packet and datagram
// sockets, an epoll instance, a memfd, /dev/null, an O_PATH descriptor, the listening socket
// of another service, a connection accepted by another service, and the client's end of a
// connection to the service itself.
func TestMonitorRefusesOtherDescriptors(t *testing.T) {
	tb := newTestbed(t, twoServices)
	e := newEvilAcceptor(t, tb) // the real acceptor is gone: the test accepts on other's socket too
	e.legit(t)
	alice := tb.config("netauth-alice")
	alice.DisableResumption = true
	tb.d.mu.Lock()
	otherLn := tb.d.services["other"].listeners[0]
	tb.d.mu.Unlock()
	file := func(t *testing.T, fd int, err error) *os.File {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "test")
		t.Cleanup(func() { f.Close() })
		return f
	}
	socketpair := func(typ int) func(t *testing.T) *os.File {
		return func(t *testing.T) *os.File {
			fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			file(t, fds[1], nil)
			return file(t, fds[0], nil)
		}
	}
	for _, tc := range []struct {
		name   string
		fd     func(t *testing.T) *os.File
		reason string
	}{
		{"Unix sequenced-packet socket", socketpair(unix.SOCK_SEQPACKET), "not a stream socket"},
		{"Unix datagram socket", socketpair(unix.SOCK_DGRAM), "not a stream socket"},
		{"epoll instance", func(t *testing.T) *os.File {
			fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
			return file(t, fd, err)
		}, "not a socket"},
		{"memfd", func(t *testing.T) *os.File {
			fd, err := unix.MemfdCreate("netauth-test", unix.MFD_CLOEXEC)
			return file(t, fd, err)
		}, "not a socket"},
		{"/dev/null", func(t *testing.T) *os.File {
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}, "not a socket"},
		{"O_PATH descriptor", func(t *testing.T) *os.File {
			fd, err := unix.Open("/", unix.O_PATH|unix.O_CLOEXEC, 0)
			return file(t, fd, err)
		}, "not a socket"},
		{"listening socket of another service", func(t *testing.T) *os.File {
			return fileOf(t, otherLn.(*net.TCPListener))
		}, "a listening socket"},
		{"connection accepted by another service", func(t *testing.T) *os.File {
			client, err := net.Dial("tcp", otherLn.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close() })
			accepted, err := otherLn.Accept()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { accepted.Close() })
			return fileOf(t, accepted.(*net.TCPConn))
		}, "none of the service's listening sockets"},
		{"client end of a connection to the service", func(t *testing.T) *os.File {
			client, accepted := e.pair()
			t.Cleanup(func() { client.Close(); accepted.Close() })
			return fileOf(t, client.(*net.TCPConn))
		}, "none of the service's listening sockets"},
	} {
		t.Run(tc.name, func(t *testing.T) { e.wantDescriptorRefused(t, alice, tc.fd(t), tc.reason) })
	}
}

// TestMonitorKeepsNoDescriptors: whatever request a descriptor comes with, and wherever the
// monitor refuses it, the monitor keeps none of them: malformed and well-formed Commits for
// no session, with a socket, a pipe, two or nine descriptors; Begin, Abort and an unknown type
// with one; an oversized message with one.
func TestMonitorKeepsNoDescriptors(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	e := newEvilAcceptor(t, tb)
	e.legit(t)
	commit := (&commitRequest{service: "whoami", commit: handshake.CommitRequest{Session: 1}, state: &record.State{}}).marshal()
	begin := (&beginRequest{service: "whoami", req: handshake.BeginRequest{Mode: handshake.ModeFull, Noise: make([]byte, 32)}}).marshal()
	abort := (&sessionRef{service: "whoami", session: 1}).marshal()
	cases := []struct {
		name    string
		typ     handoff.Type
		payload []byte
		nfds    int
		socket  bool // the first descriptor is a TCP connection accepted on the service's socket
	}{
		{"commit for no session with its connection", handoff.TypeCommit, commit, 1, true},
		{"malformed commit", handoff.TypeCommit, []byte("malformed"), 1, true},
		{"commit with a pipe", handoff.TypeCommit, commit, 1, false},
		{"commit with two", handoff.TypeCommit, commit, 2, true},
		{"commit with nine", handoff.TypeCommit, commit, 9, true},
		{"begin with one", handoff.TypeBegin, begin, 1, false},
		{"abort with one", handoff.TypeAbort, abort, 1, true},
		{"unknown type with one", 200, commit, 1, false},
		{"oversized with one", handoff.TypeCommit, make([]byte, handoff.MaxMessage), 1, true},
	}
	send := func(tc int) {
		c := cases[tc]
		var fds []int
		var closers []func()
		for i := range c.nfds {
			if i == 0 && c.socket {
				client, accepted := e.pair()
				f := fileOf(t, accepted.(*net.TCPConn))
				fds = append(fds, rawFD(t, f))
				closers = append(closers, func() { f.Close(); client.Close(); accepted.Close() })
				continue
			}
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, int(r.Fd()))
			closers = append(closers, func() { r.Close(); w.Close() })
		}
		reply, err := e.rawCall(c.typ, c.payload, fds...)
		for _, c := range closers {
			c()
		}
		if err != nil || reply[0] != byte(handshake.CodeProtocolError) {
			t.Fatalf("%s: reply %x, %v; want protocol_error", c.name, reply, err)
		}
	}
	for i := range cases { // once, so that whatever is opened once and kept is open before
		send(i)
	}
	// The socket of a netauth connection closed earlier (the last test's legitimate one) is
	// closed for good within record.CloseWait, after the peer's close record.
	time.Sleep(record.CloseWait + 100*time.Millisecond)
	before := testutil.OpenDescriptors(t)
	const rounds = 20
	for range rounds {
		for i := range cases {
			send(i)
		}
	}
	if after := testutil.OpenDescriptors(t); after != before {
		t.Fatalf("%d descriptors open after %d more rounds of refused requests, %d before", after, rounds, before)
	}
	e.legit(t)
}

// TestAcceptedRecordNamesConnectionAddress: the audit record of an accepted connection names
// the client address the monitor read from the connection itself, not the one a compromised
// acceptor claims with Begin (which it used to: the acceptor could write any address into the
// record that proves an authentication). A second Commit for a session whose Commit is being
// decided is refused.
func TestAcceptedRecordNamesConnectionAddress(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	e := newEvilAcceptor(t, tb)
	const forged = "198.51.100.7:4242"
	var real string
	cfg := tb.config("netauth-alice")
	cfg.DisableResumption = true
	clientErr, res, serverErr := e.connect("netauth-alice", cfg, tamperCore{begin: func(r *handshake.BeginRequest) {
		real, r.Client = r.Client, forged
	}})
	if clientErr != nil || serverErr != nil || res == nil || !res.HandedOff {
		t.Fatalf("client %v, server %v", clientErr, serverErr)
	}
	data, err := os.ReadFile(tb.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	var accepted []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Decision == audit.Accepted {
			accepted = append(accepted, r.Client)
		}
	}
	if len(accepted) != 1 || accepted[0] != real {
		t.Fatalf("accepted records name %q, want the connection's address %q (the acceptor claimed %q)", accepted, real, forged)
	}
}

// runLingerer is a worker taken over: for each connection it is handed, it queues data its
// client never reads, turns SO_LINGER on for an hour, closes its reference, and only then
// acknowledges the connection, so that the monitor's close of its own copy is the last one.
func runLingerer() int {
	ch, err := handoff.FromFile(os.NewFile(3, "control"))
	if err != nil {
		return 1
	}
	for {
		m, f, err := ch.Recv()
		if err != nil {
			return 0
		}
		if m.Type == handoff.TypeExit {
			return 0
		}
		if m.Type != handoff.TypeConn || f == nil {
			continue
		}
		if rc, err := f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				unix.SetNonblock(int(fd), true)
				for buf := make([]byte, 64<<10); ; {
					if _, err := unix.Write(int(fd), buf); err != nil {
						break
					}
				}
				unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 3600})
			})
		}
		f.Close()
		ch.Send(&handoff.Message{Type: handoff.TypeAck, ID: m.ID}, nil)
	}
}

// threadsOf returns the number of threads of process pid, and how many of them wait in the
// kernel function wchan.
func threadsOf(t *testing.T, pid int, wchan string) (threads, waiting int) {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if w, err := os.ReadFile(dir + "/" + task.Name() + "/wchan"); err == nil && string(w) == wchan {
			waiting++
		}
	}
	return len(tasks), waiting
}

// TestLingeringWorkerConnsHoldNoThreads: a worker taken over that sets SO_LINGER on each
// connection it is handed, with data queued to a client that never reads (the attacker's), and
// closes its reference before acknowledging it, leaves the last close to the acceptor (which
// closes its copy once the monitor answered) or the monitor. That close no longer waits out
// the worker's linger time in a thread per connection: at most 16 such closes wait, in the
// background. They used to pile up, a blocked thread each, until the Go runtime's limit of
// 10,000 threads stopped the acceptor.
func TestLingeringWorkerConnsHoldNoThreads(t *testing.T) {
	tb := newTestbed(t, `service whoami {
    listen 127.0.0.1:0
    program WORKER
    args lingerer
    users netauth-alice
}
`)
	pid := tb.d.AcceptorPid()
	base, _ := threadsOf(t, pid, "")
	const n = 60
	for i := range n {
		dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1024) })
			return err
		}}
		nc, err := dialer.Dial("tcp", tb.addr("whoami"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close() // unread data: a reset, which ends any lingering close
		// RunClient returns once ClientAuth is sent; the client then reads nothing.
		sendAuthenticator(t, tb, nc)
		waitUntil(t, 10*time.Second, func() string { return fmt.Sprintf("connection %d not accepted", i) },
			func() bool { return tb.auditCount(audit.Accepted, "") == i+1 })
	}
	time.Sleep(500 * time.Millisecond)
	threads, waiting := threadsOf(t, pid, "wait_woken")
	t.Logf("%d connections: the acceptor has %d threads (%d before), %d of them waiting in wait_woken", n, threads, base, waiting)
	if waiting > 16 || threads > base+16+12 {
		t.Fatalf("%d lingering connections left the acceptor %d threads, %d before, %d waiting in a close", n, threads, base, waiting)
	}
	if pid != tb.d.AcceptorPid() {
		t.Fatal("the acceptor was restarted")
	}
}

// TestMonitorReleasesLingeringWorkerConn: when the monitor's copy of a handed-over connection
// is the last (the acceptor closed its own right after sending it) and the worker set
// SO_LINGER with data queued to a client that never reads, the monitor still answers the
// Commit at once: its close does not wait out the worker's linger time in the request.
func TestMonitorReleasesLingeringWorkerConn(t *testing.T) {
	tb := newTestbed(t, `service whoami {
    listen 127.0.0.1:0
    program WORKER
    args lingerer
    users netauth-alice
}
`)
	e := newEvilAcceptor(t, tb)
	served := make(chan error, 1)
	go func() {
		nc, err := e.ln.Accept()
		if err != nil {
			served <- err
			return
		}
		core := tamperCore{remoteCore: remoteCore{a: e.side, service: "whoami", nc: nc}, commit: func(c tamperCore, req *commitRequest, f *os.File) ([]byte, error) {
			wait, err := e.rawSend(handoff.TypeCommit, req.marshal(), rawFD(t, f))
			f.Close()
			c.nc.Close() // the monitor's copy is the last one
			if err != nil {
				return nil, err
			}
			p, err := wait()
			if err != nil {
				return nil, err
			}
			return p[1:], refusedWith(p)
		}}
		_, err = handshake.Serve(record.NewConn(nc), core, nc.RemoteAddr().String(), nil)
		served <- err
	}()
	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1024) })
		return err
	}}
	nc, err := dialer.Dial("tcp", e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sendAuthenticator(t, tb, nc)
	if err := <-served; err != nil {
		t.Fatalf("the Commit: %v (the monitor's close waits out the worker's linger)", err)
	}
}
