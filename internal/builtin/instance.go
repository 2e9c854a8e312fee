// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/policy"
)

// The instance worker (mode instance) runs, as the user, the user's own instance of an
// unmodified server, and relays each of the user's connections to it:
//
//	instance -listen socket-activation|unix|tcp -start-timeout D [-host-netns INODE] -- PROGRAM [ARG...]
//
// It starts PROGRAM before it takes any connection, waits until the program accepts
// connections (at most D), tells netauthd so (handoff.TypeReady), and then serves. When
// netauthd tells it to exit (idle timeout, revocation, reload), it stops the program: SIGTERM,
// then SIGKILL after killGrace, and SIGKILL to anything else left in its process group (the
// program's children). When the program exits by itself, the worker stops taking connections
// and exits once those it has end.

// shimEnv, set to "1" in the environment of the worker's own program started under the name
// (argv[0]) shimName, makes it the socket-activation shim (runShim) instead of whatever it is.
// Both are needed: an environment variable alone can be carried into someone else's run of
// netauthd or netauth (a sudo rule that keeps the environment), the name its caller chooses.
const (
	shimEnv  = "NETAUTH_INSTANCE_SHIM"
	shimName = "netauth-instance-shim"
)

func init() {
	if os.Getenv(shimEnv) == "1" && len(os.Args) > 1 && os.Args[0] == shimName && filepath.IsAbs(os.Args[1]) {
		runShim()
	}
}

// runShim replaces the process with the program its arguments name (os.Args[1:]), with
// LISTEN_PID set to its pid, which execve keeps: the systemd socket-activation protocol wants
// LISTEN_PID to be the program's own pid, which the worker that starts it cannot know before
// it exists. It never returns.
func runShim() {
	os.Unsetenv(shimEnv)
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "netauth instance shim: no program")
		os.Exit(127)
	}
	env := append(os.Environ(), "LISTEN_PID="+strconv.Itoa(os.Getpid()))
	err := syscall.Exec(os.Args[1], os.Args[1:], env)
	fmt.Fprintf(os.Stderr, "netauth instance shim: executing %s: %v\n", os.Args[1], err)
	os.Exit(127)
}

// probeInterval is how often the worker tries to connect to a starting instance.
const probeInterval = 20 * time.Millisecond

// instanceWorker is the worker of mode instance.
type instanceWorker struct {
	method  string
	timeout time.Duration
	// hostNetns, for method tcp, is the inode of netauthd's network namespace: the worker
	// refuses to start the program in it.
	hostNetns uint64
	path      string
	args      []string
	log       *slog.Logger

	dir             string // the private directory of the Unix socket
	network, target string // where the instance is reached
	cmd             *exec.Cmd
	exited          chan struct{} // closed when the program has been reaped
	status          string
	logged          sync.WaitGroup // the program's output
}

// parseInstance parses the arguments of the instance worker.
func parseInstance(args []string, log *slog.Logger) (*instanceWorker, error) {
	fs := flag.NewFlagSet("instance", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	method := fs.String("listen", "", "")
	timeout := fs.Duration("start-timeout", policy.DefaultInstanceStartTimeout, "")
	netns := fs.Uint64("host-netns", 0, "")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return nil, errors.New("instance: no program: want instance -listen METHOD -- PROGRAM [ARG...]")
	}
	if !filepath.IsAbs(rest[0]) {
		return nil, fmt.Errorf("instance: program %q is not an absolute path", rest[0])
	}
	if _, err := policy.InstanceArgs(*method, rest[1:], "/socket", "1"); err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	if *timeout <= 0 {
		return nil, fmt.Errorf("instance: start timeout %v", *timeout)
	}
	if *method == policy.InstanceTCP && *netns == 0 {
		return nil, errors.New("instance: -listen tcp needs -host-netns, the network namespace the program must not run in")
	}
	return &instanceWorker{method: *method, timeout: *timeout, hostNetns: *netns, path: rest[0], args: rest[1:], log: log, exited: make(chan struct{})}, nil
}

