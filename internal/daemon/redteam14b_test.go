// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/policy"
)

// TestRedteamRevokedKeysHalfWritten: ssh-keygen -k -u rewrites a KRL in place (it opens it
// with O_TRUNC, then writes), as does any editor or "cat > revoked". A revocation check that
// looks at the file between the truncation and the write sees an empty file, which parses as
// an empty list: applying it would un-revoke every key until the next look. A changed
// revoked-keys file is applied only once it has stayed unchanged from one look to the next, so
// a half-written file is never put in force, and a finished one is, one look later.
func TestRedteamRevokedKeysHalfWritten(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	revokedPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	revokedKey, _ := ssh.NewPublicKey(revokedPub)
	otherKey, _ := ssh.NewPublicKey(otherPub)
	path := filepath.Join(dir, "revoked")
	if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(revokedKey), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &policy.Config{RevokedKeys: path}
	cs, _, err := loadCerts(cfg, priv)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), certs: cs}
	revoked := func(k ssh.PublicKey) bool { return d.currentCerts().revoked.Revoked(k) }
	if !revoked(revokedKey) {
		t.Fatal("the listed key is not revoked")
	}

	// The writer truncated the file and has not written yet: every look from now until the
	// write must keep the key revoked.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	d.refreshRevoked()
	if !revoked(revokedKey) {
		t.Fatal("a revoked-keys file seen truncated, half way through its rewrite, un-revoked the key")
	}
	// The write lands: the key and one more.
	if err := os.WriteFile(path, append(ssh.MarshalAuthorizedKey(revokedKey), ssh.MarshalAuthorizedKey(otherKey)...), 0o644); err != nil {
		t.Fatal(err)
	}
	d.refreshRevoked()
	d.refreshRevoked()
	if !revoked(revokedKey) || !revoked(otherKey) {
		t.Fatal("the finished revoked-keys file was not applied two looks after it was written")
	}
	// An administrator who empties the file on purpose still un-revokes, one look later.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	d.refreshRevoked()
	d.refreshRevoked()
	if revoked(revokedKey) || revoked(otherKey) {
		t.Fatal("an emptied revoked-keys file that stayed empty was not applied")
	}
}

// TestRedteamRevokedKeysOwner: netauthd starts (and reloads) only with a revoked-keys file
// owned by root (policy's check), and must not take one owned by another user when it reads
// the file again at run time: a symlink put in its place pointing to a user's file, or a file a
// user recreated in a sticky directory, would let that user un-revoke every key.
func TestRedteamRevokedKeysOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file another owner")
	}
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	revokedPub, _, _ := ed25519.GenerateKey(rand.Reader)
	revokedKey, _ := ssh.NewPublicKey(revokedPub)
	path := filepath.Join(dir, "revoked")
	if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(revokedKey), 0o644); err != nil {
		t.Fatal(err)
	}
	cs, _, err := loadCerts(&policy.Config{RevokedKeys: path}, priv)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), certs: cs}
	// A user's own file, empty, takes the place of the root-owned one (through a symlink).
	mine := filepath.Join(dir, "mine")
	if err := os.WriteFile(mine, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mine, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mine, path); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		d.refreshRevoked()
	}
	if !d.currentCerts().revoked.Revoked(revokedKey) {
		t.Fatal("a revoked-keys file owned by uid 65534 replaced the root-owned list at run time")
	}
	if d.revokedErr == "" {
		t.Fatal("the refused revoked-keys file was not logged")
	}
}

