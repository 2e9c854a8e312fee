// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
)

// zeroPrev is the Prev of the first record of a file.
var zeroPrev = strings.Repeat("0", 2*sha256.Size)

// hostSigField starts the last field of every line.
const hostSigField = `"host_sig":"`

// Problem is one bad line found by Verify.
type Problem struct {
	// Line is the line number in the file, counting from 1.
	Line int
	// Seq is the line's sequence number, or 0 if the line could not be read
	// as a record.
	Seq uint64
	// Reason says what is wrong; several reasons are joined with "; ". It
	// holds only printable characters (others are escaped) and is at most
	// 1 KiB long.
	Reason string
}

// String formats p as "line 17 (seq 17): reason", leaving out the sequence
// number when it is unknown.
func (p Problem) String() string {
	if p.Seq == 0 {
		return fmt.Sprintf("line %d: %s", p.Line, p.Reason)
	}
	return fmt.Sprintf("line %d (seq %d): %s", p.Line, p.Seq, p.Reason)
}

// Report is the result of Verify.
type Report struct {
	// Records is the number of lines read, good or bad.
	Records int
	// Full, Resumed and Refused count the records whose host signature
	// verifies: accepted full handshakes, accepted resumed connections, and
	// refusals logged one by one.
	Full, Resumed, Refused int
	// Summaries counts the summary records whose host signature verifies,
	// and Summarized the refusals they count.
	Summaries  int
	Summarized uint64
	// LastSeq and LastTime are the sequence number and time of the last
	// record whose host signature verifies. Compare LastSeq with a value
	// noted earlier to find records cut from the end of the log, which
	// leaves no other trace.
	LastSeq  uint64
	LastTime time.Time
	// Bad is the number of bad lines, and Problems lists the first
	// MaxProblems of them, in file order, one entry per line.
	Bad      int
	Problems []Problem
}

// OK reports whether every record verified.
func (r *Report) OK() bool { return r.Bad == 0 }

// MaxProblems is how many bad lines a Report lists; the others are only
// counted (Report.Bad). A problem's reason is at most maxProblemReason
// bytes. However long and damaged a log, Verify holds a bounded number of
// problems: a log of many short bad lines once made it hold some 70 bytes
// of memory for each byte of the file.
const MaxProblems = 1000

// maxProblemReason bounds the length of Problem.Reason, which can quote
// bytes of the line (a namespace or key type inside a signature).
const maxProblemReason = 1024

// DefaultMaxClockSkew is the default of VerifyOptions.MaxClockSkew: the clock
// skew netauthd allows by default (its max-clock-skew setting).
const DefaultMaxClockSkew = 5 * time.Minute

// DecisionDelay is how long after the skew allowed a record of a full
// handshake may be logged: a server checks the statement's time against its
// clock before it looks up the user's keys and account, and logs the
// decision after.
const DecisionDelay = time.Minute

// VerifyOptions configure VerifyWith.
type VerifyOptions struct {
	// MaxClockSkew is the clock skew the server allowed between its clock
	// and the time in a user's statement (DefaultMaxClockSkew if zero):
	// the record of an accepted full handshake must be logged no earlier
	// than MaxClockSkew before the statement's time, and no later than
	// MaxClockSkew plus DecisionDelay after it.
	MaxClockSkew time.Duration

	// Handshakes, if not nil, holds the accepted full handshakes of the
	// logs verified before with it, and receives those of this one: a
	// handshake logged in one of them and again in this log is reported.
	// Verify the files of a rotated log with one Handshakes, oldest first,
	// to find a user's signature logged again in another file.
	Handshakes *Handshakes
	// Name names this log in the problems that later logs verified with
	// the same Handshakes report (its file name).
	Name string
}

// Handshakes remembers the accepted full handshakes of the logs verified with
// it (see VerifyOptions): about a hundred bytes for each. The zero value is
// ready to use. It is not safe for concurrent use.
type Handshakes struct {
	m    map[[keys.HandshakeHashSize]byte]seen
	logs int // number of logs verified with it
}

// Verify is VerifyWith with the default options.
func Verify(r io.Reader, hostKey ssh.PublicKey) (*Report, error) {
	return VerifyWith(r, hostKey, VerifyOptions{})
}

