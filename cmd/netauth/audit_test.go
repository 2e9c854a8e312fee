// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/testutil"
)

// auditLog is an audit log written for a test, with the files around it.
type auditLog struct {
	path    string // the log
	hostPub string // the host's public key, .pub format
	lines   [][]byte
}

// auditHost makes a host key for an audit log and writes its public half to dir, where
// netauth audit verify -host-key reads it.
func auditHost(t *testing.T, dir string) (priv ed25519.PrivateKey, pub ssh.PublicKey, pubPath string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if pub, err = ssh.NewPublicKey(priv.Public()); err != nil {
		t.Fatal(err)
	}
	pubPath = filepath.Join(dir, "host_key.pub")
	if err := os.WriteFile(pubPath, ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub, pubPath
}

// writeAuditLog writes a log of four records: a full handshake by alice,
// her resumed connection, a refusal, and a full handshake by bob; closing it
// adds the closing checkpoint, line 5, which covers them.
func writeAuditLog(t *testing.T) auditLog {
	t.Helper()
	dir := t.TempDir()
	hostPriv, host, hostPub := auditHost(t, dir)
	l := auditLog{path: filepath.Join(dir, "audit.log"), hostPub: hostPub}
	w, err := audit.Open(l.path, hostPriv, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hash := byte(0)
	full := func(name string) *audit.Record {
		hash++ // each handshake has its own hash
		user := testutil.Signer(t)
		st := keys.Statement{HandshakeHash: bytes.Repeat([]byte{hash}, 32), HostKey: host, Service: "imap", User: name, Time: time.Now()}
		text, err := st.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		sig, err := keys.Sign(user, audit.UserNamespace, text)
		if err != nil {
			t.Fatal(err)
		}
		return &audit.Record{
			Client: "192.0.2.1:40000", Service: "imap", User: name,
			KeyType: user.PublicKey().Type(), KeyFP: keys.Fingerprint(user.PublicKey()), HostKeyFP: keys.Fingerprint(host),
			Mode: audit.ModeFull, Decision: audit.Accepted, Worker: 100,
			Statement: string(text), Signature: string(keys.Armor(sig)),
		}
	}
	alice := full("alice")
	resumed := *alice
	resumed.Mode, resumed.Statement, resumed.Signature = audit.ModeResumed, "", ""
	for _, r := range []*audit.Record{
		alice,
		&resumed,
		{Client: "192.0.2.2:1", Service: "imap", HostKeyFP: keys.Fingerprint(host), Decision: audit.Refused, Reason: "handshake timed out"},
		full("bob"),
	} {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(l.path)
	if err != nil {
		t.Fatal(err)
	}
	l.lines = bytes.SplitAfter(data, []byte("\n"))[:5]
	return l
}

// runAudit runs auditMain and returns its exit status and output.
func runAudit(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = auditMain(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestAuditVerify(t *testing.T) {
	l := writeAuditLog(t)
	code, out, errOut := runAudit("verify", "-host-key", l.hostPub, l.path)
	if code != 0 || !strings.HasPrefix(out, "4 records: 2 full, 1 resumed, 1 refused; 1 checkpoint; all signatures and the chain verify\nlast good record: seq 4 at ") ||
		!strings.HasSuffix(out, "; the log ends with netauthd's closing checkpoint\n") {
		t.Fatalf("verify of a good log: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	// Change the client address in line 3: the chain breaks after it, and no checkpoint
	// covers it or the records before it any more.
	bad := filepath.Join(t.TempDir(), "audit.log")
	tampered := bytes.Replace(l.lines[2], []byte("192.0.2.2:1"), []byte("192.0.2.3:1"), 1)
	if bytes.Equal(tampered, l.lines[2]) {
		t.Fatal("the test did not change line 3")
	}
	if err := os.WriteFile(bad, bytes.Join([][]byte{l.lines[0], l.lines[1], tampered, l.lines[3], l.lines[4]}, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runAudit("verify", "-host-key", l.hostPub, bad)
	want := "line 1 (seq 1): no host signature covers this record: the chain breaks at line 4 (see line 3)\n" +
		"line 2 (seq 2): no host signature covers this record: the chain breaks at line 4 (see line 3)\n" +
		"line 3 (seq 3): the chain breaks after this record, at line 4: prev does not match the hash of seq 3 (line 3): that line or this one was replaced: no host signature covers this record\n" +
		"4 records: 1 full, 0 resumed, 0 refused; 1 checkpoint; 3 bad (listed above)\n"
	if code != 1 || !strings.HasPrefix(out, want) {
		t.Fatalf("verify of a tampered log: exit %d, want 1 and\n%s\nstdout:\n%s\nstderr:\n%s", code, want, out, errOut)
	}

	// A removed line.
	if err := os.WriteFile(bad, bytes.Join([][]byte{l.lines[0], l.lines[2], l.lines[3], l.lines[4]}, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runAudit("verify", "-host-key", l.hostPub, bad)
	if code != 1 || !strings.HasPrefix(out, "line 1 (seq 1): the chain breaks after this record, at line 2: seq 3 comes after seq 1 (line 1): records missing or out of order") ||
		strings.Count(out, "\nline ") != 0 {
		t.Fatalf("verify of a log with a line removed: exit %d\n%s", code, out)
	}
}

// TestAuditVerifyUncovered: records no checkpoint covers yet (a log still being written) are
// listed apart and give exit status 3, not 1; with -require-signed, or in a file given before
// another (rotated, so closed), they are bad lines.
func TestAuditVerifyUncovered(t *testing.T) {
	dir := t.TempDir()
	hostPriv, host, hostPub := auditHost(t, dir)
	path := filepath.Join(dir, "audit.log")
	w, err := audit.Open(path, hostPriv, audit.Options{CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, reason := range []string{"one", "two"} {
		if err := w.Write(&audit.Record{Client: "192.0.2.2:1", Service: "imap", HostKeyFP: keys.Fingerprint(host), Decision: audit.Refused, Reason: reason}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runAudit("verify", "-host-key", hostPub, path)
	want := "lines 1-2 (seq 1-2): 2 records not yet covered by a host signature: the log is still being written"
	if code != 3 || !strings.HasPrefix(out, want) ||
		!strings.Contains(out, "\n2 records: 0 full, 0 resumed, 2 refused; the chain and the signatures verify, but 2 records are not covered by a host signature (listed above)\n") {
		t.Fatalf("verify of a log being written: exit %d, want 3 and %q\nstdout:\n%s\nstderr:\n%s", code, want, out, errOut)
	}
	code, out, _ = runAudit("verify", "-host-key", hostPub, "-require-signed", path)
	if code != 1 || !strings.HasPrefix(out, "line 1 (seq 1): not yet covered by a host signature: the log is still being written") || !strings.Contains(out, "; 2 bad (listed above)\n") {
		t.Fatalf("verify -require-signed of a log being written: exit %d\n%s", code, out)
	}
	closed := writeAuditLog(t)
	if code, out, _ := runAudit("verify", "-host-key", hostPub, path, closed.path); code != 1 || !strings.HasPrefix(out, path+": line 1 (seq 1): not yet covered") {
		t.Fatalf("verify of a log being written, given before another: exit %d\n%s", code, out)
	}
	// The other file is signed by its own host key: give each its own.
	if code, out, _ := runAudit("verify", "-host-key", closed.hostPub, closed.path); code != 0 {
		t.Fatalf("verify of a closed log: exit %d\n%s", code, out)
	}
}

// TestAuditVerifyRotatedFileCut: a file given before the last was rotated away, which ends
// it with a closing checkpoint; one cut at an earlier checkpoint (every record left covered,
// the records after it gone without a trace) is a bad file, exit 1, where it used to verify.
func TestAuditVerifyRotatedFileCut(t *testing.T) {
	dir := t.TempDir()
	hostPriv, host, hostPub := auditHost(t, dir)
	refusal := func(reason string) *audit.Record {
		return &audit.Record{Client: "192.0.2.2:1", Service: "imap", HostKeyFP: keys.Fingerprint(host), Decision: audit.Refused, Reason: reason}
	}
	// audit.log.1: records 1-2, checkpoint 3 (Reopen of the same file covers them), records
	// 4-5, closing checkpoint 6.
	rotated := filepath.Join(dir, "audit.log.1")
	w, err := audit.Open(rotated, hostPriv, audit.Options{CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i, reason := range []string{"one", "two", "three", "four"} {
		if err := w.Write(refusal(reason)); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := w.Reopen(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	current := filepath.Join(dir, "audit.log")
	if w, err = audit.Open(current, hostPriv, audit.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(refusal("five")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runAudit("verify", "-host-key", hostPub, rotated, current); code != 0 {
		t.Fatalf("verify of a rotated log: exit %d\n%s%s", code, out, errOut)
	}
	data, err := os.ReadFile(rotated)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) != 7 || !bytes.Contains(lines[2], []byte(`"checkpoint":`)) || !bytes.Contains(lines[5], []byte(`"event":"close"`)) {
		t.Fatalf("rotated file:\n%s", data)
	}
	if err := os.WriteFile(rotated, bytes.Join(lines[:3], nil), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runAudit("verify", "-host-key", hostPub, rotated, current)
	want := rotated + ": line 3 (seq 3): the log does not end with the closing checkpoint"
	if code != 1 || !strings.HasPrefix(out, want) || !strings.Contains(out, rotated+": 2 records: 0 full, 0 resumed, 2 refused; 1 checkpoint; 1 bad (listed above)\n") {
		t.Fatalf("verify of a rotated file cut at a checkpoint: exit %d, want 1 and %q\n%s", code, want, out)
	}
	// Alone, as the file being written, the cut file verifies: its end is not known.
	if code, out, _ := runAudit("verify", "-host-key", hostPub, rotated); code != 0 {
		t.Fatalf("verify of the cut file alone: exit %d\n%s", code, out)
	}
}

// TestAuditVerifyRelogged: a user's genuine signature logged again (re-signed by the host
// key, so the chain verifies), for another client or later than the clock skew allows, in the
// same file or in another one given with it, fails verification with both lines named; -skew
// sets the skew.
func TestAuditVerifyRelogged(t *testing.T) {
	dir := t.TempDir()
	hostPriv, host, hostPub := auditHost(t, dir)
	user := testutil.Signer(t)
	hh := make([]byte, 32)
	if _, err := rand.Read(hh); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Truncate(time.Second)
	st := keys.Statement{HandshakeHash: hh, HostKey: host, Service: "imap", User: "alice", Time: when}
	text, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := keys.Sign(user, audit.UserNamespace, text)
	if err != nil {
		t.Fatal(err)
	}
	record := func(client string, at time.Duration) *audit.Record {
		return &audit.Record{
			Time: when.Add(at), Client: client, Service: "imap", User: "alice",
			KeyType: user.PublicKey().Type(), KeyFP: keys.Fingerprint(user.PublicKey()), HostKeyFP: keys.Fingerprint(host),
			Mode: audit.ModeFull, Decision: audit.Accepted, Worker: 100,
			Statement: string(text), Signature: string(keys.Armor(sig)),
		}
	}
	write := func(name string, records ...*audit.Record) string {
		path := filepath.Join(dir, name)
		w, err := audit.Open(path, hostPriv, audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range records {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}

	relogged := write("relogged.log", record("192.0.2.1:40000", time.Second), record("203.0.113.9:5555", time.Minute))
	code, out, _ := runAudit("verify", "-host-key", hostPub, relogged)
	want := "line 2 (seq 2): handshake hash already logged on line 1 (seq 1), with the same user signature"
	if code != 1 || !strings.HasPrefix(out, want) {
		t.Fatalf("verify of a log with a signature logged twice: exit %d, want 1 and %q\n%s", code, want, out)
	}

	// Refusals, one logged and two counted in a summary.
	refusals := filepath.Join(dir, "refusals.log")
	w, err := audit.Open(refusals, hostPriv, audit.Options{Refusals: audit.RefusalLimits{PerSource: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := w.WriteRefusal(&audit.Refusal{Client: "192.0.2.1:1", Code: "auth_failed", Signature: sig}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runAudit("verify", "-host-key", hostPub, refusals)
	want = "2 records: 0 full, 0 resumed, 1 refused (and 2 more counted in 1 summary records); 1 checkpoint; all signatures and the chain verify\n"
	if code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("verify of a log with a summary: exit %d, want 0 and %q\n%s", code, want, out)
	}

	// Logged again in another file, as after a rotation: each file verifies alone; given
	// together, oldest first, the second names the first.
	first := write("audit.log.1", record("192.0.2.1:40000", time.Second))
	second := write("audit.log", record("203.0.113.9:5555", time.Minute))
	for _, f := range []string{first, second} {
		if code, out, _ := runAudit("verify", "-host-key", hostPub, f); code != 0 {
			t.Fatalf("verify of %s alone: exit %d\n%s", f, code, out)
		}
	}
	code, out, _ = runAudit("verify", "-host-key", hostPub, first, second)
	want = second + `: line 1 (seq 1): handshake hash already logged in "` + first + `" on line 1 (seq 1), with the same user signature`
	if code != 1 || !strings.HasPrefix(out, first+": 1 records: 1 full, 0 resumed, 0 refused; 1 checkpoint; all signatures and the chain verify\n") || !strings.Contains(out, "\n"+want) {
		t.Fatalf("verify of two files with the same signature: exit %d, want 1 and %q\n%s", code, want, out)
	}

	late := write("late.log", record("192.0.2.1:40000", 3*time.Minute))
	if code, out, _ := runAudit("verify", "-host-key", hostPub, late); code != 0 {
		t.Fatalf("verify of a record 3 minutes after its statement: exit %d\n%s", code, out)
	}
	code, out, _ = runAudit("verify", "-host-key", hostPub, "-skew", "1m", late)
	want = "line 1 (seq 1): logged at " + when.Add(3*time.Minute).UTC().Format(time.RFC3339) + ", more than the clock skew allowed (1m0s)"
	if code != 1 || !strings.HasPrefix(out, want) {
		t.Fatalf("verify -skew 1m of a record 3 minutes after its statement: exit %d, want 1 and %q\n%s", code, want, out)
	}
}

func TestAuditVerifyErrors(t *testing.T) {
	l := writeAuditLog(t)
	notKey := filepath.Join(t.TempDir(), "key.pub")
	if err := os.WriteFile(notKey, []byte("not a key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		want string // in stderr; after -h, in stdout
	}{
		{[]string{"verify", l.path}, 2, "netauth audit verify: -host-key is missing"},
		{[]string{"verify", "-host-key", l.hostPub, "-skew", "0s", l.path}, 2, "netauth audit verify: -skew 0s: want a positive duration"},
		{[]string{"verify", "-host-key", l.hostPub, "-skew", "-1m", l.path}, 2, "-skew -1m0s: want a positive duration"},
		{[]string{"verify", "-host-key", l.hostPub, "-skew", "soon", l.path}, 2, `invalid value "soon" for flag -skew`},
		{[]string{"verify", "-host-key", l.hostPub}, 2, "netauth audit verify: missing the log file"},
		{[]string{"verify", "-h"}, 0, "Records cut from the end of the log"},
		{[]string{"help", "verify"}, 0, "usage: netauth audit verify -host-key FILE.pub [-skew DURATION] [-require-signed] LOGFILE"},
		{[]string{"verify", "-bogus", l.path}, 2, "flag provided but not defined: -bogus"},
		{[]string{"verify", "-host-key", notKey, l.path}, 1, "host key " + notKey + ": "},
		{[]string{"verify", "-host-key", l.hostPub, l.path + ".missing"}, 1, "no such file or directory"},
		{[]string{}, 2, "netauth audit: missing a command: verify or export"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"export", l.path}, 2, "netauth audit export: -seq is missing"},
		{[]string{"export", "-seq", "1"}, 2, "netauth audit export: missing the log file"},
		{[]string{"export", "-h"}, 0, "ssh-keygen command"},
	}
	for _, tt := range tests {
		code, out, errOut := runAudit(tt.args...)
		got := errOut
		if tt.code == 0 {
			got = out
		}
		if code != tt.code || !strings.Contains(got, tt.want) {
			t.Errorf("netauth audit %s: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d and %q", strings.Join(tt.args, " "), code, out, errOut, tt.code, tt.want)
		}
	}
	if code, out, _ := runAudit("-h"); code != 0 || !strings.Contains(out, "verify") || !strings.Contains(out, "export") {
		t.Errorf("netauth audit -h: exit %d\n%s", code, out)
	}
}

func TestAuditExport(t *testing.T) {
	l := writeAuditLog(t)
	dir := filepath.Join(t.TempDir(), "seq 4") // a space, so the command must quote it
	code, out, errOut := runAudit("export", "-seq", "4", "-dir", dir, "-host-key", l.hostPub, l.path)
	if code != 0 {
		t.Fatalf("export: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cmd := lines[len(lines)-1]
	q := shellQuote
	want := "ssh-keygen -Y verify -f " + q(filepath.Join(dir, "allowed_signers")) + " -I bob -n netauth-v1@ubns.dev -s " +
		q(filepath.Join(dir, "statement.sig")) + " < " + q(filepath.Join(dir, "statement"))
	if cmd != want {
		t.Fatalf("export printed the command\n%s\nwant\n%s", cmd, want)
	}
	if !strings.HasPrefix(out, "record seq 4: accepted user bob, service imap, key SHA256:") || lines[1] != "covered by the host's signature of checkpoint seq 5 (export it with -seq 5)" {
		t.Errorf("export output:\n%s", out)
	}
	// Run the printed command, as an administrator would paste it.
	res, err := exec.Command("/bin/sh", "-c", cmd).CombinedOutput()
	if err != nil || !strings.Contains(string(res), `Good "netauth-v1@ubns.dev" signature for bob`) {
		t.Fatalf("the printed command failed: %v\n%s", err, res)
	}

	// A forged statement fails the same command.
	stmt := filepath.Join(dir, "statement")
	data, err := os.ReadFile(stmt)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stmt, bytes.Replace(data, []byte("user bob"), []byte("user eve"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command("/bin/sh", "-c", cmd).CombinedOutput(); err == nil {
		t.Fatalf("ssh-keygen accepted a forged statement:\n%s", res)
	}

	// The default directory is the current one.
	t.Chdir(t.TempDir())
	if code, out, errOut := runAudit("export", "-seq", "1", l.path); code != 0 || !strings.HasSuffix(out, "ssh-keygen -Y verify -f allowed_signers -I alice -n netauth-v1@ubns.dev -s statement.sig < statement\n") {
		t.Fatalf("export to the current directory: exit %d\n%s%s", code, out, errOut)
	}
}

// TestAuditExportCheckpoint: a checkpoint exported checks with the printed ssh-keygen command,
// and the printed sha256sum command shows that the line before it is the head it signed; a
// changed checkpoint fails the same command.
func TestAuditExportCheckpoint(t *testing.T) {
	l := writeAuditLog(t)
	dir := filepath.Join(t.TempDir(), "seq 5")
	code, out, errOut := runAudit("export", "-seq", "5", "-dir", dir, "-host-key", l.hostPub, l.path)
	if code != 0 {
		t.Fatalf("export: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("export printed %d lines, want 5:\n%s", len(lines), out)
	}
	head := sha256.Sum256(bytes.TrimSuffix(l.lines[3], []byte("\n")))
	if want := fmt.Sprintf("checkpoint seq 5: head seq 4 (SHA-256 %x), vouching for seq 1 to 4, signed at ", head); !strings.HasPrefix(lines[0], want) ||
		!strings.HasSuffix(lines[0], ", closing the log") {
		t.Fatalf("export output:\n%s\nwant it to start %q", out, want)
	}
	q := shellQuote
	want := "ssh-keygen -Y verify -f " + q(filepath.Join(dir, "allowed_signers")) + " -I netauthd -n netauth-audit-v1@ubns.dev -s " +
		q(filepath.Join(dir, "checkpoint.sig")) + " < " + q(filepath.Join(dir, "checkpoint"))
	if lines[2] != want {
		t.Fatalf("export printed the command\n%s\nwant\n%s", lines[2], want)
	}
	res, err := exec.Command("/bin/sh", "-c", lines[2]).CombinedOutput()
	if err != nil || !strings.Contains(string(res), `Good "netauth-audit-v1@ubns.dev" signature for netauthd`) {
		t.Fatalf("the printed command failed: %v\n%s", err, res)
	}
	if want := fmt.Sprintf("and the head's line, line 4 of the log, whose SHA-256 is %x (the head the checkpoint signed), with:", head); lines[3] != want {
		t.Fatalf("export printed\n%s\nwant\n%s", lines[3], want)
	}
	res, err = exec.Command("/bin/sh", "-c", lines[4]).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(res), fmt.Sprintf("%x ", head)) {
		t.Fatalf("the printed sha256sum command (%s): %v\n%s", lines[4], err, res)
	}

	ckFile := filepath.Join(dir, "checkpoint")
	data, err := os.ReadFile(ckFile)
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(data, []byte(`"from":1`), []byte(`"from":2`), 1)
	if bytes.Equal(forged, data) {
		t.Fatal("the test did not change the checkpoint")
	}
	if err := os.WriteFile(ckFile, forged, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command("/bin/sh", "-c", lines[2]).CombinedOutput(); err == nil {
		t.Fatalf("ssh-keygen accepted a changed checkpoint:\n%s", res)
	}
}

func TestAuditExportErrors(t *testing.T) {
	l := writeAuditLog(t)
	otherPub := filepath.Join(t.TempDir(), "other.pub")
	_, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ssh.NewPublicKey(otherPriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherPub, ssh.MarshalAuthorizedKey(other), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-seq", "2"}, `record seq 2 is not a full handshake (mode "resumed")`},
		{[]string{"-seq", "3"}, `record seq 3 is not a full handshake (mode "")`},
		{[]string{"-seq", "99"}, "no record with seq 99"},
		{[]string{"-seq", "1", "-host-key", otherPub}, "line 1 (seq 1): no host signature covers this record: the chain breaks at line 5, which is bad, before a checkpoint covers it"},
		{[]string{"-seq", "1", "-host-key", otherPub}, "(line 5: checkpoint: host signature does not verify: it is by key "},
		{[]string{"-seq", "5", "-host-key", otherPub}, "line 5 (seq 5): checkpoint: host signature does not verify"},
	} {
		args := append(append([]string{"export", "-dir", dir}, tt.args...), l.path)
		code, _, errOut := runAudit(args...)
		if code != 1 || !strings.Contains(errOut, tt.want) {
			t.Errorf("netauth audit %s: exit %d, stderr:\n%s\nwant exit 1 and %q", strings.Join(args, " "), code, errOut, tt.want)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("failed exports wrote files: %v %v", entries, err)
	}
}

// TestAuditVerifyManyBadLines: past audit.MaxProblems bad lines, verify lists the first ones,
// says how many more there are, counts them all in its summary, and fails.
func TestAuditVerifyManyBadLines(t *testing.T) {
	l := writeAuditLog(t)
	n := audit.MaxProblems + 500
	bad := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(bad, bytes.Repeat([]byte("x\n"), n), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runAudit("verify", "-host-key", l.hostPub, bad)
	if code != 1 || strings.Count(out, "\nline ")+1 != audit.MaxProblems || !strings.HasPrefix(out, "line 1: ") ||
		!strings.Contains(out, "\n... and 500 more bad lines, not listed") ||
		!strings.Contains(out, fmt.Sprintf("%d records: 0 full, 0 resumed, 0 refused; %d bad (listed above)\n", n, n)) {
		t.Fatalf("verify of %d bad lines: exit %d\nstdout (%d bytes):\n%.3000s\nstderr:\n%s", n, code, len(out), out, errOut)
	}
}

// TestAuditExportPrintable: export prints a record's fields as printable text, whatever the
// log holds: without -host-key nothing vouches for the line, and whoever could write the file
// could otherwise put escape sequences on the terminal of the administrator who runs it.
func TestAuditExportPrintable(t *testing.T) {
	l := writeAuditLog(t)
	line := bytes.Replace(l.lines[3], []byte(`"service":"imap"`), []byte(`"service":"\u001b[2J\u001b]0;owned\u0007\u202eimap"`), 1)
	line = bytes.Replace(line, []byte(`"key_fp":"SHA256:`), []byte(`"key_fp":"\u001b[8mSHA256:`), 1)
	if bytes.Equal(line, l.lines[3]) {
		t.Fatal("the test did not change the record")
	}
	crafted := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(crafted, line, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runAudit("export", "-seq", "4", "-dir", t.TempDir(), crafted)
	if code != 0 {
		t.Fatalf("export: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, r := range out {
		if r != '\n' && !strconv.IsPrint(r) {
			t.Fatalf("export printed %q, which is not printable:\n%q", r, out)
		}
	}
	if !strings.Contains(out, `service \x1b[2J\x1b]0;owned\a\u202eimap, key \x1b[8mSHA256:`) {
		t.Fatalf("export did not print the fields escaped:\n%q", out)
	}
}

// TestAuditVerifyRotatedSequence: the files of a log rotated twice verify together, oldest
// first; a file left out, files given out of order, and a file cut at its end are reported as
// a bad link, naming the file that does not follow; a file netauthd started on an empty path
// is noted, not failed.
func TestAuditVerifyRotatedSequence(t *testing.T) {
	dir := t.TempDir()
	hostPriv, host, hostPub := auditHost(t, dir)
	current := filepath.Join(dir, "audit.log")
	w, err := audit.Open(current, hostPriv, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for i := range 3 {
		for j := range 2 {
			r := &audit.Record{Client: "192.0.2.2:1", Service: "imap", HostKeyFP: keys.Fingerprint(host), Decision: audit.Refused, Reason: fmt.Sprint(i, j)}
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		if i == 2 {
			break
		}
		rotated := fmt.Sprintf("%s.%d", current, 2-i)
		if err := os.Rename(current, rotated); err != nil {
			t.Fatal(err)
		}
		if err := w.Reopen(); err != nil {
			t.Fatal(err)
		}
		files = append(files, rotated)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	old2, old1 := files[0], files[1]
	code, out, errOut := runAudit("verify", "-host-key", hostPub, old2, old1, current)
	if code != 0 || strings.Contains(out, "follow") || strings.Contains(out, "note:") {
		t.Fatalf("verify of a rotated sequence: exit %d\n%s%s", code, out, errOut)
	}
	// The continuing checkpoint exports for ssh-keygen, its head named as the previous file's.
	exp := filepath.Join(dir, "export")
	code, out, errOut = runAudit("export", "-seq", "1", "-dir", exp, "-host-key", hostPub, current)
	if code != 0 || !strings.Contains(out, "continuing the file rotated away") || !strings.Contains(out, "tail -n 1 PREVIOUS_FILE") {
		t.Fatalf("export of the continuing checkpoint: exit %d\n%s%s", code, out, errOut)
	}
	// The oldest compressed, as logrotate leaves it.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	data, err := os.ReadFile(old2)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(old2+".gz", gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runAudit("verify", "-host-key", hostPub, old2+".gz", old1, current); code != 0 || strings.Contains(out, "follow") {
		t.Fatalf("verify of a rotated sequence, the oldest compressed: exit %d\n%s%s", code, out, errOut)
	}
	// export reads an uncompressed log, and says what to do with a compressed one.
	if code, _, errOut := runAudit("export", "-seq", "1", "-dir", exp, "-host-key", hostPub, old2+".gz"); code != 1 || !strings.Contains(errOut, "gunzip -k "+old2+".gz") {
		t.Errorf("export from a compressed log: exit %d, want 1 and how to decompress it\n%s", code, errOut)
	}
	for _, tc := range []struct {
		name  string
		files []string
		want  string
	}{
		{"missing", []string{old2, current}, current + ": line 1: does not follow " + old2 + ": its first line continues a file whose last line is seq 4"},
		{"reordered", []string{old1, old2, current}, old2 + ": line 1: does not follow " + old1 + ": the file given before it continues this one: the files are out of order"},
		{"reordered later", []string{old2, current, old1}, current + ": line 1: does not follow " + old2 + ": its first line continues " + old1},
	} {
		code, out, _ := runAudit(append([]string{"verify", "-host-key", hostPub}, tc.files...)...)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, want 1 and %q\n%s", tc.name, code, tc.want, out)
		}
	}

	// audit.log.1 cut before its last record and closing checkpoint.
	data, err = os.ReadFile(old1)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if err := os.WriteFile(old1, bytes.Join(lines[:len(lines)-2], nil), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runAudit("verify", "-host-key", hostPub, old2, old1, current)
	want := current + ": line 1: does not follow " + old1 + ": its first line continues a file whose last line is seq 4, but the file before it ends at seq 2: that file was cut at its end (2 lines missing)"
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, old1+": line 2 (seq 2): not yet covered") || !strings.Contains(out, "the log does not end with the closing checkpoint") {
		t.Errorf("a file cut at its end: exit %d, want 1 and %q\n%s", code, want, out)
	}

	// A log netauthd started on an empty path, after the files before it: noted.
	fresh := filepath.Join(dir, "fresh", "audit.log")
	if w, err = audit.Open(fresh, hostPriv, audit.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runAudit("verify", "-host-key", hostPub, old2, fresh)
	if code != 0 || !strings.Contains(out, fresh+": note: it starts a chain of its own") {
		t.Errorf("a log started on an empty path after a rotated file: exit %d\n%s", code, out)
	}
}
