// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// worstText is text whose JSON encoding is as long as it gets: characters escaped as \uXXXX,
// invalid UTF-8, quotes and backslashes.
func worstText(n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString("<>&\"\\\x00\x1f\xff\xc3\u2028\u2029é\n")
	}
	return b.String()[:n]
}

func TestClip(t *testing.T) {
	inputs := []string{"", "short", strings.Repeat("a", 300), worstText(1000), strings.Repeat("é", 200),
		strings.Repeat("\u2028", 100), strings.Repeat("\xff", 100), "ab\xc3"}
	for _, s := range inputs {
		for _, limit := range []int{0, 1, 2, 3, 4, 5, 6, 7, 10, 64, 200} {
			got := clip(s, limit)
			enc, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if len(enc)-2 > limit {
				t.Fatalf("clip(%q, %d) = %q, whose JSON is %d bytes", s, limit, got, len(enc)-2)
			}
			if got != s && (got != "" && !strings.HasPrefix(s, strings.TrimSuffix(got, ellipsis)) || !strings.HasSuffix(got, ellipsis) && got != "") {
				t.Fatalf("clip(%q, %d) = %q: not s, nor a prefix of s followed by %q", s, limit, got, ellipsis)
			}
			if !utf8.ValidString(s) || got == s {
				continue
			}
			if !utf8.ValidString(got) {
				t.Fatalf("clip(%q, %d) = %q cuts a character", s, limit, got)
			}
		}
	}
	if got := clip("short", 5); got != "short" {
		t.Errorf("clip of a string that fits = %q", got)
	}
	if got := clip(strings.Repeat("a", 300), 200); got != strings.Repeat("a", 197)+ellipsis {
		t.Errorf("clip to 200 = %q", got)
	}
}

// refusalWriter opens a log with the given limits and a fake clock.
func refusalWriter(t *testing.T, host hostKey, limits RefusalLimits) (*Writer, *fakeClock, string) {
	t.Helper()
	return refusalWriterOpts(t, host, Options{Refusals: limits})
}

// refusalWriterOpts opens a log with opts and a fake clock.
func refusalWriterOpts(t *testing.T, host hostKey, opts Options) (*Writer, *fakeClock, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, useFakeClock(w), path
}

// TestRefusalBounded: whatever a refusal carries, its line is at most MaxRefusalLine bytes,
// with the signature and an invalid user name by their hash and length, and it verifies; in
// the format with checkpoints and in the one before, whose lines carry a host signature.
func TestRefusalBounded(t *testing.T) {
	for _, f := range []struct {
		name string
		opts Options
	}{{"checkpoints", Options{}}, {"signed lines", Options{signEach: true}}} {
		t.Run(f.name, func(t *testing.T) { testRefusalBounded(t, f.opts) })
	}
}

