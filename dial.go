// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/user"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth/agent"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// DefaultHandshakeTimeout bounds a handshake when neither the context nor the configuration
// sets a deadline.
const DefaultHandshakeTimeout = 30 * time.Second

// Config configures a client. The zero value (or a nil *Config) does the right thing: it
// authenticates as the current user with the keys of the agent named by $NETAUTH_AUTH_SOCK or
// $SSH_AUTH_SOCK, checks the server against netauth's known_hosts file, and caches resumption
// tickets in the agent (or, when the agent is a stock ssh-agent, in a file the user's processes
// share under $XDG_RUNTIME_DIR, see FileTicketCache, and else in process memory).
// A Config may be shared by concurrent Dials; it must not be modified while in use.
type Config struct {
	// User is the user to authenticate as. If empty, the user part of a "user@host:port"
	// address is used, and otherwise the current user's login name.
	User string

	// AgentSocket is the path of the agent socket. If empty, $NETAUTH_AUTH_SOCK and then
	// $SSH_AUTH_SOCK are used.
	AgentSocket string

	// Signer, if set, signs authenticators in process instead of through an agent.
	Signer ssh.Signer

	// KeyFingerprint, if set ("SHA256:..."), selects which of the agent's keys to use. If
	// empty, the agent's keys are tried in order until the server accepts one.
	KeyFingerprint string

	// KnownHostsFile is the OpenSSH-format file of trusted host keys. If empty,
	// $NETAUTH_KNOWN_HOSTS, else $XDG_CONFIG_HOME/netauth/known_hosts, else
	// ~/.config/netauth/known_hosts. An unknown or changed host key is refused with a
	// *HostKeyError that names the fingerprint and the command that trusts it.
	KnownHostsFile string

	// KnownHostsFiles lists the known_hosts files read after KnownHostsFile, in order. If
	// nil, DefaultKnownHostsFiles() is used: /etc/netauth/known_hosts, then OpenSSH's
	// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts (whose entries match the host on any
	// port); a non-nil empty slice reads none. The first netauth file (SSH false) that pins
	// a key for the host decides; @cert-authority and @revoked lines count in every file
	// (see CheckHostKey).
	KnownHostsFiles []KnownHostsFile

	// SSHHostKeyCallback, if set, replaces the known_hosts check. It has the shape of
	// x/crypto/ssh's ClientConfig.HostKeyCallback, so that the callbacks made for ssh work
	// as they are, such as knownhosts.New(files...) (golang.org/x/crypto/ssh/knownhosts; it
	// needs a TCP remote address) or ssh.FixedHostKey(key). It is given the server's address
	// as dialed ("host:port", or Config.ServerAddr with Client), the remote address of the
	// connection, and the server's host key: an *ssh.Certificate when the server presents
	// a host certificate (as ssh's callbacks expect).
	SSHHostKeyCallback ssh.HostKeyCallback

	// HostKeyCallback, if set (and SSHHostKeyCallback is not), replaces the known_hosts
	// check. It is given the address as dialed ("host:port") and the server's host key.
	//
	// Deprecated: use SSHHostKeyCallback, which has x/crypto/ssh's shape (knownhosts.New
	// gives one) and is also given the remote address.
	HostKeyCallback func(hostport string, key ssh.PublicKey) error

	// DialContext, if set, makes the connections of Dial and DialContext instead of a zero
	// net.Dialer: it lets the caller choose the source address, a connect timeout, or a
	// proxy (a (*net.Dialer).DialContext, or a proxy.ContextDialer's). It is given the
	// network and the address without its user part.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// ServerAddr is the address ("host:port") the server is known by in known_hosts and in
	// the ticket cache, for a connection made elsewhere and given to Client. If empty,
	// Client uses the connection's remote address (and fails if there is none, as on a
	// net.Pipe). Dial ignores it and uses the address it dials.
	ServerAddr string

	// Service, if set, is the service the server must announce.
	Service string

	// TicketCache stores resumption sessions. If nil, the agent's ticket cache is used when
	// the agent is a netauth agent; with a stock ssh-agent, a FileTicketCache in
	// $XDG_RUNTIME_DIR/netauth if that can be used (the debug log says why not), and a
	// process-wide memory cache otherwise (and with Signer).
	TicketCache TicketCache

	// DisableResumption makes every connection a full handshake.
	DisableResumption bool

	// HandshakeTimeout bounds the handshake when the context has no deadline
	// (DefaultHandshakeTimeout if zero).
	HandshakeTimeout time.Duration

	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

// clientKeys pre-generates client ephemeral keys; started on first use.
var clientKeys = sync.OnceValue(func() *x25519.Pool { return x25519.NewPool(16) })

// clientKEMKeys pre-generates the clients' ML-KEM-768 decapsulation keys, one per full
// handshake offered (every ClientHello carries one); started on first use. It is smaller than
// the X25519 pool: a decapsulation key is larger (about 8 KiB in memory) and cannot be wiped,
// and a few keep key generation off the critical path of a process's dials
// (docs/BENCHMARKS.md, "Hybrid full handshake").
var clientKEMKeys = sync.OnceValue(func() *kem.Pool { return kem.NewPool(clientKEMPoolSize) })

// clientKEMPoolSize is how many decapsulation keys a client process keeps ready.
const clientKEMPoolSize = 4

// defaultCache is the process-wide ticket cache used when the agent has none.
var defaultCache = sync.OnceValue(func() TicketCache { return NewMemoryTicketCache(1024) })

// Dial connects to addr ("[user@]host:port") over network ("tcp", "tcp4", "tcp6" or "unix")
// and runs a netauth handshake. cfg may be nil.
func Dial(network, addr string, cfg *Config) (*Conn, error) {
	return DialContext(context.Background(), network, addr, cfg)
}

// DialContext is Dial with a context bounding the connection and the handshake.
func DialContext(ctx context.Context, network, addr string, cfg *Config) (*Conn, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	userName, hostport := splitUser(addr)
	d, err := newDialer(cfg, userName, hostport, network)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			d.release()
		}
	}()
	// Try each candidate key until one is accepted. With a single key (or a resumable
	// session) the first attempt is the only one and the verdict is read lazily.
	for {
		c, err := d.attempt(ctx)
		var re *RefusedError
		if errors.As(err, &re) && re.Code == handshake.CodeNotAuthorized && d.nextKey() {
			continue
		}
		if err != nil {
			return nil, err
		}
		ok = true
		return c, nil
	}
}

