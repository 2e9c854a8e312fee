// SPDX-License-Identifier: Apache-2.0

//go:build unix

package keys

import (
	"fmt"
	"io/fs"
	"os/exec"
	"strconv"
	"syscall"
)

// checkOwnerMode checks that path (described by fi) is owned by uid or root
// and is not writable by group or others.
func checkOwnerMode(path string, fi fs.FileInfo, uid string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("keys: cannot find the owner of %s", path)
	}
	owner := strconv.FormatUint(uint64(st.Uid), 10)
	if owner != uid && st.Uid != 0 {
		return fmt.Errorf("keys: %s is owned by uid %s, not by the user (uid %s) or root; refusing it", path, owner, uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("keys: %s is writable by group or others (mode %#o); refusing it", path, fi.Mode().Perm())
	}
	return nil
}

// killGroupOnCancel runs cmd in a process group of its own and makes
// cancellation kill the whole group, so that programs the command started
// do not outlive it.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
