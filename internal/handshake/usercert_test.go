// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/krl"
	"ubns.dev/netauth/internal/usercert"
)

// certEnv is an env whose user signs with an OpenSSH user certificate that UserCerts trusts,
// and has no authorized key.
func certEnv(t *testing.T, edit func(c *ssh.Certificate)) (*env, *ssh.Certificate) {
	t.Helper()
	e := newEnv(t)
	ca := newSigner(t).s
	user := newSigner(t).s
	now := time.Now()
	cert := &ssh.Certificate{Key: user.PublicKey(), Serial: 9, CertType: ssh.UserCert, KeyId: "alice@test",
		ValidPrincipals: []string{"alice"}, ValidAfter: uint64(now.Add(-time.Hour).Unix()), ValidBefore: uint64(now.Add(time.Hour).Unix())}
	if edit != nil {
		edit(cert)
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	cs, err := ssh.NewCertSigner(cert, user)
	if err != nil {
		t.Fatal(err)
	}
	e.cli.Signer = keySigner{cs}
	e.srv.UserCerts = &usercert.Checker{CAs: []ssh.PublicKey{ca.PublicKey()}}
	e.srv.Eligible = func(r *Result) error { return FindKey(context.Background(), keys.Multi{}, r) }
	e.srv.Authorize = admitAll
	return e, cert
}

func TestUserCertificateHandshake(t *testing.T) {
	e, cert := certEnv(t, nil)
	o, sess := e.fullSession(t)
	if o.srv.CertKeyID != "alice@test" || o.srv.CertSerial != 9 || o.srv.CertCAFingerprint != ssh.FingerprintSHA256(cert.SignatureKey) {
		t.Fatalf("server identity %+v", o.srv.Identity)
	}
	// The ticket names the certificate; the resumption finds it again and checks it again.
	e.cli.Session = sess
	o = e.run(t)
	if o.cliErr != nil || o.srvErr != nil || !o.srv.Resumed || o.srv.CertKeyID != "alice@test" {
		t.Fatalf("resumption: resumed %v, client %v, server %v", o.srv != nil && o.srv.Resumed, o.cliErr, o.srvErr)
	}
	if _, err := o.cli.ReadVerdict(time.Now()); err != nil {
		t.Fatal(err)
	}
	// Revoked in between: the ticket is not resumed, and the full handshake is refused.
	list, err := krl.Parse(ssh.MarshalAuthorizedKey(cert.Key))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.RevokedKeys = list
	o = e.run(t)
	var r *Refusal
	if o.srv != nil && o.srv.Resumed || !errors.As(o.srvErr, &r) || r.Code != CodeNotAuthorized {
		t.Fatalf("after revocation: server %v", o.srvErr)
	}
}

func TestUserCertificateRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		edit   func(*ssh.Certificate)
		server func(*ServerConfig)
		code   Code
	}{
		"no trusted CAs":  {nil, func(s *ServerConfig) { s.UserCerts = nil }, CodeNotAuthorized},
		"wrong principal": {func(c *ssh.Certificate) { c.ValidPrincipals = []string{"bob"} }, nil, CodeNotAuthorized},
		"expired": {func(c *ssh.Certificate) {
			c.ValidBefore = uint64(time.Now().Add(-time.Hour).Unix())
		}, nil, CodeNotAuthorized},
		"source-address": {func(c *ssh.Certificate) {
			c.CriticalOptions = map[string]string{"source-address": "192.0.2.1/32"}
		}, nil, CodeNotAuthorized},
		"untrusted CA": {nil, func(s *ServerConfig) {
			s.UserCerts = &usercert.Checker{CAs: []ssh.PublicKey{newSigner(t).PublicKey()}}
		}, CodeNotAuthorized},
	} {
		t.Run(name, func(t *testing.T) {
			e, _ := certEnv(t, tc.edit)
			if tc.server != nil {
				tc.server(e.srv)
			}
			o := e.run(t)
			var r *Refusal
			if !errors.As(o.srvErr, &r) || r.Code != tc.code {
				t.Fatalf("server: %v, want code %v", o.srvErr, tc.code)
			}
		})
	}
}

