// SPDX-License-Identifier: Apache-2.0

// Package proxy lets programs that do not speak netauth use a netauth service: it accepts
// plain connections on a local address and carries each one to the server through
// netauth.DialContext, authenticated as the proxy's user.
//
// A local proxy must not let other users of the machine ride its owner's identity, so every
// accepted connection is checked before anything is sent to the server: only processes
// running as the proxy's own uid are served (root included: a proxy running as root serves
// only root). On a Unix socket the kernel's peer credentials (SO_PEERCRED) tell who connected;
// on loopback TCP the owner of the connecting socket is looked up in the kernel's socket
// tables (see sockdiag.go and procnet.go). A connection whose owner cannot be determined is
// refused.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/keys"
)

// maxUnixPath is the longest Unix socket path the kernel accepts (sun_path less its NUL).
const maxUnixPath = 107

// Options configures a Proxy.
type Options struct {
	// Listen is the local address: "unix:PATH" or "tcp:HOST:PORT" where HOST is a loopback
	// address (127.0.0.1, ::1 or localhost). If empty, the proxy listens on a Unix socket in a
	// private directory: $XDG_RUNTIME_DIR/netauth/proxy-HOST-PORT.sock when XDG_RUNTIME_DIR
	// is set, else os.TempDir()/netauth-proxy-UID/proxy-HOST-PORT.sock (mode 0700): the
	// same path at every run.
	Listen string

	// Remote is the netauth server, "[user@]host:port".
	Remote string

	// Config is the client configuration used for every connection to Remote; nil means
	// the zero Config (the agent's keys, netauth's known_hosts, tickets in the agent or in
	// process memory). It must not be modified while the proxy runs.
	Config *netauth.Config

	// Logger receives refusals, connection errors and (at debug level) each connection;
	// nil discards them.
	Logger *slog.Logger

	// HTTP serves the local connections as HTTP, for web browsers, instead of relaying their
	// bytes: requests for another Host than the proxy's own address and cross-origin requests
	// that a page of another site could make the browser send are refused (see http.go), and
	// the rest are forwarded to Remote over netauth connections that are kept alive. It needs
	// a loopback TCP Listen address.
	HTTP bool

	// IdleTimeout, if positive, closes the proxy (Serve returns nil) once no local connection
	// has been open for that long.
	IdleTimeout time.Duration
}

// Proxy accepts local connections and forwards each to a netauth server. Create one with
// Listen, run it with Serve, and stop it with Close (or by cancelling Serve's context).
type Proxy struct {
	ln       net.Listener
	addr     string          // "unix:PATH" or "tcp:HOST:PORT"
	dialAddr string          // Remote as given
	hostport string          // Remote without the user
	user     string          // the user connections authenticate as
	cfg      *netauth.Config // never nil
	log      *slog.Logger    // never nil
	uid      int             // the only uid served
	private  string          // a directory Listen created, removed by Close
	front    *httpFront      // set in HTTP mode
	idle     time.Duration   // Options.IdleTimeout

	// tcpOwner finds the uid owning the client end of a loopback TCP connection; tests
	// replace it to check that a failed lookup refuses the connection.
	tcpOwner func(client, server netip.AddrPort) (int, error)

	mu       sync.Mutex
	closed   bool
	done     chan struct{} // closed by Close
	conns    map[io.Closer]struct{}
	wg       sync.WaitGroup // connection goroutines
	closeErr error

	active    int         // local connections being served
	idleTimer *time.Timer // runs while active is 0 and idle is set
	idleGen   int         // invalidates a timer that fired after it was stopped
}

