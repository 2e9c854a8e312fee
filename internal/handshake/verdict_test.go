// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"ubns.dev/netauth/internal/record"
)

// k2Core is a ServerCore whose Verdict frame is wrapped in records a holder of the server's
// handshake-record key (netauthd's acceptor) can make: before, sealed under k2 ahead of the
// Verdict, and after, the frames that follow it. delay holds the Commit back.
type k2Core struct {
	*ServerCore
	before func(h *record.Half) []byte
	after  []byte
	delay  time.Duration
}

func (c *k2Core) Commit(req *CommitRequest, st *record.State) (*Accepted, error) {
	time.Sleep(c.delay)
	var pre []byte
	if c.before != nil {
		h := record.NewHalf(st.SendKey, st.SendNonce)
		pre = c.before(h)
		h.Zero()
		st.SendNonce++
	}
	acc, err := c.ServerCore.Commit(req, st)
	if err == nil && acc.Handover != nil {
		v := append(pre, acc.Handover.Verdict...)
		acc.Handover.Verdict = append(v, c.after...)
	}
	return acc, err
}

// verdictRun runs a handshake against core over loopback TCP; the server, once it accepted,
// sends "pong" under its application key. It returns the client's side.
func verdictRun(t *testing.T, e *env, core Core) (*Client, *record.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		rc := record.NewConn(nc)
		if _, err := Serve(rc, core, nc.RemoteAddr().String(), nil); err == nil {
			_, _ = rc.Write([]byte("pong"))
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	rc := record.NewConn(nc)
	cli, err := RunClient(rc, e.cli)
	if err != nil {
		t.Fatal(err)
	}
	return cli, rc
}

// TestVerdictFailureIsFinal: a record other than the Verdict where the Verdict is due is
// fatal (§6). A man in the middle holding k2 puts a data record before an accepting Verdict,
// then a data record sealed under an all-zero key. The client's ReadVerdict fails, and asked
// again it fails again: it must neither take the Verdict that follows nor, having wiped its
// secrets, install an application key of zeros under which anyone can write "the server's"
// data; nor does its record layer read anything more.
func TestVerdictFailureIsFinal(t *testing.T) {
	e := newEnv(t)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var zero [32]byte
	forged, _ := record.NewHalf(zero, 0).Seal(nil, record.TypeData, []byte("injected"))
	kc := &k2Core{ServerCore: core, after: forged, before: func(h *record.Half) []byte {
		b, _ := h.Seal(nil, record.TypeData, []byte("early"))
		return b
	}}
	cli, rc := verdictRun(t, e, kc)
	if _, err := cli.ReadVerdict(time.Now()); err == nil {
		t.Fatal("a data record instead of the Verdict was accepted")
	}
	if _, err := cli.ReadVerdict(time.Now()); err == nil {
		t.Error("asked again, the client read on past a data record where the Verdict was due")
	}
	_ = rc.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 16)
	if n, err := rc.Read(buf); err == nil {
		t.Errorf("after a failed Verdict the client reads %q as the server's data", buf[:n])
	}
}

// TestVerdictAfterTimeout: a Verdict that comes after the client's read deadline passed can
// still be read once the deadline is lifted, with the application key of the key schedule
// (not one wiped at the timeout).
func TestVerdictAfterTimeout(t *testing.T) {
	e := newEnv(t)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cli, rc := verdictRun(t, e, &k2Core{ServerCore: core, delay: 300 * time.Millisecond})
	_ = rc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := cli.ReadVerdict(time.Now()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadVerdict before the deadline: %v, want a timeout", err)
	}
	_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	sess, err := cli.ReadVerdict(time.Now())
	if err != nil {
		t.Fatalf("ReadVerdict after the timeout: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v; want the server's pong", buf, err)
	}
	if sess == nil || sess.Secret == nil || string(sess.Secret) == string(make([]byte, 32)) {
		t.Fatal("the session after a timed-out read has no resumption secret")
	}
}
