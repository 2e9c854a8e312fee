// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ubns.dev/netauth/agent"
)

// agentChildEnv marks the background agent process that `netauth agent`
// starts; its status pipe is file descriptor 3.
const agentChildEnv = "NETAUTH_AGENT_CHILD"

// agentPIDEnv names the variable the agent's shell commands set to its pid.
const agentPIDEnv = "NETAUTH_AGENT_PID"

// agentStartTimeout bounds how long `netauth agent` waits for the background
// agent to report that its socket is ready.
const agentStartTimeout = 10 * time.Second

const agentUsage = `usage: netauth agent [-D] [-s | -c] [-a socket] [-restrict file] [-upstream socket | none]
       netauth agent -k [-s | -c]

Start the netauth agent: an SSH agent (ssh-add and ssh work with it) that
also signs netauth authenticators and caches the resumption tickets netauth
servers issue, so that all of your processes can resume sessions. Like
ssh-agent, it starts in the background and prints shell commands that set
NETAUTH_AUTH_SOCK and NETAUTH_AGENT_PID:

    eval "$(netauth agent)"
    SSH_AUTH_SOCK=$NETAUTH_AUTH_SOCK ssh-add    # add your keys to it

Only processes of the agent's own user (and root) are served. netauth
clients use $NETAUTH_AUTH_SOCK, or else $SSH_AUTH_SOCK (a stock ssh-agent
works too, without host restrictions; clients then share tickets through
$XDG_RUNTIME_DIR/netauth/tickets).

The -restrict file limits the server hosts each key may authenticate to
through netauth, one key per line, '#' starts a comment:

    <key fingerprint SHA256:...> <host key fingerprint> [<host key fingerprint>...]

A restricted key still signs SSH logins, but it signs netauth statements
only for the listed host keys.

The agent chains to the agent you already run (-upstream; by default the
$SSH_AUTH_SOCK it started with): it lists that agent's keys and
certificates after its own, and passes signature requests for them on
unchanged, so security keys, gpg-agent, password managers and ssh-add -c
confirmation keep working. ssh-add adds, removes and locks only the netauth
agent's own keys. An upstream that leads back to this agent is refused; one
that is gone or does not answer costs only its own keys.

Flags:
`

// agentCommand runs `netauth agent`. Its fields say how to start the
// background agent process and where its environment comes from.
type agentCommand struct {
	// exe and childArgs are the program and the arguments, before the
	// user's own, that start a copy of this command in the background.
	exe       string
	childArgs []string
	stdout    io.Writer
	stderr    io.Writer
	getenv    func(string) string
}

// agentFlags are the parsed command-line flags of `netauth agent`.
type agentFlags struct {
	foreground bool
	sock       string
	sh, csh    bool
	restrict   string
	upstream   string
	kill       bool
}

// upstreamNone is the -upstream value that turns chaining off.
const upstreamNone = "none"

// agentMain runs `netauth agent` with the arguments that follow "agent" and
// returns the process exit status.
func agentMain(args []string, stdout, stderr io.Writer) int {
	cmd := agentCommand{
		exe:       "/proc/self/exe",
		childArgs: []string{"agent"},
		stdout:    stdout,
		stderr:    stderr,
		getenv:    os.Getenv,
	}
	return cmd.run(context.Background(), args)
}

