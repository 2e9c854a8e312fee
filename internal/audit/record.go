// SPDX-License-Identifier: Apache-2.0

// Package audit writes and verifies netauth's audit log: one JSON record per
// decision netauthd makes (accepted or refused, full handshake or resumed
// connection), in JSON Lines format.
//
// # Tamper evidence
//
// Each line carries the hex SHA-256 of the line before it (Record.Prev; 64
// zeros for the first line of a file) and a sequence number counting 1, 2, 3
// within the file (Record.Seq). Records are not signed one by one: every
// CheckpointRecords records, or CheckpointInterval after the first record not
// yet covered, the Writer appends a checkpoint line (Record.Checkpoint), which
// is chained like a record and carries a signature by the host key
// (Record.HostSig: a binary SSHSIG in namespace Namespace, base64-encoded)
// over the checkpoint's own JSON as the line holds it. A checkpoint names the
// chain head it covers (the seq and the hash of a line before it) and the
// first seq it vouches for: through the hash chain, that signature covers
// every line from there to the head. The checkpoint is signed in the
// background, so no record waits for a signature; the record is written (and,
// with Options.Sync, flushed) before Write returns, as always.
//
// A changed, removed, inserted or reordered record breaks the chain that leads
// from a checkpoint back to it, and Verify reports it, together with the
// records before it that the break leaves without a checkpoint. Records after
// the last checkpoint are not yet covered by a host signature: Verify reports
// them apart (Report.Uncovered), as a log still being written has them for up
// to CheckpointInterval; anyone who can write the file could have changed or
// added them. Close and a rotation (Reopen) end the file with a closing
// checkpoint, so a cleanly closed file is covered to its last record, and a
// Writer that opens a file already holding lines first appends an opening
// checkpoint: records after a closing checkpoint that no opening one follows
// were not written by netauthd. Records a Writer wrote but had not yet covered
// when it stopped (a crash) are sealed by the next Writer's opening
// checkpoint, which does not vouch for them; Verify reports them as not
// covered as well.
//
// Logs written before checkpoints, in which every line carries its own host
// signature over the line's canonical bytes (the line with the value of
// "host_sig" emptied), verify as they always did, and a Writer continues
// such a file in the format with checkpoints.
//
// The host signature proves that a line was written by a holder of the host
// key, not that the line is true: the administrator of the server holds that
// key. For full handshakes the record also carries the statement the user's
// own key signed and the user's SSHSIG signature over it, so whether a user
// authenticated can be proved even against the administrator (Verify checks
// them, and Export writes the files `ssh-keygen -Y verify` needs, as it does
// for a checkpoint's host signature). Resumed connections carry no user
// signature; they are vouched for by the host alone.
//
// Records cut from the end of the log leave no trace in what remains. Keep a
// copy of recent records elsewhere (for example the system journal), or
// compare the last sequence number Verify reports with one noted earlier.
//
// Verify also checks that an accepted full handshake was logged within the
// clock skew of the time in the statement the user signed, and that no
// handshake hash (and so no user signature) is logged twice: a holder of the
// host key cannot log a user's genuine signature again at another time or
// for another client without it showing.
//
// # Refusals
//
// Refusals are logged through WriteRefusal, which treats everything about a
// refused connection as the client's choice and bounds it: the signature the
// client sent (unverified) is logged as its SHA-256 and length, so is a user
// name that is not valid, and the other fields are cut to fixed lengths, so
// that a refusal line is at most MaxRefusalLine bytes. Past a few refusals
// from one source (an IPv4 address or an IPv6 /64) in an interval, further
// ones are counted rather than logged, and one summary record per source
// (Record.Summary) gives their number by refusal code when the interval
// ends. Accepted connections are always logged in full. Refusals and
// summaries are chained and covered by checkpoints like any record.
//
// # Writing
//
// A Writer appends records to one file with one write(2) call each on a file
// opened with O_APPEND, under an exclusive advisory lock (flock) so that a
// second writer cannot interleave lines and break the chain. A write that
// fails (a full disk) is cut off again, so the file keeps whole lines and the
// chain stays intact; Write then reports the failure, and tries the disk
// again on a later call, at most every RetryInterval. Rotate the log by
// renaming the file and calling Reopen (netauthd does on SIGUSR1 and SIGHUP).
// The file rotated away ends with a closing checkpoint, and the new file
// continues its chain: its first line is a continuing checkpoint
// (EventContinue), signed by the host key, whose head names the old file's
// last line (its seq and hash) and whose prev is that hash; the new file's
// own lines count again from seq 1. Verify reports the link it read
// (Report.Follows) and the file's own last line (Report.End), and
// Report.Continues checks that one file follows another, so that a file
// missing from a rotated sequence, cut at its end, or given out of order is
// found. A new Writer (Open) on an empty file starts a new chain (64 zeros).
// Never copy and truncate the log in place: the Writer notices at its next
// write, logs it and goes on from the end of what the file holds, but the
// chain is broken there (Verify reports the records before the cut), and the
// copy made before the cut misses the records written between the copy and
// the cut.
package audit

