// SPDX-License-Identifier: Apache-2.0

// Package sdnotify tells the service manager (systemd, or any manager speaking its
// protocol) about a service's state: one datagram of "KEY=VALUE" lines to the Unix socket
// named by $NOTIFY_SOCKET, as sd_notify(3) does. A name starting with "@" is in the abstract
// namespace.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Env is the variable the service manager sets to its notification socket.
const Env = "NOTIFY_SOCKET"

// Notifier sends state changes to the service manager. The nil Notifier, returned when the
// process was not started with $NOTIFY_SOCKET, sends nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns the Notifier for $NOTIFY_SOCKET, or nil when it is not set, and unsets
// the variable so that no process started later sends to the manager in this service's name.
// It fails for an address it cannot use (neither an absolute path nor an abstract "@" name).
func FromEnv() (*Notifier, error) {
	name, ok := os.LookupEnv(Env)
	if !ok || name == "" {
		return nil, nil
	}
	os.Unsetenv(Env)
	if !strings.HasPrefix(name, "/") && !(strings.HasPrefix(name, "@") && len(name) > 1) {
		return nil, fmt.Errorf("%s=%q: want an absolute path or an abstract name starting with \"@\"", Env, name)
	}
	// The net package turns a leading "@" into the abstract namespace's leading NUL.
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}, nil
}

// Send sends the lines (such as "READY=1", "STATUS=...") in one datagram. Newlines inside a
// line are replaced by spaces, so that a status cannot add a state of its own.
func (n *Notifier) Send(lines ...string) error {
	if n == nil || len(lines) == 0 {
		return nil
	}
	clean := make([]string, len(lines))
	for i, l := range lines {
		clean[i] = strings.ReplaceAll(l, "\n", " ")
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	msg := strings.Join(clean, "\n")
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sd_notify: sending %q: %w", clean[0], err)
	}
	return nil
}

// Ready says the service is up (READY=1), with status as its STATUS= line if not empty.
func (n *Notifier) Ready(status string) error {
	return n.Send(withStatus("READY=1", status)...)
}

// Reloading says the service is reloading its configuration (RELOADING=1, with the
// MONOTONIC_USEC= that Type=notify-reload needs); Ready follows when it is done.
func (n *Notifier) Reloading(status string) error {
	if n == nil {
		return nil
	}
	usec, err := MonotonicUsec()
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return n.Send(withStatus("RELOADING=1", status, "MONOTONIC_USEC="+strconv.FormatUint(usec, 10))...)
}

// Stopping says the service is shutting down (STOPPING=1).
func (n *Notifier) Stopping(status string) error {
	return n.Send(withStatus("STOPPING=1", status)...)
}

func withStatus(state, status string, more ...string) []string {
	out := append([]string{state}, more...)
	if status != "" {
		out = append(out, "STATUS="+status)
	}
	return out
}

// MonotonicUsec returns CLOCK_MONOTONIC in microseconds, the clock of MONOTONIC_USEC.
func MonotonicUsec() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	if ts.Sec < 0 {
		return 0, errors.New("reading CLOCK_MONOTONIC: negative time")
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3, nil
}
