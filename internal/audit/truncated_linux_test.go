// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"ubns.dev/netauth/internal/testutil"
)

// TestFailureAfterCopyTruncate: the log is cut in place (logrotate's copytruncate, which the
// documentation warns against) and written to again; then a write fails part way through a
// line (a full disk). The Writer cuts off exactly the partial line, at the end of the file as
// it is, rather than at the size it remembered from before the cut: that once extended the
// file with a run of NUL bytes (a hole on a full disk) in the middle of the log, and went on
// after it. The cut is logged when the Writer notices it; once space is freed it writes
// again without a reopen, and the log holds only whole records.
func TestFailureAfterCopyTruncate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	host := newHostKey(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting a small tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	path := filepath.Join(mnt, "audit.log")
	var logged testutil.Buffer
	w, err := Open(path, host.priv, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	clock := useFakeClock(w)
	for range 10 {
		if err := w.Write(refusedRecord(host.pub, "before the cut")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(path, 0); err != nil { // copytruncate
		t.Fatal(err)
	}
	if err := w.Write(refusedRecord(host.pub, "after the cut")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged.String(), "audit log changed by something else") {
		t.Errorf("the cut was not logged:\n%s", logged.String())
	}
	// Fill the file system, then write until a write fails.
	fill := filepath.Join(mnt, "fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 512)); err != nil {
			break
		}
	}
	f.Close()
	written := 1
	for {
		if err := w.Write(refusedRecord(host.pub, "filling the disk")); err != nil {
			break
		}
		if written++; written > 100 {
			t.Fatal("no write failed on a full file system")
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.IndexByte(data, 0) >= 0 || !bytes.HasSuffix(data, []byte("\n")) || bytes.Count(data, []byte("\n")) != written {
		t.Fatalf("after the failed write the log is %d bytes, %d NUL, %d lines (want the %d written since the cut, whole)",
			len(data), bytes.Count(data, []byte{0}), bytes.Count(data, []byte("\n")), written)
	}
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	clock.Add(RetryInterval)
	if err := w.Write(refusedRecord(host.pub, "space freed")); err != nil {
		t.Fatalf("Write once space is freed: %v", err)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The cut shows (the first line is not seq 1); nothing else is wrong.
	rep := verifyBytes(t, data, host.pub)
	if bytes.IndexByte(data, 0) >= 0 || rep.Records != written+1 || rep.Bad != 1 || rep.Problems[0].Line != 1 {
		t.Fatalf("the log after recovery: %d bytes, %d NUL, %d records (want %d), problems %v",
			len(data), bytes.Count(data, []byte{0}), rep.Records, written+1, rep.Problems)
	}
}
