// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"ubns.dev/netauth"
)

// TestHostCertificate: netauthd with a host key made by ssh-keygen (as
// /etc/ssh/ssh_host_ed25519_key is) presents a host certificate made by ssh-keygen -s -h, and
// a client trusting only its CA connects (twice: the second resumes). The certificate has many
// principals, so its ServerAuth is larger than a plain key's limits allowed, through the
// acceptor too.
func TestHostCertificate(t *testing.T) {
	caDir := t.TempDir()
	ca := filepath.Join(caDir, "host_ca")
	keygen := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v: %s", args, err, out)
		}
	}
	keygen("-q", "-t", "ed25519", "-N", "", "-C", "host CA", "-f", ca)
	names := []string{"127.0.0.1"}
	for i := range 60 {
		names = append(names, fmt.Sprintf("host%02d.fleet.example.com", i))
	}
	tb := newTestbedOpts(t, whoamiService, testbedOpts{hostCert: func(hostKey string) string {
		keygen("-q", "-t", "ed25519", "-N", "", "-C", "", "-f", hostKey)
		keygen("-q", "-s", ca, "-h", "-I", "netauthd test", "-n", strings.Join(names, ","), "-V", "-1d:+30d", hostKey+".pub")
		return hostKey + "-cert.pub"
	}})
	caPub, err := os.ReadFile(ca + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, append([]byte("@cert-authority [127.0.0.1]:* "), caPub...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := tb.config("netauth-alice")
	cfg.KnownHostsFile = kh
	for i, want := range []string{"false", "true"} {
		got, err := tb.whoami("whoami", "netauth-alice", cfg)
		if err != nil || got["user"] != "netauth-alice" || got["resumed"] != want {
			t.Fatalf("connection %d: %v, %v", i, got, err)
		}
	}
	// Without the CA line the certificate does not help.
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	_, err = tb.whoami("whoami", "netauth-bob", cfg)
	var herr *netauth.HostKeyError
	if !errors.As(err, &herr) || !herr.Cert {
		t.Fatalf("without the CA: %v", err)
	}
}

// TestHostCertificateReload: a reload reads host-certificate again: after the host key is
// certified by another CA and netauthd reloads, a client trusting only that CA connects.
func TestHostCertificateReload(t *testing.T) {
	dir := t.TempDir()
	keygen := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen %v: %v: %s", args, err, out)
		}
	}
	oldCA, newCA := filepath.Join(dir, "old_ca"), filepath.Join(dir, "new_ca")
	keygen("-q", "-t", "ed25519", "-N", "", "-C", "old CA", "-f", oldCA)
	keygen("-q", "-t", "ed25519", "-N", "", "-C", "new CA", "-f", newCA)
	var hostKey string
	tb := newTestbedOpts(t, whoamiService, testbedOpts{hostCert: func(k string) string {
		hostKey = k
		keygen("-q", "-t", "ed25519", "-N", "", "-C", "", "-f", k)
		keygen("-q", "-s", oldCA, "-h", "-I", "old", "-n", "127.0.0.1", k+".pub")
		return k + "-cert.pub"
	}})
	newPub, err := os.ReadFile(newCA + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, append([]byte("@cert-authority [127.0.0.1]:* "), newPub...), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := tb.config("netauth-alice")
	cfg.KnownHostsFile = kh
	var herr *netauth.HostKeyError
	if _, err := tb.whoami("whoami", "netauth-alice", cfg); !errors.As(err, &herr) {
		t.Fatalf("before the new certificate: %v, want a host key error", err)
	}
	keygen("-q", "-s", newCA, "-h", "-I", "new", "-n", "127.0.0.1", hostKey+".pub")
	if err := tb.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := tb.whoami("whoami", "netauth-alice", cfg); err != nil || got["user"] != "netauth-alice" {
		t.Fatalf("after the reload: %v %v", got, err)
	}
}
