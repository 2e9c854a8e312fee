// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"errors"
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
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
)

// TestCheckFlag: -check explains every error with its line and exits non-zero; a good file
// passes.
func TestCheckFlag(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("host-key /tmp/k\nservice a {\n  lisen 127.0.0.1:1\n  mode sometimes\n}\n"), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"-check", "-config", bad}, &out, &errb); code != 1 {
		t.Fatalf("exit %d for a broken file; stderr: %s", code, errb.String())
	}
	for _, want := range []string{"bad.conf:3:", `"lisen"`, "listen", "bad.conf:4:", "per-user"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("-check output lacks %q:\n%s", want, errb.String())
		}
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"-check"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "OK") {
		t.Fatalf("embedded default: exit %d: %s %s", code, out.String(), errb.String())
	}
	if code := run([]string{"-bogus"}, &out, &errb); code != 2 {
		t.Fatalf("unknown flag: exit %d", code)
	}
}

// e2e holds a built netauthd and test accounts.
type e2e struct {
	dir string
	bin string
}

func setup(t *testing.T) *e2e {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: netauthd starts workers as other users (CI runs as root)")
	}
	for _, name := range []string{"netauth-alice", "netauth-bob"} {
		if _, err := policy.LookupAccount(name); err != nil {
			if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
				t.Fatalf("useradd %s: %v: %s", name, err, out)
			}
		}
	}
	// The acceptor's account, as an installation creates it (netauthd refuses to run without).
	if _, err := policy.LookupAccount("netauth"); err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "netauth").CombinedOutput(); err != nil {
			t.Fatalf("useradd netauth: %v: %s", err, out)
		}
	}
	dir, err := os.MkdirTemp("", "netauthd-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "netauthd")
	if out, err := exec.Command("go", "build", "-o", bin, "ubns.dev/netauth/cmd/netauthd").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	acc := exec.Command("go", "build", "-o", filepath.Join(dir, "netauthd-acceptor"), "ubns.dev/netauth/cmd/netauthd-acceptor")
	acc.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := acc.CombinedOutput(); err != nil {
		t.Fatalf("go build netauthd-acceptor: %v: %s", err, out)
	}
	return &e2e{dir: dir, bin: bin}
}

// logWatcher collects a process's stderr and finds lines in it.
type logWatcher struct {
	lines chan string
	all   bytes.Buffer
}

func watch(r io.Reader) *logWatcher {
	w := &logWatcher{lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	return w
}

// seen returns the submatches of the first line already read that matches re.
func (w *logWatcher) seen(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for _, l := range strings.Split(w.all.String(), "\n") {
		if m := rx.FindStringSubmatch(l); m != nil {
			return m
		}
	}
	t.Fatalf("netauthd has not logged %q; log:\n%s", re, w.all.String())
	return nil
}

// wait returns the first line matching re read from now on, within limit.
func (w *logWatcher) wait(t *testing.T, re string, limit time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(limit)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("netauthd exited before logging %q; log:\n%s", re, w.all.String())
			}
			w.all.WriteString(l + "\n")
			if m := rx.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("netauthd did not log %q within %v; log:\n%s", re, limit, w.all.String())
		}
	}
}

func whoami(addr string, cfg *netauth.Config) (string, error) {
	c, err := netauth.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	fmt.Fprintln(c, "?")
	return bufio.NewReader(c).ReadString('\n')
}