// Listen checks the options and starts listening on the local address. It does not contact
// the server: an unreachable server or an untrusted host key is reported, per connection,
// when a local client connects.
func Listen(opts Options) (*Proxy, error) {
	p := &Proxy{
		cfg:   opts.Config,
		log:   opts.Logger,
		uid:   os.Getuid(),
		idle:  opts.IdleTimeout,
		done:  make(chan struct{}),
		conns: make(map[io.Closer]struct{}),
	}
	if p.cfg == nil {
		p.cfg = &netauth.Config{}
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.tcpOwner = newOwnerFinder(p.log).owner
	userPart, host, port, err := parseRemote(opts.Remote)
	if err != nil {
		return nil, err
	}
	p.dialAddr, p.hostport = opts.Remote, net.JoinHostPort(host, port)
	if p.user, err = resolveUser(p.cfg.User, userPart); err != nil {
		return nil, err
	}

	switch {
	case opts.Listen == "":
		path, private, err := defaultSocketPath(host, port)
		if err != nil {
			return nil, err
		}
		p.private = private
		if err := p.listenUnix(path); err != nil {
			if private != "" {
				os.RemoveAll(private)
			}
			return nil, err
		}
	case strings.HasPrefix(opts.Listen, "unix:"):
		path := strings.TrimPrefix(opts.Listen, "unix:")
		if path == "" {
			return nil, fmt.Errorf("netauth proxy: -listen %q names no socket path; want unix:PATH", opts.Listen)
		}
		if err := p.listenUnix(path); err != nil {
			return nil, err
		}
	case strings.HasPrefix(opts.Listen, "tcp:"):
		if err := p.listenTCP(strings.TrimPrefix(opts.Listen, "tcp:")); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("netauth proxy: listen address %q: want unix:PATH or tcp:127.0.0.1:PORT", opts.Listen)
	}
	if opts.HTTP {
		ta, ok := p.ln.Addr().(*net.TCPAddr)
		if !ok {
			p.Close()
			return nil, fmt.Errorf("netauth proxy: HTTP mode serves web browsers, which need a loopback TCP address: use -listen tcp:127.0.0.1:PORT, not %s", p.addr)
		}
		p.front = newHTTPFront(p, ta.Port)
	}
	return p, nil
}

// parseRemote splits "[user@]host:port" and checks the port.
func parseRemote(remote string) (userPart, host, port string, err error) {
	hostport := remote
	if i := strings.LastIndex(remote, "@"); i >= 0 {
		userPart, hostport = remote[:i], remote[i+1:]
		if userPart == "" {
			return "", "", "", fmt.Errorf("netauth proxy: bad remote address %q: empty user name before @", remote)
		}
	}
	host, port, err = net.SplitHostPort(hostport)
	if err != nil {
		return "", "", "", fmt.Errorf("netauth proxy: bad remote address %q (want [user@]host:port): %w", remote, err)
	}
	if host == "" {
		return "", "", "", fmt.Errorf("netauth proxy: bad remote address %q: no host", remote)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" || port == "0" {
		return "", "", "", fmt.Errorf("netauth proxy: bad remote address %q: port %q is not a port number", remote, port)
	}
	return userPart, host, port, nil
}

// resolveUser returns the user name connections authenticate as, the way netauth.Dial
// chooses it.
func resolveUser(configured, fromAddr string) (string, error) {
	name := configured
	if name == "" {
		name = fromAddr
	}
	if name == "" {
		u, err := user.Current()
		if err != nil {
			return "", fmt.Errorf("netauth proxy: finding the current user: %w", err)
		}
		name = u.Username
	}
	if err := keys.ValidName(name); err != nil {
		return "", fmt.Errorf("netauth proxy: user name %q: %w", name, err)
	}
	return name, nil
}

// defaultSocketPath chooses the socket of a proxy started without -listen, creating its
// directory if need be: $XDG_RUNTIME_DIR/netauth, or else netauth-proxy-UID under
// os.TempDir() (like tmux's /tmp/tmux-UID), so that the same user's proxy for the same
// server always has the same path, whichever run made it. The directory must be the
// user's own and not writable by others. private is set when the directory is the proxy's
// own to remove; a stable directory never is.
func defaultSocketPath(host, port string) (path, private string, err error) {
	dir, err := RuntimeDir()
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "proxy-"+SafeName(host)+"-"+SafeName(port)+".sock"), "", nil
}

