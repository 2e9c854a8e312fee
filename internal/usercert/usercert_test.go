// SPDX-License-Identifier: Apache-2.0

package usercert

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/krl"
	"ubns.dev/netauth/internal/testutil"
)

func newKey(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	testutil.SSHKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path)
	return path
}

// certify signs key.pub with ca using ssh-keygen -s and the extra options, and returns the
// certificate.
func certify(t *testing.T, ca, key string, opts ...string) *ssh.Certificate {
	t.Helper()
	os.Remove(key + "-cert.pub")
	args := append([]string{"-q", "-s", ca}, opts...)
	testutil.SSHKeygen(t, append(args, key+".pub")...)
	return testutil.ReadPublicKey(t, key+"-cert.pub").(*ssh.Certificate)
}

type fixture struct {
	dir, ca, other, id string
	caPub              ssh.PublicKey
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	f := &fixture{dir: dir, ca: newKey(t, dir, "ca"), other: newKey(t, dir, "other"), id: newKey(t, dir, "id")}
	f.caPub = testutil.ReadPublicKey(t, f.ca+".pub")
	return f
}

const client = "192.0.2.7:40000"

func TestCheckCertificates(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	day := func(d int) string { return now.AddDate(0, 0, d).UTC().Format("20060102") }
	cases := []struct {
		name   string
		ca     string
		opts   []string
		user   string
		client string
		want   string // "" accepts; else a substring of the refusal
	}{
		{"valid", f.ca, []string{"-I", "alice@x", "-n", "alice,ops", "-z", "3"}, "alice", client, ""},
		{"valid forever, second principal", f.ca, []string{"-I", "a", "-n", "ops,alice"}, "alice", client, ""},
		{"expired", f.ca, []string{"-I", "a", "-n", "alice", "-V", day(-10) + ":" + day(-2)}, "alice", client, "expired"},
		{"not yet valid", f.ca, []string{"-I", "a", "-n", "alice", "-V", day(2) + ":" + day(10)}, "alice", client, "not valid before"},
		{"wrong principal", f.ca, []string{"-I", "a", "-n", "bob"}, "alice", client, "no principal"},
		{"no principals", f.ca, []string{"-I", "a"}, "alice", client, "no principal"},
		{"source-address match", f.ca, []string{"-I", "a", "-n", "alice", "-O", "source-address=10.0.0.0/8,192.0.2.0/24"}, "alice", client, ""},
		{"source-address single address", f.ca, []string{"-I", "a", "-n", "alice", "-O", "source-address=192.0.2.7"}, "alice", client, ""},
		{"source-address mismatch", f.ca, []string{"-I", "a", "-n", "alice", "-O", "source-address=198.51.100.0/24"}, "alice", client, "not in source-address"},
		{"source-address, client not IP", f.ca, []string{"-I", "a", "-n", "alice", "-O", "source-address=127.0.0.1"}, "alice", "@", "not an IP address"},
		{"source-address, IPv4-mapped client", f.ca, []string{"-I", "a", "-n", "alice", "-O", "source-address=127.0.0.1"}, "alice", "[::ffff:127.0.0.1]:5", ""},
		{"force-command", f.ca, []string{"-I", "a", "-n", "alice", "-O", "force-command=/bin/true"}, "alice", client, "forces a command"},
		{"unknown critical option", f.ca, []string{"-I", "a", "-n", "alice", "-O", "critical:frobnicate@example.com=1"}, "alice", client, "frobnicate"},
		{"verify-required (not supported)", f.ca, []string{"-I", "a", "-n", "alice", "-O", "verify-required"}, "alice", client, "verify-required"},
		{"extensions ignored", f.ca, []string{"-I", "a", "-n", "alice", "-O", "extension:whatever@example.com=1", "-O", "no-pty"}, "alice", client, ""},
		{"host certificate", f.ca, []string{"-I", "a", "-n", "alice", "-h"}, "alice", client, "not a user certificate"},
		{"untrusted CA", f.other, []string{"-I", "a", "-n", "alice"}, "alice", client, "not trusted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cert := certify(t, tc.ca, f.id, tc.opts...)
			c := &Checker{CAs: []ssh.PublicKey{f.caPub}}
			err := c.Check(context.Background(), cert, tc.user, tc.client, now, 5*time.Minute)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a refusal saying %q", err, tc.want)
			}
		})
	}
}

