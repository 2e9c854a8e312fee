// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
)

// TestPrincipalsCommandRecheckCached: the revocation check (every 200ms here) decides a live
// certificate session with the answer the authorized principals command gave, for the
// principals TTL, instead of running the command at every check; a principal removed from
// the user's list closes the session within the TTL and the check interval. (A handshake
// always runs the command: internal/usercert's tests show a new connection refused at once.)
func TestPrincipalsCommandRecheckCached(t *testing.T) {
	old := principalsTTL
	principalsTTL = 3 * time.Second
	t.Cleanup(func() { principalsTTL = old })
	ca := newUserCA(t)
	ran, list := filepath.Join(ca.dir, "ran"), filepath.Join(ca.dir, "list")
	if err := os.WriteFile(list, []byte("staff\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	command := filepath.Join(ca.dir, "principals.sh")
	if err := os.WriteFile(command, []byte("#!/bin/sh\necho x >>"+ran+"\ncat "+list+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	runs := func() int {
		b, err := os.ReadFile(ran)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.Count(string(b), "x")
	}
	echo := strings.Replace(whoamiService, "args whoami", "args echo", 1)
	tb := newTestbed(t, certGlobals(ca)+"authorized-principals-command "+command+" %u\n"+echo)
	staff := ca.issue(t, "-I", "staff", "-n", "staff")
	start := time.Now() // the handshake's answer is dated after this
	c, err := netauth.Dial("tcp", tb.addr("whoami"), staff.config("netauth-alice", tb.known))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}
	// The revocation checks within the TTL of the handshake's answer (about a dozen) do not
	// run the command.
	before := runs()
	time.Sleep(time.Until(start.Add(principalsTTL - 500*time.Millisecond)))
	if n := runs() - before; n > 0 {
		t.Fatalf("the principals command ran %d times in %v of revocation checks of one session (TTL %v)", n, time.Since(start), principalsTTL)
	}

	if err := os.WriteFile(list, []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	// The session closes at the first revocation check after the answer's TTL.
	limit := principalsTTL + 200*time.Millisecond + revokeGrace + 2*time.Second
	_ = c.SetReadDeadline(removed.Add(limit))
	_, err = r.ReadByte()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("session still open %v after its principal was removed (%v)", time.Since(removed), err)
	}
	if !errors.Is(err, netauth.ErrRevoked) {
		t.Fatalf("the client reads %v, want access revoked", err)
	}
	c2, err := netauth.Dial("tcp", tb.addr("whoami"), staff.config("netauth-alice", tb.known))
	if err == nil {
		err = c2.Handshake()
		c2.Close()
	}
	wantRefused(t, "a new connection after the principal was removed", err, netauth.CodeNotAuthorized)
}
