// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/testutil"
)

// garbageSigner "signs" with random bytes of a fixed length, making an SSHSIG signature that
// parses but does not verify.
type garbageSigner struct {
	pub  ssh.PublicKey
	blob []byte
}

func (g garbageSigner) PublicKey() ssh.PublicKey { return g.pub }

func (g garbageSigner) Sign(io.Reader, []byte) (*ssh.Signature, error) {
	return &ssh.Signature{Format: g.pub.Type(), Blob: g.blob}, nil
}

// newGarbageSigner returns a garbageSigner whose SSHSIG signatures have the largest size a
// ClientAuth carries (keys.MaxSignatureSize).
func newGarbageSigner(t *testing.T) garbageSigner {
	pub := testutil.Signer(t).PublicKey()
	overhead := len(keys.Assemble(pub, handshake.Namespace, &ssh.Signature{Format: pub.Type()}))
	g := garbageSigner{pub: pub, blob: make([]byte, keys.MaxSignatureSize-overhead)}
	if _, err := rand.Read(g.blob); err != nil {
		t.Fatal(err)
	}
	if n := len(keys.Assemble(pub, handshake.Namespace, &ssh.Signature{Format: pub.Type(), Blob: g.blob})); n != keys.MaxSignatureSize {
		t.Fatalf("garbage signature is %d bytes, want %d", n, keys.MaxSignatureSize)
	}
	return g
}

// maxName is a valid user name of the largest length, of no account.
var maxName = "netauth-" + strings.Repeat("x", keys.MaxNameLength-len("netauth-"))

