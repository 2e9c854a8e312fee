// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/policy"
)

// acceptorRestartDelay spaces restarts of an acceptor that keeps dying.
const acceptorRestartDelay = 200 * time.Millisecond

// acceptor is the running unprivileged acceptor process, as the monitor sees it.
type acceptor struct {
	cmd    *exec.Cmd
	ch     *handoff.Channel
	exited chan struct{}
}

// startAcceptorLocked starts the acceptor with the listening sockets of every service; it is
// restarted whenever it exits, until the daemon shuts down. Callers hold d.mu.
func (d *Daemon) startAcceptorLocked() error {
	acct, err := policy.LookupAccount(d.opts.AcceptorUser)
	if err != nil {
		return fmt.Errorf("netauthd: acceptor account: %w", err)
	}
	if acct.UID == 0 {
		return errors.New("netauthd: the acceptor must not run as root")
	}
	ch, chFile, err := handoff.Pair()
	if err != nil {
		return err
	}
	files := []*os.File{chFile}
	var specs []string
	for name, s := range d.services {
		n := 0
		for _, ln := range s.listeners {
			f, err := ln.(*net.TCPListener).File()
			if err != nil {
				closeFiles(files)
				ch.Close()
				return fmt.Errorf("netauthd: passing %s's socket to the acceptor: %w", name, err)
			}
			files = append(files, f)
			n++
		}
		specs = append(specs, name+"="+strconv.Itoa(n))
	}
	args := append(append([]string(nil), d.opts.Acceptor[1:]...),
		"-handshake-timeout", d.cfg.HandshakeTimeout.String(), strings.Join(specs, ","))
	cmd := exec.Command(d.opts.Acceptor[0], args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", handoff.Env + "=3"}
	cmd.ExtraFiles = files
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: &syscall.Credential{Uid: acct.UID, Gid: acct.GID, Groups: []uint32{}},
	}
	stderr, _ := cmd.StderrPipe()
	err = cmd.Start()
	closeFiles(files)
	if err != nil {
		ch.Close()
		return fmt.Errorf("netauthd: starting the acceptor: %w", err)
	}
	a := &acceptor{cmd: cmd, ch: ch, exited: make(chan struct{})}
	d.acceptor = a
	d.log.Info("acceptor started", "pid", cmd.Process.Pid, "user", acct.Name, "uid", acct.UID)
	go d.logLines(stderr, "acceptor", cmd.Process.Pid)
	go d.serveAcceptor(a)
	go func() {
		err := cmd.Wait()
		ch.Close()
		close(a.exited)
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.acceptor != a {
			return
		}
		d.acceptor = nil
		if d.closed {
			return
		}
		d.log.Error("acceptor exited; restarting it (listening sockets and live sessions are kept)", "pid", cmd.Process.Pid, "status", exitStatus(err))
		time.AfterFunc(acceptorRestartDelay, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.closed || d.acceptor != nil {
				return
			}
			if err := d.startAcceptorLocked(); err != nil {
				d.log.Error("restarting the acceptor", "err", err)
			}
		})
	}()
	return nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// restartAcceptorLocked replaces the acceptor (after the set of listening sockets changed).
// Handshakes in progress in the old one are lost; live sessions are not. Callers hold d.mu.
func (d *Daemon) restartAcceptorLocked() {
	old := d.acceptor
	d.acceptor = nil
	if old != nil {
		_ = old.cmd.Process.Kill()
	}
	if err := d.startAcceptorLocked(); err != nil {
		d.log.Error("restarting the acceptor", "err", err)
	}
}

// serveAcceptor answers the acceptor's requests until its channel closes. Each request runs
// in its own goroutine: handshakes proceed concurrently.
func (d *Daemon) serveAcceptor(a *acceptor) {
	for {
		m, f, err := a.ch.Recv()
		if err != nil {
			if f != nil {
				f.Close()
			}
			return
		}
		go func() {
			reply := d.answer(m, f)
			clear(m.Payload)
			if err := a.ch.Send(&handoff.Message{Type: handoff.TypeReply, ID: m.ID, Payload: reply}, nil); err != nil {
				d.log.Debug("replying to the acceptor", "err", err)
			}
			clear(reply)
		}()
	}
}

