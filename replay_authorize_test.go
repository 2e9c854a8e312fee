// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"ubns.dev/netauth/internal/record"
)

// TestReplayedResumeHelloSkipsAuthorize replays a resumed connection's ClientHello (ticket and
// NNpsk0 message 1, both replayable by anyone who saw them) without the binder, which only the
// ticket's holder can make. The server may resume the ticket, but the application's Authorize
// callback, which may have side effects, must not run for a client that proved nothing.
func TestReplayedResumeHelloSkipsAuthorize(t *testing.T) {
	var calls atomic.Int32
	ts := newTestServer(t, func(cfg *ServerConfig) {
		cfg.Authorize = func(context.Context, *Identity) error { calls.Add(1); return nil }
	})
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	ts.serveEcho()
	p := newFrameProxy(t, ts, nil)
	cfg := ts.clientConfig(alice)
	for i := range 2 { // a full handshake, then a resumption through the proxy
		c, err := dialVerdict(p.addr(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if id := c.Identity(); id.Resumed != (i == 1) {
			t.Fatalf("connection %d resumed=%v", i, id.Resumed)
		}
		c.Close()
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("Authorize ran %d times for two connections", n)
	}
	hello := p.conn(t, 1).frame(t, c2s, 0)

	for range 5 {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(hello); err != nil {
			t.Fatal(err)
		}
		typ, body, err := record.NewConn(nc).ReadFrame(1 << 10)
		if err != nil || typ != record.FrameServerHello || len(body) == 0 {
			t.Fatalf("replayed ClientHello: frame 0x%02x, %v", typ, err)
		}
		nc.Close() // no binder: the replayer does not hold the ticket's secret
	}
	// The server has answered each replay (its ServerHello came back); give its side of the
	// closed connections a moment to finish before counting.
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 2 {
		t.Fatalf("Authorize ran %d times: replayed ClientHellos without a binder reached the application's policy", n-2)
	}
}
