// SPDX-License-Identifier: Apache-2.0

// Command netauth is the client side of netauth: the agent that signs authenticators and
// caches tickets, a dialer, host key trust, and a self-contained demonstration.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"ubns.dev/netauth/internal/builtin"
	"ubns.dev/netauth/internal/daemon"
	"ubns.dev/netauth/internal/version"
)

const usage = `usage: netauth <command> [flags] [arguments]

netauth authenticates you to network services with your SSH keys.

Commands:
  demo     show netauth working on this machine with nothing configured
  agent    start the agent that signs for your keys and caches session tickets
  dial     connect to a netauth server, copying stdin/stdout ([user@]host:port)
  trust    show a server's host key and add it to netauth's known_hosts
  proxy    let programs that do not speak netauth use a netauth service through a local socket
  open     start or find your proxy for a web service and print (or open) its local URL
  audit    verify netauthd's audit log, or export a record for ssh-keygen -Y verify
  status   print what the running netauthd is doing: services, workers, counters (as root)
  bench    measure netauth against TCP, a fork-setuid server, TLS and OpenSSH on this machine
  version  print netauth's version (also: netauth --version)
  help     print this help, or a command's (netauth help <command>)

Run 'netauth <command> -h' (or 'netauth help <command>') for a command's flags.

Exit status: 0 on success, 1 on failure, 2 for a usage error (a wrong command line);
netauth audit verify also returns 3 (see its help).
`

// commands are the names run dispatches, for the error that names them.
const commands = "demo, agent, dial, trust, proxy, open, audit, status, bench, version or help"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "netauth", "missing a command: %s", commands)
	}
	switch args[0] {
	case "demo":
		return demoMain(args[1:], stdout, stderr)
	case "agent":
		return agentMain(args[1:], stdout, stderr)
	case "dial":
		return dialMain(args[1:], stdin, stdout, stderr)
	case "trust":
		return trustMain(args[1:], stdin, stdout, stderr)
	case "proxy":
		return proxyMain(args[1:], stdout, stderr)
	case "open":
		return openMain(args[1:], stdout, stderr)
	case "status":
		return statusMain(args[1:], stdout, stderr)
	case "bench":
		return benchMain(args[1:], stdout, stderr)
	case "audit":
		return auditMain(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		if len(args) > 1 && isHelp(args[1]) {
			fmt.Fprint(stdout, versionUsage)
			return exitOK
		}
		if len(args) > 1 {
			return usageError(stderr, "netauth "+strings.TrimLeft(args[0], "-"), "unexpected argument %q", args[1])
		}
		fmt.Fprintln(stdout, version.Line("netauth"))
		return exitOK
	case "worker":
		// Hidden: a built-in service run as a netauthd worker (used by the demo).
		if len(args) >= 2 {
			return builtin.Run(args[1], args[2:], stderr)
		}
		fmt.Fprintln(stderr, "usage: netauth worker SERVICE [ARG...] (started by netauthd)")
		return exitUsage
	case "acceptor":
		// Hidden: netauthd's acceptor, for the daemon the demo and the benchmark run when
		// netauthd-acceptor is not installed next to this program.
		return daemon.RunAcceptor(args[1:], stderr)
	case "help":
		if len(args) > 1 && !isHelp(args[1]) {
			// netauth help CMD [SUBCMD]: the command's own help.
			if !isCommand(args[1]) {
				return usageError(stderr, "netauth help", "unknown command %q: want %s", args[1], commands)
			}
			return run(append(append([]string(nil), args[1:]...), "-h"), stdin, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	return usageError(stderr, "netauth", "unknown command %q: want %s", args[0], commands)
}

const versionUsage = `usage: netauth version
       netauth --version

Print netauth's version: the release it was built as, the commit it was built
from, and the Go release that built it.
`

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// isCommand reports whether name is one of the commands netauth help describes.
func isCommand(name string) bool {
	switch name {
	case "demo", "agent", "dial", "trust", "proxy", "open", "audit", "status", "bench", "version", "help":
		return true
	}
	return false
}
