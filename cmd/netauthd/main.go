// SPDX-License-Identifier: Apache-2.0

// Command netauthd is the netauth server daemon: it authenticates each connection, applies the
// administrator's policy, and hands the connection to a worker running as the user.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ubns.dev/netauth/internal/builtin"
	"ubns.dev/netauth/internal/daemon"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/logging"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/sdnotify"
	"ubns.dev/netauth/internal/trace"
	"ubns.dev/netauth/internal/version"
)

const usage = `usage: netauthd [-config file | -listen addr] [-check] [-log-level level] [-trace file]
       netauthd -T [-config file]          (the effective configuration, defaults included)
       netauthd -status [-control path]    (services, workers and counters of the running netauthd)
       netauthd -trace-report file         (the per-step table of a trace)
       netauthd -version                   (also --version)
       netauthd -worker SERVICE [ARG...]   (a built-in worker, started by netauthd)

netauthd authenticates every connection to the services in its configuration
with the user's SSH key, applies the configured policy (which users may use
which service), logs each decision to a signed audit log, and hands the
connection, already encrypted, to a worker process running as that user:
started on the user's first connection, reused for the next ones.

Without -config, netauthd runs its embedded default, the built-in whoami service
on 127.0.0.1:4000 (-listen moves it; with -config, the file says where each
service listens, and -listen is refused). As root: for every user with a key in
/etc/netauth/authorized_keys/<user> or ~/.ssh/authorized_keys, each served by a
worker running as them, with a host key generated in /var/lib/netauth and the
audit log in /var/log/netauth. As another user: for that user alone, with the
keys in their ~/.ssh/authorized_keys, the host key
~/.config/netauth/host_ed25519_key and the audit log
~/.local/state/netauth/audit.log.

netauthd runs as two processes. netauthd itself, the monitor, keeps the keys and
makes every decision, and never reads from a client socket: network bytes are
parsed by its other half, netauthd-acceptor, which must be installed next to it
or in ../libexec/netauth from its directory (/usr/libexec/netauth for
/usr/sbin/netauthd; build it with CGO_ENABLED=0) and confines itself with no_new_privs, Landlock and
seccomp. Both processes are non-dumpable. As root, netauthd runs the acceptor as
the system account "netauth", which must exist and serve nothing else; netauthd
refuses to start as root without it. Create it with:
  useradd --system --no-create-home --shell /usr/sbin/nologin netauth
As another user, netauthd cannot change uids: the acceptor and the workers run
as that user, so it serves only that user, and the acceptor is kept from the
user's files and processes only by its sandbox. See docs/SECURITY.md.

Signals: SIGUSR1 reopens the audit log and does nothing else (after rotation by
rename: logrotate's postrotate sends it; the new file continues the chain of the
old one). SIGHUP reopens the audit log too (and retries one that could not be
written) and reloads the configuration (a broken file is refused and the
running configuration kept); SIGTERM and SIGINT stop the daemon.

-trace FILE appends to FILE, for every connection, when each step of its way
through the acceptor, the monitor and the worker happened (off by default; see
docs/BENCHMARKS.md); -trace-report FILE prints the median time of each step.

Exit status: 0 after a clean stop (and for -check of a good configuration), 1 on
failure (a configuration with errors, a daemon that cannot start), 2 for a usage
error (a wrong command line).

Flags:
`

