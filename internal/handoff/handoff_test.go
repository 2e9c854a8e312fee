// SPDX-License-Identifier: Apache-2.0

package handoff

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"golang.org/x/crypto/ssh"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/record"
)

// testKeys are the two directions' keys of a test connection.
var testKeys = [2][32]byte{
	{0: 0xa1, 31: 0x1a},
	{0: 0xb2, 31: 0x2b},
}

// keyedPair returns two keyed record connections talking to each other over loopback TCP:
// the client's, and the server's with its TCP socket.
func keyedPair(t testing.TB) (client, server *record.Conn, serverTCP *net.TCPConn) {
	t.Helper()
	na, nb := testutil.TCPPair(t)
	client, server = record.NewConn(na), record.NewConn(nb)
	client.SetKeys(record.NewHalf(testKeys[0], 0), record.NewHalf(testKeys[1], 0))
	server.SetKeys(record.NewHalf(testKeys[1], 0), record.NewHalf(testKeys[0], 0))
	return client, server, nb
}

// pair returns both ends of a control channel as Channels, closed at the end of the test.
func pair(t testing.TB) (daemon, worker *Channel) {
	t.Helper()
	d, f, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	w, err := FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); w.Close() })
	return d, w
}

// countFDs returns how many descriptors this process has open.
func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// checkFDs fails the test if the process has a different number of descriptors than before.
func checkFDs(t testing.TB, before int) {
	t.Helper()
	if after := countFDs(t); after != before {
		t.Errorf("%d descriptors open, %d before: a descriptor leaked or was closed", after, before)
	}
}

// rawSend sends b as one datagram carrying fds, bypassing Send's checks.
func rawSend(t testing.TB, c *Channel, b []byte, fds ...int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.conn.WriteMsgUnix(b, oob, nil); err != nil {
		t.Fatalf("raw send of %d bytes with %d descriptors: %v", len(b), len(fds), err)
	}
}

// pipeFile returns the read end of a pipe, closed at the end of the test.
func pipeFile(t testing.TB) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r
}

// pipeFDs returns the descriptors of n pipes' read ends, closed at the end of the test.
func pipeFDs(t testing.TB, n int) []int {
	t.Helper()
	var fds []int
	for range n {
		fds = append(fds, int(pipeFile(t).Fd()))
	}
	return fds
}

// testConn returns a Conn with every field set.
func testConn() *Conn {
	c := withKeys(&Conn{
		State: &record.State{
			SendKey: testKeys[0], SendNonce: 7, SendCount: 3,
			RecvKey: testKeys[1], RecvNonce: 9, RekeyAfter: 1000,
			Unread: []byte("raw bytes"), Plain: []byte("decrypted"),
		},
		RemoteAddr: "192.0.2.1:40000",
		LocalAddr:  "192.0.2.2:993",
	})
	c.User, c.Service, c.Resumed = "alice", "imap", true
	c.AuthTime = time.Date(2026, 11, 27, 12, 30, 45, 123456789, time.UTC)
	c.HandshakeHash = bytes.Repeat([]byte{0x42}, 32)
	c.Statement, c.Signature = []byte("statement"), []byte("signature")
	return c
}

// withKeys gives c a user key and a host key (fixed Ed25519 keys), which every Conn needs.
func withKeys(c *Conn) *Conn {
	c.SetKey(testPublicKey(1))
	c.SetHostKey(testPublicKey(2))
	return c
}

// testPublicKey returns the Ed25519 public key of a seed of 32 bytes b.
func testPublicKey(b byte) ssh.PublicKey {
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize)).Public())
	if err != nil {
		panic(err)
	}
	return k
}

