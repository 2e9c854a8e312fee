// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
)

const echoService = `service echo {
    listen 127.0.0.1:0
    program WORKER
    args echo
    users netauth-alice netauth-bob
    idle-timeout 1m
}
`

// echoSession is a live connection to an echo service.
type echoSession struct {
	t *testing.T
	c *netauth.Conn
	r *bufio.Reader
}

func (tb *testbed) echoSession(t *testing.T, service, user string) *echoSession {
	t.Helper()
	c, err := netauth.Dial("tcp", tb.addr(service), tb.config(user))
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	s := &echoSession{t: t, c: c, r: bufio.NewReader(c)}
	s.echo("hello from " + user)
	return s
}

// echo sends a line and checks that it comes back.
func (s *echoSession) echo(msg string) {
	s.t.Helper()
	_ = s.c.SetDeadline(time.Now().Add(5 * time.Second))
	defer s.c.SetDeadline(time.Time{})
	if _, err := io.WriteString(s.c, msg+"\n"); err != nil {
		s.t.Fatalf("echo %q: %v", msg, err)
	}
	if line, err := s.r.ReadString('\n'); err != nil || line != msg+"\n" {
		s.t.Fatalf("echo %q: got %q, %v", msg, line, err)
	}
}

// liveWorkerPid returns the pid of the live per-user worker of user for service (0 if none).
func (tb *testbed) liveWorkerPid(service, user string) int {
	tb.d.mu.Lock()
	defer tb.d.mu.Unlock()
	if w := tb.d.workers[workerKey{service: service, user: user}]; w != nil && !w.dead {
		<-w.ready // started before the connection was accepted
		return w.pid
	}
	return 0
}

// TestWorkerKilledMidStream: alice's worker is SIGKILLed while she has a live connection:
// her client reads a clean error within 2 seconds (not a hang), bob's live session on his own
// worker goes on, and alice's next connection gets a new worker.
func TestWorkerKilledMidStream(t *testing.T) {
	tb := newTestbed(t, echoService)
	alice := tb.echoSession(t, "echo", "netauth-alice")
	bob := tb.echoSession(t, "echo", "netauth-bob")
	alicePid, bobPid := tb.liveWorkerPid("echo", "netauth-alice"), tb.liveWorkerPid("echo", "netauth-bob")
	if alicePid == 0 || bobPid == 0 || alicePid == bobPid {
		t.Fatalf("workers: alice %d, bob %d", alicePid, bobPid)
	}

	// Alice is mid-stream: she has sent a line whose echo has not been read.
	if _, err := io.WriteString(alice.c, "in flight\n"); err != nil {
		t.Fatal(err)
	}
	if err := killPid(alicePid); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = alice.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var err error
	for err == nil { // the echo of "in flight" may have made it out before the kill
		_, err = alice.r.ReadString('\n')
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("alice's connection still open 2s after her worker was killed")
	}
	t.Logf("alice's read failed %v after the kill: %v", time.Since(start).Round(time.Millisecond), err)
	if !errors.Is(err, io.ErrUnexpectedEOF) && !strings.Contains(err.Error(), "truncated") && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("alice's read after her worker died: %v, want a truncated connection", err)
	}
	waitGone(t, alicePid, 5*time.Second)

	// Bob's session on his own worker is untouched.
	for i := range 3 {
		bob.echo(fmt.Sprintf("bob still here %d", i))
	}
	if p := tb.liveWorkerPid("echo", "netauth-bob"); p != bobPid {
		t.Fatalf("bob's worker changed from %d to %d", bobPid, p)
	}

	// Alice's next connection gets a new worker.
	again := tb.echoSession(t, "echo", "netauth-alice")
	again.echo("alice is back")
	if p := tb.liveWorkerPid("echo", "netauth-alice"); p == 0 || p == alicePid {
		t.Fatalf("alice's new connection: worker %d (the killed one was %d)", p, alicePid)
	}
}