// workerFlag marks a worker process running a built-in service.
const workerFlag = "-worker"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) >= 2 && args[0] == workerFlag {
		return builtin.Run(args[1], args[2:], stderr)
	}
	fs := flag.NewFlagSet("netauthd", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // -h and errors are reported below
	fs.Usage = func() {}
	configPath := fs.String("config", "", "configuration file (see docs/CONFIG.md); default: the embedded default")
	check := fs.Bool("check", false, "validate the configuration, print every problem with its line, and exit")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text (with syslog priorities and no times when stderr is the journal) or json")
	addr := fs.String("listen", "127.0.0.1:4000", "address of the embedded default's whoami service")
	tracePath := fs.String("trace", "", "append every connection's steps, with their times, to this file")
	traceReport := fs.String("trace-report", "", "print the median time of each step in this trace file, and exit")
	showVersion := fs.Bool("version", false, "print netauthd's version and exit")
	status := fs.Bool("status", false, "print the services, workers and counters of the running netauthd (asked over its control socket), and exit")
	control := fs.String("control", "", "the control socket netauthd answers -status on (default "+daemon.DefaultControlSocket+" as root, $XDG_RUNTIME_DIR/netauthd/control otherwise; \"none\": no socket)")
	dump := fs.Bool("T", false, "check the configuration, print it with every default filled in (in netauthd.conf syntax), and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		return usageError(stderr, "%v", err)
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Line("netauthd"))
		return 0
	}
	if *status {
		return printStatus(daemon.ControlPath(*control), stdout, stderr)
	}
	if *traceReport != "" {
		return report(*traceReport, stdout, stderr)
	}
	if fs.NArg() != 0 {
		return usageError(stderr, "unexpected argument %q", fs.Arg(0))
	}
	listenSet := false
	fs.Visit(func(f *flag.Flag) { listenSet = listenSet || f.Name == "listen" })
	if listenSet && *configPath != "" {
		return usageError(stderr, "-listen is for the embedded default: with -config, the file's listen lines say where each service listens")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return usageError(stderr, "-log-level %q: want debug, info, warn or error", *level)
	}
	log, err := logging.New(stderr, *logFormat, lvl)
	if err != nil {
		return usageError(stderr, "-log-format %q: want text or json", *logFormat)
	}

	cfg, note, err := loadConfig(*configPath, *addr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	warnings, err := cfg.Check()
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "netauthd: configuration errors:\n%v\n", err)
		return 1
	}
	if *dump {
		if _, err := cfg.WriteTo(stdout); err != nil {
			fmt.Fprintln(stderr, "netauthd: printing the configuration:", err)
			return 1
		}
		return 0
	}
	if *check {
		fmt.Fprintf(stdout, "%s: OK (%d services)\n", nameOf(cfg), len(cfg.Services))
		return 0
	}
	return serve(cfg, note, *tracePath, daemon.ControlPath(*control), log, stdout, stderr)
}

// printStatus asks the running netauthd for its status over the control socket at path.
func printStatus(path string, stdout, stderr io.Writer) int {
	if path == "" {
		return usageError(stderr, "-status needs -control PATH: not root, and XDG_RUNTIME_DIR is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := daemon.PrintStatus(ctx, stdout, path); err != nil {
		fmt.Fprintf(stderr, "netauthd -status: %v\n", err)
		return 1
	}
	return 0
}

// usageError writes one line saying what is wrong with the command line, and where the help
// is, and returns the usage error status, 2.
func usageError(stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "netauthd: %s (see 'netauthd -h')\n", fmt.Sprintf(format, a...))
	return 2
}

// report prints the per-step tables of the trace file at path.
func report(path string, stdout, stderr io.Writer) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(stderr, "netauthd:", err)
		return 1
	}
	defer f.Close()
	conns, err := trace.Join(f)
	if err != nil {
		fmt.Fprintf(stderr, "netauthd: reading %s: %v\n", path, err)
		return 1
	}
	trace.WriteTable(stdout, conns)
	return 0
}

func nameOf(cfg *policy.Config) string {
	if cfg.Path == "" {
		return "embedded default configuration"
	}
	return cfg.Path
}

// loadConfig reads the file, or builds the embedded default around the built-in whoami: as
// root, policy.Default; as another user, userDefault, with note to tell the user about it.
func loadConfig(path, addr string) (cfg *policy.Config, note string, err error) {
	if path != "" {
		cfg, err = policy.Load(path)
		return cfg, "", err
	}
	worker, err := builtinWorker()
	if err != nil {
		return nil, "", err
	}
	if os.Geteuid() != 0 {
		return userDefault(worker, addr)
	}
	cfg = policy.Default(worker[0])
	cfg.Services[0].Args = append(worker[1:], "whoami")
	cfg.Services[0].Listen = []string{addr}
	return cfg, "", nil
}