// newDialer resolves the user name (cfg.User, else userName, else the current user) and
// connects to the agent.
func newDialer(cfg *Config, userName, hostport, network string) (*dialer, error) {
	if cfg.User != "" {
		userName = cfg.User
	}
	if userName == "" {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("netauth: finding the current user: %w", err)
		}
		userName = u.Username
	}
	if err := keys.ValidName(userName); err != nil {
		return nil, fmt.Errorf("netauth: user name: %w", err)
	}
	d := &dialer{cfg: cfg, user: userName, hostport: hostport, network: network}
	if err := d.setup(); err != nil {
		return nil, err
	}
	return d, nil
}

// Client returns a client netauth connection on conn, a connection made elsewhere (through
// a proxy, a socketpair, an existing stream), as tls.Client does: the handshake runs on the
// first Read or Write, or on an explicit Handshake or HandshakeContext. cfg may be nil.
//
// It is the handshake Dial runs, with the same configuration, but a single attempt: with
// several keys in the agent, the first (or the one the server accepted last time) is
// offered and a refusal is final, since a refused key cannot be retried on the same
// connection (set Config.KeyFingerprint to choose). The server is known by Config.ServerAddr
// in known_hosts and in the ticket cache, or else by conn's remote address. The handshake is
// bounded by HandshakeTimeout (or the context of HandshakeContext, if it has a deadline) and
// by conn's deadlines; it does not set them (but HandshakeContext with a deadline clears the
// read deadline after reading the server's verdict, on every Conn). Closing the returned
// Conn closes conn.
func Client(conn net.Conn, cfg *Config) *Conn {
	if cfg == nil {
		cfg = &Config{}
	}
	c := &Conn{raw: conn}
	c.lazy.Store(true)
	c.start = func(ctx context.Context, c *Conn) error {
		hostport, network := cfg.ServerAddr, ""
		if ra := conn.RemoteAddr(); ra != nil {
			network = ra.Network()
			if hostport == "" && network != "pipe" {
				hostport = ra.String()
			}
		}
		if hostport == "" {
			return errors.New("netauth: Config.ServerAddr is required: the connection has no remote address to name the server by")
		}
		d, err := newDialer(cfg, "", hostport, network)
		if err != nil {
			return err
		}
		if err := d.handshake(ctx, conn, c); err != nil {
			d.release()
			return err
		}
		return nil
	}
	return c
}

