// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
	"weak"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/limits"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// Server defaults.
const (
	DefaultServerHandshakeTimeout = 10 * time.Second
	DefaultMaxPendingHandshakes   = 256
	DefaultMaxPendingPerSource    = 10
	DefaultTicketLifetime         = time.Hour
	DefaultMaxClockSkew           = handshake.DefaultMaxClockSkew
)

// ServerConfig configures a server (in-process mode: the program that calls Listen is the
// server). HostKey and Keys are required. A ServerConfig must not be modified once passed to
// Listen or NewListener.
type ServerConfig struct {
	// HostKey is the server's Ed25519 host key (see LoadOrCreateHostKey).
	HostKey ed25519.PrivateKey

	// HostCertificate, if set, is an OpenSSH host certificate of HostKey (made with
	// ssh-keygen -s CA -h -I id -n names host_key.pub; see LoadHostCertificate) that the
	// server presents instead of the bare key, so that clients trusting the CA with a
	// @cert-authority line in known_hosts need no netauth trust. Listen refuses one that is
	// not a host certificate of HostKey or is not valid now.
	HostCertificate *ssh.Certificate

	// Service is the name of the service, announced to clients and bound into every
	// authenticator (default "netauth").
	Service string

	// Keys gives the public keys that may authenticate as each user (see UserKeyFiles,
	// HomeAuthorizedKeys, KeyCommand and MultiKeySource). It is consulted on every full
	// handshake and on every resumption, so removing a key takes effect at once.
	Keys KeySource

	// TrustedUserCAKeys are user CA keys, as sshd's TrustedUserCAKeys (see LoadUserCAKeys):
	// an OpenSSH user certificate signed by one of them authenticates a user, in place of a
	// key from Keys, if it is a user certificate valid now (within MaxClockSkew), its
	// principals allow the user (AuthorizedPrincipals, or by default the user name), its
	// critical options are met (source-address against the client's address; force-command
	// and unknown options refuse), and it is not revoked (RevokedKeys). A CA key is not an
	// authorized key by being listed here. Empty: certificates are not accepted.
	TrustedUserCAKeys []ssh.PublicKey

	// AuthorizedPrincipals, if not empty, list the principals allowed for each user, as
	// sshd's AuthorizedPrincipalsFile and AuthorizedPrincipalsCommand: a certificate must
	// then carry one of them (from any source) instead of the user name.
	AuthorizedPrincipals []PrincipalSource

	// RevokedKeys, if set, lists revoked keys and certificates (sshd's RevokedKeys): a
	// revoked key, or a certificate that is revoked or whose CA key is, is not authorized.
	RevokedKeys *RevokedKeys

	// Authorize, if set, is the authorization policy: called once the client has proved it
	// is the user (after the signature of a full handshake, or the binder of a resumption,
	// verified) and the key is known to be the user's, so it runs only for genuine clients and
	// may have side effects. A non-nil error refuses the connection. The client only learns
	// "not authorized"; the error goes to the Logger.
	Authorize func(ctx context.Context, id *Identity) error

	// TicketLifetime is how long a resumption ticket is valid (DefaultTicketLifetime if zero;
	// negative disables resumption). Ticket keys rotate at the same interval.
	TicketLifetime time.Duration

	// HandshakeTimeout bounds each handshake (DefaultServerHandshakeTimeout if zero).
	HandshakeTimeout time.Duration

	// MaxClockSkew bounds the difference between an authenticator's time and the server's
	// clock (DefaultMaxClockSkew if zero).
	MaxClockSkew time.Duration

	// MaxPendingHandshakes bounds the handshakes in progress; connections beyond it are
	// refused with an "overloaded" code (DefaultMaxPendingHandshakes if zero).
	MaxPendingHandshakes int

	// MaxPendingPerSource bounds the handshakes in progress from one source: one IPv4
	// address, or one IPv6 /64 network (one host can hold every address of its /64), like
	// OpenSSH's PerSourceMaxStartups. Connections beyond it are refused with an "overloaded"
	// code before anything is read from them, so a host flooding the server with slow or
	// bogus handshakes cannot take the slots of MaxPendingHandshakes from everyone else.
	// DefaultMaxPendingPerSource if zero; negative means no per-source bound. Connections
	// that are not IP (Unix sockets) count only against MaxPendingHandshakes.
	MaxPendingPerSource int

	// Logger receives refusals and errors; nil discards them.
	Logger *slog.Logger

	// shared is the server state of the connections given to Server with this config,
	// made on first use (guarded by sharedMu).
	shared *Listener
}