// VerifyWith reads an audit log from r and checks every line: that it is a
// well-formed record no longer than MaxLineSize, ends in a newline, carries
// a host signature by hostKey over its canonical bytes, and continues the
// sequence and hash chain of the record before it; and, for accepted full
// handshakes, that the user's signature verifies over the statement in
// UserNamespace, that the statement's user, service and host key and the
// signing key match the record, that the statement was made for hostKey (a
// statement a user signed for another server proves nothing about this
// one), that the record was logged within the clock skew of the statement's
// time (see VerifyOptions), and that no other record carries the same
// handshake hash, which a user signature logged twice would. It does not
// stop at the first bad line: the report counts each one and lists the
// first MaxProblems.
//
// VerifyWith keeps the handshake hash of every accepted full handshake in
// memory (in opts.Handshakes if set): about a hundred bytes for each.
//
// A line whose own content is bad (unreadable, or its host signature fails)
// is reported alone: the break it causes in the chain at the next line is
// attributed to it, not reported again. A line that is authentic but does
// not follow the last authentic record before it (a record removed,
// inserted from elsewhere or moved) is reported as a chain break.
//
// The error is non-nil only if reading r fails or hostKey is nil.
func VerifyWith(r io.Reader, hostKey ssh.PublicKey, opts VerifyOptions) (*Report, error) {
	if hostKey == nil {
		return nil, errors.New("audit: verifying needs the host's public key")
	}
	if opts.MaxClockSkew < 0 {
		return nil, fmt.Errorf("audit: negative clock skew %v", opts.MaxClockSkew)
	}
	if opts.MaxClockSkew == 0 {
		opts.MaxClockSkew = DefaultMaxClockSkew
	}
	hs := opts.Handshakes
	if hs == nil {
		hs = &Handshakes{}
	}
	if hs.m == nil {
		hs.m = make(map[[keys.HandshakeHashSize]byte]seen)
	}
	hs.logs++
	v := verifier{hostKey: hostKey.Marshal(), hostFP: keys.Fingerprint(hostKey), skew: opts.MaxClockSkew,
		handshakes: hs, log: hs.logs, name: opts.Name}
	lr := newLineReader(r)
	for {
		line, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("audit: reading line %d: %w", lr.n+1, err)
		}
		v.check(lr.n, line)
	}
	return &v.report, nil
}

