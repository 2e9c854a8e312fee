// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/logging"
	"ubns.dev/netauth/internal/metrics"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/trace"
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
// restarted whenever it exits, until the daemon shuts down. As root, it runs as
// Options.AcceptorAccount; otherwise as this process's uid (the same program, sandbox and
// requests). Callers hold d.mu.
func (d *Daemon) startAcceptorLocked() error {
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
		"-handshake-timeout", d.cfg.HandshakeTimeout.String())
	extra := files
	if d.tracer != nil {
		// The trace pipe comes last (the monitor keeps its end open: not in files).
		args = append(args, "-trace-fd", strconv.Itoa(3+len(files)))
		extra = append(append([]*os.File(nil), files...), d.tracer.pw)
	}
	args = append(args, strings.Join(specs, ","))
	cmd := exec.Command(d.opts.Acceptor[0], args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", handoff.Env + "=3"}
	cmd.ExtraFiles = extra
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	who, uid := acceptorName(d.opts.AcceptorAccount), uint32(os.Geteuid())
	if isRoot() {
		acct := d.opts.AcceptorAccount
		uid = acct.UID
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: acct.UID, Gid: acct.GID, Groups: []uint32{}}
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
	d.log.Info("acceptor started", "pid", cmd.Process.Pid, "user", who, "uid", uid)
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
		d.log.Error("acceptor exited; restarting it (listening sockets and live sessions are kept)", "pid", cmd.Process.Pid, "status", exitStatus(err, ""))
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

// acceptorName names the acceptor's account in the log: acct's name as root, this process's
// user's otherwise, "-" if it has none.
func acceptorName(acct *policy.Account) string {
	switch {
	case isRoot():
		if acct.Name != "" {
			return acct.Name
		}
	default:
		if u, err := user.Current(); err == nil && u.Username != "" {
			return u.Username
		}
	}
	return "-"
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

// serveAcceptor answers the acceptor's requests until its channel closes.
func (d *Daemon) serveAcceptor(a *acceptor) { d.serveRequests(a.ch, d.answer) }

// requestHandler answers one monitor request. The descriptor that came with it (Commit's
// connection) stays the caller's to close unless the handler keeps it (kept: an accepted
// connection, in custody until a worker adopts it).
type requestHandler func(m *handoff.Message, f *os.File) (reply []byte, kept bool)

// maxRequestsInFlight bounds the acceptor's requests the monitor answers at once: as many as
// the acceptor has handshakes in progress, each of which waits for one answer at a time. Past
// it the monitor reads no further request until one is answered, so an acceptor that sends
// faster than the monitor answers, or stops reading the answers, is held back by the channel
// (its sends block) rather than making the monitor start a goroutine, and keep a request and
// its reply, for every message it sends.
const maxRequestsInFlight = acceptorMaxPending

// serveRequests answers the requests arriving on ch with answer, until the channel closes.
// Each request runs in its own goroutine, at most maxRequestsInFlight at once: handshakes
// proceed concurrently. Nothing the acceptor sends stops the monitor: a message the channel
// refuses (malformed, of a type the monitor does not serve, with a descriptor where none
// belongs or none where one does) is refused, with a reply when its header names it, and a
// handler that panics is a refused request; both are audited, and the monitor goes on serving.
// A descriptor the handler did not keep is closed with SO_LINGER off (see closeUnlingered);
// one it kept is closed when its custody ends (custody.end).
func (d *Daemon) serveRequests(ch *handoff.Channel, answer requestHandler) {
	slots := make(chan struct{}, maxRequestsInFlight)
	for {
		slots <- struct{}{} // a slot for the next request, before reading it
		m, f, err := ch.Recv()
		if err != nil {
			<-slots
			var bad *handoff.MessageError
			if !errors.As(err, &bad) {
				return // the channel is closed: the acceptor is gone
			}
			what := "message"
			if bad.HasHeader {
				what = bad.Type.String()
			}
			d.refuseRequest(what, "", "", err.Error())
			if bad.HasHeader {
				if err := ch.Send(&handoff.Message{Type: handoff.TypeReply, ID: bad.ID, Payload: replyRefusal(handshake.CodeProtocolError)}, nil); err != nil {
					d.log.Debug("replying to the acceptor", "err", err)
				}
			}
			continue
		}
		go func() {
			defer func() { <-slots }()
			reply, kept := d.answerRecovering(answer, m, f)
			if f != nil && !kept {
				closeUnlingered(f)
			}
			clear(m.Payload)
			m.Payload = nil
			if err := ch.Send(&handoff.Message{Type: handoff.TypeReply, ID: m.ID, Payload: reply}, nil); err != nil {
				d.log.Debug("replying to the acceptor", "err", err)
			}
			clear(reply)
		}()
	}
}

// answerRecovering runs answer for one request and turns a panic into a refused, audited
// request: whatever the acceptor sends, a bug it reaches costs that request, not the monitor
// and every worker with it.
func (d *Daemon) answerRecovering(answer requestHandler, m *handoff.Message, f *os.File) (reply []byte, kept bool) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("a monitor request failed; refused it and serving on", "request", m.Type.String(),
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			d.refuseRequest(m.Type.String(), "", "", "internal error while answering it")
			reply, kept = replyRefusal(handshake.CodeInternalError), false
		}
	}()
	return answer(m, f)
}