import (
	"errors"
	"fmt"
	"time"

	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/keys"
)

// Namespace is the SSHSIG namespace of the host signatures in the audit log:
// on checkpoints, and on each record of logs written before checkpoints.
const Namespace = "netauth-audit-v1@ubns.dev"

// CheckpointKind is the value of Checkpoint.Kind: the first field of the JSON
// a checkpoint's host signature covers, which says what those bytes are.
const CheckpointKind = "netauth-audit-checkpoint-v1"

// Defaults of Options.CheckpointRecords and Options.CheckpointInterval.
const (
	DefaultCheckpointRecords  = 64
	DefaultCheckpointInterval = time.Second
)

// MaxCheckpointLag bounds how far before its own line a checkpoint's head
// may be: less than MaxCheckpointLag lines (the records written while it was
// being signed). Verify keeps the hashes of that many lines.
const MaxCheckpointLag = 1024

// Values of Checkpoint.Event.
const (
	// EventOpen marks the checkpoint a Writer appends when it opens a file
	// that already holds lines: it seals them, vouching for none.
	EventOpen = "open"
	// EventClose marks the last line a Writer appends to a file (Close, or
	// Reopen after a rotation): its head is the line just before it.
	EventClose = "close"
	// EventContinue marks the first line of a file that Reopen started
	// after a rotation: the chain goes on from the file rotated away. Its
	// head is that file's last line (its seq there and its hash), its own
	// seq is 1 and its prev is that head; it vouches for nothing.
	EventContinue = "continue"
)

// UserNamespace is the SSHSIG namespace of the user signatures that full
// handshakes carry (the statement a user's key signs). It is the namespace
// of netauth's handshake.
const UserNamespace = "netauth-v1@ubns.dev"

// MaxLineSize is the longest line, in bytes without its newline, that the
// Writer writes and that Verify reads.
const MaxLineSize = 1 << 20

// MaxRefusalLine is the longest line, in bytes without its newline, that
// WriteRefusal writes: for a refusal, and for a summary of refusals.
const MaxRefusalLine = 1024

// Values of Record.Mode.
const (
	// ModeFull marks a full handshake, in which the user's key signed a
	// statement.
	ModeFull = "full"
	// ModeResumed marks a connection resumed with a ticket; no signature was
	// made.
	ModeResumed = "resumed"
)

// Values of Record.Decision.
const (
	// Accepted means the connection was let through to the service.
	Accepted = "accepted"
	// Refused means the connection was refused.
	Refused = "refused"
)

