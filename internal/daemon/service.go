// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/user"
	"sync"
	"time"

	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/limits"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// Bounds on unauthenticated connections (handshakes in progress) when handshakes run in this
// process; the acceptor has its own (acceptorLimits).
const (
	maxPendingHandshakes = 256 // per service
	maxPendingPerSource  = 10  // from one IPv4 address or IPv6 /64, per service (acceptor: in all)
	earlyDropRate        = 30  // percent refused at the start of random early drop
)

// serviceLimits bound a service's handshakes in progress: maxPendingHandshakes in total,
// maxPendingPerSource from one source, and random early drop from half the total on.
var serviceLimits = limits.Config{
	MaxPending:     maxPendingHandshakes,
	PerSource:      maxPendingPerSource,
	EarlyDropStart: maxPendingHandshakes / 2,
	EarlyDropRate:  earlyDropRate,
}

// service is one configured service: its listening sockets and accept loops.
type service struct {
	d         *Daemon
	name      string
	mu        sync.Mutex
	cfg       *policy.Service
	listeners []net.Listener
	limiter   *limits.Limiter
	refusals  *limits.Throttle // of "refusing connection" log lines
	done      chan struct{}
	stopOnce  sync.Once
	core      *serviceCore
}

// startService binds (or adopts from socket activation) the service's addresses.
// Callers hold d.mu.
func (d *Daemon) startService(sc *policy.Service) (*service, error) {
	s := &service{d: d, name: sc.Name, cfg: sc, limiter: limits.New(serviceLimits),
		refusals: &limits.Throttle{Every: time.Second}, done: make(chan struct{})}
	var err error
	if s.core, err = s.newCore(); err != nil {
		return nil, fmt.Errorf("netauthd: service %q: %w", sc.Name, err)
	}
	for _, addr := range sc.Listen {
		ln := d.adoptInherited(addr)
		if ln == nil {
			if ln, err = net.Listen("tcp", addr); err != nil {
				s.stop()
				return nil, fmt.Errorf("netauthd: service %q: %w", sc.Name, err)
			}
		}
		s.listeners = append(s.listeners, ln)
		d.log.Info("listening", "service", sc.Name, "addr", ln.Addr().String(), "mode", sc.Mode.String())
	}
	if d.privsep() {
		return s, nil // the acceptor accepts on these sockets
	}
	loop := &limits.AcceptLoop{Limiter: s.limiter, Refusals: s.refusals, Service: s.name, Log: d.log,
		Refuse: refuseOverloaded,
		Handle: func(nc net.Conn, release func()) {
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				s.handle(nc, release)
			}()
		},
		Closed: func() bool { return isClosed(s.done) }}
	for _, ln := range s.listeners {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			loop.Run(ln)
		}()
	}
	return s, nil
}

// refuseOverloaded answers a connection refused a handshake slot.
func refuseOverloaded(nc net.Conn) { handshake.Refuse(nc, handshake.CodeOverloaded) }

// isClosed reports whether done is closed.
func isClosed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// adoptInherited returns the socket-activation listener bound to addr, if any.
func (d *Daemon) adoptInherited(addr string) net.Listener {
	want, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil
	}
	for i, ln := range d.inherited {
		got, ok := ln.Addr().(*net.TCPAddr)
		if ok && got.Port == want.Port && (got.IP.Equal(want.IP) || (want.IP == nil && got.IP.IsUnspecified())) {
			d.inherited = append(d.inherited[:i], d.inherited[i+1:]...)
			return ln
		}
	}
	return nil
}

func (s *service) config() *policy.Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

func (s *service) setConfig(sc *policy.Service) {
	s.mu.Lock()
	s.cfg = sc
	s.mu.Unlock()
}

// stop closes the listening sockets; live sessions are not affected.
func (s *service) stop() {
	s.stopOnce.Do(func() {
		close(s.done)
		for _, ln := range s.listeners {
			ln.Close()
		}
	})
}

// admission is what authorize decided for a connection about to be accepted.
type admission struct {
	svc     *policy.Service
	user    *policy.Account // the authenticated user
	runAs   *policy.Account // the account the worker runs as
	reserve *reservation
	worker  *worker // chosen (and started) before the client is told it is accepted
	id      uint64  // the connection's handoff id at that worker
	res     *handshake.Result
}

// release gives back what an admission holds when its connection will not be handed over.
func (a *admission) release(d *Daemon) {
	if a.worker != nil {
		d.unregister(a.worker, a.id)
	}
	a.reserve.release()
}

