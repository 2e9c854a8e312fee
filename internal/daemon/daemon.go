// SPDX-License-Identifier: Apache-2.0

// Package daemon is netauthd: it listens for each configured service, has its acceptor
// process run the handshakes' bytes, decides (keys, policy, audit log), and hands every
// authenticated connection (socket and session keys) to a worker process running as the user —
// started on the user's first connection and reused for the next ones (User-Based Network
// Services). This process, the monitor, never reads from a client socket.
package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/metrics"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/x25519"
)

// Options configure a Daemon.
type Options struct {
	// Config is the policy; Path in it is re-read on Reload (empty: Reload keeps Config).
	Config *policy.Config
	// Logger receives the daemon's log; nil discards it.
	Logger *slog.Logger
	// Inherited are listening sockets from socket activation, matched to services by their
	// names (InheritedNames) or else by their local address.
	Inherited []net.Listener
	// InheritedNames, if not nil, name each of Inherited (systemd's LISTEN_FDNAMES, set by
	// FileDescriptorName= in the .socket unit). A socket named after a service is that
	// service's, whatever its listen lines say; then every service must have one, and every
	// name other than systemd's defaults ("unknown", or the socket unit's own "NAME.socket")
	// must be a service's. Sockets with a default name are matched by address.
	InheritedNames []string
	// Load re-reads the configuration on Reload; nil means policy.Load(Config.Path).
	Load func() (*policy.Config, error)
	// Acceptor is the command line that starts the acceptor, the process that accepts the
	// services' connections and parses every network byte (netauthd passes
	// {netauthd-acceptor}). It is required: the daemon always runs one, and never parses a
	// network byte itself.
	Acceptor []string
	// AcceptorAccount is the account the acceptor runs as when this process is root: it
	// must not be root, and should be the acceptor's alone (no worker is ever started with
	// its uid). A daemon that is not root cannot change uids: its acceptor runs, like its
	// workers, as this process's uid, and AcceptorAccount must be nil (or that uid).
	AcceptorAccount *policy.Account
	// Self is the command line prefix that runs one of netauthd's built-in workers (netauthd
	// passes {its own program, "-worker"}); the exec and backend modes need it.
	Self []string
	// Trace, if not empty, is a file to append trace lines to: when each step of every
	// connection happened, in the acceptor, the monitor and the worker (package trace).
	// Off (empty) by default.
	Trace string
}

// Daemon is a running netauthd.
type Daemon struct {
	log     *slog.Logger
	opts    Options
	hostKey ed25519.PrivateKey
	hostPub ssh.PublicKey
	hostFP  string
	tickets *handshake.TicketKeys
	replay  *handshake.ReplayCache
	pool    *x25519.Pool
	audit   *audit.Writer
	caches  caches
	tracer  *tracer // nil unless Options.Trace
	spares  spares  // spare built-in workers (spare.go)
	counts  counts  // connections accepted and refused (control.go)
	since   time.Time
	// metrics are the Prometheus metrics, served on metricsLn; both nil unless the
	// configuration has metrics-listen (a nil *metrics.Metrics records nothing).
	metrics   *metrics.Metrics
	metricsLn net.Listener

	mu  sync.Mutex
	cfg *policy.Config
	// certs are the host certificate, user certificate checks and revoked keys in force
	// (certs.go); revokedErr is the last error reading revoked-keys again, said once, and
	// revokedSeen what the last look at the file found (refreshRevoked).
	certs       *certState
	revokedErr  string
	revokedSeen fileStamp
	keys        keys.Source // the configuration's key sources, through the caches
	// keysDirect are the same sources without the caches (used while caches.off is set).
	keysDirect keys.Source
	services   map[string]*service
	workers    map[workerKey]*worker
	conns      map[userService]int // connections per user and service, reserved or live
	inherited  []net.Listener
	// named are the socket-activation listeners passed by service name (InheritedNames);
	// when it is not empty, every service's sockets come from it.
	named    map[string][]net.Listener
	acceptor *acceptor
	// acceptorUID is the acceptor's uid when this process is root (the acceptor never runs
	// as root): no worker runs as it. 0 when this process is not root: then the acceptor,
	// the workers and this process all have its uid, and no worker can be kept from it.
	acceptorUID uint32
	nextID      uint64
	closed      bool
	// custodySlots bounds the connections in custody (worker.go), made on first use;
	// ackTimeout, if set (tests), replaces the const ackTimeout.
	custodySlots chan struct{}
	ackTimeout   time.Duration

	wg sync.WaitGroup // service loops and handshakes
}

