// SPDX-License-Identifier: Apache-2.0

package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen makes the manager's side: a datagram socket at name (a path, or "@..." abstract).
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// TestNotify sends each state to a path socket and an abstract one, in order, one datagram
// each, and unsets NOTIFY_SOCKET.
func TestNotify(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify"),
		fmt.Sprintf("@netauth-sdnotify-test-%d", os.Getpid()),
	} {
		t.Run(name, func(t *testing.T) {
			c := listen(t, name)
			t.Setenv(Env, name)
			n, err := FromEnv()
			if err != nil || n == nil {
				t.Fatalf("FromEnv: %v %v", n, err)
			}
			if v, ok := os.LookupEnv(Env); ok {
				t.Errorf("%s still set (%q) after FromEnv", Env, v)
			}
			before, _ := MonotonicUsec()
			if err := n.Ready("serving 2\nREADY=0"); err != nil {
				t.Fatal(err)
			}
			if got, want := read(t, c), "READY=1\nSTATUS=serving 2 READY=0"; got != want {
				t.Errorf("Ready sent %q, want %q", got, want)
			}
			if err := n.Reloading(""); err != nil {
				t.Fatal(err)
			}
			got := read(t, c)
			after, _ := MonotonicUsec()
			lines := strings.Split(got, "\n")
			if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
				t.Fatalf("Reloading sent %q", got)
			}
			usec, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
			if err != nil || usec < before || usec > after {
				t.Errorf("MONOTONIC_USEC=%d, want between %d and %d (%v)", usec, before, after, err)
			}
			n.Stopping("")
			if got := read(t, c); got != "STOPPING=1" {
				t.Errorf("Stopping sent %q", got)
			}
		})
	}
}

// TestNoSocket: without NOTIFY_SOCKET nothing is sent and nothing fails; a relative path is
// refused.
func TestNoSocket(t *testing.T) {
	t.Setenv(Env, "")
	n, err := FromEnv()
	if n != nil || err != nil {
		t.Fatalf("empty %s: %v %v", Env, n, err)
	}
	if err := n.Ready("x"); err != nil {
		t.Fatal(err)
	}
	t.Setenv(Env, "relative/sock")
	if _, err := FromEnv(); err == nil {
		t.Fatal("a relative NOTIFY_SOCKET was accepted")
	}
}
