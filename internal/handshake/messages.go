// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/noise"
	"ubns.dev/netauth/internal/record"
)

// Protocol constants (docs/PROTOCOL.md §1-§5).
const (
	Magic = "netauth" // first bytes of every ClientHello body
	// Version is the only protocol version this implementation speaks: 3, whose every full
	// handshake is hybrid (X25519 and ML-KEM-768). There is no negotiation: a ClientHello of
	// any other version is refused with version_unsupported.
	Version = 3

	ModeFull   = 0 // Noise NNhfs (X25519 + ML-KEM-768) followed by server and client authentication
	ModeResume = 1 // Noise NNpsk0 keyed by a ticket's resumption secret

	NoiseFull   = noise.ProtocolNNhfs  // "Noise_NNhfs_25519+MLKEM768_AESGCM_SHA256"
	NoiseResume = noise.ProtocolNNpsk0 // "Noise_NNpsk0_25519_AESGCM_SHA256"

	// Namespace is the SSHSIG namespace of user authenticators.
	Namespace = "netauth-v1@ubns.dev"
	// HostSigContext prefixes the handshake hash in the data a host key signs.
	HostSigContext = "netauth-v1 host signature\x00"
	// BinderContext prefixes the handshake hash in a resumption binder.
	BinderContext = "netauth-v1 resumption binder\x00"
	// BinderLen is the size of a resumption binder (HMAC-SHA256).
	BinderLen = 32

	DHLen         = noise.DHLen
	HashLen       = noise.HashLen
	PSKLen        = 32
	KEMKeyLen     = noise.KEMPublicKeyLen  // ML-KEM-768 encapsulation key, 1184
	KEMCtLen      = noise.KEMCiphertextLen // ML-KEM-768 ciphertext, 1088
	MaxTicketSize = 2048                   // opaque ticket as the server issues it
	MaxNameLen    = 64                     // user and service names
	// MaxHostKeyLen bounds ServerAuth's host_key: an ssh-ed25519 key (51 bytes: 4+11+4+32)
	// or an ssh-ed25519-cert-v01@openssh.com host certificate of that key (§3.3).
	MaxHostKeyLen = keys.MaxHostCertLen   // 2048
	MaxHostSigLen = 83                    // ssh-ed25519 signature blob: 4+11+4+64
	MaxSSHSIGLen  = keys.MaxSignatureSize // user authenticator

	// The Noise messages of each mode (§3.1, §3.2, §4), with empty payloads.
	//
	// NoiseMessage1Full is NNhfs message 1: e || ek (the encapsulation key, in clear).
	NoiseMessage1Full = noise.NNhfsMessage1Size // 1216
	// NoiseMessage1Resume is NNhfs message 1 followed by the 16-byte tag of NNpsk0 message
	// 1: e || ek || tag. NNpsk0 message 1 is its first 32 and last 16 bytes (e || tag), NNhfs
	// message 1, for a fallback, its first 1216.
	NoiseMessage1Resume = noise.NNhfsMessage1Size + noise.TagLen // 1232
	// NoiseMessage2Full is NNhfs message 2: e || encrypted ciphertext || tag.
	NoiseMessage2Full = noise.NNhfsMessage2Size // 1152
	// NoiseMessage2Resume is NNpsk0 message 2: e || tag.
	NoiseMessage2Resume = noise.NNpsk0Message2Size // 48

	// MaxClientHello bounds the ClientHello body: magic, version, mode, ticket, Noise message.
	MaxClientHello = len(Magic) + 2 + 2 + MaxTicketSize + NoiseMessage1Resume // 3291
	// MaxServerHello bounds the ServerHello body: the mode and the larger Noise message 2.
	MaxServerHello = 1 + NoiseMessage2Full // 1153
	// AlertLen is the size of an alert body: code and the sender's highest version.
	AlertLen = 2
)

var errMalformed = errors.New("malformed message")