func (c *agentCommand) run(ctx context.Context, args []string) int {
	fs := newFlags("netauth agent")
	var f agentFlags
	fs.BoolVar(&f.foreground, "D", false, "stay in the foreground (do not fork), logging to standard error (the socket too) and printing no shell commands; stop with SIGINT or SIGTERM")
	fs.StringVar(&f.sock, "a", "", "bind the agent socket at `path` (its directory must exist and not be group or world writable)\n(default: a new private directory netauth-* in $TMPDIR or /tmp)")
	fs.BoolVar(&f.sh, "s", false, "print Bourne shell commands (default unless $SHELL ends in csh)")
	fs.BoolVar(&f.csh, "c", false, "print C shell commands (default if $SHELL ends in csh)")
	fs.StringVar(&f.restrict, "restrict", "", "read per-key host restrictions from `file`")
	fs.StringVar(&f.upstream, "upstream", "", "chain to the agent at `socket` (\"none\": do not chain)\n(default: $SSH_AUTH_SOCK when the agent starts)")
	fs.BoolVar(&f.kill, "k", false, "kill the agent named by $NETAUTH_AUTH_SOCK")
	if code, ok := parseFlags(fs, agentUsage, args, c.stdout, c.stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(c.stderr, fs.Name(), "unexpected argument %q", fs.Arg(0))
	}
	if f.sh && f.csh {
		return usageError(c.stderr, fs.Name(), "-s and -c are mutually exclusive")
	}
	csh := f.csh || !f.sh && strings.HasSuffix(c.getenv("SHELL"), "csh")

	if f.kill {
		if f.foreground || f.sock != "" || f.restrict != "" || f.upstream != "" {
			return usageError(c.stderr, fs.Name(), "-k cannot be combined with -D, -a, -restrict or -upstream")
		}
		if err := c.killAgent(csh); err != nil {
			return fail(c.stderr, fs.Name(), err)
		}
		return 0
	}
	switch f.upstream {
	case "":
		f.upstream = c.getenv(agent.SSHSockEnv)
	case upstreamNone:
		f.upstream = ""
	}
	if f.upstream != "" {
		// The background agent changes to /.
		abs, err := filepath.Abs(f.upstream)
		if err != nil {
			return fail(c.stderr, fs.Name(), fmt.Errorf("upstream: %w", err))
		}
		f.upstream = abs
	}
	if c.getenv(agentChildEnv) == "1" {
		return c.runChild(ctx, f)
	}
	// Check what can be checked here, where the user sees the errors.
	if _, err := loadRestrictions(f.restrict); err != nil {
		return fail(c.stderr, fs.Name(), err)
	}
	if f.sock != "" {
		if _, err := checkSocketPath(f.sock); err != nil {
			return fail(c.stderr, fs.Name(), err)
		}
	}
	if f.foreground {
		return c.runForeground(ctx, f)
	}
	// The background agent chains to the upstream resolved here, from this
	// command's environment.
	up := f.upstream
	if up == "" {
		up = upstreamNone
	}
	return c.daemonize(append(slices.Clip(args), "-upstream", up), csh)
}

// runForeground serves in this process until SIGINT or SIGTERM (or ctx
// ends). It prints no shell commands (nothing is left running for a shell
// to find): it logs its socket and pid to standard error.
func (c *agentCommand) runForeground(ctx context.Context, f agentFlags) int {
	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	inst, err := startAgent(f, log)
	if err != nil {
		return fail(c.stderr, "netauth agent", err)
	}
	defer inst.cleanup()
	served, warn, err := inst.serve(ctx)
	if err != nil {
		return fail(c.stderr, "netauth agent", err)
	}
	if warn != nil {
		log.Warn("upstream agent not usable now; its keys are missing until it is", "err", warn)
	}
	if up := inst.agent.Upstream(); up != "" {
		log.Info("agent chained", "upstream", up)
	}
	log.Info("agent listening", agent.SockEnv, inst.path, "pid", os.Getpid())
	if err := <-served; err != nil {
		return fail(c.stderr, "netauth agent", err)
	}
	log.Info("agent stopped")
	return 0
}

// serve serves the agent until ctx is done; the channel gets Serve's result.
// Serving, it checks the upstream agent (which may reach this one): an upstream
// that chains back to this agent stops it and is the error; an upstream not
// usable now is only the warning.
func (inst *agentInstance) serve(ctx context.Context) (served <-chan error, warn, err error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		done <- inst.agent.Serve(ctx, inst.ln)
	}()
	if err := inst.agent.CheckUpstream(); errors.Is(err, agent.ErrUpstreamLoop) {
		cancel()
		<-done
		return nil, nil, err
	} else if err != nil {
		warn = err
	}
	return done, warn, nil
}

