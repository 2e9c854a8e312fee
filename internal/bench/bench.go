// SPDX-License-Identifier: Apache-2.0

// Package bench is `netauth bench`: it measures netauth on this machine, in one run and over
// loopback, against the baselines the netAuth paper and the design measure (plain TCP, a C
// accept-fork-setuid server, Go crypto/tls 1.3 with client certificates, OpenSSH), and checks
// the results against netauth's performance targets. It reports a table, JSON and an SVG
// chart.
//
// The clients run in the benchmark's process and, as users run them, sign and keep their
// tickets through a `netauth agent` process of the run's own (comparison rows sign in process
// and keep tickets in memory). The Go servers run in a child process (the same program,
// started with ServerArg); netauthd runs as deployed when the benchmark runs as root: its
// monitor in a second child process, its acceptor and per-user workers in processes of their
// own. Systems are alternated round-robin so that drift and the machine's other load hit all
// alike, and the floors (plain TCP with one more round trip, the handshake's public-key
// operations) are measured in the same rounds.
package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
)

// The parts of a run, in the order they run (see Options.Only).
const (
	PartLatency  = "latency"  // 128-byte connect-send-recv-close against every system (Table 3)
	PartOverhead = "overhead" // bind and connect against plain TCP (Table 2)
	PartCPU      = "cpu"      // server CPU per handshake
	PartVerify   = "verify"   // user signature verifications per core-second
	PartBulk     = "bulk"     // bulk throughput against TCP and TLS
	PartMemory   = "memory"   // an idle per-user worker's memory (root)
	PartScale    = "scale"    // many users with many connections each (root)
	PartRTT      = "rtt"      // round trips on an emulated 10 ms path (root)
)

// Parts lists every part, in the order they run.
var Parts = []string{PartLatency, PartOverhead, PartCPU, PartVerify, PartBulk, PartMemory, PartScale, PartRTT}

// workerAccount is the user the UBNS rows authenticate as and their workers run as.
const workerAccount = "nobody"

// Options configure a run. The zero value of each count means its default.
type Options struct {
	// Self is the command line that runs this program (the netauth command): the benchmark
	// runs Self + {"bench", ServerArg} as its server process, and netauthd runs a copy of
	// Self[0] with Self[1:] + {"worker", "echo"} as its workers.
	Self []string
	// N is the number of measured connections per system (latency, overhead, CPU).
	N int
	// Quick uses tiny counts: a smoke run that checks everything works, not a measurement.
	Quick bool
	// Only restricts the run to these parts (nil: all of Parts).
	Only []string
	// ScaleUsers and ScaleConns size the scale run: users, each with conns connections.
	ScaleUsers, ScaleConns int
	// Progress receives the progress display (nil: none).
	Progress io.Writer
	// Command is the command line to record in the report.
	Command string
}

// counts are a run's iteration counts.
type counts struct {
	rounds, warm       int // latency rounds (each runs every system once) and warm-up rounds
	sshLogins, sshMux  int // OpenSSH connections (each costs a process, and a login costs ms)
	overhead           int // bind and connect iterations per system
	cpuConns, cpuBlock int // connections per system in the CPU part, and per block
	verify             int // signature verifications
	bulkRounds         int
	bulkSize           int // bytes per bulk transfer
	scaleUsers         int
	scaleConns         int
}

// DefaultN is the default number of connections per system: the whole run takes about a
// minute on a 2-core machine.
const DefaultN = 2000

func (o *Options) counts() counts {
	n := o.N
	if n <= 0 {
		n = DefaultN
		if o.Quick {
			n = 4
		}
	}
	c := counts{rounds: n, warm: max(2, n/40), sshLogins: min(n, 10), sshMux: min(n, 30), overhead: n,
		cpuConns: n, cpuBlock: max(1, n/4), verify: 10 * n, bulkRounds: 5, bulkSize: 64 << 20,
		scaleUsers: 50, scaleConns: 10}
	if o.Quick {
		c.sshLogins, c.sshMux, c.bulkRounds, c.bulkSize, c.scaleUsers, c.scaleConns = min(n, 2), min(n, 2), 1, 1<<20, 3, 2
	}
	if o.ScaleUsers > 0 {
		c.scaleUsers = o.ScaleUsers
	}
	if o.ScaleConns > 0 {
		c.scaleConns = o.ScaleConns
	}
	return c
}

