// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/krl"
	"ubns.dev/netauth/internal/noise"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/usercert"
	"ubns.dev/netauth/internal/x25519"
)

// Core makes the server's decisions in a handshake. It holds the secrets (host key, ticket
// keys, ephemeral keys), contributes the server's fresh ephemeral key to every handshake,
// verifies tickets and authenticators against the transcript it computed itself, and applies
// policy. It parses no framing: the server's framing side (Serve) parses every network byte
// and runs the record layer, and passes Core only typed fields. In netauthd the Core runs in
// the privileged monitor and Serve in the unprivileged acceptor.
type Core interface {
	// Begin processes message 1 and returns message 2 with the session's handshake-record
	// keys.
	Begin(req *BeginRequest) (*BeginResponse, error)
	// Commit decides message 3 of a session from Begin (a full handshake's authenticator, or
	// a resumption's binder), once per session, given the framing side's transport state as
	// it stands just before the Verdict. When it accepts, the Accepted names what was
	// verified and carries the Handover that continues the connection: the sealed Verdict
	// and the application keys. A core that gives the connection to another process with
	// its decision (netauthd's monitor, which passes the Handover to the user's worker)
	// returns no Handover, and the framing side then sends nothing more.
	Commit(req *CommitRequest, st *record.State) (*Accepted, error)
	// Abort forgets a session whose handshake failed before Commit.
	Abort(session uint64)
}

// marshalVerdict returns the content of an accepting Verdict record, with the ticket of a
// full handshake (none after a resumption).
func marshalVerdict(lifetime uint32, ticket []byte) []byte {
	return (&verdict{Code: CodeOK, Lifetime: lifetime, Ticket: ticket}).marshal()
}

// BeginRequest is message 1 as the framing side parsed it.
type BeginRequest struct {
	Client string // client address, for logs and audit records
	Mode   byte
	Ticket []byte // resume mode only
	Noise  []byte // Noise message 1
}

// BeginResponse is what the framing side needs to send message 2 and run the handshake's
// records: the handshake-record keys only (the application keys and the resumption secret
// stay with the core until it accepts, §3.9).
type BeginResponse struct {
	Session       uint64
	Resumed       bool
	Noise         []byte   // Noise message 2
	Send, Recv    [32]byte // handshake-record keys
	HandshakeHash []byte
	HostKey       []byte // SSH wire form
	HostSig       []byte // full handshakes: SSH signature of HostSigContext || HandshakeHash
	Service       string
	// User is, for a resumed session, the user the ticket names (for the framing side's
	// logs; the core keeps the identity).
	User string
}

// CommitRequest is message 3 as the framing side parsed it: a full handshake's ClientAuth
// (User, Time, SSHSIG), or a resumption's Binder.
type CommitRequest struct {
	// Client, if not empty, is the client's address as the caller verified it (netauthd's
	// monitor reads it from the connection's descriptor); it replaces the address Begin was
	// given in the decision's records.
	Client  string
	Session uint64
	Resumed bool
	User    string
	Time    uint64
	SSHSIG  []byte
	Binder  []byte
}

// Accepted is a core's acceptance of a session: what it verified, and how the connection
// goes on.
type Accepted struct {
	// Result is the identity the core verified (for a full handshake, with the statement as
	// the core rebuilt it) and the admission its Authorize returned. A core answering from
	// another process (netauthd's monitor, to its acceptor) returns none: the identity went
	// to the worker with the connection.
	Result *Result
	// Handover continues the connection; nil if the core gave it to another process.
	Handover *Handover
	// discard gives back what the admission holds (ServerConfig.Discard), for a caller that
	// could not send the Handover's Verdict.
	discard func()
}

// Handover is what continues an accepted connection on the server: the Verdict record frame,
// sealed under the handshake-record key, to send first, and the transport state of the
// application phase (application keys from counter 0, and the bytes the client pipelined
// after its message 3). The keys are for whoever serves the connection (the in-process
// server, or netauthd's worker), never for netauthd's acceptor.
type Handover struct {
	Verdict []byte
	State   *record.State
}

// Zero wipes the application keys.
func (h *Handover) Zero() {
	if h != nil && h.State != nil {
		h.State.Zero()
	}
}

// decision is what authenticate or confirm decided: the ticket to send (full handshakes),
// what was verified and admitted, and the application keys.
type decision struct {
	lifetime uint32
	ticket   []byte
	res      *Result
	app      appKeys
}

