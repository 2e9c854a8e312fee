// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"ubns.dev/netauth"
)

// TestNotesExample runs examples/notes under netauthd: each user's notes are stored in their
// own home by a worker running as them, and the operating system keeps users out of each
// other's notes.
func TestNotesExample(t *testing.T) {
	requireRoot(t)
	bin := filepath.Join(t.TempDir(), "notes")
	build := exec.Command("go", "build", "-o", bin, "ubns.dev/netauth/examples/notes")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building examples/notes: %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	tb := newTestbedOpts(t, `service notes {
    listen 127.0.0.1:0
    program DIR/notes
    users netauth-alice netauth-bob
}
`, testbedOpts{files: map[string][]byte{"notes": data}})
	for _, u := range []string{"netauth-alice", "netauth-bob"} {
		home, err := homeOf(u)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(home, ".netauth-notes"))
	}

	session := func(user string, lines ...string) []string {
		t.Helper()
		c, err := netauth.Dial("tcp", tb.addr("notes"), tb.config(user))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var out []string
		for _, l := range lines {
			if _, err := fmt.Fprintln(c, l); err != nil {
				t.Fatal(err)
			}
			for {
				reply, err := r.ReadString('\n')
				if err != nil {
					if err == io.EOF {
						return out
					}
					t.Fatalf("%s: %v", user, err)
				}
				reply = strings.TrimSuffix(reply, "\n")
				out = append(out, reply)
				if reply == "ok" || reply == "." || strings.HasPrefix(reply, "error:") {
					break
				}
			}
		}
		return out
	}
	got := session("netauth-alice", "add buy milk", "add call bob", "list")
	if strings.Join(got, "|") != "ok|ok|buy milk|call bob|." {
		t.Fatalf("alice: %q", got)
	}
	got = session("netauth-bob", "add secret plan", "list", "read netauth-alice")
	if len(got) != 4 || got[1] != "secret plan" || !strings.Contains(got[3], "permission denied") {
		t.Fatalf("bob: %q (want his own note, and permission denied reading alice's)", got)
	}
	// The files belong to their users, mode 0600: the OS does the enforcing.
	for _, u := range []string{"netauth-alice", "netauth-bob"} {
		home, _ := homeOf(u)
		fi, err := os.Stat(filepath.Join(home, ".netauth-notes"))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if uidOf(t, u) != fmt.Sprint(st.Uid) || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s's notes: uid %d mode %v", u, st.Uid, fi.Mode().Perm())
		}
	}
}

func homeOf(user string) (string, error) {
	out, err := exec.Command("getent", "passwd", user).Output()
	if err != nil {
		return "", fmt.Errorf("getent passwd %s: %w", user, err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), ":")
	if len(f) < 6 {
		return "", fmt.Errorf("getent passwd %s: malformed entry", user)
	}
	return f[5], nil
}
