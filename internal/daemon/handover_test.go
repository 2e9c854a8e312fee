// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/handoff"
)

// timedCommit is a tamperCore whose Commit reports, on answered, how long the monitor took
// to answer it.
func timedCommit(answered chan<- time.Duration) tamperCore {
	return tamperCore{commit: func(c tamperCore, req *commitRequest, f *os.File) ([]byte, error) {
		start := time.Now()
		p, err := c.a.call(handoff.TypeCommit, req.marshal(), f)
		answered <- time.Since(start)
		return p, err
	}}
}

// setAckTimeout gives the testbed's workers d to adopt a connection.
func (tb *testbed) setAckTimeout(d time.Duration) {
	tb.d.mu.Lock()
	tb.d.ackTimeout = d
	tb.d.mu.Unlock()
}

// inCustody returns how many accepted connections the monitor holds for their workers.
func (tb *testbed) inCustody() int {
	tb.d.mu.Lock()
	defer tb.d.mu.Unlock()
	return len(tb.d.custodySlots)
}

// stopWorker stops (SIGSTOP) user's worker for service, which then adopts nothing, once it
// has closed every connection it has, and returns its pid.
func (tb *testbed) stopWorker(service, user string) int {
	tb.t.Helper()
	waitUntil(tb.t.(*testing.T), 5*time.Second, func() string { return "the worker's connections did not close" }, func() bool {
		tb.d.mu.Lock()
		defer tb.d.mu.Unlock()
		return tb.d.conns[userService{service, user}] == 0
	})
	pid := tb.workerPid(service, user)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		tb.t.Fatal(err)
	}
	// The stop takes effect asynchronously: until every thread of the worker has stopped it
	// may still adopt a connection sent to it.
	waitUntil(tb.t.(*testing.T), 5*time.Second, func() string { return fmt.Sprintf("worker %d did not stop", pid) }, func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		i := bytes.LastIndexByte(st, ')')
		return i > 0 && i+2 < len(st) && st[i+2] == 'T'
	})
	return pid
}

// TestCommitNotHeldByWorker: the monitor answers the acceptor's Commit as soon as it has
// decided and holds the connection, not once the worker adopted it. A worker that adopts
// nothing (stopped, as its user may do to their own worker) used to hold each Commit, and with
// it the acceptor's handshake slot and goroutine, for the ackTimeout the monitor gives a
// worker (10 s), and then for another worker's. Now the acceptor gets its answer at once and
// closes its copy of the socket; the monitor's copy keeps the connection, which a new worker
// serves once the stopped one is replaced. The connections held are bounded: by the user's
// max-connections-per-user (the next is refused as overloaded while they wait).
func TestCommitNotHeldByWorker(t *testing.T) {
	const perUser = 3
	tb := newTestbed(t, strings.Replace(whoamiService, "idle-timeout 1m", fmt.Sprintf("idle-timeout 1m\n    max-connections-per-user %d", perUser), 1))
	const adopt = 3 * time.Second
	tb.setAckTimeout(adopt)
	e := newEvilAcceptor(t, tb)
	e.legit(t) // alice's worker runs
	stopped := tb.stopWorker("whoami", "netauth-alice")
	cfg := tb.config("netauth-alice")
	cfg.DisableResumption = true
	cfg.HandshakeTimeout = 30 * time.Second
	answered := make(chan time.Duration, perUser)
	clients := make(chan error, perUser)
	start := time.Now()
	for range perUser {
		go func() {
			clientErr, res, serverErr := e.connect("netauth-alice", cfg, timedCommit(answered))
			if clientErr == nil && (serverErr != nil || res == nil || !res.HandedOff) {
				clientErr = fmt.Errorf("served, but the acceptor's side got %v, %+v", serverErr, res)
			}
			clients <- clientErr
		}()
	}
	for range perUser {
		select {
		case took := <-answered:
			if took > time.Second {
				t.Errorf("a Commit was answered after %v: the monitor waited for the worker (which adopts only after %v)", took.Round(time.Millisecond), adopt)
			}
		case <-time.After(2 * adopt):
			t.Fatalf("a Commit is not answered after %v", 2*adopt)
		}
	}
	if since := time.Since(start); since < adopt {
		// Still within the stopped worker's time: the three wait for it, in custody.
		if n := tb.inCustody(); n != perUser {
			t.Errorf("%d connections in custody, want %d", n, perUser)
		}
		clientErr, _, _ := e.connect("netauth-alice", cfg, tamperCore{})
		if time.Since(start) < adopt {
			wantRefused(t, "a connection past max-connections-per-user while the others wait for their worker", clientErr, netauth.CodeOverloaded)
		}
	} else {
		t.Logf("the Commits took %v in all: too slow to check the bound within the worker's %v", since, adopt)
	}
	// The stopped worker is replaced, and the new one serves the connections the monitor kept.
	for range perUser {
		if err := <-clients; err != nil {
			t.Errorf("a connection kept for its worker: %v", err)
		}
	}
	waitGone(t, stopped, 5*time.Second)
	if pid := tb.workerPid("whoami", "netauth-alice"); pid == stopped {
		t.Fatal("the stopped worker is still alice's")
	}
	waitUntil(t, 5*time.Second, func() string { return fmt.Sprintf("%d connections still in custody", tb.inCustody()) },
		func() bool { return tb.inCustody() == 0 })
	// The three connections count against alice's max-connections-per-user until her worker
	// reports them closed, a moment after their clients saw them end.
	waitUntil(t, 5*time.Second, func() string { return fmt.Sprintf("alice's connections still counted: %v", tb.conns()) },
		func() bool { return tb.conns()[userService{user: "netauth-alice", service: "whoami"}] == 0 })
	e.legit(t)
}

