// SPDX-License-Identifier: Apache-2.0

package krl

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/testutil"
)

func newKey(t *testing.T, dir, name string) (string, ssh.PublicKey) {
	t.Helper()
	path := filepath.Join(dir, name)
	testutil.SSHKeygen(t, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path)
	return path, testutil.ReadPublicKey(t, path+".pub")
}

type fixture struct {
	dir           string
	ca, id, other string
	caPub, idPub  ssh.PublicKey
	otherPub      ssh.PublicKey
	cert          *ssh.Certificate // of id by ca: key id "alice@laptop", serial 42
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{dir: t.TempDir()}
	f.ca, f.caPub = newKey(t, f.dir, "ca")
	f.id, f.idPub = newKey(t, f.dir, "id")
	f.other, f.otherPub = newKey(t, f.dir, "other")
	testutil.SSHKeygen(t, "-q", "-s", f.ca, "-I", "alice@laptop", "-n", "alice", "-z", "42", f.id+".pub")
	f.cert = testutil.ReadPublicKey(t, f.id+"-cert.pub").(*ssh.Certificate)
	return f
}

// makeKRL writes a KRL with ssh-keygen -k from spec (a revocation spec file's text, or a key
// file to revoke when spec starts with "/"), with -s ca.pub if withCA.
func (f *fixture) makeKRL(t *testing.T, spec string, withCA bool) *Set {
	t.Helper()
	path := filepath.Join(t.TempDir(), "krl")
	arg := spec
	if !strings.HasPrefix(spec, "/") {
		arg = filepath.Join(t.TempDir(), "spec")
		if err := os.WriteFile(arg, []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-q", "-k", "-f", path}
	if withCA {
		args = append(args, "-s", f.ca+".pub")
	}
	testutil.SSHKeygen(t, append(args, arg)...)
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !s.IsKRL() {
		t.Fatal("not read as a KRL")
	}
	return s
}

func TestKRLFromSSHKeygen(t *testing.T) {
	f := newFixture(t)
	many := new(strings.Builder)
	for i := 1; i < 200; i += 3 {
		fmt.Fprintf(many, "serial: %d\n", i) // 1, 4, ..., 40, 43: ssh-keygen picks a bitmap
	}
	plainCert := *f.cert
	plainCert.Serial = 0
	for _, tc := range []struct {
		name    string
		spec    string
		withCA  bool
		key     ssh.PublicKey
		revoked bool
	}{
		{"serial", "serial: 42\n", true, f.cert, true},
		{"other serial", "serial: 41\n", true, f.cert, false},
		{"serial range", "serial: 40-45\n", true, f.cert, true},
		{"serial bitmap, not listed", many.String(), true, f.cert, false},
		{"serial bitmap", many.String() + "serial: 42\n", true, f.cert, true},
		{"serial 0 is never revoked by serial", "serial: 1-10\nid: bob\n", true, &plainCert, false},
		{"key id", "id: alice@laptop\n", true, f.cert, true},
		{"other key id", "id: bob\n", true, f.cert, false},
		{"explicit key revokes its certificate", f.id + ".pub", false, f.cert, true},
		{"explicit key", f.id + ".pub", false, f.idPub, true},
		{"explicit key, other key", f.id + ".pub", false, f.otherPub, false},
		{"CA key revokes its certificates", f.ca + ".pub", false, f.cert, true},
		{"key hash", "hash: " + ssh.FingerprintSHA256(f.idPub) + "\n", false, f.cert, true},
		{"sha1", "sha1: " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.idPub))) + "\n", false, f.idPub, true},
		{"sha256", "sha256: " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.idPub))) + "\n", false, f.idPub, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := f.makeKRL(t, tc.spec, tc.withCA)
			if got := s.Revoked(tc.key); got != tc.revoked {
				t.Fatalf("Revoked = %v, want %v (%d entries)", got, tc.revoked, s.Len())
			}
		})
	}
}

