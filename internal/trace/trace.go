// SPDX-License-Identifier: Apache-2.0

// Package trace records when each step of a connection's way through netauthd happens, in
// the acceptor, the monitor and the worker (netauthd -trace FILE). Each process writes lines
// of its own, keyed by the start of the connection's handshake hash, with times from the
// host's monotonic clock (CLOCK_MONOTONIC, the same in every process); Table joins them into
// a per-step table.
//
// Tracing is off unless netauthd is started with -trace: then every step is a nil check.
// When on, it is bounded: a Record is a fixed array, lines go through a queue of
// QueueLen lines that drops what does not fit, and netauthd copies at most MaxFileSize
// bytes to the file.
package trace

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Env names the environment variable that gives a worker the descriptor to write its
// trace lines to (set by netauthd only when tracing).
const Env = "NETAUTH_TRACE_FD"

// Bounds.
const (
	QueueLen    = 4096      // lines waiting to be written, per process
	MaxLineLen  = 512       // bytes in a line; a longer one is not a trace line
	MaxFileSize = 256 << 20 // bytes netauthd writes to a trace file
	maxSteps    = 16        // steps in one Record
	keyLen      = 8         // bytes of the handshake hash that name a connection
)

// The processes.
const (
	Acceptor = "acceptor"
	Monitor  = "monitor"
	Worker   = "worker"
)

// Step names a step. Steps are listed in the order a connection goes through them.
type Step uint8

// The steps, in order. A: in the acceptor, M: in the monitor, W: in the worker.
const (
	Accept      Step = iota // A: connection accepted
	Msg1                    // A: message 1 read and parsed (Begin asked)
	BeginRecv               // M: Begin received
	BeginDone               // M: message 2 made (for a resumption: the ticket opened, the key looked up)
	BeginReply              // A: the monitor's answer received
	Msg2Sent                // A: message 2 written to the socket
	Msg3                    // A: message 3 read and parsed (Commit asked, with the connection)
	CommitRecv              // M: Commit received
	Decided                 // M: the proof verified and the client authorized (key and grant checked again)
	WorkerReady             // M: a worker ready (started, for a first connection), not yet handed anything
	Audited                 // M: the audit record written (naming the worker)
	Sealed                  // M: the Verdict sealed
	Handoff                 // M: the connection being sent to the worker
	Received                // W: the connection received
	VerdictSent             // W: the Verdict written to the socket
	WorkerAck               // M: the worker's acknowledgement received
	CommitDone              // M: answering the acceptor
	CommitReply             // A: the monitor's answer received
	FirstData               // W: the first application data read
	numSteps
)

var stepNames = [numSteps]string{"accept", "msg1", "begin_recv", "begin_done", "begin_reply", "msg2_sent",
	"msg3", "commit_recv", "decided", "worker_ready", "audited", "sealed", "handoff", "received",
	"verdict_sent", "worker_ack", "commit_done", "commit_reply", "first_data"}

var stepProcs = [numSteps]string{Acceptor, Acceptor, Monitor, Monitor, Acceptor, Acceptor, Acceptor,
	Monitor, Monitor, Monitor, Monitor, Monitor, Monitor, Worker, Worker, Monitor, Monitor,
	Acceptor, Worker}

func (s Step) String() string {
	if s < numSteps {
		return stepNames[s]
	}
	return "step" + strconv.Itoa(int(s))
}

// Process returns the process the step happens in.
func (s Step) Process() string {
	if s < numSteps {
		return stepProcs[s]
	}
	return ""
}

func stepByName(name string) (Step, bool) {
	i := slices.Index(stepNames[:], name)
	return Step(i), i >= 0
}

var (
	offsetOnce sync.Once
	offset     time.Duration // CLOCK_MONOTONIC at base
	base       = time.Now()
)

// Now returns the host's monotonic clock (CLOCK_MONOTONIC), in nanoseconds: comparable
// between processes. It reads it through Go's monotonic clock (no system call) from an
// offset measured once.
func Now() int64 {
	offsetOnce.Do(measureOffset)
	return int64(offset + time.Since(base))
}

// measureOffset finds CLOCK_MONOTONIC at base, from the tightest of a few readings.
func measureOffset() {
	best := time.Duration(-1)
	for range 8 {
		t1 := time.Since(base)
		var ts unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
			continue
		}
		t2 := time.Since(base)
		if best < 0 || t2-t1 < best {
			best = t2 - t1
			offset = time.Duration(ts.Nano()) - (t1+t2)/2
		}
	}
}

// Record is one process's steps of one connection. A nil *Record records nothing: each
// step is a nil check when tracing is off.
type Record struct {
	key   [keyLen]byte
	keyed bool
	kind  string // "full", "resumed" or "" (unknown)
	n     int
	steps [maxSteps]struct {
		step Step
		t    int64
	}
}

