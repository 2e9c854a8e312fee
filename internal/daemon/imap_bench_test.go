// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
)

// imapBenchMessages is how many messages the INBOX that every session SELECTs holds.
const imapBenchMessages = 20

// imapBenchServices are the two netauthd services of BenchmarkIMAPSession, both running
// Dovecot's imap, unmodified, in exec mode: "imap-first" starts a new worker for every
// connection (exec-worker per-connection), so each of its sessions pays what a user's first
// session pays; "imap" has one long-lived worker per user.
const imapBenchServices = `service imap-first {
    listen 127.0.0.1:0
    mode exec
    exec-worker per-connection
    program ` + dovecotIMAP + `
    args -c WORKER-dovecot.conf
    users netauth-alice
    max-workers 100000
}

service imap {
    listen 127.0.0.1:0
    mode exec
    program ` + dovecotIMAP + `
    args -c WORKER-dovecot.conf
    users netauth-alice
    idle-timeout 1h
}
`

// imapSystem is one way to get a usable IMAP session.
type imapSystem struct {
	name       string
	op         func(*imapSystem) error // connect, greeting, (LOGIN,) SELECT INBOX, close
	start      time.Time               // when the current session's connection started
	lat, greet []time.Duration         // connect → tagged OK of SELECT; connect → greeting
	resumed    int                     // sessions that resumed
	proxy      *proxyCount             // the proxy's count of its connections, for proxy rows
}

// greeted records the time from the start of the connection to the greeting.
func (s *imapSystem) greeted() { s.greet = append(s.greet, time.Since(s.start)) }

