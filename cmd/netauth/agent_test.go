// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"ubns.dev/netauth/agent"
)

var shLines = regexp.MustCompile(`^NETAUTH_AUTH_SOCK=(\S+); export NETAUTH_AUTH_SOCK;\nNETAUTH_AGENT_PID=(\d+); export NETAUTH_AGENT_PID;\necho Agent pid (\d+);\n$`)

// readListening reads the foreground agent's standard error up to the line
// that logs its socket, and returns the socket and pid it names.
func readListening(t *testing.T, br *bufio.Reader) (string, int) {
	t.Helper()
	re := regexp.MustCompile(`msg="agent listening" NETAUTH_AUTH_SOCK=(\S+) pid=(\d+)$`)
	type found struct {
		m    []string
		err  error
		seen string
	}
	ch := make(chan found, 1)
	go func() {
		var seen strings.Builder
		for {
			line, err := br.ReadString('\n')
			seen.WriteString(line)
			if err != nil {
				ch <- found{err: err, seen: seen.String()}
				return
			}
			if m := re.FindStringSubmatch(strings.TrimSuffix(line, "\n")); m != nil {
				ch <- found{m: m}
				return
			}
		}
	}()
	select {
	case f := <-ch:
		if f.err != nil {
			t.Fatalf("reading the agent's standard error: %v (so far %q)", f.err, f.seen)
		}
		pid, _ := strconv.Atoi(f.m[2])
		return f.m[1], pid
	case <-time.After(10 * time.Second):
		t.Fatal("the agent logged no socket within 10s")
	}
	panic("unreachable")
}

// parseShLines returns the socket path and pid from the sh commands the
// agent printed.
func parseShLines(t *testing.T, out string) (string, int) {
	t.Helper()
	m := shLines.FindStringSubmatch(out)
	if m == nil || m[2] != m[3] {
		t.Fatalf("agent output does not match the sh commands:\n%s", out)
	}
	pid, _ := strconv.Atoi(m[2])
	return m[1], pid
}

// privateDir returns a fresh directory with mode 0700.
func privateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkAgent checks that an agent with the ticket cache answers at path.
func checkAgent(t *testing.T, path string) {
	t.Helper()
	c, closer, err := agent.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if err := agent.PutTicket(c, "id", []byte("ticket"), time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("PutTicket: %v", err)
	}
	if tk, _, err := agent.GetTicket(c, "id"); err != nil || string(tk) != "ticket" {
		t.Fatalf("GetTicket = %q, %v", tk, err)
	}
}

