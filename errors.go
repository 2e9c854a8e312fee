// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
)

// RefusedError is returned to a client whose handshake the server refused. Its Code is all
// the server discloses; Error() explains it and says what to do.
type RefusedError = handshake.RefusedError

// Code is an error code a server sends to a refused client (docs/PROTOCOL.md §8).
type Code = handshake.Code

// Error codes a client can receive in a *RefusedError.
const (
	CodeProtocolError      = handshake.CodeProtocolError
	CodeVersionUnsupported = handshake.CodeVersionUnsupported
	CodeAuthFailed         = handshake.CodeAuthFailed
	CodeClockSkew          = handshake.CodeClockSkew
	CodeNotAuthorized      = handshake.CodeNotAuthorized
	CodeInternalError      = handshake.CodeInternalError
	CodeOverloaded         = handshake.CodeOverloaded
	CodeTimeout            = handshake.CodeTimeout
)

// HostKeyError is returned when the server's host key is not the one pinned in known_hosts
// (unknown or changed). Its message names the fingerprint and the command that trusts it.
type HostKeyError = keys.HostKeyError

// Errors a Conn's Read can return when the stream was attacked or cut.
var (
	// ErrTampered means a record failed authentication: the stream was modified in transit
	// (or corrupted). The connection is unusable afterwards.
	ErrTampered = record.ErrAuth
	// ErrTruncated means the stream ended without the peer's close record: data may be
	// missing. A clean end of stream is io.EOF.
	ErrTruncated = record.ErrTruncated
	// ErrRevoked means the server ended the connection because the client's access was
	// revoked (its key removed, its grant withdrawn): its close record said so.
	ErrRevoked = record.ErrRevoked
)