// TestCustodyBounded: the monitor holds at most its custody limit of accepted connections
// for workers that have not adopted them, all users together; a Commit that finds it full
// waits for a place (so the acceptor holds back as it did when every Commit waited for its
// worker) and is answered once one is free.
func TestCustodyBounded(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	tb.d.mu.Lock()
	tb.d.custodySlots = make(chan struct{}, 1)
	tb.d.mu.Unlock()
	const adopt = 2 * time.Second
	tb.setAckTimeout(adopt)
	e := newEvilAcceptor(t, tb)
	e.legit(t)
	tb.stopWorker("whoami", "netauth-alice")
	alice := tb.config("netauth-alice")
	alice.DisableResumption = true
	alice.HandshakeTimeout = 30 * time.Second
	bob := tb.config("netauth-bob")
	bob.DisableResumption = true
	bob.HandshakeTimeout = 30 * time.Second
	var wg sync.WaitGroup
	defer wg.Wait()
	aliceAnswered, bobAnswered := make(chan time.Duration, 1), make(chan time.Duration, 1)
	aliceDone, bobDone := make(chan error, 1), make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		clientErr, _, _ := e.connect("netauth-alice", alice, timedCommit(aliceAnswered))
		aliceDone <- clientErr
	}()
	if took := <-aliceAnswered; took > time.Second {
		t.Fatalf("alice's Commit answered after %v", took)
	}
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		clientErr, _, _ := e.connect("netauth-bob", bob, timedCommit(bobAnswered))
		bobDone <- clientErr
	}()
	select {
	case took := <-bobAnswered:
		if time.Since(start) < adopt/2 {
			t.Fatalf("bob's Commit answered after %v, with the custody full (alice's connection waits for her worker)", took)
		}
	case <-time.After(adopt / 2):
		// Waiting, as it should: a place frees once alice's worker is replaced.
		select {
		case <-bobAnswered:
		case <-time.After(4 * adopt):
			t.Fatal("bob's Commit is never answered")
		}
	}
	if err := <-aliceDone; err != nil {
		t.Errorf("alice: %v", err)
	}
	if err := <-bobDone; err != nil {
		t.Errorf("bob: %v", err)
	}
}

// droppingService's workers exit as soon as they are sent a connection, before adopting it.
const droppingService = `service whoami {
    listen 127.0.0.1:0
    program WORKER
    args dropper
    users netauth-alice
}
`

// runDropper is a worker that exits when it is sent a connection, without adopting it.
func runDropper() int {
	ch, err := handoff.FromFile(os.NewFile(3, "control"))
	if err != nil {
		return 1
	}
	for {
		m, _, err := ch.Recv()
		if err != nil || m.Type == handoff.TypeExit {
			return 0
		}
		if m.Type == handoff.TypeConn {
			return 3
		}
	}
}

// TestHandoffAttempts: a connection whose worker exits before adopting it goes to a new
// worker, handoffAttempts workers in all; then it is given up, and nothing of it is left: no
// place in custody, no connection counted against the user.
func TestHandoffAttempts(t *testing.T) {
	var log testutil.SyncBuffer
	tb := newTestbedOpts(t, droppingService, testbedOpts{log: &log})
	cfg := tb.config("netauth-alice")
	cfg.DisableResumption = true
	cfg.HandshakeTimeout = 10 * time.Second
	c, err := netauth.Dial("tcp", tb.addr("whoami"), cfg)
	if err == nil {
		err = c.Handshake() // the Verdict, which only a worker that adopted the connection sends
		c.Close()
	}
	if err == nil {
		t.Fatal("a connection no worker adopted was served")
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection was kept until the client's timeout: %v", err)
	}
	waitUntil(t, 10*time.Second, func() string { return "the connection was not given up" },
		func() bool { return strings.Contains(log.String(), "connection lost: no worker adopted it") })
	if n := strings.Count(log.String(), "worker started"); n != handoffAttempts {
		t.Errorf("%d workers started for the connection, want %d", n, handoffAttempts)
	}
	waitUntil(t, 5*time.Second, func() string {
		tb.d.mu.Lock()
		defer tb.d.mu.Unlock()
		return fmt.Sprintf("%d in custody, connections counted %v", len(tb.d.custodySlots), tb.d.conns)
	}, func() bool {
		tb.d.mu.Lock()
		defer tb.d.mu.Unlock()
		return len(tb.d.custodySlots) == 0 && len(tb.d.conns) == 0
	})
}

