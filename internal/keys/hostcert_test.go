// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/testutil"
)

// certFixture is a host CA and a host key made by ssh-keygen, with helpers to sign host
// certificates of the host key the way an administrator does.
type certFixture struct {
	t              *testing.T
	dir            string
	ca, host       string // private key files
	caPub, hostPub ssh.PublicKey
}

func newCertFixture(t *testing.T) *certFixture {
	t.Helper()
	dir := t.TempDir()
	f := &certFixture{t: t, dir: dir}
	f.ca = sshKeygen(t, dir, "host_ca", "ed25519", "")
	f.host = sshKeygen(t, dir, "ssh_host_ed25519_key", "ed25519", "")
	f.caPub = testutil.ReadPublicKey(t, f.ca+".pub")
	f.hostPub = testutil.ReadPublicKey(t, f.host+".pub")
	return f
}

// sign runs ssh-keygen -s CA [-h] -I id -n principals [-V validity] on the host key's .pub
// and returns the certificate's file and the certificate.
func (f *certFixture) sign(name string, host bool, principals, validity string, extra ...string) (string, *ssh.Certificate) {
	f.t.Helper()
	pub := filepath.Join(f.dir, name+".pub")
	data, err := os.ReadFile(f.host + ".pub")
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(pub, data, 0o644); err != nil {
		f.t.Fatal(err)
	}
	args := []string{"-q", "-s", f.ca, "-I", name, "-n", principals}
	if host {
		args = append(args, "-h")
	}
	if validity != "" {
		args = append(args, "-V", validity)
	}
	args = append(append(args, extra...), pub)
	run(f.t, nil, openssh(f.t, "ssh-keygen"), args...)
	path := filepath.Join(f.dir, name+"-cert.pub")
	cert, ok := testutil.ReadPublicKey(f.t, path).(*ssh.Certificate)
	if !ok {
		f.t.Fatal("ssh-keygen did not write a certificate")
	}
	return path, cert
}

// TestHostCertificates: host certificates made by ssh-keygen -s -h, accepted through
// @cert-authority lines, with each way OpenSSH refuses one.
func TestHostCertificates(t *testing.T) {
	f := newCertFixture(t)
	dir := t.TempDir()
	netauthFile := filepath.Join(dir, "known_hosts")
	sshFile := filepath.Join(dir, "ssh_known_hosts")
	ca := authLine(f.caPub)
	_, valid := f.sign("valid", true, "h1.example.com,*.fleet.example.com", "-1d:+30d")
	_, expired := f.sign("expired", true, "h1.example.com", "-3d:-1d")
	_, future := f.sign("future", true, "h1.example.com", "+1d:+3d")
	_, wrongName := f.sign("wrong", true, "h2.example.com", "-1d:+30d")
	_, userCert := f.sign("user", false, "h1.example.com", "-1d:+30d")

	tests := []struct {
		name          string
		netauth, ssh  string // file contents
		host          string
		cert          *ssh.Certificate
		ok            bool
		revoked       bool
		problem       string // in CertProblem
		revokedCAWhat bool
	}{
		{name: "valid, netauth file, [pattern]:*", netauth: "@cert-authority [*.example.com]:* " + ca + "\n", host: "h1.example.com:7000", cert: valid, ok: true},
		{name: "valid, wildcard principal", netauth: "@cert-authority [*.example.com]:* " + ca + "\n", host: "x.fleet.example.com:7000", cert: valid, ok: true},
		{name: "valid, SSH file matches any port", ssh: "@cert-authority *.example.com " + ca + "\n", host: "H1.Example.com:7000", cert: valid, ok: true},
		{name: "netauth file pattern without port is port 22 only", netauth: "@cert-authority *.example.com " + ca + "\n", host: "h1.example.com:7000", cert: valid, problem: "no @cert-authority line"},
		{name: "expired", netauth: "@cert-authority [*.example.com]:* " + ca + "\n", host: "h1.example.com:7000", cert: expired, problem: "expired"},
		{name: "not yet valid", netauth: "@cert-authority [*.example.com]:* " + ca + "\n", host: "h1.example.com:7000", cert: future, problem: "not yet valid"},
		{name: "wrong principal", netauth: "@cert-authority [*.example.com]:* " + ca + "\n", host: "h1.example.com:7000", cert: wrongName, problem: "do not include h1.example.com"},
		{name: "user certificate", netauth: "@cert-authority [*.example.com]:* " + ca + "\n", host: "h1.example.com:7000", cert: userCert, problem: "not a host certificate"},
		{name: "CA for other names", netauth: "@cert-authority [*.example.org]:* " + ca + "\n", host: "h1.example.com:7000", cert: valid, problem: "no @cert-authority line"},
		{name: "negated name", ssh: "@cert-authority *.example.com,!h1.example.com " + ca + "\n", host: "h1.example.com:7000", cert: valid, problem: "no @cert-authority line"},
		{name: "CA revoked", netauth: "@cert-authority [*.example.com]:* " + ca + "\n", ssh: "@revoked * " + ca + "\n", host: "h1.example.com:7000", cert: valid, revoked: true, revokedCAWhat: true},
		{name: "certificate key revoked", netauth: "@cert-authority [*.example.com]:* " + ca + "\n@revoked * " + authLine(f.hostPub) + "\n", host: "h1.example.com:7000", cert: valid, revoked: true},
		{name: "expired, but the key is pinned", netauth: "[h1.example.com]:7000 " + authLine(f.hostPub) + "\n", host: "h1.example.com:7000", cert: expired, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, netauthFile, tt.netauth, 0o600)
			writeFile(t, sshFile, tt.ssh, 0o600)
			c := HostChecker{Files: []KnownHostsFile{{Path: netauthFile}, {Path: sshFile, SSH: true}}}
			err := c.Check(tt.host, tt.cert)
			if tt.ok {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			var herr *HostKeyError
			if !errors.As(err, &herr) {
				t.Fatalf("Check = %v, want a *HostKeyError", err)
			}
			if herr.Revoked != tt.revoked || herr.Changed || herr.Fingerprint != Fingerprint(f.hostPub) {
				t.Fatalf("Check = %#v", herr)
			}
			if tt.revoked {
				if (herr.RevokedWhat != "") != tt.revokedCAWhat || !strings.Contains(err.Error(), "REVOKED") {
					t.Fatalf("revoked: %v (what %q)", err, herr.RevokedWhat)
				}
				return
			}
			if !herr.Cert || !strings.Contains(herr.CertProblem, tt.problem) || !strings.Contains(err.Error(), tt.problem) {
				t.Fatalf("Check = %v; want the certificate problem %q", err, tt.problem)
			}
		})
	}
}