// Mark records that step happened now.
func (r *Record) Mark(s Step) {
	if r == nil || r.n == maxSteps {
		return
	}
	r.steps[r.n].step, r.steps[r.n].t = s, Now()
	r.n++
}

// MarkAt records that step happened at t (from Now).
func (r *Record) MarkAt(s Step, t int64) {
	if r == nil || r.n == maxSteps {
		return
	}
	r.steps[r.n].step, r.steps[r.n].t = s, t
	r.n++
}

// Has reports whether step s was recorded.
func (r *Record) Has(s Step) bool {
	if r == nil {
		return false
	}
	for _, st := range r.steps[:r.n] {
		if st.step == s {
			return true
		}
	}
	return false
}

// SetKey names the connection by its handshake hash.
func (r *Record) SetKey(handshakeHash []byte) {
	if r == nil || len(handshakeHash) < keyLen {
		return
	}
	copy(r.key[:], handshakeHash)
	r.keyed = true
}

// SetKind records whether the handshake is a resumption.
func (r *Record) SetKind(resumed bool) {
	if r == nil {
		return
	}
	r.kind = "full"
	if resumed {
		r.kind = "resumed"
	}
}

// Write queues the record's line on w, if it has a key and a step.
func (r *Record) Write(w *Writer, proc string) {
	if r == nil || w == nil || !r.keyed || r.n == 0 {
		return
	}
	kind := r.kind
	if kind == "" {
		kind = "-"
	}
	b := make([]byte, 0, 64+24*r.n)
	b = hex.AppendEncode(b, r.key[:])
	b = append(b, ' ')
	b = append(b, proc...)
	b = append(b, ' ')
	b = append(b, kind...)
	for _, s := range r.steps[:r.n] {
		b = append(b, ' ')
		b = append(b, s.step.String()...)
		b = append(b, '=')
		b = strconv.AppendInt(b, s.t, 10)
	}
	b = append(b, '\n')
	w.Line(b)
}

// Writer writes lines to an output without ever making its callers wait: a line goes into
// a queue of QueueLen lines, written out by a goroutine of its own, and is dropped if the
// queue is full. Each line is one write, so lines from several processes on one pipe do
// not interleave.
type Writer struct {
	ch      chan []byte
	dropped atomic.Int64
	done    chan struct{}
}

// NewWriter starts writing lines to out. Tracing starts the clock here (Now's offset is
// measured once, before a sandbox may forbid the system call).
func NewWriter(out io.Writer) *Writer {
	Now()
	w := &Writer{ch: make(chan []byte, QueueLen), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for b := range w.ch {
			if _, err := out.Write(b); err != nil {
				w.dropped.Add(1)
			}
		}
	}()
	return w
}

// FromEnv returns a Writer to the descriptor Env names (marked close-on-exec, and Env
// removed from the environment, so that programs this one starts get neither), or nil when
// Env is not set (tracing is off).
func FromEnv() *Writer {
	v, ok := os.LookupEnv(Env)
	if !ok {
		return nil
	}
	os.Unsetenv(Env)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	syscall.CloseOnExec(fd)
	return NewWriter(os.NewFile(uintptr(fd), "netauth-trace"))
}

// Line queues a line (ending in '\n'), or drops it if the queue is full.
func (w *Writer) Line(b []byte) {
	if w == nil {
		return
	}
	select {
	case w.ch <- b:
	default:
		w.dropped.Add(1)
	}
}

// Dropped returns how many lines were dropped.
func (w *Writer) Dropped() int64 { return w.dropped.Load() }

// Close writes the lines queued and stops.
func (w *Writer) Close() {
	if w == nil {
		return
	}
	close(w.ch)
	<-w.done
}

// Line is a parsed trace line.
type Line struct {
	Key   string // hex
	Proc  string
	Kind  string // "full", "resumed" or "-"
	Steps []StepTime
}

// StepTime is a step and when it happened.
type StepTime struct {
	Step Step
	T    int64
}

// ParseLine parses a trace line (without its newline), checking everything: a line of
// another process (a worker runs the user's code) is not trusted to be well formed.
func ParseLine(s string) (*Line, error) {
	if len(s) > MaxLineLen {
		return nil, fmt.Errorf("trace line of %d bytes", len(s))
	}
	f := strings.Fields(s)
	if len(f) < 4 || len(f) > 3+maxSteps {
		return nil, fmt.Errorf("trace line with %d fields", len(f))
	}
	if k, err := hex.DecodeString(f[0]); err != nil || len(k) != keyLen {
		return nil, fmt.Errorf("trace line key %q", f[0])
	}
	l := &Line{Key: f[0], Proc: f[1], Kind: f[2]}
	switch l.Proc {
	case Acceptor, Monitor, Worker:
	default:
		return nil, fmt.Errorf("trace line process %q", f[1])
	}
	switch l.Kind {
	case "full", "resumed", "-":
	default:
		return nil, fmt.Errorf("trace line kind %q", f[2])
	}
	for _, kv := range f[3:] {
		name, v, ok := strings.Cut(kv, "=")
		step, known := stepByName(name)
		t, err := strconv.ParseInt(v, 10, 64)
		if !ok || !known || err != nil || t < 0 || step.Process() != l.Proc {
			return nil, fmt.Errorf("trace line step %q", kv)
		}
		l.Steps = append(l.Steps, StepTime{step, t})
	}
	return l, nil
}

