// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/logging"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/trace"
	"ubns.dev/netauth/internal/usercert"
)

// Handoff bounds.
const (
	handoffAttempts = 3                // workers tried before a connection is given up
	ackTimeout      = 10 * time.Second // a worker must adopt a connection within this
	// maxInCustody bounds the accepted connections the monitor holds until a worker adopts
	// them (see custody), all services and users together: as many as the acceptor has
	// handshakes in progress, which is what the monitor held when every Commit waited for
	// its worker.
	maxInCustody = acceptorMaxPending
)

var errWorkerGone = errors.New("worker exited")

// workerKey names a worker: per-user workers are shared by all of a user's connections to a
// service; per-connection workers get a unique serial.
type workerKey struct {
	service, user string
	serial        uint64
}

type userService struct{ service, user string }

// worker is a process serving one user (per-user mode) or one connection (per-connection).
// Its fields are guarded by Daemon.mu unless noted.
type worker struct {
	d       *Daemon
	key     workerKey
	user    string
	account string // the account it runs as, named in the log for a worker shared by all users
	svc     *policy.Service
	perConn bool

	ready    chan struct{} // closed once started (or failed: startErr)
	startErr error
	cmd      *exec.Cmd
	pid      int
	ch       *handoff.Channel
	exited   chan struct{} // closed when the process has been reaped

	active  int       // connections handed (or being handed) to it and not yet closed
	started time.Time // when its process started (or a spare became it)
	// pending are the connections registered with it (workerFor) and not yet adopted: nil
	// until sent, then the connection in custody, until the worker acknowledges it.
	pending  map[uint64]*custody
	keysUsed map[string]usedKey
	users    map[uint64]string             // the user of each connection registered with it
	userKeys map[string]map[string]usedKey // a shared worker's keys used, per user (program.go)
	retired  bool                          // takes no new connections
	logLimit lineLimit                     // bounds its output in the log (logLine)
	dead     bool
	killedBy string // why the daemon killed it, if it did ("access revoked"), for the log
	idle     *time.Timer
}

// reservation holds a connection's place against the per-user limit until it is handed over
// (then the worker's Done releases it) or fails.
type reservation struct {
	d    *Daemon
	us   userService
	done bool
}

func (r *reservation) release() {
	if r == nil {
		return
	}
	r.d.mu.Lock()
	defer r.d.mu.Unlock()
	if !r.done {
		r.done = true
		r.d.connsLocked(r.us, -1)
	}
}

func (d *Daemon) connsLocked(us userService, delta int) {
	if d.conns == nil {
		d.conns = make(map[userService]int)
	}
	d.conns[us] += delta
	if d.conns[us] <= 0 {
		delete(d.conns, us)
	}
}

// reserve checks the service's limits for one more connection of user.
func (d *Daemon) reserve(sc *policy.Service, user string) (*reservation, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, &handshake.Refusal{Code: handshake.CodeOverloaded, Reason: "shutting down"}
	}
	us := userService{sc.Name, user}
	if d.conns[us] >= sc.MaxConnsPerUser {
		return nil, &handshake.Refusal{Code: handshake.CodeOverloaded, Reason: fmt.Sprintf("user %q has %d connections to %q (max-connections-per-user)", user, d.conns[us], sc.Name)}
	}
	key, needNew := workerKeyFor(sc, user)
	if !needNew {
		w := d.workers[key]
		needNew = w == nil || w.retired || w.dead
	}
	if needNew {
		n := 0
		for k, w := range d.workers {
			if k.service == sc.Name && !w.dead {
				n++
			}
		}
		if n >= sc.MaxWorkers {
			return nil, &handshake.Refusal{Code: handshake.CodeOverloaded, Reason: fmt.Sprintf("service %q has %d workers (max-workers)", sc.Name, n)}
		}
	}
	d.connsLocked(us, 1)
	return &reservation{d: d, us: us}, nil
}