// TestValidityWithSkew checks the window's edges: valid_after <= now + skew and
// now - skew < valid_before.
func TestValidityWithSkew(t *testing.T) {
	cert := &ssh.Certificate{KeyId: "k", ValidAfter: 1000, ValidBefore: 2000}
	skew := 10 * time.Second
	for _, tc := range []struct {
		now int64
		ok  bool
	}{{989, false}, {990, true}, {1000, true}, {2009, true}, {2010, false}} {
		err := checkValidity(cert, time.Unix(tc.now, 0), skew)
		if (err == nil) != tc.ok {
			t.Errorf("now %d: %v, want ok=%v", tc.now, err, tc.ok)
		}
	}
}

// countingKey counts the signature verifications a CA key makes.
type countingKey struct {
	ssh.PublicKey
	n *atomic.Int32
}

func (k countingKey) Verify(data []byte, sig *ssh.Signature) error {
	k.n.Add(1)
	return k.PublicKey.Verify(data, sig)
}

// TestSignatureLastAndOnce checks the cost an unauthenticated client can cause: a certificate
// that fails any other check costs no signature verification, a forged one costs one, and a
// genuine one costs one the first time only.
func TestSignatureLastAndOnce(t *testing.T) {
	f := newFixture(t)
	var n atomic.Int32
	c := &Checker{CAs: []ssh.PublicKey{f.caPub}}
	check := func(cert *ssh.Certificate, user string) error {
		if _, ok := cert.SignatureKey.(countingKey); !ok {
			cert.SignatureKey = countingKey{cert.SignatureKey, &n}
		}
		return c.Check(context.Background(), cert, user, client, time.Now(), time.Minute)
	}
	if err := check(certify(t, f.ca, f.id, "-I", "a", "-n", "bob"), "alice"); err == nil {
		t.Fatal("wrong principal accepted")
	}
	if err := check(certify(t, f.ca, f.id, "-I", "a", "-n", "alice", "-O", "force-command=x"), "alice"); err == nil {
		t.Fatal("force-command accepted")
	}
	if got := n.Load(); got != 0 {
		t.Fatalf("%d signature verifications for certificates refused by cheaper checks", got)
	}
	good := certify(t, f.ca, f.id, "-I", "a", "-n", "alice")
	forged := *good
	forged.Signature = &ssh.Signature{Format: good.Signature.Format, Blob: make([]byte, len(good.Signature.Blob))}
	if err := check(&forged, "alice"); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("forged certificate: %v", err)
	}
	if err := check(&forged, "alice"); err == nil {
		t.Fatal("forged certificate accepted the second time")
	}
	for range 3 {
		if err := check(good, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("%d verifications, want 3 (two forged attempts, one for the genuine certificate)", got)
	}
	if c.Known(sha256Of(good)) == nil || c.Known(sha256Of(&forged)) != nil {
		t.Fatal("Known does not remember exactly the verified certificate")
	}
}

func TestCASignedByCertificate(t *testing.T) {
	f := newFixture(t)
	cert := certify(t, f.ca, f.id, "-I", "a", "-n", "alice")
	caCert := certify(t, f.ca, f.other, "-I", "ca", "-n", "alice")
	cert.SignatureKey = caCert
	c := &Checker{CAs: []ssh.PublicKey{f.caPub, caCert}}
	if err := c.Check(context.Background(), cert, "alice", client, time.Now(), time.Minute); err == nil || !strings.Contains(err.Error(), "signed by a certificate") {
		t.Fatalf("got %v", err)
	}
}

