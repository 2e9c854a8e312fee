// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/testutil"
)

func TestUserNamespaceIsTheHandshakes(t *testing.T) {
	if UserNamespace != handshake.Namespace {
		t.Fatalf("UserNamespace = %q, the handshake signs in %q", UserNamespace, handshake.Namespace)
	}
}

func TestWriteAndVerify(t *testing.T) {
	host := newHostKey(t)
	dir := filepath.Join(t.TempDir(), "var", "log", "netauth")
	path := filepath.Join(dir, "audit.log")
	w, err := Open(path, host.priv, Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	alice := newUserKey(t, false)
	bob := newUserKey(t, true)
	when := time.Date(2026, 5, 1, 12, 30, 15, 123456789, time.FixedZone("CEST", 2*3600))
	full := fullRecordAt(t, host.pub, alice, "alice", "imap", when)
	full.Time = when
	policyRefused := fullRecord(t, host.pub, bob, "bob", "imap")
	policyRefused.Decision, policyRefused.Reason, policyRefused.Worker = Refused, "user not allowed by policy", 0
	records := []*Record{
		full,
		resumedRecord(host.pub, alice.PublicKey(), "alice", "imap"),
		refusedRecord(host.pub, "handshake timed out"),
		policyRefused,
		fullRecord(t, host.pub, bob, "bob", "git"),
	}
	for i, r := range records {
		if err := w.Write(r); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if r.Seq != uint64(i+1) {
			t.Errorf("record %d: Seq = %d, want %d", i, r.Seq, i+1)
		}
		if r.HostSig != "" || r.Time.Location() != time.UTC {
			t.Errorf("record %d: HostSig %q, Time %v: want no signature of its own and UTC", i, r.HostSig, r.Time)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.Write(refusedRecord(host.pub, "x")); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close = %v, want os.ErrClosed", err)
	}

	for p, want := range map[string]os.FileMode{dir: 0o750 | os.ModeDir, path: 0o640} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode(), want)
		}
	}

	// The records, then the closing checkpoint, which covers them all.
	lines := readLines(t, path)
	if len(lines) != len(records)+1 {
		t.Fatalf("log has %d lines, want %d", len(lines), len(records)+1)
	}
	prev := strings.Repeat("0", 64)
	for i, l := range lines {
		var r Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if r.Prev != prev || r.Seq != uint64(i+1) {
			t.Errorf("line %d: seq %d prev %s, want %d and %s", i+1, r.Seq, r.Prev, i+1, prev)
		}
		if i < len(records) && (r.HostSig != "" || r.Checkpoint != nil || r.Statement != records[i].Statement || r.Signature != records[i].Signature) {
			t.Errorf("line %d does not hold the record written", i+1)
		}
		if i == len(records) {
			ck := r.Checkpoint
			if ck == nil || r.HostSig == "" || ck.Kind != CheckpointKind || ck.Seq != uint64(i) || ck.Head != prev || ck.From != 1 ||
				ck.Event != EventClose || ck.HostKeyFP != keys.Fingerprint(host.pub) || !r.Time.Equal(ck.Time) {
				t.Errorf("the last line is not a closing checkpoint of the records:\n%s", l)
			}
		}
		h := sha256.Sum256(l)
		prev = hex.EncodeToString(h[:])
	}
	if !bytes.Contains(lines[0], []byte(`"time":"2026-05-01T10:30:15.123456789Z"`)) {
		t.Errorf("line 1 does not hold the time in UTC with nanoseconds:\n%s", lines[0])
	}
	if bytes.Contains(lines[0], []byte("host_sig")) || !bytes.HasSuffix(lines[0], []byte(`"prev":"`+strings.Repeat("0", 64)+`"}`)) {
		t.Errorf("line 1 does not end with its prev:\n%s", lines[0])
	}

	rep := verifyBytes(t, joinLines(lines), host.pub)
	if !rep.Signed() || !rep.Closed {
		t.Fatalf("Verify found problems in a good log: %v, uncovered %v, closed %v", rep.Problems, rep.UncoveredRuns, rep.Closed)
	}
	if rep.Records != 5 || rep.Checkpoints != 1 || rep.Lines != 6 || rep.Full != 2 || rep.Resumed != 1 || rep.Refused != 2 {
		t.Errorf("report counts %d lines, %d records: %d full, %d resumed, %d refused, and %d checkpoints; want 6, 5: 2, 1, 2, and 1",
			rep.Lines, rep.Records, rep.Full, rep.Resumed, rep.Refused, rep.Checkpoints)
	}
	if rep.LastSeq != 5 || !rep.LastTime.Equal(records[4].Time) {
		t.Errorf("report's last record is seq %d at %v, want 5 at %v", rep.LastSeq, rep.LastTime, records[4].Time)
	}
}

