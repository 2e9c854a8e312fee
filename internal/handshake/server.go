// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// DefaultMaxClockSkew is how far an authenticator's time may be from the server's clock.
const DefaultMaxClockSkew = 5 * time.Minute

// ServerConfig is what the server side of a handshake needs. It must not be modified while
// handshakes use it.
type ServerConfig struct {
	HostKey ed25519.PrivateKey
	Service string
	// Tickets issues and opens resumption tickets; nil disables resumption.
	Tickets *TicketKeys
	// MaxClockSkew bounds |client time - server time| (DefaultMaxClockSkew if zero).
	MaxClockSkew time.Duration
	// Authorize decides whether the user may use this service with this key. It is called on
	// every full handshake after the signature verified (res holds the statement and
	// signature) and on every resumption, before anything is sent that accepts the client;
	// it is the last step, so it is also where an audit record is written. An error refuses;
	// a *Refusal's code is used, any other error means CodeNotAuthorized.
	Authorize func(res *Result) error
	// Refused, if set, is called with every refusal before its code is sent to the client,
	// so the decision is logged (and audited) before the client learns it.
	Refused func(r *Refusal)
	// Replay remembers authenticators seen within the skew window (nil: none kept).
	Replay *ReplayCache
	Now    func() time.Time
	// Ephemeral returns the server's ephemeral X25519 key for a handshake.
	Ephemeral func() (x25519.KeyPair, error)
	// Rand supplies resumption secrets.
	Rand io.Reader
}

func (cfg *ServerConfig) now() time.Time {
	if cfg.Now != nil {
		return cfg.Now()
	}
	return time.Now()
}

func (cfg *ServerConfig) skew() time.Duration {
	if cfg.MaxClockSkew > 0 {
		return cfg.MaxClockSkew
	}
	return DefaultMaxClockSkew
}

// server holds the state of one server-side handshake.
type server struct {
	cfg      *ServerConfig
	rc       *record.Conn
	hello    *clientHello
	prologue []byte
	eph      x25519.KeyPair
	hostWire []byte
	hostPub  ssh.PublicKey
	res      Result
}

// RunServer runs the server side of a handshake on rc. On success rc is keyed and the result
// names the authenticated user. On failure the client has been sent an error code (when the
// connection still allowed it) and the error is a *Refusal with the reason, or an I/O error.
func RunServer(rc *record.Conn, cfg *ServerConfig) (*Result, error) {
	s := &server{cfg: cfg, rc: rc}
	hostPub, err := ssh.NewPublicKey(cfg.HostKey.Public())
	if err != nil {
		return nil, err
	}
	s.hostPub, s.hostWire = hostPub, hostPub.Marshal()
	s.res.HostKey, s.res.Service = hostPub, cfg.Service
	if err := s.readHello(); err != nil {
		return nil, err
	}
	s.res.Offered = s.hello.Mode == ModeResume
	if s.eph, err = cfg.Ephemeral(); err != nil {
		return nil, s.alert(&Refusal{Code: CodeInternalError, Reason: "ephemeral key", Err: err})
	}
	defer s.eph.Zero()
	if s.hello.Mode == ModeResume {
		ok, err := s.resume()
		if err != nil {
			return nil, err
		}
		if ok {
			return &s.res, nil
		}
	}
	if err := s.full(); err != nil {
		return nil, err
	}
	return &s.res, nil
}

// readHello reads and checks message 1.
func (s *server) readHello() error {
	typ, body, err := s.rc.ReadFrame(MaxClientHello, record.FrameClientHello)
	if err != nil {
		if errors.Is(err, record.ErrFrameTooLarge) {
			return s.alert(&Refusal{Code: CodeProtocolError, Reason: "oversized ClientHello", Err: err})
		}
		if errors.Is(err, record.ErrUnexpectedFrame) {
			return s.alert(&Refusal{Code: CodeProtocolError, Reason: "frame instead of ClientHello", Err: err})
		}
		return fmt.Errorf("netauth: reading ClientHello: %w", err)
	}
	if typ != record.FrameClientHello {
		return s.alert(&Refusal{Code: CodeProtocolError, Reason: fmt.Sprintf("frame type 0x%02x instead of ClientHello", typ)})
	}
	h, err := parseClientHello(body)
	if errors.Is(err, errVersion) {
		return s.alert(&Refusal{Code: CodeVersionUnsupported, Reason: "client protocol version not supported"})
	}
	if err != nil {
		return s.alert(&Refusal{Code: CodeProtocolError, Reason: "malformed ClientHello", Err: err})
	}
	s.hello, s.prologue = h, prologue(body, len(h.Noise))
	return nil
}

