// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/audit"
)

const auditUsage = `usage: netauth audit <command> [flags] LOGFILE

Check netauthd's audit log, in which every record is signed by the server's
host key and chained to the record before it, and every full handshake
carries the statement the user's own key signed.

Commands:
  verify   check every record: host signatures, the chain, user signatures
  export   write one record's signed statement for ssh-keygen -Y verify

Run 'netauth audit <command> -h' for a command's flags.
`

const auditVerifyUsage = `usage: netauth audit verify -host-key FILE.pub [-skew DURATION] LOGFILE...

Check every line of a netauthd audit log:

  - it is a record signed by the host key (the server's public host key in
    the .pub format ssh-keygen writes, next to netauthd's host key file);
  - its sequence number and hash chain follow the record before it, so a
    record removed, inserted or moved is found;
  - for an accepted full handshake, the user's signature verifies over the
    statement, and the statement's user, service and host key and the
    signing key are those the record names;
  - for an accepted full handshake, the record was logged within the clock
    skew (-skew, the server's max-clock-skew) of the time in the statement,
    or up to a minute more after it, and no other record has the same
    handshake hash: a user's signature logged again, later or for another
    client, is found (both lines are named).

Give the files of a rotated log together, oldest first (audit.log.2
audit.log.1 audit.log): each is checked as its own chain, and a user's
signature logged in one and again in another is found as well. With more
than one file, each line of output starts with the file's name.

Refusals are logged bounded (the client's signature and an invalid user
name by their SHA-256 and length), and under a flood partly as summary
records that count them by source; both are checked like any record.

Each bad line is listed, as "line 17 (seq 17): why" (the first 1000; the
others are counted). The exit status is 0
if every record verifies, 1 if any does not (or the log cannot be read),
and 2 for a usage error.

Records cut from the end of the log leave no trace in what remains:
compare the last sequence number printed with one noted earlier, or with
a copy of the records kept elsewhere.

Flags:
`

const auditExportUsage = `usage: netauth audit export -seq N [-dir DIR] [-host-key FILE.pub] LOGFILE

Write the signed statement of record N of a netauthd audit log (a full
handshake) to DIR/statement, the user's signature to DIR/statement.sig and
the user's key to DIR/allowed_signers, and print the ssh-keygen command
that checks them. This lets anyone confirm with OpenSSH alone that the
user's key signed the statement; no netauth code is involved.

With -host-key, the record's host signature is checked first.

Flags:
`

// auditMain runs `netauth audit`.
func auditMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "verify":
		return auditVerifyMain(args[1:], stdout, stderr)
	case "export":
		return auditExportMain(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	}
	fmt.Fprintf(stderr, "netauth audit: unknown command %q\n\n%s", args[0], auditUsage)
	return 2
}

// auditVerifyMain runs `netauth audit verify`.
func auditVerifyMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, auditVerifyUsage); fs.PrintDefaults() }
	hostKeyFile := fs.String("host-key", "", "the server's public host key (`FILE.pub`); required")
	skew := fs.Duration("skew", audit.DefaultMaxClockSkew, "the clock skew the server allowed (its max-clock-skew)")
	if code, ok := parseAuditFlags(fs, args); !ok {
		return code
	}
	if *hostKeyFile == "" || fs.NArg() == 0 || *skew <= 0 {
		fs.Usage()
		return 2
	}
	hostKey, err := readPublicKey(*hostKeyFile)
	if err != nil {
		fmt.Fprintln(stderr, "netauth audit:", err)
		return 1
	}
	// The files share what full handshakes they hold: a signature logged again in another
	// file (after a rotation) is found too.
	var hs audit.Handshakes
	code := 0
	for _, logFile := range fs.Args() {
		prefix := ""
		if fs.NArg() > 1 {
			prefix = logFile + ": "
		}
		if !verifyLogFile(logFile, prefix, hostKey, audit.VerifyOptions{MaxClockSkew: *skew, Handshakes: &hs, Name: logFile}, stdout, stderr) {
			code = 1
		}
	}
	return code
}

