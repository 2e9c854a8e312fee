// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/audit"
)

const auditUsage = `usage: netauth audit <command> [flags] LOGFILE

Check netauthd's audit log, in which every record is chained to the line
before it by its SHA-256 and covered by a checkpoint that the server's host
key signs every 64 records or every second (in logs written before
checkpoints, each record is signed itself), and every full handshake carries
the statement the user's own key signed.

Commands:
  verify   check every line: the chain, checkpoints, host and user signatures
  export   write a record's signed statement, or a checkpoint's signed bytes,
           for ssh-keygen -Y verify

Run 'netauth audit <command> -h' for a command's flags.
`

const auditVerifyUsage = `usage: netauth audit verify -host-key FILE.pub [-skew DURATION] [-require-signed] LOGFILE...

Check every line of a netauthd audit log:

  - its sequence number and hash chain follow the line before it, so a
    record changed, removed, inserted or moved is found;
  - every checkpoint is signed by the host key (the server's public host key
    in the .pub format ssh-keygen writes, next to netauthd's host key file),
    and the chain head it signed (the sequence number and SHA-256 of a line
    before it) is that line: through the chain, its signature covers every
    record back to the checkpoint before it. A record the chain no longer
    links to a checkpoint is reported, with the place where the chain
    breaks; in logs written before checkpoints, each record's own host
    signature is checked;
  - records after a checkpoint that closed the log, before netauthd opened it
    again, are reported: netauthd did not write them;
  - for an accepted full handshake, the user's signature verifies over the
    statement, and the statement's user, service and host key and the
    signing key are those the record names;
  - for an accepted full handshake, the record was logged within the clock
    skew (-skew, the server's max-clock-skew) of the time in the statement,
    or up to a minute more after it, and no other record has the same
    handshake hash: a user's signature logged again, later or for another
    client, is found (both lines are named).

Records after the last checkpoint are not yet covered by a host signature:
a log being written has them for up to a second (netauthd signs a checkpoint
within that time, and when it closes or rotates the log), a log whose writer
stopped (a crash) keeps them, and anyone who can write the file could have
added or changed them. They are listed apart, as "not yet covered", and do
not count as bad lines; nor do records that netauthd found uncovered when it
opened the log again after a crash, which it sealed without vouching for
them. With -require-signed they are bad lines, for a log known to be
closed, and a log with checkpoints must end with netauthd's closing
checkpoint: one cut at an earlier checkpoint is bad.

Give the files of a rotated log together, oldest first (audit.log.2
audit.log.1 audit.log): each file's chain is checked, and that each file
continues the chain of the one before it (netauthd starts the new file after
a rotation with a checkpoint, signed by the host key, naming the last line
of the file rotated away): a file missing between two, a file cut at its
end, or files given out of order are reported, naming the file, as is a
user's signature logged in one file and again in another. A file that
starts a chain of its own (netauthd was started on an empty file rather
than rotated) is noted: whether a file is missing before it cannot be told.
Files compressed with gzip (logrotate's compress) are read as they are.
Every file but the last was closed by a rotation, so -require-signed holds
for them. With more than one file, each line of output starts with the
file's name.

Refusals are logged bounded (the client's signature and an invalid user
name by their SHA-256 and length), and under a flood partly as summary
records that count them by source; both are chained and covered like any
record.

Each bad line is listed, as "line 17 (seq 17): why" (the first 1000; the
others are counted). The exit status is 0 if every record verifies and is
covered by a host signature, 1 if any line is bad (or a log cannot be
read), 2 for a usage error, and 3 if no line is bad but some records are
not covered by a host signature.

Records cut from the end of the log leave no trace in what remains:
compare the last sequence number printed with one noted earlier, or with
a copy of the records kept elsewhere.

Flags:
`

