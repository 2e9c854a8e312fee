// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestHostKeyRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "host_ed25519_key")
	key, err := GenerateHostKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHostKey(path, key, "netauth@test"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", fi.Mode().Perm())
	}
	got, err := LoadHostKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(got) {
		t.Fatal("loaded key differs from the written one")
	}

	// ssh-keygen reads our key and derives the same public key as the .pub
	// file holds.
	sshPub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	derived := run(t, nil, openssh(t, "ssh-keygen"), "-y", "-f", path)
	if f := strings.Fields(string(derived)); len(f) < 2 || f[0]+" "+f[1] != authLine(sshPub) {
		t.Fatalf("ssh-keygen -y printed %q, want %q", derived, authLine(sshPub))
	}
	pubFile, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if want := authLine(sshPub) + " netauth@test\n"; string(pubFile) != want {
		t.Fatalf(".pub file = %q, want %q", pubFile, want)
	}

	// Overwriting replaces the key and leaves no temporary files.
	key2, _ := GenerateHostKey(rand.Reader)
	if err := WriteHostKey(path, key2, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadHostKey(path); err != nil || !key2.Equal(got) {
		t.Fatalf("after rewrite: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d files, want 2", len(entries))
	}
}

func TestLoadHostKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	key, _ := GenerateHostKey(rand.Reader)
	good := filepath.Join(dir, "good")
	if err := WriteHostKey(good, key, ""); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	data, _ := os.ReadFile(good)
	if err := os.WriteFile(open, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	groupOnly := filepath.Join(dir, "group")
	if err := os.WriteFile(groupOnly, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(groupOnly, 0o640); err != nil {
		t.Fatal(err)
	}
	notKey := filepath.Join(dir, "notkey")
	if err := os.WriteFile(notKey, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pubOnly := good + ".pub"
	if err := os.Chmod(pubOnly, 0o600); err != nil {
		t.Fatal(err)
	}
	rsaKey := sshKeygen(t, dir, "rsa", "rsa", "", "-b", "2048")
	ecdsaKey := sshKeygen(t, dir, "ecdsa", "ecdsa", "")
	encrypted := sshKeygen(t, dir, "enc", "ed25519", "pass")

	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing"), "does not exist"},
		{"mode 0644", open, "too open"},
		{"mode 0640", groupOnly, "too open"},
		{"not a key", notKey, "private key"},
		{"public key", pubOnly, "private key"},
		{"rsa", rsaKey, "Ed25519"},
		{"ecdsa", ecdsaKey, "Ed25519"},
		{"encrypted", encrypted, "passphrase"},
		{"directory", dir, "not a regular file"},
	}
	for _, tt := range tests {
		if tt.name == "directory" {
			os.Chmod(dir, 0o700)
		}
		_, err := LoadHostKey(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "keys: ") {
			t.Errorf("%s: LoadHostKey = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
	// ssh-keygen made an unencrypted Ed25519 key: that one loads.
	plain := sshKeygen(t, dir, "plain", "ed25519", "")
	if _, err := LoadHostKey(plain); err != nil {
		t.Errorf("ssh-keygen Ed25519 key: %v", err)
	}
}

func TestLoadOrCreateHostKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc", "netauth")
	path := filepath.Join(dir, "host_ed25519_key")
	key, created, err := LoadOrCreateHostKey(path)
	if err != nil || !created {
		t.Fatalf("first call: created=%v, %v", created, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %#o, want 0700", fi.Mode().Perm())
	}
	if _, err := os.Stat(path + ".pub"); err != nil {
		t.Error(err)
	}
	again, created, err := LoadOrCreateHostKey(path)
	if err != nil || created {
		t.Fatalf("second call: created=%v, %v", created, err)
	}
	if !key.Equal(again) {
		t.Fatal("second call returned another key")
	}
	if len(key) != ed25519.PrivateKeySize {
		t.Fatalf("key is %d bytes", len(key))
	}
	// An existing but unusable key is an error, never silently replaced.
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreateHostKey(path); err == nil {
		t.Fatal("LoadOrCreateHostKey accepted a 0644 key")
	}
	if data, _ := os.ReadFile(path); !bytes.Contains(data, []byte("OPENSSH PRIVATE KEY")) {
		t.Fatal("key file was replaced")
	}
}
