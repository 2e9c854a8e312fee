// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/agent"
)

// runCLI runs a netauth command line and returns its exit status and output.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// TestHelp: every command and subcommand prints its help to standard output and exits 0, for
// -h, -help, --help and netauth help CMD.
func TestHelp(t *testing.T) {
	for _, cmd := range [][]string{
		{}, {"demo"}, {"agent"}, {"dial"}, {"trust"}, {"proxy"}, {"open"}, {"audit"}, {"audit", "verify"},
		{"audit", "export"}, {"status"}, {"bench"}, {"version"}, {"help"},
	} {
		name := strings.Join(append([]string{"netauth"}, cmd...), " ")
		want := "usage: " + name
		if len(cmd) == 0 || cmd[0] == "help" {
			want = "usage: netauth <command>"
		}
		forms := [][]string{
			append(cmd[:len(cmd):len(cmd)], "-h"),
			append(cmd[:len(cmd):len(cmd)], "-help"),
			append(cmd[:len(cmd):len(cmd)], "--help"),
			append([]string{"help"}, cmd...),
		}
		if len(cmd) > 1 {
			// netauth audit help verify
			forms = append(forms, []string{cmd[0], "help", cmd[1]})
		}
		for _, args := range forms {
			code, out, errOut := runCLI(args...)
			if code != 0 || !strings.HasPrefix(out, want) || errOut != "" {
				t.Errorf("netauth %s: exit %d, stdout starts %q, stderr %q; want exit 0, %q on stdout, nothing on stderr",
					strings.Join(args, " "), code, firstLine(out), errOut, want)
			}
		}
	}
}

// TestUsageErrors: a wrong command line exits 2 with one line on standard error that names the
// command, what is wrong, and where its help is; nothing on standard output.
func TestUsageErrors(t *testing.T) {
	log := filepath.Join(t.TempDir(), "audit.log")
	tests := []struct {
		args []string
		want string // the start of the line
	}{
		{nil, "netauth: missing a command: "},
		{[]string{"nosuch"}, `netauth: unknown command "nosuch"`},
		{[]string{"-nosuch"}, `netauth: unknown command "-nosuch"`},
		{[]string{"help", "nosuch"}, `netauth help: unknown command "nosuch"`},
		{[]string{"version", "extra"}, `netauth version: unexpected argument "extra"`},
		{[]string{"--version", "extra"}, `netauth version: unexpected argument "extra"`},
		{[]string{"demo", "extra"}, `netauth demo: unexpected argument "extra"`},
		{[]string{"demo", "-n", "0"}, "netauth demo: -n 0: "},
		{[]string{"demo", "-bogus"}, "netauth demo: flag provided but not defined: -bogus"},
		{[]string{"agent", "extra"}, `netauth agent: unexpected argument "extra"`},
		{[]string{"agent", "-s", "-c"}, "netauth agent: -s and -c are mutually exclusive"},
		{[]string{"agent", "-k", "-D"}, "netauth agent: -k cannot be combined"},
		{[]string{"dial"}, "netauth dial: missing the server address"},
		{[]string{"dial", "a:1", "b:2"}, `netauth dial: unexpected argument "b:2"`},
		{[]string{"dial", "-timeout", "soon", "a:1"}, `netauth dial: invalid value "soon" for flag -timeout`},
		{[]string{"trust"}, "netauth trust: missing the server address"},
		{[]string{"trust", "-bogus", "a:1"}, "netauth trust: flag provided but not defined: -bogus"},
		{[]string{"proxy"}, "netauth proxy: missing the server address"},
		{[]string{"open"}, "netauth open: missing the server address"},
		{[]string{"open", "a:1", "b:2"}, `netauth open: unexpected argument "b:2"`},
		{[]string{"open", "http://a:1/"}, `netauth open: server address "http://a:1/": want [user@]host:port[/path], without a scheme`},
		{[]string{"open", "a:0"}, `netauth open: server address "a:0": port "0" is not a port number`},
		{[]string{"open", "@a:1"}, `netauth open: server address "@a:1": empty user name before @`},
		{[]string{"open", "-port", "70000", "a:1"}, "netauth open: -port 70000: want a port number"},
		{[]string{"open", "-stop", "a:1/x"}, "netauth open: -stop takes only the server address"},
		{[]string{"audit"}, "netauth audit: missing a command: verify or export"},
		{[]string{"audit", "nosuch"}, `netauth audit: unknown command "nosuch"`},
		{[]string{"audit", "verify", log}, "netauth audit verify: -host-key is missing"},
		{[]string{"audit", "verify", "-host-key", log + ".pub"}, "netauth audit verify: missing the log file"},
		{[]string{"audit", "export", log}, "netauth audit export: -seq is missing"},
		{[]string{"audit", "export", "-seq", "1"}, "netauth audit export: missing the log file"},
		{[]string{"status", "extra"}, `netauth status: unexpected argument "extra"`},
		{[]string{"status", "-control", "none"}, "netauth status: -control none: "},
		{[]string{"status", "-bogus"}, "netauth status: flag provided but not defined: -bogus"},
		{[]string{"bench", "extra"}, `netauth bench: unexpected argument "extra"`},
		{[]string{"bench", "-scale", "100"}, `netauth bench: -scale "100": `},
		{[]string{"bench", "-only", "nonsense"}, "netauth bench: -only: "},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(tt.args...)
		cmd := tt.want[:strings.Index(tt.want, ":")]
		if code != 2 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, tt.want) ||
			!strings.HasSuffix(errOut, "(see '"+cmd+" -h')\n") {
			t.Errorf("netauth %q: exit %d, stdout %q, stderr %q; want exit 2 and one line %q... (see '%s -h')",
				tt.args, code, out, errOut, tt.want, cmd)
		}
	}
}