// alert sends a refusal's code in a plaintext alert frame (before keys exist).
func (s *server) alert(r *Refusal) error {
	if s.cfg.Refused != nil {
		s.cfg.Refused(r)
	}
	s.rc.QueueRaw(alertFrame(r.Code))
	_ = s.rc.Flush()
	return r
}

// refuse sends a refusal's code in an encrypted verdict (after keys exist).
func (s *server) refuse(r *Refusal) error {
	r.User, r.Resumed = s.res.User, s.res.Resumed
	if s.res.UserKey != nil {
		r.KeyFP = keys.Fingerprint(s.res.UserKey)
	}
	r.Statement, r.Signature = s.res.Statement, s.res.Signature
	if s.cfg.Refused != nil {
		s.cfg.Refused(r)
	}
	v := &verdict{Code: r.Code}
	if err := s.rc.QueueRecord(record.TypeVerdict, v.marshal()); err == nil {
		_ = s.rc.Flush()
	}
	return r
}

// resume tries the offered ticket. It reports false (and no error) when the server should
// fall back to a full handshake: a ticket that does not open, has expired, belongs elsewhere,
// or whose user is no longer authorized.
func (s *server) resume() (bool, error) {
	if s.cfg.Tickets == nil {
		return false, nil
	}
	now := s.cfg.now()
	t, err := s.cfg.Tickets.open(s.hello.Ticket, now)
	if err != nil {
		return false, nil
	}
	defer clear(t.Secret[:])
	if t.Service != s.cfg.Service || t.HostKeyHash != hostKeyHash(s.hostWire) {
		return false, nil
	}
	userKey, err := ssh.ParsePublicKey(t.Key)
	if err != nil {
		return false, nil
	}
	hs, err := newNoise(false, s.prologue, &s.eph, t.Secret[:])
	if err != nil {
		return false, err
	}
	if _, _, _, err := hs.ReadMessage(nil, s.hello.Noise); err != nil {
		return false, nil // the client does not hold the ticket's secret
	}
	msg2, cs1, cs2, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return false, nil // e.g. a low-order ephemeral: the full handshake refuses it properly
	}
	res := s.res
	res.Resumed, res.User, res.UserKey = true, t.User, userKey
	res.HandshakeHash = append([]byte(nil), hs.ChannelBinding()...)
	res.Issued = time.Unix(int64(t.Issued), 0)
	if err := s.cfg.Authorize(&res); err != nil {
		return false, nil
	}
	s.rc.QueueRaw((&serverHello{Mode: ModeResume, Noise: msg2}).marshal())
	recv, send := halves(cs1, cs2)
	s.rc.SetKeys(send, recv)
	if err := s.rc.Flush(); err != nil {
		return false, fmt.Errorf("netauth: sending ServerHello: %w", err)
	}
	s.res = res
	return true, nil
}

// full runs the NN handshake, authenticates the host, and checks the user's authenticator.
func (s *server) full() error {
	hs, err := newNoise(false, s.prologue, &s.eph, nil)
	if err != nil {
		return err
	}
	if _, _, _, err := hs.ReadMessage(nil, s.hello.Noise[:noiseMsg1Full]); err != nil {
		return s.alert(&Refusal{Code: CodeProtocolError, Reason: "bad Noise message 1", Err: err})
	}
	msg2, cs1, cs2, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return s.alert(&Refusal{Code: CodeProtocolError, Reason: "Noise message 2", Err: err})
	}
	s.res.HandshakeHash = append([]byte(nil), hs.ChannelBinding()...)
	s.rc.QueueRaw((&serverHello{Mode: ModeFull, Noise: msg2}).marshal())
	recv, send := halves(cs1, cs2)
	s.rc.SetKeys(send, recv)

	sa := &serverAuth{HostKey: s.hostWire, Signature: hostSignature(s.cfg.HostKey, s.res.HandshakeHash), Service: s.cfg.Service}
	if err := s.rc.QueueRecord(record.TypeServerAuth, sa.marshal()); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("netauth: sending ServerHello: %w", err)
	}
	return s.checkClient()
}

