// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/keys"
)

// countingKeys counts the lookups made in a key source.
type countingKeys struct {
	src keys.Source
	n   *atomic.Int64
}

func (c countingKeys) Keys(ctx context.Context, user string) ([]ssh.PublicKey, error) {
	c.n.Add(1)
	return c.src.Keys(ctx, user)
}

// lastRefusalMode returns the mode (full or resumed) of the audit log's last refusal.
func (tb *testbed) lastRefusalMode() string {
	tb.t.Helper()
	data, err := os.ReadFile(tb.auditLog)
	if err != nil {
		tb.t.Fatal(err)
	}
	mode := ""
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r audit.Record
		if json.Unmarshal([]byte(line), &r) == nil && r.Decision == audit.Refused {
			mode = r.Mode
		}
	}
	return mode
}

// TestResumptionLooksKeyUpOnce: a resumption looks the user's key up once, after its binder,
// when the same user and key were authorized less than recentAuthTTL before; it used to look
// it up twice, at the ClientHello too. That lookup after the binder still decides: a key
// removed since the last authorization is refused (not_authorized) even though the ticket was
// resumed, and then forgotten, so the next attempt falls back to a full handshake, which
// refuses it as before.
func TestResumptionLooksKeyUpOnce(t *testing.T) {
	// Per-connection workers exit with their connection: no revocation check looks keys up.
	tb := newTestbed(t, strings.Replace(whoamiService, "idle-timeout 1m", "mode per-connection", 1))
	var n atomic.Int64
	tb.d.mu.Lock()
	tb.d.keys = countingKeys{src: tb.d.keys, n: &n}
	tb.d.mu.Unlock()
	cfg := tb.config("netauth-alice")
	if _, err := tb.whoami("whoami", "netauth-alice", cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		before := n.Load()
		a, err := tb.whoami("whoami", "netauth-alice", cfg)
		if err != nil || a["resumed"] != "true" {
			t.Fatalf("resumption %d: %v, %v", i, a, err)
		}
		if got := n.Load() - before; got != 1 {
			t.Errorf("resumption %d looked the key up %d times, want 1", i, got)
		}
	}

	tb.setKey("netauth-alice", nil)
	// The last authorization is fresh: the ticket is resumed, and refused after its binder.
	start := time.Now()
	c, err := netauth.Dial("tcp", tb.addr("whoami"), cfg)
	if err == nil {
		err = c.Handshake()
		c.Close()
	}
	refusedNotAuthorized(t, "a resumption after the key was removed", err)
	if time.Since(start) < recentAuthTTL {
		if mode := tb.lastRefusalMode(); mode != audit.ModeResumed {
			t.Errorf("refused in a %q handshake, want resumed (refused after the binder)", mode)
		}
	}
	// Forgotten: the next falls back to a full handshake, which refuses the key.
	c, err = netauth.Dial("tcp", tb.addr("whoami"), cfg)
	if err == nil {
		err = c.Handshake()
		c.Close()
	}
	refusedNotAuthorized(t, "the next attempt", err)
	if mode := tb.lastRefusalMode(); mode != audit.ModeFull {
		t.Errorf("refused in a %q handshake, want full (the ticket fell back)", mode)
	}
}
