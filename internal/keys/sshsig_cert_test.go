// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// certKey makes a key of type typ and a certificate for it signed by a new CA with
// ssh-keygen -s (extra are more options, such as -h), and returns the key's path and the CA's
// public key.
func certKey(t *testing.T, dir, typ string, extra ...string) (string, ssh.PublicKey) {
	t.Helper()
	ca := sshKeygen(t, dir, "ca", "ed25519", "")
	var keyArgs []string
	if typ == "rsa" {
		keyArgs = []string{"-b", "3072"}
	}
	id := sshKeygen(t, dir, "id", typ, "", keyArgs...)
	run(t, nil, openssh(t, "ssh-keygen"), append(append([]string{"-q", "-s", ca, "-I", "alice@test", "-n", "alice", "-z", "7"}, extra...), id+".pub")...)
	caText, err := os.ReadFile(ca + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	caPub, _, _, _, err := ssh.ParseAuthorizedKey(caText)
	if err != nil {
		t.Fatal(err)
	}
	return id, caPub
}

// keygenSignWithCert has ssh-keygen -Y sign sign message with the certificate id-cert.pub,
// whose key an ssh-agent holds: what a user with a certificate gets from ssh-keygen.
func keygenSignWithCert(t *testing.T, id string, message []byte) []byte {
	t.Helper()
	sock := startAgent(t)
	env := []string{"SSH_AUTH_SOCK=" + sock}
	if _, err := runErr(nil, env, openssh(t, "ssh-add"), "-q", id); err != nil {
		t.Fatalf("ssh-add: %v", err)
	}
	msgFile := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(msgFile, message, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runErr(nil, env, openssh(t, "ssh-keygen"), "-Y", "sign", "-f", id+"-cert.pub", "-n", testNamespace, msgFile); err != nil {
		t.Fatalf("ssh-keygen -Y sign: %v", err)
	}
	armored, err := os.ReadFile(msgFile + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	blob, err := Unarmor(armored)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}

// TestSSHSIGWithUserCertificate parses and verifies an SSHSIG that ssh-keygen made with a
// user certificate: the signature names the certificate and verifies with its key.
func TestSSHSIGWithUserCertificate(t *testing.T) {
	for _, typ := range []string{"ed25519", "rsa", "ecdsa"} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			id, caPub := certKey(t, dir, typ)
			message := []byte("a statement\n")
			blob := keygenSignWithCert(t, id, message)
			pub, err := Verify(blob, testNamespace, message)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			cert, ok := pub.(*ssh.Certificate)
			if !ok {
				t.Fatalf("signature names a %s, not a certificate", pub.Type())
			}
			if cert.KeyId != "alice@test" || cert.Serial != 7 || !bytes.Equal(cert.SignatureKey.Marshal(), caPub.Marshal()) {
				t.Fatalf("certificate %q serial %d", cert.KeyId, cert.Serial)
			}
			if _, err := Verify(blob, testNamespace, []byte("another statement\n")); err == nil {
				t.Fatal("verified over another message")
			}
		})
	}
}

// TestSSHSIGWithHostCertificate: a host certificate cannot sign an authenticator (check 5).
func TestSSHSIGWithHostCertificate(t *testing.T) {
	id, _ := certKey(t, t.TempDir(), "ed25519", "-h")
	message := []byte("a statement\n")
	blob := keygenSignWithCert(t, id, message)
	if _, err := ParseSSHSIG(blob, testNamespace); err == nil || !strings.Contains(err.Error(), "host certificate") {
		t.Fatalf("ParseSSHSIG: %v", err)
	}
}

// TestSignWithCertificate signs with the certificate an ssh-agent lists next to its key, and
// has ssh-keygen -Y verify check the signature against the CA (cert-authority).
func TestSignWithCertificate(t *testing.T) {
	for _, typ := range []string{"ed25519", "rsa"} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			id, caPub := certKey(t, dir, typ)
			sock := startAgent(t)
			if _, err := runErr(nil, []string{"SSH_AUTH_SOCK=" + sock}, openssh(t, "ssh-add"), "-q", id); err != nil {
				t.Fatalf("ssh-add: %v", err)
			}
			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			signers, err := agent.NewClient(conn).Signers()
			if err != nil {
				t.Fatal(err)
			}
			var certSigner ssh.Signer
			for _, s := range signers {
				if strings.HasSuffix(s.PublicKey().Type(), "-cert-v01@openssh.com") {
					certSigner = s
				}
			}
			if certSigner == nil {
				t.Fatal("ssh-add loaded no certificate")
			}
			message := []byte("signed with a certificate\n")
			blob, err := Sign(certSigner, testNamespace, message)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := Verify(blob, testNamespace, message)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pub.Marshal(), certSigner.PublicKey().Marshal()) {
				t.Fatal("the signature does not name the certificate")
			}
			signersFile := filepath.Join(t.TempDir(), "allowed_signers")
			line := `alice cert-authority,namespaces="` + testNamespace + `" ` + authLine(caPub) + "\n"
			if err := os.WriteFile(signersFile, []byte(line), 0o600); err != nil {
				t.Fatal(err)
			}
			sigFile := filepath.Join(t.TempDir(), "msg.sig")
			if err := os.WriteFile(sigFile, Armor(blob), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := runErr(message, nil, openssh(t, "ssh-keygen"), "-Y", "verify", "-f", signersFile, "-I", "alice", "-n", testNamespace, "-s", sigFile); err != nil {
				t.Fatalf("ssh-keygen -Y verify with cert-authority: %v", err)
			}
			if _, err := runErr(message, nil, openssh(t, "ssh-keygen"), "-Y", "verify", "-f", signersFile, "-I", "bob", "-n", testNamespace, "-s", sigFile); err == nil {
				t.Fatal("ssh-keygen -Y verify accepted the certificate for a principal it does not name")
			}
		})
	}
}

// TestAsCertificate: a certificate, parsed or named as an agent names it (an opaque key),
// is a certificate; a plain key, parsed or opaque, is none; an opaque key of a certificate
// type whose blob does not parse is an error.
func TestAsCertificate(t *testing.T) {
	dir := t.TempDir()
	id, _ := certKey(t, dir, "ed25519")
	text, err := os.ReadFile(id + "-cert.pub")
	if err != nil {
		t.Fatal(err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(text)
	if err != nil {
		t.Fatal(err)
	}
	cert := k.(*ssh.Certificate)
	for name, k := range map[string]ssh.PublicKey{
		"parsed": cert,
		"opaque": &agent.Key{Format: cert.Type(), Blob: cert.Marshal()},
	} {
		c, err := AsCertificate(k)
		if err != nil || c == nil || !bytes.Equal(c.Marshal(), cert.Marshal()) {
			t.Errorf("%s certificate: %v, %v", name, c, err)
		}
	}
	for name, k := range map[string]ssh.PublicKey{
		"parsed": cert.Key,
		"opaque": &agent.Key{Format: cert.Key.Type(), Blob: cert.Key.Marshal()},
	} {
		if c, err := AsCertificate(k); c != nil || err != nil {
			t.Errorf("%s plain key: %v, %v", name, c, err)
		}
	}
	if c, err := AsCertificate(&agent.Key{Format: cert.Type(), Blob: cert.Marshal()[:40]}); c != nil || err == nil {
		t.Errorf("truncated certificate: %v, %v; want an error", c, err)
	}
}