const auditExportUsage = `usage: netauth audit export -seq N [-dir DIR] [-host-key FILE.pub] LOGFILE

Write, for the line with sequence number N of a netauthd audit log, the
files that let anyone check its signature with OpenSSH alone, with no
netauth code involved, and print the ssh-keygen command that checks them:

  - for a full handshake: its signed statement to DIR/statement, the user's
    signature to DIR/statement.sig and the user's key to
    DIR/allowed_signers (for a key that was an OpenSSH user certificate, the
    CA's key, marked cert-authority, and the command checks the certificate
    as of the record's time with -Overify-time);
  - for a checkpoint: the bytes the host key signed (the sequence number and
    SHA-256 of the chain head, the first sequence number it vouches for,
    its time and the host key's fingerprint) to DIR/checkpoint, the host's
    signature to DIR/checkpoint.sig and the host key to DIR/allowed_signers.
    It also prints the command that shows the SHA-256 of the head's line;
    that the records before it lead to that line is the hash chain's part,
    which 'netauth audit verify' checks.

With -host-key, the line is checked first: a checkpoint's host signature, or
for a record, that a checkpoint the chain leads to covers it (the log is
read up to that checkpoint), which is named.

Flags:
`

// auditMain runs `netauth audit`.
func auditMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "netauth audit", "missing a command: verify or export")
	}
	switch args[0] {
	case "verify":
		return auditVerifyMain(args[1:], stdout, stderr)
	case "export":
		return auditExportMain(args[1:], stdout, stderr)
	case "help":
		// netauth audit help verify: that command's help.
		if len(args) > 1 && !isHelp(args[1]) {
			return auditMain([]string{args[1], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, auditUsage)
		return exitOK
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, auditUsage)
		return exitOK
	}
	return usageError(stderr, "netauth audit", "unknown command %q: want verify or export", args[0])
}

// Exit statuses of `netauth audit verify`, and what verifyLogFile found.
const (
	verifyOK        = 0 // every record verifies and is covered
	verifyBad       = 1 // a bad line, or a log that cannot be read
	verifyUncovered = 3 // no bad line, but records not covered by a host signature
)

// auditVerifyMain runs `netauth audit verify`.
func auditVerifyMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("netauth audit verify")
	hostKeyFile := fs.String("host-key", "", "the server's public host key (`FILE.pub`); required")
	skew := fs.Duration("skew", audit.DefaultMaxClockSkew, "the clock skew the server allowed (its max-clock-skew)")
	requireSigned := fs.Bool("require-signed", false, "report records no host signature covers, and a log with checkpoints that does not end with a closing one, as bad (for a log known to be closed)")
	if code, ok := parseFlags(fs, auditVerifyUsage, args, stdout, stderr); !ok {
		return code
	}
	switch {
	case *hostKeyFile == "":
		return usageError(stderr, fs.Name(), "-host-key is missing: the server's public host key (FILE.pub) is needed to check the log's signatures")
	case fs.NArg() == 0:
		return usageError(stderr, fs.Name(), "missing the log file (LOGFILE...)")
	case *skew <= 0:
		return usageError(stderr, fs.Name(), "-skew %v: want a positive duration", *skew)
	}
	hostKey, err := readPublicKey(*hostKeyFile)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	// The files share what full handshakes they hold: a signature logged again in another
	// file (after a rotation) is found too.
	var hs audit.Handshakes
	code := verifyOK
	reports := make(map[string]*audit.Report, fs.NArg())
	order := make([]*audit.Report, fs.NArg())
	for i, logFile := range fs.Args() {
		prefix := ""
		if fs.NArg() > 1 {
			prefix = logFile + ": "
		}
		// Every file but the last was rotated away, which closed it.
		opts := audit.VerifyOptions{MaxClockSkew: *skew, RequireSigned: *requireSigned || i < fs.NArg()-1, Handshakes: &hs, Name: logFile}
		rep, found := verifyLogFile(logFile, prefix, hostKey, opts, stdout, stderr)
		switch found {
		case verifyBad:
			code = verifyBad
		case verifyUncovered:
			if code == verifyOK {
				code = verifyUncovered
			}
		}
		if rep != nil {
			reports[logFile], order[i] = rep, rep
		}
	}
	// Each file after the first must continue the chain of the file before it.
	for i := 1; i < fs.NArg(); i++ {
		rep, prev := order[i], order[i-1]
		if rep == nil || prev == nil {
			continue // not read: reported already
		}
		err := rep.Continues(prev, reports)
		switch {
		case err == nil:
		case errors.Is(err, audit.ErrNewChain):
			fmt.Fprintf(stdout, "%s: note: %v\n", fs.Arg(i), err)
		default:
			fmt.Fprintf(stdout, "%s: line 1: does not follow %s: %v\n", fs.Arg(i), fs.Arg(i-1), err)
			code = verifyBad
		}
	}
	return code
}

