// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/record"
)

// The monitor protocol's payloads (docs/SECURITY.md lists the requests and what each
// trusts). Fields are length-prefixed with 16 bits (24 for a transport state); every limit is
// checked while parsing, before anything is used.

var errBadRequest = errors.New("malformed monitor request")

// The largest Noise messages a Begin carries: the client's message 1 of a resume-mode
// ClientHello (e || ML-KEM-768 encapsulation key || tag), and the server's message 2 of a
// hybrid full handshake (e || encrypted ML-KEM-768 ciphertext || tag).
const (
	maxNoiseMessage1 = handshake.NoiseMessage1Resume // 1232
	maxNoiseMessage2 = handshake.NoiseMessage2Full   // 1152
)

func addString(b *cryptobyte.Builder, v []byte) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

func readString(s *cryptobyte.String, out *[]byte, max int) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) || len(v) > max {
		return false
	}
	*out = append([]byte(nil), v...)
	return true
}

// beginRequest is TypeBegin: message 1 of a handshake on a service.
type beginRequest struct {
	service string
	req     handshake.BeginRequest
}

func (m *beginRequest) marshal() []byte {
	var b cryptobyte.Builder
	addString(&b, []byte(m.service))
	addString(&b, []byte(m.req.Client))
	b.AddUint8(m.req.Mode)
	addString(&b, m.req.Ticket)
	addString(&b, m.req.Noise)
	return b.BytesOrPanic()
}

func parseBeginRequest(p []byte) (*beginRequest, error) {
	s := cryptobyte.String(p)
	var svc, client []byte
	m := &beginRequest{}
	if !readString(&s, &svc, handshake.MaxNameLen) || !readString(&s, &client, 256) || !s.ReadUint8(&m.req.Mode) ||
		!readString(&s, &m.req.Ticket, handshake.MaxTicketSize) || !readString(&s, &m.req.Noise, maxNoiseMessage1) || !s.Empty() {
		return nil, errBadRequest
	}
	m.service, m.req.Client = string(svc), string(client)
	return m, nil
}

func marshalBeginResponse(r *handshake.BeginResponse) []byte {
	var b cryptobyte.Builder
	b.AddUint8(0)
	b.AddUint64(r.Session)
	b.AddUint8(boolByte(r.Resumed))
	addString(&b, r.Noise)
	b.AddBytes(r.Send[:])
	b.AddBytes(r.Recv[:])
	addString(&b, r.HandshakeHash)
	addString(&b, r.HostKey)
	addString(&b, r.HostSig)
	addString(&b, []byte(r.Service))
	addString(&b, []byte(r.User))
	return b.BytesOrPanic()
}

func parseBeginResponse(p []byte) (*handshake.BeginResponse, error) {
	s := cryptobyte.String(p)
	r := &handshake.BeginResponse{}
	var resumed uint8
	var send, recv, svc, user []byte
	if !s.ReadUint64(&r.Session) || !s.ReadUint8(&resumed) || !readString(&s, &r.Noise, maxNoiseMessage2) ||
		!s.ReadBytes(&send, 32) || !s.ReadBytes(&recv, 32) || !readString(&s, &r.HandshakeHash, 64) ||
		!readString(&s, &r.HostKey, handshake.MaxHostKeyLen) || !readString(&s, &r.HostSig, 1024) || !readString(&s, &svc, handshake.MaxNameLen) ||
		!readString(&s, &user, handshake.MaxNameLen) || !s.Empty() {
		return nil, errBadRequest
	}
	r.Resumed = resumed == 1
	copy(r.Send[:], send)
	copy(r.Recv[:], recv)
	clear(send)
	clear(recv)
	r.Service, r.User = string(svc), string(user)
	return r, nil
}

// acceptedReply is the reply to a Commit the monitor accepted: the status alone. What was
// verified went to the worker with the connection and its keys; the acceptor learns nothing
// it did not send.
var acceptedReply = []byte{0}

// parseAccepted reads the rest of an accepted Commit's reply (nothing).
func parseAccepted(p []byte) (*handshake.Accepted, error) {
	if len(p) != 0 {
		return nil, errBadRequest
	}
	return &handshake.Accepted{}, nil
}

// sessionRef names a session of a service: TypeAbort.
type sessionRef struct {
	service string
	session uint64
}

func (m *sessionRef) marshal() []byte {
	var b cryptobyte.Builder
	addString(&b, []byte(m.service))
	b.AddUint64(m.session)
	return b.BytesOrPanic()
}

func parseSessionRef(s *cryptobyte.String) (sessionRef, bool) {
	var svc []byte
	var r sessionRef
	ok := readString(s, &svc, handshake.MaxNameLen) && s.ReadUint64(&r.session)
	r.service = string(svc)
	return r, ok
}

// commitRequest is TypeCommit: message 3 of a handshake (an authenticator, or a resumption's
// binder) together with the connection's transport state; its descriptor travels with the
// message. The monitor decides and, when it accepts, hands the connection to the worker, which
// sends the verdict.
type commitRequest struct {
	service string
	commit  handshake.CommitRequest
	state   *record.State
}

func (m *commitRequest) marshal() []byte {
	var b cryptobyte.Builder
	addString(&b, []byte(m.service))
	b.AddUint8(boolByte(m.commit.Resumed))
	b.AddUint64(m.commit.Session)
	addString(&b, []byte(m.commit.User))
	b.AddUint64(m.commit.Time)
	addString(&b, m.commit.SSHSIG)
	addString(&b, m.commit.Binder)
	st := m.state.Marshal()
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(st) })
	clear(st)
	return b.BytesOrPanic()
}

func parseCommit(p []byte) (*commitRequest, error) {
	s := cryptobyte.String(p)
	var svc, user []byte
	var resumed uint8
	var st cryptobyte.String
	m := &commitRequest{}
	if !readString(&s, &svc, handshake.MaxNameLen) || !s.ReadUint8(&resumed) || resumed > 1 ||
		!s.ReadUint64(&m.commit.Session) || !readString(&s, &user, handshake.MaxNameLen) || !s.ReadUint64(&m.commit.Time) ||
		!readString(&s, &m.commit.SSHSIG, handshake.MaxSSHSIGLen) || !readString(&s, &m.commit.Binder, handshake.BinderLen) ||
		!s.ReadUint24LengthPrefixed(&st) || !s.Empty() {
		return nil, errBadRequest
	}
	state, err := record.ParseState(st)
	clear(st)
	if err != nil {
		return nil, err
	}
	m.service, m.commit.Resumed, m.commit.User, m.state = string(svc), resumed == 1, string(user), state
	return m, nil
}

func parseAbort(p []byte) (sessionRef, error) {
	s := cryptobyte.String(p)
	r, ok := parseSessionRef(&s)
	if !ok || !s.Empty() {
		return r, errBadRequest
	}
	return r, nil
}

// replyCode is the first byte of a TypeReply: 0 for success (the rest is the response), or
// the handshake code of a refusal (nothing follows).
func replyRefusal(code handshake.Code) []byte { return []byte{byte(code)} }

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
