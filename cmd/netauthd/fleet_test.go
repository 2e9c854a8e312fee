// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
)

// fleetKeygen runs ssh-keygen with args.
func fleetKeygen(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// freePortOn returns a free TCP address on ip.
func freePortOn(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// fleetAgent runs a stock ssh-agent holding the key id and its certificate id-cert.pub.
func fleetAgent(t *testing.T, id string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent does not accept connections: %v", err)
		}
	}
	add := exec.Command("ssh-add", id)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}
	return sock
}

// TestFleet: three netauthd processes (the built binaries, on 127.0.0.2, .3 and .4), one host
// CA and one user CA, two users. No host is trusted with netauth trust and no host has an
// authorized key for anyone: each presents a host certificate, the clients' only known_hosts
// line is the host CA's @cert-authority line, and the users authenticate with certificates
// held by stock ssh-agents. Every connection succeeds; the second connection to each host
// resumes, with that host's ticket (the first to each host is a full handshake, though the
// client holds tickets of the others); and revoking one user's serial in the KRL the three
// share (ssh-keygen -k -u, no reload) closes that user's live sessions on every host and
// refuses the next ones, while the other user's go on.
func TestFleet(t *testing.T) {
	for _, tool := range []string{"ssh-keygen", "ssh-agent", "ssh-add"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (CI installs openssh-client)", tool)
		}
	}
	e := setup(t)
	shared := filepath.Join(e.dir, "fleet")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	hostCA, userCA := filepath.Join(shared, "host_ca"), filepath.Join(shared, "user_ca")
	fleetKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "host CA", "-f", hostCA)
	fleetKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "user CA", "-f", userCA)
	krlFile := filepath.Join(shared, "revoked_keys")
	fleetKeygen(t, "-q", "-k", "-f", krlFile)

	// The users' keys, certified for their own names, in their agents.
	type user struct {
		name, sock string
		cert       *ssh.Certificate
		cache      netauth.TicketCache
	}
	var users []*user
	for i, name := range []string{"netauth-alice", "netauth-bob"} {
		id := filepath.Join(t.TempDir(), "id")
		fleetKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", id)
		fleetKeygen(t, "-q", "-s", userCA, "-I", name+"@fleet", "-n", name, "-z", fmt.Sprint(100+i), "-V", "-5m:+1h", id+".pub")
		text, err := os.ReadFile(id + "-cert.pub")
		if err != nil {
			t.Fatal(err)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(text)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, &user{name: name, sock: fleetAgent(t, id), cert: k.(*ssh.Certificate), cache: netauth.NewMemoryTicketCache(8)})
	}

	// Three hosts, each with its own host key and a certificate naming its address.
	var addrs []string
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		dir := filepath.Join(e.dir, "host-"+ip)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		hostKey := filepath.Join(dir, "host_key")
		fleetKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", hostKey)
		fleetKeygen(t, "-q", "-s", hostCA, "-h", "-I", "netauthd "+ip, "-n", ip, "-V", "-5m:+30d", hostKey+".pub")
		addr := freePortOn(t, ip)
		conf := filepath.Join(dir, "netauthd.conf")
		text := fmt.Sprintf(`host-key %s
audit-log %s/audit.log
authorized-keys-dir none
home-authorized-keys no
trusted-user-ca-keys %s.pub
revoked-keys %s
host-certificate %s-cert.pub
revocation-check 200ms

service whoami {
    listen %s
    program %s
    args -worker whoami
    users netauth-alice netauth-bob
}
`, hostKey, dir, userCA, krlFile, hostKey, addr, e.bin)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(e.bin, "-config", conf, "-control", filepath.Join(dir, "run", "control"))
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		watch(stderr).wait(t, `netauthd running" host_key=`, 10*time.Second)
		addrs = append(addrs, addr)
	}

	// The clients trust the host CA for the fleet's addresses, on any port, and nothing else.
	caPub, err := os.ReadFile(hostCA + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(known, append([]byte("@cert-authority [127.0.0.2]:*,[127.0.0.3]:*,[127.0.0.4]:* "), caPub...), 0o644); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(t.TempDir(), "own_known_hosts") // the user's own file: empty
	config := func(u *user) *netauth.Config {
		return &netauth.Config{User: u.name, AgentSocket: u.sock, KeyFingerprint: ssh.FingerprintSHA256(u.cert),
			KnownHostsFile: own, KnownHostsFiles: []netauth.KnownHostsFile{{Path: known}}, TicketCache: u.cache}
	}
	type session struct {
		c *netauth.Conn
		r *bufio.Reader
	}
	ask := func(s *session) (map[string]string, error) {
		_ = s.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintln(s.c, "?"); err != nil {
			return nil, err
		}
		line, err := s.r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		out := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			out[k] = v
		}
		return out, nil
	}
	dial := func(u *user, addr string) (*session, map[string]string, error) {
		c, err := netauth.Dial("tcp", addr, config(u))
		if err != nil {
			return nil, nil, err
		}
		t.Cleanup(func() { c.Close() })
		s := &session{c, bufio.NewReader(c)}
		got, err := ask(s)
		return s, got, err
	}

	// Every user on every host; the first connection to each host is a full handshake (no
	// other host's ticket is used), the second resumes.
	live := map[string][]*session{}
	for _, u := range users {
		for _, addr := range addrs {
			for i, want := range []string{"false", "true"} {
				s, got, err := dial(u, addr)
				if err != nil {
					t.Fatalf("%s to %s, connection %d: %v", u.name, addr, i, err)
				}
				if got["user"] != u.name || got["resumed"] != want || got["key"] != ssh.FingerprintSHA256(u.cert) {
					t.Fatalf("%s to %s, connection %d: %v, want resumed=%s with the certificate", u.name, addr, i, got, want)
				}
				live[u.name] = append(live[u.name], s)
			}
		}
	}

	// Revoke alice's serial in the one KRL the three hosts read.
	spec := filepath.Join(t.TempDir(), "spec")
	if err := os.WriteFile(spec, []byte(fmt.Sprintf("serial: %d\n", users[0].cert.Serial)), 0o600); err != nil {
		t.Fatal(err)
	}
	fleetKeygen(t, "-q", "-k", "-u", "-f", krlFile, "-s", userCA+".pub", spec)
	for _, s := range live["netauth-alice"] {
		_ = s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := s.r.ReadByte()
		if !errors.Is(err, netauth.ErrRevoked) {
			t.Fatalf("alice's session on %s after the revocation: %v, want access revoked within 5s", s.c.RemoteAddr(), err)
		}
	}
	for _, addr := range addrs {
		// Her next connection (she holds a ticket for each host) is refused on every host.
		_, _, err := dial(users[0], addr)
		var re *netauth.RefusedError
		if !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
			t.Fatalf("alice to %s after the revocation: %v, want not_authorized", addr, err)
		}
		// Bob's go on, live and new.
		if _, got, err := dial(users[1], addr); err != nil || got["user"] != "netauth-bob" {
			t.Fatalf("bob to %s after alice's revocation: %v %v", addr, got, err)
		}
	}
	for _, s := range live["netauth-bob"] {
		if got, err := ask(s); err != nil || got["user"] != "netauth-bob" {
			t.Fatalf("bob's live session on %s after alice's revocation: %v %v", s.c.RemoteAddr(), got, err)
		}
	}
}
