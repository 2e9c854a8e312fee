// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/limits"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/trace"
)

// Acceptor limits.
const (
	acceptorMaxPending  = 1024             // handshakes in progress, all services
	maxPendingPerSource = 10               // from one IPv4 address or IPv6 /64, all services
	earlyDropRate       = 30               // percent refused at the start of random early drop
	monitorTimeout      = 30 * time.Second // a monitor request not answered by then fails
	// connLogEvery spaces the acceptor's log lines about single connections (a refused or an
	// abandoned handshake): a client chooses how many connections it makes, and each would
	// otherwise be a line in the daemon's log.
	connLogEvery = 200 * time.Millisecond
)

// acceptorLimits are the acceptor's bounds on unauthenticated connections, for all services
// together: acceptorMaxPending in total, maxPendingPerSource from one address (IPv6: one
// /64), and random early drop from half the total on (OpenSSH's MaxStartups 512:30:1024).
var acceptorLimits = limits.Config{
	MaxPending:     acceptorMaxPending,
	PerSource:      maxPendingPerSource,
	EarlyDropStart: acceptorMaxPending / 2,
	EarlyDropRate:  earlyDropRate,
}

// acceptorProcs is how many threads the acceptor runs Go code on (GOMAXPROCS), given the
// number the runtime chose for the machine (its CPUs, or its container's CPU limit): a
// quarter of them, and at least one. Each connection's handshake crosses goroutines in the
// acceptor (accept, handshake, the monitor's replies), and with a processor idle each
// crossing wakes another thread, which looks for work, finds little and sleeps again: futex
// calls, context switches and spinning that, on a machine of two CPUs where the monitor, the
// workers and the clients compete, cost more than the parallelism they buy. With one
// processor the acceptor used a quarter less CPU per resumed connection there, with half the
// futex calls and context switches, and resumed connections completed 5% sooner
// (docs/BENCHMARKS.md, "Where the time goes: one connection's steps"). A quarter of a larger
// machine keeps the acceptor's share of the work (a third of the monitor's per connection)
// from becoming its bottleneck.
func acceptorProcs(procs int) int { return max(1, procs/4) }

// refuseOverloaded answers a connection refused a handshake slot.
func refuseOverloaded(nc net.Conn) { handshake.Refuse(nc, handshake.CodeOverloaded) }

// RunAcceptor is the main function of netauthd's unprivileged acceptor process. The monitor
// starts it (as an account of its own when the monitor is root, as the monitor's own uid
// otherwise; never as root) with the control channel as descriptor 3 and the
// services' listening sockets after it; args are "-handshake-timeout D" and a list
// "service=count,..." naming the sockets in order. It accepts connections, parses every
// network byte, runs the record layer, and asks the monitor to decide: message 3 goes to the
// monitor with the connection itself (Commit), which the monitor hands to a worker when it
// accepts. It returns the exit status.
func RunAcceptor(args []string, stderr io.Writer) int {
	// JSON, a record a line: the monitor re-emits each at its level (emitLine).
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fs := flag.NewFlagSet("acceptor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("handshake-timeout", 10*time.Second, "handshake deadline")
	traceFD := fs.Int("trace-fd", 0, "descriptor to write trace lines to (netauthd -trace)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "acceptor: started by netauthd only: -handshake-timeout D service=count,...")
		return 2
	}
	if os.Geteuid() == 0 {
		fmt.Fprintln(stderr, "acceptor: refusing to run as root")
		return 1
	}
	runtime.GOMAXPROCS(acceptorProcs(runtime.GOMAXPROCS(0)))
	fd, err := strconv.Atoi(os.Getenv(handoff.Env))
	if err != nil || fd != 3 {
		fmt.Fprintln(stderr, "acceptor: no control channel from netauthd")
		return 2
	}
	ch, err := handoff.FromFile(os.NewFile(3, "netauthd-monitor"))
	if err != nil {
		fmt.Fprintln(stderr, "acceptor:", err)
		return 1
	}
	a := &acceptorSide{ch: ch, log: log, timeout: *timeout, pending: make(map[uint64]*pendingCall),
		limiter: limits.New(acceptorLimits), refusals: &limits.Throttle{Every: time.Second},
		connLog: &limits.Throttle{Every: connLogEvery}}
	if *traceFD > 3 {
		a.trace = trace.NewWriter(os.NewFile(uintptr(*traceFD), "netauthd-trace"))
	}
	next := 4
	type bound struct {
		service string
		ln      net.Listener
	}
	var listeners []bound
	for _, spec := range strings.Split(fs.Arg(0), ",") {
		if spec == "" {
			continue
		}
		name, count, ok := strings.Cut(spec, "=")
		n, err := strconv.Atoi(count)
		if !ok || err != nil || n < 0 {
			fmt.Fprintf(stderr, "acceptor: bad service list %q\n", fs.Arg(0))
			return 2
		}
		for range n {
			f := os.NewFile(uintptr(next), name)
			next++
			ln, err := net.FileListener(f)
			f.Close()
			if err != nil {
				fmt.Fprintf(stderr, "acceptor: service %s: socket %d: %v\n", name, next-1, err)
				return 1
			}
			listeners = append(listeners, bound{name, ln})
		}
	}
	// Everything is inherited: from here on the acceptor needs no file, no new socket and no
	// privilege.
	if status, complete := sandbox(); complete {
		log.Info("acceptor confined", "sandbox", status)
	} else {
		log.Warn("acceptor not fully confined", "sandbox", status)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		a.receive()
		cancel() // the monitor is gone: nothing more can be decided
	}()
	var wg sync.WaitGroup
	for _, b := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop := &limits.AcceptLoop{Limiter: a.limiter, Refusals: a.refusals, Service: b.service, Log: a.log,
				Refuse: refuseOverloaded,
				Handle: func(nc net.Conn, release func()) {
					var tr *trace.Record
					if a.trace != nil {
						tr = &trace.Record{}
						tr.Mark(trace.Accept)
					}
					go a.handle(b.service, nc, release, tr)
				},
				Closed: func() bool { return ctx.Err() != nil }}
			loop.Run(b.ln)
		}()
	}
	<-ctx.Done()
	for _, b := range listeners {
		b.ln.Close()
	}
	wg.Wait()
	return 0
}