// coreSession is a handshake waiting for message 3: a full handshake's authenticator, or a
// resumption's binder (then secret and res are set).
type coreSession struct {
	hash    []byte
	client  string
	expires time.Time
	sec     *secrets // the key schedule's secrets of this handshake
	secret  []byte   // resumption secret from the ticket
	res     *Result  // identity from the ticket
}

// zero wipes the session's secrets.
func (s *coreSession) zero() {
	clear(s.secret)
	s.sec.zero()
}

// maxCoreSessions bounds the full handshakes waiting for their authenticator.
const maxCoreSessions = 1 << 16

// ServerCore is the Core of a server configuration, called directly by an in-process server
// and by netauthd's monitor on behalf of its acceptor. Safe for concurrent use.
type ServerCore struct {
	cfg      *ServerConfig
	hostPub  ssh.PublicKey
	hostWire []byte
	// hostHash and hostFP are the host key's SHA-256 (what tickets bind) and its fingerprint,
	// computed once.
	hostHash [32]byte
	hostFP   string
	// certs are the host certificate and the user certificate checks in force: the
	// configuration's, until SetCertificates replaces them.
	certs   atomic.Pointer[coreCerts]
	timeout time.Duration

	mu       sync.Mutex
	next     uint64
	sessions map[uint64]*coreSession
	order    []pendingSession // every session registered and not yet swept, oldest first
}

// NewServerCore returns the Core for cfg; pending sessions are forgotten after timeout.
func NewServerCore(cfg *ServerConfig, timeout time.Duration) (*ServerCore, error) {
	if len(cfg.HostKey) != ed25519.PrivateKeySize {
		return nil, errors.New("netauth: host key must be an Ed25519 private key")
	}
	if cfg.Eligible == nil || cfg.Authorize == nil {
		return nil, errors.New("netauth: a server needs both Eligible and Authorize")
	}
	hostPub, err := ssh.NewPublicKey(cfg.HostKey.Public())
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	wire := hostPub.Marshal()
	c := &ServerCore{cfg: cfg, hostPub: hostPub, hostWire: wire, hostHash: hostKeyHash(wire),
		hostFP: ssh.FingerprintSHA256(hostPub), timeout: timeout,
		sessions: make(map[uint64]*coreSession)}
	if err := c.SetCertificates(cfg.HostCert, cfg.UserCerts, cfg.RevokedKeys); err != nil {
		return nil, err
	}
	return c, nil
}

// coreCerts are a core's host certificate and user certificate checks.
type coreCerts struct {
	// present is what ServerAuth presents: the host key's wire form, or the host
	// certificate's.
	present   []byte
	userCerts *usercert.Checker
	revoked   *krl.Set
}

// SetCertificates replaces the host certificate, the user certificate checks and the revoked
// keys the core was made with (ServerConfig.HostCert, UserCerts and RevokedKeys), for the
// handshakes that begin or decide from now on, as a server does when it reads its
// configuration again; handshakes under way are not disturbed. hostCert must be a host
// certificate of the host key (nil: present the bare key).
func (c *ServerCore) SetCertificates(hostCert *ssh.Certificate, userCerts *usercert.Checker, revoked *krl.Set) error {
	present := c.hostWire
	if hostCert != nil {
		if !bytes.Equal(hostCert.Key.Marshal(), c.hostWire) || hostCert.CertType != ssh.HostCert {
			return errors.New("netauth: the host certificate is not a host certificate of the host key")
		}
		if present = hostCert.Marshal(); len(present) > MaxHostKeyLen {
			return fmt.Errorf("netauth: the host certificate is larger than %d bytes", MaxHostKeyLen)
		}
	}
	c.certs.Store(&coreCerts{present: present, userCerts: userCerts, revoked: revoked})
	return nil
}

// HostKey returns the host's public key.
func (c *ServerCore) HostKey() ssh.PublicKey { return c.hostPub }

// refuse reports a refusal and returns it.
func (c *ServerCore) refuse(r *Refusal) error {
	if c.cfg.Refused != nil {
		c.cfg.Refused(r)
	}
	return r
}

