// SPDX-License-Identifier: Apache-2.0

package usercert

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestRedteamPrincipalsCommandAfterCASignature: a certificate a client made up, naming a
// trusted CA, a current validity window and the user it asks for, but not signed by that CA,
// must not make the server run its authorized principals command (a root process per
// handshake, for anyone who can reach the port): the CA signature is verified before any
// principals source is asked. A genuine certificate still runs it every time.
func TestRedteamPrincipalsCommandAfterCASignature(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	script := filepath.Join(dir, "principals")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho x >>"+ran+"\necho \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	runs := func() int {
		b, err := os.ReadFile(ran)
		if os.IsNotExist(err) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "x")
	}
	c := &Checker{CAs: []ssh.PublicKey{f.caPub}, Principals: []PrincipalSource{PrincipalsCommand{Path: script, Args: []string{"%u"}}}}
	good := certify(t, f.ca, f.id, "-I", "a", "-n", "alice")
	forged := *good
	forged.Signature = &ssh.Signature{Format: good.Signature.Format, Blob: make([]byte, len(good.Signature.Blob))}
	for range 3 {
		if err := c.Check(context.Background(), &forged, "alice", client, time.Now(), time.Minute); err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Fatalf("forged certificate: %v", err)
		}
	}
	if n := runs(); n != 0 {
		t.Fatalf("the principals command ran %d times for certificates the CA never signed", n)
	}
	for range 2 {
		if err := c.Check(context.Background(), good, "alice", client, time.Now(), time.Minute); err != nil {
			t.Fatalf("genuine certificate: %v", err)
		}
	}
	if n := runs(); n != 2 {
		t.Fatalf("the principals command ran %d times for two checks of a genuine certificate, want 2", n)
	}
}