// TestDaemonBinary runs the real netauthd with a configuration file and a socket passed by
// socket activation: workers run as the users, SIGHUP reloads (a user's grant removed), and
// SIGTERM stops it cleanly with its workers.
func TestDaemonBinary(t *testing.T) {
	e := setup(t)
	keysDir, signers := e.keys(t, "netauth-alice", "netauth-bob")
	alice, bob := signers[0], signers[1]

	// The listening socket is made here and passed as descriptor 3 (LISTEN_FDS=1).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	lf, _ := ln.(*net.TCPListener).File()
	ln.Close()

	conf := func(users string) string {
		return fmt.Sprintf("host-key %s/host_key\naudit-log %s/audit.log\nauthorized-keys-dir %s\nrevocation-check 200ms\n\n"+
			"service whoami {\n  listen %s\n  program %s\n  args -worker whoami\n  users %s\n}\n", e.dir, e.dir, keysDir, addr, e.bin, users)
	}
	confPath := filepath.Join(e.dir, "netauthd.conf")
	os.WriteFile(confPath, []byte(conf("netauth-alice netauth-bob")), 0o644)

	cmd, logs := startActivated(t, e, confPath, []*os.File{lf})
	lf.Close()
	m := logs.wait(t, `netauthd running" host_key=(SHA256:\S+)`, 10*time.Second)
	known := filepath.Join(e.dir, "known_hosts")
	key, _, err := netauth.FetchHostKey(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if ssh.FingerprintSHA256(key) != m[1] {
		t.Fatalf("served host key %s, logged %s", ssh.FingerprintSHA256(key), m[1])
	}
	netauth.Trust(known, addr, key)
	aliceCfg := &netauth.Config{User: "netauth-alice", Signer: alice, KnownHostsFile: known, TicketCache: netauth.NewMemoryTicketCache(2)}
	bobCfg := &netauth.Config{User: "netauth-bob", Signer: bob, KnownHostsFile: known, TicketCache: netauth.NewMemoryTicketCache(2)}
	a1, err := whoami(addr, aliceCfg)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := whoami(addr, aliceCfg)
	if err != nil {
		t.Fatal(err)
	}
	pid := regexp.MustCompile(`pid=(\d+)`)
	if !strings.Contains(a1, "user=netauth-alice") || pid.FindString(a1) != pid.FindString(a2) || !strings.Contains(a2, "resumed=true") {
		t.Fatalf("alice: %q then %q (want one worker, second resumed)", a1, a2)
	}
	if _, err := whoami(addr, bobCfg); err != nil {
		t.Fatal(err)
	}

	// The privilege split: the process holding client connections is the unprivileged
	// acceptor (or a worker); the root monitor holds only listening sockets.
	acc := logs.seen(t, `acceptor started" pid=(\d+) user=(\S+) uid=(\d+)`)
	if acc[2] != "netauth" {
		t.Errorf("the acceptor runs as %s, want its own account netauth", acc[2])
	}
	checkBoundary(t, cmd.Process.Pid, acc[1])

	// A live session, then the acceptor is killed: the monitor restarts it with the same
	// listening sockets, and the session goes on.
	live, err := netauth.Dial("tcp", addr, aliceCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	liveR := bufio.NewReader(live)
	ask := func() string {
		t.Helper()
		fmt.Fprintln(live, "?")
		line, err := liveR.ReadString('\n')
		if err != nil {
			t.Fatalf("live session: %v", err)
		}
		return line
	}
	ask()
	accPid, _ := strconv.Atoi(acc[1])
	syscall.Kill(accPid, syscall.SIGKILL)
	logs.wait(t, `acceptor exited; restarting it`, 5*time.Second)
	logs.wait(t, `acceptor started`, 5*time.Second)
	if line := ask(); !strings.Contains(line, "user=netauth-alice") {
		t.Fatalf("live session after the acceptor was killed: %q", line)
	}
	if _, err := whoami(addr, aliceCfg); err != nil {
		t.Fatalf("new connection after the acceptor restarted: %v", err)
	}

	// Reload without bob: his worker is stopped and he is refused.
	os.WriteFile(confPath, []byte(conf("netauth-alice")), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	logs.wait(t, `configuration reloaded`, 5*time.Second)
	logs.wait(t, `access revoked.*user=netauth-bob`, 5*time.Second)
	_, err = whoami(addr, bobCfg)
	var re *netauth.RefusedError
	if !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
		t.Fatalf("bob after reload: %v", err)
	}
	if a3, err := whoami(addr, aliceCfg); err != nil || pid.FindString(a3) != pid.FindString(a1) {
		t.Fatalf("alice's live worker did not survive the reload: %q %v", a3, err)
	}

	// A broken file is refused on SIGHUP, and the daemon keeps serving.
	os.WriteFile(confPath, []byte("service {\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	logs.wait(t, `reload failed`, 5*time.Second)
	if _, err := whoami(addr, aliceCfg); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}

	// SIGTERM: clean exit, workers gone.
	var alicePid int
	fmt.Sscanf(pid.FindString(a1), "pid=%d", &alicePid)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("netauthd exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("netauthd did not stop within 10s of SIGTERM")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", alicePid)); err == nil {
		t.Fatalf("worker %d outlived netauthd", alicePid)
	}
}

// startAs starts netauthd as acct (not root) with args, HOME set to home, and returns it with
// its log and its standard output; it is killed at the end of the test.
func startAs(t *testing.T, e *e2e, acct *policy.Account, home string, args ...string) (*exec.Cmd, *logWatcher, *testutil.Buffer) {
	t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: acct.UID, Gid: acct.GID, Groups: acct.Groups}}
	out := &testutil.Buffer{}
	cmd.Stdout = out
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, watch(stderr), out
}

