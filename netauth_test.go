// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"io"
	"net"
	"testing"

	"golang.org/x/net/nettest"
)

func TestDialEchoAndResume(t *testing.T) {
	ts := newTestServer(t, nil)
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	ts.serveEcho()
	cfg := ts.clientConfig(alice)
	for i, wantResumed := range []bool{false, true, true} {
		c, err := Dial("tcp", ts.addr, cfg)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		msg := []byte("hello netauth")
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != string(msg) {
			t.Fatalf("echo %d: %q %v", i, buf, err)
		}
		id := c.Identity()
		if id.Resumed != wantResumed || id.User != "alice" || id.Service != "test" || id.HostKeyFingerprint == "" || id.KeyFingerprint == "" {
			t.Fatalf("connection %d: identity %+v, want resumed=%v", i, id, wantResumed)
		}
		c.Close()
	}
}

func TestConnNettest(t *testing.T) {
	ts := newTestServer(t, nil)
	alice := newTestUser(t, "alice")
	ts.allow(alice)
	cfg := ts.clientConfig(alice)
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		accepted := make(chan net.Conn, 1)
		acceptErr := make(chan error, 1)
		go func() {
			c, err := ts.ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}()
		cc, err := Dial("tcp", ts.addr, cfg)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := cc.Handshake(); err != nil {
			return nil, nil, nil, err
		}
		select {
		case sc := <-accepted:
			return cc, sc, func() { cc.Close(); sc.Close() }, nil
		case err := <-acceptErr:
			return nil, nil, nil, err
		}
	})
}
