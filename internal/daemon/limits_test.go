// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"crypto/rand"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/testutil"
)

// flooderIP is the flood's source: every 127.0.0.0/8 address is local on Linux, so a client
// can choose which one it connects from; the legitimate clients connect from 127.0.0.1.
var flooderIP = net.ParseIP("127.0.0.2")

var overloadedAlert = handshake.AlertFrame(handshake.CodeOverloaded)

// bogusFlood connects from src to addr again and again, each time sending a bogus handshake
// (random bytes, an oversized ClientHello header, a truncated ClientHello, an alert), until
// stop is closed; it returns the number sent.
func bogusFlood(addr string, src net.IP, stop <-chan struct{}) int {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: time.Second}
	sent := 0
	for i := 0; ; i++ {
		select {
		case <-stop:
			return sent
		default:
		}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			continue
		}
		var p []byte
		switch i % 4 {
		case 0:
			p = make([]byte, 300)
			_, _ = rand.Read(p)
		case 1:
			p = []byte{record.FrameClientHello, 0xff, 0xff}
		case 2:
			p = append(binary.BigEndian.AppendUint16([]byte{record.FrameClientHello}, uint16(handshake.MaxClientHello+3)), make([]byte, 100)...) // over the limit
		default:
			p = overloadedAlert
		}
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(p)
		_, _ = c.Read(make([]byte, 16))
		c.Close()
		sent++
	}
}

// TestFloodFromOneSource: 500 stalled connections from 127.0.0.2 take at most
// maxPendingPerSource of the acceptor's handshake slots (every other one is refused as
// overloaded at once), and alice and bob, connecting from 127.0.0.1 while 127.0.0.2 also keeps
// sending bogus handshakes, are served every time and by their own workers.
func TestFloodFromOneSource(t *testing.T) {
	start := time.Now()
	tb := newTestbed(t, whoamiService)
	addr := tb.addr("whoami")
	const floodN = 500
	stalled := testutil.StartFlood(t, addr, flooderIP, floodN, 10*time.Second, overloadedAlert, nil)
	stalled.WaitRefused(t, floodN-maxPendingPerSource)

	stop := make(chan struct{})
	sent := make(chan int, 1)
	go func() { sent <- bogusFlood(addr, flooderIP, stop) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	pids := map[string]string{}
	for i := range 20 {
		user := testAccounts[i%2]
		cfg := tb.config(user)
		cfg.DisableResumption = i%4 < 2
		t0 := time.Now()
		r, err := tb.whoami("whoami", user, cfg)
		if err != nil {
			t.Fatalf("%s's connection %d during the flood: %v", user, i, err)
		}
		if d := time.Since(t0); d > 3*time.Second {
			t.Fatalf("%s's connection %d took %v during the flood", user, i, d)
		}
		if r["user"] != user || r["uid"] != uidOf(t, user) {
			t.Fatalf("%s's connection %d: %v", user, i, r)
		}
		if p, ok := pids[user]; ok && p != r["pid"] {
			t.Fatalf("%s served by workers %s and %s", user, p, r["pid"])
		}
		pids[user] = r["pid"]
	}
	close(stop)
	n := <-sent
	if n < 20 {
		t.Fatalf("only %d bogus handshakes sent: the flood did not run", n)
	}
	if pids[testAccounts[0]] == pids[testAccounts[1]] {
		t.Fatalf("alice and bob share worker %s", pids[testAccounts[0]])
	}
	t.Logf("%d stalled connections (%d refused at once), %d bogus handshakes; alice and bob served 20 times; %v",
		floodN, stalled.Refused.Load(), n, time.Since(start).Round(time.Millisecond))
}
