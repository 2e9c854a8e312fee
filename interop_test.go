// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/agent"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/testutil"
)

// sshKeygen makes an OpenSSH key pair with the real ssh-keygen and returns the private key
// path and the public key.
func sshKeygen(t *testing.T, dir, typ string) (string, ssh.PublicKey) {
	t.Helper()
	path := filepath.Join(dir, "id_"+typ)
	args := []string{"-q", "-t", typ, "-N", "", "-C", "test", "-f", path}
	if typ == "rsa" {
		args = append(args, "-b", "3072")
	}
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pubText, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	return path, pub
}

// startOpenSSHAgent runs a real ssh-agent on a socket in a temporary directory.
func startOpenSSHAgent(t *testing.T) string {
	t.Helper()
	sock, _ := testutil.StartSSHAgent(t)
	return sock
}

func sshAdd(t *testing.T, sock, keyPath string) {
	t.Helper()
	cmd := exec.Command("ssh-add", keyPath)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
}

// dialEcho dials, exchanges a message through an echo server and returns the identity.
func dialEcho(t *testing.T, addr string, cfg *Config) Identity {
	t.Helper()
	c, err := Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	msg := []byte("interop")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, msg) {
		t.Fatalf("echo: %q %v", buf, err)
	}
	return c.Identity()
}

// TestOpenSSHAgentSigner uses a stock OpenSSH ssh-agent, loaded with ssh-add, as the signer:
// the full handshake signs through the agent's plain signing request, the ticket falls back
// to the in-process cache, and ssh-keygen -Y verify accepts the exported authenticator.
func TestOpenSSHAgentSigner(t *testing.T) {
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			keyPath, pub := sshKeygen(t, dir, typ)
			sock := startOpenSSHAgent(t)
			sshAdd(t, sock, keyPath)

			ts := newTestServer(t, nil)
			ts.keys["alice"] = []ssh.PublicKey{pub}
			ts.serveEcho()
			cfg := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts}

			first := dialEcho(t, ts.addr, cfg)
			if first.Resumed || first.KeyType != pub.Type() {
				t.Fatalf("first connection: %+v", first)
			}
			second := dialEcho(t, ts.addr, cfg)
			if !second.Resumed {
				t.Fatalf("second connection not resumed through the in-process cache: %+v", second)
			}

			// The server's view of the first connection carries the authenticator.
			c, err := Dial("tcp", ts.addr, &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts, DisableResumption: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Handshake(); err != nil {
				t.Fatal(err)
			}
			stmt, sig := c.Identity().Authenticator()
			if stmt == nil {
				t.Fatal("full handshake has no authenticator")
			}
			verifyWithSSHKeygen(t, dir, "alice", pub, stmt, sig)
		})
	}
}

// verifyWithSSHKeygen checks an authenticator with the real ssh-keygen -Y verify.
func verifyWithSSHKeygen(t *testing.T, dir, user string, pub ssh.PublicKey, stmt, sig []byte) {
	t.Helper()
	signers := filepath.Join(dir, "allowed_signers")
	line := user + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + "\n"
	if err := os.WriteFile(signers, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	sigPath := filepath.Join(dir, "statement.sig")
	if err := os.WriteFile(sigPath, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", signers, "-I", user, "-n", handshake.Namespace, "-s", sigPath)
	cmd.Stdin = bytes.NewReader(stmt)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -Y verify refused the authenticator: %v: %s\nstatement:\n%s", err, out, stmt)
	}
	// A statement changed by one byte must be refused.
	bad := bytes.Replace(stmt, []byte("user "+user), []byte("user mallory"), 1)
	cmd = exec.Command("ssh-keygen", "-Y", "verify", "-f", signers, "-I", user, "-n", handshake.Namespace, "-s", sigPath)
	cmd.Stdin = bytes.NewReader(bad)
	if err := cmd.Run(); err == nil {
		t.Fatal("ssh-keygen -Y verify accepted a modified statement")
	}
}

// TestNetauthAgentWithSSHAdd serves the netauth agent, loads a key into it with the real
// ssh-add, and checks that the ticket of the first connection is cached in the agent, where
// every process of the user finds it.
func TestNetauthAgentWithSSHAdd(t *testing.T) {
	dir := t.TempDir()
	keyPath, pub := sshKeygen(t, dir, "ed25519")
	ag := agent.New(agent.Options{})
	ln, sock, err := agent.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	sshAdd(t, sock, keyPath)

	ts := newTestServer(t, nil)
	ts.keys["alice"] = []ssh.PublicKey{pub}
	ts.serveEcho()
	cfg := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts}
	if id := dialEcho(t, ts.addr, cfg); id.Resumed {
		t.Fatal("first connection resumed")
	}
	client, closer, err := agent.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if _, _, err := agent.GetTicket(client, "netauth-v1 alice@"+ts.addr+" "); err != nil {
		t.Fatalf("no ticket cached in the agent: %v", err)
	}
	// A fresh Config (as another process would have) resumes from the agent's cache.
	if id := dialEcho(t, ts.addr, &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts}); !id.Resumed {
		t.Fatal("second connection did not resume from the agent's ticket cache")
	}
}
