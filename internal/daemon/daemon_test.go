// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/builtin"
	"ubns.dev/netauth/internal/policy"
)

// The test binary doubles as the worker program: netauthd starts it (as the user) with
// NETAUTH_CONTROL_FD set and the service to run as its only argument.
func TestMain(m *testing.M) {
	if netauth.IsWorker() && len(os.Args) == 2 {
		os.Exit(runTestWorker(os.Args[1]))
	}
	if spec := os.Getenv(unprivilegedEnv); spec != "" {
		os.Exit(runUnprivilegedDaemon(spec))
	}
	code := m.Run()
	if acceptorDir != "" {
		os.RemoveAll(acceptorDir)
	}
	os.Exit(code)
}

var (
	acceptorOnce sync.Once
	acceptorDir  string
	acceptorBin  string
	acceptorErr  error
)

// buildAcceptor builds netauthd-acceptor without cgo, as it is meant to be built, into a
// directory the unprivileged acceptor account can read.
func buildAcceptor(t testing.TB) string {
	acceptorOnce.Do(func() {
		if acceptorDir, acceptorErr = os.MkdirTemp("", "netauthd-acceptor-"); acceptorErr != nil {
			return
		}
		os.Chmod(acceptorDir, 0o755)
		acceptorBin = filepath.Join(acceptorDir, "netauthd-acceptor")
		cmd := exec.Command("go", "build", "-o", acceptorBin, "ubns.dev/netauth/cmd/netauthd-acceptor")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			acceptorErr = fmt.Errorf("building netauthd-acceptor: %v: %s", err, out)
		}
	})
	if acceptorErr != nil {
		t.Fatal(acceptorErr)
	}
	return acceptorBin
}

func runTestWorker(name string) int {
	switch name {
	case "echo", "whoami":
		return builtin.Run(name, nil, os.Stderr)
	case "httpwhoami":
		return runHTTPWhoami()
	case "lingerer":
		return runLingerer()
	case "dropper":
		return runDropper()
	case "disowner":
		return runDisowner()
	case "inspect":
		ln, err := netauth.Listen("", "", nil)
		if err != nil {
			return 1
		}
		_ = ln.Serve(func(c *netauth.Conn) {
			fds, _ := os.ReadDir("/proc/self/fd")
			var names []string
			for _, fd := range fds {
				target, _ := os.Readlink("/proc/self/fd/" + fd.Name())
				names = append(names, fd.Name()+"="+target)
			}
			sid, _, _ := syscallGetsid()
			fmt.Fprintf(c, "env %s\nfds %s\nsid %d pid %d\n", strings.Join(os.Environ(), "|"), strings.Join(names, "|"), sid, os.Getpid())
		})
		return 0
	}
	return 2
}

// testbed is a daemon with real test accounts, a worker program, and clients for each user.
type testbed struct {
	t         testing.TB
	d         *Daemon
	dir       string
	cfg       *policy.Config
	users     map[string]ssh.Signer
	known     string
	keysDir   string
	auditLog  string
	workerBin string
}

var (
	accountsOnce sync.Once
	accountsErr  error
)

// testAccounts are real system users created for these tests (CI runs as root).
var testAccounts = []string{"netauth-alice", "netauth-bob", "netauth-carol"}

// acceptorAccount is the acceptor's account, created as an installation creates it.
const acceptorAccount = "netauth"

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: starts workers as other users (CI runs as root)")
	}
	accountsOnce.Do(func() {
		for _, name := range testAccounts {
			if _, err := policy.LookupAccount(name); err == nil {
				continue
			}
			if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
				accountsErr = fmt.Errorf("useradd %s: %v: %s", name, err, out)
				return
			}
		}
		if _, err := policy.LookupAccount(acceptorAccount); err != nil {
			if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", acceptorAccount).CombinedOutput(); err != nil {
				accountsErr = fmt.Errorf("useradd %s: %v: %s", acceptorAccount, err, out)
			}
		}
	})
	if accountsErr != nil {
		t.Fatal(accountsErr)
	}
}

