// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"
)

// execServer serves the exec worker running the test binary in mode.
func execServer(t *testing.T, mode string) *server {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NETAUTH_CONTROL_FD", "99") // must not reach the program
	t.Setenv("NETAUTH_KEY_FP", "stale")  // replaced by the connection's
	stderr := &testutil.Buffer{}
	h, err := execHandler([]string{"--", self, programArg, mode}, NewLogger(stderr))
	if err != nil {
		t.Fatal(err)
	}
	os.Unsetenv("NETAUTH_CONTROL_FD") // this test's server is in-process, not a worker
	s := newServer(t, h)
	s.stderr = stderr
	return s
}

// TestExecStreamAndEnvironment: the client's bytes reach the program's standard input, which
// ends when the client closes its side; the program's output reaches the client, whose
// stream ends when the program exits; the program gets the identity in its environment,
// only standard input, output and error as descriptors, and its standard error goes to the
// worker's log, a record a line naming its pid.
func TestExecStreamAndEnvironment(t *testing.T) {
	s := execServer(t, "report")
	for i, wantResumed := range []string{"false", "true"} {
		c := s.dial(t)
		msg := strings.Repeat("hello netauth\n", 5000) // more than a pipe buffer
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("connection %d: reading the program's output: %v", i, err)
		}
		var rep programReport
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("connection %d: output %q: %v", i, out, err)
		}
		if rep.Stdin != msg {
			t.Errorf("connection %d: the program read %d bytes, want the %d sent", i, len(rep.Stdin), len(msg))
		}
		id := c.Identity()
		want := map[string]string{
			"NETAUTH_USER": "alice", "NETAUTH_SERVICE": "svc", "NETAUTH_KEY_FP": id.KeyFingerprint,
			"NETAUTH_KEY_TYPE": "ssh-ed25519", "NETAUTH_CLIENT": c.LocalAddr().String(), "NETAUTH_RESUMED": wantResumed,
		}
		for k, v := range want {
			if rep.Env[k] != v {
				t.Errorf("connection %d: %s=%q, want %q", i, k, rep.Env[k], v)
			}
		}
		if at, err := time.Parse(time.RFC3339, rep.Env["NETAUTH_AUTH_TIME"]); err != nil || time.Since(at) > time.Minute {
			t.Errorf("connection %d: NETAUTH_AUTH_TIME=%q: %v", i, rep.Env["NETAUTH_AUTH_TIME"], err)
		}
		if _, ok := rep.Env["NETAUTH_CONTROL_FD"]; ok {
			t.Errorf("the program got NETAUTH_CONTROL_FD: %v", sortedKeys(rep.Env))
		}
		// Pipes as 0-2; beyond them only what the program's own runtime opened (the
		// directory listing itself, cgroup limits).
		for _, fd := range rep.FDs {
			num, target, _ := strings.Cut(fd, "=")
			n, _ := strconv.Atoi(num)
			switch {
			case (num == "0" || num == "1" || num == "2") && strings.HasPrefix(target, "pipe:"):
			case n > 2 && (target == "" || strings.HasPrefix(target, "/proc/") || strings.HasPrefix(target, "/sys/fs/cgroup/")):
			default:
				t.Errorf("connection %d: the program holds descriptor %s (all: %v)", i, fd, rep.FDs)
			}
		}
		line := "read " + strconv.Itoa(len(msg)) + " bytes"
		waitFor(t, 5*time.Second, "the program's standard error is not in the worker's log: "+s.stderr.String(), func() bool {
			return s.hasRecord(t, "INFO", "exec: program output", map[string]any{"program_pid": rep.PID, "line": line})
		})
	}
}

// TestExecConnectionLost: when the connection breaks, the program is stopped even if it
// ignores the end of its input.
func TestExecConnectionLost(t *testing.T) {
	s := execServer(t, "wait")
	c := s.dial(t)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("program said %q", line)
	}
	c.NetConn().Close() // no close record: the connection is cut, not closed
	waitFor(t, 10*time.Second, "the program still runs after its connection was cut", func() bool {
		return syscall.Kill(pid, 0) != nil
	})
	waitFor(t, 5*time.Second, "no exit status logged: "+s.stderr.String(), func() bool {
		return s.hasRecord(t, "WARN", "exec: program failed", map[string]any{"program_pid": pid, "status": "killed by signal 15 (SIGTERM)"})
	})
}

