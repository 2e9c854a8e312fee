// SPDX-License-Identifier: Apache-2.0

package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dir returns a new directory of mode 0700.
func dir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestListenMode: the socket is made with mode 0600 whatever the umask, in a directory
// created with mode 0700; Close removes it.
func TestListenMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	sock := filepath.Join(t.TempDir(), "new", "s")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{sock: os.ModeSocket | 0o600, filepath.Dir(sock): os.ModeDir | 0o700} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v %v, want %v", p, fi.Mode(), err, want)
		}
	}
	l.Close()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
}

// TestListenStale: a socket nobody listens on is replaced.
func TestListenStale(t *testing.T) {
	sock := filepath.Join(dir(t), "s")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	l, err := Listen(sock)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	l.Close()
}

// TestListenLive: a socket another process listens on is neither removed nor replaced: its
// listener still gets the connections.
func TestListenLive(t *testing.T) {
	sock := filepath.Join(dir(t), "s")
	live, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if l, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "listens on it") {
		if l != nil {
			l.Close()
		}
		t.Fatalf("over a live socket: %v, want refused", err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the live socket is gone: %v", err)
	}
	defer c.Close()
	live.SetDeadline(time.Now().Add(5 * time.Second))
	if a, err := live.Accept(); err != nil {
		t.Fatalf("the live listener lost its socket: %v", err)
	} else {
		a.Close()
	}
}

// TestListenNotASocket: a symbolic link (to a socket or to a file) or a file at the path is
// refused and left as it was.
func TestListenNotASocket(t *testing.T) {
	d := dir(t)
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	link := filepath.Join(d, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(d, "file")
	os.WriteFile(file, []byte("keep"), 0o644)
	for _, p := range []string{link, file} {
		if l, err := Listen(p); err == nil || !strings.Contains(err.Error(), "not a socket") {
			if l != nil {
				l.Close()
			}
			t.Errorf("Listen(%s): %v, want refused", p, err)
		}
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
		t.Errorf("the link was touched: %v %v", fi, err)
	}
	for _, p := range []string{target, file} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s was touched: %v %v", p, fi, err)
		}
		if b, _ := os.ReadFile(p); string(b) != "keep" {
			t.Errorf("%s was written: %q", p, b)
		}
	}
}

// TestListenDirectory: a directory others may write to (group- or world-writable), a
// symbolic link to a directory, and one owned by another user are refused, and their modes
// left alone; a relative path is refused.
func TestListenDirectory(t *testing.T) {
	for _, mode := range []os.FileMode{0o770, 0o775, os.ModeSticky | 0o777} {
		d := dir(t)
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		if l, err := Listen(filepath.Join(d, "s")); err == nil || !strings.Contains(err.Error(), "writable by others") {
			if l != nil {
				l.Close()
			}
			t.Errorf("in a directory of mode %v: %v, want refused", mode, err)
		}
		if fi, _ := os.Stat(d); fi.Mode()&(os.ModePerm|os.ModeSticky) != mode {
			t.Errorf("directory mode changed to %v", fi.Mode())
		}
	}
	real := dir(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if l, err := Listen(filepath.Join(link, "s")); err == nil || !strings.Contains(err.Error(), "not a directory owned by") {
		if l != nil {
			l.Close()
		}
		t.Errorf("in a symbolic link to a directory: %v, want refused", err)
	}
	if os.Geteuid() == 0 {
		other := dir(t)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if l, err := Listen(filepath.Join(other, "s")); err == nil || !strings.Contains(err.Error(), "not a directory owned by") {
			if l != nil {
				l.Close()
			}
			t.Errorf("in a directory owned by nobody: %v, want refused", err)
		}
	}
	if l, err := Listen("run/s"); err == nil || !strings.Contains(err.Error(), "not an absolute path") {
		if l != nil {
			l.Close()
		}
		t.Errorf("a relative path: %v, want refused", err)
	}
}