// verifier holds the state of Verify between lines.
type verifier struct {
	hostKey []byte
	hostFP  string
	skew    time.Duration
	report  Report

	// handshakes maps the handshake hash of each accepted full handshake
	// seen so far, in this log or in those verified before with the same
	// Handshakes, to where it was seen. A user signature verifies over one
	// statement only, which names the handshake hash: a signature logged
	// twice is a handshake hash logged twice, so this map finds both. log
	// numbers this log among those, and name names it.
	handshakes *Handshakes
	log        int
	name       string

	// anchor is the last line whose own content is authentic, and badSince
	// the number of lines after it whose content is not.
	haveAnchor bool
	anchorLine int
	anchorSeq  uint64
	anchorHash string
	badSince   int
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

// check checks one line and updates the report.
func (v *verifier) check(n int, l line) {
	v.report.Records++
	var reasons []string
	if !l.complete {
		reasons = append(reasons, "incomplete line (no newline at the end of the file): the log was cut or a write was interrupted")
	}
	rec, err := v.authenticate(l)
	if err != nil {
		reasons = append(reasons, err.Error())
		var seq uint64
		if rec != nil {
			seq = rec.Seq
		}
		v.problem(n, seq, reasons)
		v.badSince++
		return
	}
	v.count(rec)
	if r := v.chain(rec); r != "" {
		reasons = append(reasons, r)
	}
	hash := sha256.Sum256(l.data)
	v.haveAnchor, v.anchorLine, v.anchorSeq, v.anchorHash, v.badSince = true, n, rec.Seq, hex.EncodeToString(hash[:]), 0
	v.report.LastSeq, v.report.LastTime = rec.Seq, rec.Time
	reasons = append(reasons, v.checkContent(n, rec)...)
	if len(reasons) > 0 {
		v.problem(n, rec.Seq, reasons)
	}
}

// problem reports line n (with sequence number seq, 0 if unknown) as bad for
// reasons: counted, and listed if fewer than MaxProblems are.
func (v *verifier) problem(n int, seq uint64, reasons []string) {
	v.report.Bad++
	if len(v.report.Problems) < MaxProblems {
		v.report.Problems = append(v.report.Problems, Problem{Line: n, Seq: seq, Reason: cutReason(Printable(strings.Join(reasons, "; ")))})
	}
}

// Printable returns s with every character that is not printable (a control character, DEL,
// a bidirectional override, invalid UTF-8) escaped as Go would quote it: a reason can quote
// bytes of a crafted line, and `netauth audit verify` and `export` print to a terminal.
func Printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !strconv.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// cutReason returns s cut to at most maxProblemReason bytes, at a character
// boundary, ending in "..." if it was cut.
func cutReason(s string) string {
	if len(s) <= maxProblemReason {
		return s
	}
	cut := maxProblemReason - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// authenticate parses a line and checks its host signature. It returns the
// record if the line parsed, even when the signature fails.
func (v *verifier) authenticate(l line) (*Record, error) {
	if l.tooLong {
		return nil, fmt.Errorf("line is longer than %d bytes", MaxLineSize)
	}
	if len(l.data) == 0 {
		return nil, errors.New("empty line")
	}
	return parseLine(l.data, v.hostKey, v.hostFP)
}

// parseLine parses one line of the log (without its newline) and checks its
// host signature against the host key hostKey (in wire format) whose
// fingerprint is hostFP. It returns the record if the line parsed, even when
// the signature fails.
func parseLine(data, hostKey []byte, hostFP string) (*Record, error) {
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("not a JSON record: %v", err)
	}
	canonical, sig, err := splitHostSig(data)
	if err != nil {
		return &rec, err
	}
	blob, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil {
		return &rec, fmt.Errorf("host signature is not base64: %v", err)
	}
	signer, err := keys.Verify(blob, Namespace, canonical)
	if err != nil {
		return &rec, fmt.Errorf("host signature does not verify: %v", err)
	}
	if !bytes.Equal(signer.Marshal(), hostKey) {
		return &rec, fmt.Errorf("host signature does not verify: it is by key %s, not by the host key %s", keys.Fingerprint(signer), hostFP)
	}
	if rec.Seq == 0 {
		return &rec, errors.New("seq is 0")
	}
	return &rec, nil
}

// splitHostSig returns the canonical bytes of a line (the line with the
// value of its last field, "host_sig", emptied) and that value.
func splitHostSig(data []byte) (canonical []byte, sig string, err error) {
	rest, ok := bytes.CutSuffix(data, []byte(`"}`))
	i := bytes.LastIndex(rest, []byte(hostSigField))
	if !ok || i < 0 {
		return nil, "", errors.New(`the line does not end with the "host_sig" field`)
	}
	value := rest[i+len(hostSigField):]
	if len(value) == 0 {
		return nil, "", errors.New("no host signature")
	}
	for _, c := range value {
		if !base64Char(c) {
			return nil, "", errors.New("host signature is not base64")
		}
	}
	canonical = make([]byte, 0, i+len(hostSigField)+2)
	canonical = append(canonical, data[:i+len(hostSigField)]...)
	canonical = append(canonical, `"}`...)
	return canonical, string(value), nil
}

func base64Char(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '='
}

// count adds an authentic record to the report's totals.
func (v *verifier) count(rec *Record) {
	switch {
	case rec.Decision == Refused && rec.Summary != nil:
		v.report.Summaries++
		for _, c := range rec.Summary.Counts {
			if v.report.Summarized += c; v.report.Summarized < c {
				v.report.Summarized = math.MaxUint64
			}
		}
	case rec.Decision == Refused:
		v.report.Refused++
	case rec.Decision == Accepted && rec.Mode == ModeFull:
		v.report.Full++
	case rec.Decision == Accepted && rec.Mode == ModeResumed:
		v.report.Resumed++
	}
}

// chain checks that an authentic record follows the last authentic one
// (the anchor). It returns "" if it does, else why not. Lines in between
// whose own content is bad (v.badSince of them) may have been records: the
// sequence may then advance by up to that many more, and the hash chain
// can be checked only if it did not advance further than 1.
func (v *verifier) chain(rec *Record) string {
	wantSeq, wantPrev, after := uint64(1), zeroPrev, "the start of the file"
	if v.haveAnchor {
		wantSeq, wantPrev = v.anchorSeq+1, v.anchorHash
		after = fmt.Sprintf("seq %d (line %d)", v.anchorSeq, v.anchorLine)
	}
	slack := uint64(v.badSince)
	switch {
	case rec.Seq < wantSeq:
		return fmt.Sprintf("chain broken: seq %d comes after %s: records out of order or repeated", rec.Seq, after)
	case rec.Seq > wantSeq+slack:
		return fmt.Sprintf("chain broken: seq %d comes after %s: records missing or out of order", rec.Seq, after)
	case rec.Seq == wantSeq && rec.Prev != wantPrev:
		if !v.haveAnchor {
			return "chain broken: the first record's prev is not 64 zeros"
		}
		return fmt.Sprintf("chain broken: prev does not match the hash of %s: that record or this one was replaced", after)
	}
	return ""
}

// checkContent checks what an authentic record, on line n, says: known mode
// and decision, and for accepted full handshakes the user's signature, its
// agreement with the record and with the log's host key, the record's time
// against the statement's, and that its handshake was not logged before.
func (v *verifier) checkContent(n int, rec *Record) []string {
	var reasons []string
	if err := rec.check(); err != nil {
		reasons = append(reasons, err.Error())
	}
	if rec.Mode != ModeFull || rec.Decision != Accepted {
		return reasons
	}
	if rec.Statement == "" || rec.Signature == "" {
		return append(reasons, "accepted full handshake without the user's statement and signature")
	}
	blob, err := keys.Unarmor([]byte(rec.Signature))
	if err != nil {
		return append(reasons, "user signature: "+err.Error())
	}
	userKey, err := keys.Verify(blob, UserNamespace, []byte(rec.Statement))
	if err != nil {
		return append(reasons, "user signature does not verify: "+err.Error())
	}
	st, err := keys.ParseStatement([]byte(rec.Statement))
	if err != nil {
		return append(reasons, "statement: "+err.Error())
	}
	if st.User != rec.User {
		reasons = append(reasons, fmt.Sprintf("the statement is for user %q, the record says %q", st.User, rec.User))
	}
	if st.Service != rec.Service {
		reasons = append(reasons, fmt.Sprintf("the statement is for service %q, the record says %q", st.Service, rec.Service))
	}
	if fp := keys.Fingerprint(st.HostKey); fp != rec.HostKeyFP {
		reasons = append(reasons, fmt.Sprintf("the statement names host key %s, the record says %s", fp, rec.HostKeyFP))
	} else if fp != v.hostFP {
		reasons = append(reasons, fmt.Sprintf("the statement is for host key %s, not for this log's host key %s", fp, v.hostFP))
	}
	if fp := keys.Fingerprint(userKey); fp != rec.KeyFP {
		reasons = append(reasons, fmt.Sprintf("the signature is by key %s, the record says %s", fp, rec.KeyFP))
	}
	if userKey.Type() != rec.KeyType {
		reasons = append(reasons, fmt.Sprintf("the signature is by a %s key, the record says %s", userKey.Type(), rec.KeyType))
	}
	// Compared as times, not as a Duration, which saturates.
	switch {
	case rec.Time.Before(st.Time.Add(-v.skew)):
		reasons = append(reasons, fmt.Sprintf("logged at %s, more than the clock skew allowed (%v) before the statement's time %s",
			rec.Time.UTC().Format(time.RFC3339), v.skew, st.Time.UTC().Format(time.RFC3339)))
	case rec.Time.After(st.Time.Add(v.skew + DecisionDelay)):
		reasons = append(reasons, fmt.Sprintf("logged at %s, more than the clock skew allowed (%v) and %v after the statement's time %s: the signature may have been logged again later",
			rec.Time.UTC().Format(time.RFC3339), v.skew, DecisionDelay, st.Time.UTC().Format(time.RFC3339)))
	}
	var hh [keys.HandshakeHashSize]byte
	copy(hh[:], st.HandshakeHash)
	sig := sha256.Sum256(blob)
	if first, ok := v.handshakes.m[hh]; ok {
		what := "another user signature over it: the handshake was logged again"
		if first.sig == sig {
			what = "the same user signature: the signature was logged again"
		}
		where := ""
		if first.log != v.log {
			name := first.name
			if name == "" {
				name = fmt.Sprintf("log %d", first.log)
			}
			where = fmt.Sprintf(" in %q", name)
		}
		reasons = append(reasons, fmt.Sprintf("handshake hash already logged%s on line %d (seq %d), with %s", where, first.line, first.seq, what))
	} else {
		v.handshakes.m[hh] = seen{log: v.log, name: v.name, line: n, seq: rec.Seq, sig: sig}
	}
	return reasons
}

// line is one line read by a lineReader, without its newline.
type line struct {
	data     []byte // nil if tooLong
	complete bool   // ended in a newline
	tooLong  bool   // longer than MaxLineSize; data was discarded
}

// lineReader reads lines of at most MaxLineSize bytes, discarding the rest
// of longer ones.
type lineReader struct {
	br  *bufio.Reader
	buf []byte
	n   int // number of the last line returned
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line, or io.EOF after the last one. The line's data
// is valid until the next call.
func (lr *lineReader) next() (line, error) {
	lr.buf = lr.buf[:0]
	var l line
	for {
		chunk, err := lr.br.ReadSlice('\n')
		if !l.tooLong {
			if len(lr.buf)+len(chunk) > MaxLineSize+1 {
				l.tooLong = true
				lr.buf = lr.buf[:0]
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		switch {
		case err == nil:
			l.complete = true
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			if len(lr.buf) == 0 && !l.tooLong {
				return line{}, io.EOF
			}
		default:
			return line{}, err
		}
		break
	}
	lr.n++
	if !l.tooLong {
		l.data = bytes.TrimSuffix(lr.buf, []byte("\n"))
		if len(l.data) > MaxLineSize {
			l.tooLong, l.data = true, nil
		}
	}
	return l, nil
}
