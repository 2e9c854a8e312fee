// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/agent"
	"ubns.dev/netauth/internal/audit"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/testutil"
)

// certUser is a user key with an OpenSSH user certificate made by ssh-keygen -s, held by a
// stock ssh-agent (ssh-add loads id and id-cert.pub together).
type certUser struct {
	dir, ca, id string
	caPub, pub  ssh.PublicKey
	cert        *ssh.Certificate
	sock        string
}

// newCertUser makes a CA and a key, certifies the key with certOpts (ssh-keygen -s options)
// and loads it into a new ssh-agent.
func newCertUser(t *testing.T, certOpts ...string) *certUser {
	t.Helper()
	u := &certUser{dir: t.TempDir()}
	u.ca, u.id = filepath.Join(u.dir, "ca"), filepath.Join(u.dir, "id")
	testutil.SSHKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "ca", "-f", u.ca)
	testutil.SSHKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", "id", "-f", u.id)
	testutil.SSHKeygen(t, append(append([]string{"-q", "-s", u.ca}, certOpts...), u.id+".pub")...)
	u.caPub = testutil.ReadPublicKey(t, u.ca+".pub")
	u.pub = testutil.ReadPublicKey(t, u.id+".pub")
	u.cert = testutil.ReadPublicKey(t, u.id+"-cert.pub").(*ssh.Certificate)
	u.sock = startOpenSSHAgent(t)
	sshAdd(t, u.sock, u.id)
	return u
}

