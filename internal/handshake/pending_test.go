// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"net"
	"sync"
	"testing"
	"time"

	"ubns.dev/netauth/internal/record"
)

// TestAbandonedHandshakesLeaveNoSession opens full handshakes that stop after message 1 (the
// client closes before or after reading message 2, or answers with a record that does not
// decrypt) against one shared core. Begin takes no key, so anyone can make these; each must
// release its pending session when its connection ends, so that the session table
// (maxCoreSessions) is bounded by the handshakes in progress (the listener's and acceptor's
// limits), never by how many were ever begun.
func TestAbandonedHandshakesLeaveNoSession(t *testing.T) {
	e := newEnv(t)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const perKind = 50
	var wg sync.WaitGroup
	for i := range 3 * perKind {
		srv, cli := net.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer srv.Close()
			_ = srv.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = Serve(record.NewConn(srv), core, "192.0.2.9:1", nil)
		}()
		hello := frame(record.FrameClientHello, (&clientHello{Version: Version, Mode: ModeFull, Noise: fullMessage1(t)}).body())
		_ = cli.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := cli.Write(hello); err != nil {
			t.Fatal(err)
		}
		if i%3 != 0 {
			rc := record.NewConn(cli)
			if _, _, err := rc.ReadFrame(1<<12, record.FrameServerHello); err != nil {
				t.Fatalf("handshake %d: %v", i, err)
			}
			if i%3 == 2 {
				junk := make([]byte, 40)
				_, _ = cli.Write(frame(record.FrameRecord, junk))
				_, _, _ = rc.ReadFrame(1 << 12)
			}
		}
		cli.Close()
	}
	wg.Wait()
	core.mu.Lock()
	n := len(core.sessions)
	core.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d abandoned handshakes left %d pending sessions", 3*perKind, n)
	}
}

// TestExpiredSessionsForgotten begins handshakes that never send message 3 (an acceptor that
// stops committing): once they expire, the next Begin forgets and wipes them, so neither they
// nor their secrets stay in memory until the table fills.
func TestExpiredSessionsForgotten(t *testing.T) {
	e := newEnv(t)
	core, err := NewServerCore(e.srv, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	begin := func() *coreSession {
		resp, err := core.Begin(&BeginRequest{Mode: ModeFull, Noise: fullMessage1(t)})
		if err != nil {
			t.Fatal(err)
		}
		core.mu.Lock()
		defer core.mu.Unlock()
		return core.sessions[resp.Session]
	}
	old := make([]*coreSession, 100)
	for i := range old {
		old[i] = begin()
	}
	time.Sleep(100 * time.Millisecond)
	begin()
	core.mu.Lock()
	n := len(core.sessions)
	core.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d sessions held, 100 of them expired; want 1", n)
	}
	for _, s := range old {
		if s.sec.appC2S != ([32]byte{}) || s.sec.resumption != ([32]byte{}) {
			t.Fatal("an expired session's secrets were not wiped")
		}
	}
}