// New prepares a daemon: loads or creates the host key and opens the audit log. It binds no
// socket until Start.
func New(opts Options) (*Daemon, error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("netauthd: no configuration")
	}
	acceptorUID, err := checkAcceptor(&opts)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		log:         opts.Logger,
		opts:        opts,
		cfg:         cfg,
		replay:      handshake.NewReplayCache(0),
		services:    make(map[string]*service),
		workers:     make(map[workerKey]*worker),
		acceptorUID: acceptorUID,
		since:       time.Now(),
	}
	if d.inherited, d.named, err = splitInherited(cfg, opts.Inherited, opts.InheritedNames); err != nil {
		return nil, err
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	// Whatever this process inherited must not reach the workers it starts.
	if err := closeOnExecAll(); err != nil {
		return nil, fmt.Errorf("netauthd: %w", err)
	}
	hostKeyFile, legacy := cfg.HostKeyFile()
	if legacy {
		d.log.Warn("using the host key at its former default path; move it (and its .pub) to the new default, or name it with host-key",
			"path", hostKeyFile, "default", policy.DefaultHostKey)
	}
	key, created, err := keys.LoadOrCreateHostKey(hostKeyFile)
	if err != nil {
		return nil, fmt.Errorf("netauthd: host key: %w", err)
	}
	d.hostKey = key
	d.hostPub, _ = ssh.NewPublicKey(key.Public())
	d.hostFP = keys.Fingerprint(d.hostPub)
	if created {
		d.log.Info("generated a new host key", "path", hostKeyFile, "fingerprint", d.hostFP)
	}
	cs, warnings, err := loadCerts(cfg, key)
	if err != nil {
		return nil, fmt.Errorf("netauthd: %w", err)
	}
	for _, w := range warnings {
		d.log.Warn(w)
	}
	d.certs = cs
	if cfg.TicketLifetime >= 0 {
		d.tickets = handshake.NewTicketKeys(cfg.TicketLifetime, rand.Reader)
	}
	if d.audit, err = audit.Open(cfg.AuditLog, key, audit.Options{Logger: d.log}); err != nil {
		return nil, fmt.Errorf("netauthd: audit log: %w", err)
	}
	d.keys, d.keysDirect = d.keySource(cfg), keySource(cfg)
	if opts.Trace != "" {
		if d.tracer, err = openTracer(opts.Trace); err != nil {
			d.audit.Close()
			return nil, err
		}
	}
	d.pool = x25519.NewPool(64)
	return d, nil
}

// checkAcceptor checks the acceptor's program and account in opts, and returns the uid no
// worker may run as (0: none, when this process is not root).
func checkAcceptor(opts *Options) (uint32, error) {
	if len(opts.Acceptor) == 0 || opts.Acceptor[0] == "" {
		return 0, errors.New("netauthd: no acceptor program (Options.Acceptor): the daemon never parses network bytes itself; its acceptor process does")
	}
	acct := opts.AcceptorAccount
	if !isRoot() {
		if acct != nil && acct.UID != uint32(os.Geteuid()) {
			return 0, fmt.Errorf("netauthd: running as uid %d, not root, it cannot start its acceptor as %s (uid %d): the acceptor runs as this process's uid", os.Geteuid(), acct.Name, acct.UID)
		}
		return 0, nil
	}
	switch {
	case acct == nil:
		return 0, errors.New("netauthd: running as root, the acceptor needs an account of its own (Options.AcceptorAccount)")
	case acct.UID == 0:
		return 0, errors.New("netauthd: the acceptor must not run as root")
	}
	return acct.UID, nil
}

// AcceptorPid returns the pid of the acceptor process (0 if none runs).
func (d *Daemon) AcceptorPid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.acceptor == nil {
		return 0
	}
	return d.acceptor.cmd.Process.Pid
}

