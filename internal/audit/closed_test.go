// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"strings"
	"testing"
)

// TestRequireSignedNeedsClosingCheckpoint: a log known to be closed (a file
// rotated away) ends with netauthd's closing checkpoint. Cut at a checkpoint
// that is not the closing one, every record left is covered, and the records
// cut with the closing checkpoint would leave no trace: with RequireSigned the
// missing closing checkpoint is a bad line. Without it, the cut log verifies
// (the end of the log being written is not known).
func TestRequireSignedNeedsClosingCheckpoint(t *testing.T) {
	host := newHostKey(t)
	_, lines := checkpointedLog(t, host, 8, 4) // records 1-4, checkpoint 5, records 6-9, checkpoint 10, close 11
	if len(lines) != 11 {
		t.Fatalf("%d lines, want 11", len(lines))
	}
	for _, keep := range []int{5, 10} {
		cut := joinLines(lines[:keep])
		if rep := verifyBytes(t, cut, host.pub); !rep.Signed() || rep.Closed {
			t.Fatalf("log cut after line %d, without RequireSigned: %+v", keep, rep)
		}
		strict, err := VerifyWith(bytes.NewReader(cut), host.pub, VerifyOptions{RequireSigned: true})
		if err != nil {
			t.Fatal(err)
		}
		wantProblems(t, strict, []int{keep}, []string{"does not end with the closing checkpoint"})
		if strict.Bad != 1 || strict.OK() {
			t.Fatalf("log cut after line %d, with RequireSigned: %+v", keep, strict)
		}
	}
	// The whole log, closed, verifies with RequireSigned.
	strict, err := VerifyWith(bytes.NewReader(joinLines(lines)), host.pub, VerifyOptions{RequireSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strict.Signed() || !strict.Closed {
		t.Fatalf("closed log with RequireSigned: %+v", strict)
	}
	// A log written before checkpoints has none to close it, and still verifies.
	_, legacy := legacyLog(t, host, 3)
	strict, err = VerifyWith(bytes.NewReader(joinLines(legacy)), host.pub, VerifyOptions{RequireSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strict.Signed() {
		t.Fatalf("log before checkpoints with RequireSigned: %+v", strict)
	}
	// Records left uncovered at the end of a cut log: the last line's problem
	// says both, once.
	strict, err = VerifyWith(bytes.NewReader(joinLines(lines[:8])), host.pub, VerifyOptions{RequireSigned: true})
	if err != nil {
		t.Fatal(err)
	}
	wantProblems(t, strict, []int{6, 7, 8}, []string{"not yet covered", "not yet covered", "not yet covered"})
	if strict.Bad != 3 || !strings.Contains(strict.Problems[2].Reason, "does not end with the closing checkpoint") {
		t.Fatalf("cut log with uncovered records, with RequireSigned: %+v", strict)
	}
}
