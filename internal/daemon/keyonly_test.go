// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
)

const keyOnlyServices = `service shared {
    listen 127.0.0.1:0
    program WORKER
    args whoami
    run-as account netauth-alice
    users keyonly1
    groups keyonly2 netauth-bob
}

service asuser {
    listen 127.0.0.1:0
    program WORKER
    args whoami
    users *
}
`

// TestKeyOnlyUsers: users who exist only in the key files (no system account) may use a
// service whose workers run as a service account when it lists them by name, never through
// groups, and never a service whose workers run as the user; their worker is not taken for
// revoked while they keep their key, and is when they lose it.
func TestKeyOnlyUsers(t *testing.T) {
	tb := newTestbed(t, keyOnlyServices)
	for _, name := range []string{"keyonly1", "keyonly2"} {
		if _, err := os.Stat("/etc/passwd"); err == nil {
			if data, _ := os.ReadFile("/etc/passwd"); strings.Contains(string(data), "\n"+name+":") {
				t.Fatalf("%s is a system account: the test needs a name that is not", name)
			}
		}
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, _ := ssh.NewSignerFromKey(priv)
		tb.users[name] = s
		tb.setKey(name, s.PublicKey())
	}

	// Listed by name: served, by a worker running as the service account.
	c, err := netauth.Dial("tcp", tb.addr("shared"), tb.config("keyonly1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	ask := func() (string, error) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintln(c, "?"); err != nil {
			return "", err
		}
		return r.ReadString('\n')
	}
	line, err := ask()
	if err != nil || !strings.Contains(line, "user=keyonly1 ") || !strings.Contains(line, "uid="+uidOf(t, "netauth-alice")+" ") {
		t.Fatalf("keyonly1 on the shared service: %q %v", line, err)
	}

	// Not listed by name: a group in the service's groups named like the user does not
	// grant it; neither does "users *" on a run-as user service.
	var re *netauth.RefusedError
	if _, err := tb.whoami("shared", "keyonly2", tb.config("keyonly2")); !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
		t.Fatalf("keyonly2 (only a group of that name is listed): %v, want not authorized", err)
	}
	if _, err := tb.whoami("asuser", "keyonly1", tb.config("keyonly1")); !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
		t.Fatalf("keyonly1 on a run-as user service: %v, want not authorized", err)
	}
	// A system user still gets in through a group.
	if r, err := tb.whoami("shared", "netauth-bob", tb.config("netauth-bob")); err != nil || r["user"] != "netauth-bob" {
		t.Fatalf("bob through his group: %v %v", r, err)
	}

	// Several revocation checks (every 200ms) pass: the session stays.
	time.Sleep(time.Second)
	if line, err := ask(); err != nil || !strings.Contains(line, "user=keyonly1 ") {
		t.Fatalf("keyonly1's session after the revocation checks: %q %v", line, err)
	}
	// The key removed: the session ends within 5 seconds.
	tb.setKey("keyonly1", nil)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("keyonly1's session after the key was removed: %v, want closed", err)
	}
}
