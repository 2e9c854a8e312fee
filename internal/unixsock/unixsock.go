// SPDX-License-Identifier: Apache-2.0

// Package unixsock makes the listening Unix sockets of netauthd's local interfaces, its
// control socket and its metrics socket, so that only netauthd's own user can reach them
// and nobody else can put something in their place.
package unixsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Listen makes a Unix socket at path, mode 0600, and listens on it; closing the listener
// removes it.
//
// path must be absolute. Its directory, created with mode 0700 if missing, must be a
// directory (not a symbolic link to one) owned by this process's user; one that was there
// keeps its mode, and is refused if others may write to it (they could swap the socket). A
// socket left at path by an earlier run is replaced; one that a process still listens on,
// and anything that is not a socket (a symbolic link, a file), is an error and left alone.
// The socket is made with mode 0600 (its mode is set before it is bound to path), so that
// it is never reachable by others, and nothing is changed through a name afterwards.
func Listen(path string) (*net.UnixListener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%q: not an absolute path", path)
	}
	if err := checkDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process (another netauthd?) listens on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the old socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// Linux gives the socket file the mode of the socket's own inode (less the umask) when it
	// binds it: fchmod before bind makes it 0600 from the start. bind never follows a
	// symbolic link, and fails on any name already there.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = unix.Fchmod(int(fd), 0o600) }); cerr != nil {
			return cerr
		}
		return err
	}}
	l, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, err
	}
	ln := l.(*net.UnixListener)
	ln.SetUnlinkOnClose(true)
	// What was made must be what was wanted (a kernel that ignored the fchmod would not).
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm()&0o077 != 0 {
		ln.Close()
		if err == nil {
			err = fmt.Errorf("%s: made with mode %v, want 0600", path, fi.Mode())
		}
		return nil, err
	}
	return ln, nil
}

// checkDir makes dir with mode 0700 if it is missing, and checks that it is a directory
// owned by this process's user that nobody else may write to.
func checkDir(dir string) error {
	_, statErr := os.Lstat(dir)
	created := errors.Is(statErr, os.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || st.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("directory %s is not a directory owned by uid %d", dir, os.Geteuid())
	}
	if created {
		// MkdirAll's mode went through the umask.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("directory: %w", err)
		}
	} else if fi.Mode().Perm()&0o022 != 0 {
		// A directory that was there (/run, /tmp) is not narrowed, which would lock others out
		// of it, nor used when others may write to it: they could swap the socket.
		return fmt.Errorf("directory %s is writable by others than its owner (mode %v)", dir, fi.Mode().Perm())
	}
	return nil
}