// acceptorSide is the acceptor's state: its channel to the monitor and pending requests.
type acceptorSide struct {
	ch       *handoff.Channel
	log      *slog.Logger
	timeout  time.Duration
	limiter  *limits.Limiter
	refusals *limits.Throttle // of "refusing connection" log lines
	connLog  *limits.Throttle // of lines about single handshakes (logConn)
	trace    *trace.Writer    // nil unless netauthd traces

	mu      sync.Mutex
	next    uint64
	pending map[uint64]*pendingCall
	// expiry, while requests wait, fires when the oldest of them is monitorTimeout old
	// (expire): one timer for all of them, not one per request.
	expiry *time.Timer
}

// pendingCall is a request waiting for the monitor's reply.
type pendingCall struct {
	reply    chan *handoff.Message // closed if no reply comes (the monitor is gone, or too late)
	deadline time.Time
}

// receive routes the monitor's replies to the requests waiting for them.
func (a *acceptorSide) receive() {
	for {
		m, f, err := a.ch.Recv()
		if f != nil {
			f.Close()
		}
		if err != nil {
			a.mu.Lock()
			for id, p := range a.pending {
				close(p.reply)
				delete(a.pending, id)
			}
			a.mu.Unlock()
			return
		}
		if m.Type != handoff.TypeReply {
			continue
		}
		a.mu.Lock()
		p := a.pending[m.ID]
		delete(a.pending, m.ID)
		a.mu.Unlock()
		if p != nil {
			p.reply <- m
		}
	}
}

// expire fails the requests that have waited monitorTimeout for their reply, and arms the
// expiry for the oldest of those left, if any.
func (a *acceptorSide) expire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	var next time.Time
	for id, p := range a.pending {
		if !now.Before(p.deadline) {
			close(p.reply)
			delete(a.pending, id)
			continue
		}
		if next.IsZero() || p.deadline.Before(next) {
			next = p.deadline
		}
	}
	a.expiry = nil
	if !next.IsZero() {
		a.expiry = time.AfterFunc(next.Sub(now), a.expire)
	}
}

var errMonitorGone = errors.New("acceptor: no answer from the monitor")

// call sends a request, with the descriptor of conn unless it is nil, and waits for its
// reply's payload, at most monitorTimeout.
func (a *acceptorSide) call(typ handoff.Type, payload []byte, conn syscall.Conn) ([]byte, error) {
	p := &pendingCall{reply: make(chan *handoff.Message, 1), deadline: time.Now().Add(monitorTimeout)}
	a.mu.Lock()
	a.next++
	id := a.next
	a.pending[id] = p
	if a.expiry == nil {
		a.expiry = time.AfterFunc(monitorTimeout, a.expire)
	}
	a.mu.Unlock()
	err := a.ch.SendConn(&handoff.Message{Type: typ, ID: id, Payload: payload}, conn)
	clear(payload)
	if err != nil {
		a.mu.Lock()
		delete(a.pending, id)
		a.mu.Unlock()
		return nil, err
	}
	m, ok := <-p.reply
	if !ok || len(m.Payload) == 0 {
		return nil, errMonitorGone
	}
	if m.Payload[0] != 0 {
		return nil, &handshake.Refusal{Code: handshake.Code(m.Payload[0]), Reason: "refused by the monitor"}
	}
	return m.Payload[1:], nil
}

