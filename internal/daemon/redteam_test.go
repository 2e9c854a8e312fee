// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/policy"
)

// TestRedteamAuthFailedUnknownConnection: a worker's "done, a record failed authentication"
// message for a connection it was never handed, or one it already reported done, is neither
// audited nor logged. A per-user worker is the user's own program, and its control channel is
// its to write: the daemon used to audit a record_auth_failed refusal and log a warning for
// every such message, under the user's name, as fast as the program sent them.
func TestRedteamAuthFailedUnknownConnection(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	path := filepath.Join(t.TempDir(), "audit.log")
	aw, err := audit.Open(path, key, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer aw.Close()
	d, log := jsonLog(slog.LevelInfo)
	d.audit = aw
	w := &worker{d: d, user: "netauth-alice", svc: &policy.Service{Name: "echo"}, pid: 99,
		pending: map[uint64]*custody{}, users: map[uint64]string{}}
	// One real connection, adopted, reported as failed: audited and logged once.
	d.mu.Lock()
	w.users[7] = "netauth-alice"
	w.active = 1
	d.mu.Unlock()
	d.connAuthFailed(w, 7)
	d.connDone(w, 7)
	// Then a flood: the same connection again, and connections it never had.
	for id := range uint64(1000) {
		d.connAuthFailed(w, 7)
		d.connDone(w, 7)
		d.connAuthFailed(w, 1000+id)
		d.connDone(w, 1000+id)
	}
	aw.Close()
	warned := 0
	for _, r := range log.records(t) {
		if strings.Contains(r["msg"].(string), "record failed authentication") {
			warned++
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	audited := strings.Count(string(b), "record_auth_failed")
	if warned != 1 || audited != 1 {
		t.Fatalf("a worker reporting 2,000 failed connections it did not have: %d warnings and %d audit records, want 1 and 1 (its one real connection)", warned, audited)
	}
}

// TestRedteamWorkerCannotTakeMonitorMessages: a worker's slog JSON line is re-emitted with the
// worker's own msg and level (up to ERROR), so a user's program can write records whose
// message is one of the monitor's own ("refused", "worker started", "access revoked; …") at
// the level the monitor uses, with look-alike attributes (worker.client=, worker.user=root).
// Only source=worker and the "worker." prefix tell them apart; a filter that matches on
// msg=refused and client= (a ban list fed from the log) takes the worker's word for an
// address. A re-emitted record's message should not be one the monitor's own records use.
func TestRedteamWorkerCannotTakeMonitorMessages(t *testing.T) {
	log := &logLines{}
	d := &Daemon{log: slog.New(slog.NewTextHandler(log, nil))}
	w := &worker{d: d, user: "netauth-alice", svc: &policy.Service{Name: "echo"}, pid: 99}
	w.logLine(99, `{"level":"INFO","msg":"refused","client":"203.0.113.9:4242","code":"auth_failed","user":"root"}`)
	w.logLine(99, `{"level":"INFO","msg":"worker started","service":"ssh","user":"root","uid":0}`)
	for _, own := range []string{"msg=refused ", `msg="worker started" `} {
		if got := log.with(own); len(got) != 0 {
			t.Errorf("a worker's line became a record with the monitor's message %s: %s", own, got[0])
		}
	}
}
