// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOneHostKeyPath checks that the embedded default and a configuration file without
// host-key use the same host key, so that moving from one to the other keeps the key
// clients have pinned.
func TestOneHostKeyPath(t *testing.T) {
	c, err := Parse("netauthd.conf", strings.NewReader("service s {\n listen 127.0.0.1:1\n program /bin/true\n users *\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := Default("/bin/true"); c.HostKey != d.HostKey {
		t.Errorf("a configuration without host-key uses %s, the embedded default %s", c.HostKey, d.HostKey)
	}
	if c.HostKey != "/var/lib/netauth/host_ed25519_key" {
		t.Errorf("default host key %s, want /var/lib/netauth/host_ed25519_key (the packaged configuration names it)", c.HostKey)
	}
}

// TestHostKeyFileLegacy checks the compatibility path: a configuration that does not name
// its host key keeps the key at the former default path when only that one exists.
func TestHostKeyFileLegacy(t *testing.T) {
	dir := t.TempDir()
	def, old := filepath.Join(dir, "new_key"), filepath.Join(dir, "old_key")
	unnamed := func() *Config { c := newConfig(""); c.HostKey = def; return c }
	named := func() *Config { c := unnamed(); c.lines["host-key"] = 3; return c }

	if p, legacy := unnamed().hostKeyFile(def, old); p != def || legacy {
		t.Errorf("neither file exists: %s, %v; want %s (created there)", p, legacy, def)
	}
	if err := os.WriteFile(old, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, legacy := unnamed().hostKeyFile(def, old); p != old || !legacy {
		t.Errorf("only the former default exists: %s, %v; want %s, legacy", p, legacy, old)
	}
	if p, legacy := named().hostKeyFile(def, old); p != def || legacy {
		t.Errorf("host-key named explicitly: %s, %v; want %s as named", p, legacy, def)
	}
	other := unnamed()
	other.HostKey = filepath.Join(dir, "elsewhere")
	if p, legacy := other.hostKeyFile(def, old); p != other.HostKey || legacy {
		t.Errorf("another host key: %s, %v; want %s", p, legacy, other.HostKey)
	}
	if err := os.WriteFile(def, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, legacy := unnamed().hostKeyFile(def, old); p != def || legacy {
		t.Errorf("both exist: %s, %v; want the new default %s", p, legacy, def)
	}
}
