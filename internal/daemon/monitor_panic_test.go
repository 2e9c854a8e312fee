// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
)

// TestMonitorSurvivesHandlerPanic: a request handler that panics (a bug an acceptor's request
// reaches) costs that request only: it is refused with internal_error and audited, and the
// monitor goes on serving the acceptor. The panics are injected, for Abort and for Commit
// with its connection, into the monitor's own handlers.
func TestMonitorSurvivesHandlerPanic(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	const doomed = 0xdead
	e := newEvilAcceptorOn(t, tb, func(ch *handoff.Channel) {
		tb.d.serveRequests(ch, func(m *handoff.Message, f *os.File) ([]byte, bool) {
			if ref, err := parseAbort(m.Payload); m.Type == handoff.TypeAbort && err == nil && ref.session == doomed {
				panic("injected: abort")
			}
			if req, err := parseCommit(append([]byte(nil), m.Payload...)); m.Type == handoff.TypeCommit && err == nil && req.commit.User == "netauth-bob" {
				panic("injected: commit")
			}
			return tb.d.answer(m, f)
		})
	})
	e.legit(t)
	const reason = "internal error while answering it"

	before := e.auditCount(audit.Refused, reason)
	_, err := e.side.call(handoff.TypeAbort, (&sessionRef{service: "whoami", session: doomed}).marshal(), nil)
	var r *handshake.Refusal
	if !errors.As(err, &r) || r.Code != handshake.CodeInternalError {
		t.Fatalf("abort whose handler panics: %v, want internal_error", err)
	}
	if got := e.auditCount(audit.Refused, reason); got != before+1 {
		t.Errorf("%d refusals audited with %q, want 1", got-before, reason)
	}
	e.legit(t)

	bob := tb.config("netauth-bob")
	bob.DisableResumption = true
	clientErr, _, _ := e.connect("netauth-bob", bob, tamperCore{})
	wantRefused(t, "commit whose handler panics", clientErr, netauth.CodeInternalError)
	if got := e.auditCount(audit.Refused, reason); got != before+2 {
		t.Errorf("%d refusals audited with %q, want 2", got-before, reason)
	}
	e.legit(t)
}

// panickingKeys is a key source that panics when asked for user's keys (a bug reached from a
// Commit, after the monitor took its place in custody), and asks src for anyone else's.
type panickingKeys struct {
	src  keys.Source
	user string
}

func (p panickingKeys) Keys(ctx context.Context, user string) ([]ssh.PublicKey, error) {
	if user == p.user {
		panic("injected: key lookup")
	}
	return p.src.Keys(ctx, user)
}

// TestCommitPanicGivesBackCustody: a Commit whose decision panics (here in the key lookup of a
// full handshake, which runs after the Commit took its place in custody) gives that place
// back. Custody is bounded for all users together and a Commit that finds it full waits: a
// place kept by each panic would, after as many panics as there are places, hold every
// Commit, and stop the service.
func TestCommitPanicGivesBackCustody(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	const places = 2
	tb.d.mu.Lock()
	tb.d.custodySlots = make(chan struct{}, places)
	tb.d.keys = panickingKeys{src: tb.d.keys, user: "netauth-bob"}
	tb.d.keysDirect = panickingKeys{src: tb.d.keysDirect, user: "netauth-bob"}
	tb.d.mu.Unlock()
	e := newEvilAcceptor(t, tb)
	bob := tb.config("netauth-bob")
	bob.DisableResumption = true
	for i := range places + 1 {
		clientErr, _, _ := e.connect("netauth-bob", bob, tamperCore{})
		wantRefused(t, "a Commit whose decision panics", clientErr, netauth.CodeInternalError)
		if n := tb.inCustody(); n != 0 {
			t.Fatalf("after %d Commits that panicked, %d places in custody are taken, want 0", i+1, n)
		}
	}
	answered := make(chan time.Duration, 1)
	done := make(chan error, 1)
	go func() {
		alice := tb.config("netauth-alice")
		alice.DisableResumption = true
		clientErr, _, _ := e.connect("netauth-alice", alice, timedCommit(answered))
		done <- clientErr
	}()
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("a legitimate Commit is not answered: custody is full")
	}
	if err := <-done; err != nil {
		t.Fatalf("a legitimate connection afterwards: %v", err)
	}
}