// BenchmarkIMAPSession measures the time to a usable IMAP session — from the start of the
// connection until the tagged OK of "SELECT INBOX" — through netauth (netauthd running
// Dovecot's imap in exec mode, pre-authenticated) and through Dovecot's own standard path
// (a private Dovecot: imap-login with implicit TLS 1.3, a password LOGIN checked by its auth
// process, then imap as the user), in one run, alternating the systems round-robin. All
// serve the same Maildir of the same account. The rows:
//
//   - netauth-first: netauth.Dial with a full handshake to a service with "exec-worker
//     per-connection", so every session also starts a new worker: a user's first session.
//   - netauth-full: a full handshake to the user's existing per-user worker.
//   - netauth-resumed: a resumed handshake (ticket) to the user's existing worker: a user's
//     successive sessions.
//   - proxy-first, proxy-resumed: the same two through the netauth client proxy listening on
//     loopback TCP, as an unmodified client pays (local TCP + the netauth hop).
//   - proxy-unix-resumed: proxy-resumed with the proxy listening on a Unix socket.
//   - dovecot-full: Dovecot's defaults (a new imap-login process per connection), a full
//     TLS 1.3 handshake, LOGIN with a password, SELECT.
//   - dovecot-resumed: the same with a TLS session cache; Dovecot's default cannot resume it
//     (each imap-login process has its own ticket keys), and the resumed column says so.
//   - dovecot-perf-resumed: Dovecot's "high-performance" login mode (imap-login
//     service_count = 0, process_min_avail = 2, the number of cores), where TLS sessions do
//     resume.
//
// It reports each row's median and p99 in microseconds and its median's ratio to
// dovecot-full, and logs the table (on the final run only: the testing package keeps 10
// lines of a benchmark's log over all its runs).
//
//	sudo go test -run '^$' -bench IMAPSession -benchtime 100x ./internal/daemon/
func BenchmarkIMAPSession(b *testing.B) {
	requireRoot(b)
	for _, prog := range []string{dovecotIMAP, dovecotMaster} {
		if _, err := os.Stat(prog); err != nil {
			b.Fatalf("%s is missing (%v): install Debian's dovecot-imapd (apt-get install -y dovecot-imapd)", prog, err)
		}
	}
	const user = "netauth-alice"
	tb := newTestbed(newQuietB(b), imapBenchServices)
	tb.useBuiltinWorker()
	if err := os.WriteFile(tb.workerBin+"-dovecot.conf", []byte(dovecotConf), 0o644); err != nil {
		b.Fatal(err)
	}
	benchMaildir(b, user, imapBenchMessages)

	full := tb.config(user)
	full.DisableResumption = true
	resumed := tb.config(user)
	// Each proxy has a configuration (and so a ticket cache) of its own.
	sockDir, err := os.MkdirTemp("", "netauth-bench-proxy-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(sockDir) })
	pFirstNet, pFirst, pFirstN := tb.startProxyConfig("imap-first", "tcp:127.0.0.1:0", full)
	pResNet, pRes, pResN := tb.startProxyConfig("imap", "tcp:127.0.0.1:0", tb.config(user))
	pUnixNet, pUnix, pUnixN := tb.startProxyConfig("imap", "unix:"+filepath.Join(sockDir, "imap.sock"), tb.config(user))

	dovecot := startPrivateDovecot(b, "netauth-bench-std", user, "")
	perf := startPrivateDovecot(b, "netauth-bench-perf", user, "  service_count = 0\n  process_min_avail = 2\n")

	// strict: every session of a resumed row must resume (set after the warm-up, which
	// fills the caches).
	strict := false
	// netauth, directly: the client library, as a netauth-aware client uses it.
	viaNetauth := func(addr string, cfg *netauth.Config) func(*imapSystem) error {
		return func(s *imapSystem) error {
			c, err := netauth.Dial("tcp", addr, cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			ic := newIMAPConn(c)
			if err := ic.greeting("* PREAUTH"); err != nil {
				return err
			}
			s.greeted()
			if err := ic.selectInbox("a", imapBenchMessages); err != nil {
				return err
			}
			if r := c.Identity().Resumed; r {
				s.resumed++
			} else if strict && !cfg.DisableResumption {
				return fmt.Errorf("not resumed")
			}
			return nil
		}
	}
	// netauth through the client proxy: an unmodified client's plain local connection.
	viaProxy := func(network, addr string) func(*imapSystem) error {
		return func(s *imapSystem) error {
			c, err := net.Dial(network, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			ic := newIMAPConn(c)
			if err := ic.greeting("* PREAUTH"); err != nil {
				return err
			}
			s.greeted()
			return ic.selectInbox("a", imapBenchMessages)
		}
	}
	// Dovecot's standard path: implicit TLS 1.3, LOGIN with a password, SELECT.
	viaDovecot := func(d *privateDovecot, cache tls.ClientSessionCache) func(*imapSystem) error {
		cfg := &tls.Config{RootCAs: d.ca, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13, ClientSessionCache: cache}
		return func(s *imapSystem) error {
			c, err := tls.Dial("tcp", d.addr, cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			ic := newIMAPConn(c)
			if err := ic.greeting("* OK"); err != nil {
				return err
			}
			s.greeted()
			if _, err := ic.command("a", "LOGIN "+user+" "+d.pass); err != nil {
				return err
			}
			if err := ic.selectInbox("b", imapBenchMessages); err != nil {
				return err
			}
			if c.ConnectionState().DidResume {
				s.resumed++
			}
			return nil
		}
	}

	systems := []*imapSystem{
		{name: "netauth-first", op: viaNetauth(tb.addr("imap-first"), full)},
		{name: "netauth-full", op: viaNetauth(tb.addr("imap"), full)},
		{name: "netauth-resumed", op: viaNetauth(tb.addr("imap"), resumed)},
		{name: "proxy-first", op: viaProxy(pFirstNet, pFirst), proxy: pFirstN},
		{name: "proxy-resumed", op: viaProxy(pResNet, pRes), proxy: pResN},
		{name: "proxy-unix-resumed", op: viaProxy(pUnixNet, pUnix), proxy: pUnixN},
		{name: "dovecot-full", op: viaDovecot(dovecot, nil)},
		{name: "dovecot-resumed", op: viaDovecot(dovecot, tls.NewLRUClientSessionCache(8))},
		{name: "dovecot-perf-resumed", op: viaDovecot(perf, tls.NewLRUClientSessionCache(8))},
	}

	// Warm up: start the per-user worker, fill the ticket caches and TLS session caches,
	// build Dovecot's index of the INBOX, page everything in.
	for range 5 {
		for _, s := range systems {
			s.start = time.Now()
			if err := s.op(s); err != nil {
				b.Fatalf("warm-up: %s: %v", s.name, err)
			}
		}
	}
	for _, s := range systems {
		s.resumed, s.greet = 0, nil
		if s.proxy != nil {
			s.proxy.resumed.Store(0)
			s.proxy.full.Store(0)
		}
	}
	strict = true

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each round runs every system once, starting with a different one each round.
		for j := range systems {
			s := systems[(i+j)%len(systems)]
			s.start = time.Now()
			if err := s.op(s); err != nil {
				b.Fatalf("round %d: %s: %v", i, s.name, err)
			}
			s.lat = append(s.lat, time.Since(s.start))
		}
	}
	b.StopTimer()

	std := median(systems[6].lat)
	for _, s := range systems {
		if s.proxy != nil {
			s.resumed = int(s.proxy.resumed.Load())
			if total := s.resumed + int(s.proxy.full.Load()); total != b.N {
				b.Errorf("%s: the proxy counted %d connections, want %d", s.name, total, b.N)
			}
		}
		switch resumedRow := strings.HasSuffix(s.name, "-resumed"); {
		case resumedRow && !strings.HasPrefix(s.name, "dovecot") && s.resumed != b.N:
			b.Errorf("%s: %d of %d sessions resumed", s.name, s.resumed, b.N)
		case !resumedRow && s.resumed != 0:
			b.Errorf("%s: %d of %d sessions resumed, want none", s.name, s.resumed, b.N)
		}
		m, p := median(s.lat), percentile(s.lat, 99)
		b.ReportMetric(us(m), s.name+"-p50-us")
		b.ReportMetric(us(p), s.name+"-p99-us")
		b.ReportMetric(float64(m)/float64(std), s.name+"/dovecot-full")
		if finalRun(b) {
			b.Logf("%-20s median %6.0f us  p99 %6.0f us  greeting %6.0f us  resumed %3d/%d  %.2fx dovecot-full",
				s.name, us(m), us(p), us(median(s.greet)), s.resumed, len(s.lat), float64(m)/float64(std))
		}
	}
}

// finalRun reports whether this is a benchmark's last run, as far as can be told: with
// -benchtime Nx, the run with b.N = N; otherwise every run but the first (b.N = 1).
func finalRun(b *testing.B) bool {
	if f := flag.Lookup("test.benchtime"); f != nil {
		if n, ok := strings.CutSuffix(f.Value.String(), "x"); ok {
			return n == fmt.Sprint(b.N)
		}
	}
	return b.N > 1
}
