// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth/agent"
)

// countingListener counts the connections accepted.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// testAgent is a netauth agent served in process on a Unix socket.
type testAgent struct {
	ag     *agent.Agent
	sock   string
	ln     *countingListener
	cancel context.CancelFunc
	done   chan error
}

// startTestAgent serves a new agent holding keys at sock (a new path if empty).
func startTestAgent(t *testing.T, sock string, keys ...any) *testAgent {
	t.Helper()
	if sock == "" {
		sock = filepath.Join(t.TempDir(), "agent.sock")
	}
	ag := agent.New(agent.Options{})
	for _, k := range keys {
		if err := ag.Add(sshagent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{ag: ag, sock: sock, ln: &countingListener{Listener: ln}, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- ag.Serve(ctx, ta.ln) }()
	t.Cleanup(ta.stop)
	return ta
}

func (ta *testAgent) stop() {
	if ta.cancel != nil {
		ta.cancel()
		<-ta.done
		ta.cancel = nil
	}
}

// TestAgentConnectionReused: resumed Dials through the agent do not each connect to it: the
// process keeps its agent connections open between Dials (also under concurrent Dials), and
// reconnects when the agent restarts.
func TestAgentConnectionReused(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.serveEcho()
	key, pub := newAgentKey(t)
	ts.keys["alice"] = []ssh.PublicKey{pub}
	ta := startTestAgent(t, "", key)
	cfg := &Config{User: "alice", AgentSocket: ta.sock, KnownHostsFile: ts.knownHosts}

	dialEcho(t, ts.addr, cfg) // full handshake; the agent caches the ticket
	for range 10 {
		if id := dialEcho(t, ts.addr, cfg); !id.Resumed {
			t.Fatal("a Dial through the agent did not resume")
		}
	}
	if n := ta.ln.n.Load(); n > 1 {
		t.Errorf("11 sequential Dials connected to the agent %d times, want 1", n)
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				c, err := Dial("tcp", ts.addr, cfg)
				if err != nil {
					t.Error(err)
					return
				}
				if err := c.Handshake(); err != nil {
					t.Error(err)
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	if n := ta.ln.n.Load(); n > 1+8 {
		t.Errorf("8 concurrent Dialers connected to the agent %d times, want at most 9", n)
	}

	// The agent restarts at the same path: the kept connections are dead; Dial reconnects
	// (the new agent has no ticket: a full handshake).
	ta.stop()
	ta2 := startTestAgent(t, ta.sock, key)
	if id := dialEcho(t, ts.addr, cfg); id.Resumed {
		t.Error("resumed with a ticket the restarted agent cannot hold")
	}
	if id := dialEcho(t, ts.addr, cfg); !id.Resumed {
		t.Error("not resumed through the restarted agent")
	}
	if n := ta2.ln.n.Load(); n != 1 {
		t.Errorf("the restarted agent was connected to %d times, want 1", n)
	}

	// Another socket (another agent) never gets the first one's connections.
	other := startTestAgent(t, "", key)
	cfg2 := *cfg
	cfg2.AgentSocket = other.sock
	dialEcho(t, ts.addr, &cfg2)
	if n := other.ln.n.Load(); n != 1 {
		t.Errorf("the second agent was connected to %d times, want 1", n)
	}
}