// ParseOnly parses a comma-separated list of parts.
func ParseOnly(list string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !slices.Contains(Parts, p) {
			return nil, fmt.Errorf("unknown part %q (have: %s)", p, strings.Join(Parts, ", "))
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("no part named")
	}
	return out, nil
}

// run is the state of one benchmark run.
type run struct {
	opts  Options
	n     counts
	root  bool
	dir   string
	m     *material
	known string      // known_hosts pinning every netauth server of the run
	srv   *serverProc // the Go servers
	d     *serverProc // netauthd (root only)
	conf  string      // netauthd's configuration
	agent *agentProc  // the clients' agent
	// acceptor is the command line of netauthd's acceptor: netauthd-acceptor, when it is
	// installed next to this program, else this program's hidden acceptor command;
	// acceptorNote says which, for the report.
	acceptor     []string
	workerSelf   []string // runs this program's built-in workers (daemon.Options.Self)
	acceptorNote string
	rep          *Report
	prog         *progress
	// extraTargets are targets measured by parts of their own, for evaluate: the part that
	// counts round trips on an emulated network path appends its Target (Name
	// TargetRoundTrips) here. Until one does, evaluate lists that target as not measured.
	extraTargets []Target

	// scaleUsers are the users the scale run may use, with their keys: accounts that
	// exist only in key files (virtualScale true) or, as a fallback, real accounts.
	scaleKeys    map[string]ssh.Signer
	virtualNames []string
	realNames    []string
}

// want reports whether part runs.
func (r *run) want(part string) bool {
	return len(r.opts.Only) == 0 || slices.Contains(r.opts.Only, part)
}

// Run measures what opts ask for and returns the report. A system or part that cannot run
// here (no C compiler, no sshd, not root) is skipped and listed in Report.Skipped with the
// reason; an error means a measurement failed.
func Run(opts Options) (rep *Report, err error) {
	if len(opts.Self) == 0 {
		return nil, errors.New("bench: Options.Self is required")
	}
	r := &run{opts: opts, n: opts.counts(), root: os.Geteuid() == 0, prog: newProgress(opts.Progress)}
	r.rep = &Report{Time: time.Now().UTC(), Command: opts.Command, Machine: machine(), Quick: opts.Quick,
		N: r.n.rounds, Notes: []string{}, Skipped: []Skip{}}
	if r.dir, err = os.MkdirTemp("", "netauth-bench-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(r.dir)
	// Workers (running as nobody) execute a copy of this program from the directory.
	if err := os.Chmod(r.dir, 0o755); err != nil {
		return nil, err
	}
	if r.m, err = newMaterial(); err != nil {
		return nil, err
	}
	ubns := r.root && (r.want(PartLatency) || r.want(PartCPU) || r.want(PartMemory) || r.want(PartScale))
	if !r.root {
		r.skip("netauthd rows (first connection, full and resumed to a per-user worker, its server CPU), worker memory, scale run",
			"they start workers as other users, which needs root; the in-process netauth server rows run instead")
	}
	// The agent holds a key no server accepts first, then the user's: every server's first full
	// handshake is refused once and retried with the user's key, which the agent then
	// remembers for that server, as it would for a user with several keys.
	if r.agent, err = startAgent(opts.Self, r.dir, r.m.otherKey, r.m.userKey); err != nil {
		return nil, err
	}
	defer r.agent.stop()
	r.note("netauth clients: netauth.Dial's default path, through a `netauth agent -D` process holding two keys (a key no server accepts, then the user's) and the tickets; the rows marked \"in-process signer\" sign in the benchmark's process and keep their tickets in memory")
	spec := &serverSpec{HostKeySeed: r.m.hostSeed, User: workerAccount,
		UserKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(r.m.user.PublicKey()))),
		TLSCert: r.m.tlsServerCert, TLSKey: r.m.tlsServerKey, TLSCA: r.m.tlsCA, SinkSize: r.n.bulkSize}
	if r.srv, err = startServerProc(opts.Self, spec); err != nil {
		return nil, err
	}
	defer r.srv.stop()
	r.known = filepath.Join(r.dir, "known_hosts")
	for _, a := range []string{r.srv.addrs.Netauth, r.srv.addrs.NetauthSink} {
		if err := netauth.Trust(r.known, a, r.m.hostPub); err != nil {
			return nil, err
		}
	}
	if ubns {
		if r.conf, err = r.writeDaemonConfig(); err != nil {
			return nil, err
		}
		if r.d, err = r.startDaemon(); err != nil {
			return nil, err
		}
		defer func() { r.d.stop() }()
		r.note("netauthd's acceptor: " + r.acceptorNote)
	}
	steps := []struct {
		part string
		fn   func() error
	}{
		{PartLatency, r.latency},
		{PartOverhead, r.overhead},
		{PartCPU, r.cpu},
		{PartVerify, r.verify},
		{PartBulk, r.bulk},
		{PartMemory, r.memory},
		{PartScale, r.scale},
		{PartRTT, r.rtt},
	}
	for _, s := range steps {
		if r.want(s.part) {
			r.prog.steps++
		}
	}
	for _, s := range steps {
		if !r.want(s.part) {
			continue
		}
		if err := s.fn(); err != nil {
			r.prog.end()
			return nil, fmt.Errorf("%s: %w", s.part, err)
		}
	}
	r.prog.end()
	r.rep.Machine.LoadEnd = loadAvg()
	// Targets measured by parts of their own (the round trips on an emulated network path)
	// are passed here; evaluate lists those it is not given as not measured.
	r.rep.evaluate(r.extraTargets...)
	return r.rep, nil
}