// newCore returns the handshake core of the service: the decisions, made here with the
// daemon's keys and policy, for handshakes whose bytes are parsed elsewhere.
func (s *service) newCore() (*serviceCore, error) {
	d := s.d
	hcfg := &handshake.ServerConfig{
		HostKey:      d.hostKey,
		Service:      s.name,
		Tickets:      d.tickets,
		MaxClockSkew: d.cfg.MaxClockSkew,
		Replay:       d.replay,
		Ephemeral:    func() (x25519.KeyPair, error) { return d.pool.Get() },
		Eligible:     s.eligible,
		Authorize:    s.authorize,
		Refused:      s.refused,
	}
	core, err := handshake.NewServerCore(hcfg, d.cfg.HandshakeTimeout)
	if err != nil {
		return nil, err
	}
	return &serviceCore{ServerCore: core, s: s, adms: make(map[uint64]*admission)}, nil
}

// serviceCore is a service's handshake core plus the admissions of its accepted sessions,
// waiting to be handed over.
type serviceCore struct {
	*handshake.ServerCore
	s    *service
	mu   sync.Mutex
	adms map[uint64]*admission
}

// Abort releases an accepted session whose handshake then failed.
func (c *serviceCore) Abort(session uint64) {
	c.ServerCore.Abort(session)
	if adm := c.take(session); adm != nil {
		adm.release(c.s.d)
	}
}

func (c *serviceCore) put(session uint64, adm *admission) {
	c.mu.Lock()
	c.adms[session] = adm
	c.mu.Unlock()
}

// take returns and forgets the admission of an accepted session.
func (c *serviceCore) take(session uint64) *admission {
	c.mu.Lock()
	defer c.mu.Unlock()
	adm := c.adms[session]
	delete(c.adms, session)
	return adm
}

// handle runs one handshake and hands the connection over. release gives back the
// connection's handshake slot, as soon as the handshake is over.
func (s *service) handle(nc net.Conn, release func()) {
	defer release()
	d := s.d
	d.mu.Lock()
	timeout := d.cfg.HandshakeTimeout
	d.mu.Unlock()
	_ = nc.SetDeadline(time.Now().Add(timeout))
	rc := record.NewConn(nc)
	res, err := handshake.Serve(rc, s.core, nc.RemoteAddr().String(), s.refused)
	release()
	if err != nil {
		if !errors.As(err, new(*handshake.Refusal)) {
			d.log.Debug("handshake abandoned", "service", s.name, "client", nc.RemoteAddr().String(), "err", err)
		}
		nc.Close()
		return
	}
	adm := s.core.take(res.Session)
	if adm == nil {
		d.log.Error("accepted handshake without an admission", "service", s.name)
		nc.Close()
		return
	}
	_ = nc.SetDeadline(time.Time{})
	st, err := rc.Export()
	if err != nil {
		adm.release(d)
		d.log.Error("exporting the session", "service", s.name, "err", err)
		nc.Close()
		return
	}
	d.dispatch(adm, nc, st, adm.res)
}

// authorize admits a client whose key was found eligible and who then proved it holds it
// (signature or binder), before the client is told it is accepted: capacity must remain, the
// decision must be in the audit log, and a worker must be ready. eligible has already checked
// the key and the grant; nothing before this point creates a process or writes a record.
func (s *service) authorize(r *handshake.Result) error {
	d := s.d
	sc := s.config()
	acct, err := d.userAccount(sc, r.User)
	if err != nil {
		return &handshake.Refusal{Code: handshake.CodeNotAuthorized, Reason: "no such system user", Err: err}
	}
	runAs := acct
	if !sc.RunAsUser {
		if runAs, err = d.accounts.lookup(sc.Account); err != nil {
			return &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "service account", Err: err}
		}
	}
	// A worker as the acceptor's account would share its uid with the process that parses
	// every network byte: the acceptor, taken over, could trace it (workers are dumpable) and
	// act as its users. A configuration that would do it ("run-as account netauth", or a
	// user with the acceptor's uid) is refused here, whatever it says.
	d.mu.Lock()
	acceptorUID := d.acceptorUID
	d.mu.Unlock()
	if acceptorUID != 0 && runAs.UID == acceptorUID {
		d.log.Error("refusing to start a worker as the acceptor's account: give the service (or user) an account of its own",
			"service", sc.Name, "user", r.User, "account", runAs.Name, "uid", runAs.UID)
		return &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "the worker would run as the acceptor's account"}
	}
	res, err := d.reserve(sc, r.User)
	if err != nil {
		return err
	}
	// r.Client is the address the monitor read from the Commit's descriptor (Begin's, from
	// the acceptor, is only used for refusals before it).
	rec := d.auditRecord(r.Client, r, "accepted", "")
	if err := d.audit.Write(rec); err != nil {
		res.release()
		d.log.Error("audit log unwritable: refusing connections until it can be written", "err", err)
		return &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "audit log unwritable", Err: err}
	}
	adm := &admission{svc: sc, user: acct, runAs: runAs, reserve: res, res: r}
	// Have a worker ready before accepting, so that a service that cannot start is a clear
	// refusal rather than a connection dropped after it was accepted.
	if adm.worker, adm.id, err = d.workerFor(adm); err != nil {
		res.release()
		d.log.Error("no worker for the connection", "service", sc.Name, "user", r.User, "err", err)
		return &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "worker could not be started", Err: err}
	}
	s.core.put(r.Session, adm)
	return nil
}

