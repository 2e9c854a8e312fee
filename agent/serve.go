// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"
	"golang.org/x/sys/unix"
)

// Listen creates a private directory (mode 0700) named netauth-* in dir, or
// in os.TempDir() if dir is empty, and listens on a Unix socket named
// agent.<pid> inside it. It returns the listener and the socket's path.
// Closing the listener removes the socket; removing the directory is up to
// the caller.
func Listen(dir string) (ln *net.UnixListener, path string, err error) {
	if dir == "" {
		dir = os.TempDir()
	}
	private, err := os.MkdirTemp(dir, "netauth-")
	if err != nil {
		return nil, "", fmt.Errorf("agent: listen: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(private)
		}
	}()
	if err := os.Chmod(private, 0o700); err != nil {
		return nil, "", fmt.Errorf("agent: listen: %w", err)
	}
	path = filepath.Join(private, "agent."+strconv.Itoa(os.Getpid()))
	ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, "", fmt.Errorf("agent: listen: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, "", fmt.Errorf("agent: listen: %w", err)
	}
	return ln, path, nil
}

// PeerCred returns the credentials of the process at the other end of c, as
// the kernel recorded them when the connection was made (SO_PEERCRED).
func PeerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("agent: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, fmt.Errorf("agent: peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, fmt.Errorf("agent: peer credentials: %w", credErr)
	}
	return cred, nil
}

// Serve accepts connections on ln and serves the ssh-agent protocol on each,
// one goroutine per connection. Only processes running as the agent's own
// uid or as root are served: every connection is first checked with
// SO_PEERCRED, and connections from anyone else, or that are not Unix
// connections, are logged and closed.
//
// Serve returns nil when ctx is done, after closing ln and every open
// connection and waiting for their goroutines to finish. It returns an
// error if accepting fails for another reason.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		closed bool
		conns  = make(map[net.Conn]struct{})
	)
	shutdown := func() {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		closed = true
		ln.Close()
		for c := range conns {
			c.Close()
		}
	}
	stop := context.AfterFunc(ctx, shutdown)
	defer func() {
		stop()
		shutdown()
		wg.Wait()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				a.log.Warn("accept failed; retrying", "err", err, "delay", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			return fmt.Errorf("agent: accept: %w", err)
		}
		backoff = 0
		mu.Lock()
		if closed {
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			a.serveConn(c)
		})
	}
}

// isTemporary reports whether an accept error is worth retrying.
func isTemporary(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// serveConn checks the peer of c and serves it.
func (a *Agent) serveConn(c net.Conn) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		a.log.Warn("refused a connection that is not a Unix connection", "remote", c.RemoteAddr().String())
		return
	}
	cred, err := PeerCred(uc)
	if err != nil {
		a.log.Warn("refused a connection whose peer is unknown", "err", err)
		return
	}
	if int(cred.Uid) != a.uid && cred.Uid != 0 {
		a.log.Warn("refused a connection from another user", "uid", cred.Uid, "pid", cred.Pid)
		return
	}
	if err := sshagent.ServeAgent(a, c); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		a.log.Debug("agent connection ended", "pid", cred.Pid, "err", err)
	}
}
