// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/ed25519"
	"crypto/mlkem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
	"ubns.dev/netauth/internal/identity"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/noise"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// Signer makes the user's authenticator: an SSHSIG signature over a statement, usually made
// by an ssh-agent.
type Signer interface {
	PublicKey() ssh.PublicKey
	// SignStatement returns a binary SSHSIG signature of statement in Namespace.
	SignStatement(statement []byte) ([]byte, error)
}

// ClientConfig is what the client side of a handshake needs.
type ClientConfig struct {
	User   string
	Signer Signer // used for full handshakes
	// CheckHostKey decides whether the server's host key is acceptable (known_hosts). It
	// also learns the service the server announces.
	CheckHostKey func(hostKey ssh.PublicKey, service string) error
	// Service, if not empty, is the service the client insists on.
	Service string
	// Session, if not nil, is offered for resumption.
	Session *Session
	// Now returns the current time (time.Now if nil).
	Now func() time.Time
	// Ephemeral returns the ephemeral X25519 key for this handshake.
	Ephemeral func() (x25519.KeyPair, error)
	// KEM returns the ML-KEM-768 decapsulation key for this handshake, whose encapsulation
	// key the ClientHello carries (a kem.Pool's Get); nil generates one inline
	// (mlkem.GenerateKey768). A key is used for one handshake only.
	KEM func() (*mlkem.DecapsulationKey768, error)
}

// Result describes a completed handshake, on either side: the identity it established, and
// how the handshake went.
type Result struct {
	identity.Identity
	// KeyHash is, on the server, the SHA-256 of the user's key's wire form: of the key the
	// signature names (full handshake), or the one the ticket holds (resumption, where Key is
	// nil until Eligible finds the key).
	KeyHash [32]byte
	// Offered is true when the client offered a ticket (the server declined it if Resumed
	// is false).
	Offered bool
	// Session is the server's handle of the handshake (server side), and Client the
	// client's address as the server saw it.
	Session uint64
	Client  string
	// HandedOff is true on the server when the core took the connection over with its
	// decision (Commit returned no Handover): the verdict is sent by whoever received it.
	HandedOff bool
	// Admission is what the server's Authorize returned for this client: the server's own
	// record of its decision, carried to whoever continues the connection (server side).
	Admission any
	// certified is set by the core when Key is a user certificate that ServerConfig.UserCerts
	// accepted for User from Client, for FindKey.
	certified bool
}

// Client is the client side of a handshake that has sent its authentication and may
// already send application data; the server's verdict is read by ReadVerdict.
type Client struct {
	rc     *record.Conn
	Result Result
	// pending is true while the verdict is unread; err is why reading it failed, for good.
	pending bool
	err     error
	// sec holds the key schedule's secrets until the verdict: the server's application key
	// is installed once the verdict accepted, the resumption secret goes into the session.
	sec *secrets
	// hostBlob is the host key as the server presented it in a full handshake: the key, or
	// a host certificate of it, kept in the Session so that resuming checks it again.
	hostBlob []byte
}

func (cfg *ClientConfig) now() time.Time {
	if cfg.Now != nil {
		return cfg.Now()
	}
	return time.Now()
}

// RunClient runs the client side of a handshake on rc up to the point where application data
// may be sent: the client has sent its message 3 (its authenticator, or the binder of a
// resumption) and ReadVerdict must be called before reading.
func RunClient(rc *record.Conn, cfg *ClientConfig) (*Client, error) {
	hs := &clientHandshake{c: &Client{rc: rc}, cfg: cfg}
	defer hs.zero()
	if err := hs.sendHello(); err != nil {
		return nil, err
	}
	if err := hs.readServerHello(); err != nil {
		return nil, err
	}
	if err := hs.schedule(); err != nil {
		return nil, err
	}
	var err error
	if hs.c.Result.Resumed {
		err = hs.sendBinder()
	} else {
		err = hs.c.authenticate(cfg)
	}
	if err != nil {
		hs.c.sec.zero()
		return nil, err
	}
	return hs.c, nil
}

// clientHandshake is the transient state of one client handshake, up to message 3.
type clientHandshake struct {
	c   *Client
	cfg *ClientConfig
	eph x25519.KeyPair
	dk  *mlkem.DecapsulationKey768 // dropped once the ServerHello is processed
	hfs *noise.Initiator           // the full handshake, always offered
	psk *noise.Initiator           // the resumption, only when a ticket is offered
	hs  *noise.Initiator           // the one the server chose
}

