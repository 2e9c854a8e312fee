// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
)

// refusedNotAuthorized fails the test unless err is a not_authorized refusal.
func refusedNotAuthorized(t *testing.T, what string, err error) {
	t.Helper()
	var re *netauth.RefusedError
	if !errors.As(err, &re) || re.Code != netauth.CodeNotAuthorized {
		t.Fatalf("%s: %v; want refused, not authorized", what, err)
	}
}

// TestCachedKeysAtNextHandshake: the monitor reads a user's unchanged authorized keys file
// once, not at every handshake (each lookup costs a stat), and a change to the file is seen at the next handshake even when it leaves the
// file's size and modification time as they were: the key replaced in place by another of
// the same length, the modification time set back.
func TestCachedKeysAtNextHandshake(t *testing.T) {
	tb := newTestbed(t, whoamiService)
	// Let the files written at setup age past the window in which a read is not kept.
	time.Sleep(keys.RacyWindow + 100*time.Millisecond)
	cfg := tb.config("netauth-alice")
	if _, err := tb.whoami("whoami", "netauth-alice", cfg); err != nil {
		t.Fatal(err)
	}
	reads := tb.d.caches.files.Reads()
	for range 3 {
		a, err := tb.whoami("whoami", "netauth-alice", cfg)
		if err != nil || a["resumed"] != "true" {
			t.Fatalf("resumed connection: %v, %v", a, err)
		}
	}
	if n := tb.d.caches.files.Reads() - reads; n != 0 {
		t.Errorf("3 resumed connections read the unchanged key file %d times; want 0", n)
	}

	path := filepath.Join(tb.keysDir, "netauth-alice")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	other := ssh.MarshalAuthorizedKey(tb.users["netauth-bob"].PublicKey())
	if int64(len(other)) != fi.Size() {
		t.Fatalf("bob's key line is %d bytes, alice's file %d", len(other), fi.Size())
	}
	time.Sleep(30 * time.Millisecond) // a change time of its own
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(other); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	// The ticket is refused after its binder (the last authorization is less than a second
	// old, so it is resumed) or falls back to a full handshake, which refuses alice's key.
	c, err := netauth.Dial("tcp", tb.addr("whoami"), cfg)
	if err == nil {
		err = c.Handshake()
		c.Close()
	}
	refusedNotAuthorized(t, "after alice's key was replaced in place", err)
}

// TestGroupRemovalAtNextHandshake: a user removed from the group that grants a service is
// refused at the next handshake, a resumption included: the monitor's answers from the user
// database are forgotten as soon as /etc/group changes.
func TestGroupRemovalAtNextHandshake(t *testing.T) {
	requireRoot(t)
	const group = "netauth-cachegrp"
	exec.Command("groupdel", group).Run()
	if out, err := exec.Command("groupadd", group).CombinedOutput(); err != nil {
		t.Fatalf("groupadd: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	if out, err := exec.Command("gpasswd", "-a", "netauth-alice", group).CombinedOutput(); err != nil {
		t.Fatalf("gpasswd -a: %v: %s", err, out)
	}
	tb := newTestbed(t, strings.Replace(whoamiService, "users netauth-alice netauth-bob", "groups "+group, 1))
	cfg := tb.config("netauth-alice")
	for range 2 {
		if _, err := tb.whoami("whoami", "netauth-alice", cfg); err != nil {
			t.Fatalf("alice, in the group: %v", err)
		}
	}
	if out, err := exec.Command("gpasswd", "-d", "netauth-alice", group).CombinedOutput(); err != nil {
		t.Fatalf("gpasswd -d: %v: %s", err, out)
	}
	c, err := netauth.Dial("tcp", tb.addr("whoami"), cfg)
	if err == nil {
		err = c.Handshake()
		c.Close()
	}
	refusedNotAuthorized(t, "alice, removed from the group", err)
}

// BenchmarkAllowed is the monitor's authorization of one handshake (allowed: the user's key
// by its hash, the account, the grant), as a resumption makes it twice, with the caches of
// key files and user database answers and without (as before they existed). The user has a
// key file in authorized-keys-dir and no ~/.ssh/authorized_keys (home-authorized-keys yes).
//
//	sudo go test -run '^$' -bench Allowed -benchmem ./internal/daemon/
func BenchmarkAllowed(b *testing.B) {
	requireRoot(b)
	dir := b.TempDir()
	k := newBenchKey(b)
	if err := os.WriteFile(filepath.Join(dir, "netauth-alice"), ssh.MarshalAuthorizedKey(k), 0o644); err != nil {
		b.Fatal(err)
	}
	cfg, err := policy.Parse("netauthd.conf", strings.NewReader("authorized-keys-dir "+dir+"\nhome-authorized-keys yes\n"+
		"service s {\n  listen 127.0.0.1:0\n  program /bin/true\n  users netauth-alice\n}\n"))
	if err != nil {
		b.Fatal(err)
	}
	d := &Daemon{cfg: cfg}
	d.keys, d.keysDirect = d.keySource(cfg), keySource(cfg)
	sc := cfg.Lookup("s")
	time.Sleep(keys.RacyWindow) // the file was written just now
	for _, off := range []bool{false, true} {
		name := "cached"
		if off {
			name = "uncached"
		}
		b.Run(name, func(b *testing.B) {
			d.caches.off.Store(off)
			ctx := context.Background()
			cpu := processCPU()
			for b.Loop() {
				r := &handshake.Result{KeyHash: identity.KeyHash(k)}
				r.User = "netauth-alice"
				if _, err := d.allowed(ctx, sc, d.currentKeys(), r); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time, less sensitive than the time taken to what else runs on the machine.
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

func newBenchKey(b *testing.B) ssh.PublicKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		b.Fatal(err)
	}
	return s.PublicKey()
}

// processCPU returns the CPU time this process used, user and system, in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