// Begin implements Core: it tries the ticket (NNpsk0) and otherwise runs the hybrid NNhfs
// exchange, with a fresh ephemeral key of its own and an ML-KEM-768 encapsulation to the
// client's key. The sizes are checked first: a Noise message of the wrong size (and so an
// encapsulation key of the wrong size) is refused before any key is drawn or parsed.
func (c *ServerCore) Begin(req *BeginRequest) (*BeginResponse, error) {
	hello := &clientHello{Version: Version, Mode: req.Mode, Ticket: req.Ticket, Noise: req.Noise}
	switch {
	case req.Mode == ModeFull && len(req.Ticket) == 0 && len(req.Noise) == NoiseMessage1Full:
	case req.Mode == ModeResume && len(req.Ticket) > 0 && len(req.Ticket) <= MaxTicketSize && len(req.Noise) == NoiseMessage1Resume:
	default:
		return nil, c.refuse(&Refusal{Code: CodeProtocolError, Reason: "malformed message 1", Client: req.Client})
	}
	// The prologue is rebuilt from the fields, so it covers exactly what the framing side
	// claims it received; any difference from the client's makes the handshake fail.
	pro := prologue(hello, len(hello.Noise))
	eph, err := c.cfg.Ephemeral()
	if err != nil {
		return nil, c.refuse(&Refusal{Code: CodeInternalError, Reason: "ephemeral key", Err: err, Client: req.Client})
	}
	defer eph.Zero()
	if req.Mode == ModeResume {
		if resp := c.resume(req, pro, &eph); resp != nil {
			return resp, nil
		}
	}
	return c.full(req, pro, &eph)
}

// resume returns the response for a ticket that opens, is valid here, and whose user is
// still authorized; nil means fall back to a full handshake.
func (c *ServerCore) resume(req *BeginRequest, pro []byte, eph *x25519.KeyPair) *BeginResponse {
	if c.cfg.Tickets == nil {
		return nil
	}
	t, err := c.cfg.Tickets.open(req.Ticket, c.cfg.now())
	if err != nil {
		return nil
	}
	defer clear(t.Secret[:])
	if t.Service != c.cfg.Service || t.HostKeyHash != c.hostHash {
		return nil
	}
	hs, err := noise.NewResponder(noise.NNpsk0, pro, eph, t.Secret[:])
	if err != nil {
		return nil
	}
	defer hs.Zero()
	// NNpsk0 message 1 is e || tag: the encapsulation key between them is for a fallback,
	// and a resumption ignores it.
	if _, err := hs.ReadMessage1(psk0Message1(req.Noise)); err != nil {
		return nil // the client does not hold the ticket's secret
	}
	msg2, err := hs.WriteMessage2(nil, nil)
	if err != nil {
		return nil // e.g. a low-order ephemeral: the full handshake refuses it properly
	}
	keys, err := hs.Split()
	if err != nil {
		return nil
	}
	defer keys.Zero()
	res := c.newResult(req.Client, keys.HandshakeHash[:])
	res.Resumed, res.Offered, res.User, res.KeyHash = true, true, t.User, t.KeyHash
	res.KeyFingerprint = identity.HashFingerprint(t.KeyHash)
	res.AuthTime = time.Unix(int64(t.Issued), 0)
	// A user who lost access falls back to a full handshake, which then refuses clearly; the
	// key schedule runs only for a resumption that goes ahead.
	if c.resumable(res) != nil {
		return nil
	}
	sec, err := deriveSecrets(&keys)
	if err != nil {
		return nil
	}
	id, err := c.addSession(&coreSession{hash: res.HandshakeHash, client: req.Client, sec: sec,
		secret: append([]byte(nil), t.Secret[:]...), res: res})
	if err != nil {
		sec.zero()
		return nil
	}
	res.Session = id
	resp := &BeginResponse{Session: id, Resumed: true, Noise: msg2, HandshakeHash: res.HandshakeHash,
		HostKey: c.hostWire, Service: c.cfg.Service, User: t.User, Recv: keys.K1, Send: keys.K2}
	return resp
}

// addSession registers a handshake waiting for message 3 and returns its handle. It first
// forgets, and wipes, the pending handshakes that have expired: they were registered in order
// with the same timeout, so they are the oldest ones.
func (c *ServerCore) addSession(s *coreSession) (uint64, error) {
	now := time.Now()
	s.expires = now.Add(c.timeout)
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.order) > 0 && now.After(c.order[0].expires) {
		if old := c.sessions[c.order[0].id]; old != nil {
			old.zero()
			delete(c.sessions, c.order[0].id)
		}
		c.order = c.order[1:]
	}
	if len(c.sessions) >= maxCoreSessions {
		return 0, errors.New("too many handshakes waiting for their message 3")
	}
	c.next++
	c.sessions[c.next] = s
	c.order = append(c.order, pendingSession{c.next, s.expires})
	return c.next, nil
}