// skip records that something was not measured, and why.
func (r *run) skip(what, why string) {
	r.rep.Skipped = append(r.rep.Skipped, Skip{What: what, Why: why})
}

// note records how something was measured.
func (r *run) note(s string) {
	r.rep.Notes = append(r.rep.Notes, s)
}

// agentConfig is a netauth client configuration for the run's user as users run it: no
// Signer and no TicketCache, so that netauth.Dial signs through the run's agent and keeps the
// tickets (and the record of the key each server accepted) there. Full ones never offer a
// ticket.
func (r *run) agentConfig(full bool) *netauth.Config {
	return &netauth.Config{User: workerAccount, AgentSocket: r.agent.sock, KnownHostsFile: r.known, DisableResumption: full}
}

// memoryConfig is the comparison configuration: the user's key as an in-process Signer and,
// for resumed connections, tickets in a memory cache of the configuration's own. Full ones
// never offer a ticket.
func (r *run) memoryConfig(resume bool) *netauth.Config {
	cfg := &netauth.Config{User: workerAccount, Signer: r.m.user, KnownHostsFile: r.known}
	if resume {
		cfg.TicketCache = netauth.NewMemoryTicketCache(16)
	} else {
		cfg.DisableResumption = true
	}
	return cfg
}

// writeDaemonConfig writes netauthd's configuration for the run, with a copy of this program
// as the worker program (and the acceptor's, r.acceptor) and key files for the run's users,
// and returns its path. Services:
// "first" (per-connection: every connection starts a worker), "echo" (per-user, reused),
// "idle" (per-user, used once, for the worker's memory) and "scale" (per-user workers for
// many users, all running as nobody).
func (r *run) writeDaemonConfig() (string, error) {
	self, err := os.ReadFile(r.opts.Self[0])
	if err != nil {
		return "", fmt.Errorf("copying this program for the workers: %w", err)
	}
	worker := filepath.Join(r.dir, "netauth")
	if err := os.WriteFile(worker, self, 0o755); err != nil {
		return "", err
	}
	r.acceptor = append(append([]string{worker}, r.opts.Self[1:]...), "acceptor")
	// The built-in worker's command line prefix, as netauthd's is: workers of services whose
	// command starts with it are made from pre-started spares, as deployed.
	r.workerSelf = append(append([]string{worker}, r.opts.Self[1:]...), "worker")
	r.acceptorNote = "this program's hidden `netauth acceptor` command, the same code as netauthd-acceptor, which is not installed next to " + r.opts.Self[0]
	installed := filepath.Join(filepath.Dir(r.opts.Self[0]), "netauthd-acceptor")
	if data, err := os.ReadFile(installed); err == nil {
		acc := filepath.Join(r.dir, "netauthd-acceptor")
		if err := os.WriteFile(acc, data, 0o755); err != nil {
			return "", err
		}
		r.acceptor = []string{acc}
		r.acceptorNote = "netauthd-acceptor, installed next to this program (" + installed + ")"
	}
	keyDir := filepath.Join(r.dir, "authorized_keys")
	if err := os.Mkdir(keyDir, 0o755); err != nil {
		return "", err
	}
	put := func(user string, s ssh.Signer) error {
		return os.WriteFile(filepath.Join(keyDir, user), ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644)
	}
	if err := put(workerAccount, r.m.user); err != nil {
		return "", err
	}
	if r.want(PartScale) {
		if err := r.scaleAccounts(put); err != nil {
			return "", err
		}
	}
	args := quoteArgs(append(append([]string(nil), r.opts.Self[1:]...), "worker", "echo"))
	text := fmt.Sprintf(`host-key %[1]s/host_key
audit-log %[1]s/audit.log
authorized-keys-dir %[2]s

service first {
    listen 127.0.0.1:0
    mode per-connection
    program %[3]s
    args %[4]s
    users %[5]s
    max-workers 1000000
}

service echo {
    listen 127.0.0.1:0
    program %[3]s
    args %[4]s
    users %[5]s
    idle-timeout 1h
}

service idle {
    listen 127.0.0.1:0
    program %[3]s
    args %[4]s
    users %[5]s
    idle-timeout 1h
}

service scale {
    listen 127.0.0.1:0
    program %[3]s
    args %[4]s
    users *
    run-as account %[5]s
    max-workers 1000000
    max-connections-per-user 1000000
    idle-timeout 1h
}
`, r.dir, keyDir, worker, args, workerAccount)
	if err := keys.WriteHostKey(filepath.Join(r.dir, "host_key"), r.m.hostKey, "netauth-bench"); err != nil {
		return "", err
	}
	path := filepath.Join(r.dir, "netauthd.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return "", err
	}
	// Check here, where the error can name the file, before the server process loads it.
	cfg, err := policy.Load(path)
	if err == nil {
		_, err = cfg.Check()
	}
	return path, err
}

