// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// poolIdle returns how many idle connections the pool keeps, and under how many keys.
func poolIdle(p *agentPool) (conns, keys int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.idle {
		conns += len(l)
	}
	return conns, len(p.idle)
}

// agentKeyBlobs lists the keys of the agent at the other end of c.
func agentKeyBlobs(t *testing.T, c *agentConn) [][]byte {
	t.Helper()
	list, err := c.ag.List()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, k := range list {
		out = append(out, k.Blob)
	}
	return out
}

// TestAgentPoolReplacedSocket: when the socket path comes to name another agent (the old one
// still running: its file was removed or renamed and a new agent listens there), a Dial
// reaches the agent the path names now, as a fresh connection would, not the one an idle
// connection still leads to.
func TestAgentPoolReplacedSocket(t *testing.T) {
	p := &agentPool{idle: make(map[agentPoolKey][]*agentConn)}
	k1, pub1 := newAgentKey(t)
	k2, pub2 := newAgentKey(t)
	old := startTestAgent(t, "", k1)
	c, err := p.get(old.sock)
	if err != nil {
		t.Fatal(err)
	}
	if b := agentKeyBlobs(t, c); len(b) != 1 || !bytes.Equal(b[0], pub1.Marshal()) {
		t.Fatal("the first agent does not list its key")
	}
	p.put(c)
	if err := os.Rename(old.sock, old.sock+".old"); err != nil {
		t.Fatal(err)
	}
	startTestAgent(t, old.sock, k2)
	c, err = p.get(old.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.uc.Close()
	if b := agentKeyBlobs(t, c); len(b) != 1 || !bytes.Equal(b[0], pub2.Marshal()) {
		t.Fatal("a Dial reached the agent that no longer listens at the socket path")
	}
}

// TestAgentPoolBounded: a process that dials through many agent sockets (one per user, say)
// keeps a bounded number of idle connections in all, not some for every path it ever used.
func TestAgentPoolBounded(t *testing.T) {
	p := &agentPool{idle: make(map[agentPoolKey][]*agentConn)}
	dir := t.TempDir()
	for i := range 3 * maxIdleAgentConnsTotal {
		ta := startTestAgent(t, filepath.Join(dir, fmt.Sprintf("a%d.sock", i)))
		c, err := p.get(ta.sock)
		if err != nil {
			t.Fatal(err)
		}
		p.put(c)
	}
	if n, k := poolIdle(p); n > maxIdleAgentConnsTotal || k > maxIdleAgentConnsTotal {
		t.Fatalf("the pool keeps %d idle connections under %d keys, want at most %d", n, k, maxIdleAgentConnsTotal)
	}
	p.closeIdle()
	if n, k := poolIdle(p); n != 0 || k != 0 {
		t.Fatalf("after closeIdle the pool keeps %d connections under %d keys", n, k)
	}
}

// TestAgentPoolEUIDChange: connections made under one effective uid are not kept once the
// process runs under another (a program that dialed as root and then dropped privileges
// must not keep a connection authenticated as root to an agent): the next use of the pool
// closes them.
func TestAgentPoolEUIDChange(t *testing.T) {
	p := &agentPool{idle: make(map[agentPoolKey][]*agentConn)}
	ta := startTestAgent(t, "")
	c, err := p.get(ta.sock)
	if err != nil {
		t.Fatal(err)
	}
	p.put(c)
	old := poolEUID
	poolEUID = func() int { return old() + 4242 }
	defer func() { poolEUID = old }()
	other := startTestAgent(t, "")
	c2, err := p.get(other.sock)
	if err != nil {
		t.Fatal(err)
	}
	p.put(c2)
	p.mu.Lock()
	for k := range p.idle {
		if k.euid != poolEUID() {
			t.Errorf("the pool still keeps connections made under euid %d", k.euid)
		}
	}
	p.mu.Unlock()
	// The old connection itself is closed.
	if raw, err := c.uc.SyscallConn(); err == nil && raw.Control(func(uintptr) {}) == nil {
		t.Error("the connection made under the old euid is still open")
	}
}

// TestAgentConnCloseOnExec: a kept agent connection is not inherited by programs the process
// starts.
func TestAgentConnCloseOnExec(t *testing.T) {
	p := &agentPool{idle: make(map[agentPoolKey][]*agentConn)}
	ta := startTestAgent(t, "")
	c, err := p.get(ta.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.uc.Close()
	raw, err := c.uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var flags int
	var ferr error
	raw.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFD, 0) })
	if ferr != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("agent connection flags %#x, %v: not close-on-exec", flags, ferr)
	}
}

// TestAgentPoolIdleTimeout: a process that stops dialing closes its idle agent connections
// after the idle timeout.
func TestAgentPoolIdleTimeout(t *testing.T) {
	p := &agentPool{idle: make(map[agentPoolKey][]*agentConn), idleTimeout: 50 * time.Millisecond}
	ta := startTestAgent(t, "")
	c, err := p.get(ta.sock)
	if err != nil {
		t.Fatal(err)
	}
	p.put(c)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n, _ := poolIdle(p); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an idle agent connection was kept past the idle timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if raw, err := c.uc.SyscallConn(); err == nil && raw.Control(func(uintptr) {}) == nil {
		t.Error("the timed-out connection is still open")
	}
}

// TestAgentPoolAnswerNotReadWhole: an agent's answer the client stops reading (one that says
// it is larger than the client accepts: no I/O error) leaves the rest of it on the
// connection, where the next request would take it for its answer: such a connection is not
// kept, and is not used for another request.
func TestAgentPoolAnswerNotReadWhole(t *testing.T) {
	sock := fakeAgent(t, func(c net.Conn) {
		for {
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:]))); err != nil {
				return
			}
			// 17 MiB announced, a few bytes sent: more than the client reads.
			c.Write([]byte{0x01, 0x10, 0x00, 0x00, 12, 0, 0, 0, 0, 0, 0, 0})
		}
	})
	p := &agentPool{idle: make(map[agentPoolKey][]*agentConn)}
	defer p.closeIdle()
	c, err := p.get(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ag.List(); err == nil {
		t.Fatal("List accepted a 17 MiB answer")
	}
	if c.broken.Load() {
		t.Log("(the client's error was an I/O error this time)")
	}
	if _, err := c.ag.List(); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Errorf("a second request on the out-of-step connection: %v; want it refused", err)
	}
	p.put(c)
	if n, _ := poolIdle(p); n != 0 {
		t.Errorf("the pool kept %d connections after an answer not read whole", n)
	}
}
