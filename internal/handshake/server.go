// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/ed25519"
	"crypto/mlkem"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"ubns.dev/netauth/internal/krl"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/usercert"
	"ubns.dev/netauth/internal/x25519"
)

// DefaultMaxClockSkew is how far an authenticator's time may be from the server's clock.
const DefaultMaxClockSkew = 5 * time.Minute

// ServerConfig is what the server side of a handshake needs. It must not be modified while
// handshakes use it.
type ServerConfig struct {
	HostKey ed25519.PrivateKey
	// HostCert, if not nil, is an OpenSSH host certificate of HostKey that full handshakes
	// present in ServerAuth instead of the bare key (§3.3); see keys.LoadHostCertificate.
	// Tickets and statements still bind the key itself.
	HostCert *ssh.Certificate
	Service  string
	// Tickets issues and opens resumption tickets; nil disables resumption.
	Tickets *TicketKeys
	// MaxClockSkew bounds |client time - server time| (DefaultMaxClockSkew if zero).
	MaxClockSkew time.Duration
	// UserCerts decides authenticators signed with an OpenSSH user certificate
	// (docs/PROTOCOL.md §3.7, check 6): the core applies it, before Eligible, to a
	// certificate key (a full handshake's, or the one a ticket names, if UserCerts still
	// remembers it), and Eligible's FindKey then accepts the certificate in place of an
	// authorized key. nil: certificates are not authorized.
	UserCerts *usercert.Checker
	// RevokedKeys, if set, refuses revoked keys (not_authorized): a plain key, after
	// Eligible found it; a certificate, before UserCerts looks at it (revoked itself, by
	// serial or key id, or its key or its CA key).
	RevokedKeys *krl.Set
	// Eligible finds the user's key and decides whether the user may use this service with
	// it, before the client has proved anything. The key is the one whose SHA-256 (of its
	// wire form) is res.KeyHash: on a full handshake the key the signature names (res.Key
	// holds it already), on a resumption the one the ticket names (a ticket holds only the
	// hash; res.Key is nil). Eligible sets res.Key (SetKey) to that key, taken from the
	// user's keys, or refuses. It is called: on a full handshake before the signature is verified (so a
	// key of the client's own making costs a lookup, not a verification, and never reaches
	// the replay cache), and before a ticket is resumed (a ticket whose user lost the key or
	// the grant falls back to a full handshake, which then refuses clearly); and once more
	// after a resumption's binder verified, before Authorize, since the key may have been
	// revoked while the binder was awaited. It must be cheap and must not have side effects.
	// An error refuses (except at the ClientHello, where it means the fallback); a *Refusal's
	// code is used, any other error means CodeNotAuthorized. Required.
	Eligible func(res *Result) error
	// Resumable, if set, replaces Eligible for the check made before a ticket is resumed
	// (at the ClientHello), which decides only whether to resume or to fall back to a full
	// handshake: Eligible decides again, after the binder, before anything is admitted. So
	// Resumable may answer from what a recent Eligible of the same user and key found, as
	// netauthd's monitor does, instead of looking the key up a second time for one
	// resumption. It sets res.Key as Eligible does (and is checked the same way); an error
	// means the fallback.
	Resumable func(res *Result) error
	// Authorize admits a client that proved its identity: it is called on every full
	// handshake after the signature verified and the authenticator entered the replay cache
	// (res holds the statement and signature), and on every resumption after its binder
	// verified, before the verdict that accepts the client. It is the last step, so it may
	// have side effects (reserving capacity, writing the audit record, starting a worker).
	// What it returns is the admission: it becomes res.Admission, carried with the identity
	// in the Accepted result to whoever continues the connection. An error refuses, with a
	// *Refusal's code or CodeNotAuthorized. Required.
	Authorize func(res *Result) (admission any, err error)
	// Discard, if set, is called with a client Authorize admitted whose acceptance then could
	// not be completed (the core could not seal the Verdict, or Serve could not send it: the
	// client reset the connection right after its message 3), so that what the admission
	// holds is given back. It is called at most once per admission, and never for a
	// connection whose Verdict went out.
	Discard func(res *Result)
	// Refused, if set, is called with every refusal before its code is sent to the client,
	// so the decision is logged (and audited) before the client learns it.
	Refused func(r *Refusal)
	// Replay remembers authenticators seen within the skew window (nil: none kept).
	Replay *ReplayCache
	Now    func() time.Time
	// Ephemeral returns the server's ephemeral X25519 key for a handshake.
	Ephemeral func() (x25519.KeyPair, error)
	// Encapsulate, if set, replaces the ML-KEM-768 encapsulation of a full handshake
	// (kem.Encapsulate, randomness from crypto/rand). Tests set it to derandomized
	// encapsulation (crypto/mlkem/mlkemtest) to make reproducible handshakes, or to count
	// encapsulations; a server has no reason to.
	Encapsulate func(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error)
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

// RunServer runs the server side of a handshake on rc with a Core of its own for cfg (the
// in-process server). On success rc is keyed and the result names the authenticated user. On
// failure the client has been sent an error code (when the connection still allowed it) and
// the error is a *Refusal with the reason, or an I/O error.
func RunServer(rc *record.Conn, cfg *ServerConfig) (*Result, error) {
	core, err := NewServerCore(cfg, 0)
	if err != nil {
		return nil, err
	}
	return Serve(rc, core, rc.RemoteAddr().String(), cfg.Refused)
}

// server holds the framing side of one server-side handshake.
type server struct {
	rc      *record.Conn
	core    Core
	client  string
	refused func(*Refusal)
	session uint64 // from Begin; 0 before
	res     Result
}

// Serve runs the framing side of a server handshake on rc: it reads and parses every
// message, asks core for each decision, and runs the record layer with the keys core gives.
// refused, if set, is called with the refusals the framing side itself makes (malformed
// messages) before their code is sent; core reports its own.
func Serve(rc *record.Conn, core Core, client string, refused func(*Refusal)) (*Result, error) {
	s := &server{rc: rc, core: core, client: client, refused: refused}
	s.res.Client = client
	res, err := s.run()
	if err != nil && s.session != 0 {
		core.Abort(s.session)
	}
	return res, err
}

func (s *server) run() (*Result, error) {
	hello, err := s.readHello()
	if err != nil {
		return nil, err
	}
	s.res.Offered = hello.Mode == ModeResume
	begin, err := s.core.Begin(&BeginRequest{Client: s.client, Mode: hello.Mode, Ticket: hello.Ticket, Noise: hello.Noise})
	if err != nil {
		return nil, s.sendAlert(err)
	}
	defer clear(begin.Send[:])
	defer clear(begin.Recv[:])
	s.session = begin.Session
	s.res.Session, s.res.Service, s.res.HandshakeHash = begin.Session, begin.Service, begin.HandshakeHash
	mode := byte(ModeFull)
	if begin.Resumed {
		mode = ModeResume
	}
	s.rc.QueueRaw((&serverHello{Mode: mode, Noise: begin.Noise}).marshal())
	s.rc.SetKeys(record.NewHalf(begin.Send, 0), record.NewHalf(begin.Recv, 0))
	if begin.Resumed {
		s.res.Resumed, s.res.User = true, begin.User
		if err := s.rc.Flush(); err != nil {
			return nil, fmt.Errorf("netauth: sending ServerHello: %w", err)
		}
		if err := s.checkBinder(); err != nil {
			return nil, err
		}
		return &s.res, nil
	}
	sa := &serverAuth{HostKey: begin.HostKey, Signature: begin.HostSig, Service: begin.Service}
	if err := s.rc.QueueRecord(record.TypeServerAuth, sa.marshal()); err != nil {
		return nil, err
	}
	if err := s.rc.Flush(); err != nil {
		return nil, fmt.Errorf("netauth: sending ServerHello: %w", err)
	}
	if err := s.checkClient(); err != nil {
		return nil, err
	}
	return &s.res, nil
}

// readHello reads and parses message 1.
func (s *server) readHello() (*clientHello, error) {
	// The version first, whatever the length: a later version's ClientHello may be longer
	// than this version allows, and still deserves version_unsupported (§1). Only bytes that
	// came with the header are looked at; without them ReadFrame checks the header's type and
	// length first, so an oversized header alone is refused at once.
	if start, err := s.rc.PeekFrameStart(len(Magic) + 1); err == nil {
		if v := start[record.HeaderLen:]; start[0] == record.FrameClientHello && len(v) == len(Magic)+1 &&
			string(v[:len(Magic)]) == Magic && v[len(Magic)] != Version {
			return nil, s.alert(&Refusal{Code: CodeVersionUnsupported, Reason: "client protocol version not supported"})
		}
	}
	typ, body, err := s.rc.ReadFrame(MaxClientHello, record.FrameClientHello)
	if err != nil {
		if errors.Is(err, record.ErrFrameTooLarge) {
			return nil, s.alert(&Refusal{Code: CodeProtocolError, Reason: "oversized ClientHello", Err: err})
		}
		if errors.Is(err, record.ErrUnexpectedFrame) {
			return nil, s.alert(&Refusal{Code: CodeProtocolError, Reason: "frame instead of ClientHello", Err: err})
		}
		return nil, fmt.Errorf("netauth: reading ClientHello: %w", err)
	}
	if typ != record.FrameClientHello {
		return nil, s.alert(&Refusal{Code: CodeProtocolError, Reason: fmt.Sprintf("frame type 0x%02x instead of ClientHello", typ)})
	}
	h, err := parseClientHello(body)
	if errors.Is(err, errVersion) {
		return nil, s.alert(&Refusal{Code: CodeVersionUnsupported, Reason: "client protocol version not supported"})
	}
	if err != nil {
		return nil, s.alert(&Refusal{Code: CodeProtocolError, Reason: "malformed ClientHello", Err: err})
	}
	return h, nil
}

// alert reports a refusal of the framing side and sends its code in a plaintext alert.
func (s *server) alert(r *Refusal) error {
	r.Client = s.client
	if s.refused != nil {
		s.refused(r)
	}
	return s.sendAlert(r)
}

// sendAlert sends the code of err (a *Refusal, or an internal error) before keys exist.
func (s *server) sendAlert(err error) error {
	code := CodeInternalError
	var r *Refusal
	if errors.As(err, &r) {
		code = r.Code
	}
	s.rc.QueueRaw(AlertFrame(code))
	_ = s.rc.Flush()
	return err
}

// refuse reports a refusal of the framing side and sends its code in the verdict.
func (s *server) refuse(r *Refusal) error {
	r.Client, r.User = s.client, s.res.User
	if s.refused != nil {
		s.refused(r)
	}
	return s.sendVerdict(r)
}

// sendVerdict sends the code of err (a *Refusal, or an internal error) in the verdict.
func (s *server) sendVerdict(err error) error {
	code := CodeInternalError
	var r *Refusal
	if errors.As(err, &r) {
		code = r.Code
	}
	v := &verdict{Code: code}
	if qerr := s.rc.QueueRecord(record.TypeVerdict, v.marshal()); qerr == nil {
		_ = s.rc.Flush()
	}
	return err
}

// checkBinder reads a resumption's message 3, has the core decide, and sends the verdict.
func (s *server) checkBinder() error {
	typ, content, err := s.rc.ReadRecord()
	if err != nil {
		if errors.Is(err, record.ErrAuth) || errors.Is(err, record.ErrUnexpectedFrame) || errors.Is(err, record.ErrFrameTooShort) {
			return s.refuse(&Refusal{Code: CodeProtocolError, Reason: "bad record instead of the resumption binder", Err: err})
		}
		return fmt.Errorf("netauth: reading the resumption binder: %w", err)
	}
	if typ != record.TypeBinder || len(content) != BinderLen {
		return s.refuse(&Refusal{Code: CodeProtocolError, Reason: fmt.Sprintf("record type 0x%02x of %d bytes instead of the resumption binder", typ, len(content))})
	}
	return s.commit(&CommitRequest{Session: s.res.Session, Resumed: true, Binder: content})
}

// commit has the core decide message 3 and continues accordingly: a refusal's code goes in a
// Verdict; an acceptance continues with the core's Handover (the sealed Verdict, then the
// application keys), or, when the core gave the connection to another process, ends here.
func (s *server) commit(req *CommitRequest) error {
	st, err := s.rc.Snapshot()
	if err != nil {
		return err
	}
	acc, err := s.core.Commit(req, st)
	st.Zero()
	if err != nil {
		s.session = 0 // a refusal consumed the session and released what it held
		return s.sendVerdict(err)
	}
	if acc.Result != nil {
		// The identity as the core verified it, and its admission.
		offered := s.res.Offered
		s.res = *acc.Result
		s.res.Offered = offered
	}
	h := acc.Handover
	if h == nil {
		s.session = 0 // the core's now, with the connection
		s.rc.Detach()
		s.res.HandedOff = true
		return nil
	}
	// A Verdict that cannot be sent ends the connection after the core admitted it: what the
	// admission holds (netauthd's per-user count and worker registration) is given back
	// (ServerConfig.Discard). Serve's Abort would find nothing: Commit took the session.
	defer h.Zero()
	s.rc.QueueRaw(h.Verdict)
	s.rc.SetSendKey(record.NewHalf(h.State.SendKey, 0))
	s.rc.SetRecvKey(record.NewHalf(h.State.RecvKey, 0))
	if err := s.rc.Flush(); err != nil {
		if acc.discard != nil {
			acc.discard()
		}
		return fmt.Errorf("netauth: sending Verdict: %w", err)
	}
	return nil
}

// checkClient reads message 3, has the core decide, and sends the verdict.
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
	s.res.User, s.res.Signature = ca.User, ca.SSHSIG
	return s.commit(&CommitRequest{Session: s.res.Session, User: ca.User, Time: ca.Time, SSHSIG: ca.SSHSIG})
}