// userHome makes a directory for acct, of its own, to be its $HOME.
func userHome(t *testing.T, e *e2e, acct *policy.Account) string {
	t.Helper()
	home := filepath.Join(e.dir, "home-"+acct.Name)
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, int(acct.UID), int(acct.GID)); err != nil {
		t.Fatal(err)
	}
	return home
}

// checkSameUIDSplit checks that netauthd, run as acct, runs its acceptor as its own child with
// acct's uid and gid (confined and non-dumpable, which checkBoundary checks with the rest),
// and that netauthd itself is non-dumpable.
func checkSameUIDSplit(t *testing.T, logs *logWatcher, monitorPid int, acct *policy.Account) {
	t.Helper()
	m := logs.seen(t, `acceptor started" pid=(\d+) user=(\S+) uid=(\d+)`)
	if m[2] != acct.Name || m[3] != strconv.Itoa(int(acct.UID)) {
		t.Errorf("the acceptor runs as %s (uid %s), want netauthd's own %s (uid %d)", m[2], m[3], acct.Name, acct.UID)
	}
	status, err := os.ReadFile("/proc/" + m[1] + "/status")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"PPid:": strconv.Itoa(monitorPid), "Uid:": strconv.Itoa(int(acct.UID)), "Gid:": strconv.Itoa(int(acct.GID))}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || want[f[0]] == "" {
			continue
		}
		for _, v := range f[1:] {
			if v != want[f[0]] {
				t.Errorf("the acceptor %s: %q, want %s", m[1], line, want[f[0]])
				break
			}
		}
		delete(want, f[0])
	}
	if len(want) != 0 {
		t.Errorf("the acceptor's status lacks %v", want)
	}
	checkBoundary(t, monitorPid, m[1])
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/status", monitorPid), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 {
		t.Errorf("netauthd (uid %d) is dumpable: its /proc files belong to uid %d", acct.UID, st.Uid)
	}
}

