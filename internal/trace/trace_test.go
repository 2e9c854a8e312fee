// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/sys/unix"
)

// TestNowIsTheHostsMonotonicClock: Now reads CLOCK_MONOTONIC (what makes the times of
// different processes comparable) to within a few microseconds.
func TestNowIsTheHostsMonotonicClock(t *testing.T) {
	best := int64(-1)
	for range 20 {
		a := Now()
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		b := Now()
		if m := ts.Nano(); m < a-5000 || m > b+5000 {
			t.Fatalf("CLOCK_MONOTONIC %d outside [%d, %d] (± 5 µs)", m, a, b)
		}
		if best < 0 || b-a < best {
			best = b - a
		}
	}
	if a, b := Now(), Now(); b < a {
		t.Fatalf("Now went back: %d then %d", a, b)
	}
}

// TestOffIsFree: with tracing off every step is a nil record's method: no allocation, no
// clock read (BenchmarkOff gives its time).
func TestOffIsFree(t *testing.T) {
	var r *Record
	var w *Writer
	h := make([]byte, 32)
	allocs := testing.AllocsPerRun(1000, func() { offPath(r, w, h) })
	if allocs != 0 {
		t.Fatalf("a connection's trace steps with tracing off allocate %v times; want 0", allocs)
	}
}

// offPath is what a connection does with its trace when tracing is off.
func offPath(r *Record, w *Writer, hash []byte) {
	r.Mark(Accept)
	r.Mark(Msg1)
	r.SetKey(hash)
	r.SetKind(true)
	r.MarkAt(CommitRecv, 0)
	if r.Has(BeginReply) {
		panic("nil record has a step")
	}
	r.Write(w, Acceptor)
	w.Line(nil)
}

// BenchmarkOff is the cost of a connection's trace steps with tracing off.
func BenchmarkOff(b *testing.B) {
	var r *Record
	var w *Writer
	h := make([]byte, 32)
	for b.Loop() {
		offPath(r, w, h)
	}
}

// BenchmarkOn is the cost of one process's record of a connection with tracing on: eight
// steps and the line queued.
func BenchmarkOn(b *testing.B) {
	var out bytes.Buffer
	w := NewWriter(&out)
	defer w.Close()
	h := make([]byte, 32)
	for b.Loop() {
		r := &Record{}
		for s := Step(0); s < 8; s++ {
			r.Mark(s)
		}
		r.SetKey(h)
		r.Write(w, Acceptor)
	}
}

// TestRecordLine: a record's line parses back to its steps; lines that are not exactly
// trace lines are refused.
func TestRecordLine(t *testing.T) {
	var out testutil.SyncBuffer
	w := NewWriter(&out)
	r := &Record{}
	r.Mark(Accept)
	r.MarkAt(Msg1, 42)
	r.SetKind(true)
	r.Write(w, Acceptor) // no key yet: nothing written
	r.SetKey([]byte("0123456789abcdef0123456789abcdef"))
	r.Write(w, Acceptor)
	w.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("wrote %q; want one line", out.String())
	}
	l, err := ParseLine(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	if l.Key != "3031323334353637" || l.Proc != Acceptor || l.Kind != "resumed" || len(l.Steps) != 2 ||
		l.Steps[0].Step != Accept || l.Steps[1] != (StepTime{Msg1, 42}) {
		t.Fatalf("parsed %+v", l)
	}
	if got := string(l.Format()); got != lines[0]+"\n" {
		t.Fatalf("Format = %q; want %q", got, lines[0])
	}

	for _, bad := range []string{
		"",
		"3031323334353637 acceptor resumed",
		"303132333435363 acceptor resumed accept=1",
		"3031323334353637 shell resumed accept=1",
		"3031323334353637 acceptor maybe accept=1",
		"3031323334353637 acceptor full accept=-1",
		"3031323334353637 acceptor full accept=x",
		"3031323334353637 acceptor full accept",
		"3031323334353637 acceptor full rm=1",
		"3031323334353637 worker full accept=1", // a worker cannot speak for the acceptor
		"3031323334353637 acceptor full accept=1 " + strings.Repeat("msg1=1 ", 20),
		"3031323334353637 acceptor full accept=1" + strings.Repeat(" ", MaxLineLen),
	} {
		if l, err := ParseLine(bad); err == nil {
			t.Errorf("ParseLine(%q) = %+v; want it refused", bad, l)
		}
	}
}

