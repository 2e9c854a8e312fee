// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
)

// Export returns, for a record of a full handshake, the three files that
// let anyone check the user's signature with OpenSSH alone:
//
//	ssh-keygen -Y verify -f allowed_signers -I USER -n netauth-v1@ubns.dev -s statement.sig < statement
//
// statement is the signed statement text, signature the armored SSHSIG
// signature, and allowedSigners the line "USER KEYTYPE BASE64" naming the
// key embedded in the signature as r.User's; for a signature by an OpenSSH
// user certificate, the line "USER cert-authority,namespaces="netauth-v1@ubns.dev" KEYTYPE BASE64"
// naming the certificate's CA key instead, so that ssh-keygen checks the
// certificate (its principals must include USER, and it must be valid at
// the time of the check). Export does not check the
// signature itself (that is what the command is for); it fails if the
// record has no statement or signature, or if the signature cannot be
// parsed far enough to find its key.
func Export(r *Record) (statement, signature, allowedSigners []byte, err error) {
	if r == nil {
		return nil, nil, nil, errors.New("audit: export: nil record")
	}
	if r.Statement == "" || r.Signature == "" {
		return nil, nil, nil, fmt.Errorf("audit: export: record seq %d has no signed statement (only full handshakes carry one)", r.Seq)
	}
	if err := keys.ValidName(r.User); err != nil {
		return nil, nil, nil, fmt.Errorf("audit: export: record seq %d: user: %w", r.Seq, err)
	}
	blob, err := keys.Unarmor([]byte(r.Signature))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("audit: export: record seq %d: %w", r.Seq, err)
	}
	pub, err := sshsigKey(blob)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("audit: export: record seq %d: %w", r.Seq, err)
	}
	if c, ok := pub.(*ssh.Certificate); ok {
		if c.SignatureKey == nil {
			return nil, nil, nil, fmt.Errorf("audit: export: record seq %d: the signature's certificate has no CA key", r.Seq)
		}
		allowedSigners = append([]byte(r.User+` cert-authority,namespaces="`+UserNamespace+`" `), ssh.MarshalAuthorizedKey(c.SignatureKey)...)
	} else {
		allowedSigners = append([]byte(r.User+" "), ssh.MarshalAuthorizedKey(pub)...)
	}
	return []byte(r.Statement), keys.Armor(blob), allowedSigners, nil
}

// sshsigKey returns the public key embedded in a binary SSHSIG signature,
// without checking the rest of the signature.
func sshsigKey(blob []byte) (ssh.PublicKey, error) {
	rest, ok := bytes.CutPrefix(blob, []byte("SSHSIG"))
	if !ok || len(rest) < 8 {
		return nil, errors.New("signature is not an SSHSIG signature")
	}
	if v := binary.BigEndian.Uint32(rest); v != 1 {
		return nil, fmt.Errorf("SSHSIG version %d is not supported", v)
	}
	n := binary.BigEndian.Uint32(rest[4:])
	rest = rest[8:]
	if uint64(n) > uint64(len(rest)) {
		return nil, errors.New("signature is truncated in its public key")
	}
	pub, err := ssh.ParsePublicKey(rest[:n])
	if err != nil {
		return nil, fmt.Errorf("public key in the signature: %w", err)
	}
	return pub, nil
}

// HostPrincipal is the principal ExportCheckpoint names the host key in
// allowed_signers: the -I of `ssh-keygen -Y verify`.
const HostPrincipal = "netauthd"