// verifyLogFile verifies one log file, printing what it finds with each line prefixed, and
// returns its report (nil if it could not be read) and what it found: verifyOK, verifyBad or
// verifyUncovered.
func verifyLogFile(logFile, prefix string, hostKey ssh.PublicKey, opts audit.VerifyOptions, stdout, stderr io.Writer) (*audit.Report, int) {
	f, err := os.Open(logFile)
	if err != nil {
		fmt.Fprintln(stderr, "netauth audit:", err)
		return nil, verifyBad
	}
	defer f.Close()
	r, err := maybeGunzip(f)
	if err != nil {
		fmt.Fprintf(stderr, "netauth audit: %s: %v\n", logFile, err)
		return nil, verifyBad
	}
	rep, err := audit.VerifyWith(r, hostKey, opts)
	if err != nil {
		fmt.Fprintf(stderr, "netauth audit: %s: %v\n", logFile, err)
		return nil, verifyBad
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, prefix+p.String())
	}
	if more := rep.Bad - len(rep.Problems); more > 0 {
		fmt.Fprintf(stdout, "%s... and %d more bad lines, not listed (only the first %d are)\n", prefix, more, len(rep.Problems))
	}
	for _, u := range rep.UncoveredRuns {
		fmt.Fprintln(stdout, prefix+u.String())
	}
	summary := fmt.Sprintf("%d records: %d full, %d resumed, %d refused", rep.Records, rep.Full, rep.Resumed, rep.Refused)
	if rep.Summaries > 0 {
		summary += fmt.Sprintf(" (and %d more counted in %d summary records)", rep.Summarized, rep.Summaries)
	}
	switch rep.Checkpoints {
	case 0:
	case 1:
		summary += "; 1 checkpoint"
	default:
		summary += fmt.Sprintf("; %d checkpoints", rep.Checkpoints)
	}
	uncovered := "1 record is"
	if rep.Uncovered != 1 {
		uncovered = fmt.Sprintf("%d records are", rep.Uncovered)
	}
	code := verifyOK
	switch {
	case rep.Signed():
		fmt.Fprintf(stdout, "%s%s; all signatures and the chain verify\n", prefix, summary)
	case rep.OK():
		code = verifyUncovered
		fmt.Fprintf(stdout, "%s%s; the chain and the signatures verify, but %s not covered by a host signature (listed above)\n", prefix, summary, uncovered)
	default:
		code = verifyBad
		if rep.Uncovered > 0 {
			summary += fmt.Sprintf("; %s not covered by a host signature", uncovered)
		}
		fmt.Fprintf(stdout, "%s%s; %d bad (listed above)\n", prefix, summary, rep.Bad)
	}
	if rep.LastSeq != 0 {
		closed := ""
		if rep.Closed {
			closed = "; the log ends with netauthd's closing checkpoint"
		}
		fmt.Fprintf(stdout, "%slast good record: seq %d at %s%s\n", prefix, rep.LastSeq, rep.LastTime.UTC().Format(time.RFC3339Nano), closed)
	}
	return rep, code
}

// maybeGunzip returns a reader of f's content, decompressed if f is gzip-compressed (as
// logrotate's compress leaves the files rotated away); an audit log itself starts with '{'.
func maybeGunzip(f *os.File) (io.Reader, error) {
	br := bufio.NewReader(f)
	if !isGzip(f) {
		return br, nil // a short or empty file is the verifier's to judge
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("reading the gzip-compressed file: %w", err)
	}
	return zr, nil
}

// isGzip reports whether f starts with gzip's magic number (a log logrotate compressed).
func isGzip(f *os.File) bool {
	var magic [2]byte
	n, _ := f.ReadAt(magic[:], 0)
	return n == 2 && magic == [2]byte{0x1f, 0x8b}
}

