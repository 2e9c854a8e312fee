// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/daemon"
	"ubns.dev/netauth/internal/policy"
)

// ServerArg is the hidden first argument of `netauth bench` that makes the process the
// benchmark's server (see Serve). The benchmark starts it itself.
const ServerArg = "-server-process"

// ServerProfileEnv, if set in the benchmark's environment, names a file to which the Go
// servers' process writes a CPU profile of its whole life (`go tool pprof FILE`); netauthd's
// process writes its profile to the same name with ".netauthd" appended.
const ServerProfileEnv = "NETAUTH_BENCH_SERVER_CPUPROFILE"

// The servers of a run live in child processes (one for the Go servers, one for netauthd), so
// that the clients (the benchmark's process) and the servers share neither a Go runtime nor
// its garbage collector and scheduler, as they would not in use; each child measures its own
// CPU time with getrusage, and netauthd's memory is its process's alone.

// serverSpec is what the benchmark sends the server process: one JSON line on its stdin.
type serverSpec struct {
	HostKeySeed []byte   // the netauth host key's Ed25519 seed
	User        string   // the user of the in-process netauth servers
	UserKey     string   // the user's key, in authorized_keys format
	TLSCert     [][]byte // the TLS server's certificate chain (DER)
	TLSKey      []byte   // its PKCS #8 private key (DER)
	TLSCA       []byte   // the CA of client certificates (DER)
	Daemon      string   // path of a netauthd configuration to run instead of the other servers
	Acceptor    []string // the command line of netauthd's acceptor
	WorkerSelf  []string // the command line prefix of its built-in workers (daemon.Options.Self)
	SinkSize    int      // bytes a sink reads before acknowledging with one byte
}

// serverAddrs is the server process's answer: where each server listens.
type serverAddrs struct {
	TCP, TLS, Netauth             string            // 128-byte echo servers
	TCPEcho                       string            // plain TCP, echoing every request (the floor)
	TCPSink, TLSSink, NetauthSink string            // bulk sinks
	Daemon                        map[string]string // netauthd's services
	AcceptorPid                   int               // netauthd's acceptor
	Err                           string
}

// Serve is the server process: it reads a serverSpec line from in, starts plain TCP echo
// servers (one request per connection, and any number), a TLS 1.3 echo server, an in-process netauth echo server and a sink of each kind
// for the bulk test, or (when the spec names a configuration) netauthd's daemon in this
// process with its acceptor (as the account "netauth" if it exists, else as a transient uid),
// as deployed, then writes their addresses as one JSON line to out. Afterwards each line "cpu"
// on in is answered with "cpu NANOSECONDS", this process's user+system CPU time so far
// (getrusage RUSAGE_SELF: all threads, garbage collection and system calls included), and
// each line "workers" with "workers JSON", the daemon's workers (daemon.Workers). At
// the end of in it stops the daemon (and its workers) and returns.
func Serve(in io.Reader, out io.Writer) error {
	r := bufio.NewReader(in)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the server spec: %w", err)
	}
	var spec serverSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("parsing the server spec: %w", err)
	}
	enc := json.NewEncoder(out)
	addrs, stop, err := startServers(&spec)
	if err != nil {
		_ = enc.Encode(serverAddrs{Err: err.Error()})
		return err
	}
	defer stop()
	if path := os.Getenv(ServerProfileEnv); path != "" {
		if spec.Daemon != "" {
			path += ".netauthd"
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := enc.Encode(addrs); err != nil {
		return err
	}
	for {
		cmd, err := r.ReadString('\n')
		if err != nil {
			return nil
		}
		switch strings.TrimSpace(cmd) {
		case "workers":
			// netauthd's workers, from its own table: a worker made from a spare keeps
			// the spare's command line and environment in /proc where the kernel does not
			// let it rewrite them.
			var ws []daemon.WorkerInfo
			if runningDaemon != nil {
				ws = runningDaemon.Workers()
			}
			b, err := json.Marshal(ws)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "workers %s\n", b)
		case "cpu":
			cpu, err := processCPU()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "cpu %d\n", cpu.Nanoseconds())
		default:
			fmt.Fprintf(out, "error unknown command %q\n", strings.TrimSpace(cmd))
		}
	}
}