// krl writes a KRL made by ssh-keygen -k -s ca.pub from spec and returns it loaded.
func (u *certUser) krl(t *testing.T, spec string) *RevokedKeys {
	t.Helper()
	specFile, krlFile := filepath.Join(t.TempDir(), "spec"), filepath.Join(t.TempDir(), "krl")
	if err := os.WriteFile(specFile, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.SSHKeygen(t, "-q", "-k", "-f", krlFile, "-s", u.ca+".pub", specFile)
	r, err := LoadRevokedKeys(krlFile)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestUserCertificateEndToEnd: a stock ssh-agent holds a key and its certificate; the server
// trusts the CA and knows no key of the user. The client's plain key is refused, its
// certificate accepted; the identity names the certificate; the next connection resumes; and
// the audit record of a full handshake, exported, is accepted by ssh-keygen -Y verify through
// a cert-authority line.
func TestUserCertificateEndToEnd(t *testing.T) {
	u := newCertUser(t, "-I", "alice@laptop", "-n", "alice,staff", "-z", "42", "-O", "source-address=127.0.0.0/8")
	var mu sync.Mutex
	var seen []Identity
	ts := newTestServer(t, func(c *ServerConfig) {
		c.TrustedUserCAKeys = []ssh.PublicKey{u.caPub}
		c.Authorize = func(_ context.Context, id *Identity) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, *id)
			return nil
		}
	})
	ts.serveEcho()
	cfg := &Config{User: "alice", AgentSocket: u.sock, KnownHostsFile: ts.knownHosts}
	first := dialEcho(t, ts.addr, cfg)
	if first.Resumed || first.KeyType != u.cert.Type() {
		t.Fatalf("first connection: resumed %v, key type %s", first.Resumed, first.KeyType)
	}
	second := dialEcho(t, ts.addr, cfg)
	if !second.Resumed {
		t.Fatal("second connection was not resumed")
	}
	mu.Lock()
	if len(seen) != 2 {
		t.Fatalf("%d connections authorized, want 2", len(seen))
	}
	for i, id := range seen {
		if id.CertKeyID != "alice@laptop" || id.CertSerial != 42 || id.CertCAFingerprint != ssh.FingerprintSHA256(u.caPub) ||
			id.KeyFingerprint != ssh.FingerprintSHA256(u.cert) {
			t.Errorf("connection %d: server identity %+v", i, id)
		}
	}
	mu.Unlock()

	c, err := Dial("tcp", ts.addr, &Config{User: "alice", AgentSocket: u.sock, KnownHostsFile: ts.knownHosts, DisableResumption: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	id := seen[len(seen)-1]
	mu.Unlock()
	rec := audit.NewRecord(&id, "127.0.0.1:1", audit.Accepted)
	if rec.CertKeyID != "alice@laptop" || rec.CertSerial != 42 || rec.CertCAFP != ssh.FingerprintSHA256(u.caPub) {
		t.Fatalf("audit record: %+v", rec)
	}
	stmt, sig, signers, err := audit.Export(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := `alice cert-authority,namespaces="netauth-v1@ubns.dev" ` + string(ssh.MarshalAuthorizedKey(u.caPub))
	if string(signers) != want {
		t.Fatalf("allowed_signers line %q, want %q", signers, want)
	}
	dir := t.TempDir()
	signersFile, sigFile := filepath.Join(dir, "allowed_signers"), filepath.Join(dir, "statement.sig")
	os.WriteFile(signersFile, signers, 0o600)
	os.WriteFile(sigFile, sig, 0o600)
	verify := func(principal string, message []byte) error {
		cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", signersFile, "-I", principal, "-n", handshake.Namespace, "-s", sigFile)
		cmd.Stdin = bytes.NewReader(message)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return errors.New(string(out))
		}
		return nil
	}
	if err := verify("alice", stmt); err != nil {
		t.Fatalf("ssh-keygen -Y verify refused the exported record: %v", err)
	}
	if err := verify("alice", bytes.Replace(stmt, []byte("user alice"), []byte("user mallory"), 1)); err == nil {
		t.Fatal("ssh-keygen -Y verify accepted a changed statement")
	}
}

// TestUserCertificateRefusals: each refused certificate leaves the client not_authorized.
func TestUserCertificateRefusals(t *testing.T) {
	type setup struct {
		certOpts []string
		modify   func(u *certUser, c *ServerConfig)
		ok       bool
	}
	base := []string{"-I", "alice@laptop", "-n", "alice", "-z", "42"}
	cases := map[string]setup{
		"accepted": {base, nil, true},
		"no trusted CA": {base, func(u *certUser, c *ServerConfig) {
			c.TrustedUserCAKeys = nil
		}, false},
		"wrong principal":         {[]string{"-I", "x", "-n", "bob"}, nil, false},
		"expired":                 {append(base, "-V", "20200101:20200201"), nil, false},
		"not yet valid":           {append(base, "-V", "+52w:+104w"), nil, false},
		"source-address mismatch": {append(base, "-O", "source-address=192.0.2.0/24"), nil, false},
		"source-address match":    {append(base, "-O", "source-address=127.0.0.1"), nil, true},
		"force-command":           {append(base, "-O", "force-command=/bin/sh"), nil, false},
		"unknown critical option": {append(base, "-O", "critical:x@example.com=1"), nil, false},
		"host certificate":        {append(base, "-h"), nil, false}, // auth_failed: check 5
		"revoked serial (KRL)": {base, func(u *certUser, c *ServerConfig) {
			c.RevokedKeys = u.krl(t, "serial: 42\n")
		}, false},
		"other serial revoked (KRL)": {base, func(u *certUser, c *ServerConfig) {
			c.RevokedKeys = u.krl(t, "serial: 43\n")
		}, true},
		"revoked key id (KRL)": {base, func(u *certUser, c *ServerConfig) {
			c.RevokedKeys = u.krl(t, "id: alice@laptop\n")
		}, false},
		"revoked key (plain list)": {base, func(u *certUser, c *ServerConfig) {
			r, err := ParseRevokedKeys(ssh.MarshalAuthorizedKey(u.pub))
			if err != nil {
				t.Fatal(err)
			}
			c.RevokedKeys = r
		}, false},
		"revoked CA (plain list)": {base, func(u *certUser, c *ServerConfig) {
			r, err := ParseRevokedKeys(ssh.MarshalAuthorizedKey(u.caPub))
			if err != nil {
				t.Fatal(err)
			}
			c.RevokedKeys = r
		}, false},
		"principals file": {[]string{"-I", "x", "-n", "staff"}, func(u *certUser, c *ServerConfig) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "alice"), []byte("staff\n"), 0o644)
			c.AuthorizedPrincipals = []PrincipalSource{AuthorizedPrincipalsDir(dir)}
		}, true},
		"principals file without the principal": {base, func(u *certUser, c *ServerConfig) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "alice"), []byte("staff\n"), 0o644)
			c.AuthorizedPrincipals = []PrincipalSource{AuthorizedPrincipalsDir(dir)}
		}, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			u := newCertUser(t, tc.certOpts...)
			ts := newTestServer(t, func(c *ServerConfig) {
				c.TrustedUserCAKeys = []ssh.PublicKey{u.caPub}
				if tc.modify != nil {
					tc.modify(u, c)
				}
			})
			ts.serveEcho()
			c, err := Dial("tcp", ts.addr, &Config{User: "alice", AgentSocket: u.sock, KnownHostsFile: ts.knownHosts})
			if err == nil {
				err = c.Handshake()
				c.Close()
			}
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			want := CodeNotAuthorized
			if name == "host certificate" {
				want = CodeAuthFailed
			}
			var re *RefusedError
			if !errors.As(err, &re) || re.Code != want {
				t.Fatalf("got %v, want %v", err, want)
			}
		})
	}
}

