// SPDX-License-Identifier: Apache-2.0

// Command netauthd-acceptor is netauthd's unprivileged half: netauthd (the monitor, root)
// starts it as an unprivileged account with its listening sockets and a control channel; it
// accepts connections, parses every network byte, runs the record layer, and asks the monitor
// for every decision. It is not meant to be run by hand.
//
// Build it without cgo, next to netauthd, so that its sandbox (no_new_privs and Landlock)
// covers all of its threads:
//
//	CGO_ENABLED=0 go build -o /usr/local/sbin/netauthd-acceptor ./cmd/netauthd-acceptor
package main

import (
	"os"

	"ubns.dev/netauth/internal/daemon"
)

func main() {
	os.Exit(daemon.RunAcceptor(os.Args[1:], os.Stderr))
}
