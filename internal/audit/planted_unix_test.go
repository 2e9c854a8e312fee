// SPDX-License-Identifier: Apache-2.0

//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenRefusesSymlink: a symbolic link at the log's path is refused, not followed: netauthd
// runs as root, and following a link planted there would make it create or append to any
// file the link names.
func TestOpenRefusesSymlink(t *testing.T) {
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	target := filepath.Join(t.TempDir(), "victim")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if w, err := Open(path, host.priv, Options{}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		if w != nil {
			w.Close()
		}
		t.Fatalf("Open through a symbolic link = %v, want it refused", err)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatalf("Open through a symbolic link created its target (%v)", err)
	}
}

// TestReopenRefusesPlantedSymlink: after the log is rotated, a symbolic link planted at its
// path (to a file that does not exist yet, or to an empty one) is refused by Reopen, which
// leaves the target alone, and the Writer goes on with the file it had open.
func TestReopenRefusesPlantedSymlink(t *testing.T) {
	for _, exists := range []bool{false, true} {
		host := newHostKey(t)
		path := filepath.Join(t.TempDir(), "audit.log")
		w, err := Open(path, host.priv, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(refusedRecord(host.pub, "one")); err != nil {
			t.Fatal(err)
		}
		rotated := path + ".1"
		if err := os.Rename(path, rotated); err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(t.TempDir(), "victim")
		if exists {
			if err := os.WriteFile(target, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		if err := w.Reopen(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("Reopen through a symbolic link (target exists: %v) = %v, want it refused", exists, err)
		}
		r := refusedRecord(host.pub, "two")
		if err := w.Write(r); err != nil || r.Seq != 2 {
			t.Fatalf("Write after the refused Reopen: %v, seq %d", err, r.Seq)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(target)
		if exists && (err != nil || len(data) != 0) || !exists && !os.IsNotExist(err) {
			t.Fatalf("the link's target (existed: %v) now holds %d bytes (%v)", exists, len(data), err)
		}
		if rep := verifyFile(t, rotated, host); !rep.OK() || rep.Records != 2 {
			t.Fatalf("log: %+v", rep)
		}
	}
}

// TestOpenRefusesUnsafeDirectory: a log directory that group or others may write (where
// anyone could replace the log, remove it, or plant a file or link in its place) is refused,
// and nothing is created in it.
func TestOpenRefusesUnsafeDirectory(t *testing.T) {
	host := newHostKey(t)
	for _, mode := range []os.FileMode{0o770, 0o757, 0o777 | os.ModeSticky} {
		dir := t.TempDir()
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "audit.log")
		if w, err := Open(path, host.priv, Options{}); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
			if w != nil {
				w.Close()
			}
			t.Fatalf("Open in a directory of mode %v = %v, want it refused", mode, err)
		}
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Fatalf("Open in a directory of mode %v created the log (%v)", mode, err)
		}
	}
}

// TestOpenRefusesForeignFile: a log file owned by another user (who could rewrite it) is
// refused.
func TestOpenRefusesForeignFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root (CI runs as root)")
	}
	host := newHostKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if w, err := Open(path, host.priv, Options{}); err == nil || !strings.Contains(err.Error(), "owned by") {
		if w != nil {
			w.Close()
		}
		t.Fatalf("Open of a file owned by uid 65534 = %v, want it refused", err)
	}
}
