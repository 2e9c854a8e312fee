// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"sync"
	"syscall"
	"time"

	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/metrics"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/trace"
	"ubns.dev/netauth/internal/x25519"
)

// service is one configured service: its listening sockets (on which the acceptor accepts)
// and its handshake core.
type service struct {
	d         *Daemon
	name      string
	mu        sync.Mutex
	cfg       *policy.Service
	listeners []net.Listener
	addrsOnce sync.Once          // conncheck.go: listenAddrs
	addrs     []syscall.Sockaddr // the listeners' addresses
	stopOnce  sync.Once
	core      *handshake.ServerCore
	recent    recentAuths // recent.go
}

// startService binds (or adopts from socket activation) the service's addresses; the
// acceptor accepts on them. Callers hold d.mu.
func (d *Daemon) startService(sc *policy.Service) (*service, error) {
	s := &service{d: d, name: sc.Name, cfg: sc}
	var err error
	if s.core, err = s.newCore(); err != nil {
		return nil, fmt.Errorf("netauthd: service %q: %w", sc.Name, err)
	}
	if len(d.named) > 0 {
		// Socket activation by name: the service listens on the sockets named after it
		// (splitInherited and checkNamed made sure it has some).
		if len(d.named[sc.Name]) == 0 {
			s.stop()
			return nil, fmt.Errorf("netauthd: service %q: socket activation: systemd passed no socket named %q", sc.Name, sc.Name)
		}
		for _, ln := range d.named[sc.Name] {
			s.listeners = append(s.listeners, ln)
			d.log.Info("listening", "service", sc.Name, "addr", ln.Addr().String(), "mode", sc.Mode.String(), "from", "systemd")
		}
		return s, nil
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
	return s, nil
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
	worker  *worker       // chosen (and started) before the client is told it is accepted
	id      uint64        // the connection's handoff id at that worker
	trace   *trace.Record // the monitor's steps of the connection, when tracing
}

// release gives back what an admission holds when its connection will not be handed over.
func (a *admission) release(d *Daemon) {
	if a.worker != nil {
		d.unregister(a.worker, a.id)
	}
	a.reserve.release()
}

// newCore returns the handshake core of the service: the decisions, made here with the
// daemon's keys and policy, for handshakes whose bytes are parsed elsewhere. The certificate
// checks (check 6) are the monitor's: the acceptor only carries the signature's bytes.
// Callers hold d.mu.
func (s *service) newCore() (*handshake.ServerCore, error) {
	d := s.d
	hcfg := &handshake.ServerConfig{
		HostKey:      d.hostKey,
		HostCert:     d.certs.hostCert,
		UserCerts:    d.certs.userCerts,
		RevokedKeys:  d.certs.revoked,
		Service:      s.name,
		Tickets:      d.tickets,
		MaxClockSkew: d.cfg.MaxClockSkew,
		Replay:       d.replay,
		Ephemeral:    func() (x25519.KeyPair, error) { return d.pool.Get() },
		Eligible:     s.eligible,
		Resumable:    s.resumable,
		Authorize:    s.authorize,
		Discard:      func(r *handshake.Result) { r.Admission.(*admission).release(d) },
		Refused:      s.refused,
	}
	return handshake.NewServerCore(hcfg, d.cfg.HandshakeTimeout)
}

// authorize admits a client whose key was found eligible and who then proved it holds it
// (signature or binder), before the client is told it is accepted: capacity must remain, a
// worker must be ready, and the decision, naming that worker, must be in the audit log.
// eligible has already checked the key and the grant; nothing before this point creates a
// process or writes a record.
func (s *service) authorize(r *handshake.Result) (any, error) {
	d := s.d
	tr := d.tracer.record()
	if tr != nil {
		tr.Mark(trace.Decided)
		tr.SetKey(r.HandshakeHash)
		tr.SetKind(r.Resumed)
	}
	sc := s.config()
	acct, ok := r.Admission.(*policy.Account) // what eligible found
	if !ok {
		return nil, &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "authorizing a client not found eligible"}
	}
	var err error
	runAs := acct
	if !sc.RunAsUser {
		if runAs, err = d.caches.account(sc.Account); err != nil {
			return nil, &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "service account", Err: err}
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
		return nil, &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "the worker would run as the acceptor's account"}
	}
	res, err := d.reserve(sc, r.User)
	if err != nil {
		return nil, err
	}
	adm := &admission{svc: sc, user: acct, runAs: runAs, reserve: res, trace: tr}
	// While the audit log is failing (it is tried again at most every audit.RetryInterval),
	// the connection is refused at once: no worker is started for it.
	if err := d.audit.Failing(); err != nil {
		res.release()
		return nil, &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "audit log unwritable", Err: err}
	}
	// The worker that will get the connection is ready (started, for a first connection,
	// and not yet handed anything) before the record is written, so that the record names
	// its pid; the connection is handed to it only once the record is written (dispatch,
	// after this returns). Ready before accepting, too: a service that cannot start is a
	// clear refusal rather than a connection dropped after it was accepted.
	// r.Client is the address the monitor read from the Commit's descriptor (Begin's, from
	// the acceptor, is only used for refusals before it).
	var started bool
	if adm.worker, adm.id, started, err = d.workerFor(adm); err != nil {
		res.release()
		d.log.Error("no worker for the connection", "service", sc.Name, "user", r.User, "err", err)
		return nil, &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "worker could not be started", Err: err}
	}
	tr.Mark(trace.WorkerReady)
	rec := audit.NewRecord(&r.Identity, r.Client, audit.Accepted)
	rec.Worker = adm.worker.pid
	written := time.Now()
	err = d.audit.Write(rec)
	d.metrics.AuditWrite(written)
	if err != nil {
		d.unregister(adm.worker, adm.id)
		if started {
			adm.worker.retireIfIdle()
		}
		res.release()
		d.log.Error("audit log unwritable: refusing connections until it can be written", "err", err)
		return nil, &handshake.Refusal{Code: handshake.CodeInternalError, Reason: "audit log unwritable", Err: err}
	}
	tr.Mark(trace.Audited)
	d.counts.accepted.Add(1)
	return adm, nil
}

