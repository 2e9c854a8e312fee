// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/trace"
)

// Bounds of an exec worker's connections.
const (
	// killGrace is how long a program whose connection is gone has between SIGTERM and
	// SIGKILL.
	killGrace = 5 * time.Second
	// lingerTime is how long, after the program has exited and its output has been sent, the
	// worker goes on reading what the client still sends, so that closing the connection does
	// not reset it before the client has read that output.
	lingerTime = 5 * time.Second
	// maxLogLine bounds one line of the program's standard error in the log; longer lines
	// are split.
	maxLogLine = 4096
	// maxLoggedLines bounds the lines of one program's standard error the worker logs; past
	// them it counts the others, and says how many when the program's standard error ends.
	// netauthd bounds the rate of the worker's records, whatever this bound.
	maxLoggedLines = 10000
)

// connVar reports whether k is one of the environment variables an exec worker sets for each
// connection's program.
func connVar(k string) bool {
	switch k {
	case "NETAUTH_USER", "NETAUTH_SERVICE", "NETAUTH_KEY_FP", "NETAUTH_KEY_TYPE",
		"NETAUTH_CLIENT", "NETAUTH_RESUMED", "NETAUTH_AUTH_TIME":
		return true
	}
	return false
}

// execWorker starts an unmodified program for each connection, with the decrypted stream as
// its standard input and output.
type execWorker struct {
	path string
	args []string
	// env is the worker's own environment without the control descriptor and the
	// per-connection variables.
	env []string
	log *slog.Logger
}

// execHandler returns the connection handler of "exec -- PROGRAM [ARG...]".
func execHandler(args []string, log *slog.Logger) (func(*netauth.Conn), error) {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return nil, errors.New("exec: no program: want exec -- PROGRAM [ARG...]")
	}
	if !filepath.IsAbs(args[0]) {
		return nil, fmt.Errorf("exec: program %q is not an absolute path", args[0])
	}
	// The program gets only its standard input, output and error, whatever this worker
	// inherited.
	if err := closeOnExecAll(); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	e := &execWorker{path: args[0], args: args[1:], env: inheritedEnv(connVar), log: log}
	return e.serve, nil
}

// inheritedEnv returns the worker's own environment for a program it starts, without the
// variables naming the worker's control and trace descriptors (handoff.Env, trace.Env), which
// are no program's business, and without those whose names skip reports.
func inheritedEnv(skip func(k string) bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == handoff.Env || k == trace.Env || skip(k) {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// environ returns the environment of the program serving c: the worker's, plus the
// connection's identity.
func (e *execWorker) environ(c *netauth.Conn) []string {
	id := c.Identity()
	client := ""
	if a := c.RemoteAddr(); a != nil {
		client = a.String()
	}
	return append(append([]string(nil), e.env...),
		"NETAUTH_USER="+id.User,
		"NETAUTH_SERVICE="+id.Service,
		"NETAUTH_KEY_FP="+id.KeyFingerprint,
		"NETAUTH_KEY_TYPE="+id.KeyType,
		"NETAUTH_CLIENT="+client,
		fmt.Sprintf("NETAUTH_RESUMED=%t", id.Resumed),
		"NETAUTH_AUTH_TIME="+id.AuthTime.UTC().Format(time.RFC3339),
	)
}

// serve runs the program for one connection: the client's bytes go to its standard input,
// which is closed when the client closes its side; its standard output goes to the client,
// whose side is closed when the program exits; its standard error goes to the worker's log,
// each line in a record of its own (logLines). If the connection fails (or is revoked), the
// program is stopped: SIGTERM, then SIGKILL after killGrace.
func (e *execWorker) serve(c *netauth.Conn) {
	client := ""
	if a := c.RemoteAddr(); a != nil {
		client = a.String()
	}
	var pipes [6]*os.File // stdin r/w, stdout r/w, stderr r/w
	for i := 0; i < len(pipes); i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			e.log.Error("exec: creating a pipe for the program", "program", e.path, "client", client, "err", err)
			closeAll(pipes[:])
			return
		}
		pipes[i], pipes[i+1] = r, w
	}
	stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW := pipes[0], pipes[1], pipes[2], pipes[3], pipes[4], pipes[5]
	cmd := exec.Command(e.path, e.args...)
	cmd.Env = e.environ(c)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	err := cmd.Start()
	// The program has its own copies of its ends, or failed to start.
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		e.log.Error("exec: the program could not be started", "program", e.path, "client", client, "err", err)
		closeAll([]*os.File{stdinW, stdoutR, stderrR})
		return
	}
	pid := cmd.Process.Pid
	e.log.Debug("exec: program started", "program", e.path, "program_pid", pid, "client", client)
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		e.logLines(pid, stderrR)
	}()

	gone := make(chan struct{}) // closed when the connection failed
	var goneOnce sync.Once
	connGone := func() { goneOnce.Do(func() { close(gone) }) }

	inDone := make(chan struct{})
	go func() {
		defer close(inDone)
		if err := copyToProgram(stdinW, c); err != nil {
			connGone()
		}
	}()
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		defer stdoutR.Close()
		if err := copyToClient(c, stdoutR); err != nil {
			connGone()
		}
	}()
	exited := make(chan struct{})
	go func() {
		select {
		case <-gone:
		case <-exited:
			return
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(killGrace):
			_ = cmd.Process.Kill()
		}
	}()

	err = cmd.Wait()
	close(exited)
	// The program's exit is logged after its last lines (unless something it started still
	// holds its standard error).
	select {
	case <-logged:
	case <-time.After(100 * time.Millisecond):
	}
	if err != nil {
		e.log.Warn("exec: program failed", "program", e.path, "program_pid", pid, "client", client, "status", exitStatus(err))
	} else {
		e.log.Debug("exec: program exited", "program", e.path, "program_pid", pid, "client", client, "status", exitStatus(nil))
	}
	// Send the program's last output (unless the connection is gone, or something the
	// program started still holds its standard output), then end the client's stream.
	select {
	case <-outDone:
	case <-gone:
		stdoutR.Close()
		<-outDone
	}
	_ = c.CloseWrite()
	select {
	case <-inDone:
	case <-time.After(lingerTime):
	}
	c.Close()
	<-inDone
}

