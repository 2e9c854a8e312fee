// SPDX-License-Identifier: Apache-2.0

//go:build linux

package netauth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netns is a network namespace of its own, with only its loopback up, entered by one locked
// thread. Sockets created by functions passed to run live in it, whatever goroutine uses them
// afterwards; its TCP counters (counters) count only their segments, so a test can tell
// whether its connections sent a reset while other tests use the host's loopback.
type netns struct {
	do chan func()
}

// newNetns creates the namespace (root only: CI runs the tests as root).
func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a network namespace of its own needs root")
	}
	n := &netns{do: make(chan func())}
	ready := make(chan error)
	go func() {
		// Never unlocked: the thread, in the new namespace, ends with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		if err := loopbackUp(); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for f := range n.do {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(n.do) })
	return n
}

// loopbackUp sets the loopback interface of the calling thread's namespace up.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
	}
	return nil
}

// run calls f on the namespace's thread and waits for it.
func (n *netns) run(f func()) {
	done := make(chan struct{})
	n.do <- func() {
		defer close(done)
		f()
	}
	<-done
}

// counters returns the namespace's TCP counters: Tcp OutRsts and EstabResets, TcpExt
// TCPAbortOnData, TCPAbortOnClose and the others of /proc/net/snmp and /proc/net/netstat.
func (n *netns) counters(t *testing.T) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	var err error
	n.run(func() {
		for _, f := range []string{"/proc/thread-self/net/snmp", "/proc/thread-self/net/netstat"} {
			if err = readCounters(f, m); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readCounters adds the "Tcp:" and "TcpExt:" counters of a /proc/net/{snmp,netstat} file to m.
func readCounters(file string, m map[string]int64) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) != len(values) || names[0] != values[0] {
			return fmt.Errorf("%s: unexpected format", file)
		}
		if names[0] != "Tcp:" && names[0] != "TcpExt:" {
			continue
		}
		for j := 1; j < len(names); j++ {
			v, err := strconv.ParseInt(values[j], 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", file, names[j], err)
			}
			m[names[j]] = v
		}
	}
	return nil
}

// settle waits until no TCP socket in the namespace is open other than listeners and those
// in TIME-WAIT (each connection fully closed, cleanly or not), at most 5 s.
func (n *netns) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var open []string
		var err error
		n.run(func() {
			var b []byte
			if b, err = os.ReadFile("/proc/thread-self/net/tcp"); err != nil {
				return
			}
			sc := bufio.NewScanner(bytes.NewReader(b))
			sc.Scan() // header
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) > 3 && f[3] != "0A" && f[3] != "06" { // LISTEN, TIME_WAIT
					open = append(open, f[1]+"->"+f[2]+" state "+f[3])
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockets still open after 5 s: %v", open)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertNoResets fails unless the namespace's connections closed without a reset.
func (n *netns) assertNoResets(t *testing.T) {
	t.Helper()
	n.settle(t)
	c := n.counters(t)
	if c["OutRsts"] != 0 || c["EstabResets"] != 0 || c["TCPAbortOnData"] != 0 || c["TCPAbortOnClose"] != 0 {
		t.Fatalf("connections ended with resets: OutRsts %d, EstabResets %d, TCPAbortOnData %d, TCPAbortOnClose %d",
			c["OutRsts"], c["EstabResets"], c["TCPAbortOnData"], c["TCPAbortOnClose"])
	}
	if c["ActiveOpens"] == 0 {
		t.Fatal("no connection was made in the namespace")
	}
}

// TestCloseSendsNoReset: connections that end with Close on both sides, whichever closes
// first, end with FINs, not resets. The side that closes first used to close its socket with
// the peer's close record still to come (its kernel answered that record with a reset) or
// still unread in its receive queue (a reset instead of a FIN).
func TestCloseSendsNoReset(t *testing.T) {
	ns := newNetns(t)
	var ts *testServer
	ns.run(func() { ts = newTestServer(t, nil) })
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	// The server answers each connection's first line and then, depending on the line, waits
	// for the client to close ("echo": the client closes first) or closes at once ("bye").
	var handlers sync.WaitGroup
	go func() {
		for {
			c, err := ts.ln.AcceptNetauth()
			if err != nil {
				return
			}
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					t.Errorf("server: reading the line: %v", err)
					return
				}
				if _, err := io.WriteString(c, line); err != nil {
					t.Errorf("server: writing: %v", err)
					return
				}
				if line == "echo\n" {
					if _, err := io.Copy(io.Discard, c); err != nil {
						t.Errorf("server: reading to the client's close: %v", err)
					}
				}
			}()
		}
	}()
	cfg := ts.clientConfig(alice)
	for i, line := range []string{"echo\n", "echo\n", "bye\n", "bye\n", "echo\n"} {
		var c *Conn
		var err error
		ns.run(func() { c, err = Dial("tcp", ts.addr, cfg) })
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if _, err := io.WriteString(c, line); err != nil {
			t.Fatalf("connection %d: write: %v", i, err)
		}
		buf := make([]byte, len(line))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != line {
			t.Fatalf("connection %d: read %q, %v", i, buf, err)
		}
		if line == "bye\n" {
			time.Sleep(20 * time.Millisecond) // the server's close record arrives before Close
		}
		if err := c.Close(); err != nil {
			t.Fatalf("connection %d: Close: %v", i, err)
		}
		if i == 1 && !c.Identity().Resumed {
			t.Fatal("connection 1 was not resumed")
		}
	}
	handlers.Wait()
	ns.assertNoResets(t)
}

// TestCloseWithUnreadData: a server that stops reading, writes a long answer and closes
// delivers all of it, ending in its close record, and no reset: the client's data it never
// read is consumed and dropped, not answered with a reset that discards the answer still in
// the server's send queue.
func TestCloseWithUnreadData(t *testing.T) {
	ns := newNetns(t)
	var ts *testServer
	ns.run(func() { ts = newTestServer(t, nil) })
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	answer := make([]byte, 2<<20)
	rand.Read(answer)
	served := make(chan error, 1)
	go func() {
		c, err := ts.ln.AcceptNetauth()
		if err != nil {
			served <- err
			return
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil { // the request's first byte
			served <- err
			return
		}
		if _, err := c.Write(answer); err != nil {
			served <- fmt.Errorf("writing the answer: %w", err)
			return
		}
		served <- c.Close()
	}()
	var c *Conn
	var err error
	ns.run(func() { c, err = Dial("tcp", ts.addr, ts.clientConfig(alice)) })
	if err != nil {
		t.Fatal(err)
	}
	// A request the server reads only the first byte of: more than its record layer reads
	// ahead, so that some is still in its socket's receive queue when it closes. The client's
	// close record follows it (the server, closing, reads up to there), and the client then
	// reads the answer.
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 512<<10))
		if err == nil {
			err = c.CloseWrite()
		}
		wrote <- err
	}()
	time.Sleep(30 * time.Millisecond) // the server closes while its answer is still queued
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, answer) {
		t.Fatalf("read %d bytes of the %d-byte answer (equal %v), %v; want all and a clean EOF",
			len(got), len(answer), bytes.Equal(got, answer), err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("client Close: %v", err)
	}
	if err := <-served; err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("server: %v", err)
	}
	ns.assertNoResets(t)
}
