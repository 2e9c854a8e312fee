// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"ubns.dev/netauth"
)

const dialUsage = `usage: netauth dial [-v] [-service name] [-key fingerprint] [-known-hosts file] [-no-resume] [user@]host:port

Connect to a netauth server and copy standard input to the connection and the
connection to standard output, like nc. The user (default: you) authenticates
with a key from the agent named by $NETAUTH_AUTH_SOCK or $SSH_AUTH_SOCK; the
server must be in netauth's known_hosts (see: netauth trust host:port).

Flags:
`

// dialMain runs `netauth dial`.
func dialMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("netauth dial")
	verbose := fs.Bool("v", false, "print the authenticated identity and whether the session was resumed to standard error")
	service := fs.String("service", "", "refuse the server unless it offers this service")
	key := fs.String("key", "", "use the agent key with this fingerprint (SHA256:...); default: try each")
	knownHosts := fs.String("known-hosts", "", "known_hosts file (default: $NETAUTH_KNOWN_HOSTS or ~/.config/netauth/known_hosts)")
	noResume := fs.Bool("no-resume", false, "always make a full handshake (no ticket)")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on connecting and the handshake")
	if code, ok := parseFlags(fs, dialUsage, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return argsError(stderr, fs, "the server address ([user@]host:port)")
	}
	cfg := &netauth.Config{
		Service:           *service,
		KeyFingerprint:    *key,
		KnownHostsFile:    *knownHosts,
		DisableResumption: *noResume,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	c, err := netauth.DialContext(hctx, "tcp", fs.Arg(0), cfg)
	if err == nil {
		err = c.HandshakeContext(hctx)
	}
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	defer c.Close()
	if *verbose {
		printIdentity(stderr, c.RemoteAddr().String(), c.Identity(), time.Since(start))
	}
	return copyBoth(c, stdin, stdout, stderr)
}

// printIdentity describes an authenticated connection for a person.
func printIdentity(w io.Writer, remote string, id netauth.Identity, took time.Duration) {
	mode := "full handshake (authenticator signed by the agent)"
	if id.Resumed {
		mode = "resumed with a ticket (no signature)"
	}
	fmt.Fprintf(w, "netauth: connected to %s, service %q, host key %s\n", remote, id.Service, id.HostKeyFingerprint)
	fmt.Fprintf(w, "netauth: authenticated as %s with %s key %s\n", id.User, id.KeyType, id.KeyFingerprint)
	fmt.Fprintf(w, "netauth: %s in %s\n", mode, took.Round(time.Microsecond))
}

// copyBoth copies stdin to c and c to stdout until the server closes. When stdin ends, the
// writing side is closed so the server sees the end of input.
func copyBoth(c *netauth.Conn, stdin io.Reader, stdout, stderr io.Writer) int {
	go func() {
		if _, err := io.Copy(c, stdin); err != nil {
			fmt.Fprintln(stderr, "netauth dial: sending:", errorText(err))
		}
		_ = c.CloseWrite()
	}()
	if _, err := io.Copy(stdout, c); err != nil && !errors.Is(err, io.EOF) {
		return fail(stderr, "netauth dial", fmt.Errorf("receiving: %w", err))
	}
	return 0
}