// answer handles one request of the monitor protocol. What the acceptor sends is never
// trusted for a decision: the handshake hash, the identity and the authorization all come from
// the service's core, which computed them itself.
func (d *Daemon) answer(m *handoff.Message, f *os.File) []byte {
	switch m.Type {
	case handoff.TypeBegin:
		req, err := parseBeginRequest(m.Payload)
		if err != nil {
			return replyRefusal(handshake.CodeProtocolError)
		}
		s := d.service(req.service)
		if s == nil {
			return replyRefusal(handshake.CodeInternalError)
		}
		resp, err := s.core.Begin(&req.req)
		if err != nil {
			return replyRefusal(codeOf(err))
		}
		return marshalBeginResponse(resp)
	case handoff.TypeAuth:
		req, err := parseAuthRequest(m.Payload)
		if err != nil {
			return replyRefusal(handshake.CodeProtocolError)
		}
		s := d.service(req.service)
		if s == nil {
			return replyRefusal(handshake.CodeInternalError)
		}
		resp, err := s.core.Authenticate(&req.req)
		if err != nil {
			return replyRefusal(codeOf(err))
		}
		return marshalAuthResponse(resp)
	case handoff.TypeCommit:
		defer f.Close()
		req, err := parseCommit(m.Payload)
		if err != nil {
			return replyRefusal(handshake.CodeProtocolError)
		}
		defer req.state.Zero()
		s := d.service(req.service)
		if s == nil || !isTCP(f) {
			return replyRefusal(handshake.CodeInternalError)
		}
		var reply, pending []byte
		if req.resumed {
			if err := s.core.Confirm(req.auth.Session, req.binder); err != nil {
				return replyRefusal(codeOf(err))
			}
			reply, pending = replyRefusal(handshake.CodeOK), handshake.MarshalVerdict(0, nil, nil)
		} else {
			resp, err := s.core.Authenticate(&req.auth)
			if err != nil {
				return replyRefusal(codeOf(err))
			}
			pending = handshake.MarshalVerdict(resp.Lifetime, resp.Ticket, resp.Secret)
			clear(resp.Secret)
			resp.Secret = nil // the acceptor has no use for it: the worker sends the verdict
			reply = marshalAuthResponse(resp)
		}
		defer clear(pending)
		adm := s.core.take(req.auth.Session)
		if adm == nil {
			return replyRefusal(handshake.CodeInternalError)
		}
		remote, local, err := addrsOf(f)
		if err != nil {
			adm.release(d)
			return replyRefusal(handshake.CodeInternalError)
		}
		d.dispatchFileWith(adm, f, remote, local, req.state, adm.res, pending)
		return reply
	case handoff.TypeConfirm:
		req, err := parseConfirm(m.Payload)
		if err != nil {
			return replyRefusal(handshake.CodeProtocolError)
		}
		s := d.service(req.service)
		if s == nil {
			return replyRefusal(handshake.CodeInternalError)
		}
		if err := s.core.Confirm(req.session, req.binder); err != nil {
			return replyRefusal(codeOf(err))
		}
		return replyRefusal(handshake.CodeOK)
	case handoff.TypeAbort:
		ref, err := parseAbort(m.Payload)
		if s := d.service(ref.service); err == nil && s != nil {
			s.core.Abort(ref.session)
		}
		return replyRefusal(handshake.CodeOK)
	case handoff.TypeDeliver:
		defer f.Close()
		req, err := parseDeliver(m.Payload)
		if err != nil {
			return replyRefusal(handshake.CodeProtocolError)
		}
		defer req.state.Zero()
		s := d.service(req.service)
		if s == nil {
			return replyRefusal(handshake.CodeInternalError)
		}
		adm := s.core.take(req.session)
		if adm == nil {
			d.log.Warn("acceptor delivered a connection for no accepted session", "service", req.service, "session", req.session)
			return replyRefusal(handshake.CodeProtocolError)
		}
		remote, local, err := addrsOf(f)
		if err != nil || !isTCP(f) {
			adm.release(d)
			d.log.Warn("acceptor delivered something that is not a TCP connection", "service", req.service, "err", err)
			return replyRefusal(handshake.CodeProtocolError)
		}
		d.dispatchFile(adm, f, remote, local, req.state, adm.res)
		return replyRefusal(handshake.CodeOK)
	}
	return replyRefusal(handshake.CodeProtocolError)
}

// service returns the running service called name.
func (d *Daemon) service(name string) *service {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.services[name]
}

func codeOf(err error) handshake.Code {
	var r *handshake.Refusal
	if errors.As(err, &r) {
		return r.Code
	}
	return handshake.CodeInternalError
}

// addrsOf returns the peer and local addresses of a connected socket.
func addrsOf(f *os.File) (string, string, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	return c.RemoteAddr().String(), c.LocalAddr().String(), nil
}

func isTCP(f *os.File) bool {
	typ, err := syscall.GetsockoptInt(int(f.Fd()), syscall.SOL_SOCKET, syscall.SO_TYPE)
	if err != nil || typ != syscall.SOCK_STREAM {
		return false
	}
	sa, err := syscall.Getsockname(int(f.Fd()))
	if err != nil {
		return false
	}
	switch sa.(type) {
	case *syscall.SockaddrInet4, *syscall.SockaddrInet6:
		return true
	}
	return false
}

// logLines copies a child's output to the daemon's log.
func (d *Daemon) logLines(r interface{ Read([]byte) (int, error) }, who string, pid int) {
	logOutput(r, func(line string) { d.log.Info(who+" output", "pid", pid, "line", line) })
}