// pendingSession is a handshake's place in the order of registration.
type pendingSession struct {
	id      uint64
	expires time.Time
}

// confirm decides a resumption's message 3: the binder must be the HMAC of this very
// handshake's hash, which covers the ephemeral key Begin chose, under the ticket's secret.
// Only then is the resumed session authorized (and, in netauthd, audited and given a worker).
func (c *ServerCore) confirm(req *CommitRequest) (*decision, error) {
	id, binder := req.Session, req.Binder
	sess := c.takeFor(req)
	if sess == nil || sess.res == nil {
		if sess != nil {
			sess.zero()
		}
		return nil, c.refuse(&Refusal{Code: CodeProtocolError, Reason: "no such resumption (unknown, used or expired session)"})
	}
	defer sess.zero()
	res := sess.res
	res.Session = id
	if !hmac.Equal(binder, resumptionBinder(sess.secret, sess.hash)) {
		return nil, c.refuse(&Refusal{Code: CodeAuthFailed, Reason: "resumption binder does not verify", User: res.User,
			KeyFP: res.KeyFingerprint, Resumed: true, Client: sess.client})
	}
	// Begin checked the key and the grant, but the binder may come as late as the handshake
	// timeout: check them again, now for a client that proved it holds the ticket, so that a
	// key revoked in between is not admitted.
	err := c.eligible(res)
	if err == nil {
		res.Admission, err = c.cfg.Authorize(res)
	}
	if err != nil {
		r := asRefusal(err)
		r.User, r.KeyFP, r.Resumed, r.Client = res.User, res.KeyFingerprint, true, sess.client
		return nil, c.refuse(r)
	}
	return &decision{res: res, app: appKeys{ClientToServer: sess.sec.appC2S, ServerToClient: sess.sec.appS2C}}, nil
}

// FindKey is the part of an Eligible that finds the user's key: it sets res.Key to the key of
// res.User in src whose hash is res.KeyHash, or refuses (not_authorized: the user has no such
// key; internal_error: the lookup failed).
//
// A user certificate is no authorized key: FindKey accepts one only if the core's certificate
// checks (ServerConfig.UserCerts) accepted it for this user and client just before.
func FindKey(ctx context.Context, src keys.Source, res *Result) error {
	if _, ok := res.Key.(*ssh.Certificate); ok {
		if res.certified && identity.KeyHash(res.Key) == res.KeyHash {
			return nil
		}
		return &Refusal{Code: CodeNotAuthorized, Reason: fmt.Sprintf("certificate %s is not authorized for user %q", identity.HashFingerprint(res.KeyHash), res.User)}
	}
	k, err := keys.Lookup(ctx, src, res.User, res.KeyHash)
	if err != nil {
		return &Refusal{Code: CodeInternalError, Reason: "looking up the user's keys", Err: err}
	}
	if k == nil {
		return &Refusal{Code: CodeNotAuthorized, Reason: fmt.Sprintf("key %s is not authorized for user %q", identity.HashFingerprint(res.KeyHash), res.User)}
	}
	res.SetKey(k)
	return nil
}

// newResult starts the server's Result of a handshake with hash h from client.
func (c *ServerCore) newResult(client string, h []byte) *Result {
	res := &Result{Client: client}
	res.Service, res.HandshakeHash = c.cfg.Service, append([]byte(nil), h...)
	res.HostKey, res.HostKeyFingerprint = c.hostPub, c.hostFP
	return res
}

// eligible applies the configuration's Eligible, which finds the user's key by res.KeyHash,
// and checks that it did.
func (c *ServerCore) eligible(res *Result) error { return c.check(res, c.cfg.Eligible) }

// resumable is the check before a ticket is resumed: the configuration's Resumable if it has
// one, else Eligible, and the same check of the key found.
func (c *ServerCore) resumable(res *Result) error {
	find := c.cfg.Resumable
	if find == nil {
		find = c.cfg.Eligible
	}
	return c.check(res, find)
}