// TestConfigUnprivileged: netauthd run by a user other than root with a configuration file
// runs its privilege split under its own uid: its acceptor, a process of that uid, confined,
// parses the connections, and whoami is served by a worker of that uid.
func TestConfigUnprivileged(t *testing.T) {
	e := setup(t)
	acct, err := policy.LookupAccount("netauth-alice")
	if err != nil {
		t.Fatal(err)
	}
	home := userHome(t, e, acct)
	keysDir, signers := e.keys(t, acct.Name)
	alice := signers[0]
	addr := freePort(t)
	confPath := filepath.Join(e.dir, "netauthd.conf")
	os.WriteFile(confPath, []byte(fmt.Sprintf("host-key %[1]s/host_key\naudit-log %[1]s/audit.log\nauthorized-keys-dir %[2]s\n\n"+
		"service whoami {\n  listen %[3]s\n  program %[4]s\n  args -worker whoami\n  users %[5]s\n}\n", home, keysDir, addr, e.bin, acct.Name)), 0o644)

	cmd, logs, _ := startAs(t, e, acct, home, "-config", confPath)
	logs.wait(t, `netauthd running`, 10*time.Second)
	key, _, err := netauth.FetchHostKey(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(e.dir, "known_hosts")
	netauth.Trust(known, addr, key)
	cfg := &netauth.Config{User: acct.Name, Signer: alice, KnownHostsFile: known, TicketCache: netauth.NewMemoryTicketCache(2)}
	for _, want := range []string{"resumed=false", "resumed=true"} {
		line, err := whoami(addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(line, "user="+acct.Name+" ") || !strings.Contains(line, fmt.Sprintf("uid=%d ", acct.UID)) || !strings.Contains(line, want) {
			t.Fatalf("whoami: %q", line)
		}
	}
	checkSameUIDSplit(t, logs, cmd.Process.Pid, acct)
}

// TestEmbeddedDefaultUnprivileged: without root and without a configuration file, netauthd
// says what it cannot do and serves whoami to its own user alone, through the same daemon and
// acceptor as root's, both running as the user: keys from the user's ~/.ssh/authorized_keys,
// host key and audit log in the user's home directory.
func TestEmbeddedDefaultUnprivileged(t *testing.T) {
	e := setup(t)
	acct, err := policy.LookupAccount("netauth-alice")
	if err != nil {
		t.Fatal(err)
	}
	home := userHome(t, e, acct)
	// The keys, as for sshd, in ~/.ssh/authorized_keys of the home the user database names.
	alice := testutil.Signer(t)
	ak := writeHomeKey(t, acct, alice.PublicKey())

	port := freePort(t)
	cmd, logs, out := startAs(t, e, acct, home, "-listen", port)
	logs.wait(t, `netauthd running`, 10*time.Second)
	hostKey := filepath.Join(home, ".config/netauth/host_ed25519_key")
	auditLog := filepath.Join(home, ".local/state/netauth/audit.log")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), auditLog) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{"not running as root", "cannot start worker processes", "to you (" + acct.Name + ") alone",
		"its acceptor", "runs as you too", ak, hostKey, auditLog} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("netauthd's explanation lacks %q:\n%s", want, out.String())
		}
	}
	key, service, err := netauth.FetchHostKey(t.Context(), "tcp", port)
	if err != nil || service != "whoami" {
		t.Fatalf("the embedded default's whoami: %q %v", service, err)
	}
	known := filepath.Join(e.dir, "known_hosts")
	netauth.Trust(known, port, key)
	cfg := &netauth.Config{User: acct.Name, Signer: alice, KnownHostsFile: known, TicketCache: netauth.NewMemoryTicketCache(2)}
	line, err := whoami(port, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "user="+acct.Name+" ") || !strings.Contains(line, fmt.Sprintf("uid=%d ", acct.UID)) {
		t.Fatalf("whoami from the embedded default: %q", line)
	}
	checkSameUIDSplit(t, logs, cmd.Process.Pid, acct)
	if _, err := os.Stat(hostKey); err != nil {
		t.Errorf("no host key: %v", err)
	}
	data, err := os.ReadFile(auditLog)
	if err != nil || !bytes.Contains(data, []byte(`"decision":"accepted"`)) || !bytes.Contains(data, []byte(`"user":"`+acct.Name+`"`)) {
		t.Errorf("the audit log does not record the accepted connection: %v\n%s", err, data)
	}
}

