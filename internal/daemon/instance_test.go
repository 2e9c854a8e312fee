// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/testutil"
)

// instanceServices are two instance services whose program is Python's http.server, on a
// loopback port of the instance's own network namespace: "files" runs it as it is, "kids"
// under a shell that first starts a child (sleep) of its own, to see the children die too.
const instanceServices = `service files {
    listen 127.0.0.1:0
    mode instance
    instance-listen tcp
    program /usr/bin/python3
    args -m http.server %p --bind 127.0.0.1
    users netauth-alice netauth-bob
    idle-timeout 1s
}
service kids {
    listen 127.0.0.1:0
    mode instance
    instance-listen tcp
    program /bin/sh
    args -c "sleep 300 & exec /usr/bin/python3 -m http.server \"$0\" --bind 127.0.0.1" %p
    users netauth-alice
}
`

// httpGet sends "GET path" over a netauth connection to service as cfg's user and returns
// the response (status line, headers and body).
func (tb *testbed) httpGet(service, path string, cfg *netauth.Config) (string, error) {
	c, err := netauth.Dial("tcp", tb.addr(service), cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", path); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// dialRead connects to addr with cfg and reads: the error of a refused connection (the
// client sends its first data with the handshake's last message, so the refusal is read).
func dialRead(addr string, cfg *netauth.Config) error {
	c, err := netauth.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	return err
}

// refusedCode reports whether err is a refusal with code.
func refusedCode(err error, code netauth.Code) bool {
	var r *netauth.RefusedError
	return errors.As(err, &r) && r.Code == code
}

// homeFile writes a file with random content, owned by user, in user's home directory, and
// returns its name and content.
func homeFile(t *testing.T, user string) (name, content string) {
	t.Helper()
	a, err := policy.LookupAccount(user)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	name = "netauth-instance-" + hex.EncodeToString(b) + ".txt"
	content = user + " " + hex.EncodeToString(b)
	path := filepath.Join(a.Home, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, int(a.UID), int(a.GID)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	return name, content
}

// procStat returns the parent pid and process group of pid, from /proc.
func procStat(pid int) (ppid, pgrp int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	ppid, _ = strconv.Atoi(string(f[1]))
	pgrp, _ = strconv.Atoi(string(f[2]))
	return ppid, pgrp, nil
}

// children returns the pids of the live processes whose parent is ppid.
func children(ppid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, _, err := procStat(pid); err == nil && p == ppid && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// alive reports whether pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	return len(f) > 0 && string(f[0]) != "Z" && string(f[0]) != "X"
}

// procUIDs returns the Uid line of /proc/PID/status: real, effective, saved and filesystem.
func procUIDs(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("/proc/%d/status has no Uid line", pid)
	return nil
}

// cmdline returns pid's command line.
func cmdline(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

// netnsInode returns the inode of pid's network namespace ("self" for this process).
func netnsInode(t *testing.T, pid string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+pid+"/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// instancePid returns the pid of the one program user's worker of service started.
func (tb *testbed) instancePid(t *testing.T, service, user string) int {
	t.Helper()
	w := tb.workerPid(service, user)
	kids := children(w)
	if len(kids) != 1 {
		t.Fatalf("%s's worker %d for %s has children %v, want its one instance", user, w, service, kids)
	}
	return kids[0]
}

// waitExited waits up to limit for every pid to have exited.
func waitExited(t *testing.T, limit time.Duration, what string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: process %d (%q) still runs after %v", what, pid, cmdline(t, pid), limit)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestInstanceTCP: each user gets their own instance of an unmodified python3 -m http.server,
// as that user, serving their own home directory; the user's next connection reuses it; the
// instance's port is in a network namespace of its own, which no local process reaches; the
// idle timeout stops it.
func TestInstanceTCP(t *testing.T) {
	tb := newTestbed(t, instanceServices)
	tb.useBuiltinWorker()
	alice, bob := tb.config("netauth-alice"), tb.config("netauth-bob")
	aliceFile, aliceContent := homeFile(t, "netauth-alice")
	bobFile, _ := homeFile(t, "netauth-bob")

	// A connection held open keeps alice's instance from its idle timeout.
	held, err := netauth.Dial("tcp", tb.addr("files"), alice)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tb.httpGet("files", "/"+aliceFile, alice)
	if err != nil || !strings.HasPrefix(resp, "HTTP/1.0 200") || !strings.HasSuffix(resp, aliceContent) {
		t.Fatalf("alice GET /%s: %v\n%s", aliceFile, err, resp)
	}
	py := tb.instancePid(t, "files", "netauth-alice")
	if uids, want := procUIDs(t, py), uidOf(t, "netauth-alice"); strings.Join(uids, " ") != strings.Repeat(want+" ", 3)+want {
		t.Errorf("alice's instance %d runs as uids %v, want all %s", py, uids, want)
	}
	if args := cmdline(t, py); len(args) < 4 || args[1] != "-m" || args[2] != "http.server" {
		t.Fatalf("alice's instance runs %q, want python3 -m http.server PORT", args)
	}
	// Bob's own instance serves his directory: not alice's file, but his.
	resp, err = tb.httpGet("files", "/"+aliceFile, bob)
	if err != nil || !strings.HasPrefix(resp, "HTTP/1.0 404") {
		t.Errorf("bob GET alice's /%s: %v, want 404 from his own instance\n%s", aliceFile, err, resp)
	}
	resp, err = tb.httpGet("files", "/", bob)
	if err != nil || !strings.Contains(resp, bobFile) || strings.Contains(resp, aliceFile) {
		t.Errorf("bob's listing: %v, want his file %s and not alice's %s\n%s", err, bobFile, aliceFile, resp)
	}
	if bobPy := tb.instancePid(t, "files", "netauth-bob"); bobPy == py || procUIDs(t, bobPy)[1] != uidOf(t, "netauth-bob") {
		t.Errorf("bob's instance %d (uids %v), alice's %d: want his own, as him", bobPy, procUIDs(t, bobPy), py)
	}
	// Alice's second request reuses her instance.
	if resp, err := tb.httpGet("files", "/", alice); err != nil || !strings.Contains(resp, aliceFile) {
		t.Errorf("alice's listing: %v\n%s", err, resp)
	}
	if again := tb.instancePid(t, "files", "netauth-alice"); again != py {
		t.Errorf("alice's second connection went to instance %d, want %d", again, py)
	}
	// The instance's port is in its own network namespace: not reachable here.
	if self, ns := netnsInode(t, "self"), netnsInode(t, strconv.Itoa(py)); self == ns {
		t.Fatalf("alice's instance runs in netauthd's network namespace")
	}
	port := cmdline(t, py)[3]
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), time.Second); err == nil {
		c.Close()
		t.Errorf("connected to alice's instance's port %s from the host's network namespace", port)
	}
	// Idle timeout: once alice's last connection closes, her instance stops within 1s.
	held.Close()
	waitExited(t, 5*time.Second, "alice's instance after the idle timeout", py)
}

// TestInstanceRevoked: removing alice's key kills her worker, her instance and its child
// within the revocation interval; her open connection ends with "access revoked", and her
// next connection is refused.
func TestInstanceRevoked(t *testing.T) {
	tb := newTestbed(t, instanceServices)
	tb.useBuiltinWorker()
	alice := tb.config("netauth-alice")
	held, err := netauth.Dial("tcp", tb.addr("kids"), alice)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if resp, err := tb.httpGet("kids", "/", alice); err != nil || !strings.HasPrefix(resp, "HTTP/1.0 200") {
		t.Fatalf("alice GET /: %v\n%s", err, resp)
	}
	worker := tb.workerPid("kids", "netauth-alice")
	py := tb.instancePid(t, "kids", "netauth-alice")
	kids := children(py)
	if len(kids) != 1 || !strings.HasSuffix(cmdline(t, kids[0])[0], "sleep") {
		t.Fatalf("alice's instance %d has children %v, want its sleep", py, kids)
	}
	tb.setKey("netauth-alice", nil)
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := held.Read(make([]byte, 1)); !errors.Is(err, netauth.ErrRevoked) {
		t.Errorf("alice's open connection read %v, want ErrRevoked", err)
	}
	waitExited(t, 3*time.Second, "after revocation", worker, py, kids[0])
	err = dialRead(tb.addr("kids"), tb.config("netauth-alice"))
	if !refusedCode(err, netauth.CodeNotAuthorized) {
		t.Errorf("alice's connection after revocation: %v, want refused as not authorized", err)
	}
}

// activationScript serves each connection with a line describing how it was started: its
// pid, LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, and uid. With an argument it listens on that
// Unix socket path; without, on the socket-activation socket, descriptor 3.
const activationScript = `import os, socket, sys
env = os.environ
if len(sys.argv) > 1:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sys.argv[1])
    s.listen(16)
    where = sys.argv[1]
else:
    s = socket.socket(fileno=3)
    where = "fd3"
while True:
    c, _ = s.accept()
    line = "pid=%d listen_pid=%s listen_fds=%s names=%s uid=%d where=%s\n" % (os.getpid(), env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", ""), env.get("LISTEN_FDNAMES", ""), os.getuid(), where)
    try:
        c.sendall(line.encode())
    except OSError:
        pass  # a client that went away (netauthd's worker probing whether the instance is up)
    c.close()
`

// instanceLine connects to service as alice and returns the fields of the line it answers.
func (tb *testbed) instanceLine(t *testing.T, service string, cfg *netauth.Config) map[string]string {
	t.Helper()
	c, err := netauth.Dial("tcp", tb.addr(service), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", service, err)
	}
	m := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

// TestInstanceIdleStopsChildren: at its idle timeout a worker stops its instance and the
// instance's children, and exits, even though a child (the shell's sleep) still holds the
// program's standard output and error, which the worker reads to log.
func TestInstanceIdleStopsChildren(t *testing.T) {
	// kids, the service whose instance has a child, with an idle timeout of 1s.
	tb := newTestbed(t, strings.Replace(instanceServices, "users netauth-alice\n}", "users netauth-alice\n    idle-timeout 1s\n}", 1))
	tb.useBuiltinWorker()
	alice := tb.config("netauth-alice")
	if resp, err := tb.httpGet("kids", "/", alice); err != nil || !strings.HasPrefix(resp, "HTTP/1.0 200") {
		t.Fatalf("alice GET /: %v\n%s", err, resp)
	}
	worker := tb.workerPid("kids", "netauth-alice")
	py := tb.instancePid(t, "kids", "netauth-alice")
	kids := children(py)
	if len(kids) != 1 {
		t.Fatalf("alice's instance %d has children %v, want its sleep", py, kids)
	}
	// Idle after 1s; SIGTERM stops Python at once (its sleep would wait killGrace for SIGKILL).
	waitExited(t, 10*time.Second, "after the idle timeout", worker, py, kids[0])
}

// TestInstanceSocketActivation: the program gets a listening socket as descriptor 3, with
// LISTEN_FDS=1, LISTEN_FDNAMES the service's name and LISTEN_PID its own pid; with
// "instance-listen unix" it listens on a socket path in a directory only the user reaches.
func TestInstanceSocketActivation(t *testing.T) {
	tb := newTestbedOpts(t, `service act {
    listen 127.0.0.1:0
    mode instance
    instance-listen socket-activation
    program /usr/bin/python3
    args DIR/activation.py
    users netauth-alice
}
service sock {
    listen 127.0.0.1:0
    mode instance
    instance-listen unix
    program /usr/bin/python3
    args DIR/activation.py %s
    users netauth-alice
}
`, testbedOpts{files: map[string][]byte{"activation.py": []byte(activationScript)}})
	tb.useBuiltinWorker()
	alice := tb.config("netauth-alice")
	uid := uidOf(t, "netauth-alice")
	m := tb.instanceLine(t, "act", alice)
	if m["pid"] == "" || m["listen_pid"] != m["pid"] || m["listen_fds"] != "1" || m["names"] != "act" || m["uid"] != uid || m["where"] != "fd3" {
		t.Errorf("socket-activated program says %v, want LISTEN_PID its own pid, LISTEN_FDS=1, LISTEN_FDNAMES=act, uid %s", m, uid)
	}
	if pid := strconv.Itoa(tb.instancePid(t, "act", "netauth-alice")); m["pid"] != pid {
		t.Errorf("the program that answered is %s, the worker's child %s", m["pid"], pid)
	}
	if again := tb.instanceLine(t, "act", alice); again["pid"] != m["pid"] {
		t.Errorf("second connection served by %s, want the same instance %s", again["pid"], m["pid"])
	}

	u := tb.instanceLine(t, "sock", alice)
	if u["uid"] != uid || u["listen_fds"] != "" || !filepath.IsAbs(u["where"]) {
		t.Fatalf("unix-socket program says %v", u)
	}
	fi, err := os.Stat(filepath.Dir(u["where"]))
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o700 || strconv.Itoa(int(st.Uid)) != uid {
		t.Errorf("the socket's directory %s has mode %v, owner %d: want 0700, alice's", filepath.Dir(u["where"]), fi.Mode().Perm(), st.Uid)
	}
}

// TestInstanceStartTimeout: a program that never listens makes the connection refused with
// internal_error once instance-start-timeout has passed, the log says why, and nothing of it
// is left running.
func TestInstanceStartTimeout(t *testing.T) {
	var logBuf testutil.SyncBuffer
	tb := newTestbedOpts(t, `service never {
    listen 127.0.0.1:0
    mode instance
    instance-listen unix
    program /bin/sh
    args -c "exec sleep 60" %s
    instance-start-timeout 300ms
    users netauth-alice
}
`, testbedOpts{log: &logBuf})
	tb.useBuiltinWorker()
	start := time.Now()
	err := dialRead(tb.addr("never"), tb.config("netauth-alice"))
	if !refusedCode(err, netauth.CodeInternalError) {
		t.Fatalf("connection to an instance that never listens: %v, want refused with internal_error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refused after %v, want soon after the 300ms start timeout", d)
	}
	log := logBuf.String()
	for _, want := range []string{"does not accept connections", "instance-start-timeout", "did not start"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
	if tb.liveWorkerPid("never", "netauth-alice") != 0 {
		t.Errorf("a worker is left for the instance that did not start")
	}
}

// TestInstanceLimits: max-connections-per-user and max-workers bound an instance service as
// any other: a user's connection past their limit, and a user whose instance would be one too
// many, are refused as overloaded.
func TestInstanceLimits(t *testing.T) {
	tb := newTestbedOpts(t, `service act {
    listen 127.0.0.1:0
    mode instance
    instance-listen socket-activation
    program /usr/bin/python3
    args DIR/activation.py
    users netauth-alice netauth-bob
    max-connections-per-user 1
    max-workers 1
}
`, testbedOpts{files: map[string][]byte{"activation.py": []byte(activationScript)}})
	tb.useBuiltinWorker()
	held, err := netauth.Dial("tcp", tb.addr("act"), tb.config("netauth-alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := bufio.NewReader(held).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := dialRead(tb.addr("act"), tb.config("netauth-alice")); !refusedCode(err, netauth.CodeOverloaded) {
		t.Errorf("alice's second connection: %v, want refused as overloaded (max-connections-per-user 1)", err)
	}
	if err := dialRead(tb.addr("act"), tb.config("netauth-bob")); !refusedCode(err, netauth.CodeOverloaded) {
		t.Errorf("bob's first connection: %v, want refused as overloaded (max-workers 1)", err)
	}
}