// custody is an accepted connection in the monitor's keeping, from the decision until a
// worker acknowledges it: the monitor's own copy of the socket and the marshaled handoff
// (identity, sealed Verdict, application keys), so that the connection can go to another
// worker if the one it was sent to exits first (DESIGN §5). The acceptor is answered as soon
// as the connection is in custody and sent: its handshake slot is not held while a worker
// adopts the connection, nor for the ackTimeout a stuck worker takes to be stopped.
//
// What bounds custody: each connection in it counts against its user's
// max-connections-per-user (its reservation) and, in per-connection mode, holds a worker
// counted against max-workers; and at most maxInCustody are held at once, all services and
// users together, each with a slot taken before its decision (custodySlot). A worker that
// never acknowledges is stopped after ackTimeout and its connections go to a new one, at most
// handoffAttempts workers in all.
//
// A custody belongs to the code that holds it: the Commit that made it, then the worker's
// pending map it was sent through (under Daemon.mu), whose acknowledgement (adopted) or exit
// (control) takes it out again. Only the one that takes it out may go on with it.
type custody struct {
	adm     *admission
	f       *os.File // the monitor's copy of the connection
	payload []byte   // the marshaled handoff.Conn; wiped when the custody ends
	user    string
	keyFP   string
	key     ssh.PublicKey
	client  string        // the client's address, as the monitor read it from the descriptor
	attempt int           // workers it was sent to
	timer   *time.Timer   // the current worker's time to adopt it; guarded by Daemon.mu
	slot    chan struct{} // the custody slot it holds
	ack     *trace.Record // the monitor's WorkerAck step, when tracing
	sent    time.Time     // when it went into custody, for the handoff latency
}

// newCustody takes connection f (the caller's copy, which it no longer closes) and what
// continues it into custody: the worker gets the identity, the sealed Verdict to send first
// (pending) and the application keys.
func newCustody(adm *admission, slot chan struct{}, f *os.File, remote, local string, st *record.State, res *handshake.Result, pending []byte) *custody {
	hc := &handoff.Conn{Pending: pending, State: st, Identity: res.Identity, RemoteAddr: remote, LocalAddr: local}
	c := &custody{adm: adm, f: f, payload: hc.Marshal(), user: res.User, keyFP: res.KeyFingerprint, key: res.Key, client: remote, slot: slot, sent: time.Now()}
	hc.Zero()
	if adm.trace != nil {
		c.ack = &trace.Record{}
		c.ack.SetKey(res.HandshakeHash)
		c.ack.SetKind(res.Resumed)
	}
	return c
}

// custodySlot takes a place for one more connection in custody, waiting for one while
// maxInCustody connections wait for their workers: then Commits wait, as every Commit
// waited for its worker before custody, and the acceptor, whose handshake slots they hold,
// accepts no more than it can keep.
func (d *Daemon) custodySlot() chan struct{} {
	d.mu.Lock()
	if d.custodySlots == nil {
		d.custodySlots = make(chan struct{}, maxInCustody)
	}
	slots := d.custodySlots
	d.mu.Unlock()
	slots <- struct{}{}
	return slots
}

// ackTimeoutLocked is how long a worker has to adopt a connection. Callers hold d.mu.
func (d *Daemon) ackTimeoutLocked() time.Duration {
	if d.ackTimeout > 0 {
		return d.ackTimeout // tests
	}
	return ackTimeout
}

// dispatch sends the connection in custody c to the worker its admission chose. It returns
// once the connection is sent, without waiting for the worker to adopt it: the worker's
// acknowledgement (adopted) ends the custody, and its exit (control) dispatches the
// connection again (redispatch). When the send fails, the connection goes to a new worker in
// the background.
func (d *Daemon) dispatch(c *custody) {
	c.attempt++
	taken, err := c.adm.worker.handoff(c.adm.id, c)
	if taken {
		return
	}
	d.log.Warn("handoff failed; trying a new worker", "service", c.adm.svc.Name, "user", c.user, "pid", c.adm.worker.pid, "attempt", c.attempt, "err", err)
	go d.redispatch(c)
}

