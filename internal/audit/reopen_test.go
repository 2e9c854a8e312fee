// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ubns.dev/netauth/internal/testutil"
)

// verifyFile runs Verify on the file at path.
func verifyFile(t *testing.T, path string, host hostKey) *Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return verifyBytes(t, data, host.pub)
}

// TestReopenAfterRotation: a log renamed away is written to until Reopen, which goes on in a
// new file at the path whose first line (seq 1) is the continuing checkpoint naming the old
// file's last line; both files verify, and the new one continues the old one.
func TestReopenAfterRotation(t *testing.T) {
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	var logged testutil.Buffer
	w, err := Open(path, host.priv, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(refusedRecord(host.pub, "one")); err != nil {
		t.Fatal(err)
	}
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(refusedRecord(host.pub, "two")); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged.String(), "audit log reopened") {
		t.Errorf("the reopening was not logged:\n%s", logged.String())
	}
	r := refusedRecord(host.pub, "three")
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	if r.Seq != 2 {
		t.Errorf("first record of the new file has seq %d, want 2 (after the continuing checkpoint)", r.Seq)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The rotated file ends with the closing checkpoint Reopen wrote.
	old := verifyFile(t, rotated, host)
	if !old.Signed() || !old.Closed || old.Records != 2 {
		t.Fatalf("rotated log: %+v", old)
	}
	rep := verifyFile(t, path, host)
	if !rep.Signed() || !rep.Closed || rep.Records != 1 {
		t.Fatalf("new log: %+v", rep)
	}
	if old.End == nil || rep.Follows == nil || *rep.Follows != *old.End || old.End.Seq != 3 {
		t.Fatalf("the new log follows %+v, the rotated one ends at %+v (seq 3, its closing checkpoint)", rep.Follows, old.End)
	}
	if err := rep.Continues(old, nil); err != nil {
		t.Fatalf("the new log does not continue the rotated one: %v", err)
	}
}

// TestReopenSameFile: Reopen of a log still at its path goes on with its chain, and makes a
// failed Writer try the file at the next Write, without waiting for RetryInterval.
func TestReopenSameFile(t *testing.T) {
	host := newHostKey(t)
	path, w := openTestLog(t, host)
	useFakeClock(w)
	if err := w.Write(refusedRecord(host.pub, "one")); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	spaceBack := fillDisk(t, w)
	if err := w.Write(refusedRecord(host.pub, "lost")); err == nil {
		t.Fatal("Write to a full disk succeeded")
	}
	spaceBack()
	if err := w.Write(refusedRecord(host.pub, "lost")); err == nil {
		t.Fatal("Write before RetryInterval tried the file")
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	r := refusedRecord(host.pub, "two")
	if err := w.Write(r); err != nil {
		t.Fatalf("Write after Reopen: %v", err)
	}
	if r.Seq != 3 {
		t.Errorf("seq %d after Reopen, want 3 (after the checkpoint the first Reopen wrote)", r.Seq)
	}
	if rep := verifyFile(t, path, host); !rep.OK() || rep.Records != 2 {
		t.Fatalf("log: %+v", rep)
	}
}

// TestRetryCutsPartialLine: what a failed write left at the end of the file is cut off before
// the next record is written, so the chain goes on unbroken.
func TestRetryCutsPartialLine(t *testing.T) {
	host := newHostKey(t)
	path, w := openTestLog(t, host)
	clock := useFakeClock(w)
	if err := w.Write(refusedRecord(host.pub, "one")); err != nil {
		t.Fatal(err)
	}
	spaceBack := fillDisk(t, w)
	if err := w.Write(refusedRecord(host.pub, "lost")); err == nil {
		t.Fatal("Write to a full disk succeeded")
	}
	spaceBack()
	// As if the failed write had left part of its line that could not be removed then.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"seq":2,"time":"20`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	clock.Add(RetryInterval)
	if err := w.Write(refusedRecord(host.pub, "two")); err != nil {
		t.Fatal(err)
	}
	if rep := verifyFile(t, path, host); !rep.OK() || rep.Records != 2 {
		t.Fatalf("log: %+v", rep)
	}

	// A file cut shorter than what was written to it (copied and truncated in place) is not
	// written to; Reopen goes on from what it holds.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	spaceBack = fillDisk(t, w)
	if err := w.Write(refusedRecord(host.pub, "lost")); err == nil {
		t.Fatal("Write to a full disk succeeded")
	}
	spaceBack()
	clock.Add(RetryInterval)
	if err := w.Write(refusedRecord(host.pub, "lost")); err == nil || !strings.Contains(err.Error(), "shorter than") {
		t.Fatalf("Write to a file cut short: %v, want an error", err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	r := refusedRecord(host.pub, "three")
	if err := w.Write(r); err != nil || r.Seq != 1 {
		t.Fatalf("Write after Reopen: %v, seq %d; want seq 1", err, r.Seq)
	}
	if rep := verifyFile(t, path, host); !rep.OK() || rep.Records != 1 {
		t.Fatalf("log: %+v", rep)
	}
}

// TestReopenUnopenable: if the path cannot be opened, Reopen reports it and the Writer goes on
// with the file it had open.
func TestReopenUnopenable(t *testing.T) {
	host := newHostKey(t)
	path, w := openTestLog(t, host)
	if err := w.Write(refusedRecord(host.pub, "one")); err != nil {
		t.Fatal(err)
	}
	moved := path + ".1"
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err == nil || !strings.Contains(err.Error(), "still writing to the file open before") {
		t.Fatalf("Reopen of a directory = %v, want an error", err)
	}
	r := refusedRecord(host.pub, "two")
	if err := w.Write(r); err != nil || r.Seq != 2 {
		t.Fatalf("Write after a failed Reopen: %v, seq %d", err, r.Seq)
	}
	if rep := verifyFile(t, moved, host); !rep.OK() || rep.Records != 2 {
		t.Fatalf("log: %+v", rep)
	}
}

// TestFailingEndsAtReopen: reopening a log whose write failed (SIGUSR1 or SIGHUP in netauthd,
// once the administrator mended it) ends the wait: Failing is nil at once, and the next Write
// writes, without waiting for RetryInterval.
func TestFailingEndsAtReopen(t *testing.T) {
	host := newHostKey(t)
	_, w := openTestLog(t, host)
	useFakeClock(w)
	if err := w.Write(refusedRecord(host.pub, "first")); err != nil {
		t.Fatal(err)
	}
	spaceBack := fillDisk(t, w)
	if err := w.Write(refusedRecord(host.pub, "second")); err == nil {
		t.Fatal("Write to a full disk succeeded")
	}
	if err := w.Failing(); err == nil {
		t.Fatal("Failing after a failed write = nil, want the failure")
	}
	spaceBack()
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := w.Failing(); err != nil {
		t.Fatalf("Failing after Reopen = %v, want nil", err)
	}
	if err := w.Write(refusedRecord(host.pub, "third")); err != nil {
		t.Fatalf("Write after Reopen: %v", err)
	}
}
