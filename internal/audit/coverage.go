// SPDX-License-Identifier: Apache-2.0

package audit

// How Verify follows the chain, and which checkpoint covers which records.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// What a line of a segment counts as.
const (
	kindOther uint8 = iota // a record of no kind Report counts (reported for its content)
	kindFull
	kindResumed
	kindRefused
	kindSummary
	kindCheckpoint
)

// entry is what the verifier keeps of a line of the current segment.
type entry struct {
	seq        uint64
	line       int
	hash       [sha256.Size]byte
	kind       uint8
	flagged    bool   // a problem of its own waits in verifier.pend
	summarized uint64 // for a summary
	time       time.Time
}

// lineSum adds up lines of a segment that left the window while waiting for a
// checkpoint.
type lineSum struct {
	full, resumed, refused, summaries, other int
	summarized                               uint64
	flagged                                  int
	lastSeq                                  uint64 // of the last record
	lastTime                                 time.Time
}

func (t *lineSum) records() int {
	return t.full + t.resumed + t.refused + t.summaries + t.other
}

// add adds e, a line that left the window, to t.
func (t *lineSum) add(e *entry) {
	switch e.kind {
	case kindFull:
		t.full++
	case kindResumed:
		t.resumed++
	case kindRefused:
		t.refused++
	case kindSummary:
		t.summaries++
		if t.summarized += e.summarized; t.summarized < e.summarized {
			t.summarized = math.MaxUint64
		}
	case kindOther:
		t.other++
	}
	if e.flagged {
		t.flagged++
	}
	if e.kind != kindCheckpoint {
		t.lastSeq, t.lastTime = e.seq, e.time
	}
}

// verifier holds the state of Verify between lines.
//
// The good lines since the last break in the chain form a segment: one
// chain, each line's prev the hash of the line before. A checkpoint covers
// lines of its own segment only, from its head back to its From, and only
// if its head is the line it signed. The lines of the segment a checkpoint
// has not yet covered wait (they are pending) until one does, the chain
// breaks (then none can), or the file ends (then they are uncovered). The
// last MaxCheckpointLag lines of the segment are kept in win, indexed by seq;
// pending lines before those are added up in old.
type verifier struct {
	hostKey       []byte
	hostFP        string
	skew          time.Duration
	requireSigned bool
	report        Report

	// handshakes maps the handshake hash of each accepted full handshake
	// seen so far, in this log or in those verified before with the same
	// Handshakes, to where it was seen. A user signature verifies over one
	// statement only, which names the handshake hash: a signature logged
	// twice is a handshake hash logged twice, so this map finds both. log
	// numbers this log among those, and name names it.
	handshakes *Handshakes
	log        int
	name       string

	// anchor is the last good line, and badSince the number of bad lines
	// after it.
	haveAnchor bool
	anchorLine int
	anchorSeq  uint64
	anchorHash [sha256.Size]byte
	badSince   int

	// The segment: whether there is one (the anchor is in it), its first
	// line and seq, the seq up to which its lines are resolved (covered,
	// uncovered or bad), and its pending lines: those up to oldTo added up
	// in old, the others in win.
	inSeg   bool
	segLine int
	segSeq  uint64
	done    uint64
	oldTo   uint64
	old     lineSum
	win     []entry
	// pend holds the problems of pending lines, in order, until their lines
	// are resolved; no more are kept than can still be listed.
	pend []Problem

	// needOpen is set after a closing checkpoint, or a record signed alone
	// (the format before checkpoints), on line needOpenLine: the next line
	// must be an opening checkpoint, or another record signed alone.
	needOpen     bool
	needOpenLine int
	needOpenWhy  string
	lastClose    bool // the last line read is a closing checkpoint

	find *findState // for Find
}

// seen is where an accepted full handshake was logged, and the SHA-256 of its
// user signature.
type seen struct {
	log  int    // the log's number in its Handshakes
	name string // and its name
	line int
	seq  uint64
	sig  [sha256.Size]byte
}