func (h *clientHandshake) zero() {
	h.eph.Zero()
	h.dk = nil
	for _, s := range []*noise.Initiator{h.hfs, h.psk} {
		if s != nil {
			s.Zero()
		}
	}
}

// sendHello sends message 1 (§3.1, §4): the ClientHello with the client's ephemeral key and
// ML-KEM-768 encapsulation key, offering the ticket if there is one. The same ephemeral goes
// to a full handshake (NNhfs) and, with a ticket, to a resumption (NNpsk0); a resume-mode
// ClientHello carries the whole NNhfs message 1 followed by the tag of NNpsk0's, so the server
// can pick either, and a fallback is hybrid too.
func (h *clientHandshake) sendHello() error {
	var err error
	if h.eph, err = h.cfg.Ephemeral(); err != nil {
		return fmt.Errorf("netauth: ephemeral key: %w", err)
	}
	if h.cfg.KEM != nil {
		h.dk, err = h.cfg.KEM()
	} else {
		h.dk, err = mlkem.GenerateKey768()
	}
	if err == nil && h.dk == nil {
		err = errors.New("none given")
	}
	if err != nil {
		return fmt.Errorf("netauth: ML-KEM-768 key: %w", err)
	}
	hello := &clientHello{Version: Version, Mode: ModeFull}
	noiseLen := NoiseMessage1Full
	if s := h.cfg.Session; s != nil {
		hello.Mode, hello.Ticket, noiseLen = ModeResume, s.Ticket, NoiseMessage1Resume
	}
	h.c.Result.Offered = hello.Mode == ModeResume
	// The prologue covers the frame up to the Noise message, whose length it includes.
	pro := prologue(hello, noiseLen)
	if h.hfs, err = noise.NewInitiatorHFS(pro, &h.eph, h.dk); err != nil {
		return err
	}
	if hello.Noise, err = h.hfs.WriteMessage1(make([]byte, 0, noiseLen), nil); err != nil {
		return err
	}
	if hello.Mode == ModeResume {
		if h.psk, err = noise.NewInitiator(noise.NNpsk0, pro, &h.eph, h.cfg.Session.Secret); err != nil {
			return err
		}
		m1, err := h.psk.WriteMessage1(nil, nil)
		if err != nil {
			return err
		}
		// e || ek || tag: NNpsk0's e is the same as NNhfs's.
		hello.Noise = append(hello.Noise, m1[noise.DHLen:]...)
	}
	h.c.rc.QueueRaw(frame(record.FrameClientHello, hello.body()))
	if err := h.c.rc.Flush(); err != nil {
		return fmt.Errorf("netauth: sending ClientHello: %w", err)
	}
	return nil
}

// readServerHello reads message 2 (§3.2), or the alert of a refusal (§2), and processes it
// with the Noise state of the mode the server chose.
func (h *clientHandshake) readServerHello() error {
	typ, body, err := h.c.rc.ReadFrame(max(MaxServerHello, AlertLen), record.FrameServerHello, record.FrameAlert)
	if errors.Is(err, record.ErrUnexpectedFrame) {
		return fmt.Errorf("%w instead of ServerHello (is this a netauth server?)", err)
	}
	if err != nil {
		return readErr("ServerHello", err)
	}
	if typ == record.FrameAlert {
		if len(body) != AlertLen {
			return fmt.Errorf("%w: malformed alert", record.ErrUnexpectedFrame)
		}
		return &RefusedError{Code: Code(body[0])}
	}
	sh, err := parseServerHello(body)
	if err != nil {
		return fmt.Errorf("netauth: %w", err)
	}
	h.hs = h.hfs
	if sh.Mode == ModeResume {
		if h.psk == nil {
			return fmt.Errorf("%w: server resumed a session the client did not offer", record.ErrUnexpectedFrame)
		}
		h.hs, h.c.Result.Resumed = h.psk, true
	}
	_, err = h.hs.ReadMessage2(sh.Noise)
	// The decapsulation key is needed no longer, nor the state the server did not choose.
	h.dk = nil
	for _, s := range []*noise.Initiator{h.hfs, h.psk} {
		if s != nil && s != h.hs {
			s.Zero()
		}
	}
	if err != nil {
		return errors.New("netauth: ServerHello failed authentication (tampered, or the server lost the session)")
	}
	return nil
}

