// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"ubns.dev/netauth/internal/bench"
)

const benchUsage = `usage: netauth bench [-n N] [-quick] [-only PARTS] [-scale USERSxCONNS] [-json FILE] [-svg FILE]

Measure netauth on this machine, over loopback, against its baselines in one
run, and check the results against netauth's performance targets:

  latency   connect, send 128 bytes, receive 128 bytes, close (the netAuth
            paper's Table 3) against plain TCP, a C accept-fork-setuid server
            (compiled with cc), Go crypto/tls 1.3 with client certificates (full
            and resumed), OpenSSH (a login running a command, and a session on
            a multiplexed master; needs sshd), netauth's in-process server (full
            and resumed) and, as root, netauthd as deployed (monitor, acceptor,
            per-user workers): a first connection (new worker), a full
            handshake and a resumed one to an existing worker. The floors'
            parts run in the same rounds: plain TCP with one more round trip,
            and the handshake's public-key operations in this process; a floor
            is the sum of their medians. The systems alternate round-robin
            after a warm-up.
  overhead  creating a listening server and connecting, against plain TCP
            (the paper's Table 2)
  cpu       the server's CPU per handshake, against the server's public-key
            floor: the in-process server's process (getrusage) and, as root,
            all of netauthd's processes together (from /proc)
  verify    user signature (SSHSIG) verifications per core-second
  bulk      bulk throughput through netauth, crypto/tls and plain TCP
  memory    an idle per-user worker's memory (root)
  scale     many users with many connections each: latency percentiles and
            netauthd's memory (root)
  rtt       round trips of connect-send-recv on an emulated path of 10 ms RTT
            and MTU 1500 (a network namespace; needs iptables), every kind of
            connection, netauth clients through a netauth agent holding
            several keys (root)

The netauth clients run as users run them: netauth.Dial's default path through
a netauth agent the benchmark starts (this program's agent command, holding
the user's key after one no server accepts, and the tickets); rows marked
"in-process signer" sign in this process and keep their tickets in memory, for
comparison. netauthd's acceptor is netauthd-acceptor when it is installed next
to this program, else this program's hidden acceptor command (the same code);
the report's notes say which. The clients run in this process, the servers in
child processes; netauthd's workers run as nobody. Progress goes to stderr,
the table to stdout. Without root, the rows that start workers are skipped,
and the report says why; so are OpenSSH without sshd and fork-setuid without a
C compiler. Each target is reported as met, missed or not measured, with this
run's floor where there is one.

Flags:
`

// benchCommand is `netauth bench`; self is the command line that runs this program.
type benchCommand struct {
	self []string
}

// benchMain runs `netauth bench`.
func benchMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == bench.ServerArg {
		// Hidden: the benchmark's server process, started by the benchmark itself.
		if err := bench.Serve(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(stderr, "netauth bench server:", err)
			return 1
		}
		return 0
	}
	if len(args) > 0 && args[0] == bench.RTTArg {
		// Hidden: the rtt part's process, in a network namespace of its own.
		if err := bench.ServeRTT(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(stderr, "netauth bench rtt process:", err)
			return 1
		}
		return 0
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "netauth bench: cannot find this program to start its server process:", err)
		return 1
	}
	return benchCommand{self: []string{exe}}.run(args, stdout, stderr)
}

// run parses the flags, runs the benchmark and writes the results.
func (c benchCommand) run(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("netauth bench")
	n := fs.Int("n", 0, fmt.Sprintf("measured connections per system (default %d; with -quick, 4)", bench.DefaultN))
	quick := fs.Bool("quick", false, "tiny counts: a smoke run that checks everything works, not a measurement")
	only := fs.String("only", "", "run only these parts, comma-separated: "+strings.Join(bench.Parts, ","))
	scale := fs.String("scale", "", "size of the scale run, USERSxCONNS (default 50x10; with -quick, 3x2)")
	jsonFile := fs.String("json", "", "also write the results as JSON to `FILE`")
	svgFile := fs.String("svg", "", "also write a bar chart of the connect-send-recv medians (ratios to fork-setuid) as SVG to `FILE`")
	if code, ok := parseFlags(fs, benchUsage, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageError(stderr, fs.Name(), "unexpected argument %q", fs.Arg(0))
	}
	if *n < 0 {
		return usageError(stderr, fs.Name(), "-n %d: want a count (0: the default)", *n)
	}
	opts := bench.Options{Self: c.self, N: *n, Quick: *quick, Progress: stderr,
		Command: strings.TrimSpace("netauth bench " + strings.Join(args, " "))}
	if *only != "" {
		parts, err := bench.ParseOnly(*only)
		if err != nil {
			return usageError(stderr, fs.Name(), "-only: %v", err)
		}
		opts.Only = parts
	}
	if *scale != "" {
		users, conns, ok := parseScale(*scale)
		if !ok {
			return usageError(stderr, fs.Name(), "-scale %q: want USERSxCONNS, two positive whole numbers (for example 1000x10)", *scale)
		}
		opts.ScaleUsers, opts.ScaleConns = users, conns
	}
	rep, err := bench.Run(opts)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	if err := rep.WriteTable(stdout); err != nil {
		return fail(stderr, fs.Name(), err)
	}
	if *jsonFile != "" {
		if err := writeFileWith(*jsonFile, rep.WriteJSON); err != nil {
			return fail(stderr, fs.Name(), fmt.Errorf("-json: %w", err))
		}
	}
	if *svgFile != "" {
		if err := writeFileWith(*svgFile, rep.WriteSVG); err != nil {
			return fail(stderr, fs.Name(), fmt.Errorf("-svg: %w", err))
		}
	}
	return 0
}

// parseScale parses "USERSxCONNS".
func parseScale(s string) (users, conns int, ok bool) {
	u, c, found := strings.Cut(strings.ToLower(s), "x")
	if !found {
		return 0, 0, false
	}
	users, err1 := strconv.Atoi(u)
	conns, err2 := strconv.Atoi(c)
	return users, conns, err1 == nil && err2 == nil && users > 0 && conns > 0
}

// writeFileWith creates path and fills it with write.
func writeFileWith(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