// findState is what Find wants to know of one line.
type findState struct {
	seq       uint64
	found     bool
	line      int
	rec       *Record
	raw       []byte
	done      bool   // its fate is known
	err       string // why it is bad or not covered; "" if good
	coveredBy uint64 // the seq of the checkpoint that covers it
}

// lineOf returns the line number of seq in the segment.
func (v *verifier) lineOf(seq uint64) int {
	return v.segLine + int(seq-v.segSeq)
}

// at returns the window's entry for seq, a line of the segment that is still
// in the window.
func (v *verifier) at(seq uint64) *entry {
	return &v.win[seq%MaxCheckpointLag]
}

// seqs calls f for each seq from first to last, in order, until f returns
// false; for none if first > last.
func seqs(first, last uint64, f func(s uint64) bool) {
	if first > last {
		return
	}
	for s := first; f(s) && s != last; s++ {
	}
}

// check checks one line and updates the report.
func (v *verifier) check(n int, l line) {
	v.report.Lines++
	v.lastClose = false
	p, err := v.parse(l)
	if p != nil && p.kind == lineCheckpoint {
		v.report.Checkpoints++
	} else {
		v.report.Records++
	}
	if err != nil {
		var seq uint64
		if p != nil {
			seq = p.rec.Seq
		}
		v.badLine(n, seq, err.Error())
		return
	}
	if p.kind == lineCheckpoint && p.ck.Event == EventContinue && n != 1 {
		v.badLine(n, p.rec.Seq, "a continuing checkpoint that is not the first line of the file: netauthd writes one only as the first line of a new file after a rotation")
		return
	}
	if v.needOpen && p.kind != lineSigned && (p.kind != lineCheckpoint || p.ck.Event != EventOpen) {
		v.badLine(n, p.rec.Seq, v.needOpenWhy)
		return
	}
	v.goodLine(n, p, l.data)
}

// parse reads a line, and the reason it is bad if it is.
func (v *verifier) parse(l line) (*parsed, error) {
	if l.tooLong {
		return nil, fmt.Errorf("line is longer than %d bytes", MaxLineSize)
	}
	if len(l.data) == 0 {
		return nil, errors.New("empty line")
	}
	p, err := parseLine(l.data, v.hostKey, v.hostFP)
	if !l.complete {
		const cut = "incomplete line (no newline at the end of the file): the log was cut or a write was interrupted"
		if err != nil {
			return p, fmt.Errorf("%s; %w", cut, err)
		}
		return p, errors.New(cut)
	}
	return p, err
}

// badLine reports line n, which is bad for reason, and breaks the chain there:
// the records before it that no checkpoint covers are reported too.
func (v *verifier) badLine(n int, seq uint64, reason string) {
	if v.inSeg {
		f := v.find
		pending := f != nil && f.found && !f.done
		v.breakSegment(fmt.Sprintf("the chain breaks after this record, at line %d, which is bad (see there): no host signature covers this record", n),
			fmt.Sprintf("no host signature covers this record: the chain breaks at line %d, which is bad, before a checkpoint covers it", n))
		if pending && f.done {
			// Find reports one line: say what is wrong with the other.
			f.err += fmt.Sprintf(" (line %d: %s)", n, reason)
		}
	}
	v.problem(n, seq, reason)
	v.badSince++
	v.target(n, seq, nil, nil, reason)
}