// answer handles one request of the monitor protocol: Begin, Commit and Abort, the requests
// the acceptor sends; any other type is refused. What the acceptor sends is never trusted for
// a decision: the handshake hash, the identity and the authorization all come from the
// service's core, which computed them itself, and Commit's descriptor is checked before
// anything is decided.
func (d *Daemon) answer(m *handoff.Message, f *os.File) (reply []byte, kept bool) {
	switch m.Type {
	case handoff.TypeBegin:
		return d.answerBegin(m.Payload), false
	case handoff.TypeCommit:
		return d.answerCommit(m.Payload, f)
	case handoff.TypeAbort:
		return d.answerAbort(m.Payload), false
	}
	d.refuseRequest(m.Type.String(), "", "", "not a request the monitor serves")
	return replyRefusal(handshake.CodeProtocolError), false
}

// answerBegin is Begin: message 1 of a handshake.
func (d *Daemon) answerBegin(p []byte) []byte {
	req, err := parseBeginRequest(p)
	if err != nil {
		d.refuseRequest(handoff.TypeBegin.String(), "", "", "malformed request")
		return replyRefusal(handshake.CodeProtocolError)
	}
	s := d.service(req.service)
	if s == nil {
		d.refuseRequest(handoff.TypeBegin.String(), "", "", "no such service")
		return replyRefusal(handshake.CodeInternalError)
	}
	tr := d.tracer.record()
	tr.Mark(trace.BeginRecv)
	resp, err := s.core.Begin(&req.req)
	if err != nil {
		return replyRefusal(codeOf(err))
	}
	if tr != nil {
		tr.Mark(trace.BeginDone)
		tr.SetKey(resp.HandshakeHash)
		tr.SetKind(resp.Resumed)
		d.tracer.write(tr)
	}
	return marshalBeginResponse(resp)
}

// answerCommit is Commit: message 3 of a handshake with its connection, decided and, when
// accepted, taken into custody (kept) and sent to a worker, which sends the verdict. The
// acceptor is answered then, without waiting for the worker to adopt the connection: the
// monitor's copy of the socket keeps the connection, and a worker that fails to adopt it is
// replaced (custody).
func (d *Daemon) answerCommit(p []byte, f *os.File) (reply []byte, kept bool) {
	var received int64
	if d.tracer != nil {
		received = trace.Now()
	}
	req, err := parseCommit(p)
	if err != nil {
		d.refuseRequest(handoff.TypeCommit.String(), "", "", "malformed request")
		return replyRefusal(handshake.CodeProtocolError), false
	}
	defer req.state.Zero()
	s := d.service(req.service)
	if s == nil {
		d.refuseRequest(handoff.TypeCommit.String(), "", "", "no such service")
		return replyRefusal(handshake.CodeInternalError), false
	}
	// The descriptor first: nothing is decided, and no worker started, for a connection the
	// monitor could not hand over.
	remote, local, err := s.acceptedConn(f)
	if err != nil {
		s.core.Abort(req.commit.Session)
		d.refuseRequest(handoff.TypeCommit.String(), s.name, remote, "its descriptor is "+err.Error())
		return replyRefusal(handshake.CodeProtocolError), false
	}
	// A place in custody before anything is decided: an accepted connection always has one.
	// It is given back unless the connection went into custody, which then owns it: also when
	// the decision panics (answerRecovering refuses the request), or each such panic would keep
	// a place for good, and as many as there are places would hold every Commit.
	slot := d.custodySlot()
	inCustody := false
	defer func() {
		if !inCustody {
			<-slot
		}
	}()
	// The client's address for the decision's audit record is the descriptor's, not what the
	// acceptor said in Begin.
	req.commit.Client = remote
	acc, err := s.core.Commit(&req.commit, req.state)
	if err != nil {
		return replyRefusal(codeOf(err)), false
	}
	// The worker sends the Verdict, sealed under the handshake-record key as the acceptor
	// left it, then continues under the application keys, which the acceptor never had: a
	// socket other than the authenticated client's gets nothing it can read or forge.
	h := acc.Handover
	acc.Handover = nil
	defer h.Zero()
	adm, _ := acc.Result.Admission.(*admission)
	if adm == nil {
		d.log.Error("accepted session without an admission", "service", s.name)
		return replyRefusal(handshake.CodeInternalError), false
	}
	adm.trace.MarkAt(trace.CommitRecv, received)
	adm.trace.Mark(trace.Sealed)
	c := newCustody(adm, slot, f, remote, local, h.State, acc.Result, h.Verdict)
	inCustody = true
	adm.trace.Mark(trace.Handoff)
	d.dispatch(c)
	adm.trace.Mark(trace.CommitDone)
	d.tracer.write(adm.trace)
	d.metrics.Handshake(acc.Result.Resumed, metrics.Accepted)
	return acceptedReply, true
}

