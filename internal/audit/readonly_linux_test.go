// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// fsImmutableFlag is FS_IMMUTABLE_FL, the inode flag chattr +i sets.
const fsImmutableFlag = 0x10

// makeReadOnly makes the directory dir unwritable for the test process until
// the test ends: by its mode for an ordinary user, and for root (whom modes
// do not stop) with the immutable flag.
func makeReadOnly(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		return
	}
	setFlags := func(on bool) error {
		f, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer f.Close()
		flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err != nil {
			return err
		}
		if on {
			flags |= fsImmutableFlag
		} else {
			flags &^= fsImmutableFlag
		}
		return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags)
	}
	if err := setFlags(true); err != nil {
		t.Fatalf("making %s immutable (needed to make it read-only for root): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := setFlags(false); err != nil {
			t.Errorf("making %s mutable again: %v", dir, err)
		}
	})
}