// userAccount returns the account of user name for service sc, from the system user
// database. A service whose workers run as a service account ("run-as account") also serves
// users who are not in the database (people known only by their keys): they get an account
// with their name and no groups, so only "users NAME" or "users *" can grant them the
// service. A service whose workers run as the user needs the user's real account.
func (d *Daemon) userAccount(sc *policy.Service, name string) (*policy.Account, error) {
	acct, err := d.accounts.lookup(name)
	var unknown user.UnknownUserError
	if err != nil && !sc.RunAsUser && errors.As(err, &unknown) {
		return &policy.Account{Name: name}, nil
	}
	return acct, err
}

// eligible is the decision made before the client proves anything (before a full
// handshake's signature is verified, and before a ticket is resumed): the key must be one of
// the user's, the user must exist and be allowed to use the service. It has no side effects
// and leaves nothing behind.
func (s *service) eligible(r *handshake.Result) error {
	d := s.d
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.HandshakeTimeout)
	defer cancel()
	d.mu.Lock()
	src := d.keys
	d.mu.Unlock()
	ok, err := keys.Authorized(ctx, src, r.User, r.UserKey)
	if err != nil {
		return &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "looking up the user's keys", Err: err}
	}
	if !ok {
		return &handshake.Refusal{Code: handshake.CodeNotAuthorized, Reason: fmt.Sprintf("key %s is not authorized for user %q", keys.Fingerprint(r.UserKey), r.User)}
	}
	sc := s.config()
	acct, err := d.userAccount(sc, r.User)
	if err != nil {
		return &handshake.Refusal{Code: handshake.CodeNotAuthorized, Reason: "no such system user", Err: err}
	}
	if !sc.Allowed(r.User, acct.GroupNames) {
		return &handshake.Refusal{Code: handshake.CodeNotAuthorized, Reason: fmt.Sprintf("user %q may not use service %q", r.User, sc.Name)}
	}
	return nil
}

// refused audits and logs a refused handshake. Every field of r may be the client's choice
// (the signature is unverified): the audit log bounds them and, under a flood, counts
// refusals rather than logging each; this log line follows it, so it is as bounded.
func (s *service) refused(r *handshake.Refusal) {
	ar := &audit.Refusal{
		Client:    r.Client,
		Service:   s.name,
		User:      r.User,
		KeyFP:     r.KeyFP,
		Mode:      audit.ModeFull,
		Code:      codeName(r.Code),
		Reason:    r.Reason,
		Signature: r.Signature,
	}
	if r.Err != nil {
		ar.Reason += ": " + r.Err.Error()
	}
	switch {
	case r.Resumed:
		ar.Mode = audit.ModeResumed
	case r.Statement == nil && r.User == "":
		ar.Mode = ""
	}
	rec, err := s.d.audit.WriteRefusal(ar)
	if rec == nil {
		return // counted, for a summary record
	}
	user := rec.User
	if rec.UserSHA256 != "" {
		user = "sha256:" + rec.UserSHA256
	}
	s.d.log.Info("refused", "service", s.name, "client", rec.Client, "code", rec.Code, "reason", rec.Reason, "user", user)
	if err != nil {
		s.d.log.Debug("refusal not audited", "err", err) // the audit log reports its own failure
	}
}

// codeName is a refusal code's name in docs/PROTOCOL.md §8, as the audit log records it.
func codeName(c handshake.Code) string {
	switch c {
	case handshake.CodeOK:
		return "ok"
	case handshake.CodeProtocolError:
		return "protocol_error"
	case handshake.CodeVersionUnsupported:
		return "version_unsupported"
	case handshake.CodeAuthFailed:
		return "auth_failed"
	case handshake.CodeClockSkew:
		return "clock_skew"
	case handshake.CodeNotAuthorized:
		return "not_authorized"
	case handshake.CodeInternalError:
		return "internal_error"
	case handshake.CodeOverloaded:
		return "overloaded"
	case handshake.CodeTimeout:
		return "timeout"
	}
	return fmt.Sprintf("code_%d", uint8(c))
}

// auditRecord describes a decision.
func (d *Daemon) auditRecord(client string, r *handshake.Result, decision, reason string) *audit.Record {
	rec := &audit.Record{
		Time:      time.Now(),
		Client:    client,
		Service:   r.Service,
		User:      r.User,
		HostKeyFP: d.hostFP,
		Mode:      "full",
		Decision:  decision,
		Reason:    reason,
	}
	if r.Resumed {
		rec.Mode = "resumed"
	}
	if r.UserKey != nil {
		rec.KeyType, rec.KeyFP = r.UserKey.Type(), keys.Fingerprint(r.UserKey)
	}
	if len(r.Signature) > 0 {
		rec.Statement, rec.Signature = string(r.Statement), string(keys.Armor(r.Signature))
	}
	return rec
}
