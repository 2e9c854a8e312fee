// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/builtin"
	"ubns.dev/netauth/internal/policy"
)

// The test binary is also netauthd's built-in worker for exec and backend services: the
// testbed's Options.Self is the binary itself, so netauthd starts it as
// "WORKER exec -- PROGRAM ARG...", "WORKER backend ADDRESS" or "WORKER http-backend ADDRESS
// HEADER...". This runs before TestMain,
// which handles the one-argument workers of the other tests.
func init() {
	if netauth.IsWorker() && len(os.Args) > 2 && (os.Args[1] == "exec" || os.Args[1] == "backend" || os.Args[1] == "http-backend" || os.Args[1] == "instance") {
		os.Exit(builtin.Run(os.Args[1], os.Args[2:], os.Stderr))
	}
}

// dovecotIMAP is where Debian's dovecot-imapd installs Dovecot's imap program.
const dovecotIMAP = "/usr/lib/dovecot/imap"

// requireDovecot fails the test when Dovecot's imap program is missing: CI runs as root and
// must have it installed, so the end-to-end test never silently skips there.
func requireDovecot(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if _, err := os.Stat(dovecotIMAP); err != nil {
		t.Fatalf("%s is missing (%v): .ci/run must install Debian's dovecot-imapd package (apt-get install -y dovecot-imapd) for the IMAP end-to-end test", dovecotIMAP, err)
	}
	for _, prog := range []string{"python3", "curl"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Fatalf("%s is missing: the IMAP end-to-end test runs real clients (Python's imaplib and curl): %v", prog, err)
		}
	}
}

// useBuiltinWorker makes the testbed's daemon run the test binary as its built-in worker
// (Options.Self). It must be called before the first connection to an exec or backend
// service; the daemon reads Self under its lock when it starts a worker.
func (tb *testbed) useBuiltinWorker() {
	tb.d.mu.Lock()
	tb.d.opts.Self = []string{tb.workerBin}
	tb.d.mu.Unlock()
}

// startProxy starts a netauth client proxy on loopback TCP that authenticates as user to
// service, and returns its port. Local clients (running as root, like the proxy) connect to
// it without any credentials; the proxy's ticket cache makes successive sessions resumed.
func (tb *testbed) startProxy(service, user string) string {
	tb.t.Helper()
	network, addr, _ := tb.startProxyConfig(service, "tcp:127.0.0.1:0", tb.config(user))
	if network != "tcp" {
		tb.t.Fatalf("proxy listens on %s, not tcp", network)
	}
	_, port, _ := strings.Cut(addr, ":")
	return port
}

// runPython runs a Python 3 script with req as JSON on its standard input and decodes the
// JSON it prints into out.
func runPython(t *testing.T, script string, req, out any) {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("python3 printed %q: %v (stderr: %s)", stdout.String(), err, stderr.String())
	}
}

// freshMaildir removes user's ~/Maildir now and when the test ends, and returns its path.
func freshMaildir(t *testing.T, user string) string {
	t.Helper()
	a, err := policy.LookupAccount(user)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(a.Home, "Maildir")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// auditRecords returns the accepted records of service in the testbed's audit log.
func (tb *testbed) auditRecords(service string) []audit.Record {
	tb.t.Helper()
	var out []audit.Record
	for _, r := range tb.auditLines() {
		if r.Service == service && r.Decision == "accepted" {
			out = append(out, r)
		}
	}
	return out
}

// waitUntil polls cond until it holds or limit passes.
func waitUntil(t *testing.T, limit time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