// sharedMu guards ServerConfig.shared.
var sharedMu sync.Mutex

// KeySource gives the public keys that may authenticate as a user; a user without keys gets
// (nil, nil).
type KeySource interface {
	Keys(ctx context.Context, user string) ([]ssh.PublicKey, error)
}

// UserKeyFiles returns a KeySource reading dir/<user>, one authorized_keys-format file per
// user, typically owned by the administrator (/etc/netauth/authorized_keys). Keys carrying
// options are skipped: their restrictions are ssh-specific. dir has no default: with an
// empty dir every lookup fails (and handshakes are refused with internal_error).
func UserKeyFiles(dir string) KeySource { return keys.UserFiles{Dir: dir} }

// HomeAuthorizedKeys returns a KeySource reading each user's ~/.ssh/authorized_keys, skipping
// keys that carry options (restrictions netauth cannot enforce).
func HomeAuthorizedKeys() KeySource { return keys.HomeAuthorizedKeys{} }

// KeyCommand returns a KeySource running an external program, like sshd's
// AuthorizedKeysCommand: each "%u" in args is replaced by the user name, and the program
// prints the user's keys in authorized_keys format.
func KeyCommand(path string, args ...string) KeySource {
	return keys.Command{Path: path, Args: args}
}

// MultiKeySource returns the union of sources.
func MultiKeySource(sources ...KeySource) KeySource {
	m := make(keys.Multi, len(sources))
	for i, s := range sources {
		m[i] = s
	}
	return m
}

// StaticKeys is a KeySource held in memory: user name to keys.
type StaticKeys map[string][]ssh.PublicKey

// Keys returns the user's keys.
func (s StaticKeys) Keys(_ context.Context, user string) ([]ssh.PublicKey, error) {
	return s[user], nil
}

// Listener accepts authenticated netauth connections. Handshakes run concurrently, each with
// a deadline, so a slow or hostile client never delays Accept for others.
type Listener struct {
	inner   net.Listener
	cfg     *ServerConfig
	core    *handshake.ServerCore
	service string
	timeout time.Duration
	pool    *x25519.Pool
	log     *slog.Logger
	ready   chan *Conn
	done    chan struct{}
	closeMu sync.Once
	limiter *limits.Limiter
	refused *limits.Throttle // of "refusing connection" log lines
	wg      sync.WaitGroup

	worker *workerSource // set when the connections come from netauthd

	// owner is, for the state of Server, the config it was made for (to tell a copy of it);
	// weak, as the state's goroutines hold the state and must not keep the config alive.
	owner weak.Pointer[ServerConfig]
}

// Listen listens on addr and returns a Listener of authenticated connections.
//
// Worker mode: in a program that netauthd started as a worker (see IsWorker), Listen does
// not listen. It ignores network, addr and everything in cfg but its Logger, and returns a
// Listener of the connections netauthd hands over, already authenticated and authorized by
// netauthd, with the same Identity, so one program serves both ways. Listen then logs one
// line at Info to cfg.Logger saying so ("netauth: worker mode: ...").
func Listen(network, addr string, cfg *ServerConfig) (*Listener, error) {
	if IsWorker() {
		l, err := listenWorker(cfg)
		if err != nil {
			return nil, err
		}
		l.log.Info("netauth: worker mode: serving the connections netauthd hands over; network, address and configuration ignored",
			"network", network, "addr", addr)
		return l, nil
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	inner, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("netauth: %w", err)
	}
	return NewListener(inner, cfg)
}