// runInstance runs the instance worker and returns its exit status.
func runInstance(args []string, stderr io.Writer) int {
	log := NewLogger(stderr)
	iw, err := parseInstance(args, log)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n%s\n", err, Usage)
		return 2
	}
	fd, err := strconv.Atoi(os.Getenv(handoff.Env))
	if err != nil || fd < 3 {
		fmt.Fprintln(stderr, "the built-in service \"instance\" runs only as a netauthd worker")
		return 2
	}
	if err := closeOnExecAll(); err != nil {
		log.Error("instance: the worker cannot start", "err", err)
		return 1
	}
	defer iw.cleanup()
	if err := iw.start(); err != nil {
		log.Error("instance: the program could not be started", "program", iw.path, "err", err)
		return 1
	}
	if err := iw.waitAccepting(); err != nil {
		log.Error("instance: the program does not accept connections; stopping it", "program", iw.path, "program_pid", iw.cmd.Process.Pid, "err", err)
		iw.stop()
		return 1
	}
	if err := handoff.SendReady(fd); err != nil {
		log.Error("instance: telling netauthd the instance is ready", "err", err)
		iw.stop()
		return 1
	}
	log.Info("instance: program accepts connections", "program", iw.path, "program_pid", iw.cmd.Process.Pid, "listen", iw.method)
	ln, err := netauth.Listen("", "", nil)
	if err != nil {
		log.Error("the worker cannot take connections", "service", "instance", "err", err)
		iw.stop()
		return 1
	}
	go func() {
		// A program that exits ends the worker: netauthd starts a new one (and instance) for
		// the user's next connection.
		<-iw.exited
		ln.Close()
	}()
	serveErr := ln.Serve(iw.serve)
	iw.stop()
	if serveErr != nil {
		log.Error("the worker stopped serving", "service", "instance", "err", serveErr)
		return 1
	}
	return 0
}

// environ returns the program's environment: the worker's (inheritedEnv), without the
// socket-activation variables, which the worker sets itself when the program gets a socket.
func (iw *instanceWorker) environ() []string {
	return inheritedEnv(func(k string) bool {
		switch k {
		case "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", shimEnv:
			return true
		}
		return false
	})
}

// start prepares where the program listens and starts it.
func (iw *instanceWorker) start() error {
	dir, err := os.MkdirTemp("", "netauth-instance-")
	if err != nil {
		return fmt.Errorf("creating the instance's private directory: %w", err)
	}
	iw.dir = dir // mode 0700: only the user (and root) may reach the socket in it
	socket := filepath.Join(dir, "socket")
	port := ""
	env := iw.environ()
	var extra []*os.File
	path, args := iw.path, iw.args
	switch iw.method {
	case policy.InstanceUnix:
		iw.network, iw.target = "unix", socket
	case policy.InstanceTCP:
		if err := checkPrivateNetns(iw.hostNetns); err != nil {
			return err
		}
		if port, err = freePort(); err != nil {
			return err
		}
		iw.network, iw.target = "tcp", net.JoinHostPort("127.0.0.1", port)
	case policy.InstanceSocketActivation:
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
		if err != nil {
			return fmt.Errorf("creating the instance's socket: %w", err)
		}
		ln.SetUnlinkOnClose(false)
		f, err := ln.File()
		ln.Close()
		if err != nil {
			return fmt.Errorf("creating the instance's socket: %w", err)
		}
		defer f.Close()
		extra = []*os.File{f} // descriptor 3
		service := os.Getenv("NETAUTH_SERVICE")
		if service == "" {
			service = "netauth"
		}
		env = append(env, "LISTEN_FDS=1", "LISTEN_FDNAMES="+service, shimEnv+"=1")
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the worker's own program for the socket-activation shim: %w", err)
		}
		path, args = self, append([]string{iw.path}, iw.args...)
		iw.network, iw.target = "unix", socket
	}
	if iw.method != policy.InstanceSocketActivation {
		if args, err = policy.InstanceArgs(iw.method, iw.args, socket, port); err != nil {
			return err
		}
	}
	cmd := exec.Command(path, args...)
	if iw.method == policy.InstanceSocketActivation {
		cmd.Args[0] = shimName
	}
	cmd.Env = env
	cmd.ExtraFiles = extra
	// The program stays in the worker's process group (and session), so that netauthd's kill
	// of the worker's group reaches it and its children; it dies with the worker.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// The program writes its output into pipes of its own (not exec's, whose Wait waits
	// until they are read to their end): a child that keeps them open, after the program
	// exited or was killed, must not keep Wait, and with it stop, from returning.
	var pipes [4]*os.File // stdout r/w, stderr r/w
	for i := 0; i < len(pipes); i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(pipes[:])
			return fmt.Errorf("creating a pipe for the program's output: %w", err)
		}
		pipes[i], pipes[i+1] = r, w
	}
	cmd.Stdout, cmd.Stderr = pipes[1], pipes[3]
	err = cmd.Start()
	pipes[1].Close() // the program has its own copies of the write ends, or failed to start
	pipes[3].Close()
	if err != nil {
		closeAll([]*os.File{pipes[0], pipes[2]})
		return err
	}
	iw.cmd = cmd
	pid := cmd.Process.Pid
	iw.log.Debug("instance: program started", "program", iw.path, "program_pid", pid)
	for _, r := range []*os.File{pipes[0], pipes[2]} {
		iw.logged.Add(1)
		go func() {
			defer iw.logged.Done()
			defer r.Close()
			logProgramOutput(iw.log, "instance: program output", pid, r)
		}()
	}
	go func() {
		err := cmd.Wait()
		iw.status = exitStatus(err)
		close(iw.exited)
	}()
	return nil
}