// redispatch sends the connection in custody c, which a worker failed to take, to a new
// worker, up to handoffAttempts workers in all; past that (or when the daemon is shutting
// down, or no worker can be had), the connection is lost.
func (d *Daemon) redispatch(c *custody) {
	for c.attempt < handoffAttempts {
		c.attempt++
		d.mu.Lock()
		closed := d.closed
		d.mu.Unlock()
		if closed {
			break
		}
		w, id, _, err := d.workerFor(c.adm)
		if err != nil {
			d.log.Error("handoff: no worker", "service", c.adm.svc.Name, "user", c.user, "err", err)
			break
		}
		taken, err := w.handoff(id, c)
		if taken {
			return
		}
		d.log.Warn("handoff failed; trying a new worker", "service", c.adm.svc.Name, "user", c.user, "pid", w.pid, "attempt", c.attempt, "err", err)
	}
	c.adm.reserve.release()
	d.log.Error("connection lost: no worker adopted it", "service", c.adm.svc.Name, "user", c.user)
	c.end()
}

// end ends a custody: the monitor's copy of the connection is closed (a worker may have had
// it and set SO_LINGER: see releaseHandedOver), the keys wiped, and the slot given back.
func (c *custody) end() {
	releaseHandedOver(c.f)
	clear(c.payload)
	<-c.slot
}

// workerFor returns the worker to take the next connection (starting one if needed: then
// started is true) and registers the connection with it. It returns once the worker is
// running (or failed to start), so that its pid is known.
func (d *Daemon) workerFor(adm *admission) (w *worker, id uint64, started bool, err error) {
	d.mu.Lock()
	key, perConn := workerKeyFor(adm.svc, adm.user.Name)
	if perConn {
		d.nextID++
		key.serial = d.nextID
	}
	w = d.workers[key]
	if w == nil || w.retired || w.dead {
		started = true
		w = &worker{
			d: d, key: key, user: key.user, account: adm.runAs.Name, svc: adm.svc, perConn: perConn, users: make(map[uint64]string),
			ready: make(chan struct{}), exited: make(chan struct{}),
			pending: make(map[uint64]*custody), keysUsed: make(map[string]usedKey),
		}
		d.workers[key] = w
		go w.start(adm.runAs)
	}
	id = d.registerLocked(w, adm)
	d.mu.Unlock()
	<-w.ready
	if w.startErr != nil {
		d.mu.Lock()
		delete(w.pending, id)
		delete(w.users, id)
		w.active--
		d.mu.Unlock()
		return nil, 0, false, w.startErr
	}
	return w, id, started, nil
}

// registerLocked registers the connection of adm with w and returns its id. Callers hold d.mu.
func (d *Daemon) registerLocked(w *worker, adm *admission) uint64 {
	d.nextID++
	id := d.nextID
	w.pending[id] = nil
	w.users[id] = adm.user.Name
	w.active++
	if w.idle != nil {
		w.idle.Stop()
		w.idle = nil
	}
	return id
}

// unregister takes back a connection registered with workerFor that will not be handed over.
func (d *Daemon) unregister(w *worker, id uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := w.pending[id]; !ok {
		return // the worker died and already counted it out
	}
	delete(w.pending, id)
	delete(w.users, id)
	w.active--
	if w.active == 0 && !w.retired && !w.dead {
		d.scheduleIdleLocked(w)
	}
}