// ExportCheckpoint returns, for a checkpoint line (raw, without its newline,
// as Find returns it), the three files that let anyone check the host's
// signature over it with OpenSSH alone:
//
//	ssh-keygen -Y verify -f allowed_signers -I netauthd -n netauth-audit-v1@ubns.dev -s checkpoint.sig < checkpoint
//
// checkpoint is the checkpoint's JSON as the line holds it (what the host key
// signed: the seq and SHA-256 of the chain head, the first seq it vouches
// for, its time and the host key's fingerprint), signature the armored
// SSHSIG signature, and allowedSigners the line "netauthd KEYTYPE BASE64"
// naming the key embedded in the signature. That the records before the head
// are the ones it covers is the hash chain's part, which Verify checks; that
// the head is the line with its seq is checked with sha256sum. ExportCheckpoint
// does not check the signature itself; it fails if the line is not a
// checkpoint, or if the signature cannot be parsed far enough to find its key.
func ExportCheckpoint(raw []byte) (checkpoint, signature, allowedSigners []byte, err error) {
	var cl checkpointFields
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&cl); err != nil || len(cl.Checkpoint) == 0 {
		return nil, nil, nil, errors.New("audit: export: the line is not a checkpoint")
	}
	blob, err := base64.StdEncoding.Strict().DecodeString(cl.HostSig)
	if err != nil || len(blob) == 0 {
		return nil, nil, nil, fmt.Errorf("audit: export: checkpoint seq %d: its host signature is not base64", cl.Seq)
	}
	pub, err := sshsigKey(blob)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("audit: export: checkpoint seq %d: %w", cl.Seq, err)
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, nil, nil, fmt.Errorf("audit: export: checkpoint seq %d: its host signature is by a certificate", cl.Seq)
	}
	allowedSigners = append([]byte(HostPrincipal+" "), ssh.MarshalAuthorizedKey(pub)...)
	return bytes.Clone(cl.Checkpoint), keys.Armor(blob), allowedSigners, nil
}

// Found is a line Find found.
type Found struct {
	// Record is the line read as a record (a checkpoint line has
	// Record.Checkpoint set).
	Record *Record
	// Line is its line number, and Raw the line without its newline.
	Line int
	Raw  []byte
	// CoveredBy is, when Find was given the host key and the line is a
	// record covered by a checkpoint, the seq of that checkpoint; 0 for a
	// line with a host signature of its own (a checkpoint, or a record
	// written before checkpoints), or when Find did not check.
	CoveredBy uint64
}

// Find reads an audit log from r and returns the first line with sequence
// number seq. Lines that are not records are skipped. If hostKey is not nil,
// the line must be authentic: a checkpoint whose host signature verifies
// with hostKey, a record covered by such a checkpoint (through the hash
// chain, so Find reads on until it finds one), or a record of the format
// before checkpoints with its own host signature. Find does not check the
// rest of the log; Verify does.
func Find(r io.Reader, seq uint64, hostKey ssh.PublicKey) (*Found, error) {
	var v *verifier
	if hostKey != nil {
		var err error
		if v, err = newVerifier(hostKey, VerifyOptions{}); err != nil {
			return nil, err
		}
		v.find = &findState{seq: seq}
	}
	lr := newLineReader(r)
	for {
		l, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("audit: reading line %d: %w", lr.n+1, err)
		}
		if v != nil {
			v.check(lr.n, l)
			if v.find.done {
				break
			}
			continue
		}
		var head struct {
			Seq uint64 `json:"seq"`
		}
		if l.tooLong || json.Unmarshal(l.data, &head) != nil || head.Seq != seq {
			continue
		}
		var rec Record
		if err := json.Unmarshal(l.data, &rec); err != nil {
			return nil, fmt.Errorf("audit: line %d (seq %d): not a JSON record: %w", lr.n, seq, err)
		}
		return &Found{Record: &rec, Line: lr.n, Raw: bytes.Clone(l.data)}, nil
	}
	if v == nil {
		return nil, fmt.Errorf("audit: no record with seq %d in the log", seq)
	}
	v.finish()
	f := v.find
	switch {
	case !f.found:
		return nil, fmt.Errorf("audit: no record with seq %d in the log", seq)
	case f.err != "":
		return nil, fmt.Errorf("audit: line %d (seq %d): %s", f.line, seq, Printable(f.err))
	}
	return &Found{Record: f.rec, Line: f.line, Raw: f.raw, CoveredBy: f.coveredBy}, nil
}
