// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/proxy"
)

const openUsage = `usage: netauth open [-b] [-port port] [-idle duration] [-service name] [-key fingerprint] [-known-hosts file] [-no-resume] [user@]host:port[/path]
       netauth open -stop [user@]host:port

Give your web browser a netauth web service. netauth open starts a netauth proxy
for host:port in the background, listening on loopback TCP (see: netauth help
proxy), or finds the one it started before, and prints its local URL:
  http://127.0.0.1:PORT/path
A second netauth open for the same server prints the same URL without starting
another proxy. With -b it also opens the URL in your browser ($BROWSER, else
xdg-open).

Only processes running as your own uid may use the proxy (it looks up the owner
of every connection in the kernel's socket table), so your browser can and other
users of this machine cannot. Any page your browser shows can still make it send
requests to that URL, as to any local address, so the proxy serves HTTP (netauth
proxy -http) and refuses what other sites' pages could make your browser send: a
request whose Host is not 127.0.0.1:PORT, localhost:PORT or [::1]:PORT (DNS
rebinding), a cross-origin request other than GET, HEAD and OPTIONS, and a
cross-origin WebSocket. Cross-site GET requests (links, images) still pass: they
must not change anything (see PORTING.md, "web apps").

The web app sees the Host header the browser sends, 127.0.0.1:PORT, so the links
and redirects it builds from it lead back through the proxy. The proxy keeps its
port across restarts when it is free (the browser's origin, and with it the
site's storage, stays the same).

The proxy runs until netauth open -stop, until no browser connection has been
open for the -idle time (default 1h), or until it is killed; it logs refusals
and errors to open-HOST-PORT.log next to its state file, open-HOST-PORT.state,
in $XDG_RUNTIME_DIR/netauth (or $TMPDIR/netauth-proxy-UID). A proxy already
running is reused as it is: stop it to change its flags.

Examples:
  netauth open -b wiki.example:8443/start
  curl "$(netauth open grafana.example:3443)api/health"
  netauth open -stop wiki.example:8443

Flags:
`

// openTimeout bounds waiting for another netauth open, and for a proxy to listen or stop.
const openTimeout = 15 * time.Second

// openMain runs `netauth open`.
func openMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("netauth open")
	browser := fs.Bool("b", false, "also open the URL in the browser ($BROWSER, else xdg-open)")
	port := fs.Int("port", 0, "local port of a new proxy (default: the one it had last time if free, else any)")
	idle := fs.Duration("idle", time.Hour, "a new proxy stops once no connection has been open for this long (0: never)")
	stop := fs.Bool("stop", false, "stop the proxy netauth open started for the server")
	service := fs.String("service", "", "refuse the server unless it offers this service")
	key := fs.String("key", "", "use the agent key with this fingerprint (SHA256:...); default: try each")
	knownHosts := fs.String("known-hosts", "", "known_hosts file (default: $NETAUTH_KNOWN_HOSTS or ~/.config/netauth/known_hosts)")
	noResume := fs.Bool("no-resume", false, "make a full handshake for every connection (no tickets)")
	if code, ok := parseFlags(fs, openUsage, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return argsError(stderr, fs, "the server address ([user@]host:port[/path])")
	}
	if *idle < 0 {
		return usageError(stderr, fs.Name(), "-idle %v: want a positive duration, or 0 for never", *idle)
	}
	if *port < 0 || *port > 65535 {
		return usageError(stderr, fs.Name(), "-port %d: want a port number", *port)
	}
	t, err := parseOpenTarget(fs.Arg(0))
	if err != nil {
		return usageError(stderr, fs.Name(), "%v", err)
	}
	if *stop {
		idleSet := false
		fs.Visit(func(f *flag.Flag) { idleSet = idleSet || f.Name == "idle" })
		if t.path != "/" || *browser || *port != 0 || idleSet {
			return usageError(stderr, fs.Name(), "-stop takes only the server address ([user@]host:port)")
		}
		return stopOpen(t, stdout, stderr)
	}
	proxyArgs := []string{"-http"}
	if *idle > 0 {
		proxyArgs = append(proxyArgs, "-idle", idle.String())
	}
	for _, f := range []struct{ name, value string }{{"service", *service}, {"key", *key}, {"known-hosts", *knownHosts}} {
		if f.value != "" {
			proxyArgs = append(proxyArgs, "-"+f.name, f.value)
		}
	}
	if *noResume {
		proxyArgs = append(proxyArgs, "-no-resume")
	}
	addr, started, err := startOrFind(t, *port, proxyArgs)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	if started != nil {
		fmt.Fprintf(stderr, "netauth open: started a proxy for %s (pid %d, log %s); stop it with: netauth open -stop %s\n",
			t.remote, started.pid, started.log, t.remote)
	}
	url := "http://" + addr + t.path
	fmt.Fprintln(stdout, url)
	if *browser {
		if err := openBrowser(url); err != nil {
			return fail(stderr, fs.Name(), err)
		}
	}
	return exitOK
}

