// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/logging"
	"ubns.dev/netauth/internal/policy"
)

// Spare workers. Starting a worker costs a fork and an exec of a Go program (milliseconds),
// which a user's first connection would otherwise wait for. For services whose worker is
// netauthd's own built-in worker (Options.Self: whoami, echo, exec, backend), the monitor keeps
// a few (the configuration's spare-workers) started ahead of need: "SELF... -spare", with the
// monitor's credentials, no environment but the control descriptor's number, working directory
// "/", its own session and SIGKILL as its parent-death signal. A spare reads nothing but its
// control channel, on which it waits for one assignment (handoff.Assignment): the user's uid,
// gid and groups, the working directory, the environment and the built-in's arguments, all
// exactly what a fresh start of that worker would have had. It takes the user's credentials
// for good before anything else, checks them and that root cannot be regained, answers
// TypeAssigned, and runs the built-in: from then on it is that worker, on the same control
// channel, and the monitor treats it as a worker started afresh (same pid, channel, limits,
// revocation, idle retirement and log lines). A spare that cannot be assigned (it died, or did
// not answer within spareAssignTimeout) is stopped, and the worker is started afresh. Every
// assignment starts a replacement in the background, a little later (spareRefillDelay).
// Spares are stopped at shutdown, and replaced at every reload (so that a replaced program is
// picked up), never reused across one.

// spareAssignTimeout bounds the wait for a spare's TypeAssigned (a variable for tests).
var spareAssignTimeout = 2 * time.Second

// spareRefillDelay is how long after a spare is taken its replacement starts: starting a
// process takes milliseconds of CPU, which the connection the spare serves should not share.
const spareRefillDelay = 10 * time.Millisecond

// Backoff of the spare pool after a spare fails to start or dies unassigned.
const (
	spareRetryMin = time.Second
	spareRetryMax = time.Minute
)

// spare is a started spare worker.
type spare struct {
	d   *Daemon
	cmd *exec.Cmd
	pid int
	ch  *handoff.Channel
	// owner is the worker the spare became (nil until it is assigned): its output is logged
	// as that worker's.
	owner   atomic.Pointer[worker]
	output  sync.WaitGroup // the goroutines copying its standard output and error to the log
	watched chan struct{}  // closed when watch returns
	taken   bool           // guarded by spares.mu: out of the pool (to be assigned, or stopped)
}

// spares is the pool of ready spare workers.
type spares struct {
	mu       sync.Mutex
	ready    []*spare
	starting int         // spares being started
	gen      uint64      // incremented at each reload: spares started before are not kept
	failures int         // consecutive failures (a spare not started, or dead unassigned)
	retry    *time.Timer // a refill scheduled after failures
	closed   bool        // shut down: no more spares
	noted    bool        // the lack of CAP_SYS_RESOURCE was logged
}

// builtinArgs returns the arguments a spare is assigned to run the worker command path args:
// what follows self (Options.Self) in it. ok is false when the command is not self's.
func builtinArgs(self []string, path string, args []string) (rest []string, ok bool) {
	if len(self) == 0 || path != self[0] || len(args) < len(self) || !slices.Equal(args[:len(self)-1], self[1:]) {
		return nil, false
	}
	rest = args[len(self)-1:]
	if rest[0] == handoff.SpareArg {
		return nil, false
	}
	return rest, true
}

// spareTargetLocked returns how many spares the pool should hold: the configuration's
// spare-workers when one of its services runs the built-in worker, else none. Callers hold
// d.mu.
func (d *Daemon) spareTargetLocked() int {
	if d.closed || d.cfg.SpareWorkers <= 0 || len(d.opts.Self) == 0 {
		return 0
	}
	for _, sc := range d.cfg.Services {
		if path, args, err := d.workerCommand(sc); err == nil {
			if _, ok := builtinArgs(d.opts.Self, path, args); ok {
				return d.cfg.SpareWorkers
			}
		}
	}
	return 0
}

