// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
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
	fs := newFlags("netauth trust")
	yes := fs.Bool("yes", false, "trust the key without asking")
	knownHosts := fs.String("known-hosts", "", "known_hosts file (default: $NETAUTH_KNOWN_HOSTS or ~/.config/netauth/known_hosts)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on fetching the key")
	if code, ok := parseFlags(fs, trustUsage, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 1 {
		return argsError(stderr, fs, "the server address (host:port)")
	}
	hostport := fs.Arg(0)
	file := *knownHosts
	if file == "" {
		var err error
		if file, err = netauth.DefaultKnownHostsFile(); err != nil {
			return fail(stderr, fs.Name(), err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	key, service, err := netauth.FetchHostKey(ctx, "tcp", hostport)
	if err != nil {
		return fail(stderr, fs.Name(), err)
	}
	fp := keys.Fingerprint(key)
	err = keys.KnownHosts{Path: file}.Check(hostport, key)
	var hke *netauth.HostKeyError
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "%s is already trusted (ED25519 %s) in %s\n", hostport, fp, file)
		return 0
	case errors.As(err, &hke) && hke.Changed:
		return fail(stderr, fs.Name(), err)
	case !errors.As(err, &hke):
		return fail(stderr, fs.Name(), err)
	}
	fmt.Fprintf(stdout, "%s offers service %q with host key ED25519 %s\n", hostport, service, fp)
	if !*yes {
		fmt.Fprint(stdout, "Trust this host key? (yes/no) ")
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.TrimSpace(strings.ToLower(line)); a != "yes" && a != "y" {
			return fail(stderr, fs.Name(), errors.New("not trusted; nothing written"))
		}
	}
	if err := netauth.Trust(file, hostport, key); err != nil {
		return fail(stderr, fs.Name(), err)
	}
	fmt.Fprintf(stdout, "added %s to %s\n", hostport, file)
	return 0
}