// openTarget is the argument of netauth open: the server, as netauth proxy takes it, and
// the path of the page.
type openTarget struct {
	remote string // [user@]host:port
	path   string // starts with "/"
	base   string // the name of the state files in the runtime directory, without extension
}

// parseOpenTarget splits "[user@]host:port[/path]".
func parseOpenTarget(arg string) (openTarget, error) {
	if strings.Contains(arg, "://") {
		return openTarget{}, fmt.Errorf("server address %q: want [user@]host:port[/path], without a scheme", arg)
	}
	remote, path := arg, "/"
	if i := strings.Index(arg, "/"); i >= 0 {
		remote, path = arg[:i], arg[i:]
	}
	userPart, hostport := "", remote
	if i := strings.LastIndex(remote, "@"); i >= 0 {
		userPart, hostport = remote[:i], remote[i+1:]
		if userPart == "" {
			return openTarget{}, fmt.Errorf("server address %q: empty user name before @", arg)
		}
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return openTarget{}, fmt.Errorf("server address %q: want [user@]host:port[/path]", arg)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return openTarget{}, fmt.Errorf("server address %q: port %q is not a port number", arg, port)
	}
	if strings.ContainsAny(path, " \t\r\n") {
		return openTarget{}, fmt.Errorf("path %q: white space must be escaped (%%20)", path)
	}
	base := "open-" + proxy.SafeName(host) + "-" + port
	if userPart != "" {
		base += "-as-" + proxy.SafeName(userPart)
	}
	return openTarget{remote: remote, path: path, base: base}, nil
}

// startedProxy describes a proxy netauth open started.
type startedProxy struct {
	pid int
	log string
}

// The state of the proxy netauth open starts for a server is kept in its runtime directory,
// in two files:
//
//   - open-HOST-PORT.state holds "PID ADDR\n" (ADDR is 127.0.0.1:PORT). The running proxy
//     holds an exclusive flock on it for its whole life: it inherits the descriptor the
//     netauth open that started it locked, and the kernel releases the lock when the
//     proxy exits, however it exits. A lock that can be taken means that no proxy runs, and
//     the address in the file is only the port to try again.
//   - open-HOST-PORT.lock is held by a netauth open while it starts or stops the proxy,
//     so that two of them never start two proxies, nor read a state half written.