// fillSpares starts spares until the pool holds as many as it should (spareTargetLocked).
// After a failure it stops and tries again later, waiting longer after each failure in a row.
func (d *Daemon) fillSpares() {
	p := &d.spares
	for {
		d.mu.Lock()
		want := d.spareTargetLocked()
		self := slices.Clone(d.opts.Self)
		d.mu.Unlock()
		p.mu.Lock()
		if p.closed || p.retry != nil || len(p.ready)+p.starting >= want {
			p.mu.Unlock()
			return
		}
		p.starting++
		gen := p.gen
		p.mu.Unlock()
		sp, err := d.startSpare(self)
		p.mu.Lock()
		p.starting--
		if err != nil {
			p.mu.Unlock()
			d.spareFailed("a spare worker could not be started", "err", err)
			return
		}
		if p.closed || gen != p.gen {
			sp.taken = true
			p.mu.Unlock()
			sp.stop()
			continue
		}
		p.ready = append(p.ready, sp)
		note := !p.noted && !canSetProcessText()
		p.noted = true
		p.mu.Unlock()
		d.log.Debug("spare worker started", "pid", sp.pid)
		if note {
			d.log.Info("without CAP_SYS_RESOURCE, the workers spares become show the spare's command line and environment in /proc (their programs have their own all the same)")
		}
	}
}

// spareFailed logs a spare's failure and schedules the next refill, later after each failure
// in a row.
func (d *Daemon) spareFailed(msg string, args ...any) {
	p := &d.spares
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures++
	delay := spareRetryMax
	if p.failures < 8 {
		delay = min(spareRetryMax, spareRetryMin<<(p.failures-1))
	}
	d.log.Warn(msg, append(args, "retry_in", delay.String())...)
	if p.closed || p.retry != nil {
		return
	}
	p.retry = time.AfterFunc(delay, func() {
		p.mu.Lock()
		p.retry = nil
		p.mu.Unlock()
		d.fillSpares()
	})
}

// startSpare starts a spare worker running self (Options.Self) with handoff.SpareArg.
func (d *Daemon) startSpare(self []string) (*spare, error) {
	ch, wf, err := handoff.Pair()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self[0], append(slices.Clone(self[1:]), handoff.SpareArg)...)
	cmd.Env = []string{handoff.Env + "=3"}
	cmd.ExtraFiles = []*os.File{wf}
	if d.tracer != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, d.tracer.pw) // descriptor 4, as a worker's
	}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		wf.Close()
		ch.Close()
		return nil, fmt.Errorf("starting %s: %w", self[0], err)
	}
	wf.Close()
	sp := &spare{d: d, cmd: cmd, pid: cmd.Process.Pid, ch: ch, watched: make(chan struct{})}
	for _, r := range []io.Reader{stdout, stderr} {
		sp.output.Add(1)
		go sp.logOutput(r)
	}
	go sp.watch()
	return sp, nil
}

// logOutput copies the spare's output to the daemon's log, as the output of the worker it
// became once it is assigned.
func (sp *spare) logOutput(r io.Reader) {
	defer sp.output.Done()
	logOutput(r, maxWorkerLogLine, func(line string) {
		if w := sp.owner.Load(); w != nil {
			w.logLine(sp.pid, line)
			return
		}
		rec, ok := logging.ParseLine(line)
		sp.d.emitLine(line, rec, ok, "worker", "source", "spare", "pid", sp.pid)
	})
	if w := sp.owner.Load(); w != nil {
		w.logLimit.flush()
	}
}

