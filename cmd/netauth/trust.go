// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/keys"
)

const trustUsage = `usage: netauth trust [-yes] [-known-hosts file] host:port

Fetch the host key of the netauth server at host:port, show its fingerprint,
and after you confirm it (compare it with the one the server's administrator
gives you: netauthd prints it, or ssh-keygen -lf the host key's .pub file),
add it to netauth's known_hosts file. At the prompt, answer yes, or paste the
fingerprint you were given (SHA256:...): it is compared with the server's. A
host whose pinned key has changed is not overwritten: remove the old entry
first (ssh-keygen -R). A host already trusted (pinned, in OpenSSH's
known_hosts, or by a @cert-authority line for its certificate) needs nothing.

Names are matched as OpenSSH matches them: "host" for port 22, else
"[host]:port", so localhost and 127.0.0.1 are different names.

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
	what := "host key"
	plain := key
	if cert, ok := key.(*ssh.Certificate); ok {
		plain, what = cert.Key, "host certificate (id "+strconv.Quote(cert.KeyId)+") for the key"
	}
	fp := keys.Fingerprint(plain)
	err = netauth.CheckHostKey(file, trustFiles, hostport, key)
	var hke *netauth.HostKeyError
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "%s is already trusted (ED25519 %s)\n", hostport, fp)
		return 0
	case errors.As(err, &hke) && (hke.Changed || hke.Revoked):
		return fail(stderr, fs.Name(), err)
	case !errors.As(err, &hke):
		return fail(stderr, fs.Name(), err)
	}
	fmt.Fprintf(stdout, "%s offers service %q with %s ED25519 %s\n", hostport, service, what, fp)
	if hke.Cert {
		fmt.Fprintf(stdout, "(its certificate is not trusted: %s)\n", hke.CertProblem)
	}
	if !*yes {
		fmt.Fprint(stdout, "Trust this host key? (yes/no/[fingerprint]) ")
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		a := strings.TrimSpace(line)
		switch {
		case strings.EqualFold(a, "yes") || strings.EqualFold(a, "y"):
		case strings.HasPrefix(a, "SHA256:") && a == fp:
			fmt.Fprintln(stdout, "The fingerprint matches the server's key.")
		case strings.HasPrefix(a, "SHA256:"):
			return fail(stderr, fs.Name(), fmt.Errorf("the fingerprint %s does not match the server's key %s; nothing written", a, fp))
		default:
			return fail(stderr, fs.Name(), errors.New("not trusted; nothing written"))
		}
	}
	if err := netauth.Trust(file, hostport, plain); err != nil {
		return fail(stderr, fs.Name(), err)
	}
	fmt.Fprintf(stdout, "added %s to %s\n", hostport, file)
	return 0
}

// trustFiles are the known_hosts files read after the user's (nil: the defaults); tests
// replace them.
var trustFiles []netauth.KnownHostsFile