// goodLine takes line n, whose own content is good, into the chain.
func (v *verifier) goodLine(n int, p *parsed, data []byte) {
	rec := p.rec
	var reasons []string
	detail := v.chain(p)
	if detail != "" || v.badSince > 0 || !v.inSeg {
		// A new segment begins here: after a break, after bad lines, or at
		// the start of the file.
		if detail != "" {
			blamed := false
			if v.inSeg {
				blamed = v.breakSegment(fmt.Sprintf("the chain breaks after this record, at line %d: %s: no host signature covers this record", n, detail),
					fmt.Sprintf("no host signature covers this record: the chain breaks at line %d (see line %d)", n, n-1))
			}
			if !blamed {
				reasons = append(reasons, "chain broken: "+detail)
			}
		}
		v.inSeg, v.segLine, v.segSeq, v.done, v.oldTo, v.old = true, n, rec.Seq, rec.Seq-1, rec.Seq-1, lineSum{}
	}
	v.push(n, p, sha256.Sum256(data))
	v.target(n, rec.Seq, p, data, "")
	switch p.kind {
	case lineSigned:
		// Signed alone: it covers itself; nothing vouches for the pending
		// lines before it.
		reasons = append(reasons, v.checkContent(n, rec)...)
		v.hold(n, rec.Seq, reasons)
		v.uncovered(rec.Seq-1, false, n)
		v.cover(rec.Seq, 0)
		v.needOpen, v.needOpenLine = true, n
		v.needOpenWhy = fmt.Sprintf("a line written after records signed one by one (line %d, the format before checkpoints) but before any opening checkpoint: netauthd did not write it (a host signature removed?)", n)
	case lineCheckpoint:
		v.hold(n, rec.Seq, reasons)
		v.checkpoint(n, rec.Seq, p.ck)
	default:
		reasons = append(reasons, v.checkContent(n, rec)...)
		v.hold(n, rec.Seq, reasons)
	}
}

// push adds line n, which continues the segment, to the window.
func (v *verifier) push(n int, p *parsed, hash [sha256.Size]byte) {
	rec := p.rec
	e := v.at(rec.Seq)
	if v.inSeg && rec.Seq >= MaxCheckpointLag && e.seq == rec.Seq-MaxCheckpointLag && e.seq > v.done && e.seq >= v.segSeq {
		// The line it replaces is still pending: add it up.
		v.old.add(e)
		v.oldTo = e.seq
	}
	*e = entry{seq: rec.Seq, line: n, hash: hash, time: rec.Time}
	switch {
	case p.kind == lineCheckpoint:
		e.kind = kindCheckpoint
	case rec.Decision == Refused && rec.Summary != nil:
		e.kind = kindSummary
		for _, c := range rec.Summary.Counts {
			if e.summarized += c; e.summarized < c {
				e.summarized = math.MaxUint64
			}
		}
	case rec.Decision == Refused:
		e.kind = kindRefused
	case rec.Decision == Accepted && rec.Mode == ModeFull:
		e.kind = kindFull
	case rec.Decision == Accepted && rec.Mode == ModeResumed:
		e.kind = kindResumed
	default:
		e.kind = kindOther
	}
	v.haveAnchor, v.anchorLine, v.anchorSeq, v.anchorHash, v.badSince = true, n, rec.Seq, hash, 0
	if p.kind == lineCheckpoint && p.ck.Event == EventClose {
		v.lastClose = true
	}
}

// hold keeps the problems of line n (seq), which is pending, until it is
// resolved.
func (v *verifier) hold(n int, seq uint64, reasons []string) {
	if len(reasons) == 0 {
		return
	}
	v.at(seq).flagged = true
	if len(v.report.Problems)+len(v.pend) < MaxProblems {
		v.pend = append(v.pend, Problem{Line: n, Seq: seq, Reason: cutReason(Printable(strings.Join(reasons, "; ")))})
	}
}

