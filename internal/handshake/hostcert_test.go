// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/usercert"
)

// hostCertFor signs a host certificate of key with a fresh CA; pad adds an extension of
// that many bytes (to reach a size).
func hostCertFor(t *testing.T, key ed25519.PrivateKey, certType uint32, pad int) *ssh.Certificate {
	t.Helper()
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	ca, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &ssh.Certificate{Key: pub, CertType: certType, KeyId: "host", ValidPrincipals: []string{"h.example"},
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: ssh.CertTimeInfinity}
	if pad > 0 {
		c.Extensions = map[string]string{"pad@example": strings.Repeat("x", pad)}
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestHostCertificateHandshake: a server with a host certificate presents it in ServerAuth;
// the client's host key check is given the certificate, while the result, the statement and
// the ticket bind the host key itself; the session keeps the certificate, and resumes.
func TestHostCertificateHandshake(t *testing.T) {
	e := newEnv(t)
	cert := hostCertFor(t, e.srv.HostKey, ssh.HostCert, 0)
	e.srv.HostCert = cert
	hostPub, _ := ssh.NewPublicKey(e.srv.HostKey.Public())
	var presented ssh.PublicKey
	e.cli.CheckHostKey = func(k ssh.PublicKey, _ string) error {
		presented = k
		return nil
	}
	o, sess := e.fullSession(t)
	if c, ok := presented.(*ssh.Certificate); !ok || !bytes.Equal(c.Marshal(), cert.Marshal()) {
		t.Fatalf("CheckHostKey was given %T, want the certificate", presented)
	}
	for side, r := range map[string]*Result{"client": &o.cli.Result, "server": o.srv} {
		if !bytes.Equal(r.HostKey.Marshal(), hostPub.Marshal()) {
			t.Errorf("%s result's host key is %s, want the certified key", side, r.HostKey.Type())
		}
		if !bytes.Contains(r.Statement, []byte("host-key ssh-ed25519 ")) {
			t.Errorf("%s statement does not name the plain host key:\n%s", side, r.Statement)
		}
	}
	if !bytes.Equal(sess.HostKey, cert.Marshal()) {
		t.Fatal("the session does not keep the certificate")
	}
	s2, err := ParseSession(sess.Marshal())
	if err != nil {
		t.Fatalf("ParseSession of a session with a certificate: %v", err)
	}
	e.cli.Session = s2
	o2 := e.run(t)
	if o2.cliErr != nil || o2.srvErr != nil || !o2.srv.Resumed || !bytes.Equal(o2.cli.Result.HostKey.Marshal(), hostPub.Marshal()) {
		t.Fatalf("resumption: client %v, server %v", o2.cliErr, o2.srvErr)
	}
}

// TestServerAuthHostKeyLimit: ServerAuth's host_key may be up to MaxHostKeyLen (2048) bytes
// and is refused beyond that before anything parses it.
func TestServerAuthHostKeyLimit(t *testing.T) {
	sig := make([]byte, 83)
	body := func(hk []byte) []byte {
		var b cryptobyte.Builder
		addBytes16(&b, hk)
		addBytes16(&b, sig)
		addBytes16(&b, []byte("echo"))
		return b.BytesOrPanic()
	}
	for _, n := range []int{51, 600, MaxHostKeyLen} {
		if _, err := parseServerAuth(body(make([]byte, n))); err != nil {
			t.Errorf("host_key of %d bytes: %v", n, err)
		}
	}
	if _, err := parseServerAuth(body(make([]byte, MaxHostKeyLen+1))); !errors.Is(err, errMalformed) {
		t.Errorf("host_key of %d bytes: %v, want malformed", MaxHostKeyLen+1, err)
	}
}

// TestHostCertificateChecks: the server refuses a certificate of another key, or one that
// is not a host certificate, or is too large; the client refuses a certificate of a
// non-Ed25519 key.
func TestHostCertificateChecks(t *testing.T) {
	e := newEnv(t)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	for name, c := range map[string]*ssh.Certificate{
		"another key's":      hostCertFor(t, other, ssh.HostCert, 0),
		"a user certificate": hostCertFor(t, e.srv.HostKey, ssh.UserCert, 0),
		"too large":          hostCertFor(t, e.srv.HostKey, ssh.HostCert, MaxHostKeyLen),
	} {
		cfg := *e.srv
		cfg.HostCert = c
		if _, err := NewServerCore(&cfg, time.Minute); err == nil {
			t.Errorf("NewServerCore accepted %s certificate", name)
		}
	}
	// An ECDSA host certificate: parsed, but refused for its key type.
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	epub, _ := ssh.NewPublicKey(&ek.PublicKey)
	ca, _ := ssh.NewSignerFromKey(other)
	ecdsaCert := &ssh.Certificate{Key: epub, CertType: ssh.HostCert, ValidPrincipals: []string{"h"}, ValidBefore: ssh.CertTimeInfinity}
	if err := ecdsaCert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseHostKey(ecdsaCert.Marshal()); err == nil || !strings.Contains(err.Error(), "not for an Ed25519 key") {
		t.Errorf("parseHostKey(ECDSA certificate) = %v", err)
	}
	if _, _, err := parseHostKey(epub.Marshal()); err == nil || !strings.Contains(err.Error(), "not an Ed25519 key") {
		t.Errorf("parseHostKey(ECDSA key) = %v", err)
	}
}

// TestSetCertificates: SetCertificates replaces what a core presents and decides with (as
// netauthd's reload does), and refuses a certificate of another key or of the wrong type,
// keeping what was in force.
func TestSetCertificates(t *testing.T) {
	e := newEnv(t)
	core, err := NewServerCore(e.srv, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _ := ssh.NewPublicKey(e.srv.HostKey.Public())
	if got := core.certs.Load().present; !bytes.Equal(got, hostPub.Marshal()) {
		t.Fatal("a core without a certificate does not present the bare key")
	}
	cert := hostCertFor(t, e.srv.HostKey, ssh.HostCert, 0)
	uc := &usercert.Checker{}
	if err := core.SetCertificates(cert, uc, nil); err != nil {
		t.Fatal(err)
	}
	if cc := core.certs.Load(); !bytes.Equal(cc.present, cert.Marshal()) || cc.userCerts != uc {
		t.Fatal("SetCertificates did not take effect")
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	for name, c := range map[string]*ssh.Certificate{
		"another key's":      hostCertFor(t, other, ssh.HostCert, 0),
		"a user certificate": hostCertFor(t, e.srv.HostKey, ssh.UserCert, 0),
	} {
		if err := core.SetCertificates(c, nil, nil); err == nil {
			t.Errorf("SetCertificates accepted %s certificate", name)
		}
		if cc := core.certs.Load(); !bytes.Equal(cc.present, cert.Marshal()) || cc.userCerts != uc {
			t.Errorf("a refused SetCertificates (%s) changed what is in force", name)
		}
	}
	if err := core.SetCertificates(nil, nil, nil); err != nil || !bytes.Equal(core.certs.Load().present, hostPub.Marshal()) {
		t.Fatalf("back to the bare key: %v", err)
	}
}
