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
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
)

// zeroPrev is the Prev of the first line of a file.
var zeroPrev = strings.Repeat("0", 2*sha256.Size)

// hostSigField starts the last field of every line signed alone (the format
// before checkpoints).
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

// Uncovered is a run of records, one after the other, that Verify found
// intact (the chain holds) but that no host signature covers: not evidence of
// tampering, but not evidence of the host's hand either, since anyone who can
// write the file could have added or changed them.
type Uncovered struct {
	// FirstLine and LastLine are the line numbers of the run's first and
	// last lines, FirstSeq and LastSeq their sequence numbers.
	FirstLine, LastLine int
	FirstSeq, LastSeq   uint64
	// Records is the number of records in the run (checkpoint lines among
	// them are not counted).
	Records int
	// AtEnd is set for a run that ends the file: the log is still being
	// written (netauthd covers each record within CheckpointInterval), or
	// netauthd stopped before it signed them. A run that is not at the end
	// was sealed by the opening checkpoint of a later start of netauthd
	// (SealedBy): they cannot have been changed since, but nothing vouches
	// that netauthd wrote them.
	AtEnd bool
	// SealedBy is the line number of the checkpoint that sealed a run that
	// is not at the end.
	SealedBy int
}

// String describes the run, as "lines 9-12 (seq 9-12): 4 records not yet
// covered by a host signature: ...".
func (u Uncovered) String() string {
	where := fmt.Sprintf("line %d (seq %d)", u.FirstLine, u.FirstSeq)
	if u.LastLine != u.FirstLine {
		where = fmt.Sprintf("lines %d-%d (seq %d-%d)", u.FirstLine, u.LastLine, u.FirstSeq, u.LastSeq)
	}
	what := "1 record"
	if u.Records != 1 {
		what = fmt.Sprintf("%d records", u.Records)
	}
	return fmt.Sprintf("%s: %s %s", where, what, u.reason())
}

// reason says why the records of the run are not covered.
func (u Uncovered) reason() string {
	if u.AtEnd {
		return "not yet covered by a host signature: the log is still being written (netauthd covers each record within a few seconds at most), or netauthd stopped before it signed them"
	}
	return fmt.Sprintf("not covered by a host signature: written before netauthd opened the log again (line %d), which sealed them as it found them, and not signed: netauthd stopped before it signed them (a crash?), or something else wrote them", u.SealedBy)
}

// Report is the result of Verify.
type Report struct {
	// Lines is the number of lines read, good or bad: Records of them are
	// records, and Checkpoints checkpoint lines (whether or not they
	// verify).
	Lines, Records, Checkpoints int
	// Full, Resumed and Refused count the records found good (intact, and
	// covered by a host signature or in Uncovered): accepted full
	// handshakes, accepted resumed connections, and refusals logged one by
	// one.
	Full, Resumed, Refused int
	// Summaries counts the summary records found good, and Summarized the
	// refusals they count.
	Summaries  int
	Summarized uint64
	// LastSeq and LastTime are the sequence number and time of the last
	// record found good. Compare LastSeq with a value noted earlier to find
	// records cut from the end of the log, which leaves no other trace.
	LastSeq  uint64
	LastTime time.Time
	// Uncovered is the number of records found intact that no host
	// signature covers (see Uncovered), and UncoveredRuns lists the first
	// MaxProblems runs of them. With VerifyOptions.RequireSigned they are
	// bad lines instead.
	Uncovered     int
	UncoveredRuns []Uncovered
	// Closed reports that the file ends with the checkpoint a Writer writes
	// when it closes the file (Close, or Reopen after a rotation).
	Closed bool
	// Follows is, for a file whose first line is a continuing checkpoint
	// (EventContinue) that verifies, the last line of the file rotated away
	// before it, as that checkpoint names it; nil for a file that starts a
	// chain of its own. End is the file's last line, if it is good.
	// Report.Continues compares them.
	Follows, End *Link
	// Bad is the number of bad lines, and Problems lists the first
	// MaxProblems of them, in file order, one entry per line.
	Bad      int
	Problems []Problem
}