func (cfg *ServerConfig) check() error {
	if cfg == nil {
		return errors.New("netauth: nil ServerConfig")
	}
	if len(cfg.HostKey) != ed25519.PrivateKeySize {
		return errors.New("netauth: ServerConfig.HostKey must be an Ed25519 private key (see LoadOrCreateHostKey)")
	}
	if cfg.HostCertificate != nil {
		if err := keys.CheckHostCertificate(cfg.HostCertificate, cfg.HostKey, time.Now()); err != nil {
			return fmt.Errorf("netauth: ServerConfig.HostCertificate: %w", err)
		}
	}
	if cfg.Keys == nil {
		return errors.New("netauth: ServerConfig.Keys is required: it says which keys may act as each user")
	}
	if cfg.Service != "" {
		if err := keys.ValidName(cfg.Service); err != nil {
			return fmt.Errorf("netauth: service name: %w", err)
		}
	}
	return nil
}

// NewListener serves netauth on connections accepted from inner.
func NewListener(inner net.Listener, cfg *ServerConfig) (*Listener, error) {
	l, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	l.inner = inner
	loop := &limits.AcceptLoop{Limiter: l.limiter, Refusals: l.refused, Service: l.service, Log: l.log,
		Refuse: func(nc net.Conn) { handshake.Refuse(nc, handshake.CodeOverloaded) },
		Handle: func(nc net.Conn, release func()) {
			l.wg.Add(1)
			go l.serve(nc, release)
		},
		Closed: func() bool {
			select {
			case <-l.done:
				return true
			default:
				return false
			}
		}}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		loop.Run(l.inner)
	}()
	return l, nil
}

