// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// logLines collects a daemon's log, a line a record.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// with returns the lines that contain want.
func (l *logLines) with(want string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.Contains(line, want) {
			out = append(out, line)
		}
	}
	return out
}

// TestGarbageFloodLogBounded: a network client that opens connection after connection and
// sends garbage makes a bounded number of lines in netauthd's log, not one per connection, and
// the lines it does make say how many they stand for. The acceptor used to log every refused
// or abandoned handshake and the monitor to copy each of its lines: 2,000 connections, 2,000
// lines (660 KB) in two seconds, from anyone who can connect.
func TestGarbageFloodLogBounded(t *testing.T) {
	log := &logLines{}
	tb := newTestbedOpts(t, whoamiService, testbedOpts{log: log})
	waitUntil(t, 10*time.Second, func() string { return "the acceptor did not start" },
		func() bool { return len(log.with("acceptor confined")) > 0 })
	garbage := func() {
		c, err := net.Dial("tcp", tb.addr("whoami"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GARBAGE GARBAGE GARBAGE\n"))
		io.ReadAll(c)
	}
	before := len(log.with(`msg="acceptor output"`))
	const flood = 2000
	start := time.Now()
	for range flood {
		garbage()
	}
	elapsed := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	garbage() // after a pause: its line counts those held back
	time.Sleep(500 * time.Millisecond)
	lines := log.with(`msg="acceptor output"`)[before:]
	t.Logf("%d garbage connections in %v: %d lines of acceptor output", flood+1, elapsed.Round(time.Millisecond), len(lines))
	if max := int(elapsed/connLogEvery+elapsed/time.Second) + 5; len(lines) > max {
		t.Fatalf("%d garbage connections made %d lines in the log, want at most %d", flood+1, len(lines), max)
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "unlogged=") {
		t.Fatalf("the line after the flood does not count the refusals held back: %s", last)
	}
}

// TestAcceptorOutputBounded: whatever a compromised acceptor writes to its output, the monitor
// copies at most acceptorLogLines lines a second to its log, each at most acceptorLogLineLen
// bytes, counts the lines it held back in a line of its own, and goes on reading after a line
// of any length. It used to copy every line, of up to 64 KiB, and to stop reading at a longer
// one, leaving the acceptor blocked at its next write.
func TestAcceptorOutputBounded(t *testing.T) {
	log := &logLines{}
	d := &Daemon{log: slog.New(slog.NewTextHandler(log, nil))}
	r, w := io.Pipe()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		d.logLines(r, "acceptor", 4242)
	}()
	written := make(chan error, 1)
	const flood = 10000
	start := time.Now()
	go func() {
		line := strings.Repeat("x", 100) + "\n"
		for i := range flood {
			if _, err := fmt.Fprintf(w, "%05d %s", i, line); err != nil {
				written <- err
				return
			}
		}
		time.Sleep(1100 * time.Millisecond) // the next second
		_, err := io.WriteString(w, strings.Repeat("y", 200<<10)+"\nthe line after\n")
		written <- err
	}()
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the acceptor's writes blocked: the monitor stopped reading its output")
	}
	elapsed := time.Since(start)
	w.Close()
	<-copied

	lines := log.with(`msg="acceptor output"`)
	t.Logf("%d lines written in %v, %d copied", flood+2, elapsed.Round(time.Millisecond), len(lines))
	if max := acceptorLogLines * (int(elapsed/time.Second) + 1); len(lines) > max {
		t.Fatalf("%d of %d lines copied in %v, want at most %d", len(lines), flood+2, elapsed, max)
	}
	for _, l := range lines {
		if len(l) > acceptorLogLineLen+200 {
			t.Fatalf("a copied line of %d bytes: %.200s...", len(l), l)
		}
	}
	if got := log.with("the line after"); len(got) != 1 {
		t.Fatalf("the line after a 200 KiB line: %d copies, want 1", len(got))
	}
	if got := log.with("yyyy"); len(got) != 1 || !strings.Contains(got[0], "y...") {
		t.Fatalf("the 200 KiB line is not there, cut: %d lines", len(got))
	}
	held := log.with("acceptor output not logged")
	if len(held) == 0 {
		t.Fatal("no line counts the lines held back")
	}
	n := 0
	for _, l := range held {
		var k int
		if _, err := fmt.Sscanf(l[strings.Index(l, "lines=")+len("lines="):], "%d", &k); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		n += k
	}
	if copied := len(lines) - 2; copied+n != flood {
		t.Fatalf("%d lines copied and %d counted as held back, of %d", copied, n, flood)
	}
}