// remoteCore is a service's handshake Core, answered by the monitor: message 3 goes to the
// monitor with the connection itself, and when the monitor accepts, it has handed the
// connection to the user's worker (no Handover comes back).
type remoteCore struct {
	a       *acceptorSide
	service string
	nc      net.Conn
	tr      *trace.Record // nil unless tracing
}

// Commit sends message 3 with the connection (its own descriptor: the monitor gets a copy
// of its own as the message is received) and its state.
func (r remoteCore) Commit(req *handshake.CommitRequest, st *record.State) (*handshake.Accepted, error) {
	r.tr.Mark(trace.Msg3)
	p, err := r.a.call(handoff.TypeCommit, (&commitRequest{service: r.service, commit: *req, state: st}).marshal(), r.nc.(*net.TCPConn))
	r.tr.Mark(trace.CommitReply)
	if err != nil {
		return nil, err
	}
	defer clear(p)
	return parseAccepted(p)
}

func (r remoteCore) Begin(req *handshake.BeginRequest) (*handshake.BeginResponse, error) {
	r.tr.Mark(trace.Msg1)
	p, err := r.a.call(handoff.TypeBegin, (&beginRequest{service: r.service, req: *req}).marshal(), nil)
	if err != nil {
		return nil, err
	}
	defer clear(p)
	resp, err := parseBeginResponse(p)
	if err == nil && r.tr != nil {
		r.tr.Mark(trace.BeginReply)
		r.tr.SetKey(resp.HandshakeHash)
		r.tr.SetKind(resp.Resumed)
	}
	return resp, err
}

func (r remoteCore) Abort(session uint64) {
	_, _ = r.a.call(handoff.TypeAbort, (&sessionRef{service: r.service, session: session}).marshal(), nil)
}

// handle runs one handshake's framing; message 3 goes to the monitor with the connection.
// release gives back the connection's handshake slot: once the handshake is over, the
// connection is an authenticated one, bounded by the per-user limits instead.
func (a *acceptorSide) handle(service string, nc net.Conn, release func(), tr *trace.Record) {
	handedOff := false
	defer func() {
		if tc, ok := nc.(*net.TCPConn); ok && handedOff {
			releaseHandedOver(tc) // a worker has it: SO_LINGER may be the worker's
			return
		}
		nc.Close()
	}()
	defer release()
	_ = nc.SetDeadline(time.Now().Add(a.timeout))
	var rc *record.Conn
	if tc, ok := nc.(*net.TCPConn); ok && tr != nil {
		// Message 2 is the first write after the monitor's answer to Begin.
		rc = record.NewConn(&tracedConn{TCPConn: tc, tr: tr})
		defer tr.Write(a.trace, trace.Acceptor)
	} else {
		rc = record.NewConn(nc)
	}
	core := remoteCore{a: a, service: service, nc: nc, tr: tr}
	res, err := handshake.Serve(rc, core, nc.RemoteAddr().String(), func(r *handshake.Refusal) {
		a.logConn(slog.LevelInfo, "refused", "service", service, "client", r.Client, "code", r.Code.String(), "reason", r.Error())
	})
	release()
	if err != nil {
		if !errors.As(err, new(*handshake.Refusal)) {
			a.logConn(slog.LevelDebug, "handshake abandoned", "service", service, "client", nc.RemoteAddr().String(), "err", err)
		}
		return
	}
	handedOff = res.HandedOff
	if !res.HandedOff {
		// handoffCore always hands the connection over with the decision; anything else is a
		// bug, and the connection cannot be served from here.
		a.log.Error("accepted connection was not handed over", "service", service, "client", nc.RemoteAddr().String())
		core.Abort(res.Session)
	}
}

// logConn logs a line about a single handshake, at most one every connLogEvery; the first
// line after some were held back says how many ("unlogged").
func (a *acceptorSide) logConn(level slog.Level, msg string, args ...any) {
	if a.connLog != nil {
		ok, held := a.connLog.Allow(time.Now())
		if !ok {
			return
		}
		if held > 0 {
			args = append(args, "unlogged", held)
		}
	}
	a.log.Log(context.Background(), level, msg, args...)
}

// tracedConn is a traced connection's socket in the acceptor: it marks when message 2 was
// written (the first write after Begin's answer).
type tracedConn struct {
	*net.TCPConn
	tr   *trace.Record
	sent bool
}

func (c *tracedConn) Write(p []byte) (int, error) {
	n, err := c.TCPConn.Write(p)
	if !c.sent && c.tr.Has(trace.BeginReply) {
		c.sent = true
		c.tr.Mark(trace.Msg2Sent)
	}
	return n, err
}