// verifyLog checks the testbed's whole audit log and returns the report.
func verifyLog(t *testing.T, tb *testbed) *audit.Report {
	t.Helper()
	f, err := os.Open(tb.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := audit.Verify(f, tb.d.HostKey())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("audit log does not verify: %v", rep.Problems)
	}
	return rep
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestAuditRefusalFlood: 10,000 full handshakes from one address, each with a ClientAuth of
// the largest size (a user name of 64 bytes, a 16 KiB signature of random bytes), through the
// acceptor to the monitor, grow the audit log by at most PerSource refusal lines and one
// summary line per interval, each at most audit.MaxRefusalLine bytes; the log verifies, and
// its refusal lines and summaries account for every handshake.
func TestAuditRefusalFlood(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	addr := tb.addr("whoami")
	cfg := &netauth.Config{User: maxName, Signer: newGarbageSigner(t), KnownHostsFile: tb.known, DisableResumption: true}
	before := fileSize(t, tb.auditLog)
	start := time.Now()
	// The most the log may grow by after elapsed: the refusals of each interval begun, plus
	// one summary each.
	bound := func(elapsed time.Duration) int64 {
		intervals := int64(elapsed/audit.DefaultRefusalInterval) + 2
		return intervals * (audit.DefaultRefusalsPerSource + 1) * (audit.MaxRefusalLine + 1)
	}
	const n, workers = 10000, 4
	var next, refused atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= n && failed.Load() == nil {
				c, err := netauth.Dial("tcp", addr, cfg)
				if err == nil {
					err = c.Handshake()
					c.Close()
				}
				if err == nil {
					failed.Store("a handshake with a garbage signature was accepted")
					return
				}
				var re *netauth.RefusedError
				if !errors.As(err, &re) {
					failed.Store("handshake: " + err.Error())
					return
				}
				if refused.Add(1)%500 == 0 {
					fi, err := os.Stat(tb.auditLog)
					if err != nil {
						failed.Store(err.Error())
						return
					}
					if grown, limit := fi.Size()-before, bound(time.Since(start)); grown > limit {
						failed.Store("the audit log grew by more than the bound")
						t.Errorf("after %d refusals the audit log grew by %d bytes, more than %d", refused.Load(), grown, limit)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if msg := failed.Load(); msg != nil {
		t.Fatal(msg)
	}
	elapsed := time.Since(start)
	tb.d.Shutdown(2 * time.Second) // writes the summaries still counting
	grown := fileSize(t, tb.auditLog) - before
	t.Logf("%d refused handshakes in %v grew the audit log by %d bytes", refused.Load(), elapsed.Round(time.Millisecond), grown)
	if limit := bound(elapsed); grown > limit {
		t.Fatalf("%d refusals grew the audit log by %d bytes, more than %d", refused.Load(), grown, limit)
	}
	rep := verifyLog(t, tb)
	if rep.Refused+int(rep.Summarized) != n || rep.Summaries == 0 {
		t.Fatalf("the log has %d refusals and %d in %d summaries, want %d in all", rep.Refused, rep.Summarized, rep.Summaries, n)
	}
	data, err := os.ReadFile(tb.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		if len(line) > audit.MaxRefusalLine {
			t.Fatalf("line %d is %d bytes, more than %d", i+1, len(line), audit.MaxRefusalLine)
		}
	}
}

// TestRefusalRecordBounded: whatever a refusal carries (every field may be the client's), its
// audit record is at most audit.MaxRefusalLine bytes, holds no unverified signature and no
// invalid user name, and verifies.
func TestRefusalRecordBounded(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	tb.d.mu.Lock()
	s := tb.d.services["whoami"]
	tb.d.mu.Unlock()
	// Characters whose JSON encoding is longest, and invalid UTF-8.
	var b strings.Builder
	for b.Len() < 16<<10 {
		b.WriteString("<>&\"\\\x00\x1b\xff\xfe\u2028\u2029é\n")
	}
	big := b.String()
	sig := make([]byte, keys.MaxSignatureSize)
	if _, err := rand.Read(sig); err != nil {
		t.Fatal(err)
	}
	refusals := []*handshake.Refusal{
		{Code: handshake.CodeAuthFailed, Reason: big, Err: errors.New(big), Client: big, User: big, KeyFP: big,
			Statement: []byte(big), Signature: []byte(big)},
		{Code: handshake.Code(0xff), Reason: big, Err: errors.New(big), Client: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%" + big + "]:65535",
			User: maxName, KeyFP: "SHA256:" + strings.Repeat("A", 43), Statement: []byte(big), Signature: sig},
		{Code: handshake.CodeProtocolError, Reason: big, Client: "192.0.2.1:1", User: maxName + "x", Resumed: true},
	}
	for i, r := range refusals {
		before := fileSize(t, tb.auditLog)
		s.refused(r)
		data, err := os.ReadFile(tb.auditLog)
		if err != nil {
			t.Fatal(err)
		}
		// One line, and perhaps a checkpoint signed in the background.
		var added [][]byte
		for _, l := range bytes.Split(bytes.TrimSuffix(data[before:], []byte("\n")), []byte("\n")) {
			if !bytes.Contains(l, []byte(`"checkpoint":`)) {
				added = append(added, l)
			}
		}
		if len(added) != 1 || len(added[0]) == 0 {
			t.Fatalf("refusal %d: not one line but %q", i, added)
		}
		line := added[0]
		if len(line) > audit.MaxRefusalLine {
			t.Fatalf("refusal %d: its line is %d bytes, more than %d:\n%s", i, len(line), audit.MaxRefusalLine, line)
		}
		if bytes.Contains(line, []byte("BEGIN SSH SIGNATURE")) || bytes.Contains(line, []byte(`"signature"`)) || bytes.Contains(line, []byte(`"statement"`)) {
			t.Fatalf("refusal %d: the line holds the client's signature or statement:\n%s", i, line)
		}
		if hasHash := bytes.Contains(line, []byte(`"sig_sha256"`)); hasHash != (len(r.Signature) > 0) {
			t.Fatalf("refusal %d: signature of %d bytes, sig_sha256 in the line: %v:\n%s", i, len(r.Signature), hasHash, line)
		}
		if r.User != maxName && (bytes.Contains(line, []byte(`"user":`)) || !bytes.Contains(line, []byte(`"user_sha256"`))) {
			t.Fatalf("refusal %d: an invalid user name is not logged by its hash:\n%s", i, line)
		}
		if r.User == maxName && !bytes.Contains(line, []byte(`"user":"`+maxName+`"`)) {
			t.Fatalf("refusal %d: a valid user name is not logged:\n%s", i, line)
		}
	}
	verifyLog(t, tb)
}

// TestAuditReopenOnReload: after the audit log is rotated by renaming it, a reload (SIGHUP)
// makes netauthd go on in a new file at the configured path, which continues the chain of the
// rotated one.
func TestAuditReopenOnReload(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	cfg := tb.config("netauth-alice")
	cfg.DisableResumption = true
	if _, err := tb.whoami("whoami", "netauth-alice", cfg); err != nil {
		t.Fatal(err)
	}
	rotated := tb.auditLog + ".1"
	if err := os.Rename(tb.auditLog, rotated); err != nil {
		t.Fatal(err)
	}
	if err := tb.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.whoami("whoami", "netauth-alice", cfg); err != nil {
		t.Fatal(err)
	}
	rep := verifyLog(t, tb)
	if rep.Full != 1 || rep.LastSeq != 2 {
		t.Fatalf("the new log has %d full handshakes, last seq %d; want 1, 2 (after the continuing checkpoint)", rep.Full, rep.LastSeq)
	}
	old := *tb
	old.auditLog = rotated
	oldRep := verifyLog(t, &old)
	if oldRep.Full != 1 {
		t.Fatalf("the rotated log has %d full handshakes, want 1", oldRep.Full)
	}
	if err := rep.Continues(oldRep, nil); err != nil {
		t.Fatalf("the new log does not continue the rotated one: %v", err)
	}
}

// TestAuditRecordNamesWorker: the record of every accepted connection names the pid of the
// worker that serves it: a per-user worker started for the connection, the same worker
// reused, per-connection workers, and a spare that became the worker. Records of connections
// that started a worker used to name none.
func TestAuditRecordNamesWorker(t *testing.T) {
	perConn := strings.NewReplacer("service whoami", "service whoamipc", "idle-timeout 1m", "mode per-connection").Replace(whoamiService)
	tb := newTestbed(t, identityService+whoamiService+perConn)
	var pids []string
	serve := func(service string) {
		t.Helper()
		out, err := tb.whoami(service, "netauth-alice", tb.config("netauth-alice"))
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, out["pid"])
	}
	serve("whoami")   // a new worker, started afresh
	serve("whoami")   // the same worker
	serve("whoamipc") // per-connection: a worker each
	serve("whoamipc")
	if pids[0] == "" || pids[1] != pids[0] || pids[2] == pids[3] || pids[2] == pids[0] {
		t.Fatalf("worker pids %v, want one per-user worker, then two per-connection workers", pids)
	}
	spare := tb.useSpares(t)
	report, _ := tb.identity(t, "identity", "netauth-alice")
	if report["pid"] != strconv.Itoa(spare) {
		t.Fatalf("the identity connection was served by %s, not the spare %d", report["pid"], spare)
	}
	pids = append(pids, report["pid"])
	verifyLog(t, tb)
	data, err := os.ReadFile(tb.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	var workers []string
	for _, l := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var r audit.Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		if r.Checkpoint == nil && r.Decision == audit.Accepted {
			workers = append(workers, strconv.Itoa(r.Worker))
		}
	}
	if strings.Join(workers, " ") != strings.Join(pids, " ") {
		t.Fatalf("accepted records name workers %v, want the pids that served them, %v", workers, pids)
	}
}