// schedule splits the Noise state and runs the key schedule (§3.9): the handshake-record
// keys go to the record layer, the application keys and the resumption secret wait in the
// Client for message 3 and the Verdict.
func (h *clientHandshake) schedule() error {
	keys, err := h.hs.Split()
	if err != nil {
		return err
	}
	h.c.Result.HandshakeHash = append([]byte(nil), keys.HandshakeHash[:]...)
	if h.c.sec, err = deriveSecrets(&keys); err != nil {
		keys.Zero()
		return err
	}
	h.c.rc.SetKeys(halves(&keys, true))
	return nil
}

// sendBinder sends message 3 of a resumption (§4): the binder, which proves the client holds
// the ticket's secret in this very handshake. The identity is the cached session's.
func (h *clientHandshake) sendBinder() error {
	s, r := h.cfg.Session, &h.c.Result
	r.User, r.Service, r.AuthTime = s.User, s.Service, s.Issued
	_, hostKey, err := parseHostKey(s.HostKey)
	if err != nil {
		return fmt.Errorf("netauth: cached session: %w", err)
	}
	userKey, err := ssh.ParsePublicKey(s.UserKey)
	if err != nil {
		return fmt.Errorf("netauth: cached session: %w", err)
	}
	r.SetHostKey(hostKey)
	r.SetKey(userKey)
	return h.c.sendMessage3(record.TypeBinder, resumptionBinder(s.Secret, r.HandshakeHash))
}

// sendMessage3 sends the client's last handshake record (ClientAuth or the binder) and
// switches its sending direction to the application key: what the application writes next
// may follow at once (pipelining), under keys only the server's core knows.
func (c *Client) sendMessage3(typ byte, content []byte) error {
	what := "ClientAuth"
	if typ == record.TypeBinder {
		what = "the resumption binder"
	}
	if err := c.rc.QueueRecord(typ, content); err != nil {
		c.sec.zero()
		return err
	}
	c.rc.SetSendKey(record.NewHalf(c.sec.appC2S, 0))
	clear(c.sec.appC2S[:])
	c.pending = true
	if err := c.rc.Flush(); err != nil {
		c.sec.zero()
		return fmt.Errorf("netauth: sending %s: %w", what, err)
	}
	return nil
}