// startOrFind returns the address of the running proxy for t, starting one if there is none.
func startOrFind(t openTarget, port int, proxyArgs []string) (addr string, started *startedProxy, err error) {
	dir, err := proxy.RuntimeDir()
	if err != nil {
		return "", nil, err
	}
	unlock, err := lockFile(filepath.Join(dir, t.base+".lock"))
	if err != nil {
		return "", nil, err
	}
	defer unlock()
	statePath := filepath.Join(dir, t.base+".state")
	state, err := os.OpenFile(statePath, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("opening the proxy's state: %w", err)
	}
	defer state.Close()
	_, last, _ := readState(state)
	if err := unix.Flock(int(state.Fd()), unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		// A proxy runs: the netauth open that started it wrote its state before letting go
		// of the start lock, which we hold now.
		if last == "" {
			return "", nil, fmt.Errorf("a proxy for %s runs but %s names no address; stop it with: netauth open -stop %s", t.remote, statePath, t.remote)
		}
		return last, nil, nil
	} else if err != nil {
		return "", nil, fmt.Errorf("locking %s: %w", statePath, err)
	}

	// No proxy runs. Choose the port: the one asked for, else the last one if it is free.
	if port == 0 && last != "" {
		if ln, err := net.Listen("tcp", last); err == nil {
			ln.Close()
			_, p, _ := net.SplitHostPort(last)
			port, _ = strconv.Atoi(p)
		}
	}
	// Until the new proxy's state is written, the file names none: a netauth open that died
	// before writing it leaves a proxy that -stop reports it cannot find.
	if err := state.Truncate(0); err != nil {
		return "", nil, fmt.Errorf("writing %s: %w", statePath, err)
	}
	logPath := filepath.Join(dir, t.base+".log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("creating the proxy's log: %w", err)
	}
	defer logFile.Close()
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("finding this program to start the proxy: %w", err)
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return "", nil, err
	}
	defer devNull.Close()
	out, err := os.CreateTemp(dir, t.base+".start-*")
	if err != nil {
		return "", nil, fmt.Errorf("starting the proxy: %w", err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	args := append([]string{"proxy", "-listen", "tcp:127.0.0.1:" + strconv.Itoa(port)}, proxyArgs...)
	cmd := exec.Command(self, append(args, t.remote)...)
	// The proxy prints its address once, to a file (not a pipe: it must not die of SIGPIPE
	// once we have gone), logs to the log file, runs in a session of its own (a terminal's
	// hangup does not stop it), and keeps the state file, locked, as descriptor 3.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, out, logFile
	cmd.ExtraFiles = []*os.File{state}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting the proxy: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	addr, err = waitListening(out.Name(), exited)
	if err != nil {
		_ = cmd.Process.Kill()
		logged, _ := os.ReadFile(logPath)
		if msg := strings.TrimSpace(string(logged)); msg != "" {
			err = fmt.Errorf("%w: %s", err, lastLine(msg))
		}
		return "", nil, err
	}
	if err := writeState(state, cmd.Process.Pid, addr); err != nil {
		_ = cmd.Process.Kill()
		return "", nil, err
	}
	// The proxy goes on alone; Wait's goroutine ends with this process.
	return addr, &startedProxy{pid: cmd.Process.Pid, log: logPath}, nil
}

// proxyListeningLine is the line netauth proxy prints once it listens.
var proxyListeningLine = regexp.MustCompile(`^netauth proxy: listening on (unix|tcp):(\S+); forwarding to \S+ as \S+$`)

// waitListening waits for the proxy to print "netauth proxy: listening on tcp:ADDR; ..." to
// the file at path, and returns ADDR.
func waitListening(path string, exited <-chan error) (string, error) {
	deadline := time.Now().Add(openTimeout)
	for {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("starting the proxy: %w", err)
		}
		if line, _, ok := strings.Cut(string(b), "\n"); ok {
			m := proxyListeningLine.FindStringSubmatch(line)
			if m == nil || m[1] != "tcp" {
				return "", fmt.Errorf("the proxy printed %q, not its address", line)
			}
			return m[2], nil
		}
		select {
		case err := <-exited:
			return "", fmt.Errorf("the proxy exited before listening (%v)", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the proxy did not listen within %v", openTimeout)
		}
	}
}

// stopOpen stops the proxy netauth open started for t, and waits until it has exited.
func stopOpen(t openTarget, stdout, stderr io.Writer) int {
	const cmd = "netauth open"
	dir, err := proxy.RuntimeDir()
	if err != nil {
		return fail(stderr, cmd, err)
	}
	unlock, err := lockFile(filepath.Join(dir, t.base+".lock"))
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer unlock()
	statePath := filepath.Join(dir, t.base+".state")
	state, err := os.OpenFile(statePath, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fail(stderr, cmd, fmt.Errorf("no proxy runs for %s", t.remote))
	} else if err != nil {
		return fail(stderr, cmd, fmt.Errorf("opening the proxy's state: %w", err))
	}
	defer state.Close()
	if err := unix.Flock(int(state.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return fail(stderr, cmd, fmt.Errorf("no proxy runs for %s", t.remote))
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		return fail(stderr, cmd, fmt.Errorf("locking %s: %w", statePath, err))
	}
	pid, addr, err := readState(state)
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%w; the proxy holding it must be stopped by hand", err))
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fail(stderr, cmd, fmt.Errorf("stopping the proxy (pid %d): %w", pid, err))
	}
	for deadline := time.Now().Add(openTimeout); ; time.Sleep(10 * time.Millisecond) {
		err := unix.Flock(int(state.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fail(stderr, cmd, fmt.Errorf("locking %s: %w", statePath, err))
		}
		if time.Now().After(deadline) {
			return fail(stderr, cmd, fmt.Errorf("the proxy (pid %d) did not stop within %v of SIGTERM", pid, openTimeout))
		}
	}
	fmt.Fprintf(stdout, "netauth open: stopped the proxy for %s on %s (pid %d)\n", t.remote, addr, pid)
	return exitOK
}

// lockFile takes an exclusive flock on the file at path, creating it, waiting for another
// holder for at most openTimeout. unlock releases it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	for deadline := time.Now().Add(openTimeout); ; time.Sleep(20 * time.Millisecond) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if err == unix.EWOULDBLOCK {
				return nil, fmt.Errorf("another netauth open has held %s for %v", path, openTimeout)
			}
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
	}
}