// Link names a line of a log by its sequence number and the hex SHA-256 of
// its bytes (without the newline).
type Link struct {
	Seq  uint64
	Hash string
}

// Continues checks that the file r reports on continues the chain of the
// file prev reports on, as the next file of a rotated log does: its first
// line names prev's last line. others, if not nil, are the reports of the
// other files given, by name, to say which one r follows instead. The error
// says what is wrong: a file missing between them, prev cut at its end, the
// files out of order, or r starting a chain of its own (netauthd started
// on an empty file, not a rotation: an ErrNewChain).
func (r *Report) Continues(prev *Report, others map[string]*Report) error {
	switch {
	case prev.Follows != nil && r.End != nil && *prev.Follows == *r.End:
		return errors.New("the file given before it continues this one: the files are out of order")
	case r.Follows == nil:
		return ErrNewChain
	case prev.End == nil:
		return fmt.Errorf("cannot check that it follows the file before it, whose last line is bad (see there)")
	case *r.Follows == *prev.End:
		return nil
	}
	for name, o := range others {
		if o != prev && o != r && o.End != nil && *o.End == *r.Follows {
			return fmt.Errorf("its first line continues %s (seq %d), not the file given before it: the files are out of order", Printable(name), r.Follows.Seq)
		}
	}
	if r.Follows.Seq > prev.End.Seq {
		return fmt.Errorf("its first line continues a file whose last line is seq %d, but the file before it ends at seq %d: that file was cut at its end (%d lines missing), or a file is missing between them",
			r.Follows.Seq, prev.End.Seq, r.Follows.Seq-prev.End.Seq)
	}
	return fmt.Errorf("its first line continues a file whose last line is seq %d (SHA-256 %s), but the file before it ends at seq %d (SHA-256 %s): a file is missing between them, or they are out of order",
		r.Follows.Seq, r.Follows.Hash, prev.End.Seq, prev.End.Hash)
}

// ErrNewChain is what Report.Continues returns for a file that starts a chain
// of its own rather than continuing the file before it: netauthd was started
// on an empty file (rotated while netauthd was stopped, or netauthd
// restarted), so whether a file is missing before it cannot be told.
var ErrNewChain = errors.New("it starts a chain of its own (netauthd was started on an empty file, not rotated): whether a file is missing before it cannot be checked")

// OK reports whether no line was found bad: every record is intact, and
// covered by a host signature or listed in UncoveredRuns.
func (r *Report) OK() bool { return r.Bad == 0 }

// Signed reports whether every record verified and is covered by a host
// signature: OK, and nothing Uncovered.
func (r *Report) Signed() bool { return r.Bad == 0 && r.Uncovered == 0 }

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

	// RequireSigned makes records that no host signature covers bad lines
	// rather than Report.Uncovered: for a log known to be closed, such as
	// a file rotated away, whose records must all be covered. A log with
	// checkpoints must then also end with a closing checkpoint (its last
	// line is bad otherwise): records cut from its end with that
	// checkpoint would leave no other trace.
	RequireSigned bool

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
// well-formed record or checkpoint no longer than MaxLineSize and ends in a
// newline; that it continues the sequence and hash chain of the line before
// it; that every checkpoint carries a host signature by hostKey and that the
// chain head it names is the line it signed, and so every line it covers;
// that every record is covered by a later checkpoint (or, in the format
// before checkpoints, carries its own host signature); and, for accepted full
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
// Records after the last checkpoint, and records a Writer had not covered
// when it stopped, are reported apart, in Report.Uncovered, unless
// opts.RequireSigned makes them bad lines.
//
// VerifyWith keeps the handshake hash of every accepted full handshake in
// memory (in opts.Handshakes if set): about a hundred bytes for each, and
// the hashes of the last MaxCheckpointLag lines.
//
// A line whose own content is bad (unreadable, or a host signature that
// fails) is reported alone, and the records before it that no checkpoint
// covers yet with it: the break it causes in the chain at the next line is
// attributed to it, not reported again. Where the chain breaks between two
// readable lines (a record changed, removed, inserted or moved), the last
// record before the break is reported with the reason, and the other records
// before it that no checkpoint covers, since none can now; when no such
// record is left, the line after the break is reported.
//
// The error is non-nil only if reading r fails or hostKey is nil.
func VerifyWith(r io.Reader, hostKey ssh.PublicKey, opts VerifyOptions) (*Report, error) {
	v, err := newVerifier(hostKey, opts)
	if err != nil {
		return nil, err
	}
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
	v.finish()
	return &v.report, nil
}

