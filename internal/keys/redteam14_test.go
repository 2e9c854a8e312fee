// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// redteamHostCert returns a host certificate of a fresh Ed25519 key for principals, signed by
// ca.
func redteamHostCert(t *testing.T, ca ssh.Signer, principals ...string) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{Key: newPub(t), CertType: ssh.HostCert, KeyId: "redteam",
		ValidPrincipals: principals, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// redteamKnownHosts writes a netauth known_hosts file with the lines and returns a checker
// for it.
func redteamKnownHosts(t *testing.T, lines ...string) HostChecker {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return HostChecker{Files: []KnownHostsFile{{Path: path}}}
}

// A host certificate names the hosts it is for; one for another host must not be accepted
// when the dialed address has an empty host (":port", which reaches the local machine):
// the principal check must not be skipped for the client.
func TestRedteamHostCertEmptyHost(t *testing.T) {
	ca := newSigner(t, "ed25519")
	cert := redteamHostCert(t, ca, "db7.example.com")
	hc := redteamKnownHosts(t, "@cert-authority * "+authLine(ca.PublicKey()))
	// The fixture works: the certificate is accepted for its host, refused for another.
	if err := hc.Check("db7.example.com:7000", cert); err != nil {
		t.Fatalf("certificate refused for its own host: %v", err)
	}
	if err := hc.Check("web1.example.com:7000", cert); err == nil {
		t.Fatal("certificate for db7 accepted for web1")
	}
	err := hc.Check(":7000", cert)
	var herr *HostKeyError
	if !errors.As(err, &herr) || !herr.Cert {
		t.Errorf("certificate for db7.example.com checked for %q: err = %v, want a refused certificate", ":7000", err)
	}
}

// OpenSSH (8.8 and later) refuses certificates an RSA CA signed with ssh-rsa (SHA-1), whose
// collisions are practical; so do netauth's user certificate checks. A host certificate so
// signed must be refused too.
func TestRedteamHostCertSHA1Signature(t *testing.T) {
	rsaCA := newSigner(t, "rsa-3072")
	sha1CA, err := ssh.NewSignerWithAlgorithms(rsaCA.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSA})
	if err != nil {
		t.Fatal(err)
	}
	sha2CA, err := ssh.NewSignerWithAlgorithms(rsaCA.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSASHA512})
	if err != nil {
		t.Fatal(err)
	}
	hc := redteamKnownHosts(t, "@cert-authority * "+authLine(rsaCA.PublicKey()))
	good := redteamHostCert(t, sha2CA, "db7.example.com")
	if good.Signature.Format != ssh.KeyAlgoRSASHA512 {
		t.Fatalf("fixture: signature format %q", good.Signature.Format)
	}
	if err := hc.Check("db7.example.com:7000", good); err != nil {
		t.Fatalf("rsa-sha2-512 certificate refused: %v", err)
	}
	bad := redteamHostCert(t, sha1CA, "db7.example.com")
	if bad.Signature.Format != ssh.KeyAlgoRSA {
		t.Fatalf("fixture: signature format %q, want ssh-rsa", bad.Signature.Format)
	}
	if err := hc.Check("db7.example.com:7000", bad); err == nil {
		t.Error("host certificate signed with ssh-rsa (SHA-1) accepted")
	}
}

// A @revoked line revokes the key it holds whatever form the line gives it in: OpenSSH
// compares public keys with sshkey_equal_public, so a line that holds a host certificate
// (pasted from the server, say) revokes the certificate's key, plain or certified.
func TestRedteamRevokedCertificateLine(t *testing.T) {
	ca := newSigner(t, "ed25519")
	cert := redteamHostCert(t, ca, "db7.example.com")
	certLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
	hc := redteamKnownHosts(t,
		"@cert-authority * "+authLine(ca.PublicKey()),
		"[db7.example.com]:7000 "+authLine(cert.Key),
		"@revoked * "+certLine)
	for _, k := range []ssh.PublicKey{cert.Key, cert} {
		err := hc.Check("db7.example.com:7000", k)
		var herr *HostKeyError
		if !errors.As(err, &herr) || !herr.Revoked {
			t.Errorf("%s whose certificate a @revoked line holds: err = %v, want revoked", k.Type(), err)
		}
	}
}