// expectAck sends a TypeAck with ID id from one end and checks the other receives it: it follows a
// refused message, to show the refused one was consumed and the channel still works.
func expectAck(t testing.TB, from, to *Channel, id uint64) {
	t.Helper()
	if err := from.Send(&Message{Type: TypeAck, ID: id}, nil); err != nil {
		t.Fatal(err)
	}
	m, f, err := to.Recv()
	if err != nil || f != nil || m.Type != TypeAck || m.ID != id {
		t.Fatalf("after a refused message: got %+v %v %v, want ack %d", m, f, err, id)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	d, w := pair(t)
	conn := testConn().Marshal()
	for _, tc := range []struct {
		m    Message
		from *Channel
		to   *Channel
		fd   bool
	}{
		{Message{Type: TypeConn, ID: 1, Payload: conn}, d, w, true},
		{Message{Type: TypeAck, ID: 1}, w, d, false},
		{Message{Type: TypeDone, ID: 1<<64 - 1}, w, d, false},
		{Message{Type: TypeExit}, d, w, false},
		{Message{Type: TypeRevoke, ID: 0}, d, w, false},
		{Message{Type: TypeRevoke, Payload: []byte("SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG")}, d, w, false},
		{Message{Type: TypeRevoke, Payload: bytes.Repeat([]byte("x"), MaxRevokePayload)}, d, w, false},
	} {
		t.Run(tc.m.Type.String(), func(t *testing.T) {
			var sent *os.File
			if tc.fd {
				r, wp, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				defer wp.Close()
				sent = r
			}
			if err := tc.from.Send(&tc.m, sent); err != nil {
				t.Fatal(err)
			}
			m, f, err := tc.to.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if m.Type != tc.m.Type || m.ID != tc.m.ID || !bytes.Equal(m.Payload, tc.m.Payload) {
				t.Fatalf("received %v %d (%d bytes), sent %v %d (%d bytes)", m.Type, m.ID, len(m.Payload), tc.m.Type, tc.m.ID, len(tc.m.Payload))
			}
			if (f != nil) != tc.fd {
				t.Fatalf("received descriptor %v, want one: %v", f, tc.fd)
			}
			if f == nil {
				return
			}
			defer f.Close()
			flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
			if err != nil || flags&unix.FD_CLOEXEC == 0 {
				t.Errorf("received descriptor flags %#x %v, want close-on-exec", flags, err)
			}
			var a, b unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &a); err != nil {
				t.Fatal(err)
			}
			if err := unix.Fstat(int(sent.Fd()), &b); err != nil {
				t.Fatal(err)
			}
			if a.Ino != b.Ino || a.Dev != b.Dev {
				t.Error("received descriptor is not the one sent")
			}
		})
	}
}

func TestPairBuffers(t *testing.T) {
	d, f, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	defer f.Close()
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("worker end flags %#x %v, want close-on-exec until ExtraFiles clears it", flags, err)
	}
	check := func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUF, unix.SO_RCVBUF} {
			n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt)
			if err != nil || n-32 < MaxMessage {
				t.Errorf("socket option %d = %d %v, want room for %d", opt, n, err, MaxMessage)
			}
		}
	}
	if err := d.sc.Control(check); err != nil {
		t.Fatal(err)
	}
	check(f.Fd())
	// The largest possible message passes in one datagram.
	w, err := FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	payload := bytes.Repeat([]byte{0x5a}, MaxMessage-HeaderLen)
	rf := pipeFile(t)
	if err := d.Send(&Message{Type: TypeConn, ID: 5, Payload: payload}, rf); err != nil {
		t.Fatal(err)
	}
	m, got, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	got.Close()
	if m.Type != TypeConn || !bytes.Equal(m.Payload, payload) {
		t.Fatalf("largest message arrived as %v with %d bytes", m.Type, len(m.Payload))
	}
}

