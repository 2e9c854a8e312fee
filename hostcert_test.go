// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// hostCertSetup is a host key made by ssh-keygen (in the format of
// /etc/ssh/ssh_host_ed25519_key) and a host CA.
type hostCertSetup struct {
	dir      string
	hostPath string
	hostPub  ssh.PublicKey
	caPath   string
	caPub    ssh.PublicKey
}

func newHostCertSetup(t *testing.T) *hostCertSetup {
	t.Helper()
	s := &hostCertSetup{dir: t.TempDir()}
	s.hostPath, s.hostPub = sshKeygen(t, s.dir, "ed25519")
	caDir := filepath.Join(s.dir, "ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	s.caPath, s.caPub = sshKeygen(t, caDir, "ed25519")
	return s
}

// sign makes a host certificate with ssh-keygen -s CA -h and returns its file.
func (s *hostCertSetup) sign(t *testing.T, id, principals, validity string) string {
	t.Helper()
	pub := filepath.Join(s.dir, id+".pub")
	data, err := os.ReadFile(s.hostPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-q", "-s", s.caPath, "-h", "-I", id, "-n", principals, "-V", validity, pub).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -s: %v: %s", err, out)
	}
	return filepath.Join(s.dir, id+"-cert.pub")
}

// server starts an echo server with the ssh-keygen host key and, if certFile is not
// empty, its certificate.
func (s *hostCertSetup) server(t *testing.T, certFile string) (*testServer, *testUser) {
	t.Helper()
	key, created, err := LoadOrCreateHostKey(s.hostPath)
	if err != nil || created {
		t.Fatalf("loading ssh-keygen's host key: %v (created %v)", err, created)
	}
	var cert *ssh.Certificate
	if certFile != "" {
		if cert, _, err = LoadHostCertificate(certFile, key); err != nil {
			t.Fatal(err)
		}
	}
	ts := newTestServer(t, func(c *ServerConfig) {
		c.HostKey = key
		c.HostCertificate = cert
	})
	u := newTestUser(t, "alice")
	ts.allow(u)
	ts.serveEcho()
	return ts, u
}

func echoHi(t *testing.T, c *Conn) {
	t.Helper()
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

// TestDialHostCertificate: a server presenting a host certificate made by ssh-keygen is
// trusted through a @cert-authority line, with no netauth trust; resumption works and checks
// the certificate again; the certificate names 127.0.0.1, so localhost is another name.
func TestDialHostCertificate(t *testing.T) {
	s := newHostCertSetup(t)
	ts, u := s.server(t, s.sign(t, "host1", "127.0.0.1", "-1d:+30d"))
	_, port, _ := net.SplitHostPort(ts.addr)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	caLine := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(s.caPub)), "\n")
	if err := os.WriteFile(kh, []byte("@cert-authority [127.0.0.1]:*,[localhost]:* "+caLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := ts.clientConfig(u)
	cfg.KnownHostsFile = kh
	for i, wantResumed := range []bool{false, true} {
		c, err := Dial("tcp", ts.addr, cfg)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		echoHi(t, c)
		id := c.Identity()
		if id.Resumed != wantResumed || ssh.FingerprintSHA256(id.HostKey) != ssh.FingerprintSHA256(s.hostPub) {
			t.Fatalf("dial %d: resumed %v, host key %s", i, id.Resumed, ssh.FingerprintSHA256(id.HostKey))
		}
		c.Close()
	}
	// localhost is not 127.0.0.1 for the certificate's principals (as for OpenSSH).
	_, err := Dial("tcp", net.JoinHostPort("localhost", port), &Config{User: u.name, Signer: u.signer,
		KnownHostsFile: kh, KnownHostsFiles: []KnownHostsFile{}, DisableResumption: true})
	var herr *HostKeyError
	if !errors.As(err, &herr) || !herr.Cert || !strings.Contains(herr.CertProblem, "do not include localhost") {
		t.Fatalf("dial localhost with a certificate for 127.0.0.1: %v", err)
	}
	// The CA revoked: refused, and the cached session is not resumed either.
	if err := os.WriteFile(kh, []byte("@cert-authority [127.0.0.1]:* "+caLine+"\n@revoked * "+caLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial("tcp", ts.addr, cfg); !errors.As(err, &herr) || !herr.Revoked {
		t.Fatalf("dial with the CA revoked: %v", err)
	}
}

// TestListenRefusesBadHostCertificate: an expired certificate, or one of another key, is
// refused when the server starts.
func TestListenRefusesBadHostCertificate(t *testing.T) {
	s := newHostCertSetup(t)
	key, _, err := LoadOrCreateHostKey(s.hostPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadHostCertificate(s.sign(t, "old", "127.0.0.1", "-3d:-1d"), key); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("LoadHostCertificate(expired) = %v", err)
	}
	other := newHostCertSetup(t)
	data, _ := os.ReadFile(other.sign(t, "other", "127.0.0.1", "-1d:+30d"))
	otherCert, _, _, _, _ := ssh.ParseAuthorizedKey(data)
	_, err = Listen("tcp", "127.0.0.1:0", &ServerConfig{HostKey: key, HostCertificate: otherCert.(*ssh.Certificate), Keys: StaticKeys{}})
	if err == nil || !strings.Contains(err.Error(), "not the host key") {
		t.Fatalf("Listen with another key's certificate = %v", err)
	}
}

// TestDialSSHKnownHosts: a server using the machine's SSH host key is trusted through the
// user's ~/.ssh/known_hosts, where ssh recorded it for port 22 (hashed); the user's netauth
// file pinning another key wins, as a changed key.
func TestDialSSHKnownHosts(t *testing.T) {
	s := newHostCertSetup(t)
	ts, u := s.server(t, "")
	dir := t.TempDir()
	dotSSH := filepath.Join(dir, "dot_ssh_known_hosts") // stands for ~/.ssh/known_hosts
	line := "127.0.0.1 " + string(ssh.MarshalAuthorizedKey(s.hostPub))
	if err := os.WriteFile(dotSSH, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-H", "-f", dotSSH).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -H: %v: %s", err, out)
	}
	cfg := ts.clientConfig(u)
	cfg.KnownHostsFile = filepath.Join(dir, "netauth_known_hosts") // missing: nothing pinned
	cfg.KnownHostsFiles = []KnownHostsFile{{Path: filepath.Join(dir, "etc_netauth_known_hosts")}, {Path: dotSSH, SSH: true}}
	c, err := Dial("tcp", ts.addr, cfg)
	if err != nil {
		t.Fatalf("dial a host known to ssh: %v", err)
	}
	echoHi(t, c)
	c.Close()

	if err := Trust(cfg.KnownHostsFile, ts.addr, newTestServer(t, nil).hostPub); err != nil {
		t.Fatal(err)
	}
	cfg.DisableResumption = true
	_, err = Dial("tcp", ts.addr, cfg)
	var herr *HostKeyError
	if !errors.As(err, &herr) || !herr.Changed || herr.Path != cfg.KnownHostsFile {
		t.Fatalf("dial with another key pinned in the netauth file: %v", err)
	}
}
