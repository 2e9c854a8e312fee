// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"ubns.dev/netauth/agent"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/testutil"
)

// TestNetauthAgentChainedToSSHAgent: a netauth agent chained to a stock OpenSSH ssh-agent
// authenticates with the ssh-agent's keys (the server knows only those), keeps the ticket in
// its own cache, and when the ssh-agent dies its own keys still work while the upstream key
// fails with an error that names it.
func TestNetauthAgentChainedToSSHAgent(t *testing.T) {
	for _, typ := range []string{"ed25519", "rsa"} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			upSock, up := testutil.StartSSHAgent(t)
			keyPath, upPub := sshKeygen(t, dir, typ)
			for deadline := time.Now().Add(10 * time.Second); ; {
				cmd := exec.Command("ssh-add", keyPath)
				cmd.Env = append(cmd.Environ(), "SSH_AUTH_SOCK="+upSock)
				if cmd.Run() == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("ssh-add to ssh-agent failed")
				}
				time.Sleep(10 * time.Millisecond)
			}

			ag := agent.New(agent.Options{Upstream: upSock})
			ownKey, ownPub := newAgentKey(t)
			if err := ag.Add(sshagent.AddedKey{PrivateKey: ownKey}); err != nil {
				t.Fatal(err)
			}
			ln, sock, err := agent.Listen(dir)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- ag.Serve(ctx, ln) }()
			t.Cleanup(func() { cancel(); <-done })

			ts := newTestServer(t, nil)
			ts.keys["alice"] = []ssh.PublicKey{upPub}
			ts.keys["bob"] = []ssh.PublicKey{ownPub}
			ts.serveEcho()

			// The server knows only the upstream key: the agent's own key is tried and
			// refused, then the upstream key signs.
			cfg := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts}
			first := dialEcho(t, ts.addr, cfg)
			if first.Resumed || first.KeyFingerprint != keys.Fingerprint(upPub) {
				t.Fatalf("first connection: %+v; want a full handshake with the upstream key %s", first, keys.Fingerprint(upPub))
			}
			client, closer, err := agent.Dial(sock)
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			if _, _, err := agent.GetTicket(client, "netauth-v1 alice@"+ts.addr+" "); err != nil {
				t.Fatalf("the ticket is not in the netauth agent's cache: %v", err)
			}
			if id := dialEcho(t, ts.addr, &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts}); !id.Resumed {
				t.Fatal("second connection did not resume from the netauth agent's cache")
			}

			// The upstream dies.
			up.Process.Kill()
			up.Wait()
			if id := dialEcho(t, ts.addr, &Config{User: "bob", AgentSocket: sock, KnownHostsFile: ts.knownHosts, DisableResumption: true}); id.KeyFingerprint != keys.Fingerprint(ownPub) {
				t.Errorf("upstream gone: the agent's own key: %+v", id)
			}
			_, err = Dial("tcp", ts.addr, &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts, DisableResumption: true, KeyFingerprint: keys.Fingerprint(upPub)})
			if err == nil || !strings.Contains(err.Error(), keys.Fingerprint(upPub)) {
				t.Errorf("upstream gone: Dial with the upstream key: %v; want an error naming the key", err)
			}
			if _, err := ag.Sign(upPub, []byte("x")); err == nil || !strings.Contains(err.Error(), upSock) {
				t.Errorf("upstream gone: Sign with the upstream key: %v; want an error naming %s", err, upSock)
			}
		})
	}
}