// watch waits on a spare's control channel while it is in the pool: a spare sends nothing
// before it is assigned, so anything it receives (most often the end of the channel: the spare
// died) takes the spare out of the pool. takeSpare and stopSpares interrupt it with a read
// deadline in the past.
func (sp *spare) watch() {
	defer close(sp.watched)
	p := &sp.d.spares
	var err error
	for {
		var m *handoff.Message
		var f *os.File
		m, f, err = sp.ch.Recv()
		if f != nil {
			f.Close()
		}
		if err == nil {
			err = fmt.Errorf("an unassigned spare sent a %v message", m.Type)
		}
		p.mu.Lock()
		taken := sp.taken
		if !taken && !errors.Is(err, os.ErrDeadlineExceeded) {
			sp.taken = true
			p.ready = slices.DeleteFunc(p.ready, func(s *spare) bool { return s == sp })
		}
		p.mu.Unlock()
		if taken {
			return // whoever took it owns it now
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
	}
	status := sp.reap()
	sp.d.spareFailed("spare worker exited before it was assigned", "pid", sp.pid, "status", status, "err", err)
}

// takeSpare takes a ready spare out of the pool (nil if there is none), and starts a
// replacement in the background, spareRefillDelay later.
func (d *Daemon) takeSpare() *spare {
	p := &d.spares
	p.mu.Lock()
	var sp *spare
	if n := len(p.ready); n > 0 {
		sp, p.ready = p.ready[0], p.ready[1:]
		sp.taken = true
	}
	p.mu.Unlock()
	time.AfterFunc(spareRefillDelay, d.fillSpares)
	if sp == nil {
		return nil
	}
	sp.unwatch()
	return sp
}

// unwatch stops watch (the spare is taken) and leaves the channel without a deadline.
func (sp *spare) unwatch() {
	_ = sp.ch.SetReadDeadline(time.Unix(1, 0))
	<-sp.watched
	_ = sp.ch.SetReadDeadline(time.Time{})
}

// stop kills a spare taken out of the pool and reaps it.
func (sp *spare) stop() {
	sp.unwatch()
	sp.reap()
}

// reap kills the spare (its whole session), closes its channel, waits for its output to be
// logged (a little while at most) and for its exit, and returns its exit status.
func (sp *spare) reap() string {
	_ = syscall.Kill(-sp.pid, syscall.SIGKILL)
	_ = sp.cmd.Process.Kill()
	sp.ch.Close()
	logged := make(chan struct{})
	go func() { sp.output.Wait(); close(logged) }()
	select {
	case <-logged:
	case <-time.After(time.Second):
	}
	return exitStatus(sp.cmd.Wait(), "")
}

// assign makes spare sp the worker w, running as runAs the built-in worker with arguments
// args, in directory dir with environment env: it sends the assignment and waits for the
// spare to take it. On failure it stops the spare in the background.
func (w *worker) assign(sp *spare, runAs *policy.Account, args, env []string, dir string) error {
	a := &handoff.Assignment{SetCredentials: isRoot(), UID: runAs.UID, GID: runAs.GID, Groups: runAs.Groups,
		Dir: dir, Env: env, Args: args}
	sp.owner.Store(w)
	err := func() error {
		payload, err := a.Marshal()
		if err != nil {
			return err
		}
		if err := sp.ch.Send(&handoff.Message{Type: handoff.TypeAssign, Payload: payload}, nil); err != nil {
			return err
		}
		if err := sp.ch.SetReadDeadline(time.Now().Add(spareAssignTimeout)); err != nil {
			return err
		}
		m, f, err := sp.ch.Recv()
		if f != nil {
			f.Close()
		}
		if err != nil {
			return err
		}
		if m.Type != handoff.TypeAssigned {
			return fmt.Errorf("the spare answered its assignment with a %v message", m.Type)
		}
		return sp.ch.SetReadDeadline(time.Time{})
	}()
	if err != nil {
		sp.owner.Store(nil) // it never became w: its last lines are the spare's
		go func() {
			status := sp.reap()
			w.d.log.Info("spare worker stopped", "pid", sp.pid, "status", status)
		}()
		return fmt.Errorf("spare worker %d: %w", sp.pid, err)
	}
	p := &w.d.spares
	p.mu.Lock()
	p.failures = 0
	p.mu.Unlock()
	return nil
}

// renewSpares replaces the pool's spares with new ones (at a reload).
func (d *Daemon) renewSpares() {
	p := &d.spares
	p.mu.Lock()
	p.gen++
	old := p.ready
	p.ready = nil
	for _, sp := range old {
		sp.taken = true
	}
	if p.retry != nil {
		p.retry.Stop()
		p.retry = nil
	}
	p.failures = 0
	p.mu.Unlock()
	go func() {
		for _, sp := range old {
			sp.stop()
		}
		d.fillSpares()
	}()
}

// stopSpares stops every spare in the pool, and starts none afterwards (at shutdown).
func (d *Daemon) stopSpares() {
	p := &d.spares
	p.mu.Lock()
	p.closed = true
	old := p.ready
	p.ready = nil
	for _, sp := range old {
		sp.taken = true
	}
	if p.retry != nil {
		p.retry.Stop()
		p.retry = nil
	}
	p.mu.Unlock()
	for _, sp := range old {
		sp.stop()
	}
}

// canSetProcessText reports whether a spare this process starts may set the command line and
// environment /proc shows of it (prctl PR_SET_MM, which needs CAP_SYS_RESOURCE): the spare
// runs as root with this process's bounding set, and has every capability in it.
func canSetProcessText() bool {
	if !isRoot() {
		return false
	}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}

// workerDir is the working directory of a worker running as a: its home directory, or "/"
// when that is not a directory.
func workerDir(a *policy.Account) string {
	if fi, err := os.Stat(a.Home); err == nil && fi.IsDir() {
		return a.Home
	}
	return "/"
}
