// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"ubns.dev/netauth/internal/record"
)

// abortSpy is a ServerCore that records the sessions aborted.
type abortSpy struct {
	*ServerCore
	mu      sync.Mutex
	aborted []uint64
}

func (c *abortSpy) Abort(id uint64) {
	c.mu.Lock()
	c.aborted = append(c.aborted, id)
	c.mu.Unlock()
	c.ServerCore.Abort(id)
}

// failingConn fails its n-th Write (counting from 1) and every one after.
type failingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	failAt int
}

func (c *failingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	fail := c.writes >= c.failAt
	c.mu.Unlock()
	if fail {
		return 0, errors.New("write failed")
	}
	return c.Conn.Write(p)
}

// TestAcceptedButVerdictLostAborts checks that a session the core accepted, whose Verdict
// could not be sent, is aborted. (What its admission holds is given back by Discard, since
// Commit took the session: TestVerdictLostDiscardsAdmission.)
func TestAcceptedButVerdictLostAborts(t *testing.T) {
	e := newEnv(t)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	spy := &abortSpy{ServerCore: core}
	cc, sc := net.Pipe()
	defer cc.Close()
	// The server writes ServerHello and ServerAuth in one write, then the Verdict.
	srv := &failingConn{Conn: sc, failAt: 2}
	done := make(chan error, 1)
	go func() {
		_, err := Serve(record.NewConn(srv), spy, "test", nil)
		sc.Close()
		done <- err
	}()
	if _, err := RunClient(record.NewConn(cc), e.cli); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("the server reported success without sending its Verdict")
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	if len(spy.aborted) != 1 {
		t.Fatalf("aborted sessions %v; want the accepted one, once", spy.aborted)
	}
}