// resumptionBinder proves, after message 2, that the client holds the ticket's resumption
// secret: HMAC-SHA256(secret, BinderContext || handshake hash). The handshake hash covers the
// server's fresh ephemeral key, so a binder cannot be replayed from another handshake, and
// the server admits a resumed session only once it has checked it.
func resumptionBinder(secret, h []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(BinderContext))
	m.Write(h)
	return m.Sum(nil)
}

// clientHello is the first message (frame type ClientHello).
type clientHello struct {
	Version byte
	Mode    byte
	Ticket  []byte // ModeResume only
	Noise   []byte // Noise message 1
}

// body returns the ClientHello frame body.
func (m *clientHello) body() []byte {
	var b cryptobyte.Builder
	b.AddBytes([]byte(Magic))
	b.AddUint8(m.Version)
	b.AddUint8(m.Mode)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.Ticket) })
	b.AddBytes(m.Noise)
	return b.BytesOrPanic()
}

// frame returns a frame of type typ carrying body.
func frame(typ byte, body []byte) []byte {
	f := make([]byte, 0, record.HeaderLen+len(body))
	f = append(f, typ, byte(len(body)>>8), byte(len(body)))
	return append(f, body...)
}

// parseClientHello parses a ClientHello body. Only a version mismatch is reported as
// errVersion, so the server can answer with its version.
func parseClientHello(body []byte) (*clientHello, error) {
	s := cryptobyte.String(body)
	var magic []byte
	m := &clientHello{}
	if !s.ReadBytes(&magic, len(Magic)) || string(magic) != Magic {
		return nil, fmt.Errorf("%w: not a netauth ClientHello", errMalformed)
	}
	if !s.ReadUint8(&m.Version) {
		return nil, errMalformed
	}
	if m.Version != Version {
		return nil, errVersion
	}
	var ticket cryptobyte.String
	if !s.ReadUint8(&m.Mode) || !s.ReadUint16LengthPrefixed(&ticket) {
		return nil, errMalformed
	}
	// Exact sizes: an encapsulation key of the wrong size is refused here, before anything
	// parses it.
	switch m.Mode {
	case ModeFull:
		if len(ticket) != 0 || len(s) != NoiseMessage1Full {
			return nil, fmt.Errorf("%w: bad full-mode ClientHello", errMalformed)
		}
	case ModeResume:
		if len(ticket) == 0 || len(ticket) > MaxTicketSize || len(s) != NoiseMessage1Resume {
			return nil, fmt.Errorf("%w: bad resume-mode ClientHello", errMalformed)
		}
	default:
		return nil, fmt.Errorf("%w: unknown mode", errMalformed)
	}
	m.Ticket = []byte(ticket)
	m.Noise = []byte(s)
	return m, nil
}

var errVersion = errors.New("unsupported protocol version")

// serverHello is the server's Noise response (frame type ServerHello).
type serverHello struct {
	Mode  byte
	Noise []byte
}

func (m *serverHello) marshal() []byte {
	n := 1 + len(m.Noise)
	f := make([]byte, 0, record.HeaderLen+n)
	f = append(f, record.FrameServerHello, byte(n>>8), byte(n), m.Mode)
	return append(f, m.Noise...)
}

// parseServerHello parses a ServerHello body: its size is exact for its mode, so a ciphertext
// of the wrong size fails here.
func parseServerHello(body []byte) (*serverHello, error) {
	switch {
	case len(body) == 1+NoiseMessage2Full && body[0] == ModeFull:
	case len(body) == 1+NoiseMessage2Resume && body[0] == ModeResume:
	default:
		return nil, fmt.Errorf("%w: bad ServerHello", errMalformed)
	}
	return &serverHello{Mode: body[0], Noise: body[1:]}, nil
}

// serverAuth is the first encrypted record of a full handshake, from the server.
type serverAuth struct {
	HostKey   []byte // SSH wire form of the ssh-ed25519 host key, or of a host certificate of it
	Signature []byte // SSH wire form of the Ed25519 signature of HostSigContext || h
	Service   string
}

func (m *serverAuth) marshal() []byte {
	var b cryptobyte.Builder
	addBytes16(&b, m.HostKey)
	addBytes16(&b, m.Signature)
	addBytes16(&b, []byte(m.Service))
	return b.BytesOrPanic()
}

