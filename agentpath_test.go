// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth/agent"
)

// testAgent is a netauth agent served in process on a Unix socket.
type testAgent struct {
	ag     *agent.Agent
	sock   string
	ln     *testutil.CountingListener
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
	ta := &testAgent{ag: ag, sock: sock, ln: &testutil.CountingListener{Listener: ln}, cancel: cancel, done: make(chan error, 1)}
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
	if n := ta.ln.N.Load(); n > 1 {
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
	if n := ta.ln.N.Load(); n > 1+8 {
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
	if n := ta2.ln.N.Load(); n != 1 {
		t.Errorf("the restarted agent was connected to %d times, want 1", n)
	}

	// Another socket (another agent) never gets the first one's connections.
	other := startTestAgent(t, "", key)
	cfg2 := *cfg
	cfg2.AgentSocket = other.sock
	dialEcho(t, ts.addr, &cfg2)
	if n := other.ln.N.Load(); n != 1 {
		t.Errorf("the second agent was connected to %d times, want 1", n)
	}
}

// verdictGate is a TCP proxy that, while closed, holds back everything the server sends
// after the client's second flight (the Verdict of a full handshake and what follows).
type verdictGate struct {
	ln     net.Listener
	target string
	closed atomic.Bool
	open   chan struct{}
}

func newVerdictGate(t *testing.T, target string) *verdictGate {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	g := &verdictGate{ln: ln, target: target, open: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go g.proxy(c)
		}
	}()
	return g
}

func (g *verdictGate) proxy(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", g.target)
	if err != nil {
		return
	}
	defer s.Close()
	gated := g.closed.Load()
	var fromServer, hold atomic.Bool
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if fromServer.Load() && gated {
					hold.Store(true) // the client's second flight: hold the server's answer
				}
				s.Write(buf[:n])
			}
			if err != nil {
				s.(*net.TCPConn).CloseWrite()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			if hold.Load() {
				<-g.open
			}
			fromServer.Store(true)
			c.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// TestRememberedKeyPipelines: with two keys in the agent, of which the server accepts only
// the second, the first connection tries both (and waits for each Verdict); later full
// handshakes start with the key accepted last time and pipeline data behind it: the data
// reaches the server while its Verdict is still held back on the way to the client.
func TestRememberedKeyPipelines(t *testing.T) {
	ts := newTestServer(t, nil)
	refused, _ := newAgentKey(t)
	accepted, pub := newAgentKey(t)
	ts.keys["alice"] = []ssh.PublicKey{pub}
	ta := startTestAgent(t, "", refused, accepted)
	got := make(chan string, 16)
	go func() {
		for {
			c, err := ts.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4)
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				got <- string(buf)
				c.Write(buf)
			}()
		}
	}()
	g := newVerdictGate(t, ts.addr)
	cfg := &Config{User: "alice", AgentSocket: ta.sock, KnownHostsFile: ts.knownHosts, DisableResumption: true}
	if err := Trust(ts.knownHosts, g.ln.Addr().String(), ts.hostPub); err != nil {
		t.Fatal(err)
	}

	// First connection: no remembered key; the refused key is tried first.
	c, err := Dial("tcp", g.ln.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("one!"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-got
	if k := c.Identity().Key; k == nil || !bytes.Equal(k.Marshal(), pub.Marshal()) {
		t.Fatalf("authenticated with %v, want the accepted key", k)
	}

	// Later full handshake: the Verdict is held back; the data must arrive anyway.
	g.closed.Store(true)
	dialed := make(chan error, 1)
	var c2 *Conn
	go func() {
		var err error
		c2, err = Dial("tcp", g.ln.Addr().String(), cfg)
		if err == nil {
			_, err = c2.Write([]byte("two!"))
		}
		dialed <- err
	}()
	select {
	case s := <-got:
		if s != "two!" {
			t.Fatalf("server read %q", s)
		}
	case <-time.After(5 * time.Second):
		close(g.open)
		t.Fatal("the data did not reach the server before the Verdict reached the client: a round trip more")
	}
	close(g.open)
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c2, buf); err != nil || string(buf) != "two!" {
		t.Fatalf("read %q, %v", buf, err)
	}
	c2.Close()
}
