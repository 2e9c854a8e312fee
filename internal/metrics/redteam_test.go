// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingListener counts the connections it accepted that are still open, and the most that
// were open at once.
type countingListener struct {
	net.Listener
	mu         sync.Mutex
	open, peak int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.peak = max(l.peak, l.open)
	l.mu.Unlock()
	return &countedConn{Conn: c, l: l}, nil
}

func (l *countingListener) counts() (open, peak int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.peak
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// serveCounted serves m on a loopback port through a countingListener.
func serveCounted(t *testing.T) (*countingListener, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	go New().Serve(cl)
	t.Cleanup(func() { l.Close() })
	return cl, l.Addr().String()
}

// TestRedteamMetricsConnectionsBounded: a loopback metrics port is reachable by every local
// user, so each connection it takes is a descriptor and a goroutine of the monitor (root) that
// any of them can hold: one that sends nothing is held for the header timeout, one that makes a
// request a minute for ever. The monitor takes a bounded number at once; the others wait in
// the kernel's backlog, and a scraper is served once a slot is free. It used to take every
// connection offered, so that a local user could use up the monitor's descriptors (and with
// them its handshakes, handoffs and audit log).
func TestRedteamMetricsConnectionsBounded(t *testing.T) {
	cl, addr := serveCounted(t)
	const n = 4 * maxConns
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c) // says nothing
	}
	time.Sleep(500 * time.Millisecond)
	if _, peak := cl.counts(); peak > maxConns {
		t.Fatalf("%d silent connections: the monitor took %d at once, want at most %d", n, peak, maxConns)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// Once they are gone, a scrape is answered.
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
}

// TestRedteamMetricsSlowReader: a client that asks and asks again without reading the answers
// does not hold its connection (and the goroutine writing to it) for ever: writes are bounded
// in time. There used to be no write timeout.
func TestRedteamMetricsSlowReader(t *testing.T) {
	cl, addr := serveCounted(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	// Enough pipelined requests that the answers fill both sockets' buffers.
	req := strings.Repeat("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 2000)
	go c.Write([]byte(req))
	deadline := time.Now().Add(writeTimeout + 10*time.Second)
	for {
		if open, _ := cl.counts(); open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client that does not read still holds its connection after %v", writeTimeout+10*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// It was served until then.
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatalf("no answer at all: %v", err)
	}
}

// TestRedteamMetricsListenSharedDirectory: a metrics socket in a directory others may write
// to (metrics-listen /tmp/metrics.sock) is refused, as the control socket is. There, any local
// user decides whether netauthd starts (a file of theirs at the path makes Listen, and so
// Start, fail), and in a directory without the sticky bit can swap the socket for a symlink
// between the bind and the chmod, which follows it (root chmods the target to 0600). Listen
// used to take any directory.
func TestRedteamMetricsListenSharedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen(filepath.Join(dir, "metrics.sock")); err == nil {
		l.Close()
		t.Fatal("a metrics socket in a directory anyone may write to was accepted")
	}
}
