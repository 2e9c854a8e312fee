// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
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
		want := []string{"WARN worker: slow backend", "ERROR worker: backend down", "INFO worker output", "INFO worker output"}
		if level == slog.LevelDebug {
			want = append([]string{"DEBUG worker: cache miss"}, want...)
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
	if len(recs) != 1 || recs[0]["service"] != "imap" || recs[0]["msg"] != "worker: listening" {
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

// builtinLogServices: an exec service whose program writes a line to its standard error,
// a backend service that forwards, and one whose backend refuses connections.
const builtinLogServices = `service say {
    listen 127.0.0.1:0
    mode exec
    program /bin/sh
    args -c "echo 'said on stderr' >&2; echo out"
    users netauth-alice
}
` + backendService + `service down {
    listen 127.0.0.1:0
    mode backend
    backend unix:WORKER-none.sock
    run-as account netauth-carol
    users netauth-alice
}
`

// TestBuiltinWorkerLogStructured: netauthd's own workers (exec's, backend's) log records that
// netauthd logs at their level, tagged with the worker's service and user, or, for a backend's
// worker shared by all users, the account it runs as (never user=""): the exec'd program's
// standard error as a record's attribute, a backend refusing a connection as a warning naming
// it. They were text lines, logged as "worker output" at INFO.
func TestBuiltinWorkerLogStructured(t *testing.T) {
	log := &logLines{}
	tb := newTestbedOpts(t, builtinLogServices, testbedOpts{log: log, logJSON: true})
	tb.useBuiltinWorker()
	startBackend(t, tb.workerBin+"-backend.sock")
	cfg := tb.config("netauth-alice")
	if out, _ := tb.execOutput("say", cfg); out["out"] != "" {
		t.Fatalf("the program's output: %v", out)
	}
	if _, err := tb.whoami("web", "netauth-alice", cfg); err != nil { // the backend's first line
		t.Fatal(err)
	}
	c, err := netauth.Dial("tcp", tb.addr("down"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.ReadAll(c)
	c.Close()

	find := func(msg string, want map[string]any) map[string]any {
		t.Helper()
		var found map[string]any
		waitUntil(t, 10*time.Second, func() string { return "no record " + msg }, func() bool {
			for _, r := range log.records(t) {
				if r["msg"] != msg {
					continue
				}
				ok := true
				for k, v := range want {
					ok = ok && fmt.Sprint(r[k]) == fmt.Sprint(v)
				}
				if ok {
					found = r
					return true
				}
			}
			return false
		})
		return found
	}
	said := find("worker: exec: program output", map[string]any{"level": "INFO", "source": "worker", "service": "say", "user": "netauth-alice"})
	if attrs, _ := said["worker"].(map[string]any); attrs["line"] != "said on stderr" || attrs["program_pid"] == nil {
		t.Fatalf("the program's line: %v", said)
	}
	find("worker: exec: program exited", map[string]any{"level": "DEBUG", "service": "say", "user": "netauth-alice"})
	fwd := find("worker: backend: forwarding a connection", map[string]any{"level": "DEBUG", "source": "worker", "service": "web", "account": "netauth-carol"})
	if attrs, _ := fwd["worker"].(map[string]any); attrs["user"] != "netauth-alice" {
		t.Fatalf("the forwarded connection's user: %v", fwd)
	}
	down := find("worker: backend: connecting to the backend failed", map[string]any{"level": "WARN", "source": "worker", "service": "down", "account": "netauth-carol"})
	if attrs, _ := down["worker"].(map[string]any); attrs["user"] != "netauth-alice" || !strings.HasSuffix(fmt.Sprint(attrs["backend"]), "-none.sock") {
		t.Fatalf("the refused connection: %v", down)
	}
	for _, r := range log.records(t) {
		if u, ok := r["user"]; ok && u == "" {
			t.Errorf("a record with user=\"\": %v", r)
		}
		if msg, _ := r["msg"].(string); msg == "worker output" {
			t.Errorf("a worker's line logged as text: %v", r)
		}
		if r["service"] == "web" || r["service"] == "down" {
			if _, ok := r["user"]; ok {
				t.Errorf("a shared worker's record names a user: %v", r)
			}
		}
	}
	if started := find("worker started", map[string]any{"service": "web"}); started["account"] != "netauth-carol" {
		t.Fatalf("the backend worker's start: %v", started)
	}
}

// TestWorkerOutputRateLimited: a worker writing lines as fast as it can (here 100,000) gets
// at most workerLogBurst lines in the log at once and workerLogRate a second after that; the
// others are counted in "worker output suppressed" records, at most one a workerLogInterval,
// which account for every line; the monitor keeps reading (the worker is never blocked) and
// logs another worker's lines meanwhile. Every line used to be logged.
func TestWorkerOutputRateLimited(t *testing.T) {
	d, log := jsonLog(slog.LevelInfo)
	flooder := &worker{d: d, user: "netauth-alice", svc: &policy.Service{Name: "web"}, pid: 77}
	other := &worker{d: d, user: "netauth-bob", svc: &policy.Service{Name: "web"}, pid: 78}
	r, w := io.Pipe()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		flooder.logOutput(r)
	}()
	const flood = 100000
	written := make(chan error, 1)
	start := time.Now()
	go func() {
		bw := bufio.NewWriter(w)
		for i := range flood {
			if _, err := fmt.Fprintf(bw, `{"level":"INFO","msg":"flood","i":%d}`+"\n", i); err != nil {
				written <- err
				return
			}
		}
		written <- bw.Flush()
	}()
	other.logLine(78, `{"level":"INFO","msg":"meanwhile"}`)
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the worker's writes blocked: the monitor stopped reading its output")
	}
	elapsed := time.Since(start)
	w.Close()
	<-copied
	logged, notes, counted := 0, 0, 0
	for _, rec := range log.records(t) {
		switch rec["msg"] {
		case "worker: flood":
			logged++
		case "worker output suppressed: too many lines":
			notes++
			counted += int(rec["lines"].(float64))
			if rec["pid"] != float64(77) || rec["user"] != "netauth-alice" || rec["level"] != "WARN" {
				t.Fatalf("a note not naming the worker: %v", rec)
			}
		case "worker: meanwhile":
		default:
			t.Fatalf("record %v", rec)
		}
	}
	t.Logf("%d lines in %v: %d logged, %d counted in %d notes", flood, elapsed.Round(time.Millisecond), logged, counted, notes)
	if max := workerLogBurst + int(elapsed.Seconds()*workerLogRate) + 1; logged > max {
		t.Fatalf("%d of %d lines logged in %v, want at most %d", logged, flood, elapsed, max)
	}
	if max := int(elapsed/workerLogInterval) + 2; notes > max || notes == 0 {
		t.Fatalf("%d notes in %v, want from 1 to %d", notes, elapsed, max)
	}
	if logged+counted != flood {
		t.Fatalf("%d lines logged and %d counted, of %d", logged, counted, flood)
	}
	if len(log.with(`"msg":"worker: meanwhile"`)) != 1 {
		t.Fatal("another worker's line was not logged")
	}
}