// newVerifier returns a verifier of a log signed with hostKey.
func newVerifier(hostKey ssh.PublicKey, opts VerifyOptions) (*verifier, error) {
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
	return &verifier{hostKey: hostKey.Marshal(), hostFP: keys.Fingerprint(hostKey), skew: opts.MaxClockSkew,
		requireSigned: opts.RequireSigned, handshakes: hs, log: hs.logs, name: opts.Name,
		win: make([]entry, MaxCheckpointLag)}, nil
}

// Kinds of lines.
const (
	lineUnsigned   = iota // a record, covered by a checkpoint
	lineSigned            // a record with its own host signature (the format before checkpoints)
	lineCheckpoint        // a checkpoint
)

// parsed is a line parsed by parseLine.
type parsed struct {
	rec  *Record
	kind int
	ck   *Checkpoint // for a checkpoint
	// ckJSON and sig are, for a checkpoint, the bytes its host signature
	// covers and that signature (binary SSHSIG).
	ckJSON []byte
	sig    []byte
}

// checkpointFields are the fields of a checkpoint line.
type checkpointFields struct {
	Seq        uint64          `json:"seq"`
	Time       time.Time       `json:"time"`
	Checkpoint json.RawMessage `json:"checkpoint"`
	Prev       string          `json:"prev"`
	HostSig    string          `json:"host_sig"`
}