// RuntimeDir returns the user's private directory for proxy sockets and state, creating it
// if need be: $XDG_RUNTIME_DIR/netauth when XDG_RUNTIME_DIR is set, else
// os.TempDir()/netauth-proxy-UID. It refuses a directory that another user owns or could
// write to. netauth open keeps the state of the proxies it starts there too.
func RuntimeDir() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("netauth-proxy-%d", os.Getuid()))
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		dir = filepath.Join(rt, "netauth")
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("netauth proxy: creating the socket directory: %w", err)
	}
	if err := checkPrivateDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// checkPrivateDir refuses a socket directory that another user owns or could write to:
// whoever can write to it can replace the socket and see the traffic clients send.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("netauth proxy: checking the socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("netauth proxy: %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("netauth proxy: checking the socket directory %s: no owner information", dir)
	}
	if int(st.Uid) != os.Getuid() {
		return fmt.Errorf("netauth proxy: the socket directory %s belongs to uid %d, not to you (uid %d)", dir, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("netauth proxy: the socket directory %s is writable by other users (mode %04o); fix it with: chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// SafeName keeps a host name, port or user name usable as part of a file name: characters
// other than letters, digits, '.', '-' and '_' become '_'.
func SafeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

// listenUnix listens on a Unix socket at path (mode 0600), replacing a stale socket that
// nobody listens on.
func (p *Proxy) listenUnix(path string) error {
	if len(path) > maxUnixPath {
		return fmt.Errorf("netauth proxy: socket path %s is too long (%d bytes, at most %d); choose a shorter one with -listen unix:PATH", path, len(path), maxUnixPath)
	}
	if err := removeStaleSocket(path); err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("netauth proxy: listening on unix:%s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("netauth proxy: listening on unix:%s: %w", path, err)
	}
	p.ln, p.addr = ln, "unix:"+path
	return nil
}

// removeStaleSocket removes the socket at path if no process listens on it, and refuses to
// replace a live socket or a file that is not a socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netauth proxy: checking %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("netauth proxy: %s exists and is not a socket; remove it or choose another path with -listen unix:PATH", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("netauth proxy: another process (another netauth proxy?) is listening on %s; stop it or choose another path with -listen unix:PATH", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("netauth proxy: checking the existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("netauth proxy: removing the stale socket %s: %w", path, err)
	}
	return nil
}

// listenTCP listens on a loopback TCP address, refusing any other: connections from other
// hosts could not be traced to a local user.
func (p *Proxy) listenTCP(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("netauth proxy: listen address tcp:%s (want tcp:127.0.0.1:PORT): %w", hostport, err)
	}
	var addr netip.Addr
	if host == "localhost" {
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	} else if addr, err = netip.ParseAddr(host); err != nil || addr.Zone() != "" {
		return fmt.Errorf("netauth proxy: refusing to listen on tcp:%s: the host must be a loopback address such as 127.0.0.1 or ::1", hostport)
	}
	if !addr.Unmap().IsLoopback() {
		return fmt.Errorf("netauth proxy: refusing to listen on tcp:%s: only loopback addresses (127.0.0.1, ::1) are allowed, because the users behind connections from other hosts cannot be known", hostport)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr.Unmap().String(), port))
	if err != nil {
		return fmt.Errorf("netauth proxy: listening on tcp:%s: %w", hostport, err)
	}
	p.ln, p.addr = ln, "tcp:"+ln.Addr().String()
	return nil
}

// Addr returns the local address the proxy listens on, "unix:PATH" or "tcp:HOST:PORT".
func (p *Proxy) Addr() string { return p.addr }

// User returns the user name the proxy authenticates as.
func (p *Proxy) User() string { return p.user }