// TestFindKeyNeedsTheCore: FindKey accepts a certificate only when the core's checks did.
func TestFindKeyNeedsTheCore(t *testing.T) {
	_, cert := certEnv(t, nil)
	res := &Result{}
	res.User = "alice"
	res.SetKey(cert)
	res.KeyHash = identity.KeyHash(cert)
	var r *Refusal
	if err := FindKey(context.Background(), keys.Multi{}, res); !errors.As(err, &r) || r.Code != CodeNotAuthorized {
		t.Fatalf("FindKey accepted a certificate the core did not check: %v", err)
	}
}

// TestCheckCertificateOutsideAHandshake: a live connection's identity checked again (as
// netauthd's revocation check does) goes through the same certificate checks before FindKey.
func TestCheckCertificateOutsideAHandshake(t *testing.T) {
	e, cert := certEnv(t, nil)
	o, _ := e.fullSession(t)
	res := &Result{Identity: o.srv.Identity, KeyHash: identity.KeyHash(cert), Client: o.srv.Client}
	check := func() error {
		if err := CheckCertificate(context.Background(), e.srv.UserCerts, e.srv.RevokedKeys, e.srv.now(), e.srv.MaxClockSkew, res); err != nil {
			return err
		}
		return FindKey(context.Background(), keys.Multi{}, res)
	}
	if err := check(); err != nil {
		t.Fatalf("the accepted certificate: %v", err)
	}
	e.srv.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } // expired now
	var r *Refusal
	if err := check(); !errors.As(err, &r) || r.Code != CodeNotAuthorized {
		t.Fatalf("expired certificate: %v", err)
	}
}

func TestCertificateSizeCap(t *testing.T) {
	_, cert := certEnv(t, func(c *ssh.Certificate) { c.KeyId = string(make([]byte, usercert.MaxCertSize)) })
	c := &usercert.Checker{CAs: []ssh.PublicKey{cert.SignatureKey}}
	err := c.Check(context.Background(), cert, "alice", "127.0.0.1:1", time.Now(), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized certificate: %v", err)
	}
}

// TestCheckCertificateDefaults: the checks given apart decide as CheckCertificate does with a
// ServerConfig holding them, a skew of zero meaning the default.
func TestCheckCertificate(t *testing.T) {
	// Expired a minute ago: within the default skew, not within a second's.
	e, cert := certEnv(t, func(c *ssh.Certificate) { c.ValidBefore = uint64(time.Now().Add(-time.Minute).Unix()) })
	res := func() *Result {
		r := &Result{Client: "192.0.2.1:1", KeyHash: identity.KeyHash(cert)}
		r.User = "alice"
		r.SetKey(cert)
		return r
	}
	ctx, now := context.Background(), time.Now()
	if err := CheckCertificate(ctx, e.srv.UserCerts, e.srv.RevokedKeys, e.srv.now(), e.srv.MaxClockSkew, res()); err != nil {
		t.Fatalf("CheckCertificate: %v", err)
	}
	r := res()
	if err := CheckCertificate(ctx, e.srv.UserCerts, nil, now, 0, r); err != nil || !r.certified {
		t.Fatalf("skew 0 (the default): %v, certified %v", err, r.certified)
	}
	var ref *Refusal
	if err := CheckCertificate(ctx, e.srv.UserCerts, nil, now, time.Second, res()); !errors.As(err, &ref) || ref.Code != CodeNotAuthorized {
		t.Fatalf("skew 1s: %v, want not_authorized", err)
	}
	if err := CheckCertificate(ctx, nil, nil, now, 0, res()); !errors.As(err, &ref) || ref.Code != CodeNotAuthorized {
		t.Fatalf("no user CA: %v, want not_authorized", err)
	}
}