// parseLine parses one line of the log (without its newline), checks the
// host signature it carries, if any, against the host key hostKey (in wire
// format) whose fingerprint is hostFP, and checks a checkpoint's fields. It
// returns the line parsed if it parsed as JSON, even when something else is
// wrong with it.
func parseLine(data, hostKey []byte, hostFP string) (*parsed, error) {
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("not a JSON record: %v", err)
	}
	p := &parsed{rec: &rec}
	var raw struct {
		Checkpoint json.RawMessage `json:"checkpoint"`
		HostSig    *string         `json:"host_sig"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not a JSON record: %v", err)
	}
	switch {
	case raw.Checkpoint != nil:
		p.kind = lineCheckpoint
		return p, p.checkCheckpoint(data, raw.Checkpoint, hostKey, hostFP)
	case raw.HostSig != nil:
		p.kind = lineSigned
		canonical, sig, err := splitHostSig(data)
		if err != nil {
			return p, err
		}
		if err := verifyHostSig(sig, canonical, hostKey, hostFP); err != nil {
			return p, err
		}
	}
	if rec.Seq == 0 {
		return p, errors.New("seq is 0")
	}
	return p, nil
}

// checkCheckpoint checks the checkpoint line data, whose checkpoint is ckJSON.
func (p *parsed) checkCheckpoint(data, ckJSON, hostKey []byte, hostFP string) error {
	var cl checkpointFields
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&cl); err != nil {
		return fmt.Errorf("not a checkpoint line (seq, time, checkpoint, prev and host_sig only): %v", err)
	}
	var ck Checkpoint
	d = json.NewDecoder(bytes.NewReader(ckJSON))
	d.DisallowUnknownFields()
	if err := d.Decode(&ck); err != nil {
		return fmt.Errorf("checkpoint: %v", err)
	}
	p.ck, p.ckJSON = &ck, ckJSON
	if cl.HostSig == "" {
		return errors.New("checkpoint without a host signature")
	}
	if err := verifyHostSig(cl.HostSig, ckJSON, hostKey, hostFP); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	p.sig, _ = base64.StdEncoding.Strict().DecodeString(cl.HostSig)
	seq := p.rec.Seq
	switch {
	case seq == 0:
		return errors.New("seq is 0")
	case ck.Kind != CheckpointKind:
		return fmt.Errorf("checkpoint of kind %q, not %q", ck.Kind, CheckpointKind)
	case ck.HostKeyFP != hostFP:
		return fmt.Errorf("checkpoint names host key %s, not the host key %s", ck.HostKeyFP, hostFP)
	case len(ck.Head) != 2*sha256.Size || strings.ToLower(ck.Head) != ck.Head || !isHex(ck.Head):
		return errors.New("checkpoint head is not a hex SHA-256")
	case ck.Time.IsZero():
		return errors.New("checkpoint without a time")
	}
	if ck.Event == EventContinue {
		switch {
		case seq != 1:
			return fmt.Errorf("continuing checkpoint with seq %d: it must be the first line of its file", seq)
		case ck.Seq == 0:
			return errors.New("continuing checkpoint whose head seq is 0")
		case ck.From != ck.Seq+1:
			return errors.New("continuing checkpoint that vouches for lines")
		case p.rec.Prev != ck.Head:
			return errors.New("continuing checkpoint whose prev is not the head it signed")
		}
		return nil
	}
	switch {
	case ck.Seq == 0 || ck.Seq >= seq:
		return fmt.Errorf("checkpoint head seq %d is not a line before it", ck.Seq)
	case seq-ck.Seq >= MaxCheckpointLag:
		return fmt.Errorf("checkpoint head seq %d is %d lines or more before it", ck.Seq, MaxCheckpointLag)
	case ck.From == 0 || ck.From > ck.Seq+1:
		return fmt.Errorf("checkpoint vouches from seq %d, after its head seq %d", ck.From, ck.Seq)
	}
	switch ck.Event {
	case "":
	case EventOpen, EventClose:
		if ck.Seq != seq-1 {
			return fmt.Errorf("%s checkpoint whose head, seq %d, is not the line before it", ck.Event, ck.Seq)
		}
		if ck.Event == EventOpen && ck.From != ck.Seq+1 {
			return errors.New("open checkpoint that vouches for lines")
		}
	default:
		return fmt.Errorf("checkpoint event %q is not %q, %q or %q", ck.Event, EventOpen, EventClose, EventContinue)
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// verifyHostSig checks that sig, a base64 binary SSHSIG, is the host key's
// signature over message in Namespace.
func verifyHostSig(sig string, message, hostKey []byte, hostFP string) error {
	blob, err := base64.StdEncoding.Strict().DecodeString(sig)
	if err != nil {
		return fmt.Errorf("host signature is not base64: %v", err)
	}
	signer, err := keys.Verify(blob, Namespace, message)
	if err != nil {
		return fmt.Errorf("host signature does not verify: %v", err)
	}
	if !bytes.Equal(signer.Marshal(), hostKey) {
		return fmt.Errorf("host signature does not verify: it is by key %s, not by the host key %s", keys.Fingerprint(signer), hostFP)
	}
	return nil
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
	var certID, certCA string
	var certSerial uint64
	if c, ok := userKey.(*ssh.Certificate); ok {
		certID, certSerial, certCA = c.KeyId, c.Serial, keys.Fingerprint(c.SignatureKey)
	}
	if certID != rec.CertKeyID || certSerial != rec.CertSerial || certCA != rec.CertCAFP {
		reasons = append(reasons, fmt.Sprintf("the signature's certificate has key id %q, serial %d and CA %q, the record says %q, %d and %q",
			certID, certSerial, certCA, rec.CertKeyID, rec.CertSerial, rec.CertCAFP))
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
