// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
)

// StatementMagic is the first line of every authenticator statement. It
// names the statement format and its version.
const StatementMagic = "netauth-authenticator-v1"

// MaxStatementSize is the largest encoded statement ParseStatement accepts,
// in bytes.
const MaxStatementSize = 1024

// HandshakeHashSize is the length of the handshake hash a statement carries.
const HandshakeHashSize = 32

// maxTimeDigits is the longest decimal time field a statement may carry.
const maxTimeDigits = 19

// Statement is the authenticator statement a user's key signs (through
// SSHSIG) to prove, to one server in one handshake, that the user is acting
// for one service at one time.
//
// Its canonical encoding is text, each line terminated by "\n", with the
// fields in this order and a single space after each field name:
//
//	netauth-authenticator-v1
//	handshake-hash <64 lowercase hex digits>
//	host-key ssh-ed25519 <base64 key, no comment>
//	service <name>
//	user <name>
//	time <Unix seconds, decimal, no sign, no leading zeros>
type Statement struct {
	// HandshakeHash is the handshake hash of the connection, exactly 32 bytes.
	HandshakeHash []byte
	// HostKey is the server's host key; it must be an ssh-ed25519 key.
	HostKey ssh.PublicKey
	// Service is the name of the service the user asks for (see ValidName).
	Service string
	// User is the name the user authenticates as (see ValidName).
	User string
	// Time is the client's clock when it made the statement. Only whole
	// seconds since the Unix epoch are encoded; it may not be before 1970.
	Time time.Time
}

// Marshal validates s and returns its canonical encoding. Any fraction of a
// second in s.Time is dropped (the encoding holds s.Time.Unix()).
func (s *Statement) Marshal() ([]byte, error) {
	if len(s.HandshakeHash) != HandshakeHashSize {
		return nil, fmt.Errorf("keys: statement handshake hash is %d bytes, want %d", len(s.HandshakeHash), HandshakeHashSize)
	}
	if s.HostKey == nil {
		return nil, errors.New("keys: statement has no host key")
	}
	if t := s.HostKey.Type(); t != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("keys: statement host key is %s, want %s", t, ssh.KeyAlgoED25519)
	}
	if err := ValidName(s.Service); err != nil {
		return nil, fmt.Errorf("keys: statement service: %w", err)
	}
	if err := ValidName(s.User); err != nil {
		return nil, fmt.Errorf("keys: statement user: %w", err)
	}
	sec := s.Time.Unix()
	if sec < 0 {
		return nil, fmt.Errorf("keys: statement time %v is before 1970", s.Time)
	}
	b := make([]byte, 0, 320)
	b = append(b, StatementMagic+"\n"...)
	b = append(b, "handshake-hash "...)
	b = hex.AppendEncode(b, s.HandshakeHash)
	b = append(b, "\nhost-key "...)
	b = append(b, s.HostKey.Type()...)
	b = append(b, ' ')
	b = base64.StdEncoding.AppendEncode(b, s.HostKey.Marshal())
	b = append(b, "\nservice "...)
	b = append(b, s.Service...)
	b = append(b, "\nuser "...)
	b = append(b, s.User...)
	b = append(b, "\ntime "...)
	b = strconv.AppendInt(b, sec, 10)
	b = append(b, '\n')
	if len(b) > MaxStatementSize {
		return nil, fmt.Errorf("keys: statement is %d bytes, more than %d", len(b), MaxStatementSize)
	}
	return b, nil
}

// ParseStatement parses the canonical encoding of a statement. It is
// strict: the size is checked before anything else, the fields must come in
// order with exactly the syntax Marshal produces, and any input that Marshal
// would not reproduce byte for byte is rejected.
func ParseStatement(b []byte) (*Statement, error) {
	if len(b) > MaxStatementSize {
		return nil, fmt.Errorf("keys: statement is %d bytes, more than %d", len(b), MaxStatementSize)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, errors.New("keys: statement does not end with a newline")
	}
	lines := bytes.Split(b[:len(b)-1], []byte("\n"))
	if len(lines) != 6 {
		return nil, fmt.Errorf("keys: statement has %d lines, want 6", len(lines))
	}
	if string(lines[0]) != StatementMagic {
		return nil, errors.New("keys: statement does not start with " + StatementMagic)
	}
	var s Statement

	hh, err := field(lines[1], "handshake-hash")
	if err != nil {
		return nil, err
	}
	if len(hh) != 2*HandshakeHashSize || !lowerHex(hh) {
		return nil, fmt.Errorf("keys: statement handshake hash is not %d lowercase hex digits", 2*HandshakeHashSize)
	}
	if s.HandshakeHash, err = hex.DecodeString(string(hh)); err != nil {
		return nil, fmt.Errorf("keys: statement handshake hash: %w", err)
	}

	hk, err := field(lines[2], "host-key")
	if err != nil {
		return nil, err
	}
	algo, b64, ok := bytes.Cut(hk, []byte(" "))
	if !ok || string(algo) != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("keys: statement host key is not an %s key", ssh.KeyAlgoED25519)
	}
	blob, err := base64.StdEncoding.Strict().DecodeString(string(b64))
	if err != nil {
		return nil, fmt.Errorf("keys: statement host key: %w", err)
	}
	if s.HostKey, err = ssh.ParsePublicKey(blob); err != nil {
		return nil, fmt.Errorf("keys: statement host key: %w", err)
	}

	service, err := field(lines[3], "service")
	if err != nil {
		return nil, err
	}
	s.Service = string(service)

	user, err := field(lines[4], "user")
	if err != nil {
		return nil, err
	}
	s.User = string(user)

	ts, err := field(lines[5], "time")
	if err != nil {
		return nil, err
	}
	sec, err := parseTime(ts)
	if err != nil {
		return nil, err
	}
	s.Time = time.Unix(sec, 0)

	// Marshal validates every field; comparing its output with the input
	// rejects every non-canonical spelling.
	again, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, b) {
		return nil, errors.New("keys: statement is not in canonical form")
	}
	return &s, nil
}

// field returns the value of line, which must be name, one space, and a
// non-empty value.
func field(line []byte, name string) ([]byte, error) {
	v, ok := bytes.CutPrefix(line, []byte(name+" "))
	if !ok || len(v) == 0 {
		return nil, fmt.Errorf("keys: statement field %q missing or out of order", name)
	}
	return v, nil
}

func lowerHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func parseTime(ts []byte) (int64, error) {
	if len(ts) > maxTimeDigits {
		return 0, fmt.Errorf("keys: statement time has more than %d digits", maxTimeDigits)
	}
	for _, c := range ts {
		if c < '0' || c > '9' {
			return 0, errors.New("keys: statement time is not a decimal number")
		}
	}
	if len(ts) > 1 && ts[0] == '0' {
		return 0, errors.New("keys: statement time has a leading zero")
	}
	sec, err := strconv.ParseInt(string(ts), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("keys: statement time: %w", err)
	}
	return sec, nil
}