// TestHandoffTCP moves the server end of a live record connection through the channel, as
// netauthd does, and checks the stream continues both ways, including bytes the client sent
// before the handoff.
func TestHandoffTCP(t *testing.T) {
	d, w := pair(t)
	client, server, serverTCP := keyedPair(t)
	for _, s := range []string{"early ", "records "} {
		if _, err := client.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ear" {
		t.Fatalf("server read %q %v", buf, err)
	}

	// Daemon side: export, marshal, send with the socket, forget.
	st, err := server.Export()
	if err != nil {
		t.Fatal(err)
	}
	hc := testConn()
	hc.State = st
	payload := hc.Marshal()
	hc.Zero()
	f, err := serverTCP.File()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Send(&Message{Type: TypeConn, ID: 42, Payload: payload}, f); err != nil {
		t.Fatal(err)
	}
	clear(payload)
	f.Close()
	server.Close() // detached: closes the daemon's socket without a close record

	// Worker side: receive, parse, import, continue.
	m, wf, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != TypeConn || m.ID != 42 || wf == nil {
		t.Fatalf("received %v %d %v", m.Type, m.ID, wf)
	}
	got, err := ParseConn(m.Payload)
	clear(m.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if got.User != "alice" || got.Service != "imap" || !got.Resumed {
		t.Fatalf("identity arrived as %+v", got)
	}
	nc, err := net.FileConn(wf)
	wf.Close()
	if err != nil {
		t.Fatal(err)
	}
	moved, err := record.Import(nc, got.State)
	got.Zero()
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	_ = moved.SetDeadline(time.Now().Add(20 * time.Second))
	if err := w.Send(&Message{Type: TypeAck, ID: 42}, nil); err != nil {
		t.Fatal(err)
	}
	if a, _, err := d.Recv(); err != nil || a.Type != TypeAck || a.ID != 42 {
		t.Fatalf("ack: %+v %v", a, err)
	}

	rest := make([]byte, len("ly records "))
	if _, err := io.ReadFull(moved, rest); err != nil || string(rest) != "ly records " {
		t.Fatalf("worker read %q %v", rest, err)
	}
	if _, err := client.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	after := make([]byte, 5)
	if _, err := io.ReadFull(moved, after); err != nil || string(after) != "after" {
		t.Fatalf("worker read %q %v", after, err)
	}
	if _, err := moved.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 5)
	if _, err := io.ReadFull(client, reply); err != nil || string(reply) != "reply" {
		t.Fatalf("client read %q %v", reply, err)
	}
	if err := moved.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Read(reply); err != io.EOF {
		t.Fatalf("client after the worker closed: %v, want io.EOF", err)
	}
}

// TestRetryAfterWorkerExit has the first worker exit with the connection still in flight: the
// daemon sees io.EOF instead of an acknowledgment and hands the same descriptor and state to a
// new worker, and the stream continues.
func TestRetryAfterWorkerExit(t *testing.T) {
	d1, w1 := pair(t)
	d2, w2 := pair(t)
	client, server, serverTCP := keyedPair(t)
	if _, err := client.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	st, err := server.Export()
	if err != nil {
		t.Fatal(err)
	}
	hc := withKeys(&Conn{State: st})
	hc.User = "bob"
	payload := hc.Marshal()
	defer clear(payload)
	f, err := serverTCP.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	server.Close()
	msg := &Message{Type: TypeConn, ID: 7, Payload: payload}
	if err := d1.Send(msg, f); err != nil {
		t.Fatal(err)
	}
	w1.Close() // the worker exits before reading
	m, _, err := d1.Recv()
	if !errors.Is(err, io.EOF) {
		t.Fatalf("daemon Recv from an exited worker: %+v %v, want io.EOF", m, err)
	}
	t.Logf("daemon Recv from an exited worker: %v", err)
	if _, _, err := d1.Recv(); err != io.EOF {
		t.Fatalf("second Recv from an exited worker: %v, want io.EOF", err)
	}
	if err := d1.Send(msg, f); err == nil {
		t.Fatal("Send to an exited worker succeeded")
	}
	if err := d2.Send(msg, f); err != nil {
		t.Fatal(err)
	}
	m, wf, err := w2.Recv()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseConn(m.Payload)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.FileConn(wf)
	wf.Close()
	if err != nil {
		t.Fatal(err)
	}
	moved, err := record.Import(nc, parsed.State)
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	_ = moved.SetDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, 6)
	if _, err := io.ReadFull(moved, got); err != nil || string(got) != "queued" {
		t.Fatalf("second worker read %q %v", got, err)
	}
}

func TestSendToClosedWorker(t *testing.T) {
	d, wf, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	wf.Close()
	_, serverTCP := testutil.TCPPair(t)
	before := countFDs(t)
	f, err := serverTCP.File()
	if err != nil {
		t.Fatal(err)
	}
	err = d.Send(&Message{Type: TypeConn, ID: 1, Payload: testConn().Marshal()}, f)
	if err == nil {
		t.Fatal("handoff to a closed worker succeeded")
	}
	t.Logf("send to a closed worker: %v", err)
	f.Close()
	checkFDs(t, before)
}

