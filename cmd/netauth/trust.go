// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/keys"
)

const trustUsage = `usage: netauth trust [-yes] [-known-hosts file] host:port

Fetch the host key of the netauth server at host:port, show its fingerprint,
and after you confirm it (compare it with the one the server's administrator
gives you: netauthd prints it, or ssh-keygen -lf the host key's .pub file),
add it to netauth's known_hosts file. A host whose pinned key has changed is
not overwritten: remove the old entry first (ssh-keygen -R).

Flags:
`

// trustMain runs `netauth trust`.
func trustMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("trust", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, trustUsage); fs.PrintDefaults() }
	yes := fs.Bool("yes", false, "trust the key without asking")
	knownHosts := fs.String("known-hosts", "", "known_hosts file (default: $NETAUTH_KNOWN_HOSTS or ~/.config/netauth/known_hosts)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on fetching the key")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	hostport := fs.Arg(0)
	file := *knownHosts
	if file == "" {
		var err error
		if file, err = netauth.DefaultKnownHostsFile(); err != nil {
			fmt.Fprintln(stderr, "netauth:", err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	key, service, err := netauth.FetchHostKey(ctx, "tcp", hostport)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fp := keys.Fingerprint(key)
	err = keys.KnownHosts{Path: file}.Check(hostport, key)
	var hke *netauth.HostKeyError
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "%s is already trusted (ED25519 %s) in %s\n", hostport, fp, file)
		return 0
	case errors.As(err, &hke) && hke.Changed:
		fmt.Fprintln(stderr, err)
		return 1
	case !errors.As(err, &hke):
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s offers service %q with host key ED25519 %s\n", hostport, service, fp)
	if !*yes {
		fmt.Fprint(stdout, "Trust this host key? (yes/no) ")
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.TrimSpace(strings.ToLower(line)); a != "yes" && a != "y" {
			fmt.Fprintln(stderr, "netauth: not trusted; nothing written")
			return 1
		}
	}
	if err := netauth.Trust(file, hostport, key); err != nil {
		fmt.Fprintln(stderr, "netauth:", err)
		return 1
	}
	fmt.Fprintf(stdout, "added %s to %s\n", hostport, file)
	return 0
}
