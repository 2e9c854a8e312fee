// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/trace"
)

// TestTraceSteps: with Options.Trace (netauthd -trace), every accepted connection, first,
// full and resumed, has every step in the trace file, from the acceptor, the monitor and the
// worker, keyed by its handshake hash, with times that follow the connection's way through
// the processes (one monotonic clock for all).
func TestTraceSteps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace")
	tb := newTestbedOpts(t, strings.Replace(whoamiService, "args whoami", "args echo", 1), testbedOpts{trace: path})
	full := tb.config("netauth-alice")
	full.DisableResumption = true
	resumed := tb.config("netauth-alice")
	echo := func(cfg *netauth.Config) {
		t.Helper()
		c, err := netauth.Dial("tcp", tb.addr("whoami"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "ping\n"); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("echo: %q, %v", line, err)
		}
	}
	echo(full)    // the first: a new worker
	echo(resumed) // a full handshake, for a ticket
	for range 3 {
		echo(full)
		echo(resumed)
	}
	// The acceptor writes its line once the monitor answered, which may be after the client
	// got its echo: wait for every line before shutting down.
	var conns []*trace.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if conns, err = trace.Join(strings.NewReader(string(data))); err != nil {
			t.Fatal(err)
		}
		complete := 0
		for _, c := range conns {
			if c.Complete() {
				complete++
			}
		}
		if complete == 8 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.d.Shutdown(2 * time.Second)
	kinds := map[string]int{}
	for _, c := range conns {
		if !c.Complete() {
			t.Errorf("connection %s (%s) lacks steps: %v", c.Key, c.Kind, c.Steps)
			continue
		}
		if _, ok := c.Steps[trace.FirstData]; !ok {
			t.Errorf("connection %s: no first data", c.Key)
		}
		kinds[c.Kind]++
		// Each step causes the next, across processes: the acceptor's message 1 before the
		// monitor's Begin, ..., the monitor's handoff before the worker receives it; from the
		// handoff on, the worker's steps and the monitor's answer to the acceptor go on
		// side by side. The clock's readings agree within microseconds; allow 50.
		for _, order := range [][]trace.Step{
			{trace.Accept, trace.Msg1, trace.BeginRecv, trace.BeginDone, trace.BeginReply, trace.Msg2Sent,
				trace.Msg3, trace.CommitRecv, trace.Decided, trace.WorkerReady, trace.Audited, trace.Sealed,
				trace.Handoff, trace.Received, trace.VerdictSent, trace.WorkerAck},
			{trace.Handoff, trace.CommitDone, trace.CommitReply},
		} {
			for i := 1; i < len(order); i++ {
				if a, b := c.Steps[order[i-1]], c.Steps[order[i]]; b < a-50000 {
					t.Errorf("connection %s: %s at %d, before %s at %d", c.Key, order[i], b, order[i-1], a)
				}
			}
		}
		if c.Steps[trace.FirstData] < c.Steps[trace.VerdictSent]-50000 {
			t.Errorf("connection %s: first data before the Verdict", c.Key)
		}
	}
	if kinds["full"] != 5 || kinds["resumed"] != 3 {
		t.Errorf("complete connections: %v; want 5 full, 3 resumed", kinds)
	}
}

// TestTraceCopiesOnlyTraceLines: what the acceptor and the workers write to the trace pipe
// reaches the trace file only as well-formed trace lines, in the monitor's formatting: a
// worker (the user's code) or a compromised acceptor cannot write anything else there.
func TestTraceCopiesOnlyTraceLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace")
	tr, err := openTracer(path)
	if err != nil {
		t.Fatal(err)
	}
	good := "0011223344556677 worker resumed received=10 verdict_sent=20"
	for _, s := range []string{
		"garbage\n",
		strings.Repeat("x", 100000) + "\n",
		"0011223344556677 worker resumed received=10   verdict_sent=20\n",
		"0011223344556677 worker resumed received=10 accept=5\n",
		"0011223344556677 worker resumed received=10\x1b[2J\n",
		"no newline at the end",
	} {
		if _, err := tr.pw.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	// No wait: close copies what is still in the pipe before it ends the file.
	tr.close(slog.New(slog.DiscardHandler))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(data); got != good+"\n" {
		t.Fatalf("trace file: %q; want only %q", got, good+"\n")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("trace file mode %v; want 0600", fi.Mode().Perm())
	}
}