// Record is one line of the audit log: one decision about one connection, or
// a checkpoint (Checkpoint set, and no decision). The Writer sets Seq and
// Prev, and Time if it is zero; the caller fills in the rest.
type Record struct {
	// Seq numbers the records of a file 1, 2, 3 and so on.
	Seq uint64 `json:"seq"`
	// Time is when the decision was made, written in RFC 3339 format in UTC
	// with nanoseconds.
	Time time.Time `json:"time"`
	// Client is the client's address, host:port.
	Client string `json:"client"`
	// Service is the name of the service the client asked for.
	Service string `json:"service"`
	// User is the user name the client authenticated as, or asked for.
	User string `json:"user,omitempty"`
	// KeyType and KeyFP are the type ("ssh-ed25519") and SHA256 fingerprint
	// ("SHA256:...") of the user's key.
	KeyType string `json:"key_type,omitempty"`
	KeyFP   string `json:"key_fp,omitempty"`
	// CertKeyID, CertSerial and CertCAFP describe the OpenSSH user certificate the
	// user's key was (KeyType a "-cert-v01@openssh.com" type, KeyFP the
	// certificate's fingerprint): its key id, its serial, and the SHA256
	// fingerprint of the CA key that signed it. Empty for a plain key, and
	// CertSerial is left out when it is 0.
	CertKeyID  string `json:"cert_key_id,omitempty"`
	CertSerial uint64 `json:"cert_serial,omitempty"`
	CertCAFP   string `json:"cert_ca_fp,omitempty"`
	// HostKeyFP is the SHA256 fingerprint of the host key the server
	// presented.
	HostKeyFP string `json:"host_key_fp"`
	// Mode is ModeFull, ModeResumed, or empty for a connection refused
	// before the handshake got that far.
	Mode string `json:"mode"`
	// Decision is Accepted or Refused.
	Decision string `json:"decision"`
	// Code is, for a refusal logged by WriteRefusal, the refusal code the
	// client was sent ("auth_failed", "not_authorized" and so on).
	Code string `json:"code,omitempty"`
	// Reason says why a connection was refused.
	Reason string `json:"reason,omitempty"`
	// Worker is, for an accepted connection, the process id of the worker
	// netauthd gives it to: a worker already running, or one started (or a
	// spare assigned) for the connection before the record is written and
	// handed the connection only after. Should that worker exit before it
	// adopts the connection, netauthd's log names the one that takes it.
	Worker int `json:"worker,omitempty"`
	// Statement is, for full handshakes, the statement text the user's key
	// signed.
	Statement string `json:"statement,omitempty"`
	// Signature is, for full handshakes, the user's SSHSIG signature over
	// Statement in namespace UserNamespace, armored as ssh-keygen writes it.
	Signature string `json:"signature,omitempty"`
	// UserSHA256 and UserLen stand, in a refusal, for a user name that is
	// not a valid name (keys.ValidName), which is not logged: the hex
	// SHA-256 of its bytes and its length.
	UserSHA256 string `json:"user_sha256,omitempty"`
	UserLen    int    `json:"user_len,omitempty"`
	// SigSHA256 and SigLen stand, in a refusal, for the user signature the
	// client sent (not verified, so not logged): the hex SHA-256 of the
	// binary SSHSIG signature (the bytes inside the armor of Signature) and
	// its length.
	SigSHA256 string `json:"sig_sha256,omitempty"`
	SigLen    int    `json:"sig_len,omitempty"`
	// Summary, on a summary record, counts the refusals from one source that
	// were not logged one by one. A summary record is a refusal with an
	// empty Client, Service and Mode.
	Summary *Summary `json:"summary,omitempty"`
	// Checkpoint is set on a checkpoint line, which holds only Seq, Time,
	// Checkpoint, Prev and HostSig.
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// Prev is the hex SHA-256 of the previous line of the file, without its
	// newline; for the first line, 64 zeros, or, for a continuing
	// checkpoint (EventContinue), the hash of the last line of the file
	// rotated away before it.
	Prev string `json:"prev"`
	// HostSig is the base64 binary SSHSIG signature by the host key, in
	// namespace Namespace. On a checkpoint line it is over the checkpoint's
	// JSON as the line holds it. Records carry none, except in logs written
	// before checkpoints: there every record carries one, over the line's
	// canonical bytes (the JSON of the record with HostSig set to ""), and it
	// is the last field.
	HostSig string `json:"host_sig,omitempty"`
}