// check applies the user certificate checks to res (CheckCertificate) with the core's
// UserCerts and RevokedKeys, the configuration's clock and skew; then find (Eligible or
// Resumable), which finds the user's key by res.KeyHash, checking that it did; and last the
// revoked keys to the key found. One state of the core's certificates decides it all, and a
// certificate the checks accepted is not looked up in the revoked keys again (they refused it
// if it was revoked).
func (c *ServerCore) check(res *Result, find func(*Result) error) error {
	cc := c.certs.Load()
	// Only the certificate checks may wait (for a principals command): a server that trusts
	// no user CA makes none, and its handshakes no timer.
	ctx := context.Background()
	if cc.userCerts != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if err := checkCertificate(ctx, cc.userCerts, cc.revoked, c.cfg.now(), c.cfg.skew(), res); err != nil {
		return err
	}
	if err := foundKey(res, find(res)); err != nil {
		return err
	}
	if !res.certified && cc.revoked.Revoked(res.Key) {
		return &Refusal{Code: CodeNotAuthorized, Reason: fmt.Sprintf("key %s is revoked", res.KeyFingerprint)}
	}
	return nil
}

// CheckCertificate applies the user certificate checks (userCerts, nil: certificates are
// refused; the revoked keys, nil: none; at time now with clock skew skew, zero or less:
// DefaultMaxClockSkew; docs/PROTOCOL.md §3.7, check 6) to res's key if it is a certificate,
// or, when res.Key is nil (a resumption), to the certificate whose hash is res.KeyHash, if
// userCerts remembers it (then res.Key is set to it). A certificate it accepts for res.User
// from res.Client is marked for FindKey, which accepts no other; any other key is left to
// FindKey. The core makes these checks before every Eligible and Resumable; a server that
// checks a live connection's identity again outside a handshake (netauthd's revocation check)
// calls it before FindKey, so that the same checks decide.
func CheckCertificate(ctx context.Context, userCerts *usercert.Checker, revoked *krl.Set, now time.Time, skew time.Duration, res *Result) error {
	if skew <= 0 {
		skew = DefaultMaxClockSkew
	}
	return checkCertificate(ctx, userCerts, revoked, now, skew, res)
}

// checkCertificate is CheckCertificate with the checks, revoked keys, time and skew given.
func checkCertificate(ctx context.Context, userCerts *usercert.Checker, revoked *krl.Set, now time.Time, skew time.Duration, res *Result) error {
	res.certified = false
	if res.Key == nil && userCerts != nil {
		if cert := userCerts.Known(res.KeyHash); cert != nil {
			res.SetKey(cert)
		}
	}
	cert, ok := res.Key.(*ssh.Certificate)
	if !ok {
		return nil
	}
	if userCerts == nil {
		return &Refusal{Code: CodeNotAuthorized, Reason: "certificates are not accepted here (no trusted user CA keys)"}
	}
	// Revocation first: it is cheaper than the CA signature Check ends with.
	if revoked.Revoked(cert) {
		return &Refusal{Code: CodeNotAuthorized, Reason: fmt.Sprintf("certificate %q (serial %d, CA %s) is revoked", cert.KeyId, cert.Serial, res.CertCAFingerprint)}
	}
	if err := userCerts.Check(ctx, cert, res.User, res.Client, now, skew); err != nil {
		var ue *usercert.Error
		if errors.As(err, &ue) && ue.Lookup {
			return &Refusal{Code: CodeInternalError, Reason: "looking up the user's authorized principals", Err: err}
		}
		return &Refusal{Code: CodeNotAuthorized, Reason: "certificate not accepted", Err: err}
	}
	res.certified = true
	return nil
}

// foundKey returns err, or an error if a key lookup that succeeded left res without the key
// whose hash is res.KeyHash.
func foundKey(res *Result, err error) error {
	if err != nil {
		return err
	}
	if res.Key == nil || identity.KeyHash(res.Key) != res.KeyHash {
		return &Refusal{Code: CodeInternalError, Reason: "the server's key lookup returned no key of the wanted hash"}
	}
	return nil
}

// asRefusal returns err as a *Refusal: its own if it is one, else a not_authorized refusal
// wrapping it.
func asRefusal(err error) *Refusal {
	var r *Refusal
	if !errors.As(err, &r) {
		r = &Refusal{Code: CodeNotAuthorized, Reason: "not authorized", Err: err}
	}
	return r
}

// MaxTime is the largest authenticator time a server considers (docs/PROTOCOL.md §3.7).
const MaxTime = 1 << 62

