// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"ubns.dev/netauth/internal/record"
)

// spyCore is a ServerCore whose Begin responses (what netauthd's acceptor receives) are kept.
type spyCore struct {
	*ServerCore
	begun []*BeginResponse
}

func (c *spyCore) Begin(req *BeginRequest) (*BeginResponse, error) {
	resp, err := c.ServerCore.Begin(req)
	if resp != nil {
		cp := *resp
		c.begun = append(c.begun, &cp)
	}
	return resp, err
}

// TestHandshakeKeysRevealNoSecret runs a full and a resumed handshake with application data
// both ways and opens every record on the wire with the keys the framing side gets from
// Begin (in netauthd, the acceptor's keys). Exactly the handshake's own records open
// (ServerAuth, ClientAuth or Binder, Verdict), none of them contains the resumption secret or
// an application key, and no application record opens.
func TestHandshakeKeysRevealNoSecret(t *testing.T) {
	e := newEnv(t)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	spy := &spyCore{ServerCore: core}
	var session *Session
	for _, resume := range []bool{false, true} {
		e.cli.Session = nil
		if resume {
			e.cli.Session = session
		}
		c2s, s2c, sess := runRecorded(t, e, spy)
		if !resume {
			if sess == nil {
				t.Fatal("the full handshake issued no ticket")
			}
			session = sess
		}
		begin := spy.begun[len(spy.begun)-1]
		if begin.Resumed != resume {
			t.Fatalf("resumed %v, want %v", begin.Resumed, resume)
		}
		want := map[string][]byte{"c2s": {record.TypeClientAuth}, "s2c": {record.TypeServerAuth, record.TypeVerdict}}
		if resume {
			want = map[string][]byte{"c2s": {record.TypeBinder}, "s2c": {record.TypeVerdict}}
		}
		for _, dir := range []struct {
			name string
			wire []byte
			key  [32]byte
		}{{"c2s", c2s, begin.Recv}, {"s2c", s2c, begin.Send}} {
			h := record.NewHalf(dir.key, 0)
			var opened []byte
			for _, fr := range splitFrames(t, dir.wire) {
				if fr[0] != record.FrameRecord {
					continue
				}
				typ, content, err := h.Open(fr[:record.HeaderLen], append([]byte(nil), fr[record.HeaderLen:]...))
				if err != nil {
					continue // an application record: not for these keys
				}
				opened = append(opened, typ)
				if bytes.Contains(content, session.Secret) {
					t.Fatalf("%s: a record under the handshake keys carries the resumption secret", dir.name)
				}
			}
			if !bytes.Equal(opened, want[dir.name]) {
				t.Fatalf("resumed=%v %s: the handshake keys open records of types % x, want exactly % x", resume, dir.name, opened, want[dir.name])
			}
		}
	}
}

// runRecorded runs one handshake between e's client and core over loopback TCP, with
// "ping"/"pong" application data, and returns both directions' bytes and the client's new
// session.
func runRecorded(t *testing.T, e *env, core Core) (c2s, s2c []byte, sess *Session) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		rc := record.NewConn(nc)
		if _, err := Serve(rc, core, nc.RemoteAddr().String(), nil); err != nil {
			done <- err
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(rc, buf); err != nil {
			done <- err
			return
		}
		_, err = rc.Write([]byte("pong"))
		rc.Close()
		done <- err
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	conn := &rpConn{Conn: nc}
	rc := record.NewConn(conn)
	cli, err := RunClient(rc, e.cli)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Write([]byte("ping")); err != nil { // pipelined before the verdict
		t.Fatal(err)
	}
	if sess, err = cli.ReadVerdict(time.Now()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	rc.Close()
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
	_, _ = io.Copy(io.Discard, conn)
	conn.mu.Lock()
	defer conn.mu.Unlock()
	return bytes.Join(conn.writes, nil), conn.read.Bytes(), sess
}

// stateCore is a ServerCore whose Commit first lets tamper change the framing side's
// transport state (as a compromised acceptor may, in what it sends the monitor) and keeps a
// copy of the application-phase state of the Handover (what netauthd's worker imports).
type stateCore struct {
	*ServerCore
	tamper func(*record.State)
	app    *record.State
}

func (c *stateCore) Commit(req *CommitRequest, st *record.State) (*Accepted, error) {
	c.tamper(st)
	acc, err := c.ServerCore.Commit(req, st)
	if err == nil && acc.Handover != nil {
		cp := *acc.Handover.State
		cp.Unread = append([]byte(nil), cp.Unread...)
		cp.Plain = append([]byte(nil), cp.Plain...)
		c.app = &cp
	}
	return acc, err
}

// TestCommitAppStateOwnsItsCounters has the framing side claim, in the state it gives
// Commit, counters, a rekey interval and decrypted data of its choosing. Of that state, only
// the handshake-record key and counter (to seal the Verdict) and the raw bytes still to be
// opened are used: the application phase starts at counter 0 both ways, with the server's
// own rekey interval (DefaultRekeyAfter, §7.1) and no plaintext the framing side supplied.
func TestCommitAppStateOwnsItsCounters(t *testing.T) {
	for _, rekeyAfter := range []uint64{1, 1 << 62, ^uint64(0)} {
		e := newEnv(t)
		core, err := NewServerCore(e.srv, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		sc := &stateCore{ServerCore: core, tamper: func(st *record.State) {
			st.RekeyAfter, st.SendCount, st.RecvNonce = rekeyAfter, 12345, 7
			st.Plain = []byte("forged plaintext")
		}}
		runRecorded(t, e, sc)
		app := sc.app
		if app == nil {
			t.Fatal("no handover")
		}
		if app.RekeyAfter != record.DefaultRekeyAfter {
			t.Errorf("framing side's rekey interval %d: the application phase rekeys after %d records, want %d",
				rekeyAfter, app.RekeyAfter, record.DefaultRekeyAfter)
		}
		if app.SendNonce != 0 || app.RecvNonce != 0 || app.SendCount != 0 {
			t.Errorf("application counters send %d recv %d count %d, want 0", app.SendNonce, app.RecvNonce, app.SendCount)
		}
		if len(app.Plain) != 0 {
			t.Errorf("the application phase starts with %q of plaintext from the framing side", app.Plain)
		}
	}
}
