// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/sdnotify"
)

// activationSocket makes a listening TCP socket on loopback, as systemd does for a
// ListenStream= line, and returns it as a file to pass to netauthd, with its address.
func activationSocket(t *testing.T) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, ln.Addr().String()
}

// startActivated runs netauthd as systemd starts a socket-activated service: the sockets as
// descriptors 3, 4, ..., LISTEN_PID its own pid, LISTEN_FDS their count, and env (such as
// LISTEN_FDNAMES and NOTIFY_SOCKET).
func startActivated(t *testing.T, e *e2e, confPath string, files []*os.File, env ...string) (*exec.Cmd, *logWatcher) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" -config "$1"`, e.bin, confPath)
	cmd.Env = append(append(os.Environ(), "LISTEN_FDS="+strconv.Itoa(len(files))), env...)
	cmd.ExtraFiles = files
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, watch(stderr)
}

// twoServices writes a configuration with the built-in whoami as services alpha and beta,
// listening on alphaAddr and betaAddr, for netauth-alice, whose key it writes.
func twoServices(t *testing.T, e *e2e, alphaAddr, betaAddr string) (confPath string, cfg *netauth.Config) {
	t.Helper()
	keysDir, signers := e.keys(t, "netauth-alice")
	alice := signers[0]
	svc := func(name, addr string) string {
		return fmt.Sprintf("service %s {\n  listen %s\n  program %s\n  args -worker whoami\n  users netauth-alice\n}\n", name, addr, e.bin)
	}
	confPath = filepath.Join(e.dir, "netauthd.conf")
	os.WriteFile(confPath, []byte(fmt.Sprintf("host-key %s/host_key\naudit-log %s/audit.log\nauthorized-keys-dir %s\n\n", e.dir, e.dir, keysDir)+
		svc("alpha", alphaAddr)+svc("beta", betaAddr)), 0o644)
	return confPath, &netauth.Config{User: "netauth-alice", Signer: alice, KnownHostsFile: filepath.Join(e.dir, "known_hosts")}
}