// checkpoint applies the checkpoint ck, on line n with seq seq, whose host
// signature verified, to the segment.
func (v *verifier) checkpoint(n int, seq uint64, ck *Checkpoint) {
	switch ck.Event {
	case EventClose:
		v.needOpen, v.needOpenLine = true, n
		v.needOpenWhy = fmt.Sprintf("written after the log was closed (line %d) and before netauthd opened it again: netauthd did not write it", n)
	case EventOpen:
		v.needOpen = false
	case EventContinue:
		// Its head is the last line of the file before (which
		// Report.Continues compares); it covers nothing in this one.
		v.report.Follows = &Link{Seq: ck.Seq, Hash: ck.Head}
		return
	}
	s := ck.Seq
	if s < v.segSeq {
		// Its head is before a break in the chain, reported there.
		return
	}
	e := v.at(s)
	head, err := hex.DecodeString(ck.Head)
	if e.seq == s && err == nil && bytes.Equal(head, e.hash[:]) {
		if s > v.done {
			if ck.From > v.done+1 {
				v.uncovered(min(ck.From-1, s), false, n)
			}
			v.cover(s, seq)
		}
		return
	}
	ls := v.lineOf(s)
	if s <= v.done {
		v.hold(n, seq, []string{fmt.Sprintf("its head is not line %d (seq %d), which the host signed as it is: a checkpoint of another log?", ls, s)})
		return
	}
	v.breakRange(s, ls, fmt.Sprintf("not the line the host signed: its hash is not the head the checkpoint on line %d signed for seq %d: changed or replaced", n, s),
		fmt.Sprintf("no host signature covers this record: the checkpoint on line %d does not match line %d (see there)", n, ls))
	v.breakRange(seq-1, 0, "", fmt.Sprintf("no host signature covers this record: it follows line %d, which the checkpoint on line %d does not match (see there)", ls, n))
	// The checkpoint line starts a segment of its own.
	v.segLine, v.segSeq, v.done, v.oldTo, v.old = n, seq, seq-1, seq-1, lineSum{}
}

// breakSegment resolves every pending line of the segment as bad, the chain
// breaking after them: the last record among them gets reason last, the
// others reason others. It ends the segment, and reports whether it blamed a
// record.
func (v *verifier) breakSegment(last, others string) bool {
	blamed := false
	if v.anchorSeq > v.done {
		blamed = v.breakRange(v.anchorSeq, 0, last, others)
	}
	v.inSeg = false
	return blamed
}

// breakRange resolves the pending lines up to seq upTo as bad. The line
// numbered blame, or if it is 0 the last record of the range, gets reason
// last; the other records get reason others (checkpoint lines, whose content
// is signed, only their own problems, if any). It reports whether a line got
// reason last.
func (v *verifier) breakRange(upTo uint64, blame int, last, others string) bool {
	if upTo <= v.done {
		return false
	}
	first := v.done + 1
	if blame == 0 && last != "" {
		for s := upTo; s > v.oldTo && s >= first; s-- {
			if v.at(s).kind != kindCheckpoint {
				blame = v.lineOf(s)
				break
			}
		}
		if blame == 0 && v.oldTo >= first {
			blame = v.lineOf(v.oldTo) // a line of old: the records there are not told apart
		}
	}
	seqs(first, upTo, func(s uint64) bool {
		n := v.lineOf(s)
		var reasons []string
		inOld := s <= v.oldTo
		switch {
		case n == blame:
			reasons = append(reasons, last)
		case inOld || v.at(s).kind != kindCheckpoint:
			reasons = append(reasons, others)
		}
		var held string
		if len(v.pend) > 0 && v.pend[0].Line == n {
			held = v.pend[0].Reason
			v.pend = v.pend[1:]
		} else if !inOld && v.at(s).flagged {
			held = "-" // a problem of its own, not kept (the list is full)
		}
		if len(reasons) == 0 && held == "" {
			return true
		}
		switch held {
		case "":
		case "-":
			if len(reasons) == 0 {
				reasons = append(reasons, "bad (its reasons are not listed: too many)")
			}
		default:
			reasons = append(reasons, held)
		}
		reason := strings.Join(reasons, "; ")
		v.problem(n, s, reason)
		if v.find != nil && v.find.found && !v.find.done && v.find.line == n {
			v.find.done, v.find.err = true, reason
		}
		if len(v.report.Problems) >= MaxProblems && s != upTo {
			// Nothing more can be listed: count the rest.
			v.countBad(s+1, upTo, blame)
			for len(v.pend) > 0 && v.pend[0].Line <= v.lineOf(upTo) {
				v.pend = v.pend[1:]
			}
			return false
		}
		return true
	})
	if inFind := v.find; inFind != nil && inFind.found && !inFind.done && inFind.line >= v.lineOf(first) && inFind.line <= v.lineOf(upTo) {
		inFind.done, inFind.err = true, "no host signature covers it: the chain breaks after it"
	}
	v.done = upTo
	if v.oldTo < upTo {
		v.oldTo = upTo
	}
	v.old = lineSum{}
	return blame != 0 && last != ""
}

