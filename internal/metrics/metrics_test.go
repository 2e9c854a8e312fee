// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// closeIf closes l if it is not nil.
func closeIf(l net.Listener) {
	if l != nil {
		l.Close()
	}
}

// TestListen: a Unix socket (replacing a stale one, never another file) or a loopback port;
// nothing else.
func TestListen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	l, err := Listen(sock)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v, want mode 0600", fi, err)
	}
	l.Close()

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		if l != nil {
			l.Close()
		}
		t.Fatalf("Listen on a regular file: %v, want refused", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatalf("the file was touched: %q %v", b, err)
	}

	for _, bad := range []string{"0.0.0.0:9464", ":9464", "192.0.2.1:9464"} {
		if l, err := Listen(bad); err == nil {
			l.Close()
			t.Errorf("Listen(%s) succeeded, want refused", bad)
		}
	}
}

// TestListenLiveSocket: a metrics socket another process listens on is not replaced (its
// listener keeps it), where it used to be removed unchecked.
func TestListenLiveSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	live, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if l, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "listens on it") {
		closeIf(l)
		t.Fatalf("Listen over a live socket: %v, want refused", err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the live socket was removed: %v", err)
	}
	c.Close()
}

// TestListenSymlink: a symbolic link at the metrics path, or as its directory, is refused
// and what it points to is left alone.
func TestListenSymlink(t *testing.T) {
	d := t.TempDir()
	target := filepath.Join(d, "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	link := filepath.Join(d, "metrics.sock")
	os.Symlink(target, link)
	if l, err := Listen(link); err == nil {
		closeIf(l)
		t.Fatal("Listen on a symbolic link succeeded")
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("the link's target was touched: %v %v", fi, err)
	}
	realDir := filepath.Join(d, "real")
	os.Mkdir(realDir, 0o700)
	dirLink := filepath.Join(d, "run")
	os.Symlink(realDir, dirLink)
	if l, err := Listen(filepath.Join(dirLink, "metrics.sock")); err == nil || !strings.Contains(err.Error(), "not a directory owned by") {
		closeIf(l)
		t.Fatalf("Listen in a symbolic link to a directory: %v, want refused", err)
	}
}

// TestListenGroupWritableDir: a metrics socket in a directory others may write to (who could
// swap the socket) is refused.
func TestListenGroupWritableDir(t *testing.T) {
	d := filepath.Join(t.TempDir(), "run")
	os.Mkdir(d, 0o700)
	if err := os.Chmod(d, 0o770); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen(filepath.Join(d, "metrics.sock")); err == nil || !strings.Contains(err.Error(), "writable by others") {
		closeIf(l)
		t.Fatalf("Listen in a group-writable directory: %v, want refused", err)
	}
}

// fakeListener is a listener bound, as far as Addr says, to addr.
type fakeListener struct {
	net.Listener
	addr   net.Addr
	closed bool
}

func (f *fakeListener) Addr() net.Addr { return f.addr }
func (f *fakeListener) Close() error   { f.closed = true; return nil }

// TestListenLocalhostElsewhere: a "localhost" that the system resolves to an address that is
// not loopback (an /etc/hosts entry) is refused after listening, and the listener closed.
func TestListenLocalhostElsewhere(t *testing.T) {
	fake := &fakeListener{addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 9464}}
	defer func(old func(string, string) (net.Listener, error)) { listenTCP = old }(listenTCP)
	listenTCP = func(network, addr string) (net.Listener, error) {
		if network != "tcp" || addr != "localhost:9464" {
			t.Errorf("listened on %s %s", network, addr)
		}
		return fake, nil
	}
	if l, err := Listen("localhost:9464"); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("Listen(localhost:9464) bound to 192.0.2.7: %v %v, want refused", l, err)
	}
	if !fake.closed {
		t.Error("the listener on a non-loopback address was left open")
	}
	for a, ok := range map[string]bool{"127.0.0.1": true, "127.3.2.1": true, "::1": true, "192.0.2.7": false, "::": false, "0.0.0.0": false, "::ffff:127.0.0.1": true} {
		if err := checkLoopback(&net.TCPAddr{IP: net.ParseIP(a), Port: 1}); (err == nil) != ok {
			t.Errorf("checkLoopback(%s): %v", a, err)
		}
	}
}
