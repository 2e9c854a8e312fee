// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth/internal/audit"
)

// TestVanishingClientsLeakNoAdmission: a user whose client authenticates and goes at once
// (closing, or resetting, the connection right after its authenticator) leaves nothing
// behind in netauthd: each admission (the per-user connection count, the worker registered
// for the connection) is given back, whether the monitor refused the dead descriptor or
// accepted it and handed it to a worker that found it closed. With one connection allowed per
// user and a worker per connection, a single leak would refuse the user for good and keep a
// worker alive.
func TestVanishingClientsLeakNoAdmission(t *testing.T) {
	tb := newTestbed(t, strings.Replace(whoamiService, "idle-timeout 1m", "mode per-connection\n    max-connections-per-user 1", 1))
	settled := func() (conns, workers int) {
		tb.d.mu.Lock()
		defer tb.d.mu.Unlock()
		for _, n := range tb.d.conns {
			conns += n
		}
		return conns, len(tb.d.workers)
	}
	decided := func() int {
		return tb.auditCount(audit.Refused, "acceptor commit refused") + tb.auditCount(audit.Accepted, "")
	}
	const vanishing = 6
	for i := range vanishing {
		nc, err := net.Dial("tcp", tb.addr("whoami"))
		if err != nil {
			t.Fatal(err)
		}
		// RunClient returns once the authenticator is sent, before the verdict.
		sendAuthenticator(t, tb, nc)
		if i%2 == 1 {
			nc.(*net.TCPConn).SetLinger(0) // a reset
		}
		nc.Close()
		// Decided (accepted, or refused for its dead descriptor), then settled.
		waitUntil(t, 10*time.Second, func() string { return fmt.Sprintf("%d of %d vanished clients decided", decided(), i+1) },
			func() bool { return decided() == i+1 })
		waitUntil(t, 10*time.Second, func() string {
			c, w := settled()
			return fmt.Sprintf("client %d gone: %d connections still counted for alice, %d workers", i, c, w)
		}, func() bool { c, w := settled(); return c == 0 && w == 0 })
	}
	// The clients that closed (rather than reset) were accepted: their admissions went
	// through the worker, and came back.
	if n := tb.auditCount(audit.Accepted, ""); n < vanishing/2 {
		t.Fatalf("%d of %d vanished clients accepted; want at least those that closed", n, vanishing)
	}
	cfg := tb.config("netauth-alice")
	cfg.DisableResumption = true
	if r, err := tb.whoami("whoami", "netauth-alice", cfg); err != nil || r["user"] != "netauth-alice" {
		t.Fatalf("alice after her vanished clients: %v %v", r, err)
	}
}
