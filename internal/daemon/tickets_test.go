// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"testing"
	"time"
)

// TestTicketKeysRetiredOnTimer: the monitor's ticket keys are retired on a timer. After one
// full handshake (which makes a ticket key) and no connection since, the key is gone once
// no ticket it sealed can be valid (two lifetimes after it was made), with no seal or open to
// trigger it.
func TestTicketKeysRetiredOnTimer(t *testing.T) {
	const life = time.Second
	tb := newTestbed(t, "ticket-lifetime 1s\n\n"+whoamiService)
	start := time.Now()
	if _, err := tb.whoami("whoami", "netauth-alice", tb.config("netauth-alice")); err != nil {
		t.Fatal(err)
	}
	if n := tb.d.tickets.Len(); n != 1 {
		t.Fatalf("%d ticket keys after a full handshake, want 1", n)
	}
	for tb.d.tickets.Len() != 0 {
		if time.Since(start) > 2*life+10*time.Second {
			t.Fatal("the ticket key was not retired")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Since(start); d < 2*life-100*time.Millisecond {
		t.Fatalf("ticket key retired %v after the handshake, before two lifetimes", d)
	}
}
