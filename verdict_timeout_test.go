// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// TestReadDeadlineBeforeVerdict: a client's read deadline that passes while the server's
// verdict is still awaited is a timeout like any other (net.Conn): with the deadline moved,
// the next Read reads the verdict and then the server's data.
func TestReadDeadlineBeforeVerdict(t *testing.T) {
	ts := newTestServer(t, func(cfg *ServerConfig) {
		cfg.Authorize = func(context.Context, *Identity) error {
			time.Sleep(400 * time.Millisecond)
			return nil
		}
	})
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	ts.serveEcho()
	c, err := Dial("tcp", ts.addr, ts.clientConfig(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 5)
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read before the verdict: %v, want a timeout", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("Read after the deadline moved: %q, %v", buf, err)
	}
}