// Config returns the configuration in force (the last one Reload accepted).
func (d *Daemon) Config() *policy.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// HostKey returns the daemon's public host key.
func (d *Daemon) HostKey() ssh.PublicKey { return d.hostPub }

// keySource builds the authorized-key sources a configuration names, without caches. An
// empty AuthorizedKeysDir means "authorized-keys-dir none": no per-user files are read at
// all.
func keySource(cfg *policy.Config) keys.Source { return keySourceWith(cfg, nil, nil) }

// keySourceWith is keySource with the files read through cache, and home directories found
// with lookupUser (user.Lookup if nil). The key command is never cached.
func keySourceWith(cfg *policy.Config, cache *keys.FileCache, lookupUser func(context.Context, string) (*user.User, error)) keys.Source {
	var m keys.Multi
	if cfg.AuthorizedKeysDir != "" {
		m = append(m, keys.UserFiles{Dir: cfg.AuthorizedKeysDir, Cache: cache})
	}
	if cfg.HomeAuthorizedKeys {
		m = append(m, keys.HomeAuthorizedKeys{Lookup: lookupUser, Cache: cache})
	}
	if len(cfg.KeyCommand) > 0 {
		m = append(m, keys.Command{Path: cfg.KeyCommand[0], Args: cfg.KeyCommand[1:]})
	}
	return m
}

// Start binds every service's sockets and starts serving, and the revocation checks. It marks
// the process non-dumpable first: the monitor holds the keys.
func (d *Daemon) Start(ctx context.Context) error {
	if err := setNonDumpable(); err != nil {
		return fmt.Errorf("netauthd: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if addr := d.cfg.MetricsListen; addr != "" {
		l, err := metrics.Listen(addr)
		if err != nil {
			return fmt.Errorf("netauthd: %w", err)
		}
		d.metrics, d.metricsLn = metrics.New(), l
		go func() {
			if err := d.metrics.Serve(l); err != nil {
				d.log.Error("serving metrics", "err", err)
			}
		}()
	}
	for _, sc := range d.cfg.Services {
		s, err := d.startService(sc)
		if err != nil {
			d.stopServicesLocked()
			d.closeMetricsLocked()
			return err
		}
		d.services[sc.Name] = s
	}
	if err := d.startAcceptorLocked(); err != nil {
		d.stopServicesLocked()
		d.closeMetricsLocked()
		return err
	}
	d.wg.Add(1)
	go d.revocationLoop(ctx)
	if tk := d.tickets; tk != nil {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); tk.RetireLoop(ctx.Done()) }()
	}
	go d.fillSpares()
	return nil
}

// closeMetricsLocked stops serving metrics.
func (d *Daemon) closeMetricsLocked() {
	if d.metricsLn != nil {
		d.metricsLn.Close()
	}
}

// MetricsAddr returns the address metrics are served on (nil without metrics-listen).
func (d *Daemon) MetricsAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.metricsLn == nil {
		return nil
	}
	return d.metricsLn.Addr()
}

// Addrs returns the bound addresses of a service (for tests and the demo).
func (d *Daemon) Addrs(service string) []net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.services[service]
	if s == nil {
		return nil
	}
	var out []net.Addr
	for _, ln := range s.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

// ReopenAudit reopens the audit log and nothing else (SIGUSR1, sent after the file was
// renamed, as logrotate's postrotate does): the file rotated away ends with a closing
// checkpoint, and a new file at the path continues its chain. If the path cannot be opened,
// the daemon goes on writing to the file it had open.
func (d *Daemon) ReopenAudit() error {
	if err := d.audit.Reopen(); err != nil {
		return fmt.Errorf("reopening the audit log: %w", err)
	}
	return nil
}

