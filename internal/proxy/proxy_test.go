// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"ubns.dev/netauth"
)

// TestUnixForwardAndResume forwards two connections through the default Unix socket: the
// server sees the right user, the first connection makes a full handshake and the second
// resumes; half-closes pass both ways.
func TestUnixForwardAndResume(t *testing.T) {
	ts := newTestServer(t)
	rt := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rt)
	p, _ := startProxy(t, Options{Remote: testUserName + "@" + ts.addr, Config: ts.config()})

	host, port, _ := net.SplitHostPort(ts.addr)
	wantPath := filepath.Join(rt, "netauth", "proxy-"+host+"-"+port+".sock")
	if p.Addr() != "unix:"+wantPath {
		t.Errorf("Addr() = %q, want %q", p.Addr(), "unix:"+wantPath)
	}
	if p.User() != testUserName || p.Remote() != ts.addr {
		t.Errorf("User(), Remote() = %q, %q; want %q, %q", p.User(), p.Remote(), testUserName, ts.addr)
	}
	for path, want := range map[string]os.FileMode{filepath.Dir(wantPath): 0o700, wantPath: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", path, fi.Mode().Perm(), want)
		}
	}

	for i, resumed := range []bool{false, true} {
		got, err := exchange(t, p.Addr(), "one\ntwo\n")
		if err != nil {
			t.Fatalf("connection %d: %v (read %q)", i, err, got)
		}
		want := fmt.Sprintf("hello %s resumed=%v\none\ntwo\nbye\n", testUserName, resumed)
		if got != want {
			t.Errorf("connection %d read %q, want %q", i, got, want)
		}
	}
	ids := ts.identities()
	if len(ids) != 2 {
		t.Fatalf("server saw %d connections, want 2", len(ids))
	}
	for i, id := range ids {
		if id.User != testUserName || id.KeyFingerprint == "" {
			t.Errorf("connection %d: server saw user %q key %q", i, id.User, id.KeyFingerprint)
		}
	}
	if ids[0].Resumed || !ids[1].Resumed {
		t.Errorf("server saw resumed = %v, %v; want false, true", ids[0].Resumed, ids[1].Resumed)
	}
}

// TestTCPOwnUID forwards a loopback TCP connection made by the proxy's own user, and checks
// that the server's end of data reaches the client while the client is still sending.
func TestTCPOwnUID(t *testing.T) {
	ts := newTestServer(t)
	p, logs := startProxy(t, Options{Listen: "tcp:127.0.0.1:0", Remote: ts.addr, Config: withUser(ts.config())})
	if !strings.HasPrefix(p.Addr(), "tcp:127.0.0.1:") {
		t.Fatalf("Addr() = %q, want tcp:127.0.0.1:PORT", p.Addr())
	}
	got, err := exchange(t, p.Addr(), "ping\n")
	if err != nil || got != "hello alice resumed=false\nping\nbye\n" {
		t.Fatalf("read %q, %v", got, err)
	}
	if strings.Contains(logs.String(), "refused") {
		t.Errorf("own connection refused:\n%s", logs)
	}
}

// withUser sets the user in the config instead of the address.
func withUser(cfg *netauth.Config) *netauth.Config {
	cfg.User = testUserName
	return cfg
}

// TestTCPTruncationResetsClient checks that a server connection cut without a close record is
// passed on to a TCP client as a reset, not as a clean end of stream.
func TestTCPTruncationResetsClient(t *testing.T) {
	ts := newTestServer(t)
	p, logs := startProxy(t, Options{Listen: "tcp:127.0.0.1:0", Remote: testUserName + "@" + ts.addr, Config: ts.config()})
	c := dialProxy(t, p.Addr())
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "hello alice") {
		t.Fatalf("greeting: %q, %v", line, err)
	}
	if _, err := io.WriteString(c, "cut\n"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the server cut the connection the client read %q, %v; want a reset", rest, err)
	}
	waitFor(t, "the error to be logged", func() bool {
		return strings.Contains(logs.String(), "connection to the server ended with an error")
	})
}