// daemonize starts the background agent, waits until its socket is ready
// and prints the shell commands.
func (c *agentCommand) daemonize(args []string, csh bool) int {
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(c.stderr, "netauth agent: %v\n", err)
		return 1
	}
	defer r.Close()
	cmd := exec.Command(c.exe, append(append([]string(nil), c.childArgs...), args...)...)
	cmd.Args[0] = os.Args[0] // what ps shows
	cmd.Env = append(os.Environ(), agentChildEnv+"=1")
	cmd.ExtraFiles = []*os.File{w} // file descriptor 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Stdin, Stdout and Stderr stay nil: the child gets /dev/null.
	err = cmd.Start()
	w.Close()
	if err != nil {
		fmt.Fprintf(c.stderr, "netauth agent: starting the agent: %v\n", err)
		return 1
	}
	br := bufio.NewReader(io.LimitReader(r, 64<<10))
	deadline := time.Now().Add(agentStartTimeout)
	status, err := readStatus(r, br, deadline)
	for err == nil && strings.HasPrefix(status, "warning ") {
		fmt.Fprintf(c.stderr, "netauth agent: %s\n", status)
		status, err = readStatus(r, br, deadline)
	}
	if err != nil {
		cmd.Process.Kill()
		if werr := cmd.Wait(); werr != nil {
			err = fmt.Errorf("%w (agent: %v)", err, werr)
		}
		fmt.Fprintf(c.stderr, "netauth agent: starting the agent: %v\n", err)
		return 1
	}
	if msg, ok := strings.CutPrefix(status, "error "); ok {
		cmd.Wait()
		fmt.Fprintf(c.stderr, "netauth agent: %s\n", msg)
		return 1
	}
	path, ok := strings.CutPrefix(status, "ok ")
	if !ok {
		cmd.Process.Kill()
		cmd.Wait()
		fmt.Fprintf(c.stderr, "netauth agent: starting the agent: unexpected status %q\n", status)
		return 1
	}
	fmt.Fprint(c.stdout, shellCommands(path, cmd.Process.Pid, csh))
	cmd.Process.Release()
	return 0
}

