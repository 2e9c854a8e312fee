// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
)

func TestDefaultMaxClockSkewIsTheHandshakes(t *testing.T) {
	if DefaultMaxClockSkew != handshake.DefaultMaxClockSkew {
		t.Fatalf("DefaultMaxClockSkew = %v, the handshake allows %v", DefaultMaxClockSkew, handshake.DefaultMaxClockSkew)
	}
}

// writeLog writes records with a Writer (each properly signed by the host key and chained)
// and returns the log.
func writeLog(t *testing.T, host hostKey, records ...*Record) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{})
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
	return joinLines(readLines(t, path))
}

// TestVerifyReloggedSignature: a holder of the host key logs a user's genuine signature again,
// for another client, within the clock skew: the chain and every signature verify, but the
// handshake hash is logged twice, and Verify names both lines.
func TestVerifyReloggedSignature(t *testing.T) {
	host := newHostKey(t)
	alice := newUserKey(t, false)
	now := time.Now()
	genuine := fullRecordAt(t, host.pub, alice, "alice", "imap", now)
	genuine.Time = now.Add(time.Second)
	again := *genuine
	again.Client, again.Time = "203.0.113.9:4444", now.Add(2*time.Minute)
	log := writeLog(t, host, genuine, resumedRecord(host.pub, alice.PublicKey(), "alice", "imap"), &again)
	rep := verifyBytes(t, log, host.pub)
	wantProblems(t, rep, []int{3}, []string{"handshake hash already logged on line 1 (seq 1), with the same user signature"})

	// The same signature, logged later than the clock skew allows: both reasons.
	later := *genuine
	later.Time = now.Add(DefaultMaxClockSkew + DecisionDelay + time.Minute)
	rep = verifyBytes(t, writeLog(t, host, genuine, &later), host.pub)
	wantProblems(t, rep, []int{2}, []string{"more than the clock skew allowed (5m0s) and 1m0s after the statement's time"})
	if !bytes.Contains([]byte(rep.Problems[0].Reason), []byte("already logged on line 1")) {
		t.Fatalf("the repeated signature is not reported: %v", rep.Problems[0])
	}

	// Another signature (ECDSA signs differently each time) over the same statement is the
	// same handshake logged twice as well.
	bob := newUserKey(t, true)
	first := fullRecordAt(t, host.pub, bob, "bob", "git", now)
	second := fullRecordAt(t, host.pub, bob, "bob", "git", now)
	second.Statement = first.Statement
	second.Signature = fullRecordResign(t, bob, first.Statement)
	rep = verifyBytes(t, writeLog(t, host, first, second), host.pub)
	wantProblems(t, rep, []int{2}, []string{"handshake hash already logged on line 1 (seq 1), with another user signature"})
}

// TestVerifyRecordTime: a full handshake's record must be logged within the clock skew of its
// statement's time (and a little more after it, for the decision).
func TestVerifyRecordTime(t *testing.T) {
	host := newHostKey(t)
	alice := newUserKey(t, false)
	stmt := time.Now().Truncate(time.Second)
	at := func(d time.Duration) *Record {
		r := fullRecordAt(t, host.pub, alice, "alice", "imap", stmt)
		r.Time = stmt.Add(d)
		return r
	}
	good := []time.Duration{0, -DefaultMaxClockSkew, DefaultMaxClockSkew, DefaultMaxClockSkew + DecisionDelay}
	var records []*Record
	for _, d := range good {
		records = append(records, at(d))
	}
	if rep := verifyBytes(t, writeLog(t, host, records...), host.pub); !rep.OK() {
		t.Fatalf("records within the skew: %v", rep.Problems)
	}
	rep := verifyBytes(t, writeLog(t, host,
		at(-DefaultMaxClockSkew-time.Second),
		at(DefaultMaxClockSkew+DecisionDelay+time.Second),
		at(-1<<62), at(1<<62)), host.pub)
	wantProblems(t, rep, []int{1, 2, 3, 4}, []string{"(5m0s) before the statement's time", "(5m0s) and 1m0s after the statement's time", "before", "after"})

	// A smaller skew, as a server configured with one allows.
	opts := VerifyOptions{MaxClockSkew: time.Minute}
	rep, err := VerifyWith(bytes.NewReader(writeLog(t, host, at(3*time.Minute), at(90*time.Second))), host.pub, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantProblems(t, rep, []int{1}, []string{"more than the clock skew allowed (1m0s) and 1m0s after"})
	if _, err := VerifyWith(bytes.NewReader(nil), host.pub, VerifyOptions{MaxClockSkew: -time.Second}); err == nil {
		t.Fatal("a negative skew was accepted")
	}
}

// fullRecordResign signs statement again with user and returns the signature, armored.
func fullRecordResign(t *testing.T, user ssh.Signer, statement string) string {
	t.Helper()
	sig, err := keys.Sign(user, UserNamespace, []byte(statement))
	if err != nil {
		t.Fatal(err)
	}
	return string(keys.Armor(sig))
}

// TestVerifyReloggedAcrossFiles: a holder of the host key rotates the log right after a full
// handshake and logs the user's genuine signature again, within the clock skew and for
// another client, in the new file. Each file verifies on its own; verified one after the
// other with one Handshakes, the second names the first file's line.
func TestVerifyReloggedAcrossFiles(t *testing.T) {
	host := newHostKey(t)
	alice := newUserKey(t, false)
	now := time.Now()
	genuine := fullRecordAt(t, host.pub, alice, "alice", "imap", now)
	genuine.Time = now.Add(time.Second)
	again := *genuine
	again.Client, again.Time = "203.0.113.9:4444", now.Add(time.Minute)
	old := writeLog(t, host, resumedRecord(host.pub, alice.PublicKey(), "alice", "imap"), genuine)
	rotated := writeLog(t, host, &again)
	for _, log := range [][]byte{old, rotated} {
		if rep := verifyBytes(t, log, host.pub); !rep.OK() {
			t.Fatalf("a file alone: %v", rep.Problems)
		}
	}
	var hs Handshakes
	rep, err := VerifyWith(bytes.NewReader(old), host.pub, VerifyOptions{Handshakes: &hs, Name: "audit.log.1"})
	if err != nil || !rep.OK() {
		t.Fatalf("the first file: %v, %v", err, rep.Problems)
	}
	rep, err = VerifyWith(bytes.NewReader(rotated), host.pub, VerifyOptions{Handshakes: &hs, Name: "audit.log"})
	if err != nil {
		t.Fatal(err)
	}
	wantProblems(t, rep, []int{1}, []string{`handshake hash already logged in "audit.log.1" on line 2 (seq 2), with the same user signature`})
}