func testRefusalBounded(t *testing.T, opts Options) {
	host := newHostKey(t)
	w, _, path := refusalWriterOpts(t, host, opts)
	big := worstText(1 << 20)
	sig := make([]byte, 16<<10)
	if _, err := rand.Read(sig); err != nil {
		t.Fatal(err)
	}
	refusals := []*Refusal{
		{Client: big, Service: big, User: big, KeyFP: big, Mode: "bogus", Code: big, Reason: big, Signature: []byte(big)},
		{Client: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%" + big + "]:65535", Service: strings.Repeat("s", 64),
			User: strings.Repeat("u", 64), KeyFP: "SHA256:" + strings.Repeat("A", 43), Mode: ModeFull,
			Code: "version_unsupported", Reason: big, Signature: sig},
		{Client: "192.0.2.1:1", Service: "imap", User: "alice", Mode: ModeResumed, Code: "auth_failed",
			Reason: "resumption binder does not verify"},
	}
	for i, r := range refusals {
		rec, err := w.WriteRefusal(r)
		if err != nil || rec == nil {
			t.Fatalf("refusal %d: %v, %v", i, rec, err)
		}
		if len(r.Signature) > 0 {
			h := sha256.Sum256(r.Signature)
			if rec.SigSHA256 != hex.EncodeToString(h[:]) || rec.SigLen != len(r.Signature) || rec.Signature != "" || rec.Statement != "" {
				t.Errorf("refusal %d: signature logged as %q, %d, %q", i, rec.SigSHA256, rec.SigLen, rec.Signature)
			}
		}
	}
	lines := readLines(t, path)
	if len(lines) != len(refusals) {
		t.Fatalf("%d lines for %d refusals", len(lines), len(refusals))
	}
	for i, l := range lines {
		t.Logf("line %d: %d bytes", i+1, len(l))
		if len(l) > MaxRefusalLine {
			t.Errorf("line %d is %d bytes, more than %d:\n%s", i+1, len(l), MaxRefusalLine, l)
		}
		if signed := bytes.Contains(l, []byte(`"host_sig":"`)); signed != opts.signEach {
			t.Errorf("line %d has a host signature: %v", i+1, signed)
		}
	}
	var first, third Record
	if err := json.Unmarshal(lines[0], &first); err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(big))
	if first.User != "" || first.UserSHA256 != hex.EncodeToString(h[:]) || first.UserLen != len(big) || first.Mode != "" {
		t.Errorf("an invalid user name and mode are logged as user %q, hash %q, length %d, mode %q", first.User, first.UserSHA256, first.UserLen, first.Mode)
	}
	if err := json.Unmarshal(lines[2], &third); err != nil {
		t.Fatal(err)
	}
	if third.User != "alice" || third.Reason != "resumption binder does not verify" || third.Code != "auth_failed" ||
		third.Mode != ModeResumed || third.Client != "192.0.2.1:1" || third.HostKeyFP != w.hostFP {
		t.Errorf("a refusal that fits is not logged as it is: %s", lines[2])
	}
	if rep := verifyBytes(t, joinLines(lines), host.pub); !rep.OK() || rep.Refused != 3 {
		t.Fatalf("refusals: %+v", rep)
	}
}

// summaries returns the summary records of the log at path, by source.
func summaries(t *testing.T, path string) map[string]*Summary {
	t.Helper()
	out := map[string]*Summary{}
	for _, l := range readLines(t, path) {
		var r Record
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatal(err)
		}
		if r.Summary != nil {
			if out[r.Summary.Source] != nil {
				t.Fatalf("two summaries for %s", r.Summary.Source)
			}
			out[r.Summary.Source] = r.Summary
		}
	}
	return out
}

