// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth"
	"ubns.dev/netauth/agent"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
)

// TestMain lets the test binary serve as the demo's worker and acceptor programs, and as the
// proxy netauth open starts: the demo runs a copy of its own executable as "netauth worker
// whoami" and "netauth acceptor ...", netauth open runs its own as "netauth proxy ...".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "worker" || os.Args[1] == "acceptor" || os.Args[1] == "proxy") {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cliEnv is an in-process echo server and a netauth agent holding the user's key, with the
// environment the CLI reads pointing at them.
type cliEnv struct {
	addr       string
	knownHosts string
	hostFP     string
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	dir := t.TempDir()
	_, userKey, _ := ed25519.GenerateKey(rand.Reader)
	userPub, _ := ssh.NewPublicKey(userKey.Public())
	ag := agent.New(agent.Options{})
	ln, sock, err := agent.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := ag.Add(sshagent.AddedKey{PrivateKey: userKey}); err != nil {
		t.Fatal(err)
	}
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	hostPub, _ := ssh.NewPublicKey(hostKey.Public())
	srv, err := netauth.Listen("tcp", "127.0.0.1:0", &netauth.ServerConfig{
		HostKey: hostKey, Service: "echo", Keys: netauth.StaticKeys{"alice": {userPub}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go srv.Serve(func(c *netauth.Conn) { io.Copy(c, c) })
	e := &cliEnv{addr: srv.Addr().String(), knownHosts: filepath.Join(dir, "known_hosts"), hostFP: keys.Fingerprint(hostPub)}
	t.Setenv("NETAUTH_AUTH_SOCK", sock)
	t.Setenv("NETAUTH_KNOWN_HOSTS", e.knownHosts)
	return e
}

// TestTrustAndDial: an unknown server is refused with the trust command to run; trust -yes
// pins its key; dial -v then connects, echoes, and reports the identity, resumed the second
// time.
func TestTrustAndDial(t *testing.T) {
	e := newCLIEnv(t)
	var out, errb bytes.Buffer
	if code := run([]string{"dial", "alice@" + e.addr}, strings.NewReader("x\n"), &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "netauth trust "+e.addr) || !strings.Contains(errb.String(), e.hostFP) {
		t.Fatalf("dial to an unknown host: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	// Without -yes, anything but "yes" writes nothing.
	if code := run([]string{"trust", e.addr}, strings.NewReader("no\n"), &out, &errb); code != 1 {
		t.Fatalf("trust answered no: exit %d", code)
	}
	if _, err := os.Stat(e.knownHosts); err == nil {
		t.Fatal("trust wrote known_hosts although the answer was no")
	}
	out.Reset()
	if code := run([]string{"trust", "-yes", e.addr}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), e.hostFP) {
		t.Fatalf("trust -yes: exit %d, out %q, err %q", code, out.String(), errb.String())
	}
	for i, want := range []string{"full handshake", "resumed with a ticket"} {
		out.Reset()
		errb.Reset()
		code := run([]string{"dial", "-v", "alice@" + e.addr}, strings.NewReader("hello over netauth\n"), &out, &errb)
		if code != 0 || out.String() != "hello over netauth\n" {
			t.Fatalf("dial %d: exit %d, out %q, err %q", i, code, out.String(), errb.String())
		}
		for _, w := range []string{"authenticated as alice", want, e.hostFP, `service "echo"`} {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("dial -v %d: stderr lacks %q: %s", i, w, errb.String())
			}
		}
	}
	out.Reset()
	if code := run([]string{"trust", e.addr}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "already trusted") {
		t.Fatalf("trust of a trusted host: exit %d, %q", code, out.String())
	}
}

// TestDemo runs netauth demo: two connections, the first full and the second resumed.
func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"demo"}, nil, &out, &errb); code != 0 {
		t.Fatalf("demo: exit %d: %s", code, errb.String())
	}
	text := out.String()
	for _, want := range []string{"connection 1  full handshake", "connection 2  resumed", "resumed=false", "resumed=true"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	if os.Geteuid() == 0 {
		for _, want := range []string{"started worker", "reused worker", "uid 65534", "with its privilege split"} {
			if !strings.Contains(text, want) {
				t.Errorf("demo as root lacks %q:\n%s", want, text)
			}
		}
		uid, who := demoAcceptorLine(t, text)
		acct, err := policy.LookupAccount("netauth")
		switch {
		case err == nil && (uid != int(acct.UID) || who != "account netauth"):
			t.Errorf("the acceptor ran as uid %d (%s), want the account netauth (uid %d)", uid, who, acct.UID)
		case err != nil && who != "a transient uid, no account":
			t.Errorf("the acceptor ran as %s, want a transient uid (no account netauth here)", who)
		}
	}
}

// demoAcceptorLine finds the demo's line about its acceptor and returns the acceptor's uid and
// account; it checks that the acceptor ran (a pid) and neither as root nor as the demo's
// second user, and that the line says how it is confined.
func demoAcceptorLine(t *testing.T, text string) (int, string) {
	t.Helper()
	m := regexp.MustCompile(`acceptor: pid (\d+), uid (\d+) \(([^)]*)\), parses every network byte: (confined|NOT fully confined) \(.+\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("the demo as root shows no acceptor with its confinement:\n%s", text)
	}
	uid, _ := strconv.Atoi(m[2])
	if m[1] == "0" || uid == 0 || uid == 65534 {
		t.Errorf("acceptor pid %s, uid %d: want a running acceptor, neither root nor nobody", m[1], uid)
	}
	return uid, m[3]
}

// TestDemoTransientAcceptor: as root on a system without the account netauth, the demo's
// acceptor runs as a transient uid (systemd's dynamic range) that no account has.
func TestDemoTransientAcceptor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the demo runs netauthd's daemon only as root (CI runs as root)")
	}
	defer func(name string) { demoAcceptorUser = name }(demoAcceptorUser)
	demoAcceptorUser = "netauth-no-such-acceptor"
	var out, errb bytes.Buffer
	if code := run([]string{"demo", "-n", "1"}, nil, &out, &errb); code != 0 {
		t.Fatalf("demo: exit %d: %s", code, errb.String())
	}
	uid, who := demoAcceptorLine(t, out.String())
	if who != "a transient uid, no account" || uid < 61184 || uid > 65519 {
		t.Fatalf("the acceptor ran as uid %d (%s), want a transient uid in 61184-65519", uid, who)
	}
	if _, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		t.Errorf("uid %d has an account", uid)
	}
	if !strings.Contains(out.String(), "uid 65534") {
		t.Errorf("the demo's second user was not served:\n%s", out.String())
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "netauth: missing a command: demo, agent,") {
		t.Fatalf("no arguments: exit %d %q", code, errb.String())
	}
	if code := run([]string{"nosuch"}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "nosuch"`) {
		t.Fatalf("unknown command: exit %d %q", code, errb.String())
	}
	out.Reset()
	if code := run([]string{"-h"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "demo") {
		t.Fatalf("-h: exit %d %q", code, out.String())
	}
}