func TestPrincipalsSources(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "alice"), []byte("# ops staff\n\nops\nfrom=\"10.0.0.0/8\" admins\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "principals")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = carol ] && echo dba\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Checker{CAs: []ssh.PublicKey{f.caPub}, Principals: []PrincipalSource{PrincipalsDir{Dir: dir}, PrincipalsCommand{Path: script, Args: []string{"%u"}}}}
	for _, tc := range []struct {
		principals, user string
		ok               bool
	}{
		{"ops", "alice", true},
		{"alice", "alice", false},  // the file replaces the user name
		{"admins", "alice", false}, // a line with options grants nothing
		{"dba", "carol", true},     // from the command
		{"dba", "alice", false},
		{"ops", "bob", false}, // no file for bob
	} {
		cert := certify(t, f.ca, f.id, "-I", "a", "-n", tc.principals)
		err := c.Check(context.Background(), cert, tc.user, client, time.Now(), time.Minute)
		if (err == nil) != tc.ok {
			t.Errorf("principal %s as %s: %v, want ok=%v", tc.principals, tc.user, err, tc.ok)
		}
	}
	// A principals file others may write is refused, as a lookup failure.
	if err := os.Chmod(filepath.Join(dir, "alice"), 0o666); err != nil {
		t.Fatal(err)
	}
	c = &Checker{CAs: []ssh.PublicKey{f.caPub}, Principals: []PrincipalSource{PrincipalsDir{Dir: dir}}}
	err := c.Check(context.Background(), certify(t, f.ca, f.id, "-I", "a", "-n", "ops"), "alice", client, time.Now(), time.Minute)
	var ue *Error
	if !errors.As(err, &ue) || !ue.Lookup || !strings.Contains(err.Error(), "writable") {
		t.Fatalf("group-writable principals file: %v", err)
	}
}

// TestRevokedCertificates: a KRL ssh-keygen makes revokes the certificates it names, by serial,
// serial range or key id, and no other (the handshake asks the krl.Set before Check).
func TestRevokedCertificates(t *testing.T) {
	f := newFixture(t)
	cert := certify(t, f.ca, f.id, "-I", "alice@laptop", "-n", "alice", "-z", "42")
	krlPath := filepath.Join(f.dir, "krl")
	spec := filepath.Join(f.dir, "spec")
	for _, tc := range []struct {
		spec    string
		revoked bool
	}{
		{"serial: 42\n", true},
		{"serial: 40-50\n", true},
		{"serial: 43\n", false},
		{"id: alice@laptop\n", true},
		{"id: bob@laptop\n", false},
	} {
		if err := os.WriteFile(spec, []byte(tc.spec), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Remove(krlPath)
		testutil.SSHKeygen(t, "-q", "-k", "-f", krlPath, "-s", f.ca+".pub", spec)
		set, err := krl.Load(krlPath)
		if err != nil {
			t.Fatal(err)
		}
		if got := set.Revoked(cert); got != tc.revoked {
			t.Errorf("KRL %q: revoked %v, want %v", tc.spec, got, tc.revoked)
		}
	}
}

func TestParseCAKeys(t *testing.T) {
	f := newFixture(t)
	pub, _ := os.ReadFile(f.ca + ".pub")
	keys, err := ParseCAKeys(append([]byte("# CA\n\n"), pub...), "ca")
	if err != nil || len(keys) != 1 {
		t.Fatalf("%v %v", keys, err)
	}
	cert := certify(t, f.ca, f.id, "-I", "a", "-n", "alice")
	for name, data := range map[string][]byte{
		"options":     append([]byte("cert-authority "), pub...),
		"certificate": ssh.MarshalAuthorizedKey(cert),
		"garbage":     []byte("not a key\n"),
	} {
		if _, err := ParseCAKeys(data, "ca"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func sha256Of(c *ssh.Certificate) [32]byte {
	return sha256Sum(c.Marshal())
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
