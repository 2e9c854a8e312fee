// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestPartialWriteIsCutOff makes a write stop part way through a line (with
// a file size limit, as a nearly full disk would) and checks that the Writer
// cuts the partial line off again, so the log stays well-formed and opens,
// and that it writes again once the limit is lifted.
func TestPartialWriteIsCutOff(t *testing.T) {
	host := newHostKey(t)
	path, w := openTestLog(t, host)
	clock := useFakeClock(w)
	if err := w.Write(refusedRecord(host.pub, "first")); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// The limit applies to the whole process; this test does not run in
	// parallel with others, and Go ignores the SIGXFSZ the kernel sends.
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: uint64(len(before)) + 50, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	err = w.Write(refusedRecord(host.pub, "second"))
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if err == nil || !errors.Is(err, syscall.EFBIG) || !strings.HasPrefix(err.Error(), "audit: writing "+path+": file too large") {
		t.Fatalf("Write past the file size limit = %v, want EFBIG", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, before) {
		t.Fatalf("the partial line was not cut off; the log is now:\n%s", after)
	}
	if err := w.Write(refusedRecord(host.pub, "third")); err == nil {
		t.Fatal("Write succeeded on a failed Writer before RetryInterval passed")
	}
	clock.Add(RetryInterval)
	if err := w.Write(refusedRecord(host.pub, "fourth")); err != nil {
		t.Fatalf("Write once the limit is lifted: %v", err)
	}
	w.Close()
	w2, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatalf("reopening after the partial write: %v", err)
	}
	w2.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifyBytes(t, data, host.pub); !rep.OK() || rep.Records != 2 {
		t.Fatalf("log after the partial write: %+v", rep)
	}
}

// TestOpeningCheckpointWaitsForSpace: a Writer that cannot write the opening
// checkpoint of a log that holds lines (a full disk, here a file size limit)
// still opens, as after a failed write, and writes that checkpoint before
// its first record, in the same write, once it can.
func TestOpeningCheckpointWaitsForSpace(t *testing.T) {
	host := newHostKey(t)
	path, lines := sampleLog(t, host, 2) // records 1-2, closing checkpoint 3
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: uint64(len(joinLines(lines))), Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, host.priv, Options{})
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("Open when the opening checkpoint cannot be written: %v", err)
	}
	defer w.Close()
	if data, err := os.ReadFile(path); err != nil || !bytes.Equal(data, joinLines(lines)) {
		t.Fatalf("the log changed: %v\n%s", err, data)
	}
	clock := useFakeClock(w)
	if err := w.Write(refusedRecord(host.pub, "too soon")); err == nil || !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("Write right after the failure = %v, want the failure", err)
	}
	clock.Add(RetryInterval)
	r := refusedRecord(host.pub, "after")
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	if r.Seq != 5 {
		t.Errorf("the first record has seq %d, want 5 (after the opening checkpoint)", r.Seq)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	after := readLines(t, path)
	if len(after) != 6 || !bytes.Contains(after[3], []byte(`"event":"open"`)) {
		t.Fatalf("log:\n%s", joinLines(after))
	}
	if rep := verifyFile(t, path, host); !rep.Signed() || !rep.Closed || rep.Records != 3 || rep.Refused != 1 {
		t.Fatalf("report: %+v", rep)
	}
}