func TestRecvRefuses(t *testing.T) {
	d, w := pair(t)
	hdr := func(v, typ byte, payload []byte) []byte {
		b := append([]byte{v, typ, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9}, payload...)
		return b
	}
	conn := testConn().Marshal()
	for _, tc := range []struct {
		name     string
		b        []byte
		nfds     int
		noHeader bool // the header itself is invalid, so the error names no type and ID
	}{
		{"descriptor with ack", hdr(1, byte(TypeAck), nil), 1, false},
		{"descriptor with revoke", hdr(1, byte(TypeRevoke), nil), 1, false},
		{"two descriptors", hdr(1, byte(TypeConn), conn), 2, false},
		{"too many descriptors", hdr(1, byte(TypeConn), conn), 20, false},
		{"conn without descriptor", hdr(1, byte(TypeConn), conn), 0, false},
		{"conn without payload", hdr(1, byte(TypeConn), nil), 1, false},
		{"unknown type", hdr(1, 99, nil), 0, false},
		{"type zero", hdr(1, 0, nil), 0, false},
		{"unknown type with descriptor", hdr(1, 200, nil), 1, false},
		// The monitor requests that no longer exist are unknown types.
		{"former auth request (7)", hdr(1, 7, []byte("request")), 0, false},
		{"former deliver request (9)", hdr(1, 9, conn), 1, false},
		{"former deliver request (9) without descriptor", hdr(1, 9, nil), 0, false},
		{"former confirm request (11)", hdr(1, 11, make([]byte, 32)), 0, false},
		{"commit without descriptor", hdr(1, byte(TypeCommit), []byte("request")), 0, false},
		{"commit with two descriptors", hdr(1, byte(TypeCommit), []byte("request")), 2, false},
		{"commit without payload", hdr(1, byte(TypeCommit), nil), 1, false},
		{"begin with descriptor", hdr(1, byte(TypeBegin), []byte("request")), 1, false},
		{"version", hdr(2, byte(TypeAck), nil), 0, true},
		{"reserved", append([]byte{1, byte(TypeAck), 0, 1}, make([]byte, 8)...), 0, true},
		{"truncated header", []byte{1, byte(TypeAck), 0, 0, 0}, 0, true},
		{"truncated header with descriptor", []byte{1, byte(TypeConn)}, 1, true},
		{"one byte", []byte{1}, 0, true},
		{"ack with payload", hdr(1, byte(TypeAck), []byte("x")), 0, false},
		{"done with payload", hdr(1, byte(TypeDone), []byte("x")), 0, false},
		{"exit with payload", hdr(1, byte(TypeExit), []byte("x")), 0, false},
		{"long revoke", hdr(1, byte(TypeRevoke), make([]byte, MaxRevokePayload+1)), 0, false},
		{"oversized", hdr(1, byte(TypeConn), make([]byte, MaxMessage+1-HeaderLen)), 1, false},
		{"oversized without descriptor", make([]byte, MaxMessage+1), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds := pipeFDs(t, tc.nfds)
			before := countFDs(t)
			rawSend(t, d, tc.b, fds...)
			m, f, err := w.Recv()
			if err == nil {
				f.Close()
				t.Fatalf("accepted %+v", m)
			}
			if f != nil || m != nil {
				t.Errorf("refusal returned %v %v", m, f)
			}
			t.Logf("refused: %v", err)
			// The error says the message was consumed and, with a valid header, which one.
			var me *MessageError
			switch {
			case !errors.As(err, &me):
				t.Errorf("refusal is a %T, want a *MessageError", err)
			case me.HasHeader == tc.noHeader:
				t.Errorf("refusal has header %v, want %v", me.HasHeader, !tc.noHeader)
			case me.HasHeader && (me.Type != Type(tc.b[1]) || me.ID != 9):
				t.Errorf("refusal names %v %d, want %v 9", me.Type, me.ID, Type(tc.b[1]))
			}
			checkFDs(t, before)
			expectAck(t, d, w, 99)
		})
	}
}

func TestSendRefuses(t *testing.T) {
	d, _ := pair(t)
	r := pipeFile(t)
	for _, tc := range []struct {
		name string
		m    *Message
		fd   *os.File
	}{
		{"nil message", nil, nil},
		{"conn without descriptor", &Message{Type: TypeConn, Payload: []byte("x")}, nil},
		{"conn without payload", &Message{Type: TypeConn}, r},
		{"oversized conn", &Message{Type: TypeConn, Payload: make([]byte, MaxMessage-HeaderLen+1)}, r},
		{"ack with descriptor", &Message{Type: TypeAck}, r},
		{"exit with payload", &Message{Type: TypeExit, Payload: []byte("x")}, nil},
		{"long revoke", &Message{Type: TypeRevoke, Payload: make([]byte, MaxRevokePayload+1)}, nil},
		{"unknown type", &Message{Type: 77}, nil},
		{"former auth request", &Message{Type: 7, Payload: []byte("x")}, nil},
		{"former deliver request", &Message{Type: 9, Payload: []byte("x")}, r},
		{"former confirm request", &Message{Type: 11, Payload: []byte("x")}, nil},
		{"commit without descriptor", &Message{Type: TypeCommit, Payload: []byte("x")}, nil},
		{"begin with descriptor", &Message{Type: TypeBegin, Payload: []byte("x")}, r},
	} {
		if err := d.Send(tc.m, tc.fd); err == nil {
			t.Errorf("%s: sent", tc.name)
		}
	}
}

