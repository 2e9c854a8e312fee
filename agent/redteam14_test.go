// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"

	"ubns.dev/netauth/internal/keys"
)

// redteamUserCert returns an Ed25519 user certificate of pub, signed by a fresh CA.
func redteamUserCert(t *testing.T, pub ssh.PublicKey) *ssh.Certificate {
	t.Helper()
	_, caPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(caPriv)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: pub, CertType: ssh.UserCert, KeyId: "alice", ValidPrincipals: []string{"alice"},
		ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// A host restriction names the user key by the fingerprint ssh-keygen -l prints for it. The
// same key held with its certificate (ssh-add adds both) must not escape the restriction by
// being named through the certificate, in the agent's own keyring or in its upstream's.
func TestRedteamRestrictionCertificate(t *testing.T) {
	key, pub := newEd25519(t)
	cert := redteamUserCert(t, pub)
	withCert := key
	withCert.Certificate = cert
	allowed, otherHost := newHostKey(t), newHostKey(t)
	restrict := map[string][]string{keys.Fingerprint(pub): {keys.Fingerprint(allowed)}}

	// The upstream: a plain keyring holding the key and its certificate.
	up := sshagent.NewKeyring()
	if err := up.Add(withCert); err != nil {
		t.Fatal(err)
	}
	upSock := filepath.Join(t.TempDir(), "up.sock")
	ln, err := net.Listen("unix", upSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); sshagent.ServeAgent(up, c) }()
		}
	}()

	for _, tc := range []struct {
		name string
		opts Options
		own  bool
	}{
		{"own keyring", Options{Restrictions: restrict}, true},
		{"upstream", Options{Restrictions: restrict, Upstream: upSock, UpstreamTimeout: 5 * time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, serve(t, New(tc.opts)))
			if tc.own {
				if err := c.Add(withCert); err != nil {
					t.Fatal(err)
				}
			}
			// The certificate signs for the allowed host (the restriction does not break it).
			if _, err := SignStatement(c, cert, statementFor(t, allowed)); err != nil {
				t.Errorf("SignStatement with the certificate for the allowed host: %v", err)
			}
			if blob, err := SignStatement(c, cert, statementFor(t, otherHost)); err == nil {
				t.Errorf("SignStatement with the certificate of a host-restricted key for another host succeeded (%d-byte signature)", len(blob))
			}
			data := keys.SignedData(Namespace, statementFor(t, otherHost))
			if sig, err := c.Sign(cert, data); err == nil {
				if pub.Verify(data, sig) == nil {
					t.Error("raw Sign of netauth SSHSIG data with the certificate of a host-restricted key succeeded")
				}
			}
		})
	}
}
