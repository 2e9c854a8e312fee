// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
)

// noCloseYet checks that the server has neither sent more nor closed its direction: a read
// times out.
func noCloseYet(t *testing.T, c *netauth.Conn, r *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	b, err := r.ReadByte()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v; want a timeout: the server must wait for the client's close", b, err)
	}
	_ = c.SetReadDeadline(time.Time{})
}

// TestWhoami: whoami answers each line with one line, keeps the connection open until the
// client closes its side, then answers once more and closes (docs/CONFIG.md).
func TestWhoami(t *testing.T) {
	s := newServer(t, Whoami)
	for _, tc := range []struct {
		name, send string
		lines      int // answered before the client's close
	}{
		{"two lines", "?\n?\n", 2},
		{"nothing", "", 0},
		{"unfinished line", "?", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.dial(t)
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(c)
			for range tc.lines {
				line, err := r.ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "user=alice ") || !strings.Contains(line, " service=svc ") {
					t.Fatalf("answer %q, %v", line, err)
				}
			}
			noCloseYet(t, c, r)
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("after the client's close: %v, want the server's clean close", err)
			}
			if lines := strings.Split(strings.TrimSuffix(string(rest), "\n"), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "user=alice ") {
				t.Fatalf("after the client's close: %q, want exactly one more answer", rest)
			}
		})
	}
}

// TestEcho: echo sends back what it reads and closes only after the client's close.
func TestEcho(t *testing.T) {
	s := newServer(t, Echo)
	c := s.dial(t)
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	buf := make([]byte, 5)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echoed %q, %v", buf, err)
	}
	noCloseYet(t, c, r)
	if _, err := io.WriteString(c, "bye"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after the client's close: %q, %v; want \"bye\" and the server's clean close", rest, err)
	}
}
