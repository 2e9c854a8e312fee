// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/testutil"
)

// Loopback sources: every 127.0.0.0/8 address is local on Linux, so a client can choose
// which one it connects from.
var (
	flooderIP = net.ParseIP("127.0.0.2")
	legitIP   = net.ParseIP("127.0.0.1")
)

// bogus returns what the i-th bogus client sends: random bytes, a ClientHello header
// announcing more than the limit, a ClientHello cut short (then silence), or an alert.
func bogus(i int) []byte {
	switch i % 4 {
	case 0:
		b := make([]byte, 300)
		_, _ = rand.Read(b)
		return b
	case 1:
		return []byte{record.FrameClientHello, 0xff, 0xff}
	case 2:
		return append(binary.BigEndian.AppendUint16([]byte{record.FrameClientHello}, uint16(handshake.MaxClientHello+3)), make([]byte, 100)...) // over the limit
	default:
		return alertBytes(CodeOverloaded)
	}
}

// TestFloodFromOneSource: 500 stalled connections from one address take at most
// MaxPendingPerSource handshake slots (every other one is refused as overloaded before
// anything is read), and a user connecting from another address is served throughout; so is
// she while the same source keeps sending bogus handshakes. Without the per-source bound the
// same flood locks her out, which shows the flood is strong enough to matter.
func TestFloodFromOneSource(t *testing.T) {
	const floodN, perSource = 500, DefaultMaxPendingPerSource
	newServer := func(t *testing.T, perSource int) (*testServer, *testUser) {
		ts := newTestServer(t, func(cfg *ServerConfig) {
			cfg.MaxPendingHandshakes = 64
			cfg.MaxPendingPerSource = perSource
			cfg.HandshakeTimeout = 20 * time.Second // stalled clients hold their slots all along
			cfg.Logger = nil                        // hundreds of refusals
		})
		alice := newTestUser(t, "alice")
		ts.allow(alice)
		ts.serveEcho()
		return ts, alice
	}

	t.Run("limited", func(t *testing.T) {
		start := time.Now()
		ts, alice := newServer(t, 0) // the default bound
		stalled := testutil.StartFlood(t, ts.addr, flooderIP, floodN, 10*time.Second, alertBytes(CodeOverloaded), nil)
		stalled.WaitRefused(t, floodN-perSource)
		if n := ts.ln.limiter.PendingFrom(&net.TCPAddr{IP: flooderIP}); n != perSource {
			t.Fatalf("the flooder holds %d handshake slots, want %d", n, perSource)
		}
		t.Logf("%d stalled connections: %d refused in %v, %d held", floodN, stalled.Refused.Load(),
			time.Since(stalled.OpenedAt).Round(time.Millisecond), perSource)

		// Meanwhile the same source sends bogus handshakes as fast as it can.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var bogusSent atomic.Int32
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: flooderIP}, Timeout: time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := d.Dial("tcp", ts.addr)
				if err != nil {
					continue
				}
				_ = c.SetDeadline(time.Now().Add(time.Second))
				_, _ = c.Write(bogus(i))
				_, _ = c.Read(make([]byte, 16))
				c.Close()
				bogusSent.Add(1)
			}
		}()
		cfg := ts.clientConfig(alice)
		for i := range 20 {
			cfg.DisableResumption = i%2 == 0
			t0 := time.Now()
			c, err := dialVerdict(ts.addr, cfg)
			if err != nil {
				t.Fatalf("alice's connection %d during the flood: %v", i, err)
			}
			echoOnce(t, c)
			c.Close()
			if d := time.Since(t0); d > 2*time.Second {
				t.Fatalf("alice's connection %d took %v during the flood", i, d)
			}
		}
		close(stop)
		wg.Wait()
		if n := ts.ln.limiter.PendingFrom(&net.TCPAddr{IP: flooderIP}); n > perSource {
			t.Fatalf("the flooder holds %d handshake slots, bound %d", n, perSource)
		}
		t.Logf("alice served 20 times alongside %d bogus handshakes; %v in all", bogusSent.Load(), time.Since(start).Round(time.Millisecond))
		if bogusSent.Load() < 20 {
			t.Fatalf("only %d bogus handshakes sent: the flood did not run", bogusSent.Load())
		}
	})

	t.Run("unlimited", func(t *testing.T) {
		ts, alice := newServer(t, -1)
		stalled := testutil.StartFlood(t, ts.addr, flooderIP, floodN, 10*time.Second, alertBytes(CodeOverloaded), nil)
		stalled.WaitRefused(t, floodN-64)
		_, err := dialVerdict(ts.addr, ts.clientConfig(alice))
		var re *RefusedError
		if !errors.As(err, &re) || re.Code != CodeOverloaded {
			t.Fatalf("without a per-source bound, alice during the flood: %v, want overloaded", err)
		}
	})
}
