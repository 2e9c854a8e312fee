// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"testing"
)

// TestOpeningCheckpointReplayed: records appended after a closing checkpoint
// behind an opening checkpoint copied from another log of the same host key,
// at the same seq, with its own prev (which its signature does not cover)
// set to continue this chain, are not passed off as the next start of
// netauthd: the head that checkpoint signed is the other log's line, so the
// log is bad, not merely uncovered.
func TestOpeningCheckpointReplayed(t *testing.T) {
	host := newHostKey(t)
	_, a := checkpointedLog(t, host, 3, 3) // records 1-3, checkpoint 4, close 5
	pathB, b := checkpointedLog(t, host, 3, 3)
	w, err := Open(pathB, host.priv, Options{}) // opening checkpoint 6, head 5
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b = readLines(t, pathB)
	if len(a) != 5 || len(b) != 7 || parseRecord(t, b[5]).Checkpoint.Event != EventOpen {
		t.Fatalf("logs of %d and %d lines", len(a), len(b))
	}
	opening := moveCheckpoint(t, b[5], lineHash(a[4]))
	r := parseRecord(t, a[2])
	r.Seq, r.Prev, r.Reason = 7, lineHash(opening), "planted"
	planted := mustJSON(t, r)
	rep := verifyBytes(t, joinLines(append(a[:5:5], opening, planted)), host.pub)
	// The checkpoint's signed head is not this log's line 5: that line is
	// reported, so the log fails (the planted record after it is at best
	// uncovered).
	wantProblems(t, rep, []int{5}, []string{"not the line the host signed: its hash is not the head the checkpoint on line 6 signed for seq 5"})
	if rep.OK() || rep.Signed() {
		t.Fatalf("records behind a replayed opening checkpoint verify: %+v", rep)
	}
}