func TestVerifyEmpty(t *testing.T) {
	rep := verifyBytes(t, nil, newHostKey(t).pub)
	if !rep.OK() || rep.Records != 0 {
		t.Fatalf("empty log: %+v", rep)
	}
	if _, err := Verify(strings.NewReader(""), nil); err == nil {
		t.Fatal("Verify without a host key succeeded")
	}
}

// TestVerifyTamperingSignedLines changes a good log of the format before
// checkpoints, each record signed alone, in the ways an attacker or an
// accident could, and checks that Verify names exactly the lines involved.
func TestVerifyTamperingSignedLines(t *testing.T) {
	host := newHostKey(t)
	_, good := legacyLog(t, host, 8)
	clone := func() [][]byte {
		c := make([][]byte, len(good))
		for i, l := range good {
			c[i] = bytes.Clone(l)
		}
		return c
	}
	// setField re-encodes line i (1-based) with one field changed, keeping
	// everything else, including the host signature.
	setField := func(lines [][]byte, i int, change func(*Record)) {
		var r Record
		if err := json.Unmarshal(lines[i-1], &r); err != nil {
			t.Fatal(err)
		}
		change(&r)
		b, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		lines[i-1] = b
	}

	_, otherLog := legacyLog(t, host, 8) // another log by the same host

	tests := []struct {
		name    string
		log     func() []byte
		lines   []int
		reasons []string
	}{{
		name: "record replaced by one from another log",
		log: func() []byte {
			l := clone()
			l[2] = otherLog[2]
			return joinLines(l)
		},
		lines:   []int{3, 4},
		reasons: []string{"chain broken: prev does not match the hash of seq 2 (line 2)", "chain broken: prev does not match the hash of seq 3 (line 3)"},
	}, {
		name: "record damaged beyond reading",
		log: func() []byte {
			l := clone()
			l[2] = []byte("\x00\x01")
			return joinLines(l)
		},
		lines:   []int{3},
		reasons: []string{"not a JSON record"},
	}, {
		name: "garbage line and the records after it deleted",
		log: func() []byte {
			l := clone()
			return joinLines(append(l[:2], append([][]byte{[]byte("{}")}, l[4:]...)...))
		},
		lines:   []int{3, 4},
		reasons: []string{"seq is 0", "chain broken: seq 5 comes after seq 2 (line 2): records missing or out of order"},
	}, {
		name: "garbage line and a record moved back",
		log: func() []byte {
			l := clone()
			return joinLines(append(l[:3], []byte("{}"), l[1]))
		},
		lines:   []int{4, 5},
		reasons: []string{"seq is 0", "chain broken: seq 2 comes after seq 3 (line 3): records out of order or repeated"},
	}, {
		name: "one field changed",
		log: func() []byte {
			l := clone()
			setField(l, 3, func(r *Record) { r.Reason = "nothing to see here" })
			return joinLines(l)
		},
		lines:   []int{3},
		reasons: []string{"host signature does not verify"},
	}, {
		name: "user of a full record changed",
		log: func() []byte {
			l := clone()
			setField(l, 5, func(r *Record) { r.User = "mallory" })
			return joinLines(l)
		},
		lines:   []int{5},
		reasons: []string{"host signature does not verify"},
	}, {
		name: "seq renumbered",
		log: func() []byte {
			l := clone()
			setField(l, 4, func(r *Record) { r.Seq = 40 })
			return joinLines(l)
		},
		lines:   []int{4},
		reasons: []string{"host signature does not verify"},
	}, {
		name: "last line changed",
		log: func() []byte {
			l := clone()
			setField(l, 8, func(r *Record) { r.Client = "203.0.113.1:1" })
			return joinLines(l)
		},
		lines:   []int{8},
		reasons: []string{"host signature does not verify"},
	}, {
		name: "line deleted",
		log: func() []byte {
			l := clone()
			return joinLines(append(l[:3], l[4:]...))
		},
		lines:   []int{4},
		reasons: []string{"chain broken: seq 5 comes after seq 3 (line 3)"},
	}, {
		name: "first line deleted",
		log: func() []byte {
			return joinLines(clone()[1:])
		},
		lines:   []int{1},
		reasons: []string{"chain broken: seq 2 comes after the start of the file"},
	}, {
		name: "lines reordered",
		log: func() []byte {
			l := clone()
			l[2], l[3] = l[3], l[2]
			return joinLines(l)
		},
		lines:   []int{3, 4, 5},
		reasons: []string{"chain broken: seq 4 comes after seq 2", "chain broken: seq 3 comes after seq 4", "chain broken: seq 5 comes after seq 3"},
	}, {
		name: "line repeated",
		log: func() []byte {
			l := clone()
			return joinLines(append(l[:3], append([][]byte{l[2]}, l[3:]...)...))
		},
		lines:   []int{4},
		reasons: []string{"records out of order or repeated"},
	}, {
		name: "garbage line inserted",
		log: func() []byte {
			l := clone()
			return joinLines(append(l[:2], append([][]byte{[]byte("hello")}, l[2:]...)...))
		},
		lines:   []int{3},
		reasons: []string{"not a JSON record"},
	}, {
		name: "empty line inserted",
		log: func() []byte {
			l := clone()
			return joinLines(append(l[:2], append([][]byte{{}}, l[2:]...)...))
		},
		lines:   []int{3},
		reasons: []string{"empty line"},
	}, {
		name: "last line truncated",
		log: func() []byte {
			data := joinLines(clone())
			return data[:len(data)-30]
		},
		lines:   []int{8},
		reasons: []string{"incomplete line"},
	}, {
		name: "final newline missing",
		log: func() []byte {
			data := joinLines(clone())
			return data[:len(data)-1]
		},
		lines:   []int{8},
		reasons: []string{"incomplete line"},
	}, {
		name: "host signature removed",
		log: func() []byte {
			l := clone()
			setField(l, 2, func(r *Record) { r.HostSig = "" })
			return joinLines(l)
		},
		lines:   []int{2},
		reasons: []string{"a line written after records signed one by one (line 1, the format before checkpoints) but before any opening checkpoint"},
	}, {
		name: "host signature moved to another line",
		log: func() []byte {
			l := clone()
			var r1 Record
			if err := json.Unmarshal(l[0], &r1); err != nil {
				t.Fatal(err)
			}
			setField(l, 2, func(r *Record) { r.HostSig = r1.HostSig })
			return joinLines(l)
		},
		lines:   []int{2},
		reasons: []string{"host signature does not verify"},
	}, {
		name: "line longer than the limit",
		log: func() []byte {
			l := clone()
			long := bytes.Repeat([]byte("x"), MaxLineSize+1)
			return joinLines(append(l[:6], append([][]byte{long}, l[6:]...)...))
		},
		lines:   []int{7},
		reasons: []string{"longer than"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantProblems(t, verifyBytes(t, tt.log(), host.pub), tt.lines, tt.reasons)
		})
	}

	t.Run("wrong host key", func(t *testing.T) {
		rep := verifyBytes(t, joinLines(good), newHostKey(t).pub)
		lines := make([]int, len(good))
		reasons := make([]string, len(good))
		for i := range good {
			lines[i], reasons[i] = i+1, "host signature does not verify: it is by key "+keys.Fingerprint(host.pub)
		}
		wantProblems(t, rep, lines, reasons)
	})

	t.Run("last line removed", func(t *testing.T) {
		// A cut at a line boundary leaves no trace; the report's LastSeq is
		// what an administrator compares with a copy kept elsewhere.
		rep := verifyBytes(t, joinLines(good[:7]), host.pub)
		if !rep.OK() || rep.LastSeq != 7 {
			t.Fatalf("log without its last line: OK %v, LastSeq %d; want OK and 7", rep.OK(), rep.LastSeq)
		}
	})

	t.Run("good log", func(t *testing.T) {
		rep := verifyBytes(t, joinLines(good), host.pub)
		if !rep.Signed() || rep.Records != 8 || rep.Checkpoints != 0 || rep.Full != 4 || rep.Resumed != 2 || rep.Refused != 2 || rep.Closed {
			t.Fatalf("report on the good log: %+v", rep)
		}
	})
}