func waitGone(t *testing.T, paths ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range paths {
		for {
			if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still exists after the agent stopped", p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestAgentForeground runs `netauth agent -D -a path`, uses it, and stops it
// with `netauth agent -k` (which signals this process; the agent catches it).
func TestAgentForeground(t *testing.T) {
	sock := filepath.Join(privateDir(t), "agent.sock")
	pr, pw := io.Pipe()
	stdout := &testutil.Buffer{}
	code := make(chan int, 1)
	go func() {
		code <- agentMain([]string{"-D", "-s", "-a", sock}, stdout, pw)
		pw.Close()
	}()

	// It logs its socket, then serves.
	br := bufio.NewReader(pr)
	path, pid := readListening(t, br)
	go io.Copy(io.Discard, br)
	if path != sock || pid != os.Getpid() {
		t.Errorf("logged socket %s pid %d, want %s pid %d", path, pid, sock, os.Getpid())
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v; want a socket with mode 0600", fi, err)
	}
	if b, err := os.ReadFile(sock + ".pid"); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		t.Errorf("pid file: %q, %v", b, err)
	}
	checkAgent(t, sock)

	// A second agent cannot take the same socket path.
	var errOut bytes.Buffer
	if rc := agentMain([]string{"-D", "-a", sock}, io.Discard, &errOut); rc != 1 || !strings.Contains(errOut.String(), "already exists") {
		t.Errorf("second agent on the same path: exit %d, stderr %q", rc, errOut.String())
	}

	// Stop it as a user would.
	var killOut, killErr bytes.Buffer
	kill := agentCommand{stdout: &killOut, stderr: &killErr, getenv: func(k string) string {
		if k == agent.SockEnv {
			return sock
		}
		return ""
	}}
	if rc := kill.run(context.Background(), []string{"-k"}); rc != 0 {
		t.Fatalf("agent -k: exit %d: %s", rc, killErr.String())
	}
	want := fmt.Sprintf("unset NETAUTH_AUTH_SOCK;\nunset NETAUTH_AGENT_PID;\necho Agent pid %d killed;\n", pid)
	if killOut.String() != want {
		t.Errorf("agent -k printed %q, want %q", killOut.String(), want)
	}
	select {
	case rc := <-code:
		if rc != 0 {
			t.Errorf("agent -D exited %d", rc)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent -D did not stop on SIGTERM")
	}
	waitGone(t, sock, sock+".pid")
	// In the foreground there is nothing for a shell to eval.
	if stdout.String() != "" {
		t.Errorf("agent -D printed to standard output: %q", stdout.String())
	}
}

// TestAgentForegroundDefaultSocket runs `netauth agent -D` with its own
// private socket directory and stops it through its context.
func TestAgentForegroundDefaultSocket(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	stdout := &testutil.Buffer{}
	cmd := agentCommand{stdout: stdout, stderr: pw, getenv: func(k string) string {
		if k == "SHELL" {
			return "/bin/tcsh"
		}
		return ""
	}}
	go func() {
		code <- cmd.run(ctx, []string{"-D"})
		pw.Close()
	}()
	br := bufio.NewReader(pr)
	path, _ := readListening(t, br)
	go io.Copy(io.Discard, br)
	dir := filepath.Dir(path)
	if filepath.Dir(dir) != tmp || !strings.HasPrefix(filepath.Base(dir), "netauth-") || filepath.Base(path) != "agent."+strconv.Itoa(os.Getpid()) {
		t.Errorf("socket %s, want %s/netauth-*/agent.%d", path, tmp, os.Getpid())
	}
	checkAgent(t, path)
	cancel()
	select {
	case rc := <-code:
		if rc != 0 {
			t.Errorf("agent exited %d", rc)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop")
	}
	waitGone(t, path, path+".pid", dir)
	if stdout.String() != "" {
		t.Errorf("agent -D ($SHELL=/bin/tcsh) printed to standard output: %q", stdout.String())
	}
}

// TestAgentChildProcess is not a test: TestAgentBackground starts the test
// binary with it selected as the background agent.
func TestAgentChildProcess(t *testing.T) {
	if os.Getenv(agentChildEnv) != "1" {
		t.Skip("the background agent process of TestAgentBackground")
	}
	os.Exit(agentMain(flag.Args(), os.Stdout, os.Stderr))
}

// TestAgentBackground starts the agent in the background as `netauth agent`
// does by default, uses it, and kills it with -k.
func TestAgentBackground(t *testing.T) {
	tmp := t.TempDir()
	restrict := filepath.Join(tmp, "restrict")
	if err := os.WriteFile(restrict, []byte("# no restrictions yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp) // inherited by the agent
	var stdout, stderr bytes.Buffer
	cmd := agentCommand{
		exe:       os.Args[0],
		childArgs: []string{"-test.run=^TestAgentChildProcess$", "--"},
		stdout:    &stdout,
		stderr:    &stderr,
		getenv:    func(string) string { return "" },
	}
	if rc := cmd.run(context.Background(), []string{"-restrict", restrict}); rc != 0 {
		t.Fatalf("agent: exit %d: %s", rc, stderr.String())
	}
	path, pid := parseShLines(t, stdout.String())
	t.Cleanup(func() {
		if proc, err := os.FindProcess(pid); err == nil {
			proc.Kill()
		}
	})
	if pid == os.Getpid() {
		t.Fatal("the agent runs in the test process, not in the background")
	}
	// It runs in a session of its own.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 4 || fields[3] != strconv.Itoa(pid) {
		t.Errorf("agent session id = %v, want its pid %d (setsid)", fields[3], pid)
	}
	checkAgent(t, path)

	var killOut, killErr bytes.Buffer
	kill := agentCommand{stdout: &killOut, stderr: &killErr, getenv: func(k string) string {
		switch k {
		case agent.SockEnv:
			return path
		case "SHELL":
			return "/bin/csh"
		}
		return ""
	}}
	if rc := kill.run(context.Background(), []string{"-k"}); rc != 0 {
		t.Fatalf("agent -k: exit %d: %s", rc, killErr.String())
	}
	want := fmt.Sprintf("unsetenv NETAUTH_AUTH_SOCK;\nunsetenv NETAUTH_AGENT_PID;\necho Agent pid %d killed;\n", pid)
	if killOut.String() != want {
		t.Errorf("agent -k printed %q, want %q", killOut.String(), want)
	}
	waitGone(t, path, path+".pid", filepath.Dir(path))
}

// TestAgentBackgroundError checks that a background agent that cannot start
// reports why, through the parent.
func TestAgentBackgroundError(t *testing.T) {
	dir := privateDir(t)
	var stderr bytes.Buffer
	cmd := agentCommand{
		exe:       os.Args[0],
		childArgs: []string{"-test.run=^TestAgentChildProcess$", "--"},
		stdout:    io.Discard,
		stderr:    &stderr,
		getenv:    func(string) string { return "" },
	}
	// The parent's checks pass, but the path is too long for a Unix
	// socket, so the background agent fails to listen.
	long := filepath.Join(dir, strings.Repeat("d", 200))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(long, "sock")
	if rc := cmd.run(context.Background(), []string{"-a", sock}); rc != 1 || !strings.Contains(stderr.String(), "listen") {
		t.Errorf("agent with an unusable socket path: exit %d, stderr %q", rc, stderr.String())
	}
}

func TestAgentUsageErrors(t *testing.T) {
	dir := privateDir(t)
	taken := filepath.Join(dir, "taken")
	if err := os.WriteFile(taken, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	badRestrict := filepath.Join(dir, "restrict")
	if err := os.WriteFile(badRestrict, []byte("# header\nSHA256:nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"-nosuchflag"}, 2, "flag provided but not defined"},
		{[]string{"-s", "-c"}, 2, "mutually exclusive"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"-k", "-D"}, 2, "cannot be combined"},
		{[]string{"-k"}, 1, "NETAUTH_AUTH_SOCK is not set"},
		{[]string{"-D", "-a", taken}, 1, "already exists"},
		{[]string{"-D", "-a", filepath.Join(open, "sock")}, 1, "writable by group or others"},
		{[]string{"-D", "-a", filepath.Join(dir, "missing", "sock")}, 1, "socket directory"},
		{[]string{"-D", "-restrict", badRestrict}, 1, "line 2"},
		{[]string{"-D", "-restrict", filepath.Join(dir, "missing")}, 1, "no such file"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		cmd := agentCommand{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
		rc := cmd.run(context.Background(), tt.args)
		if rc != tt.code || !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("agent %q: exit %d, stderr %q; want exit %d and %q", tt.args, rc, stderr.String(), tt.code, tt.stderr)
		}
		if stdout.Len() != 0 {
			t.Errorf("agent %q printed to stdout: %q", tt.args, stdout.String())
		}
	}
}

func TestAgentKillChecksPID(t *testing.T) {
	// A pid file that does not match the process behind the socket.
	sock := filepath.Join(privateDir(t), "agent.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	fg := agentCommand{stdout: io.Discard, stderr: pw, getenv: func(string) string { return "" }}
	go func() {
		code <- fg.run(ctx, []string{"-D", "-a", sock})
		pw.Close()
	}()
	br := bufio.NewReader(pr)
	readListening(t, br)
	go io.Copy(io.Discard, br)
	if err := os.WriteFile(sock+".pid", []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	kill := agentCommand{stdout: io.Discard, stderr: &stderr, getenv: func(k string) string {
		if k == agent.SockEnv {
			return sock
		}
		return ""
	}}
	if rc := kill.run(context.Background(), []string{"-k"}); rc != 1 || !strings.Contains(stderr.String(), "does not hold a pid") {
		t.Errorf("-k with pid file 1: exit %d, stderr %q", rc, stderr.String())
	}
	if err := os.WriteFile(sock+".pid", []byte("999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if rc := kill.run(context.Background(), []string{"-k"}); rc != 1 || !strings.Contains(stderr.String(), "not killing") {
		t.Errorf("-k with a wrong pid: exit %d, stderr %q", rc, stderr.String())
	}
	cancel()
	if rc := <-code; rc != 0 {
		t.Errorf("agent exited %d", rc)
	}
}

func TestShellCommands(t *testing.T) {
	got := shellCommands("/tmp/netauth-1/agent.5", 7, false)
	want := "NETAUTH_AUTH_SOCK=/tmp/netauth-1/agent.5; export NETAUTH_AUTH_SOCK;\nNETAUTH_AGENT_PID=7; export NETAUTH_AGENT_PID;\necho Agent pid 7;\n"
	if got != want {
		t.Errorf("sh:\n%q\nwant\n%q", got, want)
	}
	got = shellCommands("/tmp/netauth-1/agent.5", 7, true)
	want = "setenv NETAUTH_AUTH_SOCK /tmp/netauth-1/agent.5;\nsetenv NETAUTH_AGENT_PID 7;\necho Agent pid 7;\n"
	if got != want {
		t.Errorf("csh:\n%q\nwant\n%q", got, want)
	}
	if got := shellQuote("/home/a b/it's"); got != `'/home/a b/it'\''s'` {
		t.Errorf("shellQuote = %s", got)
	}
}
