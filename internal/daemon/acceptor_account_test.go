// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"testing"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/audit"
)

// TestNoWorkerAsAcceptorAccount: a service configured to run its workers as the acceptor's
// own account ("run-as account netauth", an easy mistake to make) gets no worker: its users
// are refused (internal_error), audited, and a service with an account of its own is served as
// before. Such a worker used to start: the acceptor, taken over, could then trace it (workers
// are dumpable, and share its uid) and act as every user it serves.
func TestNoWorkerAsAcceptorAccount(t *testing.T) {
	tb := newTestbed(t, whoamiService+`
service shared {
    listen 127.0.0.1:0
    program WORKER
    args whoami
    run-as account `+acceptorAccount+`
    users netauth-alice
}
`)
	cfg := tb.config("netauth-alice")
	cfg.DisableResumption = true
	_, err := tb.whoami("shared", "netauth-alice", cfg)
	var re *netauth.RefusedError
	if !errors.As(err, &re) || re.Code != netauth.CodeInternalError {
		t.Fatalf("a service whose workers would run as the acceptor's account: %v, want internal_error", err)
	}
	if n := tb.auditCount(audit.Refused, "acceptor's account"); n != 1 {
		t.Fatalf("%d refusals audited, want 1", n)
	}
	tb.d.mu.Lock()
	for k, w := range tb.d.workers {
		if k.service == "shared" {
			t.Errorf("a worker for %s exists (pid %d)", k.service, w.pid)
		}
	}
	tb.d.mu.Unlock()
	if r, err := tb.whoami("whoami", "netauth-alice", cfg); err != nil || r["user"] != "netauth-alice" {
		t.Fatalf("the other service: %v %v", r, err)
	}
}