// TestKnownHostsHashedAndSSHFiles: hashed names (ssh-keygen -H), a plain key in OpenSSH's
// known_hosts trusting the host on any port, and which file decides when they disagree.
func TestKnownHostsHashedAndSSHFiles(t *testing.T) {
	dir := t.TempDir()
	user, system := filepath.Join(dir, "netauth_known_hosts"), filepath.Join(dir, "etc_netauth_known_hosts")
	dotSSH, etcSSH := filepath.Join(dir, "dot_ssh_known_hosts"), filepath.Join(dir, "ssh_known_hosts")
	k1, k2, k3 := newPub(t), newPub(t), newPub(t)
	check := func(host string, key ssh.PublicKey) error {
		return HostChecker{Files: []KnownHostsFile{{Path: user}, {Path: system}, {Path: dotSSH, SSH: true}, {Path: etcSSH, SSH: true}}}.Check(host, key)
	}

	// OpenSSH records port 22 as the plain host name, in a hashed file.
	writeFile(t, dotSSH, "server.example "+authLine(k1)+"\n[other.example]:2222 "+authLine(k2)+"\n", 0o600)
	run(t, nil, openssh(t, "ssh-keygen"), "-q", "-H", "-f", dotSSH)
	if data, _ := os.ReadFile(dotSSH); strings.Contains(string(data), "server.example") {
		t.Fatalf("ssh-keygen -H left a plain name: %s", data)
	}
	if err := check("server.example:7000", k1); err != nil {
		t.Fatalf("key of server.example in a hashed ~/.ssh/known_hosts, netauth port: %v", err)
	}
	if err := check("SERVER.example:7000", k1); err != nil {
		t.Fatalf("host names are case-insensitive: %v", err)
	}
	if err := check("other.example:2222", k2); err != nil {
		t.Fatalf("hashed [other.example]:2222 dialed on that port: %v", err)
	}
	// A plain (unhashed) "[host]:port" entry in an SSH file matches any port.
	writeFile(t, etcSSH, "[third.example]:2222,third-alias "+authLine(k3)+"\n", 0o600)
	if err := check("third.example:7000", k3); err != nil {
		t.Fatalf("[third.example]:2222 in ssh_known_hosts, netauth port 7000: %v", err)
	}
	if err := check("third-alias:7000", k3); err != nil {
		t.Fatalf("second name of the entry: %v", err)
	}
	// A different key in OpenSSH's files is sshd's: unknown, not changed, and it says so.
	err := check("server.example:7000", k3)
	var herr *HostKeyError
	if !errors.As(err, &herr) || herr.Changed || len(herr.SSHKnown) != 1 || !strings.Contains(err.Error(), "netauth trust server.example:7000") {
		t.Fatalf("another key than OpenSSH's = %v", err)
	}

	// A netauth file that pins the host decides: another key there is a change, even if
	// OpenSSH's file lists the presented key.
	writeFile(t, system, "[server.example]:7000 "+authLine(k2)+"\n", 0o600)
	err = check("server.example:7000", k1)
	if !errors.As(err, &herr) || !herr.Changed || herr.Path != system || !strings.Contains(err.Error(), "HOST KEY CHANGED") {
		t.Fatalf("k1 against /etc/netauth's pin k2 = %v", err)
	}
	if err := check("server.example:7000", k2); err != nil {
		t.Fatalf("the system file's pin: %v", err)
	}
	// The user's file comes first and wins over the system file.
	writeFile(t, user, "[server.example]:7000 "+authLine(k1)+"\n", 0o600)
	if err := check("server.example:7000", k1); err != nil {
		t.Fatalf("the user's pin: %v", err)
	}
	if err := check("server.example:7000", k2); !errors.As(err, &herr) || !herr.Changed || herr.Path != user {
		t.Fatalf("k2 against the user's pin k1 = %v", err)
	}
	// netauth files match the exact port, hashed too.
	k4 := newPub(t)
	writeFile(t, user, "[server.example]:7000 "+authLine(k1)+"\n[server.example]:7000 "+authLine(k4)+"\n", 0o600)
	run(t, nil, openssh(t, "ssh-keygen"), "-q", "-H", "-f", user)
	if err := check("server.example:7000", k4); err != nil {
		t.Fatalf("hashed [server.example]:7000 in the user's file: %v", err)
	}
	if err := check("server.example:7001", k4); err == nil {
		t.Fatal("a netauth pin for port 7000 trusted port 7001")
	}
	// A key revoked in any file is refused, whatever pins it.
	writeFile(t, etcSSH, "@revoked * "+authLine(k1)+"\n", 0o600)
	if err := check("server.example:7000", k1); !errors.As(err, &herr) || !herr.Revoked {
		t.Fatalf("k1 revoked in ssh_known_hosts = %v", err)
	}
}