// TestTCPFailsClosed refuses a connection whose owner cannot be determined.
func TestTCPFailsClosed(t *testing.T) {
	ts := newTestServer(t)
	p, logs := listenProxy(t, Options{Listen: "tcp:127.0.0.1:0", Remote: testUserName + "@" + ts.addr, Config: ts.config()})
	p.tcpOwner = func(client, server netip.AddrPort) (int, error) {
		return 0, errors.New("socket table unreadable")
	}
	serveProxy(t, p)
	got, _ := exchange(t, p.Addr(), "ping\n")
	if got != "" {
		t.Errorf("client read %q through a proxy that could not identify it", got)
	}
	waitFor(t, "the refusal to be logged", func() bool {
		return strings.Contains(logs.String(), "refused local connection from 127.0.0.1:") &&
			strings.Contains(logs.String(), "cannot determine which user owns it: socket table unreadable")
	})
	if n := ts.tcp.N.Load(); n != 0 {
		t.Errorf("the server saw %d connections, want 0", n)
	}
}

// TestTCPOwnerLookup finds the owner of a real loopback connection in the kernel's tables.
func TestTCPOwnerLookup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client := s.RemoteAddr().(*net.TCPAddr).AddrPort()
	server := s.LocalAddr().(*net.TCPAddr).AddrPort()
	uid, err := tcpOwner(procNet, client, server)
	if err != nil || uid != os.Getuid() {
		t.Errorf("tcpOwner = %d, %v; want %d", uid, err, os.Getuid())
	}
	// The server's own end is not the client's socket, and nothing else matches.
	if _, err := tcpOwner(procNet, server, netip.MustParseAddrPort("127.0.0.1:1")); err == nil {
		t.Errorf("tcpOwner found a socket for an address pair that has none")
	}
}

// Environment of the child process that connects as another user.
const (
	childEnv     = "NETAUTH_PROXY_TEST_CHILD"
	childAddrEnv = "NETAUTH_PROXY_TEST_ADDR"
	nobody       = 65534
)

// TestChildDial is not a test: the other-user tests run the test binary with it selected, as
// uid 65534. It connects to the proxy, sends a line and reports what it read.
func TestChildDial(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("the child process of the other-user tests")
	}
	network, address, _ := strings.Cut(os.Getenv(childAddrEnv), ":")
	c, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		fmt.Printf("dial failed: %v\n", err)
		os.Exit(0)
	}
	fmt.Printf("connected uid=%d\n", os.Getuid())
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, werr := io.WriteString(c, "ping\n")
	b, rerr := io.ReadAll(c)
	fmt.Printf("wrote err=%v\nread %q err=%v\n", werr, b, rerr)
	os.Exit(0)
}

// runAsNobody runs TestChildDial as uid 65534 against the proxy at addr and returns its
// output. The test binary is copied to a directory that uid can read.
func runAsNobody(t *testing.T, addr string) string {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	bin := testutil.SelfCopy(t, testutil.OpenDir(t, "netauth-proxy-test-"), "proxy.test")
	cmd := exec.Command(bin, "-test.run=^TestChildDial$")
	cmd.Dir = "/"
	cmd.Env = []string{childEnv + "=1", childAddrEnv + "=" + addr, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as uid %d: %v\n%s", nobody, err, out)
	}
	t.Logf("child as uid %d:\n%s", nobody, out)
	connected := strings.Contains(string(out), "connected uid="+strconv.Itoa(nobody))
	// A TCP connection the proxy resets at once may fail in the dial already; a Unix
	// connection must get through the file permissions to test the peer credential check.
	reset := strings.HasPrefix(addr, "tcp:") && strings.Contains(string(out), "dial failed") &&
		strings.Contains(string(out), "connection reset by peer")
	if !connected && !reset {
		t.Fatalf("child as uid %d did not connect to the proxy:\n%s", nobody, out)
	}
	return string(out)
}

// checkRefused checks that the child read nothing, that the server saw no connection, and that
// the refusal was logged with the child's uid.
func checkRefused(t *testing.T, out string, ts *testServer, logs *testutil.Buffer, client string) {
	t.Helper()
	if strings.Contains(out, "connected") && !strings.Contains(out, `read "" err=`) {
		t.Errorf("the other user's client read data:\n%s", out)
	}
	want := fmt.Sprintf("refused local connection from uid %d (%s", nobody, client)
	waitFor(t, "the refusal to be logged", func() bool { return strings.Contains(logs.String(), want) })
	if !strings.Contains(logs.String(), fmt.Sprintf("only uid %d may use this proxy", os.Getuid())) {
		t.Errorf("refusal does not name the allowed uid:\n%s", logs)
	}
	if n := ts.tcp.N.Load(); n != 0 {
		t.Errorf("the server saw %d connections, want 0", n)
	}
	if ids := ts.identities(); len(ids) != 0 {
		t.Errorf("the server saw authenticated connections: %+v", ids)
	}
}