// readStatus reads a status line the background agent writes to its status
// pipe: "warning ..." lines (to show the user), then "ok <socket>" or
// "error <message>".
func readStatus(r *os.File, br *bufio.Reader, deadline time.Time) (string, error) {
	if err := r.SetReadDeadline(deadline); err != nil {
		return "", err
	}
	line, err := br.ReadString('\n')
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "", fmt.Errorf("agent not ready after %v", agentStartTimeout)
	}
	if err != nil {
		return "", errors.New("agent exited before its socket was ready")
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// runChild is the background agent: it sets up the socket, reports on the
// status pipe (file descriptor 3), and serves until SIGINT or SIGTERM.
func (c *agentCommand) runChild(ctx context.Context, f agentFlags) int {
	status := os.NewFile(3, "status")
	var st syscall.Stat_t
	if status == nil || syscall.Fstat(3, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		fmt.Fprintf(c.stderr, "netauth agent: %s is set but there is no status pipe; unset it\n", agentChildEnv)
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	signal.Ignore(syscall.SIGHUP)

	log := backgroundLogger()
	inst, err := startAgent(f, log)
	if err != nil {
		fmt.Fprintf(status, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		status.Close()
		return 1
	}
	defer inst.cleanup()
	served, warn, err := inst.serve(ctx)
	if err != nil {
		fmt.Fprintf(status, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		status.Close()
		return 1
	}
	if warn != nil {
		fmt.Fprintf(status, "warning upstream agent not usable now (its keys are missing until it is): %s\n", strings.ReplaceAll(warn.Error(), "\n", " "))
	}
	fmt.Fprintf(status, "ok %s\n", inst.path)
	status.Close()
	// Do not keep the starting directory busy.
	os.Chdir("/")
	if err := <-served; err != nil {
		log.Error("agent failed", "err", err)
		return 1
	}
	return 0
}

// backgroundLogger logs warnings (such as refused connections) to syslog
// when it is reachable, and discards records otherwise.
func backgroundLogger() *slog.Logger {
	w, err := syslog.New(syslog.LOG_AUTH|syslog.LOG_WARNING, "netauth-agent")
	if err != nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// agentInstance is a configured agent with its listening socket.
type agentInstance struct {
	agent   *agent.Agent
	ln      *net.UnixListener
	path    string
	cleanup func()
}

// startAgent loads the restrictions, creates the socket and writes the pid
// file next to it.
func startAgent(f agentFlags, log *slog.Logger) (*agentInstance, error) {
	restrictions, err := loadRestrictions(f.restrict)
	if err != nil {
		return nil, err
	}
	var (
		ln   *net.UnixListener
		path string
		dir  string // the private directory Listen made, if any
	)
	if f.sock == "" {
		ln, path, err = agent.Listen("")
		if err != nil {
			return nil, err
		}
		dir = filepath.Dir(path)
	} else {
		ln, path, err = listenAt(f.sock)
		if err != nil {
			return nil, err
		}
	}
	pidFile := path + ".pid"
	cleanup := func() {
		ln.Close() // removes the socket
		os.Remove(pidFile)
		if dir != "" {
			os.Remove(dir)
		}
	}
	if err := writePIDFile(pidFile, os.Getpid()); err != nil {
		cleanup()
		return nil, err
	}
	a := agent.New(agent.Options{Logger: log, Restrictions: restrictions, Upstream: f.upstream, Socket: path})
	return &agentInstance{agent: a, ln: ln, path: path, cleanup: cleanup}, nil
}

// loadRestrictions reads the -restrict file, if one is named.
func loadRestrictions(path string) (map[string][]string, error) {
	if path == "" {
		return nil, nil
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("restrictions: %w", err)
	}
	defer file.Close()
	r, err := agent.ParseRestrictions(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// checkSocketPath returns the absolute form of an -a path after checking
// that nothing exists there and that its directory exists, belongs to this
// user or root, and is not writable by group or others.
func checkSocketPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("socket path: %w", err)
	}
	if strings.ContainsAny(abs, "\n\x00") {
		return "", fmt.Errorf("socket path %q contains a newline or NUL", abs)
	}
	dir := filepath.Dir(abs)
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("socket directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("socket directory %s is writable by group or others (mode %v); use a private directory", dir, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() && st.Uid != 0 {
		return "", fmt.Errorf("socket directory %s belongs to uid %d, not to you or root", dir, st.Uid)
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", fmt.Errorf("%s already exists (is an agent running there?)", abs)
	}
	return abs, nil
}

// listenAt listens on a Unix socket at the -a path, readable and writable
// only by this user.
func listenAt(path string) (*net.UnixListener, string, error) {
	abs, err := checkSocketPath(path)
	if err != nil {
		return nil, "", err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: abs, Net: "unix"})
	if err != nil {
		return nil, "", fmt.Errorf("listen: %w", err)
	}
	if err := os.Chmod(abs, 0o600); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("listen: %w", err)
	}
	return ln, abs, nil
}

// writePIDFile records the agent's pid next to its socket, for -k.
func writePIDFile(path string, pid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d\n", pid)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// killAgent stops the agent named by $NETAUTH_AUTH_SOCK: it reads the pid
// file next to the socket, checks that the process listening on the socket
// has that pid, and sends it SIGTERM.
func (c *agentCommand) killAgent(csh bool) error {
	sock := c.getenv(agent.SockEnv)
	if sock == "" {
		return fmt.Errorf("%s is not set; no agent to kill", agent.SockEnv)
	}
	b, err := os.ReadFile(sock + ".pid")
	if err != nil {
		return fmt.Errorf("reading the agent's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("pid file %s.pid does not hold a pid", sock)
	}
	// Make sure the pid is the agent's and not a recycled one.
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("agent at %s is not reachable: %w", sock, err)
	}
	cred, err := agent.PeerCred(conn)
	conn.Close()
	if err != nil {
		return err
	}
	if int(cred.Pid) != pid {
		return fmt.Errorf("the agent at %s is pid %d, but its pid file says %d; not killing", sock, cred.Pid, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("killing agent pid %d: %w", pid, err)
	}
	if csh {
		fmt.Fprintf(c.stdout, "unsetenv %s;\nunsetenv %s;\necho Agent pid %d killed;\n", agent.SockEnv, agentPIDEnv, pid)
	} else {
		fmt.Fprintf(c.stdout, "unset %s;\nunset %s;\necho Agent pid %d killed;\n", agent.SockEnv, agentPIDEnv, pid)
	}
	return nil
}

// shellCommands returns the commands that point a shell at the agent.
func shellCommands(path string, pid int, csh bool) string {
	q := shellQuote(path)
	if csh {
		return fmt.Sprintf("setenv %s %s;\nsetenv %s %d;\necho Agent pid %d;\n", agent.SockEnv, q, agentPIDEnv, pid, pid)
	}
	return fmt.Sprintf("%s=%s; export %s;\n%s=%d; export %s;\necho Agent pid %d;\n",
		agent.SockEnv, q, agent.SockEnv, agentPIDEnv, pid, agentPIDEnv, pid)
}

// shellQuote quotes s for sh and csh unless it needs no quoting.
func shellQuote(s string) string {
	safe := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("/._-+:@%,", r))
	}) < 0
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
