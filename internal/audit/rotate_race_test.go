// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentRotation: records and refusals written from several goroutines while the log
// is rotated (renamed, then Reopen) again and again, and checkpoints are signed in the
// background every few records: every file verifies as a chain of its own, ends with a
// closing checkpoint that leaves no record uncovered, and together they hold every record
// whose Write succeeded, once.
func TestConcurrentRotation(t *testing.T) {
	host := newHostKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	w, err := Open(path, host.priv, Options{Refusals: RefusalLimits{PerSource: 1 << 20, Total: 1 << 20}, CheckpointRecords: 3})
	if err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i%2 == 0 {
					err = w.Write(refusedRecord(host.pub, fmt.Sprint(g, i)))
				} else {
					_, err = w.WriteRefusal(&Refusal{Client: fmt.Sprintf("192.0.2.%d:%d", g, i), Code: "auth_failed"})
				}
				if err != nil {
					t.Error(err)
					return
				}
				written.Add(1)
			}
		})
	}
	var files []string
	for i := range 30 {
		rotated := fmt.Sprintf("%s.%d", path, i)
		if err := os.Rename(path, rotated); err != nil {
			t.Fatal(err)
		}
		files = append(files, rotated)
		if err := w.Reopen(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range append(files, path) {
		rep := verifyFile(t, f, host)
		if !rep.Signed() || !rep.Closed && rep.Lines > 0 { // a file rotated before any record is empty
			t.Fatalf("%s: problems %v, uncovered %v, closed %v", f, rep.Problems, rep.UncoveredRuns, rep.Closed)
		}
		total += rep.Records
	}
	if int64(total) != written.Load() {
		t.Fatalf("the files hold %d records, %d were written", total, written.Load())
	}
}
