// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFindAcceptor: netauthd finds netauthd-acceptor next to itself (a go build) and, failing
// that, in ../libexec/netauth from its directory (the package's /usr/sbin/netauthd and
// /usr/libexec/netauth/netauthd-acceptor); next to itself wins; a file that is not executable
// is not an acceptor; and nothing else is looked at.
func TestFindAcceptor(t *testing.T) {
	root := t.TempDir()
	self := filepath.Join(root, "usr/sbin/netauthd")
	libexec := filepath.Join(root, "usr/libexec/netauth/netauthd-acceptor")
	next := filepath.Join(root, "usr/sbin/netauthd-acceptor")
	write := func(path string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	write(self, 0o755)
	// An acceptor elsewhere on the system (another installation) is never used.
	write(filepath.Join(root, "usr/local/libexec/netauth/netauthd-acceptor"), 0o755)

	if got, ok := findAcceptor(self); ok {
		t.Fatalf("no acceptor installed: found %s", got)
	}

	write(libexec, 0o644)
	if got, ok := findAcceptor(self); ok {
		t.Fatalf("a non-executable %s was taken as the acceptor: %s", libexec, got)
	}
	write(libexec, 0o755)
	if got, ok := findAcceptor(self); !ok || got != libexec {
		t.Fatalf("packaged layout: found %q, %v; want %s", got, ok, libexec)
	}

	write(next, 0o755)
	if got, ok := findAcceptor(self); !ok || got != next {
		t.Fatalf("go build layout (acceptor next to netauthd): found %q, %v; want %s", got, ok, next)
	}
}