// startServers starts everything the spec asks for and returns a function that stops it.
func startServers(spec *serverSpec) (*serverAddrs, func(), error) {
	var closers []func()
	stop := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) (*serverAddrs, func(), error) { stop(); return nil, nil, err }
	addrs := &serverAddrs{}
	listen := func(handle func(net.Conn), wrap func(net.Listener) (net.Listener, error)) (string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		if wrap != nil {
			if ln, err = wrap(ln); err != nil {
				return "", err
			}
		}
		closers = append(closers, func() { ln.Close() })
		go serveConns(ln, handle)
		return ln.Addr().String(), nil
	}
	if spec.Daemon != "" {
		cfg, err := policy.Load(spec.Daemon)
		if err == nil {
			_, err = cfg.Check()
		}
		if err != nil {
			return fail(fmt.Errorf("netauthd configuration: %w", err))
		}
		acct, err := daemon.BriefAcceptorAccount("netauth")
		if err != nil {
			return fail(err)
		}
		d, err := daemon.New(daemon.Options{Config: cfg, Acceptor: spec.Acceptor, AcceptorAccount: acct, Self: spec.WorkerSelf,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			return fail(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := d.Start(ctx); err != nil {
			cancel()
			return fail(err)
		}
		closers = append(closers, func() { cancel(); d.Shutdown(2 * time.Second) })
		runningDaemon = d
		addrs.AcceptorPid = d.AcceptorPid()
		addrs.Daemon = make(map[string]string)
		for _, sc := range cfg.Services {
			if a := d.Addrs(sc.Name); len(a) > 0 {
				addrs.Daemon[sc.Name] = a[0].String()
			}
		}
		return addrs, stop, nil
	}
	tcfg, err := tlsServerConfig(spec.TLSCert, spec.TLSKey, spec.TLSCA)
	if err != nil {
		return fail(err)
	}
	withTLS := func(ln net.Listener) (net.Listener, error) { return tls.NewListener(ln, tcfg), nil }
	userKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(spec.UserKey))
	if err != nil {
		return fail(fmt.Errorf("user key: %w", err))
	}
	ncfg := &netauth.ServerConfig{HostKey: ed25519.NewKeyFromSeed(spec.HostKeySeed), Service: "bench",
		Keys: netauth.StaticKeys{spec.User: {userKey}}}
	withNetauth := func(ln net.Listener) (net.Listener, error) { return netauth.NewListener(ln, ncfg) }
	sink := func(c net.Conn) { sinkConn(c, spec.SinkSize) }
	for _, s := range []struct {
		addr   *string
		handle func(net.Conn)
		wrap   func(net.Listener) (net.Listener, error)
	}{
		{&addrs.TCP, echoOnce, nil},
		{&addrs.TCPEcho, echoConn, nil},
		{&addrs.TLS, echoConn, withTLS},
		{&addrs.Netauth, echoConn, withNetauth},
		{&addrs.TCPSink, sink, nil},
		{&addrs.TLSSink, sink, withTLS},
		{&addrs.NetauthSink, sink, withNetauth},
	} {
		if *s.addr, err = listen(s.handle, s.wrap); err != nil {
			return fail(err)
		}
	}
	return addrs, stop, nil
}

// serveConns runs handle on each connection accepted from ln, until ln is closed.
func serveConns(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

// echoOnce is the plain TCP server of the workload: it reads one request and sends it back,
// like the fork-setuid server (without the fork).
func echoOnce(c net.Conn) {
	buf := make([]byte, msgSize)
	if _, err := io.ReadFull(c, buf); err == nil {
		_, _ = c.Write(buf)
	}
}

// echoConn writes back what it reads until the end of the stream (TLS and netauth servers,
// and netauthd's echo workers, serve this way).
func echoConn(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// sinkConn reads in bulkIO-sized reads and acknowledges every size bytes with one byte.
func sinkConn(c net.Conn, size int) {
	buf := make([]byte, bulkIO)
	got := 0
	for {
		n, err := c.Read(buf)
		got += n
		for size > 0 && got >= size {
			got -= size
			if _, err := c.Write([]byte{1}); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// processCPU returns this process's user+system CPU time so far, all threads included.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// serverProc is the running server process, seen from the benchmark.
type serverProc struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *tailWriter
	addrs  serverAddrs
	mu     sync.Mutex
}

// startServerProc starts self with ServerArg and the spec, and waits for its addresses.
func startServerProc(self []string, spec *serverSpec) (*serverProc, error) {
	args := append(append([]string(nil), self[1:]...), "bench", ServerArg)
	cmd := exec.Command(self[0], args...)
	p := &serverProc{cmd: cmd, stderr: &tailWriter{max: 8 << 10}}
	cmd.Stderr = p.stderr
	var err error
	if p.in, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewReader(outPipe)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the server process: %w", err)
	}
	line, _ := json.Marshal(spec)
	if _, err := p.in.Write(append(line, '\n')); err != nil {
		p.stop()
		return nil, fmt.Errorf("server process: %w: %s", err, p.stderr)
	}
	resp, err := p.out.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(resp, &p.addrs)
	}
	if err == nil && p.addrs.Err != "" {
		err = errors.New(p.addrs.Err)
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("server process: %w %s", err, p.stderr)
	}
	return p, nil
}

// runningDaemon is the netauthd daemon Serve started, if any.
var runningDaemon *daemon.Daemon

// workers returns the workers of the netauthd daemon the server process runs.
func (p *serverProc) workers() ([]daemon.WorkerInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.in, "workers\n"); err != nil {
		return nil, fmt.Errorf("server process: %w %s", err, p.stderr)
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("server process: %w %s", err, p.stderr)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(line), "workers ")
	var ws []daemon.WorkerInfo
	if !ok {
		return nil, fmt.Errorf("server process answered %q", strings.TrimSpace(line))
	}
	if err := json.Unmarshal([]byte(v), &ws); err != nil {
		return nil, fmt.Errorf("server process's worker list: %w", err)
	}
	return ws, nil
}

// pid returns the server process's pid.
func (p *serverProc) pid() int { return p.cmd.Process.Pid }

// cpu returns the server process's CPU time so far.
func (p *serverProc) cpu() (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.in, "cpu\n"); err != nil {
		return 0, fmt.Errorf("server process: %w %s", err, p.stderr)
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("server process: %w %s", err, p.stderr)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(line), "cpu ")
	n, perr := strconv.ParseInt(v, 10, 64)
	if !ok || perr != nil {
		return 0, fmt.Errorf("server process answered %q", strings.TrimSpace(line))
	}
	return time.Duration(n), nil
}

// stop ends the server process (it stops netauthd's workers first) and waits for it.
func (p *serverProc) stop() {
	p.in.Close()
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, p.out); _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// tailWriter keeps the last max bytes written to it (a child's stderr, for error messages).
type tailWriter struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if len(w.buf) > w.max {
		w.buf = w.buf[len(w.buf)-w.max:]
	}
	return len(p), nil
}

// String returns what was kept, as a parenthesized suffix for an error message.
func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.TrimSpace(string(w.buf))
	if s == "" {
		return ""
	}
	return "(server process stderr: " + s + ")"
}