// checkBoundary checks, from /proc, that the acceptor runs unprivileged (non-root uids, no
// capabilities, no_new_privs) and non-dumpable, and that the monitor holds no TCP socket but
// listening ones.
func checkBoundary(t *testing.T, monitorPid int, acceptorPid string) {
	t.Helper()
	status, err := os.ReadFile("/proc/" + acceptorPid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	// A non-dumpable process's /proc/PID files belong to root (the acceptor's uids are checked
	// below not to be root); /proc/PID/status has no field for it.
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+acceptorPid+"/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 {
		t.Errorf("acceptor is dumpable: its /proc files belong to uid %d", st.Uid)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Uid:", "Gid:":
			for _, id := range f[1:] {
				if id == "0" {
					t.Errorf("acceptor %s: %s", f[0], line)
				}
			}
		case "CapEff:", "CapPrm:", "CapAmb:":
			if f[1] != "0000000000000000" {
				t.Errorf("acceptor has capabilities: %s", line)
			}
		case "NoNewPrivs:":
			if f[1] != "1" {
				t.Errorf("acceptor without no_new_privs: %s", line)
			}
		}
	}
	// TCP sockets by inode, with their state (0A = LISTEN).
	states := map[string]string{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, _ := os.ReadFile(table)
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 {
				states[f[9]] = f[3]
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", monitorPid))
	if err != nil {
		t.Fatal(err)
	}
	listening := 0
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", monitorPid, fd.Name()))
		inode, ok := strings.CutPrefix(target, "socket:[")
		if !ok {
			continue
		}
		state, isTCP := states[strings.TrimSuffix(inode, "]")]
		if !isTCP {
			continue // Unix sockets: the control channels
		}
		if state != "0A" {
			t.Errorf("the root monitor holds a TCP socket in state %s (fd %s): only listening sockets allowed", state, fd.Name())
		}
		listening++
	}
	if listening == 0 {
		t.Error("the monitor holds no listening socket")
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestEmbeddedDefaultRoot: netauthd with no configuration, as root, serves the built-in whoami
// on a loopback port with a host key it generates, to users whose keys are in their
// ~/.ssh/authorized_keys, each in a worker running as them. It uses the default paths
// (/var/lib/netauth, /var/log/netauth) and removes what it created there.
func TestEmbeddedDefaultRoot(t *testing.T) {
	e := setup(t)
	for _, p := range []string{"/var/lib/netauth/host_ed25519_key", "/var/lib/netauth/host_ed25519_key.pub", "/var/log/netauth/audit.log"} {
		if _, err := os.Stat(p); err == nil {
			t.Skipf("%s already exists on this machine; not touching an installed netauthd's files", p)
		}
		t.Cleanup(func() { os.Remove(p) })
	}
	alice := testutil.Signer(t)
	acct, err := policy.LookupAccount("netauth-alice")
	if err != nil {
		t.Fatal(err)
	}
	writeHomeKey(t, acct, alice.PublicKey())

	addr := freePort(t)
	cmd := exec.Command(e.bin, "-listen", addr)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	logs := watch(stderr)
	logs.wait(t, `netauthd running`, 10*time.Second)
	key, service, err := netauth.FetchHostKey(t.Context(), "tcp", addr)
	if err != nil || service != "whoami" {
		t.Fatalf("default service: %q %v", service, err)
	}
	known := filepath.Join(e.dir, "known_hosts")
	netauth.Trust(known, addr, key)
	cfg := &netauth.Config{User: "netauth-alice", Signer: alice, KnownHostsFile: known, TicketCache: netauth.NewMemoryTicketCache(2)}
	line, err := whoami(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "user=netauth-alice") || !strings.Contains(line, fmt.Sprintf("uid=%d ", acct.UID)) {
		t.Fatalf("whoami from the embedded default: %q", line)
	}
	if _, err := os.Stat("/var/lib/netauth/host_ed25519_key"); err != nil {
		t.Fatalf("no generated host key: %v", err)
	}
}

// TestAcceptorAccountRequired: as root, netauthd refuses to run its privilege split without
// the acceptor's own account, and says how to create it, rather than run the acceptor as an
// account other programs share (it used to fall back to "nobody"). The embedded default is no
// exception, and nothing is started or created before the refusal.
func TestAcceptorAccountRequired(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: only root runs the privilege split (CI runs as root)")
	}
	defer func(name string) { acceptorUser = name }(acceptorUser)
	acceptorUser = "netauth-no-such-acceptor"
	if _, err := policy.LookupAccount(acceptorUser); err == nil {
		t.Fatalf("account %s exists", acceptorUser)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "netauthd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("host-key %s/host_key\naudit-log %s/audit.log\n\n"+
		"service whoami {\n  listen 127.0.0.1:0\n  program /bin/cat\n  users *\n}\n", dir, dir)), 0o644)
	for _, args := range [][]string{{"-config", conf}, {"-listen", "127.0.0.1:0"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 1 {
			t.Fatalf("netauthd %v without the acceptor's account: exit %d, want 1; stderr:\n%s", args, code, errb.String())
		}
		want := "useradd --system --no-create-home --shell /usr/sbin/nologin netauth-no-such-acceptor"
		if !strings.Contains(errb.String(), want) || !strings.Contains(errb.String(), `no account "netauth-no-such-acceptor"`) {
			t.Errorf("netauthd %v: stderr does not name the account and %q:\n%s", args, want, errb.String())
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("netauthd created files before refusing: %v", ents)
	}
}

// writeHomeKey makes key the only one in acct's ~/.ssh/authorized_keys (in the home the user
// database names, as sshd reads it), owned by acct, until the test ends, and returns the
// file's path.
func writeHomeKey(t *testing.T, acct *policy.Account, key ssh.PublicKey) string {
	t.Helper()
	sshDir := filepath.Join(acct.Home, ".ssh")
	os.MkdirAll(sshDir, 0o700)
	os.Chown(sshDir, int(acct.UID), int(acct.GID))
	ak := filepath.Join(sshDir, "authorized_keys")
	if err := os.WriteFile(ak, ssh.MarshalAuthorizedKey(key), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(ak, int(acct.UID), int(acct.GID))
	t.Cleanup(func() { os.Remove(ak) })
	return ak
}

// TestTraceReport: -trace-report joins a trace file's lines from the three processes and
// prints each step's median, as docs/BENCHMARKS.md shows it.
func TestTraceReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace")
	lines := []string{
		"00000000000000aa acceptor resumed accept=1000 msg1=2000 begin_reply=5000 msg2_sent=6000 msg3=7000 commit_reply=19000",
		"00000000000000aa monitor resumed begin_recv=3000 begin_done=4000",
		"00000000000000aa monitor resumed commit_recv=8000 decided=9000 audited=10000 worker_ready=11000 sealed=12000 handoff=13000 worker_ack=16000 commit_done=17000",
		"00000000000000aa worker resumed received=14000 verdict_sent=15000 first_data=18000",
		"not a trace line",
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-trace-report", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"resumed connections (1 complete)", "| msg1 | acceptor | 1.0 | 1.0 |",
		"| first_data | worker | 17.0 | 1.0 |", "| commit_reply | acceptor | 18.0 | 1.0 |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if code := run([]string{"-trace-report", path + ".missing"}, &out, &errb); code != 1 {
		t.Errorf("missing trace file: exit %d", code)
	}
}

// TestDumpFlag: -T prints the checked configuration with its defaults, in a form that reads
// back as the same configuration; a broken file is refused as by -check.
func TestDumpFlag(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "a.conf")
	os.WriteFile(conf, []byte("host-key /tmp/k\nservice a {\n  listen 127.0.0.1:1\n  program /bin/true\n  users *\n}\n"), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"-T", "-config", conf}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"host-key /tmp/k\n", "ticket-lifetime 1h\n", "spare-workers 2\n", "service a {\n", "    max-workers 256\n", "    idle-timeout 5m\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-T output lacks %q:\n%s", want, out.String())
		}
	}
	back, err := policy.Parse(conf, strings.NewReader(out.String()))
	if err != nil {
		t.Fatalf("-T output does not parse: %v\n%s", err, out.String())
	}
	var again bytes.Buffer
	back.WriteTo(&again)
	if again.String() != out.String() {
		t.Errorf("-T output read back prints\n%s\nnot\n%s", again.String(), out.String())
	}
	out.Reset()
	errb.Reset()
	os.WriteFile(conf, []byte("service a {\n  lisen 127.0.0.1:1\n}\n"), 0o600)
	if code := run([]string{"-T", "-config", conf}, &out, &errb); code != 1 || out.Len() != 0 {
		t.Fatalf("broken file: exit %d, stdout %q", code, out.String())
	}
}

// TestStatusFlag: -status with no netauthd says so, naming the control socket it looked
// for, and exits 1.
func TestStatusFlag(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control")
	var out, errb bytes.Buffer
	if code := run([]string{"-status", "-control", sock}, &out, &errb); code != 1 || out.Len() != 0 ||
		errb.String() != "netauthd -status: netauthd is not running (no control socket at "+sock+")\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// keys writes an authorized_keys file for each user, with a key of its own, in a directory
// keys of e.dir, and returns the directory and the users' signers, in order.
func (e *e2e) keys(t *testing.T, users ...string) (string, []ssh.Signer) {
	t.Helper()
	dir := filepath.Join(e.dir, "keys")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var signers []ssh.Signer
	for _, u := range users {
		s := testutil.Signer(t)
		if err := os.WriteFile(filepath.Join(dir, u), ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644); err != nil {
			t.Fatal(err)
		}
		signers = append(signers, s)
	}
	return dir, signers
}
