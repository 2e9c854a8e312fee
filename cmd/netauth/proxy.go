// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/proxy"
)

const proxyUsage = `usage: netauth proxy [-listen unix:PATH | -listen tcp:127.0.0.1:PORT] [-service name] [-key fingerprint] [-known-hosts file] [-no-resume] [-http] [-idle duration] [-v] [user@]host:port

Let programs that do not speak netauth (mail clients, curl, scripts) use a
netauth service. The proxy listens on a local address that only you can use and
carries each connection made to it to host:port over netauth, authenticated as
you (or as user) with a key from the agent named by $NETAUTH_AUTH_SOCK or
$SSH_AUTH_SOCK. The first connection makes a full handshake; later ones resume
with a ticket, without asking the agent to sign again. The server must be in
netauth's known_hosts first (see: netauth trust host:port).

Without -listen the proxy listens on a Unix socket in a private directory,
$XDG_RUNTIME_DIR/netauth/proxy-HOST-PORT.sock (or, without XDG_RUNTIME_DIR,
$TMPDIR/netauth-proxy-UID/proxy-HOST-PORT.sock, $TMPDIR defaulting to /tmp),
the same at every run, and prints its path. With -listen tcp:127.0.0.1:PORT it
listens on loopback TCP instead, for programs that cannot use Unix sockets;
other addresses are refused.

Only processes running as your own uid are served: on a Unix socket the
kernel's peer credentials are checked, and on TCP the owner of the connecting
socket is looked up in the kernel's socket table (netlink sock_diag, or /proc/net/tcp). Connections
from other users, or whose owner cannot be found, are closed and logged.

Examples:
  Read mail: start the proxy, then point the IMAP client at the address it
  prints, with TLS off (netauth encrypts the connection to the server). Most
  mail clients need a TCP port:
    netauth proxy -listen tcp:127.0.0.1:1143 mail.example:4143
    curl imap://127.0.0.1:1143/INBOX
  Programs that can use a Unix socket need no port; without -listen,
    netauth proxy web.example:8443
  prints "netauth proxy: listening on unix:PATH; ...", and then, for HTTP:
    curl --unix-socket PATH http://web.example/

With -http (which needs -listen tcp:127.0.0.1:PORT) the proxy serves HTTP, for
web browsers, instead of relaying bytes: it forwards each request to host:port
over netauth connections it keeps alive, with the Host header unchanged, streaming
responses and relaying WebSocket upgrades. Because any page your browser shows can
make it send requests to the proxy, it refuses (and logs) a request whose Host is
not its own address (127.0.0.1:PORT, localhost:PORT, [::1]:PORT: this stops DNS
rebinding), a cross-origin request other than GET, HEAD and OPTIONS, and a
cross-origin WebSocket or other upgrade request.

The proxy runs until interrupted (Ctrl-C, SIGINT or SIGTERM), or with -idle
until no local connection has been open for that long, then removes its socket.
Log messages go to standard error. For a web browser, netauth open starts such a
proxy, with -http, on loopback TCP in the background, or finds it, and prints its
URL.

Flags:
`

// proxyMain runs `netauth proxy`.
func proxyMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("netauth proxy")
	listen := fs.String("listen", "", "local address: unix:PATH or tcp:127.0.0.1:PORT (default: a Unix socket in a private directory)")
	service := fs.String("service", "", "refuse the server unless it offers this service")
	key := fs.String("key", "", "use the agent key with this fingerprint (SHA256:...); default: try each")
	knownHosts := fs.String("known-hosts", "", "known_hosts file (default: $NETAUTH_KNOWN_HOSTS or ~/.config/netauth/known_hosts)")
	noResume := fs.Bool("no-resume", false, "make a full handshake for every connection (no tickets)")
	httpMode := fs.Bool("http", false, "serve HTTP for web browsers: refuse other Host names and cross-origin requests (needs -listen tcp:...)")
	idle := fs.Duration("idle", 0, "stop once no local connection has been open for this long (default: never)")
	verbose := fs.Bool("v", false, "log every forwarded connection, not only refusals and errors")
	if code, ok := parseFlags(fs, proxyUsage, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return argsError(stderr, fs, "the server address ([user@]host:port)")
	}
	if *idle < 0 {
		return usageError(stderr, fs.Name(), "-idle %v: want a positive duration", *idle)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg := &netauth.Config{
		Service:           *service,
		KeyFingerprint:    *key,
		KnownHostsFile:    *knownHosts,
		DisableResumption: *noResume,
	}
	if *verbose {
		cfg.Logger = logger
	}

	// Catch the signals before anything is printed, so whoever reads the address may stop us.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	p, err := proxy.Listen(proxy.Options{Listen: *listen, Remote: fs.Arg(0), Config: cfg, Logger: logger,
		HTTP: *httpMode, IdleTimeout: *idle})
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	fmt.Fprintf(stdout, "netauth proxy: listening on %s; forwarding to %s as %s\n", p.Addr(), p.Remote(), p.User())
	if err := p.Serve(ctx); err != nil {
		return fail(stderr, fs.Name(), err)
	}
	return 0
}