// TestLoadHostCertificate: a server refuses at startup a certificate it must not present.
func TestLoadHostCertificate(t *testing.T) {
	f := newCertFixture(t)
	key, err := LoadHostKey(f.host) // ssh-keygen's OpenSSH-format key, as /etc/ssh has it
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	good, _ := f.sign("good", true, "h1.example.com", "-1d:+30d")
	cert, warning, err := LoadHostCertificate(good, key, now)
	if err != nil || warning != "" || cert.KeyId != "good" {
		t.Fatalf("LoadHostCertificate(valid) = %v, %q, %v", cert, warning, err)
	}
	soon, _ := f.sign("soon", true, "h1.example.com", "-1d:+2d")
	if _, warning, err := LoadHostCertificate(soon, key, now); err != nil || !strings.Contains(warning, "expires") {
		t.Fatalf("certificate expiring in 2 days: warning %q, %v", warning, err)
	}
	expired, _ := f.sign("expired", true, "h1.example.com", "-3d:-1d")
	user, _ := f.sign("user", false, "h1.example.com", "-1d:+30d")
	other := sshKeygen(t, f.dir, "other_host_key", "ed25519", "")
	otherKey, err := LoadHostKey(other)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, path string
		key        []byte
		want       string
	}{
		{"expired", expired, key, "expired"},
		{"user certificate", user, key, "not a host certificate"},
		{"another key's certificate", good, otherKey, "not the host key"},
		{"plain key", f.host + ".pub", key, "not a certificate"},
		{"missing", filepath.Join(f.dir, "nothing-cert.pub"), key, "no such file"},
	} {
		if _, _, err := LoadHostCertificate(tt.path, tt.key, now); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: LoadHostCertificate = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}