// answerAbort is Abort: a handshake failed after Begin.
func (d *Daemon) answerAbort(p []byte) []byte {
	ref, err := parseAbort(p)
	if err != nil {
		d.refuseRequest(handoff.TypeAbort.String(), "", "", "malformed request")
		return replyRefusal(handshake.CodeProtocolError)
	}
	if s := d.service(ref.service); s != nil {
		s.core.Abort(ref.session)
	}
	return replyRefusal(handshake.CodeOK)
}

// refuseRequest audits and logs a monitor request refused for what the acceptor sent rather
// than for the handshake itself: only a compromised (or broken) acceptor sends one, except a
// Commit whose connection its client reset in the meantime. The record names a service only
// if it exists, and a client only by the address the monitor read from the descriptor itself;
// the reason is the monitor's own text, never the acceptor's bytes.
func (d *Daemon) refuseRequest(what, service, client, why string) {
	reason := fmt.Sprintf("acceptor %s refused: %s", what, why)
	// Bounded and, under a flood, counted like every other refusal: the acceptor chooses
	// how often this happens.
	rec, err := d.audit.WriteRefusal(&audit.Refusal{Client: client, Service: service, Code: "acceptor_request", Reason: reason})
	if err != nil {
		d.log.Error("audit log unwritable", "err", err)
	}
	if rec != nil {
		d.log.Warn(reason, "service", service, "client", client)
	}
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

// Bounds on the acceptor's output in the daemon's log. The acceptor logs what network clients
// provoke (it throttles its own lines about single connections), and a compromised acceptor
// writes whatever it likes: the monitor copies at most acceptorLogLines lines a second, each
// cut to acceptorLogLineLen bytes, and counts the others in a line of its own.
const (
	acceptorLogLines   = 20
	acceptorLogLineLen = 1024
)

// logLines copies the acceptor's output to the daemon's log, within the bounds above: each
// line the acceptor logged as a slog JSON record is re-emitted at its level (emitLine); lines
// the daemon's log does not show (debug, at level info) do not count.
func (d *Daemon) logLines(r io.Reader, who string, pid int) {
	var window time.Time
	logged, held := 0, 0
	report := func() {
		if held > 0 {
			d.log.Warn(who+" output not logged: too many lines", "pid", pid, "lines", held)
			held = 0
		}
	}
	logOutput(r, acceptorLogLineLen, func(line string) {
		rec, ok := logging.ParseLine(line)
		if ok && !d.log.Enabled(context.Background(), rec.Level) {
			return
		}
		if now := time.Now(); now.Sub(window) >= time.Second {
			report()
			window, logged = now, 0
		}
		if logged >= acceptorLogLines {
			held++
			return
		}
		logged++
		d.emitLine(line, rec, ok, who, "source", who, "pid", pid)
	})
	report()
}

// emitLine logs a line of another process's output (the acceptor's, a worker's), tagged
// with tags: the record rec parsed from it when ok, at its level (ParseLine caps it at
// ERROR) with its attributes under the group named group; else the line as text at INFO,
// in a record "<group> output". A worker's message is prefixed "worker: ".
func (d *Daemon) emitLine(line string, rec logging.Line, ok bool, group string, tags ...any) {
	if !ok {
		d.log.Info(group+" output", append(tags, "line", line)...)
		return
	}
	args := tags
	if len(rec.Attrs) > 0 {
		args = append(args, slog.Attr{Key: group, Value: slog.GroupValue(rec.Attrs...)})
	}
	msg := rec.Msg
	if group == "worker" {
		// A worker is the user's own program: its message never reads as one of the
		// monitor's own ("refused", "worker started"), whatever it wrote.
		msg = "worker: " + msg
	}
	d.log.Log(context.Background(), rec.Level, msg, args...)
}
