// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth"
	"ubns.dev/netauth/agent"
)

// proxyTestUser is the user the proxy tests authenticate as; the in-process server knows it
// without a system account.
const proxyTestUser = "alice"

// proxyTestServer starts an in-process netauth server that greets each connection with
// "hello USER resumed=BOOL\n" and then echoes until the end of input, and a netauth agent
// holding the user's key (named by $NETAUTH_AUTH_SOCK for the rest of the test). It returns
// the server's address and a known_hosts file that trusts it.
func proxyTestServer(t *testing.T) (addr, knownHosts string) {
	t.Helper()
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, userKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	userPub, err := ssh.NewPublicKey(userKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	hostPub, err := ssh.NewPublicKey(hostKey.Public())
	if err != nil {
		t.Fatal(err)
	}

	a := agent.New(agent.Options{})
	if err := a.Add(sshagent.AddedKey{PrivateKey: userKey}); err != nil {
		t.Fatal(err)
	}
	aln, sock, err := agent.Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Serve(ctx, aln) }()
	t.Cleanup(func() { cancel(); <-agentDone; os.RemoveAll(filepath.Dir(sock)) })
	t.Setenv(agent.SockEnv, sock)

	ln, err := netauth.Listen("tcp", "127.0.0.1:0", &netauth.ServerConfig{
		HostKey: hostKey,
		Service: "test",
		Keys:    netauth.StaticKeys{proxyTestUser: {userPub}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptNetauth()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				id := c.Identity()
				if _, err := fmt.Fprintf(c, "hello %s resumed=%v\n", id.User, id.Resumed); err == nil {
					_, _ = io.Copy(c, c)
				}
			}()
		}
	}()
	addr = ln.Addr().String()
	knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	if err := netauth.Trust(knownHosts, addr, hostPub); err != nil {
		t.Fatal(err)
	}
	return addr, knownHosts
}

var proxyListening = regexp.MustCompile(`^netauth proxy: listening on (unix|tcp):(\S+); forwarding to (\S+) as (\S+)\n$`)

// runProxyMain starts proxyMain with args and waits for the line that names its address.
// It returns the address ("unix:PATH" or "tcp:HOST:PORT"), the exit status channel and the
// standard error buffer.
func runProxyMain(t *testing.T, args ...string) (string, chan int, *testutil.Buffer) {
	t.Helper()
	stdout, stderr := &testutil.Buffer{}, &testutil.Buffer{}
	exit := make(chan int, 1)
	go func() { exit <- proxyMain(args, stdout, stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(stdout.String(), "\n") {
		select {
		case code := <-exit:
			t.Fatalf("netauth proxy exited with %d:\n%s%s", code, stdout, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("netauth proxy printed no address:\n%s%s", stdout, stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := proxyListening.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("netauth proxy printed %q", stdout)
	}
	return m[1] + ":" + m[2], exit, stderr
}

// proxyRoundTrip sends a line through the proxy at addr, closes the sending side and returns
// everything read.
func proxyRoundTrip(t *testing.T, addr string) string {
	t.Helper()
	network, address, _ := strings.Cut(addr, ":")
	c, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		t.Fatalf("reading through the proxy: %v (read %q)", err, b)
	}
	return string(b)
}

// stopProxyMain signals this process (proxyMain catches the signal) and checks the exit
// status.
func stopProxyMain(t *testing.T, sig syscall.Signal, exit chan int, stderr *testutil.Buffer) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("netauth proxy exited with %d after %v:\n%s", code, sig, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("netauth proxy did not stop on %v", sig)
	}
}

// TestProxyMainUnix runs `netauth proxy` on its default Unix socket with a netauth agent:
// the second connection resumes with the ticket the agent cached, and SIGINT stops the proxy
// and removes the socket.
func TestProxyMainUnix(t *testing.T) {
	addr, knownHosts := proxyTestServer(t)
	rt := privateDir(t)
	t.Setenv("XDG_RUNTIME_DIR", rt)
	local, exit, stderr := runProxyMain(t, "-known-hosts", knownHosts, "-service", "test", proxyTestUser+"@"+addr)
	host, port, _ := net.SplitHostPort(addr)
	path := filepath.Join(rt, "netauth", "proxy-"+host+"-"+port+".sock")
	if local != "unix:"+path {
		t.Errorf("listening on %s, want unix:%s", local, path)
	}
	for i, resumed := range []bool{false, true} {
		want := fmt.Sprintf("hello %s resumed=%v\nping\n", proxyTestUser, resumed)
		if got := proxyRoundTrip(t, local); got != want {
			t.Errorf("connection %d read %q, want %q", i, got, want)
		}
	}
	stopProxyMain(t, syscall.SIGINT, exit, stderr)
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after the proxy stopped: %v", err)
	}
}

// TestProxyMainTCP runs `netauth proxy -listen tcp:127.0.0.1:0`, uses it and stops it with
// SIGTERM.
func TestProxyMainTCP(t *testing.T) {
	addr, knownHosts := proxyTestServer(t)
	local, exit, stderr := runProxyMain(t, "-listen", "tcp:127.0.0.1:0", "-known-hosts", knownHosts, "-v", proxyTestUser+"@"+addr)
	if !strings.HasPrefix(local, "tcp:127.0.0.1:") {
		t.Fatalf("listening on %s, want tcp:127.0.0.1:PORT", local)
	}
	if got, want := proxyRoundTrip(t, local), "hello alice resumed=false\nping\n"; got != want {
		t.Errorf("read %q, want %q", got, want)
	}
	stopProxyMain(t, syscall.SIGTERM, exit, stderr)
	if !strings.Contains(stderr.String(), "forwarding a local connection") {
		t.Errorf("-v did not log the connection:\n%s", stderr)
	}
}

// TestProxyMainErrors checks the help text and the refusals of bad command lines.
func TestProxyMainErrors(t *testing.T) {
	var stdout, stderr strings.Builder
	if code := proxyMain([]string{"-h"}, &stdout, &stderr); code != 0 {
		t.Errorf("-h exited with %d", code)
	}
	for _, want := range []string{"usage: netauth proxy", "curl --unix-socket PATH", "curl imap://127.0.0.1:1143/", "netauth proxy -listen tcp:127.0.0.1:1143 mail.example:4143", "-listen"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("-h does not mention %q:\n%s", want, stdout.String())
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("-h wrote to standard error: %q", stderr.String())
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "missing the server address"},
		{[]string{"a:1", "b:2"}, 2, `unexpected argument "b:2"`},
		{[]string{"-nosuchflag", "a:1"}, 2, "flag provided but not defined"},
		{[]string{"-listen", "tcp:0.0.0.0:4143", "a:1"}, 1, "only loopback addresses"},
		{[]string{"-listen", "unix:" + filepath.Join(t.TempDir(), "s"), "no-port"}, 1, "bad remote address"},
	} {
		var stdout, stderr strings.Builder
		code := proxyMain(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("netauth proxy %q = %d, stderr:\n%s\nwant %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
		if stdout.Len() != 0 {
			t.Errorf("netauth proxy %q printed %q on standard output", tc.args, stdout.String())
		}
	}
}