// Checkpoint is what a checkpoint line's host signature covers: the chain
// head, the line with seq Seq, whose hex SHA-256 is Head, and with it every
// line before it back to From. Its JSON, as the line holds it, is the
// message signed (`netauth audit export` writes it for ssh-keygen -Y verify).
type Checkpoint struct {
	// Kind is CheckpointKind.
	Kind string `json:"kind"`
	// Seq and Head are the seq and the hex SHA-256 (of the line without its
	// newline) of the last line covered.
	Seq  uint64 `json:"seq"`
	Head string `json:"head"`
	// From is the first seq the Writer vouches for: the first it wrote
	// since its last checkpoint. Lines before From that no earlier
	// checkpoint covers are sealed (they cannot be changed without breaking
	// the chain to Head) but not vouched for: another Writer, which stopped
	// before it covered them, wrote them, or something else did. From is
	// Seq+1 when the checkpoint vouches for nothing.
	From uint64 `json:"from"`
	// Time is when the checkpoint was signed, in UTC.
	Time time.Time `json:"time"`
	// HostKeyFP is the SHA256 fingerprint of the host key that signed it.
	HostKeyFP string `json:"host_key_fp"`
	// Event is EventOpen, EventClose, EventContinue, or empty.
	Event string `json:"event,omitempty"`
}

// NewRecord is the record of a decision about identity id, from client (host:port), made
// now: the identity's user, key, service and mode, and for a full handshake its statement and
// signature, which make the record verifiable on its own.
func NewRecord(id *identity.Identity, client, decision string) *Record {
	rec := &Record{
		Time:       time.Now(),
		Client:     client,
		Service:    id.Service,
		User:       id.User,
		KeyType:    id.KeyType,
		KeyFP:      id.KeyFingerprint,
		HostKeyFP:  id.HostKeyFingerprint,
		CertKeyID:  id.CertKeyID,
		CertSerial: id.CertSerial,
		CertCAFP:   id.CertCAFingerprint,
		Mode:       ModeFull,
		Decision:   decision,
	}
	if id.Resumed {
		rec.Mode = ModeResumed
	}
	if len(id.Signature) > 0 {
		rec.Statement, rec.Signature = string(id.Statement), string(keys.Armor(id.Signature))
	}
	return rec
}

// Summary counts the refusals from one source, over an interval, that were
// not logged one by one.
type Summary struct {
	// Source is the clients' source: an IPv4 address or an IPv6 /64 network
	// in prefix notation ("192.0.2.7/32", "2001:db8:1:2::/64"), or
	// SourceOther.
	Source string `json:"source"`
	// Since and Until bound the interval the counts cover.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Counts is the number of refusals counted, by refusal code.
	Counts map[string]uint64 `json:"counts"`
}

// SourceOther is the Summary.Source of refusals from clients whose address is
// not an IP address, and from sources beyond the number a Writer tracks at
// once (RefusalLimits.Sources).
const SourceOther = "other"

// check reports an error unless r's Mode and Decision have values the log
// knows.
func (r *Record) check() error {
	if r.Checkpoint != nil {
		return errors.New("a record cannot carry a checkpoint: the Writer writes those")
	}
	if r.Summary != nil {
		if r.Decision != Refused || r.Mode != "" {
			return errors.New("a summary of refusals must be a refusal without a mode")
		}
		if r.Summary.Source == "" || len(r.Summary.Counts) == 0 {
			return errors.New("a summary of refusals needs a source and counts")
		}
	}
	switch r.Decision {
	case Accepted, Refused:
	default:
		return fmt.Errorf("decision %q is not %q or %q", r.Decision, Accepted, Refused)
	}
	switch r.Mode {
	case ModeFull, ModeResumed:
	case "":
		if r.Decision == Accepted {
			return errors.New("an accepted record needs a mode (full or resumed)")
		}
	default:
		return fmt.Errorf("mode %q is not %q, %q or empty", r.Mode, ModeFull, ModeResumed)
	}
	return nil
}
