// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
)

// evilAcceptor is a compromised acceptor: it drives the monitor's control channel itself,
// and can alter any request on the way.
type evilAcceptor struct {
	t    *testing.T
	tb   *testbed
	side *acceptorSide
	raw  *net.UnixConn // its end of the channel again, for messages Send would not send
	ln   net.Listener  // the service's listening socket, on which it alone accepts
}

// newEvilAcceptor replaces the testbed's acceptor with an evil one, served by the monitor as
// the real one is.
func newEvilAcceptor(t *testing.T, tb *testbed) *evilAcceptor {
	return newEvilAcceptorOn(t, tb, func(ch *handoff.Channel) {
		tb.d.serveAcceptor(&acceptor{ch: ch, exited: make(chan struct{})})
	})
}

// newEvilAcceptorOn is newEvilAcceptor with serve running the monitor's end of the channel.
func newEvilAcceptorOn(t *testing.T, tb *testbed, serve func(*handoff.Channel)) *evilAcceptor {
	// The real acceptor goes, for good (the monitor restarts only the acceptor it runs), and
	// the evil one accepts on the service's own listening socket in its place.
	tb.d.mu.Lock()
	real := tb.d.acceptor
	tb.d.acceptor = nil
	svc := tb.d.services["whoami"]
	tb.d.mu.Unlock()
	if real != nil {
		real.cmd.Process.Kill()
		<-real.exited
	}
	lf, err := svc.listeners[0].(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		t.Fatal(err)
	}
	monitorEnd, f, err := handoff.Pair()
	if err != nil {
		t.Fatal(err)
	}
	rawConn, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	evilEnd, err := handoff.FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	go serve(monitorEnd)
	side := &acceptorSide{ch: evilEnd, log: slog.New(slog.DiscardHandler), timeout: 5 * time.Second,
		pending: make(map[uint64]*pendingCall)}
	go side.receive()
	t.Cleanup(func() { ln.Close(); rawConn.Close(); evilEnd.Close(); monitorEnd.Close() })
	return &evilAcceptor{t: t, tb: tb, side: side, raw: rawConn.(*net.UnixConn), ln: ln}
}

// tamperCore is a HandoffCore, like the acceptor's, that passes requests to the monitor
// letting the test alter them first: their fields, the descriptor sent with message 3, or the
// whole Commit request.
type tamperCore struct {
	remoteCore
	begin   func(*handshake.BeginRequest)
	auth    func(*handshake.CommitRequest)
	confirm func(session uint64, binder []byte) []byte
	// conn returns the descriptor to send with message 3 instead of the connection's.
	conn func(real *os.File) *os.File
	// commit sends message 3 instead of the acceptor's Commit, and returns the reply.
	commit func(c tamperCore, req *commitRequest, f *os.File) ([]byte, error)
}

func (c tamperCore) Begin(r *handshake.BeginRequest) (*handshake.BeginResponse, error) {
	if c.begin != nil {
		c.begin(r)
	}
	return c.remoteCore.Begin(r)
}

// send sends message 3 with a descriptor: the connection's, or what c.conn chose.
func (c tamperCore) send(req *commitRequest) ([]byte, error) {
	f, err := c.nc.(*net.TCPConn).File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if c.conn != nil {
		f = c.conn(f)
	}
	if c.commit != nil {
		return c.commit(c, req, f)
	}
	return c.a.call(handoff.TypeCommit, req.marshal(), f)
}

func (c tamperCore) Commit(r *handshake.CommitRequest, st *record.State) (*handshake.Accepted, error) {
	switch {
	case r.Resumed && c.confirm != nil:
		r.Binder = c.confirm(r.Session, r.Binder)
	case !r.Resumed && c.auth != nil:
		c.auth(r)
	}
	p, err := c.send(&commitRequest{service: c.service, commit: *r, state: st})
	if err != nil {
		return nil, err
	}
	return parseAccepted(p)
}