// withinSkew reports whether t is at most skew from now, either way (inclusive). It compares
// instants, never a difference of them: time.Time.Sub saturates at the extreme Durations, and
// the negation of the smallest one overflows back to itself.
func withinSkew(t, now time.Time, skew time.Duration) bool {
	return !t.Before(now.Add(-skew)) && !t.After(now.Add(skew))
}

// replayForget is when a replay-cache entry for an authenticator made at t may be forgotten:
// once t is out of the skew window, and never later than two skews from now, whatever t says.
func replayForget(t, now time.Time, skew time.Duration) time.Time {
	forget := t.Add(skew)
	if limit := now.Add(2 * skew); forget.After(limit) {
		forget = limit
	}
	return forget
}

// full runs the NNhfs exchange and signs the handshake hash with the host key. A malformed
// encapsulation key is refused by ReadMessage1, before any KEM or DH operation.
func (c *ServerCore) full(req *BeginRequest, pro []byte, eph *x25519.KeyPair) (*BeginResponse, error) {
	hs, err := noise.NewResponderHFS(pro, eph, c.cfg.Encapsulate)
	if err != nil {
		return nil, err
	}
	defer hs.Zero()
	if _, err := hs.ReadMessage1(req.Noise[:NoiseMessage1Full]); err != nil {
		return nil, c.refuse(&Refusal{Code: CodeProtocolError, Reason: "bad Noise message 1", Err: err, Client: req.Client})
	}
	msg2, err := hs.WriteMessage2(make([]byte, 0, NoiseMessage2Full), nil)
	if err != nil {
		return nil, c.refuse(&Refusal{Code: CodeProtocolError, Reason: "Noise message 2", Err: err, Client: req.Client})
	}
	keys, err := hs.Split()
	if err != nil {
		return nil, c.refuse(&Refusal{Code: CodeInternalError, Reason: "Noise split", Err: err, Client: req.Client})
	}
	defer keys.Zero()
	h := append([]byte(nil), keys.HandshakeHash[:]...)
	sec, err := deriveSecrets(&keys)
	if err != nil {
		return nil, c.refuse(&Refusal{Code: CodeInternalError, Reason: "key schedule", Err: err, Client: req.Client})
	}
	resp := &BeginResponse{Noise: msg2, HandshakeHash: h, HostKey: c.certs.Load().present,
		HostSig: hostSignature(c.cfg.HostKey, h), Service: c.cfg.Service, Recv: keys.K1, Send: keys.K2}
	if resp.Session, err = c.addSession(&coreSession{hash: h, client: req.Client, sec: sec}); err != nil {
		sec.zero()
		return nil, c.refuse(&Refusal{Code: CodeOverloaded, Reason: err.Error(), Client: req.Client})
	}
	return resp, nil
}

// take removes and returns a pending session.
func (c *ServerCore) take(id uint64) *coreSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[id]
	delete(c.sessions, id)
	if s != nil && time.Now().After(s.expires) {
		s.zero()
		return nil
	}
	return s
}

// takeFor takes the session message 3 is for, with the client's address as Commit's caller
// verified it, if it did.
func (c *ServerCore) takeFor(req *CommitRequest) *coreSession {
	sess := c.take(req.Session)
	if sess != nil && req.Client != "" {
		sess.client = req.Client
		if sess.res != nil {
			sess.res.Client = req.Client
		}
	}
	return sess
}

// Abort implements Core.
func (c *ServerCore) Abort(id uint64) {
	if s := c.take(id); s != nil {
		s.zero()
	}
}

// Commit implements Core: it decides message 3 and returns the Handover.
func (c *ServerCore) Commit(req *CommitRequest, st *record.State) (*Accepted, error) {
	if st == nil || st.SendNonce == math.MaxUint64 {
		// Checked before deciding, so that an acceptance is never left without its Verdict.
		c.Abort(req.Session)
		return nil, c.refuse(&Refusal{Code: CodeProtocolError, Reason: "no transport state to seal the Verdict with"})
	}
	var d *decision
	var err error
	if req.Resumed {
		d, err = c.confirm(req)
	} else {
		d, err = c.authenticate(req)
	}
	if err != nil {
		return nil, err
	}
	defer d.app.Zero()
	discard := func() {
		if c.cfg.Discard != nil {
			c.cfg.Discard(d.res)
		}
	}
	v, err := sealVerdict(st, marshalVerdict(d.lifetime, d.ticket))
	if err != nil {
		discard()
		return nil, fmt.Errorf("netauth: sealing the Verdict: %w", err)
	}
	return &Accepted{Result: d.res,
		Handover: &Handover{Verdict: v, State: d.app.serverState(st)}, discard: discard}, nil
}