// TestKRLCheckedBySSHKeygen cross-checks Revoked with ssh-keygen -Q on the same KRL.
func TestKRLCheckedBySSHKeygen(t *testing.T) {
	f := newFixture(t)
	krlFile := filepath.Join(t.TempDir(), "krl")
	spec := filepath.Join(t.TempDir(), "spec")
	if err := os.WriteFile(spec, []byte("serial: 40-44\nid: bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.SSHKeygen(t, "-q", "-k", "-f", krlFile, "-s", f.ca+".pub", spec)
	s, err := Load(krlFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{f.id + "-cert.pub", f.other + ".pub"} {
		err := exec.Command("ssh-keygen", "-Q", "-f", krlFile, key).Run()
		want := err != nil // ssh-keygen -Q exits non-zero for a revoked key
		if got := s.Revoked(testutil.ReadPublicKey(t, key)); got != want {
			t.Errorf("%s: Revoked = %v, ssh-keygen -Q says revoked=%v", filepath.Base(key), got, want)
		}
	}
}

func TestPlainList(t *testing.T) {
	f := newFixture(t)
	idText, _ := os.ReadFile(f.id + ".pub")
	caText, _ := os.ReadFile(f.ca + ".pub")
	for _, tc := range []struct {
		name    string
		list    []byte
		key     ssh.PublicKey
		revoked bool
	}{
		{"key", idText, f.idPub, true},
		{"key revokes its certificate", idText, f.cert, true},
		{"CA key revokes its certificates", caText, f.cert, true},
		{"other key", idText, f.otherPub, false},
		{"comments and blank lines", append([]byte("# revoked\n\n"), idText...), f.idPub, true},
		{"certificate listed revokes its key", ssh.MarshalAuthorizedKey(f.cert), f.idPub, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Parse(tc.list)
			if err != nil {
				t.Fatal(err)
			}
			if s.IsKRL() {
				t.Fatal("plain list read as a KRL")
			}
			if got := s.Revoked(tc.key); got != tc.revoked {
				t.Fatalf("Revoked = %v, want %v", got, tc.revoked)
			}
		})
	}
	if _, err := Parse([]byte("ssh-ed25519 !!!\n")); err == nil {
		t.Fatal("a damaged list parsed")
	}
}

func TestLimits(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big")
	fh, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(MaxSize + 1); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err := Parse(make([]byte, MaxSize+1)); err == nil {
		t.Fatal("oversized data parsed")
	}
	// A KRL whose section claims more bytes than there are is refused, not allocated for.
	hdr := append([]byte(magic), 0, 0, 0, 1)
	hdr = append(hdr, make([]byte, 24)...)
	hdr = append(hdr, 0, 0, 0, 0, 0, 0, 0, 0) // reserved, comment
	bad := append(bytes.Clone(hdr), sectionExplicitKey, 0xff, 0xff, 0xff, 0xff)
	if _, err := Parse(bad); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated section: %v", err)
	}
	if s, err := Parse(hdr); err != nil || s.Len() != 0 {
		t.Fatalf("empty KRL: %v", err)
	}
	signed := append(bytes.Clone(hdr), sectionSignature, 0, 0, 0, 0)
	if _, err := Parse(signed); err == nil {
		t.Fatal("signed KRL accepted")
	}
	crit := append(bytes.Clone(hdr), sectionExtension, 0, 0, 0, 14, 0, 0, 0, 5, 'x', '@', 'y', '.', 'z', 1, 0, 0, 0, 0)
	if _, err := Parse(crit); err == nil || !strings.Contains(err.Error(), "critical") {
		t.Fatalf("unknown critical extension: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	ca := filepath.Join(dir, "ca")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ca).CombinedOutput(); err == nil {
		spec := filepath.Join(dir, "spec")
		os.WriteFile(spec, []byte("serial: 1\nserial: 5-9\nserial: 11\nserial: 13\nid: x\nhash: SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU\n"), 0o600)
		krl := filepath.Join(dir, "krl")
		if out, err := exec.Command("ssh-keygen", "-q", "-k", "-f", krl, "-s", ca+".pub", spec).CombinedOutput(); err == nil {
			b, _ := os.ReadFile(krl)
			f.Add(b)
		} else {
			f.Logf("ssh-keygen -k: %v: %s", err, out)
		}
		pub, _ := os.ReadFile(ca + ".pub")
		f.Add(pub)
	} else {
		f.Logf("ssh-keygen: %v: %s", err, out)
	}
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhhaGFoYWhhaGFoYWhhaGFoYWhhaGFoYWhhaGFoYWhhaGFo"))
		if err == nil {
			s.Revoked(k)
		}
	})
}

// TestWildcardCA builds a KRL whose certificate section has no CA key (PROTOCOL.krl: it
// applies to every CA), which ssh-keygen writes only for some specs.
func TestWildcardCA(t *testing.T) {
	f := newFixture(t)
	str := func(b []byte) []byte { return append(binary32(len(b)), b...) }
	var certSec []byte
	certSec = append(certSec, str(nil)...) // any CA
	certSec = append(certSec, str(nil)...) // reserved
	certSec = append(certSec, certKeyID)
	certSec = append(certSec, str(str([]byte("alice@laptop")))...)
	k := []byte(magic)
	k = append(k, 0, 0, 0, 1)
	k = append(k, make([]byte, 24)...)
	k = append(k, str(nil)...)
	k = append(k, str(nil)...)
	k = append(k, sectionCertificates)
	k = append(k, str(certSec)...)
	s, err := Parse(k)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Revoked(f.cert) {
		t.Fatal("key id under any CA not revoked")
	}
	other := *f.cert
	other.KeyId = "bob"
	if s.Revoked(&other) {
		t.Fatal("other key id revoked")
	}
}

func binary32(n int) []byte { return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }

// TestBitmapEntriesBounded: a serial bitmap of alternating bits would expand to a range per
// set bit; past MaxEntries the file is refused instead.
func TestBitmapEntriesBounded(t *testing.T) {
	str := func(b []byte) []byte { return append(binary32(len(b)), b...) }
	bm := bytes.Repeat([]byte{0x55}, MaxEntries/4+16)
	sub := append(make([]byte, 8), str(bm)...)
	var certSec []byte
	certSec = append(certSec, str(nil)...)
	certSec = append(certSec, str(nil)...)
	certSec = append(certSec, certSerialBitmap)
	certSec = append(certSec, str(sub)...)
	k := []byte(magic)
	k = append(k, 0, 0, 0, 1)
	k = append(k, make([]byte, 24)...)
	k = append(k, str(nil)...)
	k = append(k, str(nil)...)
	k = append(k, sectionCertificates)
	k = append(k, str(certSec)...)
	if _, err := Parse(k); err == nil || !strings.Contains(err.Error(), "entries") {
		t.Fatalf("got %v", err)
	}
}