// TestRefusalsAggregated: past PerSource refusals from a source (and Total from all) in an
// interval, refusals are counted, and a summary per source is written at the first write after
// the interval; past Sources sources, refusals count as SourceOther.
func TestRefusalsAggregated(t *testing.T) {
	host := newHostKey(t)
	w, clock, path := refusalWriter(t, host, RefusalLimits{Interval: 10 * time.Second, PerSource: 3, Total: 5, Sources: 2})
	refuse := func(client, code string) *Record {
		t.Helper()
		rec, err := w.WriteRefusal(&Refusal{Client: client, Service: "imap", Code: code, Reason: "no"})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	logged := 0
	for i := range 10 {
		code := "auth_failed"
		if i%2 == 1 {
			code = "not_authorized"
		}
		if refuse("192.0.2.7:"+fmt.Sprint(1000+i), code) != nil {
			logged++
		}
	}
	if logged != 3 {
		t.Fatalf("%d of 10 refusals from one source logged, want 3", logged)
	}
	// The same /64, another address: the same source.
	if refuse("[2001:db8::1]:1", "auth_failed") == nil || refuse("[2001:db8::2]:1", "auth_failed") == nil {
		t.Fatal("refusals from a second source not logged")
	}
	// Total reached: counted.
	if refuse("[2001:db8::3]:1", "auth_failed") != nil {
		t.Fatal("refusal logged past the total")
	}
	// A third source, past Sources: counted as other, and so are clients that are not IP.
	refuse("198.51.100.1:1", "overloaded")
	refuse("@", "overloaded")
	if n := len(readLines(t, path)); n != 5 {
		t.Fatalf("%d lines during the interval, want 5", n)
	}
	if got := summaries(t, path); len(got) != 0 {
		t.Fatalf("summaries written before the interval ended: %v", got)
	}

	// The interval ends; the next write, of an accepted connection, comes after the summaries.
	clock.Add(10 * time.Second)
	alice := newUserKey(t, false)
	accepted := fullRecordAt(t, host.pub, alice, "alice", "imap", clock.Now())
	if err := w.Write(accepted); err != nil {
		t.Fatal(err)
	}
	got := summaries(t, path)
	want := map[string]map[string]uint64{
		"192.0.2.7/32":  {"auth_failed": 3, "not_authorized": 4},
		"2001:db8::/64": {"auth_failed": 1},
		SourceOther:     {"overloaded": 2},
	}
	if len(got) != len(want) {
		t.Fatalf("summaries %v, want %v", got, want)
	}
	for src, counts := range want {
		s := got[src]
		if s == nil || fmt.Sprint(s.Counts) != fmt.Sprint(counts) || s.Since.IsZero() || s.Until.Before(s.Since) {
			t.Fatalf("summary for %s: %+v, want counts %v", src, s, counts)
		}
	}
	lines := readLines(t, path)
	if len(lines) != 9 || accepted.Seq != 9 {
		t.Fatalf("%d lines, the accepted record's seq %d: want 9, 9", len(lines), accepted.Seq)
	}
	for i, l := range lines {
		if len(l) > MaxRefusalLine && i != 8 {
			t.Errorf("line %d is %d bytes", i+1, len(l))
		}
	}

	// A new interval: each source may be logged again.
	if refuse("192.0.2.7:1", "auth_failed") == nil {
		t.Fatal("a refusal in the next interval was not logged")
	}
	w.Close()
	rep := verifyBytes(t, joinLines(readLines(t, path)), host.pub)
	if !rep.OK() || rep.Refused != 6 || rep.Summaries != 3 || rep.Summarized != 10 || rep.Full != 1 {
		t.Fatalf("report %+v", rep)
	}
}

// TestRefusalSummaryByTimer: the summary of an interval is written when it ends, with no
// other write; and Close writes those of an interval not yet over.
func TestRefusalSummaryByTimer(t *testing.T) {
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := Open(path, host.priv, Options{Refusals: RefusalLimits{Interval: 100 * time.Millisecond, PerSource: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := w.WriteRefusal(&Refusal{Client: "192.0.2.1:1", Code: "auth_failed"}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(summaries(t, path)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no summary written after the interval ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := summaries(t, path)["192.0.2.1/32"]; s == nil || s.Counts["auth_failed"] != 4 {
		t.Fatalf("summary %+v, want 4 auth_failed", s)
	}
	// Close: the interval is not over, its summary is written all the same.
	w.mu.Lock()
	w.limits.Interval = time.Hour
	w.mu.Unlock()
	for range 3 {
		if _, err := w.WriteRefusal(&Refusal{Client: "192.0.2.2:1", Code: "clock_skew"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s := summaries(t, path)["192.0.2.2/32"]; s == nil || s.Counts["clock_skew"] != 2 {
		t.Fatalf("summary written on Close %+v, want 2 clock_skew", s)
	}
	if rep := verifyBytes(t, joinLines(readLines(t, path)), host.pub); !rep.OK() || rep.Summarized != 6 {
		t.Fatalf("report %+v", rep)
	}
}

// TestRefusalSummaryBounded: a summary with as many codes as it counts apart, each long and
// at the largest count, from the longest source, is at most MaxRefusalLine bytes; and the
// table of sources stays at its bound.
func TestRefusalSummaryBounded(t *testing.T) {
	host := newHostKey(t)
	w, clock, path := refusalWriter(t, host, RefusalLimits{PerSource: 1, Sources: 4})
	long := worstText(1000)
	for i := range 20 {
		for j := range 3 {
			client := fmt.Sprintf("[ffff:ffff:ffff:%x::1]:65535", 0xff00+i)
			if _, err := w.WriteRefusal(&Refusal{Client: client, Code: fmt.Sprintf("%d%s", j*20+i, long)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.mu.Lock()
	if n := len(w.refusals.sources); n != 4 {
		t.Errorf("%d sources tracked, want 4", n)
	}
	for _, tl := range w.refusals.sources {
		for c := range tl.counts {
			tl.counts[c] = math.MaxUint64
		}
	}
	if n := len(w.refusals.other.counts); n != maxCodes {
		t.Errorf("the other sources' summary counts %d codes apart, want %d", n, maxCodes)
	}
	for c := range w.refusals.other.counts {
		w.refusals.other.counts[c] = math.MaxUint64
	}
	w.mu.Unlock()
	clock.Add(DefaultRefusalInterval)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	longest := 0
	for i, l := range lines {
		longest = max(longest, len(l))
		if len(l) > MaxRefusalLine {
			t.Errorf("line %d is %d bytes, more than %d:\n%s", i+1, len(l), MaxRefusalLine, l)
		}
	}
	t.Logf("the longest line is %d bytes", longest)
	if got := summaries(t, path); len(got) != 5 {
		t.Fatalf("%d summaries, want 5 (4 sources and other)", len(got))
	}
	if rep := verifyBytes(t, joinLines(lines), host.pub); !rep.OK() || rep.Summarized != math.MaxUint64 {
		t.Fatalf("report %+v", rep)
	}
}

// TestRefusalsCountedWhileFailed: refusals that cannot be logged while the log fails are
// counted, and their summary is written once it can be.
func TestRefusalsCountedWhileFailed(t *testing.T) {
	host := newHostKey(t)
	w, clock, path := refusalWriter(t, host, RefusalLimits{})
	spaceBack := fillDisk(t, w)
	for i := range 3 {
		rec, err := w.WriteRefusal(&Refusal{Client: "192.0.2.1:1", Code: "internal_error"})
		if err == nil || rec == nil {
			t.Fatalf("refusal %d on a full disk: %v, %v; want the record and an error", i, rec, err)
		}
	}
	spaceBack()
	clock.Add(RetryInterval / 2)
	if err := w.Write(refusedRecord(host.pub, "x")); err == nil {
		t.Fatal("written before RetryInterval passed")
	}
	// The interval ends: its summary is written before the next record.
	clock.Add(DefaultRefusalInterval)
	if err := w.Write(refusedRecord(host.pub, "back")); err != nil {
		t.Fatal(err)
	}
	if s := summaries(t, path)["192.0.2.1/32"]; s == nil || s.Counts["internal_error"] != 3 {
		t.Fatalf("summary of the refusals during the failure: %+v", s)
	}
	if rep := verifyBytes(t, joinLines(readLines(t, path)), host.pub); !rep.OK() || rep.Records != 2 {
		t.Fatalf("report %+v", rep)
	}
}

func TestSummaryRecordChecked(t *testing.T) {
	host := newHostKey(t)
	w, _, _ := refusalWriter(t, host, RefusalLimits{})
	for _, r := range []*Record{
		{Decision: Accepted, Mode: ModeFull, Summary: &Summary{Source: "x", Counts: map[string]uint64{"a": 1}}},
		{Decision: Refused, Mode: ModeFull, Summary: &Summary{Source: "x", Counts: map[string]uint64{"a": 1}}},
		{Decision: Refused, Summary: &Summary{Counts: map[string]uint64{"a": 1}}},
		{Decision: Refused, Summary: &Summary{Source: "x"}},
	} {
		if err := w.Write(r); err == nil {
			t.Errorf("bad summary %+v written", r.Summary)
		}
	}
}