// serviceAt dials addr as cfg's user and returns the service the built-in whoami says it is.
func serviceAt(t *testing.T, addr string, cfg *netauth.Config) string {
	t.Helper()
	key, _, err := netauth.FetchHostKey(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	netauth.Trust(cfg.KnownHostsFile, addr, key)
	line, err := whoami(addr, cfg)
	if err != nil {
		t.Fatalf("whoami at %s: %v", addr, err)
	}
	for _, f := range strings.Fields(line) {
		if s, ok := strings.CutPrefix(f, "service="); ok {
			return s
		}
	}
	t.Fatalf("whoami at %s: no service in %q", addr, line)
	return ""
}

// TestSocketActivationByName: with LISTEN_FDNAMES, each socket goes to the service named
// like it (FileDescriptorName=), whatever the listen lines say; a name no service has, or a
// service without a socket, stops netauthd with an error saying so; systemd's default names
// keep matching by address.
func TestSocketActivationByName(t *testing.T) {
	e := setup(t)
	fa, addrA := activationSocket(t)
	fb, addrB := activationSocket(t)
	// The listen lines are crossed: by address, alpha would get B's socket.
	confPath, cfg := twoServices(t, e, addrB, addrA)

	t.Run("names", func(t *testing.T) {
		cmd, logs := startActivated(t, e, confPath, []*os.File{fa, fb}, "LISTEN_FDNAMES=alpha:beta")
		logs.wait(t, `netauthd running`, 10*time.Second)
		if got := serviceAt(t, addrA, cfg); got != "alpha" {
			t.Errorf("the socket named alpha serves %s", got)
		}
		if got := serviceAt(t, addrB, cfg); got != "beta" {
			t.Errorf("the socket named beta serves %s", got)
		}
		// A reload keeps the sockets, though the listen lines name other addresses.
		cmd.Process.Signal(syscall.SIGHUP)
		logs.wait(t, `configuration reloaded`, 10*time.Second)
		if got := serviceAt(t, addrA, cfg); got != "alpha" {
			t.Errorf("after a reload, the socket named alpha serves %s", got)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	t.Run("default names", func(t *testing.T) {
		cmd, logs := startActivated(t, e, confPath, []*os.File{fa, fb}, "LISTEN_FDNAMES=netauthd.socket:netauthd.socket")
		logs.wait(t, `netauthd running`, 10*time.Second)
		if got := serviceAt(t, addrA, cfg); got != "beta" {
			t.Errorf("with systemd's default names, %s (beta's listen line) serves %s", addrA, got)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	for _, tc := range []struct {
		name  string
		files []*os.File
		names string
		want  []string
	}{
		{"unknown name", []*os.File{fa, fb}, "alpha:gamma", []string{`named "gamma"`, "no service", "FileDescriptorName="}},
		{"service without socket", []*os.File{fa}, "alpha", []string{`service "beta" has no socket`, "FileDescriptorName=beta"}},
		{"count mismatch", []*os.File{fa, fb}, "alpha", []string{`LISTEN_FDNAMES="alpha" names 1 sockets, LISTEN_FDS=2`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, logs := startActivated(t, e, confPath, tc.files, "LISTEN_FDNAMES="+tc.names)
			// It must stop by itself; one still running after 10s is killed (and fails).
			stop := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
			defer stop.Stop()
			for l := range logs.lines {
				logs.all.WriteString(l + "\n")
			}
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("netauthd exited with %v, want status 1; stderr:\n%s", err, logs.all.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(logs.all.String(), want) {
					t.Errorf("the error lacks %q:\n%s", want, logs.all.String())
				}
			}
		})
	}
}

// notifySocket is the service manager's end of NOTIFY_SOCKET.
type notifySocket struct {
	c *net.UnixConn
}

func (n notifySocket) next(t *testing.T) []string {
	t.Helper()
	buf := make([]byte, 4096)
	n.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	k, err := n.c.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return strings.Split(string(buf[:k]), "\n")
}

// TestNotify runs netauthd with NOTIFY_SOCKET naming an abstract datagram socket, as
// systemd does for Type=notify, and reads what it says in order: READY=1 once its services
// accept connections; RELOADING=1 with MONOTONIC_USEC=, then READY=1, around each SIGHUP
// (a refused reload too); STOPPING=1 on SIGTERM.
func TestNotify(t *testing.T) {
	e := setup(t)
	name := fmt.Sprintf("@netauthd-notify-test-%d", os.Getpid())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ns := notifySocket{c}
	fa, addrA := activationSocket(t)
	fb, addrB := activationSocket(t)
	confPath, cfg := twoServices(t, e, addrA, addrB)
	cmd, logs := startActivated(t, e, confPath, []*os.File{fa, fb}, "NOTIFY_SOCKET="+name)

	ready := ns.next(t)
	if ready[0] != "READY=1" || len(ready) != 2 || !strings.HasPrefix(ready[1], "STATUS=serving 2 services") {
		t.Fatalf("first notification %q, want READY=1 and a STATUS", ready)
	}
	// Ready means serving: both services answer at once.
	if serviceAt(t, addrA, cfg) != "alpha" || serviceAt(t, addrB, cfg) != "beta" {
		t.Fatal("services not served as configured")
	}

	reload := func(wantStatus string) {
		t.Helper()
		before, _ := sdnotify.MonotonicUsec()
		cmd.Process.Signal(syscall.SIGHUP)
		got := ns.next(t)
		after, _ := sdnotify.MonotonicUsec()
		if len(got) < 2 || got[0] != "RELOADING=1" || !strings.HasPrefix(got[1], "MONOTONIC_USEC=") {
			t.Fatalf("on SIGHUP: %q, want RELOADING=1 and MONOTONIC_USEC=", got)
		}
		usec, err := strconv.ParseUint(strings.TrimPrefix(got[1], "MONOTONIC_USEC="), 10, 64)
		if err != nil || usec < before || usec > after {
			t.Errorf("MONOTONIC_USEC=%d not between the signal (%d) and its receipt (%d): %v", usec, before, after, err)
		}
		got = ns.next(t)
		if got[0] != "READY=1" || !strings.Contains(strings.Join(got, "\n"), wantStatus) {
			t.Fatalf("after the reload: %q, want READY=1 and %q", got, wantStatus)
		}
	}
	reload("STATUS=serving 2 services")
	logs.wait(t, `configuration reloaded`, 5*time.Second)
	good, _ := os.ReadFile(confPath)
	os.WriteFile(confPath, []byte("bogus-directive\n"), 0o644)
	reload("reload failed")
	os.WriteFile(confPath, good, 0o644)
	reload("STATUS=serving 2 services")

	cmd.Process.Signal(syscall.SIGTERM)
	if got := ns.next(t); got[0] != "STOPPING=1" {
		t.Fatalf("on SIGTERM: %q, want STOPPING=1", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("netauthd after SIGTERM: %v", err)
	}
}
