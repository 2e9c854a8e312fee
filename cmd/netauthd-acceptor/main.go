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
	"os"

	"ubns.dev/netauth/internal/builtin"
	"ubns.dev/netauth/internal/daemon"
)

func main() {
	if len(os.Args) >= 3 && os.Args[1] == "-worker" {
		os.Exit(builtin.Run(os.Args[2], os.Args[3:], os.Stderr))
	}
	os.Exit(daemon.RunAcceptor(os.Args[1:], os.Stderr))
}
