// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"os"
	"testing"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
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
