// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"
)

// agentProc is the run's `netauth agent`: this program's agent command in a process of its
// own, as users run it, with its socket in the run's directory. The netauth rows' clients
// reach it the way netauth.Dial does by default (a Config with no Signer and no TicketCache):
// it signs their authenticators and keeps their tickets and the record of the key each
// server accepted.
type agentProc struct {
	cmd     *exec.Cmd
	sock    string
	logPath string        // its standard error, kept in a file
	done    chan struct{} // closed when the process has exited
	waitErr error         // how it exited, once done is closed
}

// agentStartTimeout bounds how long the agent may take to start listening.
const agentStartTimeout = 10 * time.Second

// startAgent runs `netauth agent -D -a SOCKET` (self's agent command, in the foreground of a
// process of its own) with its socket in dir, and adds keys to it in order, as ssh-add would.
func startAgent(self []string, dir string, keys ...any) (*agentProc, error) {
	a := &agentProc{sock: filepath.Join(dir, "agent.sock"), logPath: filepath.Join(dir, "agent.log"),
		done: make(chan struct{})}
	logf, err := os.Create(a.logPath)
	if err != nil {
		return nil, fmt.Errorf("the agent's log: %w", err)
	}
	defer logf.Close()
	args := append(append([]string(nil), self[1:]...), "agent", "-D", "-a", a.sock)
	a.cmd = exec.Command(self[0], args...)
	a.cmd.Stderr = logf // in the foreground it prints nothing to stdout; its log, with the socket, goes to logf
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the agent: %w", err)
	}
	go func() { a.waitErr = a.cmd.Wait(); close(a.done) }()
	deadline := time.Now().Add(agentStartTimeout)
	for {
		if c, err := net.Dial("unix", a.sock); err == nil {
			err = addKeys(c, keys)
			c.Close()
			if err != nil {
				a.stop()
				return nil, fmt.Errorf("adding the keys to the agent: %w%s", err, a.stderr())
			}
			return a, nil
		}
		select {
		case <-a.done:
			return nil, fmt.Errorf("the agent exited before listening: %v%s", a.waitErr, a.stderr())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.stop()
			return nil, fmt.Errorf("the agent did not listen on %s within %v%s", a.sock, agentStartTimeout, a.stderr())
		}
	}
}

// addKeys adds private keys to the agent on c.
func addKeys(c net.Conn, keys []any) error {
	ag := sshagent.NewClient(c)
	for _, k := range keys {
		if err := ag.Add(sshagent.AddedKey{PrivateKey: k}); err != nil {
			return err
		}
	}
	return nil
}

// pid returns the agent's pid.
func (a *agentProc) pid() int { return a.cmd.Process.Pid }

// stop ends the agent (SIGTERM, as `netauth agent -k` does; SIGKILL if it has not exited
// after 5 s) and waits for it.
func (a *agentProc) stop() {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

// stderr returns the end of the agent's log as a suffix for an error message.
func (a *agentProc) stderr() string {
	data, err := os.ReadFile(a.logPath)
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 4096 {
		s = s[len(s)-4096:]
	}
	if s == "" {
		return ""
	}
	return " (agent's stderr: " + s + ")"
}
