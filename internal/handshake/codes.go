// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"fmt"

	"ubns.dev/netauth/internal/record"
)

// Code is an error code sent to the peer in an alert frame or a verdict record. Codes are
// the only thing a peer learns about a failure (docs/PROTOCOL.md §8).
type Code uint8

// Error codes.
const (
	CodeOK                 Code = 0
	CodeProtocolError      Code = 1                         // malformed or unexpected message
	CodeVersionUnsupported Code = 2                         // ClientHello version not spoken by the server
	CodeAuthFailed         Code = 3                         // user authenticator invalid or replayed
	CodeClockSkew          Code = 4                         // authenticator time outside the allowed skew
	CodeNotAuthorized      Code = 5                         // key unknown for the user, or policy refuses the user
	CodeInternalError      Code = 6                         // server-side failure
	CodeOverloaded         Code = 7                         // too many handshakes in progress
	CodeTimeout            Code = 8                         // handshake deadline passed
	CodeAccessRevoked      Code = Code(record.CloseRevoked) // in a close record: the session ended because access was revoked
)

func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeProtocolError:
		return "protocol error"
	case CodeVersionUnsupported:
		return "protocol version not supported"
	case CodeAuthFailed:
		return "authentication failed"
	case CodeClockSkew:
		return "clock skew too large"
	case CodeNotAuthorized:
		return "not authorized"
	case CodeInternalError:
		return "internal server error"
	case CodeOverloaded:
		return "server overloaded"
	case CodeTimeout:
		return "handshake timed out"
	case CodeAccessRevoked:
		return "access revoked"
	}
	return fmt.Sprintf("unknown error code %d", uint8(c))
}

// hint tells a user what to do about a refusal.
func (c Code) hint() string {
	switch c {
	case CodeNotAuthorized:
		return "; the server does not accept this key for this user or the user may not use this service (ask its administrator to add your public key)"
	case CodeClockSkew:
		return "; check that this machine's clock is correct"
	case CodeAuthFailed:
		return "; the authenticator did not verify (is the agent's key the one it claims?)"
	case CodeVersionUnsupported:
		return "; client and server speak no common protocol version"
	case CodeOverloaded:
		return "; try again later"
	}
	return ""
}

// RefusedError is what a client gets when the server refuses the handshake: the code is all
// the server tells.
type RefusedError struct {
	Code Code
}

func (e *RefusedError) Error() string {
	return "netauth: server refused the connection: " + e.Code.String() + e.Code.hint()
}

// Refusal is the server-side error of a refused handshake: the code sent to the client and
// the detailed reason, which stays in the server's logs and audit records.
type Refusal struct {
	Code   Code
	Reason string
	Err    error // underlying cause, if any
	// Identity known at the time of the refusal (empty fields when unknown).
	Client    string
	User      string
	KeyFP     string
	Resumed   bool
	Statement []byte // full handshakes that got as far as the authenticator
	Signature []byte
}

func (e *Refusal) Error() string {
	msg := "netauth: handshake refused (" + e.Code.String() + "): " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Refusal) Unwrap() error { return e.Err }
