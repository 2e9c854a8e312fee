// SPDX-License-Identifier: Apache-2.0

// Command netauth is the client side of netauth: the agent that signs authenticators and
// caches tickets, a dialer, host key trust, and a self-contained demonstration.
package main

import (
	"fmt"
	"io"
	"os"

	"ubns.dev/netauth/internal/builtin"
	"ubns.dev/netauth/internal/daemon"
)

const usage = `usage: netauth <command> [flags] [arguments]

netauth authenticates you to network services with your SSH keys.

Commands:
  demo     show netauth working on this machine with nothing configured
  agent    start the agent that signs for your keys and caches session tickets
  dial     connect to a netauth server, copying stdin/stdout ([user@]host:port)
  trust    show a server's host key and add it to netauth's known_hosts
  proxy    let programs that do not speak netauth use a netauth service through a local socket
  audit    verify netauthd's audit log, or export a record for ssh-keygen -Y verify
  bench    measure netauth against TCP, a fork-setuid server, TLS and OpenSSH on this machine

Run 'netauth <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
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
	case "bench":
		return benchMain(args[1:], stdout, stderr)
	case "audit":
		return auditMain(args[1:], stdout, stderr)
	case "worker":
		// Hidden: a built-in service run as a netauthd worker (used by the demo).
		if len(args) >= 2 {
			return builtin.Run(args[1], args[2:], stderr)
		}
		fmt.Fprintln(stderr, "usage: netauth worker SERVICE [ARG...] (started by netauthd)")
		return 2
	case "acceptor":
		// Hidden: netauthd's acceptor, for the daemon the demo and the benchmark run when
		// netauthd-acceptor is not installed next to this program.
		return daemon.RunAcceptor(args[1:], stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "netauth: unknown command %q\n\n%s", args[0], usage)
	return 2
}
