// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
)

// startAgentProcess builds cmd/netauth and runs `netauth agent -D` in its own process, as
// users run it, holding the given keys. It returns the agent's socket path.
func startAgentProcess(tb testing.TB, keys ...any) string {
	tb.Helper()
	dir := tb.TempDir()
	bin := filepath.Join(dir, "netauth")
	if out, err := exec.Command("go", "build", "-o", bin, "ubns.dev/netauth/cmd/netauth").CombinedOutput(); err != nil {
		tb.Fatalf("building netauth: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command(bin, "agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			ag := sshagent.NewClient(c)
			for _, k := range keys {
				if err := ag.Add(sshagent.AddedKey{PrivateKey: k}); err != nil {
					tb.Fatal(err)
				}
			}
			c.Close()
			return sock
		}
		if i == 500 {
			tb.Fatal("the agent did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkDialAgentCompare compares, round-robin in one loop, a resumed connect-send-recv
// whose client keeps its ticket in process memory and signs in process (what netauth bench's
// clients do) with the same through a real `netauth agent` process, as users run it: the
// agent holds the key and the tickets. Medians and p99 in microseconds; the ratio of each
// row's median to the in-memory row's.
func BenchmarkDialAgentCompare(b *testing.B) {
	ts, u := newBenchNetauth(b)
	serveConns(ts.ln, echo)
	key, pub := newAgentKey(b)
	sock := startAgentProcess(b, key)
	ts.keys["alice"] = append(ts.keys["alice"], pub)

	memory := ts.clientConfig(u)
	viaAgent := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts}
	agentFull := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts, DisableResumption: true}
	dial := func(cfg *Config) func() (net.Conn, error) {
		return func() (net.Conn, error) { return Dial("tcp", ts.addr, cfg) }
	}
	resumed := func(want bool) func(net.Conn) error {
		return func(c net.Conn) error {
			if c.(*Conn).Identity().Resumed != want {
				return errResumed(want)
			}
			return nil
		}
	}
	systems := []system{
		{name: "resumed-memory", dial: dial(memory), check: resumed(true)},
		{name: "resumed-agent", dial: dial(viaAgent), check: resumed(true)},
		{name: "full-agent", dial: dial(agentFull), check: resumed(false)},
	}
	compareRoundRobin(b, systems, "resumed-memory")
}

type errResumed bool

func (e errResumed) Error() string {
	if e {
		return "connection not resumed"
	}
	return "connection resumed"
}

// newAgentKey returns a new Ed25519 private key (to add to an agent) and its public key.
func newAgentKey(tb testing.TB) (ed25519.PrivateKey, ssh.PublicKey) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return priv, sp
}