// userAccountMemo returns the account of user name for service sc, from the system user
// database, asked through memo (nil: directly). A service whose workers run as a service
// account ("run-as account") also serves users who are not in the database (people known only
// by their keys): they get an account with their name and no groups, so only "users NAME" or
// "users *" can grant them the service. A service whose workers run as the user needs the
// user's real account.
func (d *Daemon) userAccountMemo(sc *policy.Service, name string, memo *accountMemo) (*policy.Account, error) {
	acct, err := memo.lookup(&d.caches, name)
	var unknown user.UnknownUserError
	if err != nil && !sc.RunAsUser && errors.As(err, &unknown) {
		return &policy.Account{Name: name}, nil
	}
	return acct, err
}

// eligible is the decision made before the client proves anything (before a full
// handshake's signature is verified, and before a ticket is resumed): allowed, with the
// service's current configuration. It has no side effects and leaves nothing behind but the
// user's account in r.Admission, for authorize.
func (s *service) eligible(r *handshake.Result) error {
	d := s.d
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.HandshakeTimeout)
	defer cancel()
	sc := s.config()
	acct, err := d.allowed(ctx, sc, d.currentKeys(), r)
	s.recent.remember(sc, r, acct)
	if err != nil {
		return err
	}
	r.Admission = acct
	return nil
}

// allowed is netauthd's authorization: the user must have the key r.KeyHash names (allowed
// sets r.Key to it), exist, and be granted service sc. It decides every handshake (full, and
// resumed, twice) and every revocation check, and returns the user's account.
func (d *Daemon) allowed(ctx context.Context, sc *policy.Service, src keys.Source, r *handshake.Result) (*policy.Account, error) {
	// The key lookup (for ~/.ssh/authorized_keys) and the grant ask the user database once.
	memo := &accountMemo{}
	if err := handshake.FindKey(context.WithValue(ctx, accountMemoKey{}, memo), src, r); err != nil {
		if ref := asRefusal(err); ref.Code == handshake.CodeInternalError && !isRoot() && errors.Is(err, fs.ErrPermission) {
			// Not a failure of the server's: a netauthd run by a user serves only that user,
			// and cannot read another's keys (such as /root/.ssh/authorized_keys).
			return nil, &handshake.Refusal{Code: handshake.CodeNotAuthorized,
				Reason: fmt.Sprintf("netauthd runs as uid %d and cannot read the keys of user %q", os.Geteuid(), r.User), Err: ref.Err}
		}
		return nil, err
	}
	return d.grantedMemo(sc, r.User, memo)
}

// granted returns the account of user if it exists and may use service sc (the part of
// allowed that does not depend on the key).
func (d *Daemon) granted(sc *policy.Service, user string) (*policy.Account, error) {
	return d.grantedMemo(sc, user, nil)
}

// grantedMemo is granted asking the user database through memo.
func (d *Daemon) grantedMemo(sc *policy.Service, user string, memo *accountMemo) (*policy.Account, error) {
	acct, err := d.userAccountMemo(sc, user, memo)
	if err != nil {
		return nil, &handshake.Refusal{Code: handshake.CodeNotAuthorized, Reason: "no such system user", Err: err}
	}
	if !sc.Allowed(user, acct.GroupNames) {
		return nil, &handshake.Refusal{Code: handshake.CodeNotAuthorized, Reason: fmt.Sprintf("user %q may not use service %q", user, sc.Name)}
	}
	return acct, nil
}

// refused audits and logs a refused handshake. Every field of r may be the client's choice
// (the signature is unverified): the audit log bounds them and, under a flood, counts
// refusals rather than logging each; this log line follows it, so it is as bounded.
func (s *service) refused(r *handshake.Refusal) {
	s.d.counts.refused.Add(1)
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
	s.d.metrics.Handshake(r.Resumed, metrics.Refused)
	s.d.metrics.Refusal(ar.Code)
	written := time.Now()
	rec, err := s.d.audit.WriteRefusal(ar)
	s.d.metrics.AuditWrite(written)
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