// TestVerifyUserSignatures writes records a dishonest host could write: with
// a valid host signature but a user signature or statement that does not
// match. Verify must catch each one.
func TestVerifyUserSignatures(t *testing.T) {
	host := newHostKey(t)
	alice := newUserKey(t, false)
	other := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(change func(r *Record)) *Record {
		r := fullRecord(t, host.pub, alice, "alice", "imap")
		change(r)
		return r
	}
	records := []*Record{
		rec(func(r *Record) {}),
		rec(func(r *Record) {
			r.Statement = strings.Replace(r.Statement, "user alice\n", "user carol\n", 1)
			r.User = "carol"
		}),
		rec(func(r *Record) { r.User = "carol" }),
		rec(func(r *Record) { r.Service = "ssh" }),
		rec(func(r *Record) { r.KeyFP = keys.Fingerprint(newUserKey(t, false).PublicKey()) }),
		rec(func(r *Record) { r.KeyType = "ssh-rsa" }),
		rec(func(r *Record) { r.HostKeyFP = keys.Fingerprint(other.pub) }),
		fullRecord(t, other.pub, alice, "alice", "imap"),
		rec(func(r *Record) { r.Signature = "" }),
		rec(func(r *Record) {
			r.Signature = "-----BEGIN SSH SIGNATURE-----\nnot base64!\n-----END SSH SIGNATURE-----\n"
		}),
		rec(func(r *Record) {
			// A signature in another namespace, as an SSH login would make.
			sig, err := keys.Sign(alice, "file", []byte(r.Statement))
			if err != nil {
				t.Fatal(err)
			}
			r.Signature = string(keys.Armor(sig))
		}),
		rec(func(r *Record) { r.Decision = Refused }), // refused: the signature is not checked
	}
	for _, r := range records {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rep := verifyBytes(t, data, host.pub)
	wantProblems(t, rep, []int{2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, []string{
		"user signature does not verify",
		`the statement is for user "alice", the record says "carol"`,
		`the statement is for service "imap", the record says "ssh"`,
		"the signature is by key " + keys.Fingerprint(alice.PublicKey()),
		"the signature is by a ssh-ed25519 key, the record says ssh-rsa",
		"the statement names host key " + keys.Fingerprint(host.pub) + ", the record says " + keys.Fingerprint(other.pub),
		"the statement is for host key " + keys.Fingerprint(other.pub) + ", not for this log's host key",
		"without the user's statement and signature",
		"user signature: keys: sshsig: armored signature has a non-base64 byte",
		`namespace "file", want "netauth-v1@ubns.dev"`,
	})
}

func TestWriteRejectsBadRecords(t *testing.T) {
	host := newHostKey(t)
	path, w := openTestLog(t, host)
	bad := []*Record{
		nil,
		{Decision: "maybe"},
		{Decision: Accepted},
		{Decision: Refused, Mode: "half"},
		{Decision: Refused, Reason: strings.Repeat("x", MaxLineSize)},
	}
	for i, r := range bad {
		if err := w.Write(r); err == nil || !strings.HasPrefix(err.Error(), "audit: ") {
			t.Errorf("bad record %d: Write = %v, want an audit error", i, err)
		}
	}
	// None of them broke the Writer or the log.
	if err := w.Write(refusedRecord(host.pub, "ok")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyBytes(t, data, host.pub); !rep.OK() || rep.Records != 1 {
		t.Fatalf("log after bad records: %+v", rep)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	host := newHostKey(t)
	path, lines := sampleLog(t, host, 3)
	w, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := refusedRecord(host.pub, "after restart")
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	// Line 4 closed the file; opening it again added an opening checkpoint,
	// line 5, sealing the chain as found.
	after := readLines(t, path)
	if len(after) != 6 {
		t.Fatalf("log after reopening has %d lines, want 6", len(after))
	}
	var open Record
	if err := json.Unmarshal(after[4], &open); err != nil {
		t.Fatal(err)
	}
	h4, h5 := sha256.Sum256(lines[3]), sha256.Sum256(after[4])
	if ck := open.Checkpoint; ck == nil || ck.Event != EventOpen || ck.Seq != 4 || ck.Head != hex.EncodeToString(h4[:]) || ck.From != 5 {
		t.Fatalf("line 5 is not an opening checkpoint of line 4:\n%s", after[4])
	}
	if r.Seq != 6 || r.Prev != hex.EncodeToString(h5[:]) {
		t.Errorf("first record after reopening: seq %d prev %s, want 6 and the hash of line 5", r.Seq, r.Prev)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyBytes(t, data, host.pub); !rep.Signed() || rep.Records != 4 || rep.Checkpoints != 3 || !rep.Closed {
		t.Fatalf("reopened log: %+v", rep)
	}

	// A log of the format before checkpoints goes on in the format with them.
	path, lines = legacyLog(t, host, 3)
	if w, err = Open(path, host.priv, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(refusedRecord(host.pub, "after the upgrade")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	after = readLines(t, path)
	if len(after) != 6 || !bytes.Equal(after[2], lines[2]) || !bytes.Contains(after[3], []byte(`"event":"open"`)) || !bytes.Contains(after[5], []byte(`"event":"close"`)) {
		t.Fatalf("log of the old format after reopening:\n%s", joinLines(after))
	}
	if rep := verifyBytes(t, joinLines(after), host.pub); !rep.Signed() || rep.Records != 4 || rep.Refused != 2 {
		t.Fatalf("log of the old format continued: %+v", rep)
	}
}

func TestOpenRefusesDamagedLog(t *testing.T) {
	host := newHostKey(t)
	path, lines := sampleLog(t, host, 3)
	good := joinLines(lines)
	_, legacy := legacyLog(t, host, 3)
	tests := []struct {
		name   string
		data   []byte
		priv   []byte
		reason string
	}{
		{"last line cut", good[:len(good)-20], nil, "line 4, the last, is not a valid record: incomplete line"},
		{"last line damaged", append(bytes.Clone(good), "{\"seq\":5}\n"...), nil, `line 5, the last, is not a valid record: decision "" is not "accepted" or "refused"`},
		{"last line without prev", append(bytes.Clone(good), `{"seq":5,"decision":"refused","prev":"x"}`+"\n"...), nil, `line 5, the last, is not a valid record: its prev is not a hex SHA-256`},
		{"garbage", []byte("\x00\x00\n"), nil, "line 1, the last, is not a valid record: not a JSON record"},
		{"other host key", good, newHostKey(t).priv, "line 4, the last, is not a valid record: checkpoint: host signature does not verify"},
		{"other host key, signed lines", joinLines(legacy), newHostKey(t).priv, "line 3, the last, is not a valid record: host signature does not verify"},
		{"long last line", append(bytes.Repeat([]byte("y"), MaxLineSize+1), '\n'), nil, "line 1, the last, is not a valid record: line is longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.log")
			if err := os.WriteFile(p, tt.data, 0o640); err != nil {
				t.Fatal(err)
			}
			priv := host.priv
			if tt.priv != nil {
				priv = tt.priv
			}
			w, err := Open(p, priv, Options{})
			if err == nil {
				w.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), p+": "+tt.reason) || !strings.Contains(err.Error(), "move it aside") {
				t.Fatalf("Open error:\n%v\nwant it to contain %q and advice", err, tt.reason)
			}
		})
	}
	// The original, undamaged log still opens.
	w, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
}

func TestOpenRefusesSecondWriter(t *testing.T) {
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w2, err := Open(path, host.priv, Options{})
	if err == nil {
		w2.Close()
		t.Fatal("a second Writer opened a log in use")
	}
	if !strings.Contains(err.Error(), "in use by another writer") {
		t.Fatalf("second Open: %v", err)
	}
	w.Close()
	w2, err = Open(path, host.priv, Options{})
	if err != nil {
		t.Fatalf("Open after the first Writer closed: %v", err)
	}
	w2.Close()
}

func TestOpenUnwritable(t *testing.T) {
	host := newHostKey(t)
	dir := t.TempDir()
	makeReadOnly(t, dir)
	for _, tt := range []struct{ path, want string }{
		{filepath.Join(dir, "audit.log"), "audit: opening the log: open " + filepath.Join(dir, "audit.log") + ": "},
		{filepath.Join(dir, "netauth", "audit.log"), "audit: creating the log directory: mkdir " + filepath.Join(dir, "netauth") + ": "},
	} {
		w, err := Open(tt.path, host.priv, Options{})
		if err == nil {
			w.Close()
			t.Fatalf("Open(%s) in a read-only directory succeeded", tt.path)
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Open(%s) = %v, want an error starting %q", tt.path, err, tt.want)
		}
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(file, "audit.log"), host.priv, Options{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Open under a regular file = %v, want a not-a-directory error", err)
	}
	if _, err := Open(os.DevNull, host.priv, Options{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(%s) = %v, want a not-a-regular-file error", os.DevNull, err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "a.log"), host.priv[:10], Options{}); err == nil {
		t.Error("Open with a short host key succeeded")
	}
}

// fakeClock is a Writer's clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// useFakeClock makes w take its time from a new fake clock.
func useFakeClock(w *Writer) *fakeClock {
	c := &fakeClock{now: time.Now()}
	w.mu.Lock()
	w.now = c.Now
	w.mu.Unlock()
	return c
}

// TestWriteFailureRecovers makes the log file fail with ENOSPC (by putting
// /dev/full in its place) and checks that Write reports it, keeps reporting
// it without trying the file until RetryInterval has passed, then writes
// again once the file can be written, continuing the chain, and logs that
// it recovered.
func TestWriteFailureRecovers(t *testing.T) {
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	var logged testutil.Buffer
	w, err := Open(path, host.priv, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	clock := useFakeClock(w)
	if err := w.Write(refusedRecord(host.pub, "first")); err != nil {
		t.Fatal(err)
	}
	spaceBack := fillDisk(t, w)

	want := "audit: writing " + path + ": no space left on device"
	err = w.Write(refusedRecord(host.pub, "second"))
	if err == nil || err.Error() != want || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write to a full disk = %v, want %q wrapping ENOSPC", err, want)
	}
	if !strings.Contains(logged.String(), "audit log unwritable") {
		t.Errorf("the failure was not logged:\n%s", logged.String())
	}
	// Space is back, but the file is not tried again before RetryInterval; Failing says so
	// without a Write.
	spaceBack()
	clock.Add(RetryInterval - time.Millisecond)
	if err := w.Failing(); err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Failing right after a failure = %v, want the write's error", err)
	}
	err = w.Write(refusedRecord(host.pub, "third"))
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "tried again") || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write right after a failure = %v, want the same error", err)
	}
	if strings.Contains(logged.String(), "writable again") {
		t.Fatalf("recovery logged before the log was written:\n%s", logged.String())
	}
	clock.Add(time.Millisecond)
	if err := w.Failing(); err != nil {
		t.Fatalf("Failing once RetryInterval has passed = %v, want nil (the next Write tries)", err)
	}
	r := refusedRecord(host.pub, "fourth")
	if err := w.Write(r); err != nil {
		t.Fatalf("Write once the disk has space again: %v", err)
	}
	if r.Seq != 2 {
		t.Errorf("first record after the failure has seq %d, want 2", r.Seq)
	}
	if l := logged.String(); !strings.Contains(l, "audit log writable again") || !strings.Contains(l, "failed_writes=2") {
		t.Errorf("the recovery was not logged with the number of failed writes:\n%s", l)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyBytes(t, data, host.pub); !rep.OK() || rep.Records != 2 {
		t.Fatalf("log after the failure: %+v", rep)
	}
}

func TestConcurrentWrites(t *testing.T) {
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for range goroutines {
		wg.Go(func() {
			for range each {
				errs <- w.Write(refusedRecord(host.pub, "busy"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyBytes(t, data, host.pub); !rep.OK() || rep.Records != goroutines*each {
		t.Fatalf("log written concurrently: %d records, problems %v", rep.Records, rep.Problems)
	}
}

// TestHostSignatureWithSSHKeygen checks the host signature of a line of the
// format before checkpoints with OpenSSH: the canonical bytes (the line with
// host_sig emptied) and the signature, armored, verify with ssh-keygen -Y.
func TestHostSignatureWithSSHKeygen(t *testing.T) {
	host := newHostKey(t)
	_, lines := legacyLog(t, host, 2)
	dir := t.TempDir()
	for i, l := range lines {
		canonical, sig, err := splitHostSig(l)
		if err != nil {
			t.Fatal(err)
		}
		var r Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		r.HostSig = ""
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		// host_sig, empty, as the last field.
		want = append(bytes.TrimSuffix(want, []byte("}")), `,"host_sig":""}`...)
		if !bytes.Equal(canonical, want) {
			t.Fatalf("line %d: canonical bytes are not the record's JSON with host_sig empty:\n%s\n%s", i+1, canonical, want)
		}
		blob, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			t.Fatal(err)
		}
		sigFile := filepath.Join(dir, "line.sig")
		if err := os.WriteFile(sigFile, keys.Armor(blob), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := sshKeygen(t, canonical, "-Y", "check-novalidate", "-n", Namespace, "-s", sigFile); err != nil {
			t.Fatalf("line %d: ssh-keygen -Y check-novalidate: %v\n%s", i+1, err, out)
		}
		signers := filepath.Join(dir, "allowed_signers")
		if err := os.WriteFile(signers, append([]byte("netauthd "), ssh.MarshalAuthorizedKey(host.pub)...), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := sshKeygen(t, canonical, "-Y", "verify", "-f", signers, "-I", "netauthd", "-n", Namespace, "-s", sigFile); err != nil {
			t.Fatalf("line %d: ssh-keygen -Y verify: %v\n%s", i+1, err, out)
		}
		if out, err := sshKeygen(t, l, "-Y", "check-novalidate", "-n", Namespace, "-s", sigFile); err == nil {
			t.Fatalf("line %d: ssh-keygen accepted the host signature over the whole line:\n%s", i+1, out)
		}
	}
}

func TestExportWithSSHKeygen(t *testing.T) {
	host := newHostKey(t)
	for _, ecdsaKey := range []bool{false, true} {
		user := newUserKey(t, ecdsaKey)
		r := fullRecord(t, host.pub, user, "alice@example.org", "imap")
		stmt, sig, signers, err := Export(r)
		if err != nil {
			t.Fatal(err)
		}
		if string(stmt) != r.Statement || string(sig) != r.Signature {
			t.Errorf("%s: Export changed the statement or signature", user.PublicKey().Type())
		}
		wantSigners := "alice@example.org " + string(ssh.MarshalAuthorizedKey(user.PublicKey()))
		if string(signers) != wantSigners {
			t.Errorf("allowed_signers = %q, want %q", signers, wantSigners)
		}
		dir := t.TempDir()
		sigFile, signersFile := filepath.Join(dir, "statement.sig"), filepath.Join(dir, "allowed_signers")
		if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(signersFile, signers, 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"-Y", "verify", "-f", signersFile, "-I", "alice@example.org", "-n", UserNamespace, "-s", sigFile}
		out, err := sshKeygen(t, stmt, args...)
		if err != nil || !strings.Contains(out, `Good "netauth-v1@ubns.dev" signature for alice@example.org`) {
			t.Fatalf("ssh-keygen -Y verify of an exported %s record: %v\n%s", user.PublicKey().Type(), err, out)
		}
		forged := bytes.Replace(stmt, []byte("service imap"), []byte("service sshd"), 1)
		if out, err := sshKeygen(t, forged, args...); err == nil {
			t.Fatalf("ssh-keygen accepted an altered statement:\n%s", out)
		}
	}

	for _, r := range []*Record{
		nil,
		resumedRecord(host.pub, newUserKey(t, false).PublicKey(), "alice", "imap"),
		{User: "alice", Statement: "x", Signature: "not armored"},
		{User: "bad user\nname", Statement: "x", Signature: string(keys.Armor([]byte("SSHSIG")))},
		{User: "alice", Statement: "x", Signature: string(keys.Armor([]byte("SSHSIG\x00\x00\x00\x01\x00\x00\x01\x00")))},
	} {
		if _, _, _, err := Export(r); err == nil || !strings.HasPrefix(err.Error(), "audit: export: ") {
			t.Errorf("Export(%+v) = %v, want an error", r, err)
		}
	}
}

func TestFind(t *testing.T) {
	host := newHostKey(t)
	_, lines := legacyLog(t, host, 6)
	data := joinLines(append([][]byte{[]byte("not a record")}, lines...))
	f, err := Find(bytes.NewReader(data), 4, host.pub)
	if err != nil || f.Record.Seq != 4 || f.Line != 5 || f.Record.User != "bob@example.org" || f.Record.Mode != ModeFull || f.CoveredBy != 0 {
		t.Fatalf("Find(4) = %+v, %v; want bob's full handshake on line 5", f, err)
	}
	if f, err = Find(bytes.NewReader(data), 2, nil); err != nil || f.Record.Seq != 2 || f.Line != 3 || f.Record.Mode != ModeResumed {
		t.Fatalf("Find(2) without a host key = %+v, %v", f, err)
	}
	if _, err := Find(bytes.NewReader(data), 7, host.pub); err == nil || err.Error() != "audit: no record with seq 7 in the log" {
		t.Fatalf("Find(7) = %v", err)
	}
	if _, err := Find(bytes.NewReader(data), 1, newHostKey(t).pub); err == nil || !strings.HasPrefix(err.Error(), "audit: line 2 (seq 1): host signature does not verify") {
		t.Fatalf("Find with another host key = %v", err)
	}
}

// failingReader returns some bytes, then an error.
type failingReader struct{ data []byte }

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, syscall.EIO
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestVerifyReadError(t *testing.T) {
	host := newHostKey(t)
	_, lines := sampleLog(t, host, 3)
	_, err := Verify(&failingReader{data: joinLines(lines)}, host.pub)
	if !errors.Is(err, syscall.EIO) || !strings.HasPrefix(err.Error(), "audit: reading line 5: ") {
		t.Fatalf("Verify with a failing reader = %v, want EIO at line 5", err)
	}
	if got := (Problem{Line: 3, Reason: "empty line"}).String(); got != "line 3: empty line" {
		t.Errorf("Problem without seq prints as %q", got)
	}
}

func TestVerifyFirstPrev(t *testing.T) {
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.prev = strings.Repeat("ab", 32) // as if the log had lost its beginning
	if err := w.Write(refusedRecord(host.pub, "x")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantProblems(t, verifyBytes(t, data, host.pub), []int{1}, []string{"chain broken: the first record's prev is not 64 zeros"})
}