// start runs the worker process as runAs with an explicit minimal environment and only the
// control socket inherited (as descriptor 3): a spare (spare.go) assigned to become it when
// the worker is a built-in one and a spare is ready, else a new process.
func (w *worker) start(runAs *policy.Account) {
	defer close(w.ready)
	d := w.d
	fail := func(err error) {
		w.startErr = err
		d.mu.Lock()
		w.dead = true
		if d.workers[w.key] == w {
			delete(d.workers, w.key)
		}
		d.mu.Unlock()
		close(w.exited)
	}
	if !isRoot() && runAs.UID != uint32(os.Geteuid()) {
		fail(fmt.Errorf("netauthd runs as uid %d and cannot start a worker as %s (uid %d): run it as root", os.Geteuid(), runAs.Name, runAs.UID))
		return
	}
	path, args, err := d.workerCommand(w.svc)
	if err != nil {
		fail(err)
		return
	}
	env := workerEnv(runAs, w.user, w.svc.Name)
	if d.tracer != nil {
		env = append(env, trace.Env+"=4") // descriptor 4
	}
	dir := workerDir(runAs)
	d.mu.Lock()
	builtin, isBuiltin := builtinArgs(d.opts.Self, path, args)
	d.mu.Unlock()
	// A worker in a network namespace of its own is started in it: a spare is in netauthd's.
	if isBuiltin && !privateNetns(w.svc) {
		if sp := d.takeSpare(); sp != nil {
			err := w.assign(sp, runAs, builtin, env, dir)
			if err == nil {
				w.cmd, w.pid, w.ch, w.started = sp.cmd, sp.pid, sp.ch, time.Now()
				d.log.Info("worker started", append(w.startTags(runAs), "spare", true)...)
				d.metrics.WorkerStarted()
				if err := w.awaitInstance(); err != nil {
					w.instanceFailed(err, func() { sp.reap() })
					fail(err)
					return
				}
				go w.control()
				return
			}
			d.log.Warn("a spare worker could not become the worker; starting it afresh", append(w.logTags(sp.pid), "err", err)...)
		}
	}
	ch, wf, err := handoff.Pair()
	if err != nil {
		fail(err)
		return
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{wf}
	if d.tracer != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, d.tracer.pw) // descriptor 4
	}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if isRoot() {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: runAs.UID, Gid: runAs.GID, Groups: runAs.Groups}
	}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	startCmd := cmd.Start
	if privateNetns(w.svc) {
		startCmd = func() error { return startInNetns(cmd) }
	}
	if err := startCmd(); err != nil {
		wf.Close()
		ch.Close()
		fail(fmt.Errorf("starting %s: %w", path, err))
		return
	}
	wf.Close()
	w.cmd, w.pid, w.ch, w.started = cmd, cmd.Process.Pid, ch, time.Now()
	d.log.Info("worker started", w.startTags(runAs)...)
	d.metrics.WorkerStarted()
	var output sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		output.Add(1)
		go func() { defer output.Done(); w.logOutput(r) }()
	}
	if err := w.awaitInstance(); err != nil {
		w.instanceFailed(err, func() {
			logged := make(chan struct{})
			go func() { output.Wait(); close(logged) }()
			select {
			case <-logged:
			case <-time.After(time.Second):
			}
			_ = cmd.Wait()
		})
		fail(err)
		return
	}
	go w.control()
}

// workerEnv is a worker's whole environment: nothing of the daemon's.
func workerEnv(a *policy.Account, user, service string) []string {
	shell := a.Shell
	if shell == "" {
		shell = "/bin/sh"
	}
	return []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + a.Home,
		"USER=" + a.Name,
		"LOGNAME=" + a.Name,
		"SHELL=" + shell,
		"NETAUTH_USER=" + user,
		"NETAUTH_SERVICE=" + service,
		handoff.Env + "=3",
	}
}

// Bounds of a worker's output in the daemon's log. A worker is the user's process and writes
// what it likes, as fast as it likes: each line is cut to maxWorkerLogLine bytes, and a
// worker's lines are copied at workerLogRate a second on average, workerLogBurst at once;
// the others are counted, in one line of their own at most every workerLogInterval.
const (
	maxWorkerLogLine  = 64 << 10
	workerLogRate     = 50
	workerLogBurst    = 200
	workerLogInterval = time.Second
)

// logOutput copies a worker's output to the daemon's log, line by line, tagged.
func (w *worker) logOutput(r io.Reader) {
	logOutput(r, maxWorkerLogLine, func(line string) { w.logLine(w.pid, line) })
	w.logLimit.flush()
}

// logLine logs a line of the output of the worker's process pid: a slog JSON record at its
// level, anything else as text at INFO (emitLine), tagged source=worker with the worker's
// service, user (a worker of a shared service has none) and pid. Lines the log does not show
// (debug, at level info) are dropped; past the worker's rate (logLimit), lines are counted,
// not logged.
func (w *worker) logLine(pid int, line string) {
	rec, ok := logging.ParseLine(line)
	if ok && !w.d.log.Enabled(context.Background(), rec.Level) {
		return
	}
	if !w.logLimit.allow(time.Now(), func(n int) {
		w.d.log.Warn("worker output suppressed: too many lines", w.logTags(pid, "source", "worker", "lines", n)...)
	}) {
		return
	}
	w.d.emitLine(line, rec, ok, "worker", w.logTags(pid, "source", "worker")...)
}