// Remote returns the server's "host:port".
func (p *Proxy) Remote() string { return p.hostport }

// Serve accepts local connections until ctx is done or Close is called, forwarding each
// one in its own goroutine. It then closes the proxy (removing its socket), waits for the
// connections' goroutines, and returns nil; it returns an error if accepting fails for
// another reason.
func (p *Proxy) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer p.wg.Wait()
	if p.front != nil {
		served := make(chan struct{})
		go func() {
			defer close(served)
			p.front.serve()
		}()
		defer func() { <-served }()
	}
	p.busy(0) // the idle timeout runs from the start

	var backoff time.Duration
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accepting a local connection failed; retrying", "addr", p.addr, "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			p.Close()
			return fmt.Errorf("netauth proxy: accepting on %s: %w", p.addr, err)
		}
		backoff = 0
		if !p.track(c, true) {
			c.Close()
			return nil
		}
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.handle(ctx, c)
		}()
	}
}

// Close stops the proxy: it closes the listener (removing a Unix socket and the private
// directory Listen created) and cuts every open connection, so that neither end mistakes the
// cut for a clean end of stream (the server sees no close record, a TCP client sees a reset).
// It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return p.closeErr
	}
	p.closed = true
	close(p.done)
	if err := p.ln.Close(); err != nil {
		p.closeErr = fmt.Errorf("netauth proxy: closing %s: %w", p.addr, err)
	}
	if p.idleTimer != nil {
		p.idleTimer.Stop()
		p.idleGen++
	}
	for c := range p.conns {
		switch c := c.(type) {
		case *localConn:
			abort(c.Conn) // not c.Close, which untracks: the lock is held
		case *remoteConn:
			c.NetConn().Close()
		case *netauth.Conn:
			c.NetConn().Close() // the connection's goroutine then releases the rest
		case net.Conn:
			abort(c)
		default:
			c.Close()
		}
	}
	if p.private != "" {
		if err := os.RemoveAll(p.private); err != nil && p.closeErr == nil {
			p.closeErr = fmt.Errorf("netauth proxy: removing %s: %w", p.private, err)
		}
	}
	return p.closeErr
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// track registers an open connection so that Close closes it; with goroutine set it also
// counts a connection goroutine. It reports false if the proxy is already closed.
func (p *Proxy) track(c io.Closer, goroutine bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	if goroutine {
		p.wg.Add(1)
	}
	return true
}

