// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/testutil"
)

// stockAgent runs OpenSSH's ssh-agent holding a new Ed25519 key, and
// returns its socket and the key's authorized_keys line.
func stockAgent(t *testing.T) (string, string) {
	t.Helper()
	for _, n := range []string{"ssh-agent", "ssh-add", "ssh-keygen"} {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not installed", n)
		}
	}
	dir := privateDir(t)
	sock, _ := testutil.StartSSHAgent(t)
	key := filepath.Join(dir, "id")
	testutil.SSHKeygen(t, "-q", "-t", "ed25519", "-N", "", "-f", key)
	if out, err := sshAdd(sock, key); err != nil {
		t.Fatalf("ssh-add to ssh-agent: %v\n%s", err, out)
	}
	pub := testutil.ReadPublicKey(t, key+".pub")
	return sock, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

func sshAdd(sock string, args ...string) (string, error) {
	cmd := exec.Command("ssh-add", args...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// runForegroundAgent runs `netauth agent -D args...` with the environment
// env until the test ends, and returns its socket.
func runForegroundAgent(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	cmd := agentCommand{stdout: io.Discard, stderr: pw, getenv: func(k string) string { return env[k] }}
	go func() {
		code <- cmd.run(ctx, append([]string{"-D"}, args...))
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-code:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	br := bufio.NewReader(pr)
	path, _ := readListening(t, br)
	go io.Copy(io.Discard, br)
	return path
}

// TestAgentUpstreamFlag: `netauth agent` chains to $SSH_AUTH_SOCK by
// default, to the -upstream socket, and to nothing with -upstream none.
func TestAgentUpstreamFlag(t *testing.T) {
	upSock, upLine := stockAgent(t)
	tmp := privateDir(t)
	t.Setenv("TMPDIR", tmp)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		listed bool
	}{
		{"default $SSH_AUTH_SOCK", map[string]string{"SSH_AUTH_SOCK": upSock}, nil, true},
		{"-upstream", nil, []string{"-upstream", upSock}, true},
		{"-upstream none", map[string]string{"SSH_AUTH_SOCK": upSock}, []string{"-upstream", "none"}, false},
		{"no $SSH_AUTH_SOCK", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := runForegroundAgent(t, tc.env, tc.args...)
			checkAgent(t, sock) // the ticket cache is the netauth agent's own
			out, _ := sshAdd(sock, "-L")
			if got := strings.Contains(out, upLine); got != tc.listed {
				t.Errorf("ssh-add -L lists the upstream key: %v, want %v\n%s", got, tc.listed, out)
			}
		})
	}
}

// TestAgentUpstreamLoop: an agent told to chain to its own socket refuses
// to start, saying why.
func TestAgentUpstreamLoop(t *testing.T) {
	sock := filepath.Join(privateDir(t), "agent.sock")
	var stderr bytes.Buffer
	cmd := agentCommand{stdout: io.Discard, stderr: &stderr, getenv: func(string) string { return "" }}
	rc := cmd.run(context.Background(), []string{"-D", "-a", sock, "-upstream", sock})
	if rc != 1 || !strings.Contains(stderr.String(), "loop") {
		t.Errorf("agent chained to itself: exit %d, stderr %q; want exit 1 and a loop error", rc, stderr.String())
	}
	waitGone(t, sock)
}

// TestAgentBackgroundUpstream: the background agent chains to the upstream
// the starting command resolved, and warns (and still starts) when it cannot
// be reached.
func TestAgentBackgroundUpstream(t *testing.T) {
	upSock, upLine := stockAgent(t)
	t.Setenv("TMPDIR", privateDir(t))
	t.Setenv("SSH_AUTH_SOCK", "") // the child must not take it from its environment
	start := func(env map[string]string, args ...string) (string, string) {
		var stdout, stderr bytes.Buffer
		cmd := agentCommand{
			exe:       os.Args[0],
			childArgs: []string{"-test.run=^TestAgentChildProcess$", "--"},
			stdout:    &stdout,
			stderr:    &stderr,
			getenv:    func(k string) string { return env[k] },
		}
		if rc := cmd.run(context.Background(), args); rc != 0 {
			t.Fatalf("agent: exit %d: %s", rc, stderr.String())
		}
		path, pid := parseShLines(t, stdout.String())
		t.Cleanup(func() {
			if proc, err := os.FindProcess(pid); err == nil {
				proc.Kill()
			}
		})
		return path, stderr.String()
	}
	path, warn := start(map[string]string{"SSH_AUTH_SOCK": upSock})
	if warn != "" {
		t.Errorf("agent with a working upstream printed %q", warn)
	}
	if out, _ := sshAdd(path, "-L"); !strings.Contains(out, upLine) {
		t.Errorf("background agent: ssh-add -L does not list the upstream key:\n%s", out)
	}
	gone := filepath.Join(privateDir(t), "gone.sock")
	path, warn = start(nil, "-upstream", gone)
	if !strings.Contains(warn, "warning upstream agent not usable") || !strings.Contains(warn, gone) {
		t.Errorf("agent with an unreachable upstream: stderr %q; want a warning naming %s", warn, gone)
	}
	checkAgent(t, path)
}
