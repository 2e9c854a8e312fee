// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/testutil"
)

// checkpointedLog writes n records (cycling through full, resumed and refused
// ones) with a checkpoint after every `every` of them, then closes the log,
// and returns its path and lines. With n = 8 and every = 4 the lines are:
// records 1-4, checkpoint 5 (head 4), records 6-9, checkpoint 10 (head 9),
// and the closing checkpoint 11 (head 10).
func checkpointedLog(t testing.TB, host hostKey, n, every int) (string, [][]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{CheckpointRecords: every, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	writeSamples(t, w, host, n, 3, func(i int) {
		if (i+1)%every == 0 {
			waitCovered(t, w)
		}
	})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path, readLines(t, path)
}

// parseRecord parses a line.
func parseRecord(t testing.TB, l []byte) *Record {
	t.Helper()
	var r Record
	if err := json.Unmarshal(l, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

// lineHash returns the hex SHA-256 of a line.
func lineHash(l []byte) string {
	h := sha256.Sum256(l)
	return hex.EncodeToString(h[:])
}

// TestCheckpointLayout: the checkpoints of checkpointedLog are where the doc
// says, each signing the line before it, vouching for the records since the
// last one.
func TestCheckpointLayout(t *testing.T) {
	host := newHostKey(t)
	_, lines := checkpointedLog(t, host, 8, 4)
	if len(lines) != 11 {
		t.Fatalf("%d lines, want 11:\n%s", len(lines), joinLines(lines))
	}
	for i, want := range map[int]Checkpoint{4: {Seq: 4, From: 1}, 9: {Seq: 9, From: 5}, 10: {Seq: 10, From: 10, Event: EventClose}} {
		ck := parseRecord(t, lines[i]).Checkpoint
		if ck == nil || ck.Seq != want.Seq || ck.From != want.From || ck.Event != want.Event || ck.Head != lineHash(lines[i-1]) {
			t.Errorf("line %d: checkpoint %+v, want head %d (its hash), from %d, event %q", i+1, ck, want.Seq, want.From, want.Event)
		}
	}
	rep := verifyBytes(t, joinLines(lines), host.pub)
	if !rep.Signed() || !rep.Closed || rep.Records != 8 || rep.Checkpoints != 3 || rep.Full != 3 || rep.Resumed != 3 || rep.Refused != 2 || rep.LastSeq != 9 {
		t.Fatalf("report: %+v", rep)
	}
}

// TestCheckpointAfterInterval: a record is covered CheckpointInterval after
// it was written, with no other record, by the timer.
func TestCheckpointAfterInterval(t *testing.T) {
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{CheckpointInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(refusedRecord(host.pub, "one")); err != nil {
		t.Fatal(err)
	}
	rep := verifyFile(t, path, host)
	if rep.Uncovered != 1 || len(rep.UncoveredRuns) != 1 || !rep.UncoveredRuns[0].AtEnd || !rep.OK() {
		t.Fatalf("right after the write: %+v", rep)
	}
	waitCovered(t, w)
	rep = verifyFile(t, path, host)
	if !rep.Signed() || rep.Checkpoints != 1 || rep.Closed {
		t.Fatalf("after the interval: %+v", rep)
	}
	// No record, no checkpoint.
	time.Sleep(60 * time.Millisecond)
	if rep := verifyFile(t, path, host); rep.Checkpoints != 1 {
		t.Fatalf("checkpoints written with nothing to cover: %+v", rep)
	}
}

// TestWriteDoesNotWaitForCheckpoint: while a checkpoint is being signed,
// records are written without waiting for it; the checkpoint then covers the
// head it signed, the records written meanwhile follow it, and the next
// checkpoint covers them.
func TestWriteDoesNotWaitForCheckpoint(t *testing.T) {
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{CheckpointRecords: 2, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	gate := gateSigner{Signer: w.signer, entered: make(chan struct{}), release: make(chan struct{})}
	w.signer = gate
	for range 2 {
		if err := w.Write(refusedRecord(host.pub, "before")); err != nil {
			t.Fatal(err)
		}
	}
	<-gate.entered // the checkpoint of seq 2 is being signed
	done := make(chan error)
	go func() {
		for i := range 3 {
			if err := w.Write(refusedRecord(host.pub, fmt.Sprint("meanwhile ", i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write waited for the checkpoint being signed")
	}
	gate.release <- struct{}{}
	// The next checkpoint starts at once: 3 records wait.
	<-gate.entered
	gate.release <- struct{}{}
	waitCovered(t, w)
	w.signer = gate.Signer
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	// 1-2 before, 3-5 meanwhile, 6 the checkpoint of seq 2, 7 the one of seq 6, 8 the close.
	if len(lines) != 8 {
		t.Fatalf("%d lines, want 8:\n%s", len(lines), joinLines(lines))
	}
	if ck := parseRecord(t, lines[5]).Checkpoint; ck == nil || ck.Seq != 2 || ck.From != 1 || ck.Head != lineHash(lines[1]) {
		t.Fatalf("line 6 is not the checkpoint of seq 2, signed while 3 records were written:\n%s", lines[5])
	}
	if ck := parseRecord(t, lines[6]).Checkpoint; ck == nil || ck.Seq != 6 || ck.From != 3 {
		t.Fatalf("line 7 is not the checkpoint of the records written meanwhile:\n%s", lines[6])
	}
	rep := verifyBytes(t, joinLines(lines), host.pub)
	if !rep.Signed() || !rep.Closed || rep.Refused != 5 {
		t.Fatalf("report: %+v", rep)
	}
	// Without that second checkpoint (and the close), the 3 records are not
	// covered: the first checkpoint's head is before them.
	rep = verifyBytes(t, joinLines(lines[:6]), host.pub)
	if !rep.OK() || rep.Uncovered != 3 || rep.UncoveredRuns[0].FirstLine != 3 || rep.UncoveredRuns[0].LastLine != 6 {
		t.Fatalf("report without the later checkpoints: %+v", rep)
	}
}

// resignCheckpoint returns the checkpoint line l with its checkpoint changed
// by change and signed again with priv, as a holder of that key could.
func resignCheckpoint(t testing.TB, l []byte, priv ed25519.PrivateKey, change func(*Checkpoint)) []byte {
	t.Helper()
	r := parseRecord(t, l)
	if r.Checkpoint == nil {
		t.Fatalf("not a checkpoint line: %s", l)
	}
	ck := *r.Checkpoint
	change(&ck)
	body, err := json.Marshal(&ck)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := keys.Sign(signer, Namespace, body)
	if err != nil {
		t.Fatal(err)
	}
	line := checkpointLine(&ck, body, sig, r.Seq, r.Prev)
	return line[:len(line)-1]
}

// moveCheckpoint returns the checkpoint line l with its own prev (which its
// signature does not cover) set to prev.
func moveCheckpoint(t testing.TB, l []byte, prev string) []byte {
	t.Helper()
	r := parseRecord(t, l)
	var raw struct {
		Checkpoint json.RawMessage `json:"checkpoint"`
	}
	if err := json.Unmarshal(l, &raw); err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(r.HostSig)
	if err != nil {
		t.Fatal(err)
	}
	line := checkpointLine(r.Checkpoint, raw.Checkpoint, sig, r.Seq, prev)
	return line[:len(line)-1]
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVerifyTamperingCheckpoints changes a good log with checkpoints in the
// ways an attacker or an accident could, and checks what Verify names: the
// records no checkpoint can cover any more, and why.
func TestVerifyTamperingCheckpoints(t *testing.T) {
	host := newHostKey(t)
	_, good := checkpointedLog(t, host, 8, 4)
	_, other := checkpointedLog(t, host, 8, 4) // another log by the same host
	clone := func() [][]byte {
		c := make([][]byte, len(good))
		for i, l := range good {
			c[i] = bytes.Clone(l)
		}
		return c
	}
	// setField re-encodes line i (1-based) with one field changed.
	setField := func(lines [][]byte, i int, change func(*Record)) {
		r := parseRecord(t, lines[i-1])
		change(r)
		lines[i-1] = mustJSON(t, r)
	}
	const (
		breaks   = "the chain breaks after this record, at line "
		notCover = "no host signature covers this record: the chain breaks at line "
	)
	tests := []struct {
		name    string
		log     func() [][]byte
		lines   []int
		reasons []string
	}{{
		name: "record changed",
		log: func() [][]byte {
			l := clone()
			setField(l, 3, func(r *Record) { r.Reason = "nothing to see here" })
			return l
		},
		lines:   []int{1, 2, 3},
		reasons: []string{notCover + "4 (see line 3)", notCover + "4", breaks + "4: prev does not match the hash of seq 3 (line 3)"},
	}, {
		name: "user of a full record changed",
		log: func() [][]byte {
			l := clone()
			setField(l, 1, func(r *Record) { r.User = "mallory" })
			return l
		},
		lines:   []int{1},
		reasons: []string{breaks + "2: prev does not match the hash of seq 1 (line 1)"},
	}, {
		name: "record before a checkpoint changed",
		log: func() [][]byte {
			l := clone()
			setField(l, 9, func(r *Record) { r.Client = "203.0.113.1:1" })
			return l
		},
		lines:   []int{6, 7, 8, 9},
		reasons: []string{notCover + "10", notCover + "10", notCover + "10", breaks + "10: prev does not match the hash of seq 9 (line 9)"},
	}, {
		name: "record changed and the chain after it rewritten up to the checkpoint",
		log: func() [][]byte {
			l := clone()
			setField(l, 3, func(r *Record) { r.Reason = "rewritten" })
			setField(l, 4, func(r *Record) { r.Prev = lineHash(l[2]) })
			l[4] = moveCheckpoint(t, l[4], lineHash(l[3]))
			if !bytes.Contains(l[4], []byte(lineHash(l[3]))) || verifyBytes(t, joinLines(l[4:5]), host.pub).Checkpoints != 1 {
				t.Fatal("the test did not move the checkpoint")
			}
			return l
		},
		// The checkpoint's head is line 4, as it was: it does not match. The
		// line after the checkpoint no longer follows it.
		lines: []int{1, 2, 3, 4, 6},
		reasons: []string{
			"no host signature covers this record: the checkpoint on line 5 does not match line 4",
			"does not match line 4", "does not match line 4",
			"not the line the host signed: its hash is not the head the checkpoint on line 5 signed for seq 4: changed or replaced",
			"chain broken: prev does not match the hash of seq 5 (line 5)",
		},
	}, {
		name: "record removed",
		log: func() [][]byte {
			l := clone()
			return append(l[:2], l[3:]...)
		},
		lines:   []int{1, 2},
		reasons: []string{notCover + "3 (see line 2)", breaks + "3: seq 4 comes after seq 2 (line 2): records missing or out of order"},
	}, {
		name: "record inserted from another log",
		log: func() [][]byte {
			l := clone()
			return append(l[:2], append([][]byte{other[2]}, l[2:]...)...)
		},
		lines:   []int{1, 2, 3},
		reasons: []string{notCover + "3 (see line 2)", breaks + "3: prev does not match the hash of seq 2 (line 2)", breaks + "4: seq 3 comes after seq 3 (line 3): records out of order or repeated"},
	}, {
		name: "records reordered",
		log: func() [][]byte {
			l := clone()
			l[1], l[2] = l[2], l[1]
			return l
		},
		lines: []int{1, 2, 3},
		reasons: []string{breaks + "2: seq 3 comes after seq 1 (line 1): records missing or out of order",
			breaks + "3: seq 2 comes after seq 3 (line 2): records out of order or repeated",
			breaks + "4: seq 4 comes after seq 2 (line 3): records missing or out of order"},
	}, {
		name: "record repeated",
		log: func() [][]byte {
			l := clone()
			return append(l[:7], append([][]byte{l[6]}, l[7:]...)...)
		},
		lines:   []int{6, 7},
		reasons: []string{notCover + "8 (see line 7)", breaks + "8: seq 7 comes after seq 7 (line 7): records out of order or repeated"},
	}, {
		name: "garbage line inserted",
		log: func() [][]byte {
			l := clone()
			return append(l[:2], append([][]byte{[]byte("hello")}, l[2:]...)...)
		},
		lines:   []int{1, 2, 3},
		reasons: []string{"the chain breaks at line 3, which is bad", "the chain breaks after this record, at line 3, which is bad", "not a JSON record"},
	}, {
		name: "checkpoint signed by another key",
		log: func() [][]byte {
			l := clone()
			l[4] = resignCheckpoint(t, l[4], newHostKey(t).priv, func(*Checkpoint) {})
			return l
		},
		lines:   []int{1, 2, 3, 4, 5},
		reasons: []string{"the chain breaks at line 5, which is bad", "at line 5", "at line 5", "at line 5", "checkpoint: host signature does not verify: it is by key"},
	}, {
		name: "checkpoint with another head, signed by the host key",
		log: func() [][]byte {
			l := clone()
			l[4] = resignCheckpoint(t, l[4], host.priv, func(ck *Checkpoint) { ck.Head = lineHash(other[3]) })
			return l
		},
		lines: []int{1, 2, 3, 4, 6},
		reasons: []string{"the checkpoint on line 5 does not match line 4", "does not match line 4", "does not match line 4",
			"not the line the host signed: its hash is not the head the checkpoint on line 5 signed for seq 4",
			"chain broken: prev does not match the hash of seq 5 (line 5)"},
	}, {
		name: "checkpoint vouching for more, signed by another key",
		log: func() [][]byte {
			l := clone()
			l[9] = resignCheckpoint(t, l[9], newHostKey(t).priv, func(ck *Checkpoint) { ck.From = 1 })
			return l
		},
		lines:   []int{6, 7, 8, 9, 10},
		reasons: []string{"at line 10", "at line 10", "at line 10", "at line 10", "host signature does not verify"},
	}, {
		name: "checkpoint removed",
		log: func() [][]byte {
			l := clone()
			return append(l[:4], l[5:]...)
		},
		lines:   []int{1, 2, 3, 4},
		reasons: []string{notCover + "5", notCover + "5", notCover + "5", breaks + "5: seq 6 comes after seq 4 (line 4): records missing or out of order"},
	}, {
		name: "record planted after the log was closed",
		log: func() [][]byte {
			l := clone()
			r := parseRecord(t, l[1])
			r.Seq, r.Prev = 12, lineHash(l[10])
			return append(l, mustJSON(t, r))
		},
		lines:   []int{12},
		reasons: []string{"written after the log was closed (line 11) and before netauthd opened it again"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := verifyBytes(t, joinLines(tt.log()), host.pub)
			wantProblems(t, rep, tt.lines, tt.reasons)
		})
	}

	t.Run("wrong host key", func(t *testing.T) {
		rep := verifyBytes(t, joinLines(good), newHostKey(t).pub)
		if rep.Bad != len(good) || rep.Full+rep.Resumed+rep.Refused != 0 || rep.Uncovered != 0 {
			t.Fatalf("with another host key: %d bad of %d, counts %+v", rep.Bad, len(good), rep)
		}
		if !strings.Contains(rep.Problems[4].Reason, "host signature does not verify: it is by key "+keys.Fingerprint(host.pub)) {
			t.Fatalf("problem on line 5: %v", rep.Problems[4])
		}
	})
}

// TestVerifyUncovered: records after the last checkpoint (the final one
// dropped, or a Writer that stopped before signing) are reported apart, not
// as tampering; with RequireSigned they are bad; the opening checkpoint of
// the next Writer seals them without vouching for them.
func TestVerifyUncovered(t *testing.T) {
	host := newHostKey(t)
	_, lines := checkpointedLog(t, host, 6, 4) // records 1-4, checkpoint 5, records 6-7, close 8
	if len(lines) != 8 {
		t.Fatalf("%d lines, want 8", len(lines))
	}
	dropped := joinLines(lines[:7])
	rep := verifyBytes(t, dropped, host.pub)
	want := Uncovered{FirstLine: 6, LastLine: 7, FirstSeq: 6, LastSeq: 7, Records: 2, AtEnd: true}
	if !rep.OK() || rep.Signed() || rep.Closed || rep.Uncovered != 2 || len(rep.UncoveredRuns) != 1 || rep.UncoveredRuns[0] != want ||
		rep.Records != 6 || rep.LastSeq != 7 {
		t.Fatalf("log without its final checkpoint: %+v", rep)
	}
	if s := want.String(); !strings.HasPrefix(s, "lines 6-7 (seq 6-7): 2 records not yet covered by a host signature: the log is still being written") {
		t.Fatalf("run: %s", s)
	}
	strict, err := VerifyWith(bytes.NewReader(dropped), host.pub, VerifyOptions{RequireSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	wantProblems(t, strict, []int{6, 7}, []string{"not yet covered by a host signature: the log is still being written", "not yet covered"})
	if strict.Uncovered != 0 {
		t.Fatalf("RequireSigned left %d uncovered", strict.Uncovered)
	}
	if _, err := Find(bytes.NewReader(dropped), 7, host.pub); err == nil || !strings.Contains(err.Error(), "line 7 (seq 7): not yet covered by a host signature") {
		t.Fatalf("Find of an uncovered record: %v", err)
	}
	if f, err := Find(bytes.NewReader(dropped), 4, host.pub); err != nil || f.CoveredBy != 5 {
		t.Fatalf("Find of a covered record: %+v, %v", f, err)
	}

	// A Writer that stops (crashes) before signing; the next one opens the
	// file, sealing what it finds.
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{CheckpointRecords: 2, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := w.Write(refusedRecord(host.pub, "covered")); err != nil {
			t.Fatal(err)
		}
	}
	waitCovered(t, w)
	if err := w.Write(refusedRecord(host.pub, "lost in the crash")); err != nil {
		t.Fatal(err)
	}
	crash(t, w)
	rep = verifyFile(t, path, host)
	if !rep.OK() || rep.Uncovered != 1 || rep.UncoveredRuns[0].FirstLine != 4 || !rep.UncoveredRuns[0].AtEnd {
		t.Fatalf("log of a Writer that crashed: %+v", rep)
	}
	var logged testutil.Buffer
	w, err = Open(path, host.priv, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged.String(), "ends in records no checkpoint covers") {
		t.Errorf("Open did not log the records it found uncovered:\n%s", logged.String())
	}
	if err := w.Write(refusedRecord(host.pub, "after the restart")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep = verifyFile(t, path, host)
	want = Uncovered{FirstLine: 4, LastLine: 4, FirstSeq: 4, LastSeq: 4, Records: 1, SealedBy: 5}
	if !rep.OK() || !rep.Closed || rep.Uncovered != 1 || len(rep.UncoveredRuns) != 1 || rep.UncoveredRuns[0] != want || rep.Refused != 4 {
		t.Fatalf("log after the restart: %+v", rep)
	}
	if s := want.String(); !strings.Contains(s, "1 record not covered by a host signature: written before netauthd opened the log again (line 5)") {
		t.Fatalf("run: %s", s)
	}
}

// TestRecordsPlantedWhileStopped: records added to a closed log before
// netauthd opens it again are reported as not written by it, however the
// chain is made to continue; Open accepts the file (the damage is for Verify
// to show), sealing them with its opening checkpoint.
func TestRecordsPlantedWhileStopped(t *testing.T) {
	host := newHostKey(t)
	path, lines := checkpointedLog(t, host, 3, 3) // records 1-3, checkpoint 4, close 5
	r := parseRecord(t, lines[0])
	r.Seq, r.Prev, r.User = 6, lineHash(lines[4]), "mallory"
	planted := mustJSON(t, r)
	if err := os.WriteFile(path, joinLines(append(lines, planted)), 0o640); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(refusedRecord(host.pub, "after the restart")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep := verifyFile(t, path, host)
	wantProblems(t, rep, []int{6}, []string{"written after the log was closed (line 5) and before netauthd opened it again: netauthd did not write it"})
	if rep.Uncovered != 0 || rep.Full != 1 || rep.Refused != 2 || !rep.Closed {
		t.Fatalf("report: %+v", rep)
	}
}

// TestCheckpointWithSSHKeygen: the host signature of a checkpoint, exported,
// verifies with OpenSSH alone, and the head it names is the SHA-256 of the
// line before it; a changed checkpoint fails.
func TestCheckpointWithSSHKeygen(t *testing.T) {
	host := newHostKey(t)
	_, lines := checkpointedLog(t, host, 4, 4) // records 1-4, checkpoint 5, close 6
	found, err := Find(bytes.NewReader(joinLines(lines)), 5, host.pub)
	if err != nil || found.Record.Checkpoint == nil || found.Line != 5 {
		t.Fatalf("Find(5) = %+v, %v", found, err)
	}
	ckFile, sig, signers, err := ExportCheckpoint(found.Raw)
	if err != nil {
		t.Fatal(err)
	}
	var ck Checkpoint
	if err := json.Unmarshal(ckFile, &ck); err != nil || ck.Seq != 4 || ck.Head != lineHash(lines[3]) {
		t.Fatalf("exported checkpoint %s: %v", ckFile, err)
	}
	if want := HostPrincipal + " " + string(ssh.MarshalAuthorizedKey(host.pub)); string(signers) != want {
		t.Fatalf("allowed_signers = %q, want %q", signers, want)
	}
	dir := t.TempDir()
	sigFile, signersFile := filepath.Join(dir, "checkpoint.sig"), filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(signersFile, signers, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-Y", "verify", "-f", signersFile, "-I", HostPrincipal, "-n", Namespace, "-s", sigFile}
	if out, err := sshKeygen(t, ckFile, args...); err != nil || !strings.Contains(out, `Good "`+Namespace+`" signature for netauthd`) {
		t.Fatalf("ssh-keygen -Y verify of an exported checkpoint: %v\n%s", err, out)
	}
	forged := bytes.Replace(ckFile, []byte(`"seq":4`), []byte(`"seq":3`), 1)
	if bytes.Equal(forged, ckFile) {
		t.Fatal("the test did not change the checkpoint")
	}
	if out, err := sshKeygen(t, forged, args...); err == nil {
		t.Fatalf("ssh-keygen accepted a changed checkpoint:\n%s", out)
	}
	for _, l := range [][]byte{lines[0], []byte("{}"), []byte(`{"seq":5,"checkpoint":{},"prev":"","host_sig":"!!"}`)} {
		if _, _, _, err := ExportCheckpoint(l); err == nil || !strings.HasPrefix(err.Error(), "audit: export: ") {
			t.Errorf("ExportCheckpoint(%s) = %v, want an error", l, err)
		}
	}
}

// TestCheckpointLineBounded: a checkpoint line, with the largest numbers it can
// hold, is no longer than a refusal line may be, so a flood of refusals and
// their checkpoints grows the log by lines of at most MaxRefusalLine bytes.
func TestCheckpointLineBounded(t *testing.T) {
	host := newHostKey(t)
	w, err := Open(filepath.Join(t.TempDir(), "audit.log"), host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ck := &Checkpoint{Seq: math.MaxUint64 - 1, Head: strings.Repeat("f", 64), From: math.MaxUint64, Event: EventClose}
	line, err := w.sealLine(ck, math.MaxUint64, strings.Repeat("f", 64), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if len(line)-1 > MaxRefusalLine {
		t.Fatalf("a checkpoint line is %d bytes, more than %d:\n%s", len(line)-1, MaxRefusalLine, line)
	}
	t.Logf("longest checkpoint line: %d bytes", len(line)-1)
}

// TestLogBeforeCheckpoints: a log written by netauth before checkpoints (each
// record signed alone; testdata/legacy.log, made by that version) verifies,
// and a Writer goes on with it in the format with checkpoints.
func TestLogBeforeCheckpoints(t *testing.T) {
	data, err := os.ReadFile("testdata/legacy.log")
	if err != nil {
		t.Fatal(err)
	}
	pubText, err := os.ReadFile("testdata/legacy_host.pub")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	rep := verifyBytes(t, data, pub)
	if !rep.Signed() || rep.Records != 6 || rep.Checkpoints != 0 || rep.Full != 2 || rep.Resumed != 1 || rep.Refused != 2 || rep.Summaries != 1 || rep.Summarized != 2 {
		t.Fatalf("the log of the format before checkpoints: %+v", rep)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	changed := bytes.Replace(lines[2], []byte("handshake timed out"), []byte("handshake timed in"), 1)
	wantProblems(t, verifyBytes(t, joinLines([][]byte{lines[0], lines[1], changed, lines[3], lines[4], lines[5]}), pub),
		[]int{3}, []string{"host signature does not verify"})

	// Continued by a Writer of today (with the fixture's host key).
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{42}, ed25519.SeedSize))
	if p, err := ssh.NewPublicKey(priv.Public()); err != nil || !bytes.Equal(p.Marshal(), pub.Marshal()) {
		t.Fatalf("the fixture's host key is not the one its test derives: %v", err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(refusedRecord(pub, "after the upgrade")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := verifyFile(t, path, hostKey{priv: priv, pub: pub}); !rep.Signed() || !rep.Closed || rep.Records != 7 || rep.Checkpoints != 2 || rep.Refused != 3 {
		t.Fatalf("the old log continued: %+v", rep)
	}
}

// TestFindCheckpoints: in the format with checkpoints, Find with the host key
// finds a record once a checkpoint covers it, and names that checkpoint; a
// record the chain no longer links to a checkpoint is not authentic.
func TestFindCheckpoints(t *testing.T) {
	host := newHostKey(t)
	_, lines := checkpointedLog(t, host, 8, 4)
	data := joinLines(lines)
	for _, tt := range []struct {
		seq       uint64
		line      int
		coveredBy uint64
	}{{1, 1, 5}, {4, 4, 5}, {5, 5, 0}, {7, 7, 10}, {11, 11, 0}} {
		f, err := Find(bytes.NewReader(data), tt.seq, host.pub)
		if err != nil || f.Line != tt.line || f.CoveredBy != tt.coveredBy || f.Record.Seq != tt.seq || !bytes.Equal(f.Raw, lines[tt.line-1]) {
			t.Errorf("Find(%d) = %+v, %v; want line %d covered by %d", tt.seq, f, err, tt.line, tt.coveredBy)
		}
	}
	r := parseRecord(t, lines[2])
	r.Reason = "changed"
	lines[2] = mustJSON(t, r)
	if _, err := Find(bytes.NewReader(joinLines(lines)), 3, host.pub); err == nil || !strings.Contains(err.Error(), "line 3 (seq 3): the chain breaks after this record, at line 4") {
		t.Fatalf("Find of a changed record: %v", err)
	}
	if _, err := Find(bytes.NewReader(joinLines(lines)), 2, host.pub); err == nil || !strings.Contains(err.Error(), "line 2 (seq 2): no host signature covers this record") {
		t.Fatalf("Find of a record before a changed one: %v", err)
	}
	if f, err := Find(bytes.NewReader(joinLines(lines)), 3, nil); err != nil || f.Record.Reason != "changed" {
		t.Fatalf("Find without the host key: %+v, %v", f, err)
	}
}

// BenchmarkWrite measures Writer.Write of an accepted full handshake's record
// (the largest kind, about 1 KiB), as netauthd writes it before it accepts a
// connection: signed one by one (the format before checkpoints) and with
// checkpoints (the default: the signature is made in the background).
func BenchmarkWrite(b *testing.B) {
	host := newHostKey(b)
	user := newUserKey(b, false)
	rec := fullRecord(b, host.pub, user, "alice", "imap")
	for _, bm := range []struct {
		name string
		opts Options
	}{
		{"signed-each", Options{signEach: true}},
		{"checkpoints", Options{}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			w, err := Open(filepath.Join(b.TempDir(), "audit.log"), host.priv, bm.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			b.ReportAllocs()
			for b.Loop() {
				r := *rec
				r.Time = time.Time{}
				if err := w.Write(&r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
