// SPDX-License-Identifier: Apache-2.0

// Command netauthd-acceptor is netauthd's unprivileged half: netauthd (the monitor) starts it
// with its listening sockets and a control channel, as the account "netauth" when netauthd is
// root and as netauthd's own user otherwise; it accepts connections, parses every network
// byte, runs the record layer, and asks the monitor for every decision. netauthd also runs it, as the user, for its built-in workers
// ("-worker NAME": whoami, echo, exec, backend), because it starts faster than netauthd. It is
// not meant to be run by hand.
//
// Build it without cgo, next to netauthd, so that its sandbox (no_new_privs and Landlock)
// covers all of its threads:
//
//	CGO_ENABLED=0 go build -o /usr/local/sbin/netauthd-acceptor ./cmd/netauthd-acceptor
package main

import (
	"fmt"
	"io"
	"os"

	"ubns.dev/netauth/internal/builtin"
	"ubns.dev/netauth/internal/daemon"
	"ubns.dev/netauth/internal/version"
)

const usage = `usage: netauthd-acceptor -version    (also --version)

netauthd-acceptor is netauthd's unprivileged half: netauthd starts it, with its
listening sockets and a control channel, to accept connections and parse every
network byte, and as "netauthd-acceptor -worker SERVICE" for its built-in
workers. It is not meant to be run by hand; see netauthd -h and docs/SECURITY.md.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) >= 2 && args[0] == "-worker" {
		return builtin.Run(args[1], args[2:], stderr)
	}
	if len(args) == 1 {
		switch args[0] {
		case "-version", "--version":
			fmt.Fprintln(stdout, version.Line("netauthd-acceptor"))
			return 0
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		}
	}
	return daemon.RunAcceptor(args, stderr)
}
