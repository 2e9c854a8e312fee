// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"crypto/mlkem"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
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
	before := len(log.with("source=acceptor"))
	const flood = 2000
	start := time.Now()
	for range flood {
		garbage()
	}
	elapsed := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	garbage() // after a pause: its line counts those held back
	time.Sleep(500 * time.Millisecond)
	lines := log.with("source=acceptor")[before:]
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

// TestForgedClientAddressesBounded: a compromised acceptor chooses the client address the
// audit record of a refused handshake names (the one it sends with Begin), so it can spread its
// refusals over as many sources as it likes, or name no IP address at all (256 bytes of quotes,
// newlines and invalid UTF-8). That evades the per-source share of the audit log, not its
// bounds: at most DefaultRefusalsTotal refusal lines and DefaultRefusalSources+1 summary lines
// an interval, every refusal counted, the log intact, and netauthd's own log no longer than the
// audit log's refusals.
func TestForgedClientAddressesBounded(t *testing.T) {
	log := &logLines{}
	tb := newTestbedOpts(t, whoamiService, testbedOpts{log: log})
	e := newEvilAcceptor(t, tb)
	before := fileSize(t, tb.auditLog)
	garbage := strings.Repeat("\"\n\xff<", 64)
	const n = 2000
	start := time.Now()
	for i := range n {
		client := fmt.Sprintf("10.%d.%d.%d:4242", i>>16&255, i>>8&255, i&255) // a new source each time
		if i%4 == 0 {
			client = garbage
		}
		begin, err := (remoteCore{a: e.side, service: "whoami"}).Begin(&handshake.BeginRequest{Mode: handshake.ModeFull, Noise: testNoise1(t), Client: client})
		if err != nil {
			t.Fatal(err)
		}
		// A garbage authenticator: refused, and audited under the forged address.
		err = e.commit(&commitRequest{service: "whoami", commit: handshake.CommitRequest{Session: begin.Session, User: "netauth-alice",
			Time: uint64(time.Now().Unix()), SSHSIG: []byte("garbage")}, state: &record.State{}})
		var r *handshake.Refusal
		if !errors.As(err, &r) || r.Code != handshake.CodeAuthFailed {
			t.Fatalf("a garbage authenticator: %v, want auth_failed", err)
		}
	}
	elapsed := time.Since(start)
	tb.d.Shutdown(2 * time.Second) // writes the summaries still counting
	grown := fileSize(t, tb.auditLog) - before
	intervals := int64(elapsed/audit.DefaultRefusalInterval) + 2
	limit := intervals * (audit.DefaultRefusalsTotal + audit.DefaultRefusalSources + 1) * (audit.MaxRefusalLine + 1)
	t.Logf("%d refusals under forged addresses in %v grew the audit log by %d bytes (bound %d)", n, elapsed.Round(time.Millisecond), grown, limit)
	if grown > limit {
		t.Fatalf("the audit log grew by %d bytes, more than %d", grown, limit)
	}
	rep := verifyLog(t, tb)
	if rep.Refused > int(intervals)*audit.DefaultRefusalsTotal || rep.Summaries > int(intervals)*(audit.DefaultRefusalSources+1) {
		t.Fatalf("%d refusal lines and %d summaries in %d intervals", rep.Refused, rep.Summaries, intervals)
	}
	if rep.Refused+int(rep.Summarized) != n {
		t.Fatalf("%d refusals logged and %d counted, of %d", rep.Refused, rep.Summarized, n)
	}
	t.Logf("%d refusal lines, %d summaries counting %d", rep.Refused, rep.Summaries, rep.Summarized)
	if got := len(log.with(`msg=refused`)); got == 0 || got > rep.Refused {
		t.Fatalf("%d refusals in netauthd's log, want from 1 to the %d in the audit log", got, rep.Refused)
	}
}

// testNoise1 returns a full handshake's Noise message 1: a fresh ephemeral public key and
// ML-KEM-768 encapsulation key.
func testNoise1(t *testing.T) []byte {
	t.Helper()
	kp, err := x25519.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		t.Fatal(err)
	}
	return append(kp.Public[:], dk.EncapsulationKey().Bytes()...)
}
