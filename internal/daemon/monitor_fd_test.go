// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/testutil"
	"ubns.dev/netauth/internal/x25519"
)

// rawSend sends a monitor request as one datagram carrying fds, bypassing the checks of
// handoff's Send (a compromised acceptor is not bound by them). wait returns the monitor's
// reply: its payload (the code first), or an error if none came within 5 seconds.
func (e *evilAcceptor) rawSend(typ handoff.Type, payload []byte, fds ...int) (wait func() ([]byte, error), err error) {
	c := make(chan *handoff.Message, 1)
	e.side.mu.Lock()
	e.side.next++
	id := e.side.next
	e.side.pending[id] = &pendingCall{reply: c, deadline: time.Now().Add(monitorTimeout)}
	e.side.mu.Unlock()
	forget := func() {
		e.side.mu.Lock()
		delete(e.side.pending, id)
		e.side.mu.Unlock()
	}
	b := make([]byte, handoff.HeaderLen, handoff.HeaderLen+len(payload))
	b[0], b[1] = 1, byte(typ)
	binary.BigEndian.PutUint64(b[4:], id)
	b = append(b, payload...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := e.raw.WriteMsgUnix(b, oob, nil); err != nil {
		forget()
		return nil, err
	}
	return func() ([]byte, error) {
		defer forget()
		select {
		case m, ok := <-c:
			if !ok || len(m.Payload) == 0 {
				return nil, errors.New("channel closed without a reply")
			}
			return m.Payload, nil
		case <-time.After(5 * time.Second):
			return nil, errors.New("no reply from the monitor within 5s")
		}
	}, nil
}

// rawCall is rawSend and wait.
func (e *evilAcceptor) rawCall(typ handoff.Type, payload []byte, fds ...int) ([]byte, error) {
	wait, err := e.rawSend(typ, payload, fds...)
	if err != nil {
		return nil, err
	}
	return wait()
}

// rawFD returns f's descriptor number without changing its blocking mode (as f.Fd would, on
// a socket the connection's other holders share); it stays valid while f is open.
func rawFD(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	if err := rc.Control(func(fd uintptr) { n = int(fd) }); err != nil {
		t.Fatal(err)
	}
	return n
}

// refusedWith returns a refusal for a reply's code, as the acceptor's call does.
func refusedWith(reply []byte) error {
	if reply[0] == 0 {
		return nil
	}
	return &handshake.Refusal{Code: handshake.Code(reply[0]), Reason: "refused by the monitor"}
}

// wantDescriptorRefused has alice authenticate through the evil acceptor, which sends bad
// instead of her connection's descriptor with message 3: the monitor refuses with
// protocol_error, audits one refusal whose reason contains reason, accepts nothing, and still
// serves a legitimate connection afterwards.
func (e *evilAcceptor) wantDescriptorRefused(t *testing.T, alice *netauth.Config, bad *os.File, reason string) {
	t.Helper()
	before := e.auditCount(audit.Refused, reason)
	accepted := e.auditCount(audit.Accepted, "")
	clientErr, _, _ := e.connect("netauth-alice", alice, tamperCore{conn: func(*os.File) *os.File { return bad }})
	wantRefused(t, reason, clientErr, netauth.CodeProtocolError)
	if got := e.auditCount(audit.Refused, reason); got != before+1 {
		t.Errorf("%d new refusals audited with %q, want 1", got-before, reason)
	}
	if e.auditCount(audit.Accepted, "") != accepted {
		t.Error("the monitor accepted the authentication that came with a bad descriptor")
	}
	e.legit(t)
}

// auditCount counts the testbed's audit records with decision and a reason containing want.
func (e *evilAcceptor) auditCount(decision, want string) int {
	e.t.Helper()
	return e.tb.auditCount(decision, want)
}

func (tb *testbed) auditCount(decision, want string) int {
	tb.t.Helper()
	n := 0
	for _, r := range tb.auditLines() {
		if r.Decision == decision && strings.Contains(r.Reason, want) {
			n++
		}
	}
	return n
}

// auditLines returns the audit log's records, each line parsed. A line still being written
// (no newline yet: the test reads while the monitor writes) is left for the next call.
func (tb *testbed) auditLines() []audit.Record {
	tb.t.Helper()
	data, err := os.ReadFile(tb.auditLog)
	if err != nil {
		tb.t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	var out []audit.Record
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			tb.t.Fatalf("audit record %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// auditSummarized adds up the refusals with code that the audit log counted in summary
// records rather than logged one by one.
func (tb *testbed) auditSummarized(code string) int {
	tb.t.Helper()
	n := 0
	for _, r := range tb.auditLines() {
		if r.Summary != nil {
			n += int(r.Summary.Counts[code])
		}
	}
	return n
}

// legit checks that the monitor still serves: a full handshake as alice through the evil
// acceptor, honest this time, is accepted and handed to her worker (which sends the verdict).
func (e *evilAcceptor) legit(t *testing.T) {
	t.Helper()
	cfg := e.tb.config("netauth-alice")
	cfg.DisableResumption = true
	clientErr, res, serverErr := e.connect("netauth-alice", cfg, tamperCore{})
	if clientErr != nil || serverErr != nil || res == nil || !res.HandedOff {
		t.Fatalf("a legitimate connection afterwards: client %v, server %v, result %+v", clientErr, serverErr, res)
	}
}

// fileOf returns the descriptor of a net.Conn or net.Listener (a duplicate, closed at the end
// of the test).
func fileOf(t *testing.T, c interface{ File() (*os.File, error) }) *os.File {
	t.Helper()
	f, err := c.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestMonitorRefusesBadDescriptors: a Commit whose descriptor is not a TCP connection
// accepted on the service's listening socket is refused and audited before anything is
// decided, and the monitor goes on serving. Before the descriptor was checked, a listening,
// unconnected or reset socket made the monitor dereference a nil peer address: the root
// monitor panicked, and every worker died with it.
func TestMonitorRefusesBadDescriptors(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	e := newEvilAcceptor(t, tb)
	e.legit(t)
	alice := tb.config("netauth-alice")
	alice.DisableResumption = true

	for _, tc := range []struct {
		name   string
		fd     func(t *testing.T) *os.File
		reason string // in the audit record
	}{
		{"listening TCP socket", func(t *testing.T) *os.File {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return fileOf(t, ln.(*net.TCPListener))
		}, "a listening socket"},
		{"the service's own listening socket", func(t *testing.T) *os.File {
			return fileOf(t, e.ln.(*net.TCPListener))
		}, "a listening socket"},
		{"unconnected TCP socket", func(t *testing.T) *os.File {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), "unconnected")
			t.Cleanup(func() { f.Close() })
			return f
		}, "not connected"},
		{"TCP connection reset by its client", func(t *testing.T) *os.File {
			// What a closed connection is over SCM_RIGHTS: a descriptor number that is not
			// open cannot be sent (see below), and a descriptor closed by the acceptor after
			// sending is still open in the monitor. What can be closed is the connection.
			client, accepted := e.pair()
			t.Cleanup(func() { accepted.Close() })
			client.(*net.TCPConn).SetLinger(0)
			client.Close()
			f := fileOf(t, accepted.(*net.TCPConn))
			waitUntil(t, 5*time.Second, func() string { return "the reset did not arrive" }, func() bool {
				_, err := unix.Getpeername(rawFD(t, f))
				return err != nil
			})
			return f
		}, "not connected"},
		{"UDP socket", func(t *testing.T) *os.File {
			c, err := net.Dial("udp", e.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return fileOf(t, c.(*net.UDPConn))
		}, "not a stream socket"},
		{"Unix stream socket", func(t *testing.T) *os.File {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f, g := os.NewFile(uintptr(fds[0]), "unix0"), os.NewFile(uintptr(fds[1]), "unix1")
			t.Cleanup(func() { f.Close(); g.Close() })
			return f
		}, "not TCP"},
		{"pipe", func(t *testing.T) *os.File {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close(); w.Close() })
			return r
		}, "not a socket"},
		{"TCP connection accepted on another socket", func(t *testing.T) *os.File {
			_, accepted := testutil.TCPPair(t)
			return fileOf(t, accepted)
		}, "none of the service's listening sockets"},
		{"IPv6 TCP connection to an IPv4 service", func(t *testing.T) *os.File {
			ln, err := net.Listen("tcp6", "[::1]:0")
			if err != nil {
				t.Skipf("no IPv6 loopback here: %v", err)
			}
			defer ln.Close()
			client, err := net.Dial("tcp6", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			accepted, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close(); accepted.Close() })
			return fileOf(t, accepted.(*net.TCPConn))
		}, "none of the service's listening sockets"},
	} {
		t.Run(tc.name, func(t *testing.T) { e.wantDescriptorRefused(t, alice, tc.fd(t), tc.reason) })
	}

	t.Run("no descriptor", func(t *testing.T) {
		const reason = "commit message with 0 descriptor(s)"
		before := e.auditCount(audit.Refused, reason)
		clientErr, _, _ := e.connect("netauth-alice", alice, tamperCore{commit: func(_ tamperCore, req *commitRequest, _ *os.File) ([]byte, error) {
			reply, err := e.rawCall(handoff.TypeCommit, req.marshal())
			if err != nil {
				return nil, err
			}
			return reply[1:], refusedWith(reply)
		}})
		wantRefused(t, "no descriptor", clientErr, netauth.CodeProtocolError)
		if got := e.auditCount(audit.Refused, reason); got != before+1 {
			t.Errorf("%d new refusals audited with %q, want 1", got-before, reason)
		}
		e.legit(t)
	})
	t.Run("two descriptors", func(t *testing.T) {
		client, accepted := e.pair()
		defer client.Close()
		defer accepted.Close()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		conn := fileOf(t, accepted.(*net.TCPConn))
		req := &commitRequest{service: "whoami", commit: handshake.CommitRequest{Session: 1}, state: &record.State{}}
		reply, err := e.rawCall(handoff.TypeCommit, req.marshal(), rawFD(t, conn), int(r.Fd()))
		if err != nil || reply[0] != byte(handshake.CodeProtocolError) {
			t.Fatalf("commit with two descriptors: reply %x, %v; want protocol_error", reply, err)
		}
		e.legit(t)
	})
	t.Run("descriptor number not open", func(t *testing.T) {
		// The kernel refuses to send it: nothing reaches the monitor.
		req := &commitRequest{service: "whoami", commit: handshake.CommitRequest{Session: 1}, state: &record.State{}}
		if _, err := e.rawCall(handoff.TypeCommit, req.marshal(), 1<<20); !errors.Is(err, syscall.EBADF) {
			t.Fatalf("sending a descriptor number that is not open: %v, want EBADF", err)
		}
		e.legit(t)
	})
	t.Run("descriptor closed by the acceptor right after sending", func(t *testing.T) {
		// SCM_RIGHTS gives the monitor a descriptor of its own: the connection is served.
		cfg := tb.config("netauth-alice")
		cfg.DisableResumption = true
		core := tamperCore{commit: func(c tamperCore, req *commitRequest, f *os.File) ([]byte, error) {
			wait, err := e.rawSend(handoff.TypeCommit, req.marshal(), rawFD(t, f))
			if err != nil {
				return nil, err
			}
			f.Close()
			c.nc.Close()
			p, err := wait()
			if err != nil {
				return nil, err
			}
			return p[1:], refusedWith(p)
		}}
		clientErr, res, serverErr := e.connect("netauth-alice", cfg, core)
		if clientErr != nil || serverErr != nil || !res.HandedOff {
			t.Fatalf("client %v, server %v", clientErr, serverErr)
		}
	})
}

// Payloads of the requests the monitor no longer serves, as they were.
func legacyAuthPayload(service string, r *handshake.CommitRequest) []byte {
	var b cryptobyte.Builder
	addString(&b, []byte(service))
	b.AddUint64(r.Session)
	addString(&b, []byte(r.User))
	b.AddUint64(r.Time)
	addString(&b, r.SSHSIG)
	return b.BytesOrPanic()
}

func legacyConfirmPayload(service string, session uint64, binder []byte) []byte {
	var b cryptobyte.Builder
	addString(&b, []byte(service))
	b.AddUint64(session)
	addString(&b, binder)
	return b.BytesOrPanic()
}

func legacyDeliverPayload(service string, session uint64, st *record.State) []byte {
	var b cryptobyte.Builder
	addString(&b, []byte(service))
	b.AddUint64(session)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(st.Marshal()) })
	return b.BytesOrPanic()
}