// quoteArgs writes arguments for the configuration file, quoting those that need it.
func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\"#\\") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// machine describes this machine.
func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, LoadStart: loadAvg()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(data))
	}
	if kb, err := meminfo("MemTotal"); err == nil {
		m.MemoryMB = kb / 1024
	}
	return m
}

// loadAvg returns the 1-minute load average ("" if unknown).
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// progress writes "[step/steps] what done/total" lines to a terminal (rewriting one line)
// or, for a file or pipe, a line at each quarter.
type progress struct {
	w           io.Writer
	tty         bool
	step, steps int
	what        string
	last        time.Time
	quarter     int
	open        bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// phase starts the next step.
func (p *progress) phase(what string) {
	p.end()
	p.step++
	p.what, p.quarter = what, -1
	p.count(0, 0)
}

// count reports done of total (total 0: no count).
func (p *progress) count(done, total int) {
	if p.w == nil {
		return
	}
	line := fmt.Sprintf("[%d/%d] %s", p.step, p.steps, p.what)
	if total > 0 {
		line += fmt.Sprintf("  %d/%d", done, total)
	}
	if p.tty {
		if done != total && done != 0 && time.Since(p.last) < 100*time.Millisecond {
			return
		}
		p.last = time.Now()
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.open = true
		return
	}
	q := 0
	if total > 0 {
		q = done * 4 / total
	}
	if q != p.quarter {
		p.quarter = q
		fmt.Fprintln(p.w, line)
	}
}

// end finishes the current line on a terminal.
func (p *progress) end() {
	if p.tty && p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}