func TestRecvEOF(t *testing.T) {
	d, w := pair(t)
	if err := d.Send(&Message{Type: TypeExit}, nil); err != nil {
		t.Fatal(err)
	}
	d.Close()
	// A message queued before the close is still delivered, then io.EOF.
	if m, _, err := w.Recv(); err != nil || m.Type != TypeExit {
		t.Fatalf("queued message: %+v %v", m, err)
	}
	for range 2 {
		if m, f, err := w.Recv(); err != io.EOF || m != nil || f != nil {
			t.Fatalf("after peer closed: %+v %v %v, want io.EOF", m, f, err)
		}
	}
}

func TestRecvAfterClose(t *testing.T) {
	d, _ := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, _, err := d.Recv()
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	d.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Recv on a closed channel: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Recv did not return after Close")
	}
}

// TestDeadlines checks that a worker that stops reading cannot hold up a sender with a
// deadline, and that Recv honours a deadline too.
func TestDeadlines(t *testing.T) {
	d, w := pair(t)
	if err := d.SetWriteDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; err == nil; i++ {
		if i > 1e6 {
			t.Fatal("a million messages fit in an unread channel")
		}
		err = d.Send(&Message{Type: TypeExit}, nil)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Send to a full channel: %v, want a deadline error", err)
	}
	_ = d.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := d.Recv(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv with nothing to read: %v, want a deadline error", err)
	}
	_ = d.SetWriteDeadline(time.Time{})
	_ = w.SetReadDeadline(time.Time{})
}

func TestConcurrentSend(t *testing.T) {
	d, w := pair(t)
	const senders, each = 8, 50
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if err := w.Send(&Message{Type: TypeDone, ID: uint64(i*each + j)}, nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := make(map[uint64]bool)
	for range senders * each {
		m, _, err := d.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != TypeDone || seen[m.ID] {
			t.Fatalf("unexpected %+v", m)
		}
		seen[m.ID] = true
	}
	wg.Wait()
}

func TestFromFileRefuses(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := FromFile(r); err == nil {
		t.Error("FromFile accepted a pipe")
	} else {
		t.Logf("pipe: %v", err)
	}
	reg, err := os.CreateTemp(t.TempDir(), "ctl")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromFile(reg); err == nil {
		t.Error("FromFile accepted a regular file")
	}
	for _, typ := range []int{unix.SOCK_STREAM, unix.SOCK_DGRAM} {
		fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fds[1])
		if _, err := FromFile(os.NewFile(uintptr(fds[0]), "ctl")); err == nil {
			t.Errorf("FromFile accepted a Unix socket of type %d", typ)
		} else {
			t.Logf("type %d: %v", typ, err)
		}
	}
	_, tcp := testutil.TCPPair(t)
	f, err := tcp.File()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromFile(f); err == nil {
		t.Error("FromFile accepted a TCP socket")
	}
}

func TestFromFileClosesInherited(t *testing.T) {
	d, f, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fd := int(f.Fd())
	w, err := FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
		t.Error("the inherited descriptor is still open after FromFile")
	}
}

// helperEnv marks the child process of TestWorkerProcess.
const helperEnv = "NETAUTH_HANDOFF_TEST_WORKER"