// verifyLogFile verifies one log file, printing what it finds with each line prefixed, and
// reports whether it verified.
func verifyLogFile(logFile, prefix string, hostKey ssh.PublicKey, opts audit.VerifyOptions, stdout, stderr io.Writer) bool {
	f, err := os.Open(logFile)
	if err != nil {
		fmt.Fprintln(stderr, "netauth audit:", err)
		return false
	}
	defer f.Close()
	rep, err := audit.VerifyWith(f, hostKey, opts)
	if err != nil {
		fmt.Fprintf(stderr, "netauth audit: %s: %v\n", logFile, err)
		return false
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, prefix+p.String())
	}
	if more := rep.Bad - len(rep.Problems); more > 0 {
		fmt.Fprintf(stdout, "%s... and %d more bad lines, not listed (only the first %d are)\n", prefix, more, len(rep.Problems))
	}
	summary := fmt.Sprintf("%d records: %d full, %d resumed, %d refused", rep.Records, rep.Full, rep.Resumed, rep.Refused)
	if rep.Summaries > 0 {
		summary += fmt.Sprintf(" (and %d more counted in %d summary records)", rep.Summarized, rep.Summaries)
	}
	if rep.OK() {
		fmt.Fprintf(stdout, "%s%s; all signatures and the chain verify\n", prefix, summary)
	} else {
		fmt.Fprintf(stdout, "%s%s; %d bad (listed above)\n", prefix, summary, rep.Bad)
	}
	if rep.LastSeq != 0 {
		fmt.Fprintf(stdout, "%slast good record: seq %d at %s\n", prefix, rep.LastSeq, rep.LastTime.UTC().Format(time.RFC3339Nano))
	}
	return rep.OK()
}

// auditExportMain runs `netauth audit export`.
func auditExportMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, auditExportUsage); fs.PrintDefaults() }
	seq := fs.Uint64("seq", 0, "sequence number of the record to export; required")
	dir := fs.String("dir", ".", "directory to write the files to (created if needed)")
	hostKeyFile := fs.String("host-key", "", "if set, check the record's host signature with this public host key (`FILE.pub`)")
	if code, ok := parseAuditFlags(fs, args); !ok {
		return code
	}
	if *seq == 0 || fs.NArg() != 1 {
		fs.Usage()
		return 2
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
	rec, _, err := audit.Find(f, *seq, hostKey)
	if err != nil {
		fmt.Fprintf(stderr, "netauth audit: %s: %v\n", logFile, err)
		return 1
	}
	if rec.Mode != audit.ModeFull {
		fmt.Fprintf(stderr, "netauth audit: record seq %d is not a full handshake (mode %q): only full handshakes carry a user signature\n", *seq, rec.Mode)
		return 1
	}
	statement, signature, allowedSigners, err := audit.Export(rec)
	if err != nil {
		fmt.Fprintln(stderr, "netauth audit:", err)
		return 1
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(stderr, "netauth audit: creating the output directory:", err)
		return 1
	}
	paths := [3]string{filepath.Join(*dir, "statement"), filepath.Join(*dir, "statement.sig"), filepath.Join(*dir, "allowed_signers")}
	for i, data := range [3][]byte{statement, signature, allowedSigners} {
		if err := os.WriteFile(paths[i], data, 0o644); err != nil {
			fmt.Fprintln(stderr, "netauth audit:", err)
			return 1
		}
	}
	// The record's fields as the log has them: printable only (nothing but -host-key vouches
	// for the line, and it is printed to a terminal).
	fmt.Fprintf(stdout, "record seq %d: %s user %s, service %s, key %s, at %s\n",
		rec.Seq, audit.Printable(rec.Decision), rec.User, audit.Printable(rec.Service), audit.Printable(rec.KeyFP), rec.Time.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(stdout, "wrote %s, %s and %s; check the user's signature with:\n", paths[0], paths[1], paths[2])
	fmt.Fprintf(stdout, "ssh-keygen -Y verify -f %s -I %s -n %s -s %s < %s\n",
		shellQuote(paths[2]), shellQuote(rec.User), audit.UserNamespace, shellQuote(paths[1]), shellQuote(paths[0]))
	return 0
}

// parseAuditFlags parses args into fs. It returns ok if the command should
// go on, and otherwise its exit status: 0 after -h, 2 after a bad flag.
func parseAuditFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		return 0, false
	}
	return 2, false
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
