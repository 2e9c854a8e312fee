// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/daemon"
	"ubns.dev/netauth/internal/policy"
)

// demoSecondUser is the second user of the UBNS demonstration: an account every Linux system
// has.
const demoSecondUser = "nobody"

// demoAcceptorUser is the account the demonstration's acceptor runs as if it exists
// (netauthd's); otherwise it gets a transient uid. A variable for tests.
var demoAcceptorUser = "netauth"

// runUBNSDemo runs netauthd's daemon in this process with the built-in whoami as its worker
// program, and shows per-user workers being started and reused. It needs root. The daemon
// runs as an installed netauthd does, with its privilege split: this process is the monitor,
// and an acceptor process (netauthd-acceptor if it is installed next to this program, else
// this program's hidden acceptor command) parses every network byte, as the account
// "netauth" if it exists, else as a transient uid that no account has.
func runUBNSDemo(out io.Writer, agentSock string, agentUser string, agentKey ssh.PublicKey) error {
	tmp, err := os.MkdirTemp("", "netauthd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	// Workers run as the users, so they need a copy of this program they may execute.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	worker := filepath.Join(tmp, "netauth")
	if err := os.WriteFile(worker, data, 0o755); err != nil {
		return err
	}
	acceptor, err := demoAcceptor(self, tmp, worker)
	if err != nil {
		return err
	}
	acceptorAcct, err := daemon.BriefAcceptorAccount(demoAcceptorUser)
	if err != nil {
		return err
	}
	keyDir := filepath.Join(tmp, "authorized_keys")
	if err := os.Mkdir(keyDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(keyDir, agentUser), ssh.MarshalAuthorizedKey(agentKey), 0o644); err != nil {
		return err
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	otherSigner, _ := ssh.NewSignerFromKey(otherKey)
	if err := os.WriteFile(filepath.Join(keyDir, demoSecondUser), ssh.MarshalAuthorizedKey(otherSigner.PublicKey()), 0o644); err != nil {
		return err
	}

	text := fmt.Sprintf(`host-key %s
audit-log %s
authorized-keys-dir %s

service whoami {
    listen 127.0.0.1:0
    mode per-user
    program %s
    args worker whoami
    users %s %s
    idle-timeout 1m
}
`, filepath.Join(tmp, "host_key"), filepath.Join(tmp, "audit.log"), keyDir, worker, agentUser, demoSecondUser)
	cfg, err := policy.Parse("demo", strings.NewReader(text))
	if err != nil {
		return err
	}
	watch := newAcceptorWatch()
	d, err := daemon.New(daemon.Options{Config: cfg, Logger: slog.New(watch), Acceptor: acceptor, AcceptorAccount: acceptorAcct})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Start(ctx); err != nil {
		return err
	}
	defer d.Shutdown(2 * time.Second)
	addr := d.Addrs("whoami")[0].String()
	knownHosts := filepath.Join(tmp, "known_hosts")
	if err := netauth.Trust(knownHosts, addr, d.HostKey()); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nnetauthd in this process (root), with its privilege split: per-user workers, User-Based Network Services\n")
	fmt.Fprintf(out, "  this process is the monitor (keys, decisions, workers); it never reads from a client socket\n")
	who := "account " + acceptorAcct.Name
	if acceptorAcct.Name == "" {
		who = "a transient uid, no account"
	}
	confinement := watch.report(3 * time.Second)
	fmt.Fprintf(out, "  acceptor: pid %d, uid %d (%s), parses every network byte: %s\n", d.AcceptorPid(), acceptorAcct.UID, who, confinement)
	if !strings.HasPrefix(confinement, "confined") {
		fmt.Fprintf(out, "  (an installed netauthd's acceptor is confined: install netauthd-acceptor, built with CGO_ENABLED=0,\n   next to this program, or build this program with CGO_ENABLED=0)\n")
	}
	fmt.Fprintf(out, "  service whoami on %s; each user's connections go to a worker running as that user\n\n", addr)
	conns := []struct {
		user string
		cfg  *netauth.Config
	}{
		{agentUser, &netauth.Config{User: agentUser, AgentSocket: agentSock, KnownHostsFile: knownHosts}},
		{agentUser, &netauth.Config{User: agentUser, AgentSocket: agentSock, KnownHostsFile: knownHosts}},
		{demoSecondUser, &netauth.Config{User: demoSecondUser, Signer: otherSigner, KnownHostsFile: knownHosts, TicketCache: netauth.NewMemoryTicketCache(1)}},
	}
	seen := map[string]bool{}
	for i, c := range conns {
		start := time.Now()
		fields, err := askWhoami(addr, c.cfg)
		took := time.Since(start)
		if err != nil {
			return fmt.Errorf("connection %d as %s: %w", i+1, c.user, err)
		}
		mode := "full handshake"
		if fields["resumed"] == "true" {
			mode = "resumed"
		}
		worker := "started worker"
		if seen[fields["pid"]] {
			worker = "reused worker "
		}
		seen[fields["pid"]] = true
		fmt.Fprintf(out, "connection %d  %-8s %-15s %s pid %-7s uid %-6s %8s\n", i+1, c.user, mode, worker, fields["pid"], fields["uid"], took.Round(time.Microsecond))
	}
	return nil
}

// demoAcceptor returns the command line of the demonstration's acceptor: netauthd-acceptor if
// it is installed next to self (built without cgo, it can confine all its threads), else the
// copy of this program at worker with its hidden acceptor command; either from dir, where the
// acceptor's account may run it.
func demoAcceptor(self, dir, worker string) ([]string, error) {
	installed := filepath.Join(filepath.Dir(self), "netauthd-acceptor")
	data, err := os.ReadFile(installed)
	if err != nil {
		return []string{worker, "acceptor"}, nil
	}
	path := filepath.Join(dir, "netauthd-acceptor")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		return nil, err
	}
	return []string{path}, nil
}

// acceptorWatch is the demonstration daemon's log handler: it keeps the acceptor's own record
// about its confinement (which the daemon re-emits, its attributes in the group "acceptor")
// and discards everything else.
type acceptorWatch struct {
	once   sync.Once
	seen   chan struct{} // closed once status is set
	status string
}

func newAcceptorWatch() *acceptorWatch { return &acceptorWatch{seen: make(chan struct{})} }

func (w *acceptorWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *acceptorWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *acceptorWatch) WithGroup(string) slog.Handler            { return w }

func (w *acceptorWatch) Handle(_ context.Context, r slog.Record) error {
	var status string
	switch r.Message {
	case "acceptor confined":
		status = "confined (%s)"
	case "acceptor not fully confined":
		status = "NOT fully confined (%s)"
	default:
		return nil
	}
	sandbox := "?"
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "acceptor" && a.Value.Kind() == slog.KindGroup {
			for _, g := range a.Value.Group() {
				if g.Key == "sandbox" {
					sandbox = g.Value.String()
				}
			}
		}
		return true
	})
	w.once.Do(func() { w.status = fmt.Sprintf(status, sandbox); close(w.seen) })
	return nil
}

// report returns what the acceptor said of its confinement, waiting for it at most limit.
func (w *acceptorWatch) report(limit time.Duration) string {
	select {
	case <-w.seen:
		return w.status
	case <-time.After(limit):
		return "it has not reported how it is confined"
	}
}

// askWhoami connects to a whoami service and parses its answer.
func askWhoami(addr string, cfg *netauth.Config) (map[string]string, error) {
	c, err := netauth.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "?\n"); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		fields[k] = v
	}
	if fields["pid"] == "" || fields["uid"] == "" {
		return nil, fmt.Errorf("unexpected answer from the worker: %q", line)
	}
	return fields, nil
}

// demoCanRunUBNS reports whether the UBNS part of the demo can run, and why not.
func demoCanRunUBNS() (bool, string) {
	if os.Geteuid() != 0 {
		return false, "run it as root to also see netauthd start per-user workers as each user"
	}
	if _, err := user.Lookup(demoSecondUser); err != nil {
		return false, "no user " + demoSecondUser + " on this system for the second user"
	}
	return true, ""
}
