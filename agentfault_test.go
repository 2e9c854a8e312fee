// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/agent"
	"ubns.dev/netauth/internal/testutil"
)

// checkAgentHint checks that a Dial error names the agent socket and says what to do: start
// `netauth agent` and add a key with ssh-add.
func checkAgentHint(t *testing.T, err error, sock string, took time.Duration) {
	t.Helper()
	if err == nil {
		t.Fatal("Dial succeeded without an agent")
	}
	msg := err.Error()
	t.Logf("Dial: %v", err)
	for _, want := range []string{"netauth agent", "ssh-add"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say what to do (lacks %q)", msg, want)
		}
	}
	if sock != "" && !strings.Contains(msg, sock) {
		t.Errorf("error %q does not name the agent socket %s", msg, sock)
	}
	if took > 2*time.Second {
		t.Errorf("Dial took %v to report the missing agent", took)
	}
}

// TestAgentMissing: Dial with no agent at the configured socket, or none configured at all,
// fails at once with an error saying how to start one.
func TestAgentMissing(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.serveEcho()

	sock := filepath.Join(t.TempDir(), "no-agent.sock")
	start := time.Now()
	_, err := Dial("tcp", ts.addr, &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts})
	checkAgentHint(t, err, sock, time.Since(start))

	t.Setenv(agent.SockEnv, "")
	t.Setenv(agent.SSHSockEnv, "")
	start = time.Now()
	_, err = Dial("tcp", ts.addr, &Config{User: "alice", KnownHostsFile: ts.knownHosts})
	checkAgentHint(t, err, "", time.Since(start))
}

// TestAgentKilledBetweenDials: the agent serves a first connection and dies before the
// second: a stock ssh-agent killed with SIGKILL (its socket left behind: connection refused)
// and a netauth agent stopped (its socket removed). The second Dial fails at once with an
// error saying what to do, even though a ticket from the first connection is cached.
func TestAgentKilledBetweenDials(t *testing.T) {
	t.Run("ssh-agent", func(t *testing.T) {
		if _, err := exec.LookPath("ssh-agent"); err != nil {
			t.Skip("OpenSSH's ssh-agent is not installed (CI installs it)")
		}
		dir := t.TempDir()
		keyPath, pub := sshKeygen(t, dir, "ed25519")
		sock, cmd := testutil.StartSSHAgent(t)
		sshAdd(t, sock, keyPath)
		ts := newTestServer(t, nil)
		ts.keys["alice"] = []ssh.PublicKey{pub}
		ts.serveEcho()
		cfg := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts, TicketCache: NewMemoryTicketCache(4)}
		dialEcho(t, ts.addr, cfg)

		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if !fileExists(sock) {
			t.Fatal("the killed agent's socket is gone; this case needs it left behind")
		}
		start := time.Now()
		_, err := Dial("tcp", ts.addr, cfg)
		checkAgentHint(t, err, sock, time.Since(start))
	})

	t.Run("netauth-agent", func(t *testing.T) {
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
		stop := func() { cancel(); <-done }
		sshAdd(t, sock, keyPath)
		ts := newTestServer(t, nil)
		ts.keys["alice"] = []ssh.PublicKey{pub}
		ts.serveEcho()
		cfg := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts}
		dialEcho(t, ts.addr, cfg)

		stop()
		start := time.Now()
		_, err = Dial("tcp", ts.addr, cfg)
		checkAgentHint(t, err, sock, time.Since(start))
	})
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestAgentSilent: an agent that accepts the connection and never answers (hung, or waiting on
// something that never comes) fails the Dial by the handshake's deadline, and a request made
// outside the handshake by agentCallTimeout; neither holds the caller for ever.
func TestAgentSilent(t *testing.T) {
	sock := fakeAgent(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // reads every request, answers none
	ts := newTestServer(t, nil)
	ts.serveEcho()
	agentConns.closeIdle()
	defer agentConns.closeIdle()

	for _, tc := range []struct {
		name             string
		handshake, calls time.Duration
	}{
		{"handshake deadline", 300 * time.Millisecond, agentCallTimeout},
		{"agentCallTimeout", time.Hour, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(d time.Duration) { agentCallTimeout = d }(agentCallTimeout)
			agentCallTimeout = tc.calls
			cfg := &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts, HandshakeTimeout: tc.handshake}
			start := time.Now()
			c, err := Dial("tcp", ts.addr, cfg)
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatal("Dial through a silent agent succeeded")
			}
			t.Logf("Dial: %v (after %v)", err, took)
			if took > 5*time.Second {
				t.Fatalf("Dial took %v with the shorter of the two bounds at 300 ms", took)
			}
		})
	}
}

// fakeAgent listens on a Unix socket in a temporary directory and serves each connection with
// serve (then closes it) until the test ends. It returns the socket's path.
func fakeAgent(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { serve(c); c.Close() }()
		}
	}()
	return sock
}
