// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
)

// TestKeySourceDirNone: "authorized-keys-dir none" turns the per-user key files off. A key
// that is listed only in the default directory (/etc/netauth/authorized_keys) must not be
// authorized through the key source netauthd builds from such a configuration, whatever the
// other sources are; with the directive left out, the same key is authorized (so the file the
// test writes is one the default configuration reads).
func TestKeySourceDirNone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("writes into /etc/netauth/authorized_keys: needs root")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clear(priv)
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	// A user name no account has, so only the per-user file can list a key for it.
	user := fmt.Sprintf("netauth-dirnone-%d", os.Getpid())
	writeDefaultKeyFile(t, user, string(ssh.MarshalAuthorizedKey(key)))

	parse := func(text string) *policy.Config {
		t.Helper()
		cfg, err := policy.Parse("netauthd.conf", strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	service := "service s {\n  listen 127.0.0.1:0\n  program /bin/true\n  users *\n}\n"
	ctx := context.Background()

	// The default directory, implicitly: the key is authorized.
	ok, err := keys.Authorized(ctx, keySource(parse("home-authorized-keys yes\n"+service)), user, key)
	if err != nil || !ok {
		t.Fatalf("default authorized-keys-dir: authorized %v, %v; want the key in %s accepted", ok, err, policy.DefaultAuthorizedKeysDir)
	}
	for _, tc := range []struct{ name, conf string }{
		{"none, home keys", "authorized-keys-dir none\nhome-authorized-keys yes\n"},
		{"none, no other source", "authorized-keys-dir none\nhome-authorized-keys no\n"},
		{"none, key command", "authorized-keys-dir none\nhome-authorized-keys no\nkey-command /bin/true %u\n"},
	} {
		src := keySource(parse(tc.conf + service))
		ok, err := keys.Authorized(ctx, src, user, key)
		if err != nil || ok {
			t.Errorf("%s: authorized %v, %v; want the key in the default directory refused without error", tc.name, ok, err)
		}
		if m, isMulti := src.(keys.Multi); isMulti {
			for _, s := range m {
				if _, isFiles := s.(keys.UserFiles); isFiles {
					t.Errorf("%s: the key source still reads per-user files: %#v", tc.name, s)
				}
			}
		}
	}
}

// writeDefaultKeyFile writes policy.DefaultAuthorizedKeysDir/user for the test's duration,
// creating the directories it needs and removing what it created afterwards.
func writeDefaultKeyFile(t *testing.T, user, content string) {
	t.Helper()
	var created []string
	for d := policy.DefaultAuthorizedKeysDir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) {
			created = append(created, d)
		}
	}
	if err := os.MkdirAll(policy.DefaultAuthorizedKeysDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range created {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(policy.DefaultAuthorizedKeysDir, user)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Remove(path)
		for _, d := range created { // deepest first; a directory others use is not empty
			os.Remove(d)
		}
	})
}