// TestMonitorRefusesRemovedRequests: the monitor serves exactly Begin, Commit and Abort. The
// requests the acceptor no longer sends (Auth 7, Deliver 9, Confirm 11) are unknown: refused
// and audited, even with a genuine authenticator or binder, and the monitor goes on serving.
// They used to decide without a connection to hand over (Auth, Confirm) or hand over a
// connection for a session decided that way (Deliver): code a compromised acceptor could reach
// and nothing in production used.
func TestMonitorRefusesRemovedRequests(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	e := newEvilAcceptor(t, tb)
	e.legit(t)

	for _, tc := range []struct {
		name    string
		typ     handoff.Type
		payload []byte
		conn    bool
	}{
		{"auth (7)", 7, legacyAuthPayload("whoami", &handshake.CommitRequest{Session: 1, User: "netauth-alice", Time: 1, SSHSIG: []byte("sig")}), false},
		{"deliver (9)", 9, legacyDeliverPayload("whoami", 1, &record.State{}), true},
		{"confirm (11)", 11, legacyConfirmPayload("whoami", 1, make([]byte, handshake.BinderLen)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason := fmt.Sprintf("acceptor type(%d) refused", uint8(tc.typ))
			before := e.auditCount(audit.Refused, reason)
			var fds []int
			if tc.conn {
				client, accepted := e.pair()
				defer client.Close()
				defer accepted.Close()
				fds = append(fds, rawFD(t, fileOf(t, accepted.(*net.TCPConn))))
			}
			reply, err := e.rawCall(tc.typ, tc.payload, fds...)
			if err != nil || reply[0] != byte(handshake.CodeProtocolError) {
				t.Fatalf("reply %x, %v; want protocol_error", reply, err)
			}
			if got := e.auditCount(audit.Refused, reason); got != before+1 {
				t.Errorf("%d new refusals audited with %q, want 1", got-before, reason)
			}
			e.legit(t)
		})
	}

	t.Run("genuine authenticator as auth (7)", func(t *testing.T) {
		cfg := tb.config("netauth-alice")
		cfg.DisableResumption = true
		accepted := e.auditCount(audit.Accepted, "")
		clientErr, _, _ := e.connect("netauth-alice", cfg, tamperCore{commit: func(_ tamperCore, req *commitRequest, _ *os.File) ([]byte, error) {
			reply, err := e.rawCall(7, legacyAuthPayload(req.service, &req.commit))
			if err != nil {
				return nil, err
			}
			return reply[1:], refusedWith(reply)
		}})
		wantRefused(t, "auth request", clientErr, netauth.CodeProtocolError)
		if e.auditCount(audit.Accepted, "") != accepted {
			t.Error("the monitor accepted an authentication without a connection to hand over")
		}
		e.legit(t)
	})
	t.Run("genuine binder as confirm (11)", func(t *testing.T) {
		cfg := tb.config("netauth-alice")
		if clientErr, _, serverErr := e.connect("netauth-alice", cfg, tamperCore{}); clientErr != nil || serverErr != nil {
			t.Fatalf("full handshake for a ticket: %v %v", clientErr, serverErr)
		}
		accepted := e.auditCount(audit.Accepted, "")
		clientErr, res, _ := e.connect("netauth-alice", cfg, tamperCore{commit: func(_ tamperCore, req *commitRequest, _ *os.File) ([]byte, error) {
			if !req.commit.Resumed {
				return nil, errors.New("not a resumption")
			}
			reply, err := e.rawCall(11, legacyConfirmPayload(req.service, req.commit.Session, req.commit.Binder))
			if err != nil {
				return nil, err
			}
			return reply[1:], refusedWith(reply)
		}})
		if res != nil && res.HandedOff {
			t.Fatal("the monitor confirmed a resumption without a connection to hand over")
		}
		wantRefused(t, "confirm request", clientErr, netauth.CodeProtocolError)
		if e.auditCount(audit.Accepted, "") != accepted {
			t.Error("the monitor accepted a resumption without a connection to hand over")
		}
		e.legit(t)
	})
}