func parseServerAuth(c []byte) (*serverAuth, error) {
	s := cryptobyte.String(c)
	m := &serverAuth{}
	var svc []byte
	if !readBytes16(&s, &m.HostKey, MaxHostKeyLen) || !readBytes16(&s, &m.Signature, MaxHostSigLen) ||
		!readBytes16(&s, &svc, MaxNameLen) || !s.Empty() || len(m.HostKey) == 0 || len(m.Signature) == 0 {
		return nil, fmt.Errorf("%w: bad ServerAuth", errMalformed)
	}
	m.Service = string(svc)
	if err := keys.ValidName(m.Service); err != nil {
		return nil, fmt.Errorf("%w: bad service name in ServerAuth", errMalformed)
	}
	return m, nil
}

// clientAuth is the client's authentication record of a full handshake (message 3).
type clientAuth struct {
	User   string
	Time   uint64 // client time, Unix seconds, as in the signed statement
	SSHSIG []byte // binary SSHSIG over the statement
}

func (m *clientAuth) marshal() []byte {
	var b cryptobyte.Builder
	addBytes16(&b, []byte(m.User))
	b.AddUint64(m.Time)
	addBytes16(&b, m.SSHSIG)
	return b.BytesOrPanic()
}

func parseClientAuth(c []byte) (*clientAuth, error) {
	s := cryptobyte.String(c)
	m := &clientAuth{}
	var user []byte
	if !readBytes16(&s, &user, MaxNameLen) || !s.ReadUint64(&m.Time) ||
		!readBytes16(&s, &m.SSHSIG, MaxSSHSIGLen) || !s.Empty() || len(m.SSHSIG) == 0 {
		return nil, fmt.Errorf("%w: bad ClientAuth", errMalformed)
	}
	m.User = string(user)
	if err := keys.ValidName(m.User); err != nil {
		return nil, fmt.Errorf("%w: bad user name in ClientAuth", errMalformed)
	}
	return m, nil
}

// verdict is the server's answer to message 3. It carries no secret: it travels under the
// handshake-record keys, which netauthd's acceptor holds (the resumption secret comes from the
// key schedule, §3.9).
type verdict struct {
	Code     Code
	Lifetime uint32 // seconds the ticket is valid
	Ticket   []byte // empty: no ticket
}

func (m *verdict) marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(uint8(m.Code))
	b.AddUint32(m.Lifetime)
	addBytes16(&b, m.Ticket)
	return b.BytesOrPanic()
}

func parseVerdict(c []byte) (*verdict, error) {
	s := cryptobyte.String(c)
	m := &verdict{}
	var code uint8
	if !s.ReadUint8(&code) || !s.ReadUint32(&m.Lifetime) || !readBytes16(&s, &m.Ticket, MaxTicketSize) || !s.Empty() {
		return nil, fmt.Errorf("%w: bad Verdict", errMalformed)
	}
	m.Code = Code(code)
	if m.Code != CodeOK && (len(m.Ticket) != 0 || m.Lifetime != 0) {
		return nil, fmt.Errorf("%w: ticket in a refusal", errMalformed)
	}
	return m, nil
}

// AlertFrame returns the plaintext alert frame that refuses a connection with code before
// keys exist: all the peer learns.
func AlertFrame(code Code) []byte {
	return frame(record.FrameAlert, []byte{byte(code), Version})
}

// Refuse sends the alert for code on a connection nothing has been read from (as a server
// does when it is overloaded), giving the peer a second to take it, and closes it.
func Refuse(nc net.Conn, code Code) {
	_ = nc.SetDeadline(time.Now().Add(time.Second))
	_, _ = nc.Write(AlertFrame(code))
	nc.Close()
}

func addBytes16(b *cryptobyte.Builder, v []byte) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
}

// readBytes16 reads a 16-bit length-prefixed field of at most max bytes into out (a copy).
func readBytes16(s *cryptobyte.String, out *[]byte, max int) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) || len(v) > max {
		return false
	}
	*out = append([]byte(nil), v...)
	return true
}
