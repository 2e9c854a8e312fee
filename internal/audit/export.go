// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"bytes"
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
// key embedded in the signature as r.User's. Export does not check the
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
	allowedSigners = append([]byte(r.User+" "), ssh.MarshalAuthorizedKey(pub)...)
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
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, errors.New("signature is by a certificate, which netauth does not accept")
	}
	return pub, nil
}

// Find reads an audit log from r and returns the first record with
// sequence number seq and its line number. Lines that are not records are
// skipped. If hostKey is not nil, the record's host signature must verify
// with it. Find does not check the rest of the log; Verify does.
func Find(r io.Reader, seq uint64, hostKey ssh.PublicKey) (*Record, int, error) {
	var hostBlob []byte
	var hostFP string
	if hostKey != nil {
		hostBlob, hostFP = hostKey.Marshal(), keys.Fingerprint(hostKey)
	}
	lr := newLineReader(r)
	for {
		l, err := lr.next()
		if err == io.EOF {
			return nil, 0, fmt.Errorf("audit: no record with seq %d in the log", seq)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("audit: reading line %d: %w", lr.n+1, err)
		}
		var head struct {
			Seq uint64 `json:"seq"`
		}
		if l.tooLong || json.Unmarshal(l.data, &head) != nil || head.Seq != seq {
			continue
		}
		if hostKey == nil {
			var rec Record
			if err := json.Unmarshal(l.data, &rec); err != nil {
				return nil, 0, fmt.Errorf("audit: line %d (seq %d): not a JSON record: %w", lr.n, seq, err)
			}
			return &rec, lr.n, nil
		}
		rec, err := parseLine(l.data, hostBlob, hostFP)
		if err != nil {
			return nil, 0, fmt.Errorf("audit: line %d (seq %d): %w", lr.n, seq, err)
		}
		return rec, lr.n, nil
	}
}