// checkClient reads message 3 and decides.
func (s *server) checkClient() error {
	typ, content, err := s.rc.ReadRecord()
	if err != nil {
		if errors.Is(err, record.ErrAuth) || errors.Is(err, record.ErrUnexpectedFrame) || errors.Is(err, record.ErrFrameTooShort) {
			return s.refuse(&Refusal{Code: CodeProtocolError, Reason: "bad record instead of ClientAuth", Err: err})
		}
		return fmt.Errorf("netauth: reading ClientAuth: %w", err)
	}
	if typ != record.TypeClientAuth {
		return s.refuse(&Refusal{Code: CodeProtocolError, Reason: fmt.Sprintf("record type 0x%02x instead of ClientAuth", typ)})
	}
	ca, err := parseClientAuth(content)
	if err != nil {
		return s.refuse(&Refusal{Code: CodeProtocolError, Reason: "malformed ClientAuth", Err: err})
	}
	s.res.User = ca.User
	now := s.cfg.now()
	if ca.Time > 1<<62 {
		return s.refuse(&Refusal{Code: CodeProtocolError, Reason: "authenticator time out of range"})
	}
	t := time.Unix(int64(ca.Time), 0)
	if d := now.Sub(t); d > s.cfg.skew() || -d > s.cfg.skew() {
		return s.refuse(&Refusal{Code: CodeClockSkew, Reason: fmt.Sprintf("authenticator time %s is %s from server time", t.UTC().Format(time.RFC3339), d.Round(time.Second))})
	}
	st := &keys.Statement{HandshakeHash: s.res.HandshakeHash, HostKey: s.hostPub, Service: s.cfg.Service, User: ca.User, Time: t}
	stmt, err := st.Marshal()
	if err != nil {
		return s.refuse(&Refusal{Code: CodeProtocolError, Reason: "statement", Err: err})
	}
	s.res.Statement, s.res.Signature = stmt, ca.SSHSIG
	userKey, err := keys.Verify(ca.SSHSIG, Namespace, stmt)
	if err != nil {
		return s.refuse(&Refusal{Code: CodeAuthFailed, Reason: "authenticator does not verify", Err: err})
	}
	s.res.UserKey = userKey
	if s.cfg.Replay != nil {
		if err := s.cfg.Replay.Add(ca.SSHSIG, t.Add(s.cfg.skew()), now); errors.Is(err, ErrReplayed) {
			return s.refuse(&Refusal{Code: CodeAuthFailed, Reason: "authenticator replayed", Err: err})
		} else if err != nil {
			return s.refuse(&Refusal{Code: CodeOverloaded, Reason: "replay cache full", Err: err})
		}
	}
	s.res.Issued = t
	if err := s.cfg.Authorize(&s.res); err != nil {
		var r *Refusal
		if !errors.As(err, &r) {
			r = &Refusal{Code: CodeNotAuthorized, Reason: "not authorized", Err: err}
		}
		return s.refuse(r)
	}
	return s.accept(now)
}

// accept sends the verdict with a fresh ticket.
func (s *server) accept(now time.Time) error {
	v := &verdict{Code: CodeOK}
	if tk := s.cfg.Tickets; tk != nil {
		tc := &ticketContents{
			Issued:      uint64(now.Unix()),
			Expiry:      uint64(now.Add(tk.Lifetime()).Unix()),
			User:        s.res.User,
			Key:         s.res.UserKey.Marshal(),
			Service:     s.cfg.Service,
			HostKeyHash: hostKeyHash(s.hostWire),
		}
		if _, err := io.ReadFull(s.cfg.Rand, tc.Secret[:]); err != nil {
			return s.refuse(&Refusal{Code: CodeInternalError, Reason: "resumption secret", Err: err})
		}
		ticket, err := tk.seal(tc, now)
		if err == nil {
			v.Ticket, v.Secret, v.Lifetime = ticket, append([]byte(nil), tc.Secret[:]...), uint32(tk.Lifetime()/time.Second)
		}
		clear(tc.Secret[:])
	}
	err := s.rc.QueueRecord(record.TypeVerdict, v.marshal())
	clear(v.Secret)
	if err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("netauth: sending Verdict: %w", err)
	}
	return nil
}