// newServer makes the server state of a Listener (without its accept loop), which Server
// uses too: the handshake core with its ticket keys and replay cache, the handshake limits,
// the logging.
func newServer(cfg *ServerConfig) (*Listener, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	l := &Listener{
		cfg:   cfg,
		pool:  x25519.NewPool(64),
		ready: make(chan *Conn),
		done:  make(chan struct{}),
		log:   cfg.Logger,
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	max := cfg.MaxPendingHandshakes
	if max <= 0 {
		max = DefaultMaxPendingHandshakes
	}
	perSource := cfg.MaxPendingPerSource
	if perSource == 0 {
		perSource = DefaultMaxPendingPerSource
	}
	l.limiter = limits.New(limits.Config{MaxPending: max, PerSource: perSource})
	l.refused = &limits.Throttle{Every: time.Second}
	service := cfg.Service
	if service == "" {
		service = "netauth"
	}
	l.service = service
	l.timeout = cfg.HandshakeTimeout
	if l.timeout <= 0 {
		l.timeout = DefaultServerHandshakeTimeout
	}
	hcfg := &handshake.ServerConfig{
		HostKey:      cfg.HostKey,
		HostCert:     cfg.HostCertificate,
		Service:      service,
		MaxClockSkew: cfg.MaxClockSkew,
		UserCerts:    cfg.userCertChecker(),
		RevokedKeys:  cfg.revokedSet(),
		Replay:       handshake.NewReplayCache(0),
		Ephemeral:    l.pool.Get,
		Eligible:     l.eligible,
		Authorize:    l.authorize,
		Refused:      l.logRefusal,
	}
	if cfg.TicketLifetime >= 0 {
		hcfg.Tickets = handshake.NewTicketKeys(cfg.TicketLifetime, rand.Reader)
	}
	var err error
	if l.core, err = handshake.NewServerCore(hcfg, l.timeout); err != nil {
		l.pool.Close()
		return nil, fmt.Errorf("netauth: %w", err)
	}
	if tk := hcfg.Tickets; tk != nil {
		l.wg.Add(1)
		go func() { defer l.wg.Done(); tk.RetireLoop(l.done) }()
	}
	return l, nil
}

// serve runs one handshake and hands the connection to Accept; release gives back the
// connection's handshake slot (once the handshake is over; a second call does nothing).
func (l *Listener) serve(nc net.Conn, release func()) {
	defer l.wg.Done()
	defer release()
	_ = nc.SetDeadline(time.Now().Add(l.timeout))
	c := &Conn{}
	if err := l.handshake(nc, c); err != nil {
		nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	release()
	select {
	case l.ready <- c:
	case <-l.done:
		c.Close()
	}
}

// handshake runs the server handshake on nc and sets up c with its result. It is the
// handshake of every connection of the library's server, accepted by a Listener or given to
// Server.
func (l *Listener) handshake(nc net.Conn, c *Conn) error {
	rc := record.NewConn(nc)
	res, err := handshake.Serve(rc, l.core, nc.RemoteAddr().String(), l.logRefusal)
	if err != nil {
		if !errors.As(err, new(*handshake.Refusal)) {
			l.log.Debug("netauth: handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		}
		return err
	}
	l.log.Debug("netauth: accepted", "remote", nc.RemoteAddr().String(), "user", res.User,
		"key", res.KeyFingerprint, "resumed", res.Resumed, "ticket_declined", res.Offered && !res.Resumed)
	c.rc, c.id = rc, res.Identity
	return nil
}

// Server returns a server netauth connection on conn, a connection accepted elsewhere (from
// a listener of the caller's, inetd, a socketpair), as tls.Server does: the handshake runs on
// the first Read or Write, or on an explicit Handshake or HandshakeContext.
//
// It runs the handshake a Listener runs, with the same configuration: the host key, Keys and
// Authorize, the clock skew bound, the handshake timeout (HandshakeTimeout, or the context
// of HandshakeContext if it ends sooner), the replay cache and the ticket keys, which every
// Server call with the same *ServerConfig shares (tickets issued by a Listener are not
// resumed by Server, nor the reverse). Each connection takes a slot of MaxPendingHandshakes
// and MaxPendingPerSource for its handshake, also shared by the Server calls of one config,
// and is refused as overloaded beyond them. What the caller gives up is the Listener's accept
// loop: a Listener refuses a connection over the bounds before it accepts the next one, and
// throttles its accept errors; with Server the caller decides how many connections it
// accepts, and a refused one has been accepted first. Once the handshake has run, conn's
// deadlines are left as the caller set them. Closing the returned Conn closes conn.
//
// Server ignores worker mode (IsWorker): netauthd's connections come through Listen.
func Server(conn net.Conn, cfg *ServerConfig) *Conn {
	c := &Conn{raw: conn}
	c.lazy.Store(true)
	c.start = func(ctx context.Context, c *Conn) error {
		l, err := cfg.server()
		if err != nil {
			return err
		}
		release, err := l.limiter.Admit(conn.RemoteAddr())
		if err != nil {
			if ok, held := l.refused.Allow(time.Now()); ok {
				l.log.Warn("refusing connection: "+err.Error(), "service", l.service, "client", conn.RemoteAddr().String(), "unlogged_refusals", held)
			}
			handshake.Refuse(conn, handshake.CodeOverloaded)
			return fmt.Errorf("netauth: refusing connection: %w", err)
		}
		defer release()
		ctx, cancel := context.WithTimeout(ctx, l.timeout)
		defer cancel()
		stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
		defer stop()
		if err := l.handshake(conn, c); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("netauth: handshake: %w (%w)", ctx.Err(), err)
			}
			return err
		}
		if !stop() { // ctx ended as the handshake did: conn has a deadline in the past
			return fmt.Errorf("netauth: handshake: %w", ctx.Err())
		}
		return nil
	}
	return c
}

// server returns the server state of the connections given to Server with cfg, made on first
// use. It lives as long as cfg: its goroutines end once cfg is garbage.
func (cfg *ServerConfig) server() (*Listener, error) {
	if cfg == nil {
		return nil, errors.New("netauth: nil ServerConfig")
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if l := cfg.shared; l != nil && l.owner == weak.Make(cfg) {
		return l, nil
	}
	// The state holds a copy of cfg, not cfg, so that cfg can become garbage.
	own := *cfg
	own.shared = nil
	l, err := newServer(&own)
	if err != nil {
		return nil, err
	}
	l.owner = weak.Make(cfg)
	cfg.shared = l
	done, pool := l.done, l.pool
	runtime.AddCleanup(cfg, func(struct{}) { close(done); pool.Close() }, struct{}{})
	return l, nil
}

// eligible finds the user's key, before the client proves it holds the key (or the ticket's
// secret): it has no side effects.
func (l *Listener) eligible(r *handshake.Result) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	return handshake.FindKey(ctx, l.cfg.Keys, r)
}

// authorize applies the application's policy callback to a client that proved its identity
// (its key was found eligible before).
func (l *Listener) authorize(r *handshake.Result) (any, error) {
	if l.cfg.Authorize == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	id := r.Identity
	if err := l.cfg.Authorize(ctx, &id); err != nil {
		return nil, &handshake.Refusal{Code: handshake.CodeNotAuthorized, Reason: "refused by policy", Err: err}
	}
	return nil, nil
}

// maxRefusalLogLine bounds the line a refusal is logged as with slog's text handler. The
// reason can quote what the client sent (the namespace of a malformed signature, up to
// 16 KiB): every field is cut to a length counted as the handler writes it, quoted.
const (
	maxRefusalLogLine = 1024
	maxRefusalReason  = 300
)

func (l *Listener) logRefusal(r *handshake.Refusal) {
	l.log.Info("netauth: handshake refused", "remote", cutQuoted(r.Client, 64), "code", r.Code.String(),
		"reason", cutQuoted(r.Error(), maxRefusalReason), "user", cutQuoted(r.User, keys.MaxNameLength),
		"key", cutQuoted(r.KeyFP, 64))
}

// cutQuoted returns s if it is at most n bytes once quoted (strconv.Quote, without its quotes),
// and otherwise its longest prefix of whole characters that is, followed by "...", within n.
func cutQuoted(s string, n int) string {
	cost, end := 0, -1
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		c := size
		switch {
		case r == utf8.RuneError && size == 1:
			c = len(`\xff`)
		case r == '"' || r == '\\':
			c = 2
		case !strconv.IsPrint(r):
			c = len(strconv.QuoteRune(r)) - 2
		}
		if end < 0 && cost+c > n-len("...") {
			end = i
		}
		if cost += c; cost > n {
			return s[:max(end, 0)] + "..."
		}
		i += size
	}
	return s
}

// Accept waits for the next authenticated connection. It returns net.ErrClosed after Close.
// An accept error of the underlying listener other than its closing (out of descriptors, say)
// does not end the Listener: it is logged and accepting goes on 100 ms later.
func (l *Listener) Accept() (net.Conn, error) {
	return l.AcceptNetauth()
}

// AcceptNetauth is Accept returning the *Conn.
func (l *Listener) AcceptNetauth() (*Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops listening. Handshakes in progress are abandoned; connections already returned
// by Accept stay open.
func (l *Listener) Close() error {
	var err error
	l.closeMu.Do(func() {
		close(l.done)
		if l.worker != nil {
			err = l.worker.ch.Close()
			return
		}
		err = l.inner.Close()
		go func() { l.wg.Wait(); l.pool.Close() }()
	})
	return err
}

// Addr returns the listener's network address ("netauthd" for a worker).
func (l *Listener) Addr() net.Addr {
	if l.worker != nil {
		return workerAddr{}
	}
	return l.inner.Addr()
}

type workerAddr struct{}

func (workerAddr) Network() string { return "netauthd" }
func (workerAddr) String() string  { return "netauthd" }