func (p *Proxy) untrack(c io.Closer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// busy adds delta to the count of local connections being served, and runs the idle timer
// while it is zero.
func (p *Proxy) busy(delta int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.active += delta
	if p.idle <= 0 || p.closed {
		return
	}
	if p.idleTimer != nil {
		p.idleTimer.Stop()
	}
	p.idleGen++
	if p.active > 0 {
		return
	}
	gen := p.idleGen
	p.idleTimer = time.AfterFunc(p.idle, func() {
		p.mu.Lock()
		fire := gen == p.idleGen && p.active == 0 && !p.closed
		p.mu.Unlock()
		if fire {
			p.log.Info(fmt.Sprintf("no local connection for %v; stopping", p.idle), "addr", p.addr)
			p.Close()
		}
	})
}

// handle checks who connected and forwards the connection to the server (in HTTP mode, hands
// it to the HTTP server).
func (p *Proxy) handle(ctx context.Context, local net.Conn) {
	handedOff := false
	defer func() {
		if !handedOff {
			local.Close()
		}
	}()
	who, err := p.peerOf(local)
	if err != nil {
		abort(local)
		p.log.Warn(fmt.Sprintf("refused local connection from %s: cannot determine which user owns it: %v", who.desc, err),
			"client", who.desc, "err", err)
		return
	}
	if who.uid != p.uid {
		abort(local)
		p.log.Warn(fmt.Sprintf("refused local connection from uid %d (%s): only uid %d may use this proxy", who.uid, who.desc, p.uid),
			"uid", who.uid, "client", who.desc)
		return
	}
	if p.front != nil {
		handedOff = true
		p.front.serveConn(local, who.desc)
		return
	}
	p.busy(1)
	defer p.busy(-1)
	start := time.Now()
	remote, err := p.dial(ctx)
	if err != nil {
		abort(local)
		if p.isClosed() {
			return
		}
		var refused *netauth.RefusedError
		if errors.As(err, &refused) {
			p.log.Error(fmt.Sprintf("the server %s refused the connection; closing the local connection: %v", p.hostport, err),
				"client", who.desc, "remote", p.hostport, "err", err)
		} else {
			p.log.Error(fmt.Sprintf("connecting to %s failed; closing the local connection: %v", p.hostport, err),
				"client", who.desc, "remote", p.hostport, "err", err)
		}
		return
	}
	defer remote.Close()
	if !p.track(remote, false) {
		return
	}
	defer p.untrack(remote)
	id := remote.Identity()
	p.log.Debug("forwarding a local connection", "client", who.desc, "remote", p.hostport,
		"user", id.User, "resumed", id.Resumed, "dial_time", time.Since(start))
	p.relay(local, remote, who.desc)
}

// abort closes a local connection so that a TCP client sees a reset rather than a clean end
// of stream (a Unix socket has no such signal and is just closed).
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// dial connects to the server and waits for its verdict on a full handshake, so that a
// refusal is reported as such, before any byte is relayed. This costs the first connection
// one round trip (resumed connections have no verdict to wait for) and keeps a refused user's
// data from being sent at all.
func (p *Proxy) dial(ctx context.Context) (*netauth.Conn, error) {
	timeout := p.cfg.HandshakeTimeout
	if timeout <= 0 {
		timeout = netauth.DefaultHandshakeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := netauth.DialContext(ctx, "tcp", p.dialAddr, p.cfg)
	if err != nil {
		return nil, err
	}
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// closeWriter is a connection whose sending side can be shut down alone.
type closeWriter interface {
	CloseWrite() error
}

// relay copies bytes both ways until both directions have ended. The end of one direction
// is passed on as a half-close (the local client's end of input becomes the netauth
// connection's CloseWrite, the server's end becomes the local connection's CloseWrite); an
// error in either direction closes both connections.
func (p *Proxy) relay(local net.Conn, remote *netauth.Conn, client string) {
	type result struct {
		fromServer bool
		err        error
	}
	results := make(chan result, 2)
	go func() {
		_, err := io.Copy(remote, local)
		if err != nil {
			err = fmt.Errorf("sending to %s: %w", p.hostport, err)
		} else if err = remote.CloseWrite(); err != nil {
			err = fmt.Errorf("passing on the end of input to %s: %w", p.hostport, err)
		}
		results <- result{false, err}
	}()
	go func() {
		_, err := io.Copy(local, remote)
		if err != nil {
			err = fmt.Errorf("receiving from %s: %w", p.hostport, err)
		} else if cw, ok := local.(closeWriter); ok {
			if err = cw.CloseWrite(); err != nil {
				err = fmt.Errorf("passing on the end of the server's data to %s: %w", client, err)
			}
		}
		results <- result{true, err}
	}()
	var first *result
	for range 2 {
		r := <-results
		if r.err != nil && first == nil {
			first = &r
			// Unblock the other direction, and let neither side mistake the failure for a
			// clean end: the server sees the stream cut without a close record, and a TCP
			// client sees a reset.
			remote.NetConn().Close()
			abort(local)
		}
	}
	if first == nil || p.isClosed() {
		return
	}
	if first.fromServer {
		p.log.Warn("connection to the server ended with an error; closed the local connection", "client", client, "remote", p.hostport, "err", first.err)
	} else {
		p.log.Info("local connection ended with an error; closed the connection to the server", "client", client, "remote", p.hostport, "err", first.err)
	}
}