// TestRedteamCertTicketsSurviveRevokedKeys: a ticket names a user certificate by its hash, and
// resumes only while the user certificate checks remember it. Reading revoked-keys again, or a
// reload, makes those checks anew; they must still know the certificates verified before under
// a CA they still trust (each is checked again in full before use), or every certificate
// user's next connection, on every host, is a full handshake after each revocation of anyone.
// A certificate of a CA no longer trusted is forgotten.
func TestRedteamCertTicketsSurviveRevokedKeys(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, caPriv, _ := ed25519.GenerateKey(rand.Reader)
	ca, _ := ssh.NewSignerFromKey(caPriv)
	_, otherCAPriv, _ := ed25519.GenerateKey(rand.Reader)
	otherCA, _ := ssh.NewSignerFromKey(otherCAPriv)
	userPub, _, _ := ed25519.GenerateKey(rand.Reader)
	userKey, _ := ssh.NewPublicKey(userPub)
	cert := &ssh.Certificate{Key: userKey, CertType: ssh.UserCert, KeyId: "alice", Serial: 7,
		ValidPrincipals: []string{"alice"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	caFile, revokedFile := filepath.Join(dir, "ca"), filepath.Join(dir, "revoked")
	write := func(path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(caFile, ssh.MarshalAuthorizedKey(ca.PublicKey()))
	write(revokedFile, nil)
	cfg := &policy.Config{TrustedUserCAKeys: caFile, RevokedKeys: revokedFile}
	cs, _, err := loadCerts(cfg, priv)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), certs: cs}
	if err := cs.userCerts.Check(context.Background(), cert, "alice", "192.0.2.1:5000", time.Now(), time.Minute); err != nil {
		t.Fatal(err)
	}
	hash := sha256.Sum256(cert.Marshal())
	known := func() bool { return d.currentCerts().userCerts.Known(hash) != nil }
	if !known() {
		t.Fatal("the verified certificate is not remembered")
	}
	// Someone else's key is revoked: the file is read again.
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewPublicKey(otherPub)
	write(revokedFile, ssh.MarshalAuthorizedKey(otherKey))
	for range 2 {
		d.refreshRevoked()
	}
	if !d.currentCerts().revoked.Revoked(otherKey) {
		t.Fatal("the changed revoked-keys file was not applied")
	}
	if !known() {
		t.Fatal("reading revoked-keys again forgot every verified certificate: their tickets no longer resume")
	}
	// A reload with the same CA.
	reload := func() {
		t.Helper()
		cs, _, err := loadCerts(cfg, priv)
		if err != nil {
			t.Fatal(err)
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if err := d.setCertsLocked(cs); err != nil {
			t.Fatal(err)
		}
	}
	reload()
	if !known() {
		t.Fatal("a reload that kept the CA forgot every verified certificate")
	}
	// A reload that trusts another CA only.
	write(caFile, ssh.MarshalAuthorizedKey(otherCA.PublicKey()))
	reload()
	if known() {
		t.Fatal("a certificate of a CA no longer trusted is still remembered")
	}
}

// TestRedteamRevokedKeysNotRegular: a revoked-keys path that became a named pipe must not
// hang the revocation check (opening a pipe to read waits for a writer, and with it every
// later check of live sessions); it is refused as not a regular file and the list in force
// is kept.
func TestRedteamRevokedKeysNotRegular(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	revokedPub, _, _ := ed25519.GenerateKey(rand.Reader)
	revokedKey, _ := ssh.NewPublicKey(revokedPub)
	path := filepath.Join(dir, "revoked")
	if err := os.WriteFile(path, ssh.MarshalAuthorizedKey(revokedKey), 0o644); err != nil {
		t.Fatal(err)
	}
	cs, _, err := loadCerts(&policy.Config{RevokedKeys: path}, priv)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.NewTextHandler(io.Discard, nil)), certs: cs}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			d.refreshRevoked()
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		// Let the blocked open return, so the test ends.
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatal("reading a revoked-keys path that is a named pipe blocked the revocation check")
	}
	if !d.currentCerts().revoked.Revoked(revokedKey) {
		t.Fatal("a named pipe in place of revoked-keys replaced the list")
	}
	if !strings.Contains(d.revokedErr, "regular") {
		t.Fatalf("logged %q, want a file that is not regular", d.revokedErr)
	}
}
