// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/policy"
)

// privateNetns reports whether the workers of sc run in a network namespace of their own:
// an instance service whose program listens on a loopback TCP port, which in netauthd's
// namespace every local user could reach.
func privateNetns(sc *policy.Service) bool {
	return sc.Mode == policy.Instance && sc.InstanceListen == policy.InstanceTCP
}

// hostNetns returns the inode of netauthd's network namespace, which an instance worker
// listening on TCP checks it is not in.
func hostNetns() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		return 0, fmt.Errorf("finding netauthd's network namespace: %w", err)
	}
	return st.Ino, nil
}

// startInNetns starts cmd in a new network namespace whose loopback interface is up and
// which holds nothing else: only cmd, and what it starts, can reach what listens there. A
// thread locked for the purpose makes the namespace and starts cmd (a child is created in its
// creating thread's namespace), then goes back to netauthd's namespace before it runs
// anything else. It must not end instead: the kernel sends a child its parent-death signal
// when the thread that started it ends. It needs root (CAP_SYS_ADMIN); there is no fallback
// to netauthd's namespace.
func startInNetns(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening netauthd's network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("creating a network namespace for the instance (instance-listen tcp needs netauthd to run as root, on a kernel with network namespaces): %w", err)
			return
		}
		err = loopbackUp()
		if err != nil {
			err = fmt.Errorf("bringing up the loopback interface of the instance's network namespace: %w", err)
		} else {
			err = cmd.Start()
		}
		if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
			// The thread stays in the new namespace and ends with this goroutine (it stays
			// locked), and what it started dies with it.
			if err == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
			errc <- fmt.Errorf("returning to netauthd's network namespace: %w", serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// loopbackUp sets the calling thread's network namespace's "lo" up.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// instanceReadyMargin is how much longer than the service's instance-start-timeout netauthd
// waits for an instance worker's TypeReady: the worker itself gives up at that timeout, and
// says why in the log.
const instanceReadyMargin = 2 * time.Second

// awaitInstance waits, for the worker of an instance service, until the worker says its
// instance accepts connections (handoff.TypeReady), before the worker is given any
// connection; for a worker of any other mode it returns at once.
func (w *worker) awaitInstance() error {
	if w.svc.Mode != policy.Instance {
		return nil
	}
	timeout := w.svc.StartTimeout() + instanceReadyMargin
	if err := w.ch.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	m, f, err := w.ch.Recv()
	if f != nil {
		f.Close()
	}
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("the user's instance of the service's program did not start (the worker's log lines say why): %w", err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the user's instance of the service's program did not accept connections within %v", timeout)
	case err != nil:
		return fmt.Errorf("waiting for the user's instance to start: %w", err)
	case m.Type != handoff.TypeReady:
		return fmt.Errorf("the instance worker sent a %v message before saying its instance is ready", m.Type)
	}
	return w.ch.SetReadDeadline(time.Time{})
}

// instanceFailed stops a worker whose instance did not start, with reap (which waits for the
// process and its output), and logs it, saying why (its control loop, which logs the exit of
// a worker that ran, never starts).
func (w *worker) instanceFailed(err error, reap func()) {
	_ = syscall.Kill(-w.pid, syscall.SIGKILL)
	_ = w.cmd.Process.Kill()
	reap()
	w.ch.Close()
	w.d.metrics.WorkerExited()
	w.d.log.Error("the worker's instance did not start; the connection is refused", append(w.logTags(w.pid), "err", err)...)
}
