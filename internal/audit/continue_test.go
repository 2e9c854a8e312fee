// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rotatedLogs writes records to a log rotated n times and returns its files, oldest first (the
// last is the file at the log's path), each holding records.
func rotatedLogs(t *testing.T, host hostKey, n int) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for i := range n + 1 {
		for j := range 3 {
			if err := w.Write(refusedRecord(host.pub, fmt.Sprint(i, j))); err != nil {
				t.Fatal(err)
			}
		}
		if i == n {
			break
		}
		rotated := fmt.Sprintf("%s.%d", path, n-i)
		if err := os.Rename(path, rotated); err != nil {
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
	return append(files, path)
}

// verifyAll verifies each file and returns the reports by name and in order.
func verifyAll(t *testing.T, host hostKey, files []string) (map[string]*Report, []*Report) {
	t.Helper()
	byName := make(map[string]*Report)
	var order []*Report
	for _, f := range files {
		rep := verifyFile(t, f, host)
		if !rep.Signed() || !rep.Closed {
			t.Fatalf("%s: problems %v, uncovered %v, closed %v", f, rep.Problems, rep.UncoveredRuns, rep.Closed)
		}
		byName[f] = rep
		order = append(order, rep)
	}
	return byName, order
}

// TestRotatedSequenceLinks: each file of a rotated log continues the one before it, and
// Continues finds a file missing from the sequence, files out of order, and a file cut at its
// end (with its closing checkpoint), while a log that starts a chain of its own is told apart.
func TestRotatedSequenceLinks(t *testing.T) {
	host := newHostKey(t)
	files := rotatedLogs(t, host, 3)
	byName, reps := verifyAll(t, host, files)
	if reps[0].Follows != nil {
		t.Errorf("the first file, opened on an empty path, follows %+v", reps[0].Follows)
	}
	for i := 1; i < len(reps); i++ {
		if err := reps[i].Continues(reps[i-1], byName); err != nil {
			t.Fatalf("%s does not continue %s: %v", files[i], files[i-1], err)
		}
	}
	if err := reps[0].Continues(reps[1], byName); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("the first file given after the second: %v, want the files out of order", err)
	}
	if err := reps[2].Continues(reps[0], byName); err == nil || !strings.Contains(err.Error(), "out of order") {
		t.Errorf("the third file given after the first, the second after it: %v, want the files out of order", err)
	}
	delete(byName, files[1])
	if err := reps[2].Continues(reps[0], byName); err == nil || !strings.Contains(err.Error(), "a file is missing between them") {
		t.Errorf("the second file missing: %v, want a file missing", err)
	}

	// Cut the first file before its closing checkpoint and last record: nothing in it shows
	// the cut but the closing checkpoint missing, and the next file names the lines cut.
	lines := readLines(t, files[0])
	cut := filepath.Join(t.TempDir(), "cut")
	if err := os.WriteFile(cut, joinLines(lines[:len(lines)-2]), 0o600); err != nil {
		t.Fatal(err)
	}
	cutRep := verifyFile(t, cut, host)
	err := reps[1].Continues(cutRep, nil)
	if err == nil || !strings.Contains(err.Error(), "cut at its end (2 lines missing)") {
		t.Errorf("the file before cut at its end: %v", err)
	}

	if err := reps[0].Continues(reps[0], nil); !errors.Is(err, ErrNewChain) {
		t.Errorf("a file that starts a chain of its own: %v, want ErrNewChain", err)
	}
}

// TestContinuingCheckpointChecked: a continuing checkpoint is good only as the first line of
// a file, with the prev it signed as its head; a single-file log that starts with one verifies.
func TestContinuingCheckpointChecked(t *testing.T) {
	host := newHostKey(t)
	files := rotatedLogs(t, host, 1)
	lines := readLines(t, files[1])
	if !bytes.Contains(lines[0], []byte(`"event":"continue"`)) {
		t.Fatalf("the new file's first line is not a continuing checkpoint: %s", lines[0])
	}

	// Its prev changed (it is not signed): the line is bad.
	prevAt := bytes.Index(lines[0], []byte(`"prev":"`)) + len(`"prev":"`)
	changed := bytes.Clone(lines[0])
	changed[prevAt] ^= 1
	rep := verifyBytes(t, joinLines(append([][]byte{changed}, lines[1:]...)), host.pub)
	if rep.Bad == 0 || rep.Problems[0].Line != 1 || !strings.Contains(rep.Problems[0].Reason, "prev is not the head it signed") {
		t.Errorf("changed prev: %v", rep.Problems)
	}
	if rep.Follows != nil {
		t.Errorf("a bad continuing checkpoint is reported as a link: %+v", rep.Follows)
	}

	// Copied into the middle of the file, after its first record: bad there.
	moved := append([][]byte{lines[0], lines[1]}, lines[0])
	moved = append(moved, lines[2:]...)
	rep = verifyBytes(t, joinLines(moved), host.pub)
	found := false
	for _, p := range rep.Problems {
		if p.Line == 3 && strings.Contains(p.Reason, "not the first line of the file") {
			found = true
		}
	}
	if !found {
		t.Errorf("a continuing checkpoint on line 3: %v", rep.Problems)
	}
}