// TestVersion: --version, -version and netauth version print one line: the program, its
// version, and the Go release that built it.
func TestVersion(t *testing.T) {
	re := regexp.MustCompile(`^netauth \S+ \((commit [0-9a-f]+(, modified)?; )?go[0-9.]+\S*\)\n$`)
	for _, arg := range []string{"--version", "-version", "version"} {
		code, out, errOut := runCLI(arg)
		if code != 0 || !re.MatchString(out) || errOut != "" {
			t.Errorf("netauth %s: exit %d, stdout %q, stderr %q; want exit 0 and one line matching %s", arg, code, out, errOut, re)
		}
	}
}

// TestOneErrorPrefix: a failure is reported with the command's prefix once, although the
// error passed through packages that each put "netauth: " on it.
func TestOneErrorPrefix(t *testing.T) {
	// An agent with no keys, and a trusted server: the handshake fails signing the
	// authenticator, in the library, with "netauth: signing the authenticator: netauth: the
	// agent has no keys; ...".
	dir := t.TempDir()
	ln, sock, err := agent.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.New(agent.Options{}).Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	hostPub, _ := ssh.NewPublicKey(hostKey.Public())
	srv, err := netauth.Listen("tcp", "127.0.0.1:0", &netauth.ServerConfig{HostKey: hostKey, Service: "echo", Keys: netauth.StaticKeys{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	go srv.Serve(func(c *netauth.Conn) {})
	knownHosts := filepath.Join(dir, "known_hosts")
	if err := netauth.Trust(knownHosts, srv.Addr().String(), hostPub); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NETAUTH_AUTH_SOCK", sock)
	t.Setenv("NETAUTH_KNOWN_HOSTS", knownHosts)

	code, out, errOut := runCLI("dial", "alice@"+srv.Addr().String())
	want := "netauth dial: signing the authenticator: the agent has no keys"
	if code != 1 || out != "" || !strings.HasPrefix(errOut, want) || strings.Count(errOut, "netauth") != 1 || strings.Count(errOut, "\n") != 1 {
		t.Errorf("dial with an agent without keys: exit %d, stderr %q; want exit 1 and one line starting %q, with one prefix", code, errOut, want)
	}
}

func TestErrorText(t *testing.T) {
	inner := errors.New("netauth: the agent has no keys")
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("netauth: signing the authenticator: %w", inner), "signing the authenticator: the agent has no keys"},
		{fmt.Errorf("netauth: netauth: x (netauth: y; netauth: z)"), "x (y; z)"},
		{errors.New("run netauth trust a:1 first"), "run netauth trust a:1 first"},
	} {
		if got := errorText(tt.err); got != tt.want {
			t.Errorf("errorText(%q) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
