// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// SSHKeygen runs OpenSSH's ssh-keygen with args; the test fails, with ssh-keygen's output, if
// it does.
func SSHKeygen(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// ReadPublicKey reads the public key (or certificate) in the authorized_keys format file at
// path, as ssh-keygen writes it.
func ReadPublicKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return k
}

// StartSSHAgent runs OpenSSH's ssh-agent in the foreground on a socket in a new temporary
// directory, with env added to its environment, and returns the socket once the agent accepts
// connections (ssh-agent creates its socket file when it binds, a moment before it listens:
// a client that only waits for the file can be refused). The agent is killed when the test
// ends. A test that needs ssh-agent is skipped, saying so, when it is not installed; CI
// installs it.
func StartSSHAgent(t testing.TB, env ...string) (string, *exec.Cmd) {
	t.Helper()
	bin, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Skip("OpenSSH's ssh-agent is not installed (CI installs openssh-client)")
	}
	sock := filepath.Join(t.TempDir(), "ssh-agent.sock")
	cmd := exec.Command(bin, "-D", "-a", sock)
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ssh-agent: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return sock, cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent does not accept connections on %s: %v", sock, err)
		}
	}
}
