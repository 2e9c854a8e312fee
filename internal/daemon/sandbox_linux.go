// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock access rights by ABI version (include/uapi/linux/landlock.h).
const (
	landlockFSv1 = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	landlockFSRefer    = unix.LANDLOCK_ACCESS_FS_REFER     // ABI 2
	landlockFSTruncate = unix.LANDLOCK_ACCESS_FS_TRUNCATE  // ABI 3
	landlockFSIoctl    = unix.LANDLOCK_ACCESS_FS_IOCTL_DEV // ABI 5
	landlockNetTCP     = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
)

// landlockAttr is struct landlock_ruleset_attr.
type landlockAttr struct {
	fs, net uint64
}

// sandbox confines the acceptor after it has everything it needs: non-dumpable (no core
// dump, no tracing or reading of its memory by other processes of its account), no new
// privileges, and where the kernel has Landlock, no file system access at all and no TCP bind
// or connect (it only accepts on sockets it inherited). The last two are per-thread settings,
// applied to every thread of the process at once with syscall.AllThreadsSyscall, which works
// only in a program built without cgo (CGO_ENABLED=0, as netauthd-acceptor is built). It
// returns a description of what applied and whether the confinement is complete.
func sandbox() (string, bool) {
	dumpErr := setNonDumpable()
	status, complete := confine()
	if dumpErr != nil {
		return "still dumpable (" + dumpErr.Error() + "); " + status, false
	}
	return "non-dumpable; " + status, complete
}

// confine applies no_new_privs and Landlock (see sandbox).
func confine() (string, bool) {
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); errno != 0 {
		if errno == syscall.ENOTSUP {
			return "not confined: this acceptor was built with cgo; build it with CGO_ENABLED=0", false
		}
		return "no_new_privs failed: " + errno.Error(), false
	}
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return "no_new_privs; Landlock unavailable on this kernel (" + errno.Error() + ")", false
	}
	attr := landlockAttr{fs: landlockFSv1}
	if abi >= 2 {
		attr.fs |= landlockFSRefer
	}
	if abi >= 3 {
		attr.fs |= landlockFSTruncate
	}
	if abi >= 4 {
		attr.net = landlockNetTCP
	}
	if abi >= 5 {
		attr.fs |= landlockFSIoctl
	}
	size := unsafe.Sizeof(attr)
	if abi < 4 {
		size = unsafe.Sizeof(attr.fs)
	}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if errno != 0 {
		return "no_new_privs; Landlock ruleset failed: " + errno.Error(), false
	}
	defer unix.Close(int(fd))
	if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0); errno != 0 {
		return "no_new_privs; Landlock restrict failed: " + errno.Error(), false
	}
	what := "no file system access"
	if attr.net != 0 {
		what += ", no TCP bind or connect"
	}
	return fmt.Sprintf("no_new_privs; Landlock ABI %d: %s", abi, what), true
}
