// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/proxyproto"
)

func TestWorkerCommand(t *testing.T) {
	d := &Daemon{opts: Options{Self: []string{"/usr/sbin/netauthd", "-worker"}}}
	for _, tt := range []struct {
		sc   policy.Service
		want string
	}{
		{policy.Service{Mode: policy.PerUser, Program: "/usr/libexec/whoami", Args: []string{"-v"}}, "/usr/libexec/whoami -v"},
		{policy.Service{Mode: policy.PerConnection, Program: "/p"}, "/p"},
		{policy.Service{Mode: policy.Exec, Program: "/usr/lib/dovecot/imap", Args: []string{"-c", "/etc/d.conf"}}, "/usr/sbin/netauthd -worker exec -- /usr/lib/dovecot/imap -c /etc/d.conf"},
		{policy.Service{Mode: policy.Backend, Backend: "unix:/run/web.sock"}, "/usr/sbin/netauthd -worker backend unix:/run/web.sock"},
	} {
		path, args, err := d.workerCommand(&tt.sc)
		if got := strings.Join(append([]string{path}, args...), " "); err != nil || got != tt.want {
			t.Errorf("workerCommand(%s) = %q, %v; want %q", tt.sc.Mode, got, err, tt.want)
		}
	}
	for _, self := range [][]string{nil, {"netauthd", "-worker"}} {
		d := &Daemon{opts: Options{Self: self}}
		if _, _, err := d.workerCommand(&policy.Service{Name: "imap", Mode: policy.Exec, Program: "/p"}); err == nil {
			t.Errorf("workerCommand with Self %q succeeded", self)
		}
	}
	// Self is copied, never appended to in place.
	self := make([]string, 2, 8)
	copy(self, []string{"/netauthd", "-worker"})
	d = &Daemon{opts: Options{Self: self}}
	_, a1, _ := d.workerCommand(&policy.Service{Mode: policy.Backend, Backend: "unix:/a"})
	_, _, _ = d.workerCommand(&policy.Service{Mode: policy.Backend, Backend: "unix:/b"})
	if strings.Join(a1, " ") != "-worker backend unix:/a" {
		t.Errorf("first command changed to %q", a1)
	}
}

// execEnvService runs /bin/sh, unmodified, in exec mode: it prints its parent (the worker),
// its uid and its environment.
const execEnvService = `service env {
    listen 127.0.0.1:0
    mode exec
    program /bin/sh
    args -c "echo ppid=$PPID uid=$(id -u); env"
    users netauth-alice
}
`