// authenticate checks the server's authentication record and sends the client's.
func (c *Client) authenticate(cfg *ClientConfig) error {
	typ, content, err := c.rc.ReadRecord()
	if err != nil {
		return readErr("ServerAuth", err)
	}
	if typ != record.TypeServerAuth {
		return fmt.Errorf("%w: record type 0x%02x instead of ServerAuth", record.ErrUnexpectedFrame, typ)
	}
	sa, err := parseServerAuth(content)
	if err != nil {
		return fmt.Errorf("netauth: %w", err)
	}
	presented, hostKey, err := parseHostKey(sa.HostKey)
	if err != nil {
		return err
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(sa.Signature, &sig); err != nil || sig.Format != ssh.KeyAlgoED25519 || len(sig.Rest) != 0 {
		return errors.New("netauth: server's host signature is malformed")
	}
	if err := hostKey.Verify(hostSigData(c.Result.HandshakeHash), &sig); err != nil {
		return fmt.Errorf("netauth: server's host signature is invalid (host key %s)", keys.Fingerprint(hostKey))
	}
	if err := cfg.CheckHostKey(presented, sa.Service); err != nil {
		return err
	}
	if cfg.Service != "" && cfg.Service != sa.Service {
		return fmt.Errorf("netauth: server offers service %q, not the requested %q", sa.Service, cfg.Service)
	}
	c.Result.SetHostKey(hostKey)
	c.hostBlob = sa.HostKey
	c.Result.Service, c.Result.User = sa.Service, cfg.User

	// Message 3: the user's authenticator.
	now := time.Unix(cfg.now().Unix(), 0)
	st := &keys.Statement{HandshakeHash: c.Result.HandshakeHash, HostKey: hostKey, Service: sa.Service, User: cfg.User, Time: now}
	stmt, err := st.Marshal()
	if err != nil {
		return fmt.Errorf("netauth: %w", err)
	}
	sshsig, err := cfg.Signer.SignStatement(stmt)
	if err != nil {
		return fmt.Errorf("netauth: signing the authenticator: %w", err)
	}
	c.Result.SetKey(cfg.Signer.PublicKey())
	c.Result.Statement, c.Result.Signature, c.Result.AuthTime = stmt, sshsig, now
	ca := &clientAuth{User: cfg.User, Time: uint64(now.Unix()), SSHSIG: sshsig}
	return c.sendMessage3(record.TypeClientAuth, ca.marshal())
}

// Pending reports whether the server's verdict is still unread.
func (c *Client) Pending() bool { return c.pending }

// ReadVerdict reads the server's verdict on the client's authentication (an authenticator or a
// resumption binder). It returns the session to cache for resumption (nil if the server issued
// no ticket, as after a resumption), or a *RefusedError. A read that timed out may be retried;
// any other failure is final (§6): asked again, ReadVerdict returns the same error, and the
// connection reads nothing more.
func (c *Client) ReadVerdict(now time.Time) (*Session, error) {
	if !c.pending {
		return nil, c.err
	}
	typ, content, err := c.rc.ReadRecord()
	if err != nil && isTimeout(err) {
		return nil, readErr("Verdict", err) // the secrets wait for the retry
	}
	sess, err := c.verdict(typ, content, err, now)
	c.pending = false
	c.sec.zero()
	if err != nil {
		c.err = err
		c.rc.SetRecvKey(nil) // after a refusal, or a broken Verdict, the client reads nothing more
	}
	return sess, err
}

// verdict checks the record read where the Verdict is due and, on an acceptance, switches the
// receiving direction to the server's application key.
func (c *Client) verdict(typ byte, content []byte, err error, now time.Time) (*Session, error) {
	if err != nil {
		return nil, readErr("Verdict", err)
	}
	if typ != record.TypeVerdict {
		return nil, fmt.Errorf("%w: record type 0x%02x instead of Verdict", record.ErrUnexpectedFrame, typ)
	}
	v, err := parseVerdict(content)
	if err != nil {
		return nil, fmt.Errorf("netauth: %w", err)
	}
	if v.Code != CodeOK {
		return nil, &RefusedError{Code: v.Code}
	}
	if c.Result.Resumed && len(v.Ticket) != 0 {
		return nil, fmt.Errorf("%w: a ticket in a resumed handshake's Verdict", record.ErrUnexpectedFrame)
	}
	// The server's data follows under its application key.
	c.rc.SetRecvKey(record.NewHalf(c.sec.appS2C, 0))
	if len(v.Ticket) == 0 {
		return nil, nil
	}
	return &Session{
		Ticket:  v.Ticket,
		Secret:  append([]byte(nil), c.sec.resumption[:]...),
		Expiry:  time.Unix(now.Unix()+int64(v.Lifetime), 0),
		Issued:  c.Result.AuthTime,
		HostKey: c.hostBlob,
		UserKey: c.Result.Key.Marshal(),
		Service: c.Result.Service,
		User:    c.Result.User,
	}, nil
}

// isTimeout reports whether err is a read deadline that passed, after which reading may resume.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// parseHostKey parses ServerAuth's host_key (§3.3): an ssh-ed25519 key, or an
// ssh-ed25519-cert-v01@openssh.com certificate of one. It returns the key as presented (a
// *ssh.Certificate for a certificate), for the known_hosts check, and the Ed25519 key
// itself, which signs the handshake and which the statement binds. Whether the certificate
// is valid is the known_hosts check's decision; its size was bounded before parsing.
func parseHostKey(blob []byte) (presented, key ssh.PublicKey, err error) {
	presented, err = ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, nil, errors.New("netauth: server's host key is malformed")
	}
	key = presented
	if cert, ok := presented.(*ssh.Certificate); ok {
		if cert.Type() != ssh.CertAlgoED25519v01 {
			return nil, nil, errors.New("netauth: server's host certificate is not for an Ed25519 key")
		}
		key = cert.Key
	}
	if key.Type() != ssh.KeyAlgoED25519 {
		return nil, nil, errors.New("netauth: server's host key is not an Ed25519 key")
	}
	return presented, key, nil
}

func hostSigData(h []byte) []byte {
	return append([]byte(HostSigContext), h...)
}

// hostSignature signs the handshake hash with the host key, in SSH signature wire form.
func hostSignature(key ed25519.PrivateKey, h []byte) []byte {
	sig := ed25519.Sign(key, hostSigData(h))
	return ssh.Marshal(&ssh.Signature{Format: ssh.KeyAlgoED25519, Blob: sig})
}

// readErr explains a failure to read the peer's next handshake message.
func readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, record.ErrTruncated) {
		return fmt.Errorf("netauth: connection closed by the server before its %s (it may have refused or timed out the handshake)", what)
	}
	return fmt.Errorf("netauth: reading %s: %w", what, err)
}