// maxState bounds the state file read: "PID ADDR\n" is far shorter.
const maxState = 256

// readState returns the pid and address in a state file; both are zero if it is empty.
func readState(f *os.File) (pid int, addr string, err error) {
	b := make([]byte, maxState)
	n, err := f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, "", fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	line, _, _ := strings.Cut(string(b[:n]), "\n")
	fields := strings.Fields(line)
	if len(fields) != 2 {
		return 0, "", fmt.Errorf("%s does not hold a proxy's pid and address", f.Name())
	}
	pid, err = strconv.Atoi(fields[0])
	if err != nil || pid <= 0 {
		return 0, "", fmt.Errorf("%s does not hold a proxy's pid", f.Name())
	}
	if _, _, err := net.SplitHostPort(fields[1]); err != nil {
		return 0, "", fmt.Errorf("%s does not hold a proxy's address", f.Name())
	}
	return pid, fields[1], nil
}

// writeState replaces the content of the state file.
func writeState(f *os.File, pid int, addr string) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	if _, err := f.WriteAt([]byte(fmt.Sprintf("%d %s\n", pid, addr)), 0); err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return nil
}

// openBrowser starts the user's browser on url without waiting for it: the first program
// of $BROWSER (a list separated by colons, "%s" standing for the URL), else xdg-open.
func openBrowser(url string) error {
	var argv []string
	for _, b := range strings.Split(os.Getenv("BROWSER"), ":") {
		f := strings.Fields(b)
		if len(f) == 0 {
			continue
		}
		if _, err := exec.LookPath(f[0]); err != nil {
			continue
		}
		subst := false
		for i := range f {
			if strings.Contains(f[i], "%s") {
				f[i], subst = strings.ReplaceAll(f[i], "%s", url), true
			}
		}
		if !subst {
			f = append(f, url)
		}
		argv = f
		break
	}
	if argv == nil {
		argv = []string{"xdg-open", url}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("opening the browser (%s): %w; open %s yourself", argv[0], err, url)
	}
	go func() { _ = cmd.Wait() }() // reaped if this process lives on; left to run if not
	return nil
}

// lastLine returns the last line of s.
func lastLine(s string) string {
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}
