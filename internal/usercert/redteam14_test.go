// SPDX-License-Identifier: Apache-2.0

package usercert

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/testutil"
)

// redteamCert returns a user certificate for principal, signed by ca.
func redteamCert(t *testing.T, ca ssh.Signer, principal string) *ssh.Certificate {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: k, CertType: ssh.UserCert, KeyId: principal, ValidPrincipals: []string{principal},
		ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// ecdsaVariant returns cert with its ECDSA signature re-encoded: zr and zs extra leading zero
// bytes in r and s (mpints that OpenSSH and x/crypto both accept), and s negated mod n if
// flip. Every variant verifies; none is a certificate the CA issued in that form.
func ecdsaVariant(t *testing.T, cert *ssh.Certificate, zr, zs int, flip bool) *ssh.Certificate {
	t.Helper()
	var sig struct{ R, S *big.Int }
	if err := ssh.Unmarshal(cert.Signature.Blob, &sig); err != nil {
		t.Fatal(err)
	}
	s := sig.S
	if flip {
		s = new(big.Int).Sub(elliptic.P256().Params().N, s)
	}
	mp := func(v *big.Int, zeros int) []byte {
		b := v.Bytes()
		if len(b) > 0 && b[0]&0x80 != 0 {
			zeros++
		}
		return append(make([]byte, zeros), b...)
	}
	blob := ssh.Marshal(struct{ R, S []byte }{mp(sig.R, zr), mp(s, zs)})
	c := *cert
	c.Signature = &ssh.Signature{Format: cert.Signature.Format, Blob: blob}
	return &c
}

// The CA signature cache remembers certificates whose signature verified so that a genuine
// certificate costs one verification, and so that resumption finds its certificate again
// (Known). Certificates are public (audit records, shared -cert.pub files), and an ECDSA CA's
// signature can be re-encoded at will. A client holding no key must not be able to fill the
// cache with re-encodings of one public certificate, evicting the certificates other users'
// tickets name.
func TestRedteamVerifiedCacheReencodedSignature(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &Checker{CAs: []ssh.PublicKey{ca.PublicKey()}}
	ctx, now := context.Background(), time.Now()
	alice := redteamCert(t, ca, "alice")
	if err := c.Check(ctx, alice, "alice", "192.0.2.1:1", now, time.Minute); err != nil {
		t.Fatal(err)
	}
	public := redteamCert(t, ca, "mallory")
	accepted := 0
	for zr := 0; zr < 70; zr++ {
		for zs := 0; zs < 70; zs++ {
			v := ecdsaVariant(t, public, zr, zs, (zr+zs)%2 == 1)
			if c.Check(ctx, v, "mallory", "192.0.2.1:1", now, time.Minute) == nil {
				accepted++
			}
		}
	}
	if accepted == 0 {
		t.Fatal("fixture: no re-encoded signature verifies")
	}
	c.mu.Lock()
	n := len(c.verified)
	c.mu.Unlock()
	if n > 2 {
		t.Errorf("%d re-encodings of one certificate left %d entries in the signature cache, want at most 2", accepted, n)
	}
	if c.Known(sha256.Sum256(alice.Marshal())) == nil {
		t.Error("alice's certificate was evicted from the cache by re-encodings of another certificate")
	}
}

// Certificates ssh-keygen signs with ECDSA CAs carry canonical signatures and are accepted.
func TestRedteamECDSACAFromSSHKeygen(t *testing.T) {
	dir := t.TempDir()
	for _, bits := range []string{"256", "384", "521"} {
		ca := filepath.Join(dir, "ca"+bits)
		testutil.SSHKeygen(t, "-q", "-t", "ecdsa", "-b", bits, "-N", "", "-f", ca)
		c := &Checker{CAs: []ssh.PublicKey{testutil.ReadPublicKey(t, ca+".pub")}}
		for i := range 20 {
			key := newKey(t, dir, fmt.Sprintf("user%s-%d", bits, i))
			cert := certify(t, ca, key, "-I", "id", "-n", "alice")
			if err := c.Check(context.Background(), cert, "alice", "192.0.2.1:1", time.Now(), time.Minute); err != nil {
				t.Fatalf("ECDSA P-%s CA: %v", bits, err)
			}
		}
	}
}

// redteamList is a principals source that lists fixed principals.
type redteamList []string

func (l redteamList) Principals(context.Context, string) ([]string, error) { return l, nil }

// A certificate the CA signed is public (audit records, shared -cert.pub files): a client that
// holds none of its keys can send it at every handshake, and it reaches the principals step,
// which comes after the CA signature (PROTOCOL §3.7, check 6) but before the client's own
// signature (check 8). A CA may issue one with over a thousand principals; matched one by one
// against an authorized principals list of a thousand entries, that is over a million string
// comparisons (milliseconds) per handshake, for a client that holds nothing.
func TestRedteamPrincipalsMatchCost(t *testing.T) {
	_, caPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(caPriv)
	if err != nil {
		t.Fatal(err)
	}
	var allowed []string
	for i := range 1000 {
		allowed = append(allowed, fmt.Sprintf("team-%04d", i))
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: k, CertType: ssh.UserCert, KeyId: "many", ValidPrincipals: make([]string, 1150),
		ValidBefore: ssh.CertTimeInfinity}
	for i := range cert.ValidPrincipals {
		cert.ValidPrincipals[i] = fmt.Sprintf("user-%04d", i) // as long as each allowed one, matching none
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	if n := len(cert.Marshal()); n > MaxCertSize-256 {
		t.Fatalf("fixture: certificate of %d bytes would not fit an authenticator", n)
	}
	// The cost of refusing it against a list of one principal is the baseline: what the
	// certificate costs to take in whatever the list (its wire form, its fields).
	cost := func(list []string) time.Duration {
		c := &Checker{CAs: []ssh.PublicKey{ca.PublicKey()}, Principals: []PrincipalSource{redteamList(list)}}
		best := time.Hour
		for range 7 {
			start := time.Now()
			err := c.Check(context.Background(), cert, "alice", "192.0.2.1:1", time.Now(), time.Minute)
			best = min(best, time.Since(start))
			var ue *Error
			if !errors.As(err, &ue) || !strings.Contains(ue.Reason, "no principal authorized") {
				t.Fatalf("check: %v, want a refusal at the principals step", err)
			}
		}
		return best
	}
	// The fixture does reach the principals step, and is accepted when a principal matches.
	match := &Checker{CAs: []ssh.PublicKey{ca.PublicKey()}, Principals: []PrincipalSource{redteamList(append(allowed[:999:999], "user-1149"))}}
	if err := match.Check(context.Background(), cert, "alice", "192.0.2.1:1", time.Now(), time.Minute); err != nil {
		t.Fatalf("certificate refused although its last principal is authorized: %v", err)
	}
	base, long := cost(allowed[:1]), cost(allowed)
	t.Logf("one authorized principal: %v; %d: %v", base, len(allowed), long)
	if long > 4*base+200*time.Microsecond {
		t.Errorf("a CA-signed certificate with %d principals costs %v to refuse against %d authorized principals, %v against one: "+
			"the match is not linear", len(cert.ValidPrincipals), long, len(allowed), base)
	}
}
