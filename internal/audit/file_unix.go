// SPDX-License-Identifier: Apache-2.0

//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// openFlags are added to the flags the log is opened with: a symbolic link
// at its path is refused rather than followed, and a terminal is not made
// the daemon's controlling terminal.
const openFlags = syscall.O_NOFOLLOW | syscall.O_NOCTTY

// isSymlinkError reports whether err is open(2) refusing a symbolic link
// under O_NOFOLLOW.
func isSymlinkError(err error) bool { return errors.Is(err, syscall.ELOOP) }

// checkOwner refuses a log directory or file owned by anyone but this
// process's user or root.
func checkOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := int(st.Uid); uid != 0 && uid != os.Geteuid() {
		return fmt.Errorf("audit: %s is owned by uid %d, not by root or this process's user: whoever owns it could rewrite the log; refusing it", path, uid)
	}
	return nil
}