// newTestbed starts a daemon whose services are given in config text (after the global
// directives the testbed sets). "WORKER" in the text is replaced by the worker program.
func newTestbed(t testing.TB, services string) *testbed {
	t.Helper()
	return newTestbedOpts(t, services, testbedOpts{})
}

// testbedOpts adjust a testbed.
type testbedOpts struct {
	auditLog string            // audit log path (default: in the testbed's directory)
	files    map[string][]byte // executable files to create in the testbed's directory ("DIR" in the config text)
	log      io.Writer         // also receives the daemon's log (text lines, or JSON with logJSON), if set
	logJSON  bool              // the daemon logs slog JSON records
	trace    string            // Options.Trace
	// hostCert, if set, makes the host key at the path it is given (before the daemon
	// starts) and returns the file of a host certificate for host-certificate.
	hostCert func(hostKey string) string
}

// newTestbedOpts is newTestbed with options.
func newTestbedOpts(t testing.TB, services string, opts testbedOpts) *testbed {
	t.Helper()
	requireRoot(t)
	tb := &testbed{t: t, users: make(map[string]ssh.Signer)}
	// Not t.TempDir(): its parent is private, and workers run as the test accounts; they
	// get a copy of the test binary every test account may execute.
	tb.dir = testutil.OpenDir(t, "netauthd-test-")
	tb.workerBin = testutil.SelfCopy(t, tb.dir, "worker")
	tb.keysDir = filepath.Join(tb.dir, "authorized_keys")
	if err := os.Mkdir(tb.keysDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range testAccounts {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		s, _ := ssh.NewSignerFromKey(priv)
		tb.users[name] = s
		tb.setKey(name, s.PublicKey())
	}
	for name, data := range opts.files {
		if err := os.WriteFile(filepath.Join(tb.dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tb.auditLog = opts.auditLog
	if tb.auditLog == "" {
		tb.auditLog = filepath.Join(tb.dir, "audit.log")
	}
	globals := ""
	if opts.hostCert != nil {
		globals = "host-certificate " + opts.hostCert(filepath.Join(tb.dir, "host_key")) + "\n"
	}
	text := fmt.Sprintf("host-key %s\naudit-log %s\nauthorized-keys-dir %s\nrevocation-check 200ms\n%s\n%s",
		filepath.Join(tb.dir, "host_key"), tb.auditLog, tb.keysDir, globals, strings.ReplaceAll(strings.ReplaceAll(services, "WORKER", tb.workerBin), "DIR/", tb.dir+"/"))
	path := filepath.Join(tb.dir, "netauthd.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if tb.cfg, err = policy.Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.cfg.Check(); err != nil {
		t.Fatal(err)
	}
	var logTo io.Writer = newTestLog(t)
	if opts.log != nil {
		logTo = io.MultiWriter(logTo, opts.log)
	}
	var h slog.Handler = slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug})
	if opts.logJSON {
		h = slog.NewJSONHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	log := slog.New(h)
	acct, err := policy.LookupAccount(acceptorAccount)
	if err != nil {
		t.Fatal(err)
	}
	tb.d, err = New(Options{Config: tb.cfg, Logger: log, Acceptor: []string{buildAcceptor(t)}, AcceptorAccount: acct, Trace: opts.trace})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := tb.d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); tb.d.Shutdown(2 * time.Second) })
	tb.known = filepath.Join(tb.dir, "known_hosts")
	for _, s := range tb.cfg.Services {
		for _, a := range tb.d.Addrs(s.Name) {
			if err := netauth.Trust(tb.known, a.String(), tb.d.HostKey()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tb
}

// testLog sends a daemon's log to the test log, until the test's cleanup: the daemon's own
// goroutines (the revocation check, a worker's output) may still log after Shutdown returns,
// and a test must not be logged to once it has ended.
type testLog struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

// newTestLog returns a testLog that stops at t's cleanup. Cleanups run last registered
// first, so it goes on logging through the cleanups registered after it (Shutdown's).
func newTestLog(t testing.TB) *testLog {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// setKey writes user's authorized_keys file (nil removes it).
func (tb *testbed) setKey(user string, pub ssh.PublicKey) {
	path := filepath.Join(tb.keysDir, user)
	if pub == nil {
		if err := os.Remove(path); err != nil {
			tb.t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

func (tb *testbed) addr(service string) string {
	a := tb.d.Addrs(service)
	if len(a) == 0 {
		tb.t.Fatalf("service %s has no address", service)
	}
	return a[0].String()
}

func (tb *testbed) config(user string) *netauth.Config {
	return &netauth.Config{User: user, Signer: tb.users[user], KnownHostsFile: tb.known, KnownHostsFiles: []netauth.KnownHostsFile{},
		TicketCache: netauth.NewMemoryTicketCache(8)}
}

// whoami connects as user and returns the parsed answer of the whoami service.
func (tb *testbed) whoami(service, user string, cfg *netauth.Config) (map[string]string, error) {
	c, err := netauth.Dial("tcp", tb.addr(service), cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "?\n"); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out, nil
}

func uidOf(t testing.TB, name string) string {
	a, err := policy.LookupAccount(name)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(int(a.UID))
}

const whoamiService = `service whoami {
    listen 127.0.0.1:0
    program WORKER
    args whoami
    users netauth-alice netauth-bob
    idle-timeout 1m
}
`

// TestWorkerReuseAndSeparation: a user's connections go to one worker running with their
// uid; another user gets another worker with theirs.
func TestWorkerReuseAndSeparation(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	aliceCfg := tb.config("netauth-alice")
	a1, err := tb.whoami("whoami", "netauth-alice", aliceCfg)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := tb.whoami("whoami", "netauth-alice", aliceCfg)
	if err != nil {
		t.Fatal(err)
	}
	b1, err := tb.whoami("whoami", "netauth-bob", tb.config("netauth-bob"))
	if err != nil {
		t.Fatal(err)
	}
	if a1["user"] != "netauth-alice" || a1["uid"] != uidOf(t, "netauth-alice") || a1["resumed"] != "false" {
		t.Fatalf("alice's first connection: %v", a1)
	}
	if a2["pid"] != a1["pid"] || a2["resumed"] != "true" {
		t.Fatalf("alice's second connection went to pid %s (resumed %s), want the same worker %s resumed", a2["pid"], a2["resumed"], a1["pid"])
	}
	if b1["pid"] == a1["pid"] || b1["uid"] != uidOf(t, "netauth-bob") || b1["user"] != "netauth-bob" {
		t.Fatalf("bob shares alice's worker or runs with the wrong uid: alice %v bob %v", a1, b1)
	}
}

// TestPolicyRefusal: carol has a valid key but is not granted the service: refused with
// "not authorized" before any worker exists.
func TestPolicyRefusal(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	_, err := tb.whoami("whoami", "netauth-carol", tb.config("netauth-carol"))
	var re *netauth.RefusedError
	if !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
		t.Fatalf("carol: %v, want not authorized", err)
	}
	if !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("error does not say why: %v", err)
	}
	tb.d.mu.Lock()
	n := len(tb.d.workers)
	tb.d.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d workers exist after a refusal", n)
	}
}

// TestPerConnectionMode: every connection gets its own worker, still as the user.
func TestPerConnectionMode(t *testing.T) {
	tb := newTestbed(t, strings.Replace(whoamiService, "idle-timeout 1m", "mode per-connection", 1))
	cfg := tb.config("netauth-alice")
	a1, err := tb.whoami("whoami", "netauth-alice", cfg)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := tb.whoami("whoami", "netauth-alice", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a1["pid"] == a2["pid"] || a1["uid"] != uidOf(t, "netauth-alice") || a2["uid"] != a1["uid"] {
		t.Fatalf("per-connection workers: %v and %v", a1, a2)
	}
}

// TestIdleExitAndRace: a worker with no connections exits after the idle time; with an idle
// time so short that exits race with handoffs, no connection is lost.
func TestIdleExitAndRace(t *testing.T) {
	tb := newTestbed(t, strings.Replace(whoamiService, "idle-timeout 1m", "idle-timeout 300ms", 1))
	cfg := tb.config("netauth-alice")
	a1, err := tb.whoami("whoami", "netauth-alice", cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(a1["pid"])
	waitGone(t, pid, 5*time.Second)
	a2, err := tb.whoami("whoami", "netauth-alice", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a2["pid"] == a1["pid"] {
		t.Fatal("the idle worker was reused after it exited")
	}

	// Race exits against handoffs: 1ms idle time, many back-to-back connections.
	tb2 := newTestbed(t, strings.Replace(whoamiService, "idle-timeout 1m", "idle-timeout 1ms", 1))
	cfg2 := tb2.config("netauth-bob")
	pids := map[string]bool{}
	for i := 0; i < 40; i++ {
		r, err := tb2.whoami("whoami", "netauth-bob", cfg2)
		if err != nil {
			t.Fatalf("connection %d lost in an exit/handoff race: %v", i, err)
		}
		pids[r["pid"]] = true
		if i%3 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	t.Logf("40 connections served by %d workers", len(pids))
}

// TestWorkerCrash: a worker killed by a signal is replaced on the next connection.
func TestWorkerCrash(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	cfg := tb.config("netauth-alice")
	a1, err := tb.whoami("whoami", "netauth-alice", cfg)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(a1["pid"])
	if err := killPid(pid); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid, 5*time.Second)
	a2, err := tb.whoami("whoami", "netauth-alice", cfg)
	if err != nil {
		t.Fatalf("connection after a worker crash: %v", err)
	}
	if a2["pid"] == a1["pid"] {
		t.Fatal("connection went to the dead worker's pid")
	}
}

// TestWorkerEnvironmentAndDescriptors: a worker inherits nothing of the daemon's environment
// or descriptors: only its minimal environment, stdio, and the control socket.
func TestWorkerEnvironmentAndDescriptors(t *testing.T) {
	t.Setenv("NETAUTHD_SECRET_TEST_VAR", "must-not-leak")
	tb := newTestbed(t, strings.Replace(whoamiService, "args whoami", "args inspect", 1))
	c, err := netauth.Dial("tcp", tb.addr("whoami"), tb.config("netauth-alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	env := between(text, "env ", "\n")
	for _, kv := range strings.Split(env, "|") {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "HOME", "USER", "LOGNAME", "SHELL", "NETAUTH_USER", "NETAUTH_SERVICE", "NETAUTH_CONTROL_FD":
		default:
			t.Errorf("unexpected variable in the worker's environment: %q", kv)
		}
	}
	if !strings.Contains(env, "NETAUTH_USER=netauth-alice") || strings.Contains(text, "must-not-leak") {
		t.Errorf("environment: %s", env)
	}
	// Descriptors: 0-2 (stdin /dev/null, stdout/stderr pipes to the daemon's log), 3 the
	// control socket, and the connection it was handed (plus Go runtime internals: none that
	// point at the daemon's files).
	for _, fd := range strings.Split(between(text, "fds ", "\n"), "|") {
		num, target, _ := strings.Cut(fd, "=")
		if target == "" {
			continue
		}
		switch {
		case num == "0" && target == "/dev/null":
		case (num == "1" || num == "2") && strings.HasPrefix(target, "pipe:"):
		case strings.HasPrefix(target, "socket:"):
		case strings.HasPrefix(target, "anon_inode:"): // the runtime's epoll and event fds
		case strings.HasPrefix(target, "/proc/"), strings.HasPrefix(target, "/sys/fs/cgroup/"): // opened by the worker's runtime
		default:
			t.Errorf("worker holds descriptor %s -> %s", num, target)
		}
		if strings.Contains(target, tb.dir) {
			t.Errorf("worker holds a daemon file: %s -> %s", num, target)
		}
	}
	if !strings.Contains(text, "sid ") || between(text, "sid ", " ") != between(text, "pid ", "\n") {
		t.Errorf("worker is not the leader of its own session: %s", text)
	}
}

func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}

// TestRevocation: removing a user's key stops their worker, closes their live connection and
// refuses their ticket, within 5 seconds; the client reads "access revoked" (it read a
// truncation), and the log says why the worker stopped.
func TestRevocation(t *testing.T) {
	log := &logLines{}
	tb := newTestbedOpts(t, strings.Replace(whoamiService, "args whoami", "args echo", 1), testbedOpts{log: log})
	cfg := tb.config("netauth-alice")
	c, err := netauth.Dial("tcp", tb.addr("whoami"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
	start := time.Now()
	tb.setKey("netauth-alice", nil)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after revocation")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("live connection not closed within 5s of revocation")
	} else if !errors.Is(err, netauth.ErrRevoked) || !strings.Contains(err.Error(), "access revoked") {
		t.Fatalf("the client reads %q, want access revoked", err)
	}
	t.Logf("connection closed %v after the key was removed", time.Since(start).Round(time.Millisecond))
	// The ticket falls back to a full handshake, whose verdict refuses alice.
	c2, err := netauth.Dial("tcp", tb.addr("whoami"), cfg)
	if err == nil {
		err = c2.Handshake()
		c2.Close()
	}
	var re *netauth.RefusedError
	if !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
		t.Fatalf("after revocation: %v, want not authorized", err)
	}
	waitUntil(t, 5*time.Second, func() string { return "no log line says the worker was killed for the revocation" },
		func() bool {
			return len(log.with(`msg="worker exited" service=whoami user=netauth-alice pid=`)) == 1 &&
				len(log.with(`: access revoked"`)) == 1
		})
}

// TestReloadKeepsSessions: a reload that adds a service and removes a user's grant keeps other
// users' live sessions, and refuses a broken file keeping the old configuration.
func TestReloadKeepsSessions(t *testing.T) {
	tb := newTestbed(t, strings.Replace(whoamiService, "args whoami", "args echo", 1))
	c, err := netauth.Dial("tcp", tb.addr("whoami"), tb.config("netauth-bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	echo := func(msg string) {
		t.Helper()
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			t.Fatal(err)
		}
		if line, err := r.ReadString('\n'); err != nil || line != msg+"\n" {
			t.Fatalf("echo %q: %q %v", msg, line, err)
		}
	}
	echo("before")
	// A broken file is refused and the running configuration kept.
	path := tb.cfg.Path
	good, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(good, []byte("\nservice broken {\n  lisen 1.2.3.4:5\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tb.d.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "line") {
		t.Fatalf("broken reload: %v, want an error naming the line", err)
	}
	echo("after a refused reload")
	// A good reload: alice removed from the service, a new service added.
	newText := strings.Replace(string(good), "users netauth-alice netauth-bob", "users netauth-bob", 1) +
		"\nservice second {\n    listen 127.0.0.1:0\n    program " + tb.workerBin + "\n    args whoami\n    users netauth-alice\n}\n"
	if err := os.WriteFile(path, []byte(newText), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tb.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	echo("after reload")
	if err := netauth.Trust(tb.known, tb.addr("second"), tb.d.HostKey()); err != nil {
		t.Fatal(err)
	}
	if r, err := tb.whoami("second", "netauth-alice", tb.config("netauth-alice")); err != nil || r["user"] != "netauth-alice" {
		t.Fatalf("new service: %v %v", r, err)
	}
	_, err = tb.whoami("whoami", "netauth-alice", tb.config("netauth-alice"))
	var re *netauth.RefusedError
	if !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
		t.Fatalf("alice after losing her grant: %v", err)
	}
}

// TestAuditLog: every decision is recorded; the log verifies, and a tampered record is named.
func TestAuditLog(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	if _, err := tb.whoami("whoami", "netauth-alice", tb.config("netauth-alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.whoami("whoami", "netauth-carol", tb.config("netauth-carol")); err == nil {
		t.Fatal("carol accepted")
	}
	data, err := os.ReadFile(tb.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(strings.NewReader(string(data)), tb.d.HostKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Records < 2 || rep.Full < 1 || rep.Refused < 1 {
		t.Fatalf("audit report %+v", rep)
	}
	lines := strings.SplitAfter(string(data), "\n")
	lines[0] = strings.Replace(lines[0], "netauth-alice", "netauth-bob", 1)
	rep, err = audit.Verify(strings.NewReader(strings.Join(lines, "")), tb.d.HostKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) == 0 || rep.Problems[0].Line != 1 {
		t.Fatalf("tampered first record not named: %+v", rep.Problems)
	}
}

// TestAuditFailsClosed: when the audit log cannot be written (here: its file system is
// full), new connections are refused with an error code and no worker is started for them;
// once space is freed, connections are accepted again without a restart, and the whole log
// verifies.
func TestAuditFailsClosed(t *testing.T) {
	requireRoot(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting a small tmpfs for the audit log: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	// Half of it taken by another file, to be removed.
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 8<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	tb := newTestbedOpts(t, whoamiService, testbedOpts{auditLog: filepath.Join(mnt, "audit.log")})
	cfg := tb.config("netauth-alice")
	cfg.DisableResumption = true
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = tb.whoami("whoami", "netauth-alice", cfg)
	}
	var re *netauth.RefusedError
	if !errors.As(err, &re) || re.Code != netauth.CodeInternalError {
		t.Fatalf("with a full audit log: %v, want a refusal", err)
	}
	// Nothing gets through while the log stays unwritable, and bob never gets a worker.
	if _, err := tb.whoami("whoami", "netauth-bob", tb.config("netauth-bob")); !errors.As(err, &re) {
		t.Fatalf("bob with a full audit log: %v, want a refusal", err)
	}
	tb.d.mu.Lock()
	_, bobHasWorker := tb.d.workers[workerKey{service: "whoami", user: "netauth-bob"}]
	tb.d.mu.Unlock()
	if bobHasWorker {
		t.Fatal("a worker was started for a connection that could not be audited")
	}

	// Space is freed: within a few retries (the log is tried again at most every
	// audit.RetryInterval), alice is accepted again, by the same daemon.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := tb.whoami("whoami", "netauth-alice", cfg)
		if err == nil {
			if r["user"] != "netauth-alice" {
				t.Fatalf("alice after space was freed: %v", r)
			}
			break
		}
		if !errors.As(err, &re) || re.Code != netauth.CodeInternalError || time.Now().After(deadline) {
			t.Fatalf("alice after space was freed: %v, want accepted", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	data, err := os.ReadFile(tb.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(bytes.NewReader(data), tb.d.HostKey())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Full < 2 {
		t.Fatalf("the audit log after the failure: %d full handshakes, problems %v", rep.Full, rep.Problems)
	}
	// The last record (a checkpoint may follow it, signed in the background).
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	last := lines[len(lines)-1]
	for i := len(lines) - 1; i > 0 && bytes.Contains(last, []byte(`"checkpoint":`)); i-- {
		last = lines[i-1]
	}
	if !bytes.Contains(last, []byte(`"decision":"accepted"`)) || !bytes.Contains(last, []byte(`"user":"netauth-alice"`)) {
		t.Fatalf("the last record is not alice's accepted connection: %s", last)
	}
}