// lineLimit is a token bucket of lines: workerLogRate a second, workerLogBurst at most. The
// lines it refuses are counted and reported (to report, set by allow) at most every
// workerLogInterval, the first workerLogInterval after the first of them, so that a worker
// that falls silent after a flood still has it counted. The zero value is ready for use.
type lineLimit struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time // when tokens was last refilled; zero: never (a full bucket)
	held   int       // lines refused and not yet reported
	timer  *time.Timer
	report func(n int)
}

// allow reports whether a line arriving at now may be logged; report is what reports the
// lines refused.
func (l *lineLimit) allow(now time.Time, report func(n int)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.report = report
	if l.last.IsZero() {
		l.tokens = workerLogBurst
	} else if dt := now.Sub(l.last); dt > 0 {
		l.tokens = min(workerLogBurst, l.tokens+dt.Seconds()*workerLogRate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	l.held++
	if l.timer == nil {
		l.timer = time.AfterFunc(workerLogInterval, l.flush)
	}
	return false
}

// flush reports the lines refused and not yet reported, if any (at the end of the output
// too).
func (l *lineLimit) flush() {
	l.mu.Lock()
	n, report := l.held, l.report
	l.held = 0
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.mu.Unlock()
	if n > 0 && report != nil {
		report(n)
	}
}

// startTags are the attributes of the line saying the worker started as runAs.
func (w *worker) startTags(runAs *policy.Account) []any {
	tags := []any{"service", w.svc.Name}
	if w.user != "" {
		tags = append(tags, "user", w.user)
	} else {
		tags = append(tags, "account", runAs.Name)
	}
	return append(tags, "uid", runAs.UID, "pid", w.pid)
}

// logTags are the attributes naming the worker in the log, after those in pre: its service,
// its user (or, for a worker shared by all users, which has none, the account it runs as),
// and pid.
func (w *worker) logTags(pid int, pre ...any) []any {
	tags := append(pre, "service", w.svc.Name)
	if w.user != "" {
		tags = append(tags, "user", w.user)
	} else if w.account != "" {
		tags = append(tags, "account", w.account)
	}
	return append(tags, "pid", pid)
}

// logOutput calls emit for each line read from r, until r ends. A line longer than max bytes
// is cut there, marked with "...", and the rest of it skipped: reading goes on whatever a line
// is, since a child whose output is no longer read blocks at its next write.
func logOutput(r io.Reader, max int, emit func(string)) {
	br := bufio.NewReaderSize(r, 4096)
	var line []byte
	cut := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !cut {
			if room := max - len(line); len(chunk) > room && !(len(chunk) == room+1 && chunk[room] == '\n') {
				line, cut = append(line, chunk[:room]...), true
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // the line goes on
		}
		if len(line) > 0 || err == nil {
			text := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
			if cut {
				text += "..."
			}
			emit(text)
		}
		if err != nil {
			return
		}
		line, cut = line[:0], false
	}
}

// control reads the worker's messages until it exits.
func (w *worker) control() {
	d := w.d
	for {
		m, f, err := w.ch.Recv()
		if f != nil {
			f.Close()
		}
		if err != nil {
			break
		}
		switch m.Type {
		case handoff.TypeAck:
			w.adopted(m.ID)
		case handoff.TypeDone:
			if len(m.Payload) == 1 && m.Payload[0] == handoff.DoneAuthFailed {
				d.connAuthFailed(w, m.ID)
			}
			d.connDone(w, m.ID)
		}
	}
	// The control socket closed: the worker is exiting or crashed.
	w.ch.Close()
	err := w.cmd.Wait()
	d.mu.Lock()
	w.dead = true
	if d.workers[w.key] == w {
		delete(d.workers, w.key)
	}
	var again []*custody
	for id, c := range w.pending {
		delete(w.pending, id)
		delete(w.users, id)
		w.active-- // dispatched again (or, not sent yet, its handoff fails), to a new worker
		if c != nil {
			c.timer.Stop()
			again = append(again, c)
		}
	}
	d.releaseConnsLocked(w)
	if w.idle != nil {
		w.idle.Stop()
	}
	why := w.killedBy
	d.mu.Unlock()
	for _, c := range again {
		go d.redispatch(c)
	}
	close(w.exited)
	d.metrics.WorkerExited()
	d.log.Info("worker exited", append(w.logTags(w.pid), "status", exitStatus(err, why))...)
}

// exitStatus says how a process Wait returned err for ended, for a person: "exited with
// status 2", "killed by signal 9 (SIGKILL)", followed by ": why" when the daemon stopped it
// (why not empty).
func exitStatus(err error, why string) string {
	status := "exited with status 0"
	var ee *exec.ExitError
	switch {
	case err == nil:
	case !errors.As(err, &ee):
		status = err.Error()
	default:
		ws, ok := ee.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() {
			status = "exited with status " + strconv.Itoa(ee.ExitCode())
			break
		}
		status = "killed by signal " + strconv.Itoa(int(ws.Signal()))
		if name := unix.SignalName(ws.Signal()); name != "" {
			status += " (" + name + ")"
		}
	}
	if why != "" {
		status += ": " + why
	}
	return status
}

// handoff sends the connection in custody c to w, as its connection id, registered with it
// by workerFor. It reports whether the custody is taken: sent, and now w's until w adopts it
// or exits (or, when the send failed, already taken by w's exit, which dispatches it again).
// Otherwise the custody is still the caller's, and the error says why it was not sent.
func (w *worker) handoff(id uint64, c *custody) (taken bool, err error) {
	d := w.d
	d.mu.Lock()
	if _, ok := w.pending[id]; !ok {
		d.mu.Unlock()
		return false, errWorkerGone
	}
	w.pending[id] = c
	c.timer = time.AfterFunc(d.ackTimeoutLocked(), func() { w.overdue(id, c) })
	d.mu.Unlock()
	if err := w.ch.Send(&handoff.Message{Type: handoff.TypeConn, ID: id, Payload: c.payload}, c.f); err != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		if w.pending[id] != c {
			return true, nil // the worker's exit took it, to dispatch it again
		}
		c.timer.Stop()
		delete(w.pending, id)
		delete(w.users, id)
		w.active--
		return false, err
	}
	return true, nil
}

// overdue stops a worker that has not adopted connection id, in custody c, in time: its exit
// sends the connection, and every other it had not adopted, to a new worker.
func (w *worker) overdue(id uint64, c *custody) {
	w.d.mu.Lock()
	late := w.pending[id] == c
	w.d.mu.Unlock()
	if late {
		w.d.log.Error("worker did not adopt a connection in time; stopping it", w.logTags(w.pid)...)
		w.kill("it did not adopt a connection in time")
	}
}

// adopted ends the custody of connection id, which the worker acknowledged: the connection
// now counts as the worker's, and the key it was authenticated with among those the
// revocation checks re-check for it.
func (w *worker) adopted(id uint64) {
	d := w.d
	d.mu.Lock()
	c := w.pending[id]
	if c == nil {
		d.mu.Unlock()
		return // not sent to it (or not its): nothing to adopt
	}
	delete(w.pending, id)
	c.timer.Stop()
	w.keysUsed[c.keyFP] = usedKey{key: c.key, client: c.client}
	w.noteUserKeyLocked(c.user, c.keyFP, usedKey{key: c.key, client: c.client})
	c.adm.reserve.done = true // now counted as the worker's connection
	d.mu.Unlock()
	c.ack.Mark(trace.WorkerAck)
	d.tracer.write(c.ack)
	d.metrics.Handoff(c.sent)
	c.end()
}

// connAuthFailed audits a connection its worker dropped because a record from the client
// failed authentication: after an accepted handshake only the authenticated client holds the
// application keys, so this is a tampered stream, or a socket that is not that client's (a
// compromised acceptor's swap). The worker (a user's own program, in per-user mode) says so:
// only a connection it adopted and has not reported done counts, once.
func (d *Daemon) connAuthFailed(w *worker, id uint64) {
	d.mu.Lock()
	user, ok := w.users[id]
	_, inCustody := w.pending[id]
	d.mu.Unlock()
	if !ok || inCustody {
		return // not its connection, not adopted yet, or reported already
	}
	reason := "session dropped by its worker: a record from the client failed authentication (tampered stream, or a socket that is not the authenticated client's)"
	if _, err := d.audit.WriteRefusal(&audit.Refusal{Service: w.svc.Name, User: user, Code: "record_auth_failed", Reason: reason}); err != nil {
		d.log.Error("audit log unwritable", "err", err)
	}
	d.log.Warn("session dropped: a record failed authentication", "service", w.svc.Name, "user", user, "pid", w.pid)
}

// connDone records that one of the worker's connections closed, and schedules its exit when
// it has none left. Only a connection the worker adopted, and has not reported closed
// already, is counted out: one still in custody stays counted against its user until the
// worker adopts it or the custody ends, whatever the worker (its user's process) says, so
// that a worker cannot make room for more of its user's connections in custody than
// max-connections-per-user.
func (d *Daemon) connDone(w *worker, id uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := w.users[id]; !ok {
		return // not its connection, or counted out already
	}
	if _, inCustody := w.pending[id]; inCustody {
		return
	}
	if w.active > 0 {
		w.active--
		d.connsLocked(userService{w.svc.Name, w.connUserLocked(id)}, -1)
	}
	if w.active > 0 || w.retired {
		return
	}
	d.scheduleIdleLocked(w)
}

// scheduleIdleLocked arranges for a worker without connections to exit: a per-connection
// worker at once, a per-user worker after the idle time. Callers hold d.mu.
func (d *Daemon) scheduleIdleLocked(w *worker) {
	if w.perConn {
		w.retireLocked()
		return
	}
	w.idle = time.AfterFunc(w.svc.IdleTimeout, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if w.active == 0 && !w.retired {
			d.log.Info("worker idle; stopping it", w.logTags(w.pid)...)
			w.retireLocked()
		}
	})
}

