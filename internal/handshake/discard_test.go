// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"net"
	"sync"
	"testing"
	"time"

	"ubns.dev/netauth/internal/record"
)

// admissionLedger is an Authorize that hands out numbered admissions and a Discard that
// takes them back, as netauthd's reservations are: what it holds is what leaked.
type admissionLedger struct {
	mu        sync.Mutex
	next      int
	held      map[int]bool
	discarded []int
}

func newAdmissionLedger(cfg *ServerConfig) *admissionLedger {
	l := &admissionLedger{held: make(map[int]bool)}
	check := cfg.Eligible
	cfg.Authorize = func(r *Result) (any, error) {
		if err := check(r); err != nil {
			return nil, err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.next++
		l.held[l.next] = true
		return l.next, nil
	}
	cfg.Discard = func(r *Result) {
		l.mu.Lock()
		defer l.mu.Unlock()
		n, _ := r.Admission.(int)
		delete(l.held, n)
		l.discarded = append(l.discarded, n)
	}
	return l
}

func (l *admissionLedger) state() (held, discarded int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held), len(l.discarded)
}

// TestVerdictLostDiscardsAdmission: a client that resets its connection right after its
// authenticator makes the server's Verdict write fail after Authorize admitted it. What the
// admission holds (netauthd's per-user connection count and worker registration, when
// handshakes run in its own process) must be given back through Discard: Serve's Abort of
// the session finds nothing, since Commit took it. It used to leak, one admission per reset,
// until the user's max-connections-per-user (or, per connection, the service's max-workers,
// each leaked worker never idle) refused everyone.
func TestVerdictLostDiscardsAdmission(t *testing.T) {
	for _, resume := range []bool{false, true} {
		name := "full"
		if resume {
			name = "resumed"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ledger := newAdmissionLedger(e.srv)
			if resume {
				o := e.run(t)
				sess, err := o.cli.ReadVerdict(time.Now())
				if err != nil || sess == nil {
					t.Fatalf("full handshake for the ticket: %v, session %v", err, sess)
				}
				e.cli.Session = sess
				if held, _ := ledger.state(); held != 1 {
					t.Fatalf("%d admissions held after the first connection", held)
				}
				ledger.held = make(map[int]bool) // that connection was served
			}
			core, err := NewServerCore(e.srv, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			cc, sc := net.Pipe()
			defer cc.Close()
			// The server's first write is its handshake messages (ServerHello, and
			// ServerAuth for a full handshake), the second the Verdict.
			srv := &failingConn{Conn: sc, failAt: 2}
			done := make(chan error, 1)
			go func() {
				_, err := Serve(record.NewConn(srv), core, "test", nil)
				sc.Close()
				done <- err
			}()
			c, err := RunClient(record.NewConn(cc), e.cli)
			if err != nil {
				t.Fatal(err)
			}
			if c.Result.Resumed != resume {
				t.Fatalf("client resumed %v, want %v", c.Result.Resumed, resume)
			}
			if err := <-done; err == nil {
				t.Fatal("the server reported success without sending its Verdict")
			}
			held, discarded := ledger.state()
			if held != 0 || discarded != 1 {
				t.Fatalf("after a lost Verdict: %d admissions held, %d discarded; want none held, one discarded", held, discarded)
			}
		})
	}
}

// TestVerdictSentKeepsAdmission: an admission whose Verdict went out is the connection's,
// never discarded (a release there would free a slot the live connection still uses).
func TestVerdictSentKeepsAdmission(t *testing.T) {
	e := newEnv(t)
	ledger := newAdmissionLedger(e.srv)
	o := e.run(t)
	if o.cliErr != nil || o.srvErr != nil {
		t.Fatalf("client %v, server %v", o.cliErr, o.srvErr)
	}
	if _, err := o.cli.ReadVerdict(time.Now()); err != nil {
		t.Fatal(err)
	}
	if o.srv.Admission != 1 {
		t.Fatalf("server result's admission %v, want the one Authorize returned", o.srv.Admission)
	}
	if held, discarded := ledger.state(); held != 1 || discarded != 0 {
		t.Fatalf("%d admissions held, %d discarded; want the accepted one held", held, discarded)
	}
}
