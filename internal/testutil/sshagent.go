// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

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
