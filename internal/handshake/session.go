// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"errors"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"ubns.dev/netauth/internal/keys"
)

const sessionVersion = 1

// MaxSessionUserKey bounds a Session's user key: a plain key or a user certificate, as large
// as the SSHSIG authenticator that carried it.
const MaxSessionUserKey = keys.MaxSignatureSize

// MaxSessionSize bounds a marshaled Session: every field at its limit.
const MaxSessionSize = 1 + 2 + MaxTicketSize + 2 + PSKLen + 8 + 8 + 2 + MaxHostKeyLen + 2 + MaxSessionUserKey + 2 + MaxNameLen + 2 + MaxNameLen

// Session is what a client keeps to resume: the server's ticket, the resumption secret, and
// the identity established by the full handshake that issued it. It is secret (it holds the
// resumption secret) and lives in the user's agent or in process memory.
type Session struct {
	Ticket  []byte
	Secret  []byte
	Expiry  time.Time
	Issued  time.Time // time of the full handshake
	HostKey []byte    // SSH wire form
	UserKey []byte    // SSH wire form
	Service string
	User    string
}

// Marshal encodes the session for a ticket cache.
func (s *Session) Marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(sessionVersion)
	addBytes16(&b, s.Ticket)
	addBytes16(&b, s.Secret)
	b.AddUint64(uint64(s.Expiry.Unix()))
	b.AddUint64(uint64(s.Issued.Unix()))
	addBytes16(&b, s.HostKey)
	addBytes16(&b, s.UserKey)
	addBytes16(&b, []byte(s.Service))
	addBytes16(&b, []byte(s.User))
	return b.BytesOrPanic()
}

// ParseSession decodes a session from a ticket cache.
func ParseSession(p []byte) (*Session, error) {
	if len(p) > MaxSessionSize {
		return nil, errors.New("netauth: cached session too large")
	}
	s := cryptobyte.String(p)
	out := &Session{}
	var v uint8
	var exp, iss uint64
	var svc, user []byte
	if !s.ReadUint8(&v) || v != sessionVersion || !readBytes16(&s, &out.Ticket, MaxTicketSize) ||
		!readBytes16(&s, &out.Secret, PSKLen) || !s.ReadUint64(&exp) || !s.ReadUint64(&iss) ||
		!readBytes16(&s, &out.HostKey, MaxHostKeyLen) || !readBytes16(&s, &out.UserKey, MaxSessionUserKey) ||
		!readBytes16(&s, &svc, MaxNameLen) || !readBytes16(&s, &user, MaxNameLen) || !s.Empty() ||
		len(out.Secret) != PSKLen || len(out.Ticket) == 0 || exp > 1<<62 || iss > 1<<62 {
		return nil, errors.New("netauth: malformed cached session")
	}
	out.Expiry, out.Issued = time.Unix(int64(exp), 0), time.Unix(int64(iss), 0)
	out.Service, out.User = string(svc), string(user)
	return out, nil
}

// Zero wipes the session's secret.
func (s *Session) Zero() { clear(s.Secret) }
