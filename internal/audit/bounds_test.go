// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestVerifyProblemsBounded: a log of many short bad lines (here 200,000
// lines of one byte, 400 KB) does not make Verify keep a problem for each:
// it lists the first MaxProblems, counts every bad line, and does not
// report the log as good. Keeping them all made Verify hold about 70 bytes
// of memory per byte of such a log, so a crafted log of a few hundred
// megabytes exhausted the memory of the machine checking it.
func TestVerifyProblemsBounded(t *testing.T) {
	host := newHostKey(t)
	const n = 200000
	rep := verifyBytes(t, bytes.Repeat([]byte("x\n"), n), host.pub)
	if rep.Records != n {
		t.Fatalf("Verify read %d records, want %d", rep.Records, n)
	}
	if len(rep.Problems) > MaxProblems {
		t.Fatalf("Verify listed %d problems, more than %d", len(rep.Problems), MaxProblems)
	}
	if rep.Bad != n || rep.OK() {
		t.Fatalf("Verify counted %d bad lines (OK %v), want %d", rep.Bad, rep.OK(), n)
	}
	if p := rep.Problems[len(rep.Problems)-1]; p.Line != MaxProblems {
		t.Fatalf("the last problem listed is on line %d, want %d", p.Line, MaxProblems)
	}
}

// TestVerifyProblemReasonBounded: the reason of a problem is cut to
// maxProblemReason bytes, whatever the line quotes into it.
func TestVerifyProblemReasonBounded(t *testing.T) {
	host := newHostKey(t)
	// A host signature whose namespace is 12 KiB of bytes that %q turns
	// into four each: its reason quoted them all.
	ns := strings.Repeat("\xff", 12<<10)
	blob := []byte("SSHSIG\x00\x00\x00\x01")
	for _, field := range []string{string(host.pub.Marshal()), ns, "", "sha512", "\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x00"} {
		blob = append(blob, byte(len(field)>>24), byte(len(field)>>16), byte(len(field)>>8), byte(len(field)))
		blob = append(blob, field...)
	}
	line := `{"seq":1,"host_sig":"` + base64.StdEncoding.EncodeToString(blob) + `"}` + "\n"
	rep := verifyBytes(t, []byte(line), host.pub)
	if len(rep.Problems) != 1 {
		t.Fatalf("problems: %v", rep.Problems)
	}
	if r := rep.Problems[0].Reason; len(r) > maxProblemReason || !strings.Contains(r, "namespace") {
		t.Fatalf("the reason is %d bytes (more than %d?): %.200s", len(r), maxProblemReason, r)
	}
}

// TestVerifyProblemsPrintable: what Verify reports about a line holds only printable
// characters, whatever bytes the line quotes into it (time's parse errors, for one, pass a
// DEL byte through unescaped), so that `netauth audit verify` prints no control character,
// escape sequence or bidirectional override a crafted log put there.
func TestVerifyProblemsPrintable(t *testing.T) {
	host := newHostKey(t)
	for _, line := range []string{
		"{\"seq\":1,\"time\":\"\x7f\",\"host_sig\":\"\"}\n",
		"{\"seq\":1,\"time\":\"2026-01-01T00:00:00Z\x7f\u202e\x1b[2J\",\"host_sig\":\"\"}\n",
	} {
		rep := verifyBytes(t, []byte(line), host.pub)
		if len(rep.Problems) != 1 {
			t.Fatalf("%q: problems %v", line, rep.Problems)
		}
		if s := rep.Problems[0].String(); !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
			t.Fatalf("%q: a problem carries a character that is not printable: %q", line, s)
		}
	}
}