// auditExportMain runs `netauth audit export`.
func auditExportMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("netauth audit export")
	seq := fs.Uint64("seq", 0, "sequence number of the record or checkpoint to export; required")
	dir := fs.String("dir", ".", "directory to write the files to (created if needed)")
	hostKeyFile := fs.String("host-key", "", "if set, check the line's host signature with this public host key (`FILE.pub`)")
	if code, ok := parseFlags(fs, auditExportUsage, args, stdout, stderr); !ok {
		return code
	}
	if *seq == 0 {
		return usageError(stderr, fs.Name(), "-seq is missing: the sequence number of the record or checkpoint to export")
	}
	if fs.NArg() != 1 {
		return argsError(stderr, fs, "the log file (LOGFILE)")
	}
	var hostKey ssh.PublicKey
	if *hostKeyFile != "" {
		var err error
		if hostKey, err = readPublicKey(*hostKeyFile); err != nil {
			fmt.Fprintln(stderr, "netauth audit:", err)
			return 1
		}
	}
	logFile := fs.Arg(0)
	f, err := os.Open(logFile)
	if err != nil {
		fmt.Fprintln(stderr, "netauth audit:", err)
		return 1
	}
	defer f.Close()
	if isGzip(f) {
		fmt.Fprintf(stderr, "netauth audit: %s is gzip-compressed (rotated): export reads an uncompressed log; run gunzip -k %s and export from the result\n", logFile, logFile)
		return 1
	}
	found, err := audit.Find(f, *seq, hostKey)
	if err != nil {
		fmt.Fprintf(stderr, "netauth audit: %s: %v\n", logFile, err)
		return 1
	}
	if found.Record.Checkpoint != nil {
		return exportCheckpoint(f, logFile, *dir, found, stdout, stderr)
	}
	rec := found.Record
	if rec.Mode != audit.ModeFull {
		fmt.Fprintf(stderr, "netauth audit: record seq %d is not a full handshake (mode %q): only full handshakes carry a user signature, and checkpoints the host's\n", *seq, audit.Printable(rec.Mode))
		return 1
	}
	statement, signature, allowedSigners, err := audit.Export(rec)
	if err != nil {
		fmt.Fprintln(stderr, "netauth audit:", err)
		return 1
	}
	paths, ok := writeExport(*dir, [3]string{"statement", "statement.sig", "allowed_signers"}, [3][]byte{statement, signature, allowedSigners}, stderr)
	if !ok {
		return 1
	}
	// The record's fields as the log has them: printable only (nothing but -host-key vouches
	// for the line, and it is printed to a terminal).
	fmt.Fprintf(stdout, "record seq %d: %s user %s, service %s, key %s, at %s\n",
		rec.Seq, audit.Printable(rec.Decision), rec.User, audit.Printable(rec.Service), audit.Printable(rec.KeyFP), rec.Time.UTC().Format(time.RFC3339Nano))
	verifyTime := ""
	if rec.CertCAFP != "" {
		fmt.Fprintf(stdout, "the key is certificate %q (serial %d) of CA %s\n", audit.Printable(rec.CertKeyID), rec.CertSerial, audit.Printable(rec.CertCAFP))
		// ssh-keygen checks a certificate's validity at the time given, by default now: the
		// certificate had to be valid when the record was made, not today.
		verifyTime = " -Overify-time=" + rec.Time.UTC().Format("20060102150405") + "Z"
	}
	switch {
	case hostKey == nil:
	case found.CoveredBy != 0:
		fmt.Fprintf(stdout, "covered by the host's signature of checkpoint seq %d (export it with -seq %d)\n", found.CoveredBy, found.CoveredBy)
	default:
		fmt.Fprintln(stdout, "signed by the host key itself (a log written before checkpoints)")
	}
	fmt.Fprintf(stdout, "wrote %s, %s and %s; check the user's signature with:\n", paths[0], paths[1], paths[2])
	fmt.Fprintf(stdout, "ssh-keygen -Y verify -f %s -I %s -n %s%s -s %s < %s\n",
		shellQuote(paths[2]), shellQuote(rec.User), audit.UserNamespace, verifyTime, shellQuote(paths[1]), shellQuote(paths[0]))
	return 0
}

