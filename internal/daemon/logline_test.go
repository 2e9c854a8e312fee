// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"

	"ubns.dev/netauth/internal/policy"
)

// jsonLog returns a daemon whose log is slog JSON at level into the returned buffer.
func jsonLog(level slog.Level) (*Daemon, *logLines) {
	log := &logLines{}
	return &Daemon{log: slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: level}))}, log
}

// records returns the daemon's log records.
func (l *logLines) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// workerLines is what a worker logs: slog JSON at debug, warn and error, a line that is not
// JSON, and a JSON line longer than the bound (cut, so logged as text).
func workerLines() string {
	var b bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Debug("cache miss", "key", "k1")
	log.Warn("slow backend", "ms", 1500, slog.Group("db", "host", "db1"))
	log.Error("backend down", "err", "connection refused")
	b.WriteString("plain \x1b[31mtext\n")
	log.Info("huge", "blob", strings.Repeat("z", maxWorkerLogLine))
	return b.String()
}

// TestWorkerLogStructured: a worker's slog JSON lines are re-emitted at their own levels (debug
// hidden at info), tagged source=worker with the service, user and pid, the worker's attributes
// under "worker"; other lines, and lines cut at the bound, are logged as text at INFO as
// "worker output". They used to be all "worker output" lines at INFO with the record escaped in
// "line".
func TestWorkerLogStructured(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		d, log := jsonLog(level)
		w := &worker{d: d, user: "alice", svc: &policy.Service{Name: "web"}, pid: 77}
		w.logOutput(strings.NewReader(workerLines()))
		recs := log.records(t)
		var got []string
		for _, r := range recs {
			if r["source"] != "worker" || r["service"] != "web" || r["user"] != "alice" || r["pid"] != float64(77) {
				t.Fatalf("a record not tagged with the worker: %v", r)
			}
			got = append(got, r["level"].(string)+" "+r["msg"].(string))
		}
		want := []string{"WARN slow backend", "ERROR backend down", "INFO worker output", "INFO worker output"}
		if level == slog.LevelDebug {
			want = append([]string{"DEBUG cache miss"}, want...)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("at %v: records %q, want %q", level, got, want)
		}
		warn := recs[len(recs)-4]
		attrs, _ := warn["worker"].(map[string]any)
		if attrs["ms"] != float64(1500) || attrs["db"].(map[string]any)["host"] != "db1" {
			t.Fatalf("the warning's attributes: %v", warn)
		}
		if line := recs[len(recs)-2]["line"]; line != "plain \x1b[31mtext" {
			t.Fatalf("the text line: %q", line)
		}
		if line := recs[len(recs)-1]["line"].(string); len(line) != maxWorkerLogLine+3 || !strings.HasSuffix(line, "...") {
			t.Fatalf("the over-long line: %d bytes, want cut at %d and marked", len(line), maxWorkerLogLine)
		}
	}
}

// TestSharedWorkerLogService: a worker shared by all users (a backend) is named in the log by
// its service, without a user="" that suggests a missing user.
func TestSharedWorkerLogService(t *testing.T) {
	d, log := jsonLog(slog.LevelInfo)
	w := &worker{d: d, svc: &policy.Service{Name: "imap"}, pid: 78}
	w.logLine(78, `{"level":"INFO","msg":"listening"}`)
	recs := log.records(t)
	if len(recs) != 1 || recs[0]["service"] != "imap" || recs[0]["msg"] != "listening" {
		t.Fatalf("records %v", recs)
	}
	if _, ok := recs[0]["user"]; ok {
		t.Fatalf("a shared worker's record names a user: %v", recs[0])
	}
}

// TestAcceptorLogStructured: the acceptor's JSON records are re-emitted at their level under
// source=acceptor; its debug lines (every abandoned handshake, such as a netauth trust probe's)
// are hidden at level info and do not use up the lines a second the monitor copies.
func TestAcceptorLogStructured(t *testing.T) {
	d, log := jsonLog(slog.LevelInfo)
	var in bytes.Buffer
	alog := slog.New(slog.NewJSONHandler(&in, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for range 3 * acceptorLogLines {
		alog.Debug("handshake abandoned", "service", "whoami", "err", "connection ended without a close record (truncated)")
	}
	alog.Info("refused", "service", "whoami", "code", "not_authorized")
	alog.Warn("acceptor not fully confined", "sandbox", "no landlock")
	d.logLines(&in, "acceptor", 4242)
	recs := log.records(t)
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2 (the debug lines hidden, none held back): %v", len(recs), recs)
	}
	for i, want := range []string{"INFO refused", "WARN acceptor not fully confined"} {
		r := recs[i]
		if r["level"].(string)+" "+r["msg"].(string) != want || r["source"] != "acceptor" || r["pid"] != float64(4242) {
			t.Fatalf("record %d: %v, want %s from the acceptor", i, r, want)
		}
	}
	if recs[0]["acceptor"].(map[string]any)["code"] != "not_authorized" {
		t.Fatalf("the refusal's attributes: %v", recs[0])
	}
}

// TestExitStatus: a worker's exit is said as a person reads it: the status it exited with, or
// the signal that killed it by number and name, and why the daemon killed it when it did.
func TestExitStatus(t *testing.T) {
	run := func(script string) error { return exec.Command("/bin/sh", "-c", script).Run() }
	for _, c := range []struct {
		err  error
		why  string
		want string
	}{
		{nil, "", "exited with status 0"},
		{run("exit 2"), "", "exited with status 2"},
		{run("kill -9 $$"), "", "killed by signal 9 (SIGKILL)"},
		{run("kill -9 $$"), "access revoked", "killed by signal 9 (SIGKILL): access revoked"},
		{run("kill -TERM $$"), "", "killed by signal 15 (SIGTERM)"},
		{nil, "access revoked", "exited with status 0: access revoked"},
		{io.ErrUnexpectedEOF, "", io.ErrUnexpectedEOF.Error()},
	} {
		if got := exitStatus(c.err, c.why); got != c.want {
			t.Errorf("exitStatus(%v, %q) = %q, want %q", c.err, c.why, got, c.want)
		}
	}
}
