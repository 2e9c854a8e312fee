// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// retireLoops counts the goroutines retiring ticket keys on a timer.
func retireLoops() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("handshake.(*TicketKeys).RetireLoop("))
}

// waitRetireLoops waits until n goroutines retire ticket keys. It runs the garbage collector:
// the state of the Server connections of a config ends once the config is garbage.
func waitRetireLoops(t *testing.T, what string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.GC(); retireLoops() != n; runtime.GC() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d goroutines retiring ticket keys, want %d", what, retireLoops(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestListenerRetiresTicketKeys: a Listener that issues tickets retires its ticket keys on a
// timer (so they do not outlive their use when no ticket is sealed), and Close stops it.
func TestListenerRetiresTicketKeys(t *testing.T) {
	waitRetireLoops(t, "before the test", 0) // listeners of earlier tests may still be closing
	ts := newTestServer(t, nil)
	waitRetireLoops(t, "listener with tickets", 1)
	off := newTestServer(t, func(c *ServerConfig) { c.TicketLifetime = -1 })
	time.Sleep(10 * time.Millisecond)
	if n := retireLoops(); n != 1 {
		t.Fatalf("a listener without tickets started a retirement timer: %d running", n)
	}
	ts.ln.Close()
	off.ln.Close()
	waitRetireLoops(t, "after Close", 0)
}

// TestServerStateEndsWithConfig: the state Server keeps for a config (its ticket keys retired
// on a timer) ends once the config is garbage.
func TestServerStateEndsWithConfig(t *testing.T) {
	waitRetireLoops(t, "before the test", 0)
	func() {
		u := newTestUser(t, "alice")
		scfg, hostPub := newAPIServerConfig(t, u)
		cc, sc := net.Pipe()
		ccfg := &Config{User: u.name, Signer: u.signer, ServerAddr: "server.example:4000",
			SSHHostKeyCallback: ssh.FixedHostKey(hostPub), TicketCache: NewMemoryTicketCache(1)}
		exchange(t, cc, sc, ccfg, scfg)
		waitRetireLoops(t, "config in use", 1)
		runtime.KeepAlive(scfg)
	}()
	waitRetireLoops(t, "config garbage", 0)
}