// retireLocked takes the worker out of service and tells it to exit once its connections end.
// Callers hold d.mu.
func (w *worker) retireLocked() {
	if w.retired {
		return
	}
	w.retired = true
	if w.d.workers[w.key] == w {
		delete(w.d.workers, w.key)
	}
	if w.ch != nil {
		go func() { _ = w.ch.Send(&handoff.Message{Type: handoff.TypeExit}, nil) }()
	}
}

// retireIfIdle retires the worker if it has no connection: one started for a connection
// that was then refused (its audit record could not be written) serves nothing.
func (w *worker) retireIfIdle() {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	if w.active == 0 {
		if w.idle != nil {
			w.idle.Stop()
			w.idle = nil
		}
		w.retireLocked()
	}
}

func (w *worker) retire() {
	w.d.mu.Lock()
	w.retireLocked()
	w.d.mu.Unlock()
}

// stoppingFor records why the daemon stops the worker, for the log with its exit status; the
// first reason stands.
func (w *worker) stoppingFor(why string) {
	w.d.mu.Lock()
	if w.killedBy == "" {
		w.killedBy = why
	}
	w.d.mu.Unlock()
}

// kill stops the worker and everything in its session at once; why is said with its exit
// status in the log.
func (w *worker) kill(why string) {
	w.stoppingFor(why)
	<-w.ready
	if w.cmd == nil || w.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-w.pid, syscall.SIGKILL)
	_ = w.cmd.Process.Kill()
}