// exportCheckpoint writes the files of the checkpoint found in the log f (named logFile) to
// dir, and prints how to check them.
func exportCheckpoint(f *os.File, logFile, dir string, found *audit.Found, stdout, stderr io.Writer) int {
	ck := found.Record.Checkpoint
	checkpoint, signature, allowedSigners, err := audit.ExportCheckpoint(found.Raw)
	if err != nil {
		fmt.Fprintln(stderr, "netauth audit:", err)
		return 1
	}
	// The line with the head's seq (the first with it), to show its SHA-256; a continuing
	// checkpoint's head is the last line of the file rotated away before this one.
	var head *audit.Found
	if _, err := f.Seek(0, io.SeekStart); err == nil && ck.Event != audit.EventContinue {
		head, _ = audit.Find(f, ck.Seq, nil)
	}
	paths, ok := writeExport(dir, [3]string{"checkpoint", "checkpoint.sig", "allowed_signers"}, [3][]byte{checkpoint, signature, allowedSigners}, stderr)
	if !ok {
		return 1
	}
	// Printable only: without -host-key nothing vouches for the line.
	vouches := fmt.Sprintf("vouching for seq %d to %d", ck.From, ck.Seq)
	if ck.From > ck.Seq {
		vouches = "vouching for none (it seals the lines before it)"
	}
	event := ""
	switch ck.Event {
	case audit.EventClose:
		event = ", closing the log"
	case audit.EventOpen:
		event = ", opening the log again"
	case audit.EventContinue:
		event = ", continuing the file rotated away before this one, whose last line is its head"
	}
	fmt.Fprintf(stdout, "checkpoint seq %d: head seq %d (SHA-256 %s), %s, signed at %s by host key %s%s\n",
		found.Record.Seq, ck.Seq, audit.Printable(ck.Head), vouches, ck.Time.UTC().Format(time.RFC3339Nano), audit.Printable(ck.HostKeyFP), event)
	fmt.Fprintf(stdout, "wrote %s, %s and %s; check the host's signature with:\n", paths[0], paths[1], paths[2])
	fmt.Fprintf(stdout, "ssh-keygen -Y verify -f %s -I %s -n %s -s %s < %s\n",
		shellQuote(paths[2]), audit.HostPrincipal, audit.Namespace, shellQuote(paths[1]), shellQuote(paths[0]))
	if ck.Event == audit.EventContinue {
		fmt.Fprintf(stdout, "and the head's line, the last line of the file before, with:\ntail -n 1 PREVIOUS_FILE | tr -d '\\n' | sha256sum\n")
		return 0
	}
	if head == nil {
		fmt.Fprintf(stdout, "no line of %s has the head's seq %d\n", logFile, ck.Seq)
		return 0
	}
	sum := sha256.Sum256(head.Raw)
	match := "the head the checkpoint signed"
	if hex.EncodeToString(sum[:]) != ck.Head {
		match = "NOT the head the checkpoint signed"
	}
	fmt.Fprintf(stdout, "and the head's line, line %d of the log, whose SHA-256 is %x (%s), with:\n", head.Line, sum, match)
	fmt.Fprintf(stdout, "sed -n %dp %s | tr -d '\\n' | sha256sum\n", head.Line, shellQuote(logFile))
	return 0
}

// writeExport writes the three files of an export to dir, and returns their paths.
func writeExport(dir string, names [3]string, data [3][]byte, stderr io.Writer) (paths [3]string, ok bool) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(stderr, "netauth audit: creating the output directory:", err)
		return paths, false
	}
	for i := range names {
		paths[i] = filepath.Join(dir, names[i])
		if err := os.WriteFile(paths[i], data[i], 0o644); err != nil {
			fmt.Fprintln(stderr, "netauth audit:", err)
			return paths, false
		}
	}
	return paths, true
}

// readPublicKey reads a public key in the .pub (authorized_keys) format.
func readPublicKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the host key: %w", err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, fmt.Errorf("host key %s: %w (want a public key as in a .pub file)", path, err)
	}
	return key, nil
}