// userDefault is the embedded default for a user other than root: netauthd cannot start
// processes as other users, so it serves whoami to this user alone, with the user's own keys,
// and keeps its host key and audit log in the user's home directory. It runs the same two
// processes as root's, both as the user.
func userDefault(worker []string, addr string) (*policy.Config, string, error) {
	u, err := user.Current()
	if err != nil {
		return nil, "", fmt.Errorf("netauthd: %w", err)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, "", fmt.Errorf("netauthd: %w", err)
	}
	cfg := policy.Default(worker[0])
	cfg.HostKey = filepath.Join(home, ".config/netauth/host_ed25519_key")
	cfg.AuditLog = filepath.Join(home, ".local/state/netauth/audit.log")
	cfg.AuthorizedKeysDir = "" // only the user's own ~/.ssh/authorized_keys
	sc := cfg.Services[0]
	sc.Args = append(worker[1:], "whoami")
	sc.Listen = []string{addr}
	sc.Users = []string{u.Username}
	// keys.HomeAuthorizedKeys finds the file through the user database, not $HOME.
	note := fmt.Sprintf(`netauthd: not running as root, so:
  - it cannot start worker processes as other users (User-Based Network Services need root):
    it serves the built-in whoami on %s to you (%s) alone, in workers running as you;
  - its acceptor, which parses every network byte, runs as you too: it confines itself (the
    log says how), but has no account of its own (see docs/SECURITY.md);
  - your keys come from %s;
  - the host key is %s;
  - the audit log is %s.
`, addr, u.Username, filepath.Join(u.HomeDir, ".ssh/authorized_keys"), cfg.HostKey, cfg.AuditLog)
	return cfg, note, nil
}