// revocationLoop re-checks live sessions periodically.
func (d *Daemon) revocationLoop(ctx context.Context) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		every := d.cfg.RevocationCheck
		closed := d.closed
		d.mu.Unlock()
		if closed {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		d.checkRevocations(ctx)
	}
}

// checkRevocations stops the workers of users who lost their key or their grant for the
// service: their connections close with them, and their tickets are refused at the next
// resumption by the same checks.
func (d *Daemon) checkRevocations(ctx context.Context) {
	type item struct {
		w    *worker
		keys []usedKey
	}
	d.refreshRevoked()
	d.mu.Lock()
	var items []item
	for _, w := range d.workers {
		if w.dead || w.svc.WorkerShared() { // checkSharedRevocations checks those
			continue
		}
		it := item{w: w}
		for _, k := range w.keysUsed {
			it.keys = append(it.keys, k)
		}
		items = append(items, it)
	}
	src := d.keys
	cfg := d.cfg
	cs := d.certs
	d.mu.Unlock()
	d.checkSharedRevocations(ctx, cfg, cs, src)
	var stopping sync.WaitGroup
	for _, it := range items {
		reason := d.revoked(ctx, cfg, cs, src, it.w.svc.Name, it.w.user, it.keys)
		if reason == "" {
			continue
		}
		d.log.Info("access revoked; stopping the worker and its connections", append(it.w.logTags(it.w.pid), "reason", reason)...)
		stopping.Add(1)
		go func() { defer stopping.Done(); it.w.revokeAll() }()
	}
	stopping.Wait()
}

