// SPDX-License-Identifier: Apache-2.0

// Package audit writes and verifies netauth's audit log: one JSON record per
// decision netauthd makes (accepted or refused, full handshake or resumed
// connection), in JSON Lines format.
//
// # Tamper evidence
//
// Each line carries the hex SHA-256 of the line before it (Record.Prev; 64
// zeros for the first record of a file), a sequence number counting 1, 2, 3
// within the file (Record.Seq), and a signature by the host key
// (Record.HostSig): a binary SSHSIG in namespace Namespace, base64-encoded,
// over the line's canonical bytes. The canonical bytes are the line itself
// with the value of "host_sig" emptied, that is the JSON encoding of the
// record with HostSig set to "". A changed record no longer matches its host
// signature; a removed, inserted or reordered record breaks the sequence and
// the hash chain. Verify reports each such line.
//
// The host signature proves that a line was written by a holder of the host
// key, not that the line is true: the administrator of the server holds that
// key. For full handshakes the record also carries the statement the user's
// own key signed and the user's SSHSIG signature over it, so whether a user
// authenticated can be proved even against the administrator (Verify checks
// them, and Export writes the files `ssh-keygen -Y verify` needs). Resumed
// connections carry no user signature; they are vouched for by the host
// alone.
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
// ends. Accepted connections are always logged in full.
//
// # Writing
//
// A Writer appends records to one file with one write(2) call each on a file
// opened with O_APPEND, under an exclusive advisory lock (flock) so that a
// second writer cannot interleave lines and break the chain. A write that
// fails (a full disk) is cut off again, so the file keeps whole lines and the
// chain stays intact; Write then reports the failure, and tries the disk
// again on a later call, at most every RetryInterval. Rotate the log by
// renaming the file and calling Reopen (netauthd does on SIGHUP), or opening
// a new Writer: the new file starts again at seq 1. Never copy and truncate
// the log in place: the Writer notices at its next write, logs it and goes on
// from the end of what the file holds, but the chain is broken there (Verify
// reports the first record after the cut).
package audit

import (
	"errors"
	"fmt"
	"time"

	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/keys"
)

// Namespace is the SSHSIG namespace of the host signatures on audit records.
const Namespace = "netauth-audit-v1@ubns.dev"

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

// Record is one line of the audit log: one decision about one connection.
// The Writer sets Seq, Prev and HostSig, and Time if it is zero; the caller
// fills in the rest.
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
	// Worker is the process id of the worker that got the connection.
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
	// Prev is the hex SHA-256 of the previous line of the file, without its
	// newline; 64 zeros for the first record.
	Prev string `json:"prev"`
	// HostSig is the base64 binary SSHSIG signature, by the host key in
	// namespace Namespace, over the line's canonical bytes: the JSON of the
	// record with HostSig set to "". It must stay the last field.
	HostSig string `json:"host_sig"`
}

// NewRecord is the record of a decision about identity id, from client (host:port), made
// now: the identity's user, key, service and mode, and for a full handshake its statement and
// signature, which make the record verifiable on its own.
func NewRecord(id *identity.Identity, client, decision string) *Record {
	rec := &Record{
		Time:      time.Now(),
		Client:    client,
		Service:   id.Service,
		User:      id.User,
		KeyType:   id.KeyType,
		KeyFP:     id.KeyFingerprint,
		HostKeyFP: id.HostKeyFingerprint,
		Mode:      ModeFull,
		Decision:  decision,
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
