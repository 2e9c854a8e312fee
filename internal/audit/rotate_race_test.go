// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentRotation: records and refusals written from several goroutines while the log
// is rotated (renamed, then Reopen) again and again, and checkpoints are signed in the
// background every few records: every file verifies, ends with a closing checkpoint that
// leaves no record uncovered, and continues the chain of the file before it, and together
// they hold every record whose Write succeeded, each exactly once.
func TestConcurrentRotation(t *testing.T) {
	host := newHostKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	w, err := Open(path, host.priv, Options{Refusals: RefusalLimits{PerSource: 1 << 20, Total: 1 << 20}, CheckpointRecords: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Each record is told apart by its reason (Write) or client (WriteRefusal).
	var written atomic.Int64
	var mu sync.Mutex
	ids := make(map[string]bool)
	if err := w.Write(refusedRecord(host.pub, "first")); err != nil {
		t.Fatal(err)
	}
	ids["first"] = true
	written.Add(1)
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
				var id string
				if i%2 == 0 {
					id = fmt.Sprint(g, " ", i)
					err = w.Write(refusedRecord(host.pub, id))
				} else {
					id = fmt.Sprintf("192.0.2.%d:%d", g, i)
					_, err = w.WriteRefusal(&Refusal{Client: id, Code: "auth_failed"})
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids[id] = true
				mu.Unlock()
				written.Add(1)
			}
		})
	}
	var files []string
	for i := range 30 {
		// Under load: records go on being written between rotations and during each.
		deadline := time.Now().Add(10 * time.Second)
		for since := written.Load(); written.Load() < since+50; {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatal("the writers stopped writing")
			}
			time.Sleep(100 * time.Microsecond)
		}
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
	var prev *Report
	seen := make(map[string]int)
	for _, f := range append(files, path) {
		rep := verifyFile(t, f, host)
		if !rep.Signed() || !rep.Closed {
			t.Fatalf("%s: problems %v, uncovered %v, closed %v", f, rep.Problems, rep.UncoveredRuns, rep.Closed)
		}
		if prev != nil {
			if err := rep.Continues(prev, nil); err != nil {
				t.Fatalf("%s does not continue the file before it: %v", f, err)
			}
		}
		prev = rep
		total += rep.Records
		for _, l := range readLines(t, f) {
			var r Record
			if err := json.Unmarshal(l, &r); err != nil {
				t.Fatal(err)
			}
			switch {
			case r.Checkpoint != nil:
			case r.Client == "198.51.100.3:1234":
				seen[r.Reason]++
			default:
				seen[r.Client]++
			}
		}
	}
	if int64(total) != written.Load() {
		t.Fatalf("the files hold %d records, %d were written", total, written.Load())
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("record %q is in the files %d times, want once", id, seen[id])
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("the files hold %d distinct records, %d were written", len(seen), len(ids))
	}
	t.Logf("%d records in %d files", total, len(files)+1)
}