// TestCAKeyIsNoUserKey: the CA's own key, used as a user key, is not authorized by being a
// trusted CA.
func TestCAKeyIsNoUserKey(t *testing.T) {
	u := newCertUser(t, "-I", "x", "-n", "alice")
	sock := startOpenSSHAgent(t)
	sshAdd(t, sock, u.ca)
	ts := newTestServer(t, func(c *ServerConfig) { c.TrustedUserCAKeys = []ssh.PublicKey{u.caPub} })
	ts.serveEcho()
	c, err := Dial("tcp", ts.addr, &Config{User: "alice", AgentSocket: sock, KnownHostsFile: ts.knownHosts})
	if err == nil {
		err = c.Handshake()
		c.Close()
	}
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeNotAuthorized {
		t.Fatalf("got %v, want not_authorized", err)
	}
}

// TestRevokedPlainKey: RevokedKeys applies to plain keys too, after the key source found them.
func TestRevokedPlainKey(t *testing.T) {
	alice := newTestUser(t, "alice")
	list, err := ParseRevokedKeys(ssh.MarshalAuthorizedKey(alice.signer.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, func(c *ServerConfig) { c.RevokedKeys = list })
	ts.allow(alice)
	ts.serveEcho()
	c, err := Dial("tcp", ts.addr, ts.clientConfig(alice))
	if err == nil {
		err = c.Handshake()
		c.Close()
	}
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != CodeNotAuthorized {
		t.Fatalf("got %v, want not_authorized", err)
	}
}

// TestLargeCertificateResumes: a user certificate far larger than a plain key (here 255
// principals, ssh-keygen's most, some 10 KiB) is kept in the client's cached session, so its next connection
// resumes, whether the session is cached in process memory or in a netauth agent chained to
// the stock ssh-agent that holds the certificate.
func TestLargeCertificateResumes(t *testing.T) {
	principals := []string{"alice"}
	for i := range 254 {
		principals = append(principals, fmt.Sprintf("a-rather-long-group-name-%04d", i))
	}
	u := newCertUser(t, "-I", "alice@laptop", "-n", strings.Join(principals, ","))
	if n := len(u.cert.Marshal()); n < 8000 {
		t.Fatalf("the certificate is %d bytes; this test needs one over 8000", n)
	}
	ts := newTestServer(t, func(c *ServerConfig) { c.TrustedUserCAKeys = []ssh.PublicKey{u.caPub} })
	ts.serveEcho()

	ag := agent.New(agent.Options{Upstream: u.sock})
	ln, netauthSock, err := agent.Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	for _, tc := range []struct {
		name string
		cfg  *Config
	}{
		{"memory cache", &Config{User: "alice", AgentSocket: u.sock, KnownHostsFile: ts.knownHosts, TicketCache: NewMemoryTicketCache(4)}},
		{"netauth agent", &Config{User: "alice", AgentSocket: netauthSock, KnownHostsFile: ts.knownHosts}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if first := dialEcho(t, ts.addr, tc.cfg); first.Resumed || first.KeyType != u.cert.Type() {
				t.Fatalf("first connection: resumed %v, key type %s", first.Resumed, first.KeyType)
			}
			if second := dialEcho(t, ts.addr, tc.cfg); !second.Resumed {
				t.Fatal("the second connection was not resumed: the session with the large certificate was not kept")
			}
		})
	}
}