// TestTCPOtherUIDRefused connects to the TCP proxy as uid 65534, which must be refused.
func TestTCPOtherUIDRefused(t *testing.T) {
	ts := newTestServer(t)
	p, logs := startProxy(t, Options{Listen: "tcp:127.0.0.1:0", Remote: testUserName + "@" + ts.addr, Config: ts.config()})
	out := runAsNobody(t, p.Addr())
	checkRefused(t, out, ts, logs, "127.0.0.1:")
	// The proxy's own user is still served.
	if got, err := exchange(t, p.Addr(), "x\n"); err != nil || !strings.HasPrefix(got, "hello alice") {
		t.Errorf("own connection after the refusal: %q, %v", got, err)
	}
}

// TestUnixOtherUIDRefused opens the socket and its directory to everyone, for this test
// only, so that only the peer credential check stands between uid 65534 and the proxy.
func TestUnixOtherUIDRefused(t *testing.T) {
	ts := newTestServer(t)
	t.Setenv("XDG_RUNTIME_DIR", "")
	p, logs := startProxy(t, Options{Remote: testUserName + "@" + ts.addr, Config: ts.config()})
	path := strings.TrimPrefix(p.Addr(), "unix:")
	if err := os.Chmod(filepath.Dir(path), 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Dir(path), 0o700) }) // the directory outlives the test
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	out := runAsNobody(t, p.Addr())
	checkRefused(t, out, ts, logs, "pid ")
}