// connect makes a client connection as user through the evil acceptor, whose framing runs
// with core; it returns the client's error (after the verdict) and the server side's result.
func (e *evilAcceptor) connect(user string, cfg *netauth.Config, core tamperCore) (error, *handshake.Result, error) {
	type out struct {
		res *handshake.Result
		err error
	}
	done := make(chan out, 1)
	go func() {
		nc, err := e.ln.Accept()
		if err != nil {
			done <- out{nil, err}
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		core.remoteCore = remoteCore{a: e.side, service: "whoami", nc: nc}
		res, err := handshake.Serve(record.NewConn(nc), core, nc.RemoteAddr().String(), nil)
		done <- out{res, err}
	}()
	c, err := netauth.Dial("tcp", e.ln.Addr().String(), cfg)
	if err == nil {
		err = c.Handshake()
		c.Close()
	}
	o := <-done
	return err, o.res, o.err
}

// auditHas reports whether the audit log has a refused record whose reason contains want.
func (e *evilAcceptor) auditHas(user, want string) bool {
	data, err := os.ReadFile(e.tb.auditLog)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"decision":"refused"`) && strings.Contains(line, `"user":"`+user+`"`) && strings.Contains(line, want) {
			return true
		}
	}
	return false
}

func wantRefused(t *testing.T, what string, clientErr error, code netauth.Code) {
	t.Helper()
	var re *netauth.RefusedError
	if !errors.As(clientErr, &re) || re.Code != code {
		t.Fatalf("%s: client got %v, want a refusal with code %v", what, clientErr, code)
	}
}

// TestMonitorBoundary plays a compromised acceptor against the monitor: whatever it sends, it
// cannot obtain an accepted session (let alone a worker) for a user who did not authenticate
// on that very connection, and each attempt is refused and audited.
func TestMonitorBoundary(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	e := newEvilAcceptor(t, tb)
	alice := tb.config("netauth-alice")
	alice.DisableResumption = true

	// An honest connection first, recording alice's authenticator.
	var recorded handshake.CommitRequest
	clientErr, res, serverErr := e.connect("netauth-alice", alice, tamperCore{auth: func(r *handshake.CommitRequest) { recorded = *r }})
	if clientErr != nil || serverErr != nil || res.User != "netauth-alice" {
		t.Fatalf("honest connection: client %v, server %v", clientErr, serverErr)
	}
	e.side.call(handoff.TypeAbort, (&sessionRef{service: "whoami", session: res.Session}).marshal(), nil)

	t.Run("forged user", func(t *testing.T) {
		// Alice signs; the acceptor claims bob. Alice's key is not bob's, so the monitor
		// refuses before it even verifies the signature.
		clientErr, _, _ := e.connect("netauth-alice", alice, tamperCore{auth: func(r *handshake.CommitRequest) { r.User = "netauth-bob" }})
		wantRefused(t, "forged user", clientErr, netauth.CodeNotAuthorized)
		if !e.auditHas("netauth-bob", "is not authorized for user") {
			t.Fatal("forged user not audited")
		}
	})
	t.Run("replayed signature", func(t *testing.T) {
		// Alice's authenticator from the first connection, on a new handshake (new hash).
		clientErr, _, _ := e.connect("netauth-alice", alice, tamperCore{auth: func(r *handshake.CommitRequest) {
			r.User, r.Time, r.SSHSIG = recorded.User, recorded.Time, recorded.SSHSIG
		}})
		wantRefused(t, "replayed signature", clientErr, netauth.CodeAuthFailed)
		if !e.auditHas("netauth-alice", "does not verify") {
			t.Fatal("replayed signature not audited")
		}
	})
	t.Run("signature over the wrong transcript", func(t *testing.T) {
		// A genuine signature by alice's key, over a statement for a handshake hash the
		// acceptor chose.
		clientErr, _, _ := e.connect("netauth-alice", alice, tamperCore{auth: func(r *handshake.CommitRequest) {
			st := &keys.Statement{HandshakeHash: make([]byte, 32), HostKey: tb.d.HostKey(), Service: "whoami",
				User: "netauth-alice", Time: time.Unix(int64(r.Time), 0)}
			stmt, _ := st.Marshal()
			sig, err := keys.Sign(tb.users["netauth-alice"], handshake.Namespace, stmt)
			if err != nil {
				t.Fatal(err)
			}
			r.SSHSIG = sig
		}})
		wantRefused(t, "wrong transcript", clientErr, netauth.CodeAuthFailed)
	})
	t.Run("replayed ticket binder", func(t *testing.T) {
		// A resumption through the evil acceptor, recording the ClientHello and the binder.
		cfg := tb.config("netauth-alice")
		if clientErr, _, serverErr := e.connect("netauth-alice", cfg, tamperCore{}); clientErr != nil || serverErr != nil {
			t.Fatalf("full handshake to get a ticket: %v %v", clientErr, serverErr)
		}
		var hello handshake.BeginRequest
		var binder []byte
		clientErr, res, _ := e.connect("netauth-alice", cfg, tamperCore{
			begin:   func(r *handshake.BeginRequest) { hello = *r },
			confirm: func(_ uint64, b []byte) []byte { binder = append([]byte(nil), b...); return b },
		})
		if clientErr != nil || res == nil || !res.Resumed {
			t.Fatalf("honest resumption: %v %+v", clientErr, res)
		}
		// Replay both: the monitor resumes (the ticket and NNpsk0 message 1 are replayable)
		// but with a fresh ephemeral key of its own, so the old binder is refused.
		begin, err := (remoteCore{a: e.side, service: "whoami"}).Begin(&hello)
		if err != nil || !begin.Resumed {
			t.Fatalf("replayed ClientHello: %+v %v", begin, err)
		}
		replay := &commitRequest{service: "whoami", commit: handshake.CommitRequest{Session: begin.Session, Resumed: true, Binder: binder}, state: &record.State{}}
		err = e.commit(replay)
		var r *handshake.Refusal
		if !errors.As(err, &r) || r.Code != handshake.CodeAuthFailed {
			t.Fatalf("replayed binder: %v, want auth_failed", err)
		}
		if !e.auditHas("netauth-alice", "binder does not verify") {
			t.Fatal("replayed binder not audited")
		}
		// And the session is spent: it cannot be committed again to get a worker.
		if err := e.commit(replay); err == nil {
			t.Fatal("the monitor took a connection for a refused resumption")
		}
	})
	t.Run("unauthorized service", func(t *testing.T) {
		// carol has a key but no grant for the service: refused, no worker.
		carol := tb.config("netauth-carol")
		carol.DisableResumption = true
		clientErr, _, _ := e.connect("netauth-carol", carol, tamperCore{})
		wantRefused(t, "unauthorized service", clientErr, netauth.CodeNotAuthorized)
		if !e.auditHas("netauth-carol", "may not use service") {
			t.Fatal("unauthorized service not audited")
		}
		// A service that does not exist.
		_, err := (remoteCore{a: e.side, service: "nosuch"}).Begin(&handshake.BeginRequest{Mode: handshake.ModeFull, Noise: make([]byte, 32)})
		if err == nil {
			t.Fatal("the monitor began a handshake for a service it does not have")
		}
	})
	t.Run("forged session", func(t *testing.T) {
		forged := &commitRequest{service: "whoami", commit: handshake.CommitRequest{Session: 987654321, User: "netauth-alice", Time: recorded.Time, SSHSIG: recorded.SSHSIG}, state: &record.State{}}
		if err := e.commit(forged); err == nil {
			t.Fatal("the monitor took a connection for a session it never began")
		}
		forged.commit.Resumed, forged.commit.Binder = true, make([]byte, handshake.BinderLen)
		if err := e.commit(forged); err == nil {
			t.Fatal("the monitor took a connection for a resumption it never began")
		}
	})
	tb.d.mu.Lock()
	for k := range tb.d.workers {
		if k.user != "netauth-alice" {
			t.Errorf("a worker exists for %s", k.user)
		}
	}
	tb.d.mu.Unlock()
}

// commit sends req with a real TCP connection, accepted on the service's listening socket.
func (e *evilAcceptor) commit(req *commitRequest) error {
	c1, c2 := e.pair()
	defer c1.Close()
	defer c2.Close()
	f, err := c2.(*net.TCPConn).File()
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	_, err = e.side.call(handoff.TypeCommit, req.marshal(), f)
	return err
}

// pair returns a client connection to the service's listening socket and its accepted end.
func (e *evilAcceptor) pair() (client, accepted net.Conn) {
	client, err := net.Dial("tcp", e.ln.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	if accepted, err = e.ln.Accept(); err != nil {
		e.t.Fatal(err)
	}
	return client, accepted
}
