// SPDX-License-Identifier: Apache-2.0

package keys

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKnownHosts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "netauth")
	kh := KnownHosts{Path: filepath.Join(dir, "known_hosts")}
	key, other, third := newPub(t), newPub(t), newPub(t)
	const host = "127.0.0.1:4000"

	// Unknown host in a missing file.
	err := kh.Check(host, key)
	var herr *HostKeyError
	if !errors.As(err, &herr) || herr.Changed || herr.Revoked {
		t.Fatalf("Check on a missing file = %v, want an unknown-host error", err)
	}
	msg := err.Error()
	for _, want := range []string{"unknown host key for " + host, "ED25519 " + Fingerprint(key), "netauth trust " + host} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}

	if err := kh.Add("example.org:4000", other); err != nil {
		t.Fatal(err)
	}
	if err := kh.Add(host, key); err != nil {
		t.Fatal(err)
	}
	if err := kh.Check(host, key); err != nil {
		t.Fatalf("Check after Add: %v", err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, kh.Path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %#o", p, fi.Mode().Perm(), err, want)
		}
	}

	// Changed key.
	err = kh.Check(host, third)
	if !errors.As(err, &herr) || !herr.Changed {
		t.Fatalf("Check with another key = %v, want a changed-key error", err)
	}
	wantKnown := kh.Path + ":2 " + Fingerprint(key)
	if len(herr.Known) != 1 || herr.Known[0] != wantKnown {
		t.Fatalf("Known = %q, want [%q]", herr.Known, wantKnown)
	}
	msg = err.Error()
	for _, want := range []string{
		"HOST KEY CHANGED for " + host,
		"server presented " + Fingerprint(third),
		kh.Path + ":2 pins " + Fingerprint(key),
		"ssh-keygen -R '[127.0.0.1]:4000' -f " + kh.Path,
		"netauth trust " + host,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}

	// The key of another host is not trusted here.
	if err := kh.Check(host, other); !errors.As(err, &herr) || !herr.Changed {
		t.Fatalf("Check with another host's key = %v", err)
	}

	// ssh-keygen finds our entry.
	out := run(t, nil, openssh(t, "ssh-keygen"), "-F", "[127.0.0.1]:4000", "-f", kh.Path)
	if !strings.Contains(string(out), "[127.0.0.1]:4000 "+authLine(key)) {
		t.Fatalf("ssh-keygen -F printed %q", out)
	}

	if err := kh.Check("127.0.0.1", key); err == nil || errors.As(err, &herr) {
		t.Fatalf("Check without a port = %v, want a plain error", err)
	}
}

func TestKnownHostsPorts(t *testing.T) {
	kh := KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	key := newPub(t)
	if err := kh.Add("host.example:22", key); err != nil {
		t.Fatal(err)
	}
	if err := kh.Add("[::1]:4000", key); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(kh.Path)
	if err != nil {
		t.Fatal(err)
	}
	want := "host.example " + authLine(key) + "\n[::1]:4000 " + authLine(key) + "\n"
	if string(data) != want {
		t.Fatalf("file = %q, want %q", data, want)
	}
	tests := []struct {
		host  string
		known bool
	}{
		{"host.example:22", true},
		{"host.example:2222", false},
		{"[::1]:4000", true},
		{"[::1]:22", false},
		{"other.example:22", false},
	}
	for _, tt := range tests {
		err := kh.Check(tt.host, key)
		if (err == nil) != tt.known {
			t.Errorf("Check(%s) = %v, want known=%v", tt.host, err, tt.known)
		}
	}
}

func TestKnownHostsRevokedAndNoNewline(t *testing.T) {
	kh := KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	key, revoked := newPub(t), newPub(t)
	// A file whose last line lacks a newline, with a revoked key.
	if err := os.WriteFile(kh.Path, []byte("# pins\n@revoked * "+authLine(revoked)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := kh.Add("a.example:4000", revoked); err != nil {
		t.Fatal(err)
	}
	if err := kh.Add("a.example:4001", key); err != nil {
		t.Fatal(err)
	}
	err := kh.Check("a.example:4000", revoked)
	var herr *HostKeyError
	if !errors.As(err, &herr) || !herr.Revoked || herr.RevokedAt != kh.Path+":2" {
		t.Fatalf("Check of a revoked key = %#v", err)
	}
	if !strings.Contains(err.Error(), "REVOKED") {
		t.Errorf("message %q does not say REVOKED", err)
	}
	if err := kh.Check("a.example:4001", key); err != nil {
		t.Fatalf("Check after appending to a file without a final newline: %v", err)
	}
}

func TestDefaultKnownHostsPath(t *testing.T) {
	tests := []struct {
		env, xdg, home, want string
	}{
		{"/x/kh", "/cfg", "/home/u", "/x/kh"},
		{"", "/cfg", "/home/u", "/cfg/netauth/known_hosts"},
		{"", "", "/home/u", "/home/u/.config/netauth/known_hosts"},
	}
	for _, tt := range tests {
		t.Setenv("NETAUTH_KNOWN_HOSTS", tt.env)
		t.Setenv("XDG_CONFIG_HOME", tt.xdg)
		t.Setenv("HOME", tt.home)
		got, err := DefaultKnownHostsPath()
		if err != nil || got != tt.want {
			t.Errorf("DefaultKnownHostsPath() = %q, %v; want %q", got, err, tt.want)
		}
	}
}