// TestAcceptorRequestExpires: a request the monitor never answers fails with errMonitorGone
// once it has waited monitorTimeout, as it did with a timer of its own; one timer, armed
// while requests wait, now serves them all, and is armed again for those still waiting.
func TestAcceptorRequestExpires(t *testing.T) {
	ch, theirs, err := handoff.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	defer ch.Close()
	a := &acceptorSide{ch: ch, pending: make(map[uint64]*pendingCall)}
	go a.receive() // the other end never answers
	done := make(chan error, 1)
	go func() {
		_, err := a.call(handoff.TypeAbort, (&sessionRef{service: "s", session: 1}).marshal(), nil)
		done <- err
	}()
	waitUntil(t, 5*time.Second, func() string { return "the request is not pending" }, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.pending) == 1
	})
	a.mu.Lock()
	if a.expiry == nil {
		t.Error("no expiry armed while a request waits")
	}
	later := &pendingCall{reply: make(chan *handoff.Message, 1), deadline: time.Now().Add(time.Hour)}
	for _, p := range a.pending {
		p.deadline = time.Now().Add(-time.Millisecond) // as if monitorTimeout had passed
	}
	a.pending[1<<60] = later
	a.mu.Unlock()
	a.expire()
	select {
	case err := <-done:
		if !errors.Is(err, errMonitorGone) {
			t.Fatalf("an unanswered request: %v, want errMonitorGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an unanswered request still waits past its deadline")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) != 1 || a.pending[1<<60] != later || a.expiry == nil {
		t.Fatalf("after the expiry: %d pending, expiry armed %v; want the later request pending, with the expiry armed", len(a.pending), a.expiry != nil)
	}
	a.expiry.Stop()
}

// TestAcceptorProcs: the acceptor runs Go code on a quarter of the processors the runtime
// would use, and on at least one.
func TestAcceptorProcs(t *testing.T) {
	for _, tc := range []struct{ procs, want int }{{1, 1}, {2, 1}, {4, 1}, {7, 1}, {8, 2}, {16, 4}, {64, 16}} {
		if got := acceptorProcs(tc.procs); got != tc.want {
			t.Errorf("acceptorProcs(%d) = %d, want %d", tc.procs, got, tc.want)
		}
	}
}

// disowningService's workers never adopt a connection, and say each is over.
const disowningService = `service whoami {
    listen 127.0.0.1:0
    program WORKER
    args disowner
    users netauth-alice
    max-connections-per-user 1
}
`

// runDisowner is a worker, taken over, that never acknowledges the connections it is sent,
// keeps them, and reports each closed (TypeDone) at once.
func runDisowner() int {
	ch, err := handoff.FromFile(os.NewFile(3, "control"))
	if err != nil {
		return 1
	}
	var kept []*os.File
	for {
		m, f, err := ch.Recv()
		if err != nil || m.Type == handoff.TypeExit {
			return 0
		}
		if m.Type == handoff.TypeConn {
			kept = append(kept, f)
			_ = ch.Send(&handoff.Message{Type: handoff.TypeDone, ID: m.ID}, nil)
		}
	}
}

// TestCustodyCountedWhateverTheWorkerSays: a connection in custody counts against its user's
// max-connections-per-user until its worker adopts it, whatever the worker says before: a
// worker (its user's process, which they may take over) that reports connections closed
// without adopting them used to uncount them while the monitor kept them, so that one user
// could fill the custody, which every user's Commit waits for when it is full.
func TestCustodyCountedWhateverTheWorkerSays(t *testing.T) {
	tb := newTestbed(t, disowningService)
	tb.setAckTimeout(5 * time.Second)
	e := newEvilAcceptor(t, tb)
	cfg := tb.config("netauth-alice")
	cfg.DisableResumption = true
	cfg.HandshakeTimeout = 3 * time.Second
	answered := make(chan time.Duration, 1)
	go func() { _, _, _ = e.connect("netauth-alice", cfg, timedCommit(answered)) }()
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first Commit is not answered")
	}
	if n := tb.inCustody(); n != 1 {
		t.Fatalf("%d connections in custody, want 1", n)
	}
	// Let the worker's Done arrive, then try one more connection than alice may have.
	time.Sleep(200 * time.Millisecond)
	clientErr, _, _ := e.connect("netauth-alice", cfg, tamperCore{})
	wantRefused(t, "a connection past max-connections-per-user while the first is in custody", clientErr, netauth.CodeOverloaded)
	if n := tb.inCustody(); n != 1 {
		t.Fatalf("%d connections in custody, want 1", n)
	}
}
