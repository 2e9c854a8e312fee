// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth"
	"ubns.dev/netauth/agent"
	"ubns.dev/netauth/internal/keys"
)

const demoUsage = `usage: netauth demo [-n connections]

Show netauth working with nothing configured: start, inside this process and on
127.0.0.1 only, a server with a freshly generated host key, and a temporary
netauth agent holding a freshly generated user key; then connect several times
and print what the server saw, whether each connection was a full handshake or
resumed with a ticket, and how long each took.

Run as root, it goes on to run netauthd's daemon the same way, with the
built-in whoami service: the first connection starts a worker running as the
user, the second reuses it (same pid), and a second user (nobody) gets a
separate worker with their own uid. The daemon runs as an installed netauthd
does, with its privilege split: this process is the monitor, and an acceptor
process parses every network byte (netauthd-acceptor if it is installed next to
this program, else this program itself), as the account "netauth" if it exists,
else as a transient uid that no account has; the demo says whether the acceptor
could confine itself. Everything is removed on exit.

Flags:
`

// demoMain runs `netauth demo`.
func demoMain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("netauth demo")
	n := fs.Int("n", 2, "number of connections")
	if code, ok := parseFlags(fs, demoUsage, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return usageError(stderr, fs.Name(), "unexpected argument %q", fs.Arg(0))
	}
	if *n < 1 {
		return usageError(stderr, fs.Name(), "-n %d: want at least 1 connection", *n)
	}
	if err := runDemo(*n, stdout); err != nil {
		return fail(stderr, fs.Name(), err)
	}
	return 0
}

func runDemo(n int, out io.Writer) error {
	u, err := user.Current()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "netauth-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A temporary agent with a fresh user key, as `eval "$(netauth agent)"; ssh-add` would give.
	ag := agent.New(agent.Options{})
	ln, sock, err := agent.Listen(tmp)
	if err != nil {
		return err
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.Serve(ctx, ln) }()
	defer func() { cancel(); <-agentDone }()
	_, userKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := ag.Add(sshagent.AddedKey{PrivateKey: userKey, Comment: u.Username + "@netauth-demo"}); err != nil {
		return err
	}
	userPub, _ := ssh.NewPublicKey(userKey.Public())

	// A server with a fresh host key that accepts that key for the current user.
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	hostPub, _ := ssh.NewPublicKey(hostKey.Public())
	srv, err := netauth.Listen("tcp", "127.0.0.1:0", &netauth.ServerConfig{
		HostKey: hostKey,
		Service: "demo",
		Keys:    netauth.StaticKeys{u.Username: {userPub}},
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	seen := make(chan netauth.Identity, n)
	go serveDemo(srv, seen)

	knownHosts := filepath.Join(tmp, "known_hosts")
	if err := netauth.Trust(knownHosts, srv.Addr().String(), hostPub); err != nil {
		return err
	}
	fmt.Fprintf(out, "netauth demo: everything runs in this process, on 127.0.0.1\n")
	fmt.Fprintf(out, "  server  %s  service %q  host key ED25519 %s\n", srv.Addr(), "demo", keys.Fingerprint(hostPub))
	fmt.Fprintf(out, "  agent   %s  user %q  key ED25519 %s\n\n", sock, u.Username, keys.Fingerprint(userPub))

	cfg := &netauth.Config{AgentSocket: sock, KnownHostsFile: knownHosts}
	for i := 1; i <= n; i++ {
		start := time.Now()
		reply, err := demoRequest(srv.Addr().String(), cfg)
		took := time.Since(start)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		id := <-seen
		mode := "full handshake: the agent signed an authenticator"
		if id.Resumed {
			mode = "resumed: ticket from the agent's cache, no signature"
		}
		fmt.Fprintf(out, "connection %d  %-55s %8s\n", i, mode, took.Round(time.Microsecond))
		fmt.Fprintf(out, "  server saw  user=%s key=%s %s resumed=%v\n", id.User, id.KeyType, id.KeyFingerprint, id.Resumed)
		fmt.Fprintf(out, "  reply       %q\n", reply)
	}
	if ok, why := demoCanRunUBNS(); !ok {
		fmt.Fprintf(out, "\n(%s)\n", why)
		return nil
	}
	return runUBNSDemo(out, sock, u.Username, userPub)
}

// demoRequest connects, sends one line and reads the server's one-line reply.
func demoRequest(addr string, cfg *netauth.Config) (string, error) {
	c, err := netauth.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "hello\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

// serveDemo answers each connection with a line naming the authenticated user.
func serveDemo(ln *netauth.Listener, seen chan<- netauth.Identity) {
	for {
		c, err := ln.AcceptNetauth()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			id := c.Identity()
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				return
			}
			fmt.Fprintf(c, "hello %s, the server knows you by key %s\n", id.User, id.KeyFingerprint)
			seen <- id
		}()
	}
}