// serve runs the daemon until SIGTERM or SIGINT; once it runs, it prints note.
func serve(cfg *policy.Config, note, tracePath, control string, log *slog.Logger, stdout, stderr io.Writer) int {
	notify, err := sdnotify.FromEnv()
	if err != nil {
		fmt.Fprintln(stderr, "netauthd:", err)
		return 1
	}
	inherited, names, err := activationListeners()
	if err != nil {
		fmt.Fprintln(stderr, "netauthd:", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "netauthd: finding its own program for the built-in exec, backend and instance workers:", err)
		return 1
	}
	// Privilege separation: network bytes are parsed only by the acceptor, running as an
	// account of its own when netauthd is root, as netauthd's user otherwise.
	opts := daemon.Options{Config: cfg, Logger: log, Inherited: inherited, InheritedNames: names, Trace: tracePath}
	if os.Geteuid() == 0 {
		if opts.AcceptorAccount, err = acceptorAccount(acceptorUser); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	acc, ok := findAcceptor(self)
	if !ok {
		next := acceptorPaths(self)[0]
		fmt.Fprintf(stderr, "netauthd: netauthd-acceptor is missing or not executable (looked for %s): netauthd needs its unprivileged half; build it next to netauthd with:\n  CGO_ENABLED=0 go build -o %s ./cmd/netauthd-acceptor\n", strings.Join(acceptorPaths(self), " and "), next)
		return 1
	}
	opts.Acceptor = []string{acc}
	opts.Self = []string{acc, workerFlag} // the built-in workers, as builtinWorker chooses them
	d, err := daemon.New(opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Start(ctx); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if control != "" {
		cs, err := d.ListenControl(control)
		if err != nil {
			log.Warn("no control socket: netauthd -status will not answer", "err", err)
		} else {
			defer cs.Close()
		}
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	log.Info("netauthd running", "host_key", keys.Fingerprint(d.HostKey()), "config", nameOf(cfg))
	fmt.Fprint(stdout, note)
	// Every service listens (Start bound them and started the acceptor on them).
	sdNotify(log, notify.Ready(runningStatus(d)))
	for s := range sig {
		if s == syscall.SIGUSR1 {
			reopenAuditLog(d, log)
			continue
		}
		if s == syscall.SIGHUP {
			sdNotify(log, notify.Reloading("reloading the configuration"))
			status := ""
			if err := d.Reload(ctx); err != nil {
				log.Error("reload failed", "err", err)
				status = "; reload failed, kept the running configuration"
			}
			sdNotify(log, notify.Ready(runningStatus(d)+status))
			continue
		}
		log.Info("stopping", "signal", s.String())
		sdNotify(log, notify.Stopping("stopping on "+s.String()))
		cancel()
		d.Shutdown(5 * time.Second)
		return 0
	}
	return 0
}

// runningStatus is the STATUS= line of a running daemon.
func runningStatus(d *daemon.Daemon) string {
	return fmt.Sprintf("serving %d services, host key %s", len(d.Config().Services), keys.Fingerprint(d.HostKey()))
}

// sdNotify logs a notification the service manager could not be sent.
func sdNotify(log *slog.Logger, err error) {
	if err != nil {
		log.Warn("notifying the service manager", "err", err)
	}
}

// builtinWorker is the command line prefix that runs a built-in worker: netauthd-acceptor's
// when it is installed (findAcceptor; built without cgo, it starts in half the time of
// netauthd, which matters for a user's first connection), else netauthd's own.
func builtinWorker() ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("netauthd: finding its own program for the built-in workers: %w", err)
	}
	if acc, ok := findAcceptor(self); ok {
		return []string{acc, workerFlag}, nil
	}
	return []string{self, workerFlag}, nil
}

// acceptorPaths are the places netauthd looks for netauthd-acceptor, in order, given its own
// program self: next to itself (a go build or go install), then in ../libexec/netauth from its
// directory (a package: /usr/sbin/netauthd runs /usr/libexec/netauth/netauthd-acceptor, and
// /usr/local/sbin/netauthd /usr/local/libexec/netauth/netauthd-acceptor). Both are relative
// to netauthd, so that it never runs the acceptor of another installation.
func acceptorPaths(self string) []string {
	dir := filepath.Dir(self)
	return []string{
		filepath.Join(dir, "netauthd-acceptor"),
		filepath.Join(dir, "..", "libexec", "netauth", "netauthd-acceptor"),
	}
}

// findAcceptor returns the first of acceptorPaths(self) that is an executable file.
func findAcceptor(self string) (string, bool) {
	for _, p := range acceptorPaths(self) {
		if isExecutable(p) {
			return p, true
		}
	}
	return "", false
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// acceptorUser is the account the acceptor runs as (a variable for tests).
var acceptorUser = "netauth"

// acceptorAccount returns the acceptor's account, which must exist. There is no fallback
// (such as "nobody"): on an account other programs also run as, those programs could signal
// the acceptor, which holds clients' handshakes in progress, and a compromised acceptor could
// signal or trace them; the split needs an account of its own.
func acceptorAccount(name string) (*policy.Account, error) {
	acct, err := policy.LookupAccount(name)
	if err != nil {
		return nil, fmt.Errorf("netauthd: no account %q for netauthd-acceptor (%v): running as root, netauthd parses network bytes only in its unprivileged half, which needs an account of its own; create it with\n  useradd --system --no-create-home --shell /usr/sbin/nologin %s", name, err, name)
	}
	return acct, nil
}

// activationListeners returns the sockets systemd passed (LISTEN_FDS, LISTEN_PID) and their
// names (LISTEN_FDNAMES, from FileDescriptorName=; nil when it is not set).
func activationListeners() ([]net.Listener, []string, error) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, nil, nil
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n < 0 {
		return nil, nil, fmt.Errorf("LISTEN_FDS=%q is not a count", os.Getenv("LISTEN_FDS"))
	}
	var names []string
	if v, ok := os.LookupEnv("LISTEN_FDNAMES"); ok {
		names = strings.Split(v, ":")
		if len(names) != n {
			return nil, nil, fmt.Errorf("LISTEN_FDNAMES=%q names %d sockets, LISTEN_FDS=%d", v, len(names), n)
		}
	}
	var out []net.Listener
	for fd := 3; fd < 3+n; fd++ {
		syscall.CloseOnExec(fd)
		what := "socket activation descriptor " + strconv.Itoa(fd)
		if names != nil {
			what += fmt.Sprintf(" (%q)", names[fd-3])
		}
		f := os.NewFile(uintptr(fd), "listen-fd-"+strconv.Itoa(fd))
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", what, err)
		}
		if _, ok := ln.(*net.TCPListener); !ok {
			ln.Close()
			return nil, nil, fmt.Errorf("%s is a %s socket: netauthd serves TCP only (ListenStream=ADDRESS:PORT in the .socket unit)", what, ln.Addr().Network())
		}
		out = append(out, ln)
	}
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	return out, names, nil
}

// reopenAuditLog handles SIGUSR1: the audit log was renamed (rotated), and goes on in a new
// file at its path; the configuration is not reloaded.
func reopenAuditLog(d *daemon.Daemon, log *slog.Logger) {
	if err := d.ReopenAudit(); err != nil {
		log.Error("audit log not rotated: still writing to the file open before", "err", err)
	}
}