// revokeGrace is how long a worker whose user's access was revoked has, once told to close
// every connection with a close record saying so (the client reads "access revoked", not a
// truncation), before it is killed.
const revokeGrace = 500 * time.Millisecond

// revokeAll stops a worker whose user's access was revoked: it tells the worker to close every
// connection saying why, and to exit, and kills it (and its session) if it has not exited
// within revokeGrace.
func (w *worker) revokeAll() {
	<-w.ready
	w.stoppingFor("access revoked")
	w.d.mu.Lock()
	ch := w.ch
	w.d.mu.Unlock()
	if ch != nil {
		// Before the exit message: a worker that reads that first stops reading its channel.
		_ = ch.Send(&handoff.Message{Type: handoff.TypeRevoke}, nil)
	}
	w.retire()
	select {
	case <-w.exited:
	case <-time.After(revokeGrace):
		w.kill("access revoked")
	}
}

// usedKey is a key a worker's connections were authenticated with, and the address of a
// client that used it: a certificate's source-address is checked against it again (every
// client that used the certificate passed that check, and the address of a connection does
// not change).
type usedKey struct {
	key    ssh.PublicKey
	client string
}

// revoked says why user may no longer use service (empty: still allowed), by the
// authorization every handshake passes for each key the user's connections used: a
// certificate's checks (handshake.CheckCertificate, with the certificate state cs: trusted CA,
// validity, principals, critical options, revocation), then allowed, then the revoked keys.
func (d *Daemon) revoked(ctx context.Context, cfg *policy.Config, cs *certState, src keys.Source, service, user string, used []usedKey) string {
	sc := cfg.Lookup(service)
	if sc == nil {
		return "service removed from the configuration"
	}
	if _, err := d.granted(sc, user); err != nil {
		return refusalReason(err)
	}
	now := time.Now()
	// Live sessions are re-checked every revocation-check: their principals are asked again
	// only once the answer given before is older than the principals TTL.
	ctx = usercert.WithCachedPrincipals(ctx)
	for _, u := range used {
		r := &handshake.Result{KeyHash: identity.KeyHash(u.key), Client: u.client}
		r.User = user
		if _, ok := u.key.(*ssh.Certificate); ok {
			r.SetKey(u.key)
		}
		err := handshake.CheckCertificate(ctx, cs.userCerts, cs.revoked, now, cs.skew, r)
		if err != nil {
			if ref := asRefusal(err); ref.Code != handshake.CodeInternalError && ref.Err != nil {
				return ref.Reason + ": " + ref.Err.Error()
			}
		} else {
			_, err = d.allowed(ctx, sc, src, r)
		}
		if err == nil && cs.revoked.Revoked(u.key) {
			return fmt.Sprintf("key %s is revoked", keys.Fingerprint(u.key))
		}
		if err != nil {
			if r := asRefusal(err); r.Code == handshake.CodeInternalError {
				d.log.Warn("revocation check: key lookup failed", "user", user, "err", err)
				continue
			}
			return refusalReason(err)
		}
	}
	return ""
}

// asRefusal returns err's *handshake.Refusal, or an internal-error one.
func asRefusal(err error) *handshake.Refusal {
	var r *handshake.Refusal
	if !errors.As(err, &r) {
		r = &handshake.Refusal{Code: handshake.CodeInternalError, Err: err}
	}
	return r
}

// refusalReason is the reason a refusal gives, for the log.
func refusalReason(err error) string { return asRefusal(err).Reason }