// countBad counts, without listing them, the bad lines breakRange would
// have reported among the pending lines from seq first to upTo.
func (v *verifier) countBad(first, upTo uint64, blame int) {
	seqs(first, upTo, func(s uint64) bool {
		if s <= v.oldTo || v.at(s).kind != kindCheckpoint || v.at(s).flagged || v.lineOf(s) == blame {
			v.report.Bad++
		}
		return true
	})
}

// uncovered resolves the pending lines up to seq upTo as intact but not
// covered by a host signature: at the end of the file, or sealed by the
// checkpoint on line sealedBy. With RequireSigned they are bad instead.
func (v *verifier) uncovered(upTo uint64, atEnd bool, sealedBy int) {
	// Checkpoint lines before the first record are not part of the run:
	// their content is signed.
	for v.done < upTo && v.done >= v.oldTo && v.at(v.done+1).kind == kindCheckpoint {
		v.cover(v.done+1, 0)
	}
	if upTo <= v.done {
		return
	}
	run := Uncovered{FirstLine: v.lineOf(v.done + 1), LastLine: v.lineOf(upTo), FirstSeq: v.done + 1, LastSeq: upTo, AtEnd: atEnd}
	if !atEnd {
		run.SealedBy = sealedBy
	}
	run.Records = v.old.records()
	seqs(max(v.done, v.oldTo)+1, upTo, func(s uint64) bool {
		if v.at(s).kind != kindCheckpoint {
			run.Records++
		}
		return true
	})
	if run.Records == 0 {
		// Checkpoint lines only, whose content is signed.
		v.cover(upTo, 0)
		return
	}
	reason := run.reason()
	if v.requireSigned {
		v.breakRange(upTo, 0, "", reason)
		return
	}
	if f := v.find; f != nil && f.found && !f.done && f.line >= run.FirstLine && f.line <= run.LastLine {
		f.done, f.err = true, reason
	}
	v.report.Uncovered += run.Records
	if len(v.report.UncoveredRuns) < MaxProblems {
		v.report.UncoveredRuns = append(v.report.UncoveredRuns, run)
	}
	v.cover(upTo, 0)
}

// cover resolves the pending lines up to seq upTo as good: counted, with the
// problems of their own they have. byCheckpoint is the seq of the checkpoint
// line that covers them, if one does.
func (v *verifier) cover(upTo, byCheckpoint uint64) {
	if upTo <= v.done {
		return
	}
	t := v.old
	seqs(max(v.done, v.oldTo)+1, upTo, func(s uint64) bool {
		t.add(v.at(s))
		return true
	})
	r := &v.report
	r.Full += t.full
	r.Resumed += t.resumed
	r.Refused += t.refused
	r.Summaries += t.summaries
	if r.Summarized += t.summarized; r.Summarized < t.summarized {
		r.Summarized = math.MaxUint64
	}
	if t.lastSeq != 0 {
		r.LastSeq, r.LastTime = t.lastSeq, t.lastTime
	}
	r.Bad += t.flagged
	last := v.lineOf(upTo)
	for len(v.pend) > 0 && v.pend[0].Line <= last {
		if len(r.Problems) < MaxProblems {
			r.Problems = append(r.Problems, v.pend[0])
		}
		v.pend = v.pend[1:]
	}
	if f := v.find; f != nil && f.found && !f.done && f.line >= v.lineOf(v.done+1) && f.line <= last {
		f.done, f.coveredBy = true, byCheckpoint
	}
	v.done, v.old = upTo, lineSum{}
	if v.oldTo < upTo {
		v.oldTo = upTo
	}
}