// TestExecProgramExits: a program that exits without reading ends the client's stream; its
// exit status is logged.
func TestExecProgramExits(t *testing.T) {
	s := execServer(t, "exit")
	c := s.dial(t)
	_, _ = io.WriteString(c, "ignored\n")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if out, err := io.ReadAll(c); err != nil || len(out) != 0 {
		t.Fatalf("read %q, %v; want a clean end of stream", out, err)
	}
	waitFor(t, 5*time.Second, "exit status not logged: "+s.stderr.String(), func() bool {
		return s.hasRecord(t, "WARN", "exec: program failed", map[string]any{"status": "exited with status 3"})
	})
}

// TestExecProgramOutputIsText: the worker logs slog JSON records, and the program's standard
// error (the user's text) only inside them, as the attribute "line": a line that looks like a
// record is not one of the worker's (netauthd parses the worker's lines as records, and would
// log a forged one at its level, with its attributes), and a long line is cut into pieces
// of at most maxLogLine bytes. The program's lines were written as "exec[PID]: TEXT", which
// netauthd logged as text, and a program's record-like line was the worker's record.
func TestExecProgramOutputIsText(t *testing.T) {
	s := execServer(t, "forge")
	c := s.dial(t)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the program's exit not logged: "+s.stderr.String(), func() bool {
		return s.hasRecord(t, "DEBUG", "exec: program exited", map[string]any{"status": "exited with status 0"})
	})
	forged := `{"level":"ERROR","msg":"forged","user":"root"}`
	if !s.hasRecord(t, "INFO", "exec: program output", map[string]any{"line": forged}) {
		t.Fatalf("the program's record-like line is not a line of a worker's record: %s", s.stderr.String())
	}
	pieces := 0
	for _, r := range s.records(t) {
		if r["line"] == "" {
			t.Fatalf("an empty line logged (the newline ending the long line): %v", r)
		}
		if r["msg"] == "forged" || r["user"] != nil {
			t.Fatalf("the program's line became a record: %v", r)
		}
		if line, _ := r["line"].(string); strings.HasPrefix(line, "z") {
			if len(line) > maxLogLine || strings.Trim(line, "z") != "" {
				t.Fatalf("a piece of the long line of %d bytes: %.40q", len(line), line)
			}
			pieces++
		}
	}
	if pieces != 3 {
		t.Fatalf("the line of %d bytes logged in %d pieces, want 3", 3*maxLogLine, pieces)
	}
}

func TestExecStartFailure(t *testing.T) {
	stderr := &testutil.Buffer{}
	h, err := execHandler([]string{"--", "/nonexistent/program"}, NewLogger(stderr))
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, h)
	s.stderr = stderr
	c := s.dial(t)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if out, err := io.ReadAll(c); len(out) != 0 {
		t.Fatalf("read %q, %v", out, err)
	}
	if !s.hasRecord(t, "ERROR", "exec: the program could not be started", map[string]any{"program": "/nonexistent/program"}) {
		t.Fatalf("stderr: %q", stderr.String())
	}
}

func TestRunUsage(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"nope", nil, `unknown built-in service "nope"`},
		{"whoami", []string{"x"}, `the built-in service "whoami" takes no arguments`},
		{"exec", nil, "exec: no program"},
		{"exec", []string{"--", "imap"}, `exec: program "imap" is not an absolute path`},
		{"backend", nil, "backend: want one address"},
		{"backend", []string{"tcp:example.org:1"}, `backend: policy: backend "tcp:example.org:1": host "example.org"`},
	} {
		var stderr strings.Builder
		if code := Run(tt.name, tt.args, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "built-in services:") {
			t.Errorf("Run(%s, %q) = %d, %q; want 2 and %q", tt.name, tt.args, code, stderr.String(), tt.want)
		}
	}
	var stderr strings.Builder
	if code := Run("echo", nil, &stderr); code != 2 || !strings.Contains(stderr.String(), "runs only as a netauthd worker") {
		t.Errorf("Run(echo) outside a worker = %d, %q", code, stderr.String())
	}
}
