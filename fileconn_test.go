// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/testutil"
)

// TestFileConnErrors: a handed-over descriptor reports errors as net's own connections do: a
// read that its deadline interrupts fails with a net.Error whose Timeout is true (net/http's
// server asks exactly that when it interrupts its own background read between requests, and
// otherwise cancels every later request on the connection), the end of the stream is io.EOF,
// and a read after Close is net.ErrClosed.
func TestFileConnErrors(t *testing.T) {
	client, server := testutil.TCPPair(t)
	defer client.Close()
	sf, err := server.File()
	if err != nil {
		t.Fatal(err)
	}
	server.Close()
	fd, err := unix.Dup(int(sf.Fd()))
	sf.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "conn") // pollable, as a descriptor that arrives non-blocking
	c, ok := newFileConn(f, "127.0.0.1:1", "127.0.0.1:2")
	if !ok {
		f.Close()
		t.Fatal("newFileConn refused a non-blocking socket")
	}
	defer c.Close()
	buf := make([]byte, 8)
	_ = c.SetReadDeadline(time.Unix(1, 0))
	_, err = c.Read(buf)
	ne, isNetErr := err.(net.Error) // a type assertion, as net/http makes it
	if !isNetErr || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %T %v; want a net.Error timeout wrapping os.ErrDeadlineExceeded", err, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); n != 1 || err != nil {
		t.Fatalf("read after the deadline was cleared: %d, %v", n, err)
	}
	client.Close()
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read at the end of the stream: %T %v; want io.EOF", err, err)
	}
	c.Close()
	if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %T %v; want net.ErrClosed", err, err)
	}
}