// copyToProgram copies the client's stream to the program's standard input until the client
// closes its side, then closes it. If the program stops reading, the client's further bytes
// are read and dropped, so that the client can still read the program's output. It returns
// an error only if reading the connection failed (not a clean close).
func copyToProgram(stdin *os.File, c *netauth.Conn) error {
	buf := make([]byte, 32<<10)
	open := true
	for {
		n, err := c.Read(buf)
		if n > 0 && open {
			if _, werr := stdin.Write(buf[:n]); werr != nil {
				stdin.Close()
				open = false
			}
		}
		if err != nil {
			if open {
				stdin.Close()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// copyToClient copies the program's standard output to the client until the program closes
// it. It returns an error only if writing to the connection failed.
func copyToClient(c *netauth.Conn, stdout *os.File) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := stdout.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return nil // end of output (or the pipe was closed because the connection is gone)
		}
	}
}

// logLines logs the program's standard error (logProgramOutput).
func (e *execWorker) logLines(pid int, r *os.File) {
	defer r.Close()
	logProgramOutput(e.log, "exec: program output", pid, r)
}

// logProgramOutput logs what a program writes on r, a record msg for each line, the line
// (its bytes, as text: the program's, not records of the worker's) in the attribute "line",
// cut into pieces of at most maxLogLine bytes. Past maxLoggedLines, lines are counted, and
// their number logged at the end.
func logProgramOutput(log *slog.Logger, msg string, pid int, r io.Reader) {
	br := bufio.NewReaderSize(r, maxLogLine)
	n := 0
	cut := false // the last piece was cut at maxLogLine
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && !(cut && len(line) == 1 && line[0] == '\n') { // not the end of a cut line
			if n++; n <= maxLoggedLines {
				log.Info(msg, "program_pid", pid, "line", strings.TrimSuffix(string(line), "\n"))
			}
		}
		cut = errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !cut {
			break
		}
	}
	if n > maxLoggedLines {
		log.Warn(msg+" not logged: too many lines", "program_pid", pid, "lines", n-maxLoggedLines)
	}
}

// exitStatus says how a program Wait returned err for ended, for a person: "exited with
// status 2", "killed by signal 9 (SIGKILL)".
func exitStatus(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exited with status 0"
	case !errors.As(err, &ee):
		return err.Error()
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return "exited with status " + strconv.Itoa(ee.ExitCode())
	}
	status := "killed by signal " + strconv.Itoa(int(ws.Signal()))
	if name := unix.SignalName(ws.Signal()); name != "" {
		status += " (" + name + ")"
	}
	return status
}

// closeOnExecAll marks every descriptor above standard error close-on-exec: Go sets the flag
// on the files it opens, but not on descriptors the process inherited. Without /proc there is
// nothing to list, and nothing is done.
func closeOnExecAll() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing descriptors: %w", err)
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
