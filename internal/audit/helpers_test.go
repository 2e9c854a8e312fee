// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
)

// hostKey is a host key pair for tests.
type hostKey struct {
	priv ed25519.PrivateKey
	pub  ssh.PublicKey
}

func newHostKey(t testing.TB) hostKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return hostKey{priv: priv, pub: pub}
}

// newUserKey returns a signer for a fresh user key, Ed25519 or ECDSA P-256.
func newUserKey(t testing.TB, ecdsaKey bool) ssh.Signer {
	t.Helper()
	var key any
	if ecdsaKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	} else {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fullRecord returns the record of an accepted full handshake in which user
// signed a statement for service on the host with key host, now.
func fullRecord(t testing.TB, host ssh.PublicKey, user ssh.Signer, name, service string) *Record {
	t.Helper()
	return fullRecordAt(t, host, user, name, service, time.Now())
}

// fullRecordAt is fullRecord with a statement made at the given time (the
// record's Time is left for the Writer to set).
func fullRecordAt(t testing.TB, host ssh.PublicKey, user ssh.Signer, name, service string, when time.Time) *Record {
	t.Helper()
	hh := make([]byte, keys.HandshakeHashSize)
	if _, err := rand.Read(hh); err != nil {
		t.Fatal(err)
	}
	st := keys.Statement{HandshakeHash: hh, HostKey: host, Service: service, User: name, Time: when}
	text, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := keys.Sign(user, UserNamespace, text)
	if err != nil {
		t.Fatal(err)
	}
	pub := user.PublicKey()
	return &Record{
		Client:    "192.0.2.7:51234",
		Service:   service,
		User:      name,
		KeyType:   pub.Type(),
		KeyFP:     keys.Fingerprint(pub),
		HostKeyFP: keys.Fingerprint(host),
		Mode:      ModeFull,
		Decision:  Accepted,
		Worker:    4242,
		Statement: string(text),
		Signature: string(keys.Armor(sig)),
	}
}

func resumedRecord(host ssh.PublicKey, user ssh.PublicKey, name, service string) *Record {
	return &Record{
		Client:    "[2001:db8::1]:40000",
		Service:   service,
		User:      name,
		KeyType:   user.Type(),
		KeyFP:     keys.Fingerprint(user),
		HostKeyFP: keys.Fingerprint(host),
		Mode:      ModeResumed,
		Decision:  Accepted,
		Worker:    4242,
	}
}

func refusedRecord(host ssh.PublicKey, reason string) *Record {
	return &Record{
		Client:    "198.51.100.3:1234",
		Service:   "imap",
		HostKeyFP: keys.Fingerprint(host),
		Decision:  Refused,
		Reason:    reason,
	}
}

// sampleLog writes a log of n records (cycling through full, resumed and
// refused ones) to a new file, closes it (which adds a closing checkpoint,
// line n+1) and returns its path and lines.
func sampleLog(t testing.TB, host hostKey, n int) (string, [][]byte) {
	t.Helper()
	return sampleLogOpts(t, host, n, Options{})
}

// legacyLog is sampleLog in the format before checkpoints: every record signed
// alone, no checkpoint.
func legacyLog(t testing.TB, host hostKey, n int) (string, [][]byte) {
	t.Helper()
	return sampleLogOpts(t, host, n, Options{signEach: true})
}

// sampleLogOpts is sampleLog with a Writer opened with opts.
func sampleLogOpts(t testing.TB, host hostKey, n int, opts Options) (string, [][]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log", "audit.log")
	w, err := Open(path, host.priv, opts)
	if err != nil {
		t.Fatal(err)
	}
	writeSamples(t, w, host, n, 4, nil)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path, readLines(t, path)
}

// writeSamples writes n records to w, cycling through the first kinds (3 or 4) of: a full
// handshake of alice's, a resumption of hers, a refusal, a full handshake of bob's. after, if
// set, runs after record i is written.
func writeSamples(t testing.TB, w *Writer, host hostKey, n, kinds int, after func(i int)) {
	t.Helper()
	alice := newUserKey(t, false)
	var bob ssh.Signer
	if kinds > 3 {
		bob = newUserKey(t, true)
	}
	for i := range n {
		var r *Record
		switch i % kinds {
		case 0:
			r = fullRecord(t, host.pub, alice, "alice", "imap")
		case 1:
			r = resumedRecord(host.pub, alice.PublicKey(), "alice", "imap")
		case 2:
			r = refusedRecord(host.pub, "handshake timed out")
		case 3:
			r = fullRecord(t, host.pub, bob, "bob@example.org", "git")
		}
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		if after != nil {
			after(i)
		}
	}
}

// readLines returns the lines of a file without their newlines.
func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

// joinLines joins lines into a log, each ending in a newline.
func joinLines(lines [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// verifyBytes runs Verify on data, failing the test on an error.
func verifyBytes(t testing.TB, data []byte, host ssh.PublicKey) *Report {
	t.Helper()
	rep, err := Verify(bytes.NewReader(data), host)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// wantProblems checks that the report lists problems on exactly the given
// lines, each reason containing the matching substring.
func wantProblems(t testing.TB, rep *Report, lines []int, reasons []string) {
	t.Helper()
	var got []string
	for _, p := range rep.Problems {
		got = append(got, p.String())
	}
	if len(rep.Problems) != len(lines) {
		t.Fatalf("got %d problems, want them on lines %v:\n%s", len(rep.Problems), lines, strings.Join(got, "\n"))
	}
	for i, p := range rep.Problems {
		if p.Line != lines[i] || !strings.Contains(p.Reason, reasons[i]) {
			t.Fatalf("problem %d is %q, want line %d with %q; all problems:\n%s", i, p, lines[i], reasons[i], strings.Join(got, "\n"))
		}
	}
}

// sshKeygen runs ssh-keygen with stdin and returns its combined output and
// error.
func sshKeygen(t testing.TB, stdin []byte, args ...string) (string, error) {
	t.Helper()
	p, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen is needed for this test: %v", err)
	}
	cmd := exec.Command(p, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fillDisk makes w write to /dev/full, as to a disk that has filled up, and returns the
// function that gives w its file back, as when space is freed.
func fillDisk(t *testing.T, w *Writer) (spaceBack func()) {
	t.Helper()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { full.Close() })
	w.mu.Lock()
	real := w.f
	w.f = full
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.f = real
		w.mu.Unlock()
	}
}

// openTestLog opens a new audit log in a temporary directory, signed by host, and closes it when
// the test ends.
func openTestLog(t *testing.T, host hostKey) (path string, w *Writer) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return path, w
}

// waitCovered waits until w has no record that a checkpoint does not cover,
// and no checkpoint being signed.
func waitCovered(t testing.TB, w *Writer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		done := w.uncovered == 0 && !w.signing
		w.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint covered the records within 10 seconds")
		}
		time.Sleep(time.Millisecond)
	}
}

// crash stops w as a crash of netauthd would: its file is closed without the
// closing checkpoint, and records not yet covered stay so.
func crash(t testing.TB, w *Writer) {
	t.Helper()
	w.mu.Lock()
	if w.ckTimer != nil {
		w.ckTimer.Stop()
		w.ckTimer = nil
	}
	if w.refusals.timer != nil {
		w.refusals.timer.Stop()
		w.refusals.timer = nil
	}
	f := w.f
	w.f = nil
	w.mu.Unlock()
	w.bg.Wait()
	if f != nil {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
