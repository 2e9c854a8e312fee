// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"io"
	"time"

	"ubns.dev/netauth/internal/daemon"
)

const statusUsage = `usage: netauth status [-control path]

Ask the running netauthd, over its control socket, what it is doing, and print
its pid, uptime, configuration and host key, its services with their
addresses, its workers (service, user, pid, uptime, open connections) and the
connections it accepted and refused: what netauthd -status prints. The control
socket answers only the user netauthd runs as: run it as root for a netauthd
running as root.

Flags:
`

// statusMain runs `netauth status`.
func statusMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("netauth status")
	control := fs.String("control", "", "netauthd's control socket (default "+daemon.DefaultControlSocket+" as root, $XDG_RUNTIME_DIR/netauthd/control otherwise)")
	if code, ok := parseFlags(fs, statusUsage, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageError(stderr, fs.Name(), "unexpected argument %q", fs.Arg(0))
	}
	path := daemon.ControlPath(*control)
	if *control == "none" {
		return usageError(stderr, fs.Name(), "-control none: want the path of netauthd's control socket")
	}
	if path == "" {
		return usageError(stderr, fs.Name(), "missing -control PATH: not root, and XDG_RUNTIME_DIR is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := daemon.PrintStatus(ctx, stdout, path); err != nil {
		return fail(stderr, fs.Name(), err)
	}
	return exitOK
}