// TestStableTempDir checks the default socket without XDG_RUNTIME_DIR: a mode-0700
// directory netauth-proxy-UID under TMPDIR, and the same path at the next run, so that a
// user's second proxy finds (and replaces, once stale) the first one's socket.
func TestStableTempDir(t *testing.T) {
	ts := newTestServer(t)
	t.Setenv("XDG_RUNTIME_DIR", "")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	host, port, err := net.SplitHostPort(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(tmp, fmt.Sprintf("netauth-proxy-%d", os.Getuid()), "proxy-"+SafeName(host)+"-"+SafeName(port)+".sock")
	for run := 1; run <= 2; run++ {
		p, _ := listenProxy(t, Options{Remote: ts.addr, Config: withUser(ts.config())})
		path := strings.TrimPrefix(p.Addr(), "unix:")
		if path != want {
			t.Errorf("run %d: socket %s, want %s", run, path, want)
		}
		fi, err := os.Stat(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("run %d: %s has mode %04o, want 0700", run, filepath.Dir(path), fi.Mode().Perm())
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("run %d: second Close: %v", run, err)
		}
	}
}

// TestStableTempDirNotOurs refuses a netauth-proxy-UID directory that others may write to.
func TestStableTempDirNotOurs(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dir := filepath.Join(tmp, fmt.Sprintf("netauth-proxy-%d", os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, _, err := defaultSocketPath("h", "1"); err == nil || !strings.Contains(err.Error(), "writable by other users") {
		t.Errorf("defaultSocketPath with a mode-0777 %s: %v; want a refusal", dir, err)
	}
}

// TestServeStopsOnCancel stops a proxy with a connection open: Serve returns, the client's
// connection is closed and the socket removed.
func TestServeStopsOnCancel(t *testing.T) {
	ts := newTestServer(t)
	sock := filepath.Join(t.TempDir(), "p.sock")
	p, _ := listenProxy(t, Options{Listen: "unix:" + sock, Remote: testUserName + "@" + ts.addr, Config: ts.config()})
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- p.Serve(ctx) }()
	c := dialProxy(t, p.Addr())
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "hello") {
		t.Fatalf("greeting: %q, %v", line, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if b, err := io.ReadAll(c); len(b) != 0 {
		t.Errorf("after the proxy stopped the client read %q, %v", b, err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Serve returned: %v", err)
	}
}

// TestListenErrors checks the refusals of Listen.
func TestListenErrors(t *testing.T) {
	dir := t.TempDir()
	notSocket := filepath.Join(dir, "file")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	writable := filepath.Join(dir, "rt")
	if err := os.MkdirAll(filepath.Join(writable, "netauth"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(writable, "netauth"), 0o777); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		listen, remote, xdg, want string
	}{
		{"tcp:0.0.0.0:0", "h:1", "", "only loopback addresses"},
		{"tcp:192.0.2.1:4143", "h:1", "", "only loopback addresses"},
		{"tcp:[::]:0", "h:1", "", "only loopback addresses"},
		{"tcp::0", "h:1", "", "must be a loopback address"},
		{"tcp:example.com:80", "h:1", "", "must be a loopback address"},
		{"tcp:127.0.0.1", "h:1", "", "want tcp:127.0.0.1:PORT"},
		{"udp:127.0.0.1:1", "h:1", "", "want unix:PATH or tcp:127.0.0.1:PORT"},
		{"unix:", "h:1", "", "names no socket path"},
		{"unix:" + notSocket, "h:1", "", "is not a socket"},
		{"unix:" + live, "h:1", "", "is listening on"},
		{"unix:/" + strings.Repeat("x", 120), "h:1", "", "too long"},
		{"", "h:1", writable, "writable by other users"},
		{"unix:" + filepath.Join(dir, "x"), "", "", "bad remote address"},
		{"unix:" + filepath.Join(dir, "x"), "mail.example", "", "bad remote address"},
		{"unix:" + filepath.Join(dir, "x"), "mail.example:", "", "bad remote address"},
		{"unix:" + filepath.Join(dir, "x"), ":4143", "", "no host"},
		{"unix:" + filepath.Join(dir, "x"), "@mail.example:4143", "", "empty user name"},
		{"unix:" + filepath.Join(dir, "x"), "mail.example:99999", "", "not a port number"},
		{"unix:" + filepath.Join(dir, "x"), "mail.example:0", "", "not a port number"},
		{"unix:" + filepath.Join(dir, "x"), "bad/name@mail.example:4143", "", "user name"},
	} {
		t.Setenv("XDG_RUNTIME_DIR", tc.xdg)
		p, err := Listen(Options{Listen: tc.listen, Remote: tc.remote})
		if err == nil {
			p.Close()
			t.Errorf("Listen(%q, %q) succeeded", tc.listen, tc.remote)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Listen(%q, %q) = %v; want an error containing %q", tc.listen, tc.remote, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Errorf("a failed Listen left a socket behind")
	}
}

// TestStaleSocketReplaced listens on the path of a socket nobody listens on any more.
func TestStaleSocketReplaced(t *testing.T) {
	ts := newTestServer(t)
	sock := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	p, _ := startProxy(t, Options{Listen: "unix:" + sock, Remote: testUserName + "@" + ts.addr, Config: ts.config()})
	if got, err := exchange(t, p.Addr(), "a\n"); err != nil || !strings.HasPrefix(got, "hello alice") {
		t.Errorf("through a replaced stale socket: %q, %v", got, err)
	}
}

// TestServerDown closes the local connection and logs the error when the server cannot be
// reached.
func TestServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := newTestServer(t).config()
	p, logs := startProxy(t, Options{Listen: "unix:" + filepath.Join(t.TempDir(), "s"), Remote: "alice@" + addr, Config: cfg})
	got, _ := exchange(t, p.Addr(), "ping\n")
	if got != "" {
		t.Errorf("client read %q with the server down", got)
	}
	waitFor(t, "the error to be logged", func() bool {
		return strings.Contains(logs.String(), "connecting to "+addr+" failed") &&
			strings.Contains(logs.String(), "connection refused")
	})
}

// TestUnknownHostKey closes the first local connection and logs how to trust the server.
func TestUnknownHostKey(t *testing.T) {
	ts := newTestServer(t)
	cfg := ts.config()
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "empty_known_hosts")
	p, logs := startProxy(t, Options{Listen: "tcp:127.0.0.1:0", Remote: testUserName + "@" + ts.addr, Config: cfg})
	got, _ := exchange(t, p.Addr(), "ping\n")
	if got != "" {
		t.Errorf("client read %q from an untrusted server", got)
	}
	waitFor(t, "the error to be logged", func() bool {
		return strings.Contains(logs.String(), "netauth trust "+ts.addr)
	})
	if ids := ts.identities(); len(ids) != 0 {
		t.Errorf("an untrusted server authenticated the user: %+v", ids)
	}
}

// TestServerRefusesUser passes a server refusal on as a closed connection and logs it.
func TestServerRefusesUser(t *testing.T) {
	ts := newTestServer(t)
	p, logs := startProxy(t, Options{Listen: "tcp:127.0.0.1:0", Remote: "mallory@" + ts.addr, Config: ts.config()})
	got, _ := exchange(t, p.Addr(), "ping\n")
	if got != "" {
		t.Errorf("a refused user read %q", got)
	}
	waitFor(t, "the refusal to be logged", func() bool {
		return strings.Contains(logs.String(), "the server "+ts.addr+" refused the connection")
	})
	if n := len(ts.identities()); n != 0 {
		t.Errorf("the server accepted %d connections from a user it does not know", n)
	}
}
