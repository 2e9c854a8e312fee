// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"golang.org/x/sys/unix"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/testutil"
)

// TestWorkerReportsDeadConnection: a connection netauthd hands over that the worker cannot
// take, here one its client reset before the worker could send the verdict, is acknowledged
// and reported done at once. Without that, netauthd waited for the adoption, then stopped the
// worker with every session in it (every user's, for a service whose one worker serves them
// all) and handed the dead connection to another worker, and another.
func TestWorkerReportsDeadConnection(t *testing.T) {
	daemonEnd, f, err := handoff.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer daemonEnd.Close()
	workerEnd, err := handoff.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	l := &Listener{ready: make(chan *Conn), done: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
	l.worker = &workerSource{ch: workerEnd, log: l.log, active: make(map[uint64]*Conn)}
	l.wg.Add(1)
	go l.worker.receive(l)
	defer l.Close()

	// A connection reset by its client: the worker's verdict cannot be sent on it.
	client, server := testutil.TCPPair(t)
	client.SetLinger(0)
	client.Close()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err == nil {
		t.Fatal("read from a reset connection succeeded")
	}
	sf, err := server.File()
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	hc := &handoff.Conn{
		State:      &record.State{RekeyAfter: record.DefaultRekeyAfter},
		Pending:    []byte{0},
		RemoteAddr: client.LocalAddr().String(), LocalAddr: server.LocalAddr().String(),
	}
	hc.User, hc.Service = "alice", "whoami"
	hc.SetKey(testutil.Signer(t).PublicKey())
	hc.SetHostKey(testutil.Signer(t).PublicKey())
	if err := daemonEnd.Send(&handoff.Message{Type: handoff.TypeConn, ID: 42, Payload: hc.Marshal()}, sf); err != nil {
		t.Fatal(err)
	}
	// netauthd waits 10 s for an adoption; the answer must come well before.
	daemonEnd.SetReadDeadline(time.Now().Add(2 * time.Second))
	for _, want := range []handoff.Type{handoff.TypeAck, handoff.TypeDone} {
		m, mf, err := daemonEnd.Recv()
		if mf != nil {
			mf.Close()
		}
		if err != nil || m.Type != want || m.ID != 42 {
			t.Fatalf("worker answered %+v, %v; want %v 42", m, err, want)
		}
	}
}

// TestWorkerAdoptsDescriptorAsIs: a worker uses the descriptor netauthd hands over as it came,
// with the addresses netauthd sent: no copy of it (net.FileConn made one, and asked the kernel
// for what netauthd already said), and the connection works (the Verdict goes out, closing
// the write side reaches the client).
func TestWorkerAdoptsDescriptorAsIs(t *testing.T) {
	daemonEnd, f, err := handoff.Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer daemonEnd.Close()
	workerEnd, err := handoff.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	w := &workerSource{ch: workerEnd, log: slog.New(slog.DiscardHandler), active: make(map[uint64]*Conn)}

	client, server := testutil.TCPPair(t)
	sf, err := server.File()
	if err != nil {
		t.Fatal(err)
	}
	server.Close()
	hc := &handoff.Conn{
		State:      &record.State{RekeyAfter: record.DefaultRekeyAfter},
		Pending:    []byte{0x17, 0x17, 0x17},
		RemoteAddr: "[2001:db8::7]:4242", LocalAddr: "192.0.2.1:443", // what netauthd says, not the socket's
	}
	hc.User, hc.Service = "alice", "whoami"
	hc.SetKey(testutil.Signer(t).PublicKey())
	hc.SetHostKey(testutil.Signer(t).PublicKey())
	if err := daemonEnd.Send(&handoff.Message{Type: handoff.TypeConn, ID: 7, Payload: hc.Marshal()}, sf); err != nil {
		t.Fatal(err)
	}
	sf.Close()
	m, rf, err := workerEnd.Recv()
	if err != nil || rf == nil {
		t.Fatalf("Recv: %v, %v", err, rf)
	}
	before := testutil.OpenDescriptors(t)
	c, err := w.adopt(m, rf)
	if err != nil {
		t.Fatal(err)
	}
	if after := testutil.OpenDescriptors(t); after != before {
		t.Errorf("adopting the connection changed the open descriptors from %d to %d (a copy)", before, after)
	}
	if _, ok := c.NetConn().(*fileConn); !ok {
		t.Errorf("the connection is a %T, not the descriptor as it came", c.NetConn())
	}
	if got := c.RemoteAddr().String(); got != "[2001:db8::7]:4242" {
		t.Errorf("RemoteAddr = %s, want the address netauthd sent", got)
	}
	if got := c.LocalAddr().String(); got != "192.0.2.1:443" {
		t.Errorf("LocalAddr = %s, want the address netauthd sent", got)
	}
	// The pending Verdict went out on the descriptor; CloseWrite ends the client's stream.
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 3)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "\x17\x17\x17" {
		t.Fatalf("client read %x, %v; want the pending bytes", got, err)
	}
	// What callers of NetConn used from the *net.TCPConn they used to get.
	tcpLike, ok := c.NetConn().(interface {
		SetLinger(int) error
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		t.Fatal("the worker's NetConn has no SetLinger or SyscallConn")
	}
	if err := tcpLike.SetLinger(5); err != nil {
		t.Fatalf("SetLinger: %v", err)
	}
	raw, err := tcpLike.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var linger *unix.Linger
	raw.Control(func(fd uintptr) { linger, err = unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER) })
	if err != nil || linger.Onoff != 1 || linger.Linger != 5 {
		t.Fatalf("SO_LINGER after SetLinger(5): %+v, %v", linger, err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	rest, err := io.ReadAll(client)
	if err != nil || len(rest) == 0 {
		t.Fatalf("after CloseWrite the client read %d bytes, %v; want a close record, then the end", len(rest), err)
	}
	c.Close()
}