// statementSigner signs handshake statements with an SSH key.
// sendAuthenticator runs netauth-alice's full handshake on nc until her authenticator is sent
// (RunClient returns then, before the verdict), trusting any host key.
func sendAuthenticator(t *testing.T, tb *testbed, nc net.Conn) {
	t.Helper()
	if _, err := handshake.RunClient(record.NewConn(nc), &handshake.ClientConfig{
		User:         "netauth-alice",
		Signer:       statementSigner{tb.users["netauth-alice"]},
		CheckHostKey: func(ssh.PublicKey, string) error { return nil },
		Ephemeral:    func() (x25519.KeyPair, error) { return x25519.Generate(rand.Reader) },
	}); err != nil {
		t.Fatal(err)
	}
}

type statementSigner struct{ ssh.Signer }

func (s statementSigner) SignStatement(stmt []byte) ([]byte, error) {
	return keys.Sign(s.Signer, handshake.Namespace, stmt)
}

// TestMonitorSurvivesClientReset: with the real acceptor, a user's client that resets its
// connection right after sending its authenticator costs that connection only. The acceptor
// passes the connection to the monitor with message 3; by the time the monitor had verified
// the signature, written the audit record and started the worker, the socket was no longer
// connected, and the monitor, reading its peer address, dereferenced nil: any user with a key
// (or a ticket) could stop the root monitor, and every worker with it.
func TestMonitorSurvivesClientReset(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	const resets = 20
	for range resets {
		nc, err := net.Dial("tcp", tb.addr("whoami"))
		if err != nil {
			t.Fatal(err)
		}
		// RunClient returns once ClientAuth is sent, before the verdict (pipelining).
		sendAuthenticator(t, tb, nc)
		nc.(*net.TCPConn).SetLinger(0)
		nc.Close()
	}
	// Each reset connection is decided: refused for its descriptor, or accepted (when the
	// reset came after the check) and handed to a worker that finds it closed. Refusals past
	// the audit log's per-source share are counted in a summary record, written when the
	// interval (10 s) ends.
	decided := func() int {
		return tb.auditCount(audit.Refused, "acceptor commit refused") + tb.auditSummarized("acceptor_request") +
			tb.auditCount(audit.Accepted, "")
	}
	waitUntil(t, 20*time.Second, func() string { return fmt.Sprintf("%d of %d reset connections decided", decided(), resets) },
		func() bool { return decided() == resets })
	// And those accepted are settled with their worker, which reports them over at once.
	pending := func() int {
		tb.d.mu.Lock()
		defer tb.d.mu.Unlock()
		n := 0
		for _, w := range tb.d.workers {
			n += len(w.pending)
		}
		return n
	}
	waitUntil(t, 5*time.Second, func() string { return fmt.Sprintf("%d handoffs still pending", pending()) },
		func() bool { return pending() == 0 })
	t.Logf("of %d reset connections, %d refused for their descriptor, %d accepted", resets,
		tb.auditCount(audit.Refused, "acceptor commit refused"), tb.auditCount(audit.Accepted, ""))
	cfg := tb.config("netauth-alice")
	cfg.DisableResumption = true
	if _, err := tb.whoami("whoami", "netauth-alice", cfg); err != nil {
		t.Fatalf("after clients reset their connections: %v", err)
	}
}