// TestWriterBounded: a Writer whose output does not keep up keeps at most QueueLen lines
// and drops the rest, without blocking its callers.
func TestWriterBounded(t *testing.T) {
	block := make(chan struct{})
	w := NewWriter(writerFunc(func(p []byte) (int, error) { <-block; return len(p), nil }))
	done := make(chan struct{})
	go func() {
		for range 3 * QueueLen {
			w.Line([]byte("x\n"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Line blocked on a stuck output")
	}
	if d := w.Dropped(); d < int64(QueueLen) || d > 2*int64(QueueLen) {
		t.Errorf("dropped %d of %d lines; want between %d and %d", d, 3*QueueLen, QueueLen, 2*QueueLen)
	}
	close(block)
	w.Close()
}

// TestTable: Join merges the lines of the three processes by key, and Table gives each
// step's median, in order of time, over complete connections of the kind asked for.
func TestTable(t *testing.T) {
	var b strings.Builder
	for i, key := range []string{"0000000000000001", "0000000000000002", "0000000000000003"} {
		base := int64(1000000 * (i + 1))
		step := func(proc string, steps ...Step) {
			l := &Line{Key: key, Proc: proc, Kind: "resumed"}
			for _, s := range steps {
				l.Steps = append(l.Steps, StepTime{s, base + int64(s)*1000*int64(i+1)})
			}
			b.Write(l.Format())
		}
		step(Acceptor, Accept, Msg1, BeginReply, Msg2Sent, Msg3, CommitReply)
		step(Monitor, BeginRecv, BeginDone)
		step(Monitor, CommitRecv, Decided, WorkerReady, Audited, Sealed, Handoff, WorkerAck, CommitDone)
		if i != 2 { // the third has no worker line: incomplete
			step(Worker, Received, VerdictSent, FirstData)
		}
	}
	b.WriteString("garbage line\n")
	conns, err := Join(strings.NewReader(b.String()))
	if err != nil || len(conns) != 3 {
		t.Fatalf("Join: %d connections, %v", len(conns), err)
	}
	rows := Table(conns, "resumed")
	if len(rows) != int(numSteps) {
		t.Fatalf("%d rows; want %d", len(rows), numSteps)
	}
	for i, r := range rows {
		// Step k is k µs (first connection) and 2k µs (second) after accept: the median of
		// two is the upper one.
		if r.Step != Step(i) || r.N != 2 || r.SinceAccept != float64(2*int(r.Step)) {
			t.Errorf("row %d: %+v", i, r)
		}
		if i > 0 && r.SinceAbove != 2 {
			t.Errorf("row %d since the row above: %v µs; want 2", i, r.SinceAbove)
		}
	}
	if len(Table(conns, "full")) != 0 {
		t.Error("rows for full connections, of which there are none")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestFromEnv: a worker finds its trace descriptor in Env, takes it out of the environment
// and marks it close-on-exec, so that programs it starts get neither; without Env, nothing.
func TestFromEnv(t *testing.T) {
	os.Unsetenv(Env)
	if w := FromEnv(); w != nil {
		t.Fatal("a Writer without Env")
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close() // the Writer's file shares the descriptor and never closes it
	fd := pw.Fd()
	t.Setenv(Env, strconv.Itoa(int(fd)))
	w := FromEnv()
	if w == nil {
		t.Fatal("no Writer with Env set")
	}
	if _, ok := os.LookupEnv(Env); ok {
		t.Error("Env still set")
	}
	flags, err := unix.FcntlInt(fd, unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("descriptor flags %#x, %v; want close-on-exec", flags, err)
	}
	w.Line([]byte("x\n"))
	w.Close()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(pr, buf); err != nil || string(buf) != "x\n" {
		t.Errorf("read %q, %v", buf, err)
	}
}