// authenticate decides a full handshake's message 3: the checks of docs/PROTOCOL.md §3.7, in
// order, against the handshake hash Begin computed (never one the framing side supplies).
func (c *ServerCore) authenticate(req *CommitRequest) (*decision, error) {
	sess := c.takeFor(req)
	if sess != nil && sess.res != nil {
		sess.zero()
		sess = nil // a resumption's session cannot take an authenticator
	}
	if sess == nil {
		return nil, c.refuse(&Refusal{Code: CodeProtocolError, Reason: "no such handshake (unknown, used or expired session)", User: req.User})
	}
	defer sess.zero()
	res := c.newResult(sess.client, sess.hash)
	res.User, res.Session = req.User, req.Session
	fail := func(r *Refusal) error {
		r.User, r.Client, r.Statement, r.Signature = res.User, res.Client, res.Statement, res.Signature
		r.KeyFP = res.KeyFingerprint
		return c.refuse(r)
	}
	if err := keys.ValidName(req.User); err != nil {
		return nil, fail(&Refusal{Code: CodeProtocolError, Reason: "bad user name", Err: err})
	}
	now, skew := c.cfg.now(), c.cfg.skew()
	if req.Time > MaxTime {
		return nil, fail(&Refusal{Code: CodeProtocolError, Reason: "authenticator time out of range"})
	}
	t := time.Unix(int64(req.Time), 0)
	if !withinSkew(t, now, skew) {
		return nil, fail(&Refusal{Code: CodeClockSkew, Reason: fmt.Sprintf("authenticator time %d is more than %s from server time %d", req.Time, skew, now.Unix())})
	}
	st := &keys.Statement{HandshakeHash: sess.hash, HostKey: c.hostPub, Service: c.cfg.Service, User: req.User, Time: t}
	stmt, err := st.Marshal()
	if err != nil {
		return nil, fail(&Refusal{Code: CodeProtocolError, Reason: "statement", Err: err})
	}
	res.Statement, res.Signature = stmt, req.SSHSIG
	sig, err := keys.ParseSSHSIG(req.SSHSIG, Namespace)
	if err != nil {
		return nil, fail(&Refusal{Code: CodeAuthFailed, Reason: "malformed authenticator", Err: err})
	}
	// The claimed key must be one the user may use here before any signature work and
	// before the replay cache: a key of the client's own making costs one lookup and
	// leaves nothing behind.
	res.SetKey(sig.Key)
	res.KeyHash = identity.KeyHash(sig.Key)
	if err := c.eligible(res); err != nil {
		return nil, fail(asRefusal(err))
	}
	if err := sig.Verify(stmt); err != nil {
		return nil, fail(&Refusal{Code: CodeAuthFailed, Reason: "authenticator does not verify", Err: err})
	}
	if c.cfg.Replay != nil {
		if err := c.cfg.Replay.Add(req.User, req.SSHSIG, replayForget(t, now, skew), now); errors.Is(err, ErrReplayed) {
			return nil, fail(&Refusal{Code: CodeAuthFailed, Reason: "authenticator replayed", Err: err})
		} else if err != nil {
			return nil, fail(&Refusal{Code: CodeOverloaded, Reason: "replay cache full", Err: err})
		}
	}
	res.AuthTime = t
	if res.Admission, err = c.cfg.Authorize(res); err != nil {
		return nil, fail(asRefusal(err))
	}
	resp := &decision{res: res,
		app: appKeys{ClientToServer: sess.sec.appC2S, ServerToClient: sess.sec.appS2C}}
	if tk := c.cfg.Tickets; tk != nil {
		// The ticket holds the resumption secret of the key schedule, which the client
		// derives itself: it never travels.
		tc := &ticketContents{
			Issued:      uint64(now.Unix()),
			Expiry:      uint64(now.Add(tk.Lifetime()).Unix()),
			User:        req.User,
			KeyHash:     res.KeyHash,
			Service:     c.cfg.Service,
			HostKeyHash: c.hostHash,
			Secret:      sess.sec.resumption,
		}
		defer clear(tc.Secret[:])
		if ticket, err := tk.seal(tc, now); err == nil {
			resp.ticket, resp.lifetime = ticket, uint32(tk.Lifetime()/time.Second)
		}
	}
	return resp, nil
}