// finish resolves what is still pending at the end of the file.
func (v *verifier) finish() {
	if v.inSeg {
		v.uncovered(v.anchorSeq, true, 0)
	}
	v.report.Closed = v.lastClose
	if v.haveAnchor && v.badSince == 0 && v.anchorLine == v.report.Lines {
		v.report.End = &Link{Seq: v.anchorSeq, Hash: hex.EncodeToString(v.anchorHash[:])}
	}
	if v.requireSigned && v.report.Checkpoints > 0 && !v.lastClose {
		v.notClosed()
	}
	if f := v.find; f != nil && f.found && !f.done {
		f.done = true
	}
}

// notClosed reports that a log known to be closed (RequireSigned), written
// with checkpoints, does not end with a closing checkpoint: records may have
// been cut from its end together with it, which would leave no other trace.
// The last line gets the problem, added to one it already has.
func (v *verifier) notClosed() {
	const why = "the log does not end with the closing checkpoint netauthd writes when it closes or rotates a file: records may have been cut from its end"
	r := &v.report
	if k := len(r.Problems); k > 0 && r.Problems[k-1].Line == r.Lines {
		r.Problems[k-1].Reason = cutReason(r.Problems[k-1].Reason + "; " + why)
		return
	}
	if len(r.Problems) >= MaxProblems {
		// Bad already: whether the last line is among the lines counted is
		// not known.
		return
	}
	var seq uint64
	if v.haveAnchor && v.badSince == 0 && v.anchorLine == r.Lines {
		seq = v.anchorSeq
	}
	v.problem(r.Lines, seq, why)
}

// target notes line n, with sequence number seq, for Find.
func (v *verifier) target(n int, seq uint64, p *parsed, data []byte, bad string) {
	f := v.find
	if f == nil || f.found || seq != f.seq {
		return
	}
	f.found, f.line = true, n
	if p != nil {
		f.rec, f.raw = p.rec, bytes.Clone(data)
	}
	if bad != "" {
		f.done, f.err = true, bad
	} else if p != nil && p.kind == lineCheckpoint {
		// Its content carries its own host signature.
		f.done = true
	}
}

// problem reports line n (with sequence number seq, 0 if unknown) as bad for
// reason: counted, and listed if fewer than MaxProblems are.
func (v *verifier) problem(n int, seq uint64, reason string) {
	v.report.Bad++
	if len(v.report.Problems) < MaxProblems {
		v.report.Problems = append(v.report.Problems, Problem{Line: n, Seq: seq, Reason: cutReason(Printable(reason))})
	}
}

// chain checks that the line p follows the last good line (the anchor).
// It returns "" if it does, else why not. Lines in between whose own content
// is bad (v.badSince of them) may have been records: the sequence may then
// advance by up to that many more, and the hash chain can be checked only if
// it did not advance further than 1. The first line of a file has prev 64
// zeros, or, a continuing checkpoint, the hash of the last line of the file
// before (which its host signature covers).
func (v *verifier) chain(p *parsed) string {
	rec := p.rec
	wantSeq, wantPrev, after := uint64(1), zeroPrev, "the start of the file"
	if p.kind == lineCheckpoint && p.ck.Event == EventContinue {
		wantPrev = p.ck.Head
	}
	if v.haveAnchor {
		wantSeq, wantPrev = v.anchorSeq+1, hex.EncodeToString(v.anchorHash[:])
		after = fmt.Sprintf("seq %d (line %d)", v.anchorSeq, v.anchorLine)
	}
	slack := uint64(v.badSince)
	switch {
	case rec.Seq < wantSeq:
		return fmt.Sprintf("seq %d comes after %s: records out of order or repeated", rec.Seq, after)
	case rec.Seq > wantSeq+slack:
		return fmt.Sprintf("seq %d comes after %s: records missing or out of order", rec.Seq, after)
	case rec.Seq == wantSeq && rec.Prev != wantPrev:
		if !v.haveAnchor {
			return "the first record's prev is not 64 zeros"
		}
		return fmt.Sprintf("prev does not match the hash of %s: that line or this one was replaced", after)
	}
	return ""
}
