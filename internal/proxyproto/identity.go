// SPDX-License-Identifier: Apache-2.0

package proxyproto

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"ubns.dev/netauth/internal/identity"
)

// The TLV types netauth uses for the identity of a forwarded connection, in the range the
// PROXY protocol reserves for custom use (0xE0 to 0xEF). Every value is text, except the
// handshake hash, which goes in the standard UNIQUE_ID TLV.
const (
	// TypeUser is the authenticated user name.
	TypeUser byte = 0xE0
	// TypeKeyFingerprint is the SHA-256 fingerprint of the user's key, as ssh-keygen prints
	// it ("SHA256:...").
	TypeKeyFingerprint byte = 0xE1
	// TypeKeyType is the user's key type ("ssh-ed25519", "ecdsa-sha2-nistp256", ...).
	TypeKeyType byte = 0xE2
	// TypeService is the netauth service name the client connected to.
	TypeService byte = 0xE3
	// TypeResumed is "1" for a connection resumed with a ticket, "0" for a full handshake.
	TypeResumed byte = 0xE4
	// TypeAuthTime is when the user last signed an authenticator, in RFC 3339 format: the
	// time of this handshake, or for a resumed one, of the full handshake that issued the
	// ticket.
	TypeAuthTime byte = 0xE5
)

// maxIdentityValue bounds each identity text value.
const maxIdentityValue = 256

// TLVs returns the identity TLVs of id, in the order of their types, UNIQUE_ID first: the
// handshake hash, the user, the key's fingerprint and type, the service, whether the session
// was resumed, and the authentication time.
func TLVs(id *identity.Identity) []TLV {
	resumed := "0"
	if id.Resumed {
		resumed = "1"
	}
	return []TLV{
		{TypeUniqueID, id.HandshakeHash},
		{TypeUser, []byte(id.User)},
		{TypeKeyFingerprint, []byte(id.KeyFingerprint)},
		{TypeKeyType, []byte(id.KeyType)},
		{TypeService, []byte(id.Service)},
		{TypeResumed, []byte(resumed)},
		{TypeAuthTime, []byte(id.AuthTime.UTC().Format(time.RFC3339))},
	}
}

// IdentityOf extracts the identity from a header's TLVs. It is strict: each identity TLV
// must be present exactly once, with a non-empty UTF-8 value of at most 256 bytes without
// control characters; the resumed flag must be "0" or "1", the time RFC 3339, and the
// UNIQUE_ID present and non-empty. A header that fails these checks did not come from
// netauthd and must be refused. The identity has no keys (Key and HostKey are nil): the
// header names the user's key by fingerprint and type only.
func IdentityOf(h *Header) (*identity.Identity, error) {
	if h.Command != Proxy {
		return nil, errors.New("proxyproto: a LOCAL header carries no identity")
	}
	vals := map[byte][]byte{}
	for _, t := range h.TLVs {
		switch t.Type {
		case TypeUniqueID, TypeUser, TypeKeyFingerprint, TypeKeyType, TypeService, TypeResumed, TypeAuthTime:
		default:
			continue
		}
		if _, dup := vals[t.Type]; dup {
			return nil, fmt.Errorf("proxyproto: identity TLV %#02x given twice", t.Type)
		}
		vals[t.Type] = t.Value
	}
	id := &identity.Identity{HandshakeHash: vals[TypeUniqueID]}
	if len(id.HandshakeHash) == 0 {
		return nil, errors.New("proxyproto: no UNIQUE_ID (handshake hash) TLV")
	}
	for _, f := range []struct {
		typ byte
		dst *string
	}{{TypeUser, &id.User}, {TypeKeyFingerprint, &id.KeyFingerprint}, {TypeKeyType, &id.KeyType}, {TypeService, &id.Service}} {
		v, ok := vals[f.typ]
		if !ok {
			return nil, fmt.Errorf("proxyproto: no identity TLV %#02x", f.typ)
		}
		if err := checkText(v); err != nil {
			return nil, fmt.Errorf("proxyproto: identity TLV %#02x: %w", f.typ, err)
		}
		*f.dst = string(v)
	}
	switch string(vals[TypeResumed]) {
	case "0":
	case "1":
		id.Resumed = true
	default:
		return nil, fmt.Errorf("proxyproto: resumed TLV %q: want \"0\" or \"1\"", vals[TypeResumed])
	}
	v, ok := vals[TypeAuthTime]
	if !ok || len(v) > maxIdentityValue {
		return nil, errors.New("proxyproto: no valid authentication time TLV")
	}
	t, err := time.Parse(time.RFC3339, string(v))
	if err != nil {
		return nil, fmt.Errorf("proxyproto: authentication time TLV: %w", err)
	}
	id.AuthTime = t
	return id, nil
}

// checkText checks an identity text value.
func checkText(v []byte) error {
	switch {
	case len(v) == 0:
		return errors.New("empty")
	case len(v) > maxIdentityValue:
		return fmt.Errorf("%d bytes; at most %d allowed", len(v), maxIdentityValue)
	case !utf8.Valid(v):
		return errors.New("not UTF-8")
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("control character %#02x", c)
		}
	}
	return nil
}