// splitUser splits "user@host:port" into its parts.
func splitUser(addr string) (string, string) {
	if i := strings.LastIndex(addr, "@"); i >= 0 {
		return addr[:i], addr[i+1:]
	}
	return "", addr
}

// dialer is the state of one Dial.
type dialer struct {
	cfg      *Config
	user     string
	hostport string
	network  string

	ag      sshagent.ExtendedAgent
	agConn  *agentConn // from agentConns; returned to it by release
	noExt   bool       // the agent lacks netauth extensions
	cache   TicketCache
	keys    []ssh.PublicKey // candidate keys (loaded lazily)
	keyIdx  int
	cacheID string
	keyID   string // the record of the key the server last accepted

	// keysDone is closed when the key list (started by startKeys) is ready; keysErr and
	// remembered are then set. remembered: keys[0] is the key the server accepted last time.
	keysDone   chan struct{}
	keysErr    error
	remembered bool
}

// keyRecordLifetime is how long the record of the key a server accepted is kept.
const keyRecordLifetime = 30 * 24 * time.Hour

func (d *dialer) log() *slog.Logger {
	if d.cfg.Logger != nil {
		return d.cfg.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// setup connects to the agent and chooses the ticket cache.
func (d *dialer) setup() error {
	d.cacheID = "netauth-v1 " + d.user + "@" + d.hostport + " " + d.cfg.Service
	d.keyID = "netauth-key-v1 " + d.user + "@" + d.hostport + " " + d.cfg.Service
	if d.cfg.Signer == nil {
		path := d.cfg.AgentSocket
		if path == "" {
			p, err := agent.SocketPath()
			if err != nil {
				return fmt.Errorf("netauth: %w", err)
			}
			path = p
		}
		ac, err := agentConns.get(path)
		if err != nil {
			return fmt.Errorf("netauth: connecting to the agent at %s: %w (is the agent running? start one with: eval \"$(netauth agent)\" and add a key with ssh-add)", path, err)
		}
		d.ag, d.agConn = ac.ag, ac
	}
	d.cache = d.cfg.TicketCache
	if d.cache == nil {
		if d.ag != nil {
			d.cache = &agentCache{d: d}
		} else {
			d.cache = defaultCache()
		}
	}
	return nil
}

// release returns the agent connection to the process's pool.
func (d *dialer) release() {
	if d.keysDone != nil {
		<-d.keysDone // the key listing uses the agent connection
	}
	if d.agConn != nil {
		agentConns.put(d.agConn)
		d.agConn = nil
	}
}

// startKeys starts listing the candidate keys, so that the list is ready when the server's
// message asks for a signature.
func (d *dialer) startKeys() {
	if d.keysDone != nil {
		return
	}
	d.keysDone = make(chan struct{})
	go func() {
		defer close(d.keysDone)
		d.keysErr = d.listKeys()
	}()
}

// loadKeys waits for the candidate keys.
func (d *dialer) loadKeys() error {
	d.startKeys()
	<-d.keysDone
	return d.keysErr
}

// listKeys lists the candidate keys, the one the server accepted last time first.
func (d *dialer) listKeys() error {
	if d.cfg.Signer != nil {
		d.keys = []ssh.PublicKey{d.cfg.Signer.PublicKey()}
		return nil
	}
	list, err := d.ag.List()
	if err != nil {
		return fmt.Errorf("netauth: listing the agent's keys: %w", err)
	}
	for _, k := range list {
		pub, err := ssh.ParsePublicKey(k.Blob)
		if err != nil {
			continue
		}
		if d.cfg.KeyFingerprint != "" && keys.Fingerprint(pub) != d.cfg.KeyFingerprint {
			continue
		}
		d.keys = append(d.keys, pub)
	}
	if len(d.keys) == 0 {
		if d.cfg.KeyFingerprint != "" {
			return fmt.Errorf("netauth: the agent has no key %s (ssh-add -l lists its keys)", d.cfg.KeyFingerprint)
		}
		return errors.New("netauth: the agent has no keys; add one with ssh-add")
	}
	if len(d.keys) > 1 {
		if b, ok := d.cache.Get(d.keyID); ok {
			for i, k := range d.keys {
				if bytes.Equal(k.Marshal(), b) {
					copy(d.keys[1:i+1], d.keys[:i])
					d.keys[0] = k
					d.remembered = true
					break
				}
			}
		}
	}
	return nil
}

func (d *dialer) nextKey() bool {
	d.keyIdx++
	return d.keyIdx < len(d.keys)
}

// attempt makes one connection and handshake.
func (d *dialer) attempt(ctx context.Context) (*Conn, error) {
	c := &Conn{}
	if err := d.handshake(ctx, nil, c); err != nil {
		return nil, err
	}
	return c, nil
}

// handshake runs a client handshake and sets up c with its result. If nc is nil, it dials
// (Dial: one attempt of several, the connection closed on failure); otherwise it runs on nc,
// a connection made elsewhere (Client: the only attempt; nc is left open and its deadlines as
// the caller set them).
func (d *dialer) handshake(ctx context.Context, nc net.Conn, c *Conn) (err error) {
	dialing := nc == nil
	if _, ok := ctx.Deadline(); !ok {
		t := d.cfg.HandshakeTimeout
		if t <= 0 {
			t = DefaultHandshakeTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	if ac := d.agConn; ac != nil {
		// Agent requests made during the handshake end with it at the latest (those made
		// later, such as storing the ticket, only by agentCallTimeout).
		deadline, _ := ctx.Deadline()
		ac.limit.Store(deadline.UnixNano())
		defer func() {
			// After a failure the limit stays until the connection goes back to the
			// pool: a key listing started for this attempt ends by its deadline too.
			if err == nil && d.agConn == ac { // not yet in the pool, where another Dial may hold it
				ac.limit.Store(0)
			}
		}()
	}
	// The cached session is looked up (in the agent, and checked against known_hosts) while
	// the connection is being made, not before. An SSHHostKeyCallback is given the remote
	// address, known once connected: with one, the session's host key is checked then.
	var sess *handshake.Session
	if d.cfg.DisableResumption {
		d.startKeys()
	}
	if dialing {
		var sessc chan *handshake.Session
		if !d.cfg.DisableResumption {
			sessc = make(chan *handshake.Session, 1)
			go func() { sessc <- d.trustedSession(d.cachedSession(), nil) }()
		}
		nc, err = d.dial(ctx)
		if sessc != nil {
			sess = <-sessc
		}
		if err != nil {
			if sess != nil {
				sess.Zero()
			}
			return fmt.Errorf("netauth: %w", err)
		}
		if sess != nil && d.cfg.SSHHostKeyCallback != nil {
			sess = d.trustedSession(sess, nc.RemoteAddr())
		}
	} else if !d.cfg.DisableResumption {
		sess = d.trustedSession(d.cachedSession(), nc.RemoteAddr())
	}
	if sess == nil {
		d.startKeys() // a full handshake: list the keys while the server's message is on its way
	}
	if dialing {
		deadline, _ := ctx.Deadline()
		_ = nc.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	remote := nc.RemoteAddr()
	rc := record.NewConn(nc)
	rc.ReadCloseReasons() // the server's close record may say why it closed
	hcfg := &handshake.ClientConfig{
		User:         d.user,
		Signer:       &lazySigner{d: d},
		CheckHostKey: func(k ssh.PublicKey, _ string) error { return d.checkHostKey(k, remote) },
		Service:      d.cfg.Service,
		Session:      sess,
		Ephemeral:    clientKeys().Get,
		KEM:          clientKEMKeys().Get,
	}
	hc, err := handshake.RunClient(rc, hcfg)
	if sess != nil {
		sess.Zero()
	}
	if err != nil {
		if dialing {
			nc.Close()
		}
		if ctx.Err() != nil {
			return fmt.Errorf("netauth: handshake with %s: %w (%w)", d.hostport, ctx.Err(), err)
		}
		return err
	}
	if !stop() { // ctx ended as the handshake did: the connection has a deadline in the past
		if dialing {
			nc.Close()
		}
		return fmt.Errorf("netauth: handshake with %s: %w", d.hostport, ctx.Err())
	}
	if hc.Result.Offered && !hc.Result.Resumed {
		d.cache.Delete(d.cacheID)
	}
	if dialing {
		_ = nc.SetDeadline(time.Time{})
	}
	c.rc, c.client, c.id = rc, hc, hc.Result.Identity
	c.onSession = func(s *handshake.Session) {
		if !d.cfg.DisableResumption {
			d.cache.Put(d.cacheID, s.Marshal(), s.Expiry)
		}
		s.Zero()
	}
	if hc.Pending() && !hc.Result.Resumed && len(d.keys) > 1 {
		c.onVerdict = d.recordKey
		if dialing && !(d.remembered && d.keyIdx == 0) {
			// Several candidate keys and none the server accepted before: wait for the
			// verdict so that a refused key can be retried (the agent connection is kept
			// for that: no cleanup yet). With the key the server accepted last time, data
			// is pipelined behind it as with a single key.
			if err := c.HandshakeContext(ctx); err != nil {
				rc.Close()
				return err
			}
			d.release()
			return nil
		}
	}
	c.cleanup = d.release
	if !hc.Pending() {
		c.release()
	}
	return nil
}

// dial makes the connection, with Config.DialContext if set.
func (d *dialer) dial(ctx context.Context) (net.Conn, error) {
	if d.cfg.DialContext != nil {
		nc, err := d.cfg.DialContext(ctx, d.network, d.hostport)
		if err == nil && nc == nil {
			err = errors.New("Config.DialContext returned no connection and no error")
		}
		return nc, err
	}
	return (&net.Dialer{}).DialContext(ctx, d.network, d.hostport)
}

// recordKey remembers the key the server accepted (so that the next full handshake tries it
// first and pipelines data behind it), or forgets a remembered key the server refused.
func (d *dialer) recordKey(verdict error) {
	var re *RefusedError
	switch {
	case verdict == nil && !(d.remembered && d.keyIdx == 0):
		d.cache.Put(d.keyID, d.keys[d.keyIdx].Marshal(), time.Now().Add(keyRecordLifetime))
	case errors.As(verdict, &re) && re.Code == handshake.CodeNotAuthorized && d.remembered && d.keyIdx == 0:
		d.cache.Delete(d.keyID)
	}
}

// cachedSession returns a usable cached session, or nil.
func (d *dialer) cachedSession() *handshake.Session {
	b, ok := d.cache.Get(d.cacheID)
	if !ok {
		return nil
	}
	defer clear(b)
	s, err := handshake.ParseSession(b)
	if err != nil || !time.Now().Before(s.Expiry) || s.User != d.user {
		d.cache.Delete(d.cacheID)
		return nil
	}
	return s
}

// trustedSession returns s if its host key is still trusted (a host key that no longer is
// must not be resumed either), and otherwise forgets it and returns nil. remote is the
// connection's remote address, nil while connecting: then the check waits for it if an
// SSHHostKeyCallback needs it (s is returned as it is).
func (d *dialer) trustedSession(s *handshake.Session, remote net.Addr) *handshake.Session {
	if s == nil || (remote == nil && d.cfg.SSHHostKeyCallback != nil) {
		return s
	}
	hk, err := ssh.ParsePublicKey(s.HostKey)
	if err != nil || d.checkHostKey(hk, remote) != nil {
		s.Zero()
		d.cache.Delete(d.cacheID)
		return nil
	}
	return s
}

// checkHostKey checks the server's host key; remote is the connection's remote address.
func (d *dialer) checkHostKey(key ssh.PublicKey, remote net.Addr) error {
	if cb := d.cfg.SSHHostKeyCallback; cb != nil {
		return cb(d.hostport, remote, key)
	}
	if d.cfg.HostKeyCallback != nil {
		return d.cfg.HostKeyCallback(d.hostport, key)
	}
	files, err := knownHostsFiles(d.cfg.KnownHostsFile, d.cfg.KnownHostsFiles)
	if err != nil {
		return err
	}
	return keys.HostChecker{Files: files}.Check(d.hostport, key)
}

// lazySigner signs with the current candidate key, listing the agent's keys only when a full
// handshake needs a signature.
type lazySigner struct {
	d   *dialer
	pub ssh.PublicKey
}

func (s *lazySigner) PublicKey() ssh.PublicKey { return s.pub }

func (s *lazySigner) SignStatement(stmt []byte) ([]byte, error) {
	d := s.d
	if err := d.loadKeys(); err != nil {
		return nil, err
	}
	s.pub = d.keys[d.keyIdx]
	if d.cfg.Signer != nil {
		return keys.Sign(d.cfg.Signer, handshake.Namespace, stmt)
	}
	if !d.noExt {
		sig, err := agent.SignStatement(d.ag, s.pub, stmt)
		if !errors.Is(err, agent.ErrUnsupported) {
			return sig, err
		}
		d.noExt = true
	}
	// A stock ssh-agent: sign the SSHSIG data through the plain signing request.
	var flags sshagent.SignatureFlags
	if keys.Underlying(s.pub).Type() == ssh.KeyAlgoRSA { // a certificate signs with its key
		flags = sshagent.SignatureFlagRsaSha512
	}
	sig, err := d.ag.SignWithFlags(s.pub, keys.SignedData(handshake.Namespace, stmt), flags)
	if err != nil {
		return nil, fmt.Errorf("agent refused to sign with %s: %w", keys.Fingerprint(s.pub), err)
	}
	return keys.Assemble(s.pub, handshake.Namespace, sig), nil
}

// agentCache keeps sessions in the agent, falling back, when the agent is a stock ssh-agent,
// to the file cache the user's processes share ($XDG_RUNTIME_DIR/netauth), or when that cannot
// be used to the process-wide memory cache (the debug log says why).
type agentCache struct {
	d        *dialer
	fallback TicketCache
}

// validFileCacheDirs holds the ticket cache directories found usable, so that a process
// checks (and creates) one only once; every use checks the directory and the file again.
var validFileCacheDirs sync.Map

// other returns the cache used when the agent has none.
func (c *agentCache) other() TicketCache {
	if c.fallback != nil {
		return c.fallback
	}
	c.fallback = defaultCache()
	dir, err := DefaultFileTicketCacheDir()
	if err == nil {
		if _, ok := validFileCacheDirs.Load(dir); !ok {
			_, err = NewFileTicketCache(dir)
			if err == nil {
				validFileCacheDirs.Store(dir, true)
			}
		}
	}
	if err != nil {
		c.d.log().Debug("the agent has no ticket cache, and the shared ticket cache file cannot be used; tickets stay in this process", "err", err)
		return c.fallback
	}
	log := c.d.log()
	c.fallback = &FileTicketCache{dir: dir, OnError: func(err error) { log.Debug("shared ticket cache", "err", err) }}
	return c.fallback
}

func (c *agentCache) Get(id string) ([]byte, bool) {
	if c.d.noExt {
		return c.other().Get(id)
	}
	t, _, err := agent.GetTicket(c.d.ag, id)
	if errors.Is(err, agent.ErrUnsupported) {
		c.d.noExt = true
		return c.other().Get(id)
	}
	if err != nil {
		if !errors.Is(err, agent.ErrNoTicket) {
			c.d.log().Debug("agent ticket cache", "err", err)
		}
		return nil, false
	}
	return t, true
}

func (c *agentCache) Put(id string, s []byte, expiry time.Time) {
	if c.d.noExt {
		c.other().Put(id, s, expiry)
		return
	}
	if err := agent.PutTicket(c.d.ag, id, s, expiry); err != nil {
		if errors.Is(err, agent.ErrUnsupported) {
			c.d.noExt = true
			c.other().Put(id, s, expiry)
			return
		}
		c.d.log().Debug("agent ticket cache", "err", err)
	}
}

func (c *agentCache) Delete(id string) {
	if c.d.noExt {
		c.other().Delete(id)
		return
	}
	_ = agent.DeleteTicket(c.d.ag, id)
}