// Format returns the line as a Record writes it (with its newline).
func (l *Line) Format() []byte {
	b := make([]byte, 0, 64+24*len(l.Steps))
	b = append(b, l.Key...)
	b = append(b, ' ')
	b = append(b, l.Proc...)
	b = append(b, ' ')
	b = append(b, l.Kind...)
	for _, s := range l.Steps {
		b = append(b, ' ')
		b = append(b, s.Step.String()...)
		b = append(b, '=')
		b = strconv.AppendInt(b, s.T, 10)
	}
	return append(b, '\n')
}

// Conn is one connection's steps, from every process's lines.
type Conn struct {
	Key   string
	Kind  string
	Steps map[Step]int64
}

// Join reads trace lines and returns the connections they describe, in the order of their
// first line. Lines that do not parse are skipped.
func Join(r io.Reader) ([]*Conn, error) {
	byKey := map[string]*Conn{}
	var order []*Conn
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineLen+1)
	for sc.Scan() {
		l, err := ParseLine(sc.Text())
		if err != nil {
			continue
		}
		c := byKey[l.Key]
		if c == nil {
			c = &Conn{Key: l.Key, Kind: "-", Steps: map[Step]int64{}}
			byKey[l.Key] = c
			order = append(order, c)
		}
		if l.Kind != "-" {
			c.Kind = l.Kind
		}
		for _, s := range l.Steps {
			c.Steps[s.Step] = s.T
		}
	}
	return order, sc.Err()
}

// Complete reports whether c has every step of an accepted connection (FirstData only if
// the client sent data).
func (c *Conn) Complete() bool {
	for s := Step(0); s < numSteps; s++ {
		if _, ok := c.Steps[s]; !ok && s != FirstData {
			return false
		}
	}
	return true
}

// TableRow is one step of a Table: the median time from the connection's accept to the
// step, and from the step of the row before, in microseconds, over N connections.
type TableRow struct {
	Step                    Step
	SinceAccept, SinceAbove float64
	N                       int
}

// Table returns, for the complete connections of kind ("full" or "resumed"), the median
// time of each step since accept and since the step of the row before, in the order of the
// medians since accept (the processes work concurrently: a worker may read the first data
// before the acceptor hears that the monitor is done).
func Table(conns []*Conn, kind string) []TableRow {
	var cs []*Conn
	for _, c := range conns {
		if c.Kind == kind && c.Complete() {
			cs = append(cs, c)
		}
	}
	var rows []TableRow
	for s := Step(0); s < numSteps; s++ {
		var since []int64
		for _, c := range cs {
			if t, ok := c.Steps[s]; ok {
				since = append(since, t-c.Steps[Accept])
			}
		}
		if len(since) > 0 {
			rows = append(rows, TableRow{Step: s, SinceAccept: medianUS(since), N: len(since)})
		}
	}
	slices.SortStableFunc(rows, func(a, b TableRow) int {
		switch {
		case a.SinceAccept < b.SinceAccept:
			return -1
		case a.SinceAccept > b.SinceAccept:
			return 1
		}
		return int(a.Step) - int(b.Step)
	})
	for i := 1; i < len(rows); i++ {
		var d []int64
		for _, c := range cs {
			t, ok1 := c.Steps[rows[i].Step]
			p, ok2 := c.Steps[rows[i-1].Step]
			if ok1 && ok2 {
				d = append(d, t-p)
			}
		}
		if len(d) > 0 {
			rows[i].SinceAbove = medianUS(d)
		}
	}
	return rows
}

func medianUS(v []int64) float64 {
	slices.Sort(v)
	return float64(v[len(v)/2]) / 1e3
}

// WriteTable writes the tables of the full and resumed connections in conns as Markdown.
func WriteTable(w io.Writer, conns []*Conn) {
	for _, kind := range []string{"resumed", "full"} {
		rows := Table(conns, kind)
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s connections (%d complete), medians in µs:\n\n", kind, rows[0].N)
		fmt.Fprintln(w, "| step | process | since accept | since the row above |")
		fmt.Fprintln(w, "|---|---|---:|---:|")
		for _, r := range rows {
			fmt.Fprintf(w, "| %s | %s | %.1f | %.1f |\n", r.Step, r.Step.Process(), r.SinceAccept, r.SinceAbove)
		}
		fmt.Fprintln(w)
	}
}