// Reload re-reads the configuration. A configuration with errors is refused and the running
// one kept. Live sessions survive: services whose listening addresses did not change keep
// their sockets and workers; users who lost access are revoked at once. First, whatever the
// configuration, it reopens the audit log (rotated by renaming, or failed).
func (d *Daemon) Reload(ctx context.Context) error {
	if err := d.audit.Reopen(); err != nil {
		d.log.Error("reopening the audit log", "err", err)
	}
	load := d.opts.Load
	if load == nil {
		if d.cfg.Path == "" {
			return errors.New("netauthd: nothing to reload: running on the embedded default configuration")
		}
		path := d.cfg.Path
		load = func() (*policy.Config, error) { return policy.Load(path) }
	}
	cfg, err := load()
	if err == nil {
		_, err = cfg.Check()
	}
	if err == nil && len(d.named) > 0 {
		err = checkNamed(cfg, d.named)
	}
	var cs *certState
	if err == nil {
		var warnings []string
		cs, warnings, err = loadCerts(cfg, d.hostKey)
		for _, w := range warnings {
			d.log.Warn(w)
		}
	}
	if err != nil {
		return fmt.Errorf("netauthd: reload refused, keeping the running configuration:\n%w", err)
	}
	d.mu.Lock()
	if cfg.HostKey != d.cfg.HostKey || cfg.AuditLog != d.cfg.AuditLog || cfg.MetricsListen != d.cfg.MetricsListen {
		d.log.Warn("host-key, audit-log and metrics-listen changes take effect at the next restart")
	}
	old := d.services
	oldSet := make(map[string]*service, len(old))
	for k, v := range old {
		oldSet[k] = v
	}
	d.services = make(map[string]*service)
	for _, sc := range cfg.Services {
		// A service whose sockets came by name from systemd keeps them: its listen lines
		// are not what it listens on.
		if s := old[sc.Name]; s != nil && (sameListen(s.cfg.Listen, sc.Listen) || d.named[sc.Name] != nil) {
			s.setConfig(sc)
			d.services[sc.Name] = s
			delete(old, sc.Name)
			continue
		}
		if s := old[sc.Name]; s != nil {
			s.stop()
			delete(old, sc.Name)
		}
		s, err := d.startService(sc)
		if err != nil {
			d.log.Error("reload: service not started", "service", sc.Name, "err", err)
			continue
		}
		d.services[sc.Name] = s
	}
	changed := len(old) > 0
	for name, s := range old {
		d.log.Info("reload: service removed", "service", name)
		s.stop()
	}
	for name, s := range d.services {
		if o, ok := oldSet[name]; !ok || o != s {
			changed = true
		}
	}
	d.cfg = cfg
	// The certificate files, read again, for every service (those it kept, too).
	if err := d.setCertsLocked(cs); err != nil {
		d.log.Error("reload: certificates not applied", "err", err)
	}
	if changed && !d.closed {
		d.restartAcceptorLocked()
	}
	d.keys, d.keysDirect = d.keySource(cfg), keySource(cfg)
	d.mu.Unlock()
	d.renewSpares()
	d.log.Info("configuration reloaded", "path", cfg.Path, "services", len(cfg.Services))
	d.checkRevocations(ctx)
	return nil
}

func sameListen(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Shutdown stops listening, asks workers to finish, and kills those still running after
// grace.
func (d *Daemon) Shutdown(grace time.Duration) {
	d.mu.Lock()
	d.closed = true
	if a := d.acceptor; a != nil {
		d.acceptor = nil
		_ = a.cmd.Process.Kill()
	}
	d.stopServicesLocked()
	d.closeMetricsLocked()
	workers := make([]*worker, 0, len(d.workers))
	for _, w := range d.workers {
		workers = append(workers, w)
	}
	d.mu.Unlock()
	d.stopSpares()
	for _, w := range workers {
		w.retire()
	}
	deadline := time.After(grace)
	for _, w := range workers {
		select {
		case <-w.exited:
		case <-deadline:
			w.kill("still running when the daemon stopped")
			<-w.exited
		}
	}
	d.pool.Close()
	d.tracer.close(d.log)
	if err := d.audit.Close(); err != nil {
		d.log.Error("closing the audit log", "err", err)
	}
}

func (d *Daemon) stopServicesLocked() {
	for name, s := range d.services {
		s.stop()
		delete(d.services, name)
	}
}

// closeOnExecAll marks every descriptor above stderr close-on-exec: Go sets it on the files
// it opens, but not on descriptors the daemon inherited from whatever started it.
func closeOnExecAll() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("listing descriptors: %w", err)
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

// isRoot reports whether the daemon can change uids.
func isRoot() bool { return os.Geteuid() == 0 }