// execOutput connects as user and returns the program's output as a map.
func (tb *testbed) execOutput(service string, cfg *netauth.Config) (map[string]string, *netauth.Conn) {
	tb.t.Helper()
	c, err := netauth.Dial("tcp", tb.addr(service), cfg)
	if err != nil {
		tb.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(c)
	if err != nil {
		tb.t.Fatalf("reading the program's output: %v", err)
	}
	m := map[string]string{}
	for i, line := range strings.Split(string(out), "\n") {
		if i == 0 {
			for _, f := range strings.Fields(line) {
				k, v, _ := strings.Cut(f, "=")
				m[k] = v
			}
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m, c
}

// TestExecMode: an unmodified program serves each connection as the user, under the user's
// per-user worker (or a worker of its own with "exec-worker per-connection"), with the
// connection's identity in its environment and nothing of netauthd's control channel.
func TestExecMode(t *testing.T) {
	tb := newTestbed(t, execEnvService+strings.NewReplacer("service env", "service env1", "mode exec", "mode exec\n    exec-worker per-connection").Replace(execEnvService))
	tb.useBuiltinWorker()
	cfg := tb.config("netauth-alice")
	fp := keys.Fingerprint(tb.users["netauth-alice"].PublicKey())
	e1, c1 := tb.execOutput("env", cfg)
	e2, _ := tb.execOutput("env", cfg)
	for i, e := range []map[string]string{e1, e2} {
		want := map[string]string{
			"uid": uidOf(t, "netauth-alice"), "USER": "netauth-alice", "NETAUTH_USER": "netauth-alice", "NETAUTH_SERVICE": "env",
			"NETAUTH_KEY_FP": fp, "NETAUTH_KEY_TYPE": "ssh-ed25519", "NETAUTH_RESUMED": strconv.FormatBool(i == 1),
		}
		for k, v := range want {
			if e[k] != v {
				t.Errorf("connection %d: %s=%q, want %q", i+1, k, e[k], v)
			}
		}
		if _, err := time.Parse(time.RFC3339, e["NETAUTH_AUTH_TIME"]); err != nil {
			t.Errorf("connection %d: NETAUTH_AUTH_TIME=%q: %v", i+1, e["NETAUTH_AUTH_TIME"], err)
		}
		if _, ok := e["NETAUTH_CONTROL_FD"]; ok {
			t.Errorf("connection %d: the program got netauthd's control descriptor variable", i+1)
		}
	}
	if e1["NETAUTH_CLIENT"] != c1.LocalAddr().String() {
		t.Errorf("NETAUTH_CLIENT=%q, want the client's address %s", e1["NETAUTH_CLIENT"], c1.LocalAddr())
	}
	if e1["ppid"] != e2["ppid"] || e1["ppid"] != strconv.Itoa(tb.workerPid("env", "netauth-alice")) {
		t.Errorf("per-user exec: programs started by workers %s and %s, want alice's one worker", e1["ppid"], e2["ppid"])
	}
	p1, _ := tb.execOutput("env1", cfg)
	p2, _ := tb.execOutput("env1", cfg)
	if p1["ppid"] == p2["ppid"] || p1["uid"] != uidOf(t, "netauth-alice") {
		t.Errorf("exec-worker per-connection: programs started by workers %s and %s as uid %s, want two workers as alice", p1["ppid"], p2["ppid"], p1["uid"])
	}
}

// backendService forwards to a Unix socket; its one worker runs as the service account.
const backendService = `service web {
    listen 127.0.0.1:0
    mode backend
    backend unix:WORKER-backend.sock
    run-as account netauth-carol
    users netauth-alice netauth-bob
    idle-timeout 1m
}
`

// startBackend listens on path as a backend that requires the PROXY header: for each
// connection it answers one line saying who connected (the worker's uid and pid, from the
// kernel) and who the header says the user is, then echoes.
func startBackend(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if err := os.Chmod(path, 0o666); err != nil { // the worker runs as the service account
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				raw, _ := c.(*net.UnixConn).SyscallConn()
				var cred *unix.Ucred
				_ = raw.Control(func(fd uintptr) { cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
				r := bufio.NewReader(c)
				h, _, err := proxyproto.Read(r)
				if err != nil {
					fmt.Fprintf(c, "error %v\n", err)
					return
				}
				id, err := proxyproto.IdentityOf(h)
				if err != nil {
					fmt.Fprintf(c, "error %v\n", err)
					return
				}
				fmt.Fprintf(c, "user=%s uid=%d pid=%d resumed=%t client=%s\n", id.User, cred.Uid, cred.Pid, id.Resumed, h.Source)
				_, _ = io.Copy(c, r)
			}()
		}
	}()
}

// TestBackendMode: one worker, running as the service account, forwards every user's
// connections with their identity; revoking one user closes their connections and leaves
// the others' (and the worker) alone; the per-user counts return to zero.
func TestBackendMode(t *testing.T) {
	tb := newTestbed(t, backendService)
	tb.useBuiltinWorker()
	startBackend(t, tb.workerBin+"-backend.sock")
	cfgs := map[string]*netauth.Config{"netauth-alice": tb.config("netauth-alice"), "netauth-bob": tb.config("netauth-bob")}
	open := func(user string) (*netauth.Conn, *bufio.Reader, map[string]string) {
		t.Helper()
		c, err := netauth.Dial("tcp", tb.addr("web"), cfgs[user])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		m := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		if m["user"] != user || m["uid"] != uidOf(t, "netauth-carol") || m["client"] != c.LocalAddr().String() {
			t.Fatalf("%s's connection reached the backend as %q", user, line)
		}
		return c, r, m
	}
	echo := func(c *netauth.Conn, r *bufio.Reader, msg string) error {
		if _, err := io.WriteString(c, msg+"\n"); err != nil {
			return err
		}
		line, err := r.ReadString('\n')
		if err == nil && line != msg+"\n" {
			err = fmt.Errorf("echoed %q", line)
		}
		return err
	}
	ca, ra, ma := open("netauth-alice")
	cb, rb, mb := open("netauth-bob")
	if ma["pid"] != mb["pid"] {
		t.Fatalf("alice's and bob's connections came from workers %s and %s, want one", ma["pid"], mb["pid"])
	}
	tb.d.mu.Lock()
	n := len(tb.d.workers)
	w := tb.d.workers[workerKey{service: "web"}]
	tb.d.mu.Unlock()
	if n != 1 || w == nil || strconv.Itoa(w.pid) != ma["pid"] {
		t.Fatalf("%d workers, want one shared worker (pid %s)", n, ma["pid"])
	}
	for _, e := range []error{echo(ca, ra, "alice 1"), echo(cb, rb, "bob 1")} {
		if e != nil {
			t.Fatal(e)
		}
	}

	tb.setKey("netauth-bob", nil)
	_ = cb.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := rb.ReadString('\n'); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("bob's connection after his key was removed: %v, want it closed", err)
	}
	if err := echo(ca, ra, "alice 2"); err != nil {
		t.Fatalf("alice's connection after bob's revocation: %v", err)
	}
	c3, _, m3 := open("netauth-alice")
	if m3["pid"] != ma["pid"] || m3["resumed"] != "true" {
		t.Fatalf("alice's next connection: %v, want the same worker, resumed", m3)
	}
	ca.Close()
	c3.Close()
	waitUntil(t, 5*time.Second, func() string { return fmt.Sprintf("connection counts %v", tb.conns()) }, func() bool {
		return len(tb.conns()) == 0
	})
}

// conns returns a copy of the daemon's per-user connection counts.
func (tb *testbed) conns() map[userService]int {
	tb.d.mu.Lock()
	defer tb.d.mu.Unlock()
	out := map[userService]int{}
	for k, v := range tb.d.conns {
		out[k] = v
	}
	return out
}