// TestWorkerProcess hands a live connection to a worker in another process (this test binary
// re-executed as TestHelperWorker), which adopts it and echoes; the client sees the echo.
func TestWorkerProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	d, wf, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWorker$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1", Env+"=3")
	cmd.ExtraFiles = []*os.File{wf}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wf.Close()
	waited := false
	defer func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", out.String())
		}
	}()

	client, server, serverTCP := keyedPair(t)
	if _, err := client.Write([]byte("sent before the handoff|")); err != nil {
		t.Fatal(err)
	}
	st, err := server.Export()
	if err != nil {
		t.Fatal(err)
	}
	hc := testConn()
	hc.State = st
	payload := hc.Marshal()
	f, err := serverTCP.File()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Send(&Message{Type: TypeConn, ID: 1000, Payload: payload}, f); err != nil {
		t.Fatal(err)
	}
	if m, _, err := d.Recv(); err != nil || m.Type != TypeAck || m.ID != 1000 {
		t.Fatalf("ack: %+v %v", m, err)
	}
	// Acknowledged: the daemon forgets the keys and the descriptor.
	clear(payload)
	hc.Zero()
	f.Close()
	server.Close()

	if _, err := client.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	want := "echo:alice:sent before the handoff|after"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != want {
		t.Fatalf("client read %q %v, want %q", got, err, want)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if m, _, err := d.Recv(); err != nil || m.Type != TypeDone || m.ID != 1000 {
		t.Fatalf("done: %+v %v", m, err)
	}
	if _, err := client.Read(got); err != io.EOF {
		t.Fatalf("client after the worker closed: %v, want io.EOF", err)
	}
	if err := d.Send(&Message{Type: TypeExit}, nil); err != nil {
		t.Fatal(err)
	}
	waited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker: %v", err)
	}
	if m, _, err := d.Recv(); err != io.EOF {
		t.Fatalf("after the worker exited: %+v %v, want io.EOF", m, err)
	}
}

// TestHelperWorker is the worker process of TestWorkerProcess; it does nothing in a normal
// test run.
func TestHelperWorker(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("only runs as the worker of TestWorkerProcess")
	}
	if err := helperWorker(); err != nil {
		t.Fatal(err)
	}
}

func helperWorker() error {
	fd, err := strconv.Atoi(os.Getenv(Env))
	if err != nil {
		return err
	}
	ch, err := FromFile(os.NewFile(uintptr(fd), "netauth-control"))
	if err != nil {
		return err
	}
	defer ch.Close()
	m, f, err := ch.Recv()
	if err != nil {
		return err
	}
	if m.Type != TypeConn {
		return fmt.Errorf("first message is %v", m.Type)
	}
	hc, err := ParseConn(m.Payload)
	clear(m.Payload)
	if err != nil {
		return err
	}
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return err
	}
	rc, err := record.Import(nc, hc.State)
	hc.Zero()
	if err != nil {
		return err
	}
	if err := ch.Send(&Message{Type: TypeAck, ID: m.ID}, nil); err != nil {
		return err
	}
	_ = rc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := rc.Write([]byte("echo:" + hc.User + ":")); err != nil {
		return err
	}
	if _, err := io.Copy(rc, rc); err != nil {
		return err
	}
	if err := rc.Close(); err != nil {
		return err
	}
	if err := ch.Send(&Message{Type: TypeDone, ID: m.ID}, nil); err != nil {
		return err
	}
	m, _, err = ch.Recv()
	if err != nil {
		return err
	}
	if m.Type != TypeExit {
		return fmt.Errorf("expected exit, got %v", m.Type)
	}
	return nil
}

// TestRecvTurnsLingerOff: a socket arrives with SO_LINGER off, whatever its sender set, so the
// receiver's close of it never waits for as long as the sender chose (the sender may close its
// own reference first, leaving the receiver's close the one that lingers).
func TestRecvTurnsLingerOff(t *testing.T) {
	d, w := pair(t)
	_, nb := testutil.TCPPair(t)
	if err := nb.SetLinger(3600); err != nil {
		t.Fatal(err)
	}
	f, err := nb.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	linger := func(f *os.File) *unix.Linger {
		t.Helper()
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var l *unix.Linger
		var lerr error
		if err := rc.Control(func(fd uintptr) { l, lerr = unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER) }); err != nil || lerr != nil {
			t.Fatal(err, lerr)
		}
		return l
	}
	if l := linger(f); l.Onoff == 0 {
		t.Fatal("SO_LINGER did not take")
	}
	if err := d.Send(&Message{Type: TypeConn, ID: 1, Payload: testConn().Marshal()}, f); err != nil {
		t.Fatal(err)
	}
	_, got, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if l := linger(got); l.Onoff != 0 {
		t.Fatalf("received with SO_LINGER %+v, want off", l)
	}
}