// waitAccepting waits until a connection to the instance succeeds, for at most the start
// timeout, or until the program exits.
func (iw *instanceWorker) waitAccepting() error {
	deadline := time.Now().Add(iw.timeout)
	var last error
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout(iw.network, iw.target, time.Until(deadline))
		if err == nil {
			c.Close()
			return nil
		}
		last = err
		select {
		case <-iw.exited:
			return fmt.Errorf("the program %s before it accepted a connection", iw.status)
		case <-time.After(probeInterval):
		}
	}
	return fmt.Errorf("no connection to %s:%s within %v (instance-start-timeout): %w", iw.network, iw.target, iw.timeout, last)
}

// serve relays one connection to the instance, passing on each side's close of its sending
// half. If either connection fails, both are closed.
func (iw *instanceWorker) serve(c *netauth.Conn) {
	bc, err := net.DialTimeout(iw.network, iw.target, dialTimeout)
	if err != nil {
		iw.log.Warn("instance: connecting to the instance failed", "user", c.Identity().User, "err", err)
		return
	}
	defer bc.Close()
	relay(c, bc)
}

// stop stops the program (SIGTERM, then SIGKILL after killGrace), and then everything else in
// the worker's process group: what the program started.
func (iw *instanceWorker) stop() {
	if iw.cmd == nil {
		return
	}
	select {
	case <-iw.exited:
	default:
		_ = iw.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-iw.exited:
		case <-time.After(killGrace):
			_ = iw.cmd.Process.Kill()
			<-iw.exited
		}
	}
	killGroupButSelf()
	// What the program and its children wrote last is logged, once they are gone; a
	// descendant outside the process group that still holds the pipes is not waited for.
	logged := make(chan struct{})
	go func() { iw.logged.Wait(); close(logged) }()
	select {
	case <-logged:
	case <-time.After(time.Second):
	}
	iw.log.Info("instance: program stopped", "program", iw.path, "program_pid", iw.cmd.Process.Pid, "status", iw.status)
}

// cleanup removes the private directory.
func (iw *instanceWorker) cleanup() {
	if iw.dir != "" {
		os.RemoveAll(iw.dir)
	}
}

// freePort returns a free TCP port on 127.0.0.1 (in the worker's own network namespace, which
// only the worker and the program use).
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port on the private loopback: %w", err)
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}
