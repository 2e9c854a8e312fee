// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"fmt"
	"runtime"
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

// landlockScopes are the ABI 6 scopes: no connecting to abstract Unix sockets, nor
// signalling processes, outside the sandbox.
const landlockScopes = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL

// landlockAttr is struct landlock_ruleset_attr.
type landlockAttr struct {
	fs, net, scoped uint64
}

// sandbox confines the acceptor after it has everything it needs: non-dumpable (no core
// dump, no tracing or reading of its memory by other processes of its account), no new
// privileges; where the kernel has Landlock, no file system access at all, no TCP bind or
// connect (it only accepts on sockets it inherited), and no abstract Unix socket or signal
// outside its sandbox; and a seccomp filter (denySockets) that lets it create no socket of any
// kind and no namespace. The no_new_privs and Landlock settings are per thread, applied to
// every thread of the process at once with syscall.AllThreadsSyscall, which works only in a
// program built without cgo (CGO_ENABLED=0, as netauthd-acceptor is built); the seccomp filter
// is synchronized to every thread by the kernel. It returns a description of what applied and
// whether the confinement is complete.
func sandbox() (string, bool) {
	dumpErr := setNonDumpable()
	status, complete := confine()
	if nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); err == nil && nnp == 1 {
		if err := denySockets(); err != nil {
			status, complete = status+"; "+err.Error(), false
		} else {
			status += "; seccomp: no new sockets, no namespaces"
		}
	}
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
	if abi >= 6 {
		attr.scoped = landlockScopes
	}
	size := unsafe.Sizeof(attr)
	switch {
	case abi < 4:
		size = unsafe.Sizeof(attr.fs)
	case abi < 6:
		size = unsafe.Offsetof(attr.scoped)
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
	if attr.scoped != 0 {
		what += ", no abstract Unix sockets or signals outside"
	}
	return fmt.Sprintf("no_new_privs; Landlock ABI %d: %s", abi, what), true
}

// Namespace flags of clone(2) and unshare(2) (CLONE_NEWTIME is only valid for unshare,
// which is denied as a whole).
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// seccompArch is the AUDIT_ARCH value of the architectures denySockets has a filter for: 64-bit,
// little-endian, and without socketcall(2), so that socket(2) and socketpair(2) are the only
// system calls that create a socket (io_uring aside, which is denied too).
func seccompArch() (uint32, bool) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, true
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, true
	case "riscv64":
		return unix.AUDIT_ARCH_RISCV64, true
	case "loong64":
		return unix.AUDIT_ARCH_LOONGARCH64, true
	}
	return 0, false
}

// denySockets installs, on every thread, a seccomp filter under which socket(2) and
// socketpair(2) fail with EACCES, io_uring_setup(2) (which can create sockets itself) and
// unshare(2) with EPERM, clone(2) with a namespace flag with EPERM, clone3(2) (whose flags a
// filter cannot read) with ENOSYS, as does any system call of another architecture (or, on
// amd64, of the x32 ABI). Landlock stops TCP bind and connect, but not a new UDP, Unix (to a
// path or abstract address) or netlink socket: an acceptor taken over could otherwise reach
// every local service that listens on one (the system D-Bus, a resolver, syslog) and send
// datagrams anywhere, and could make a user namespace, which opens much of the kernel to an
// unprivileged process. The acceptor needs none of it: it accepts on the sockets it inherited
// and talks to the monitor over the channel it inherited. It requires no_new_privs (set by
// confine).
func denySockets() error {
	arch, ok := seccompArch()
	if !ok {
		return fmt.Errorf("no seccomp filter on %s", runtime.GOARCH)
	}
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		// Offsets in struct seccomp_data: nr, arch, and the low half of the first argument
		// (little-endian).
		offNr, offArch, offArg0 = 0, 4, 16
	)
	fail := func(e syscall.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }
	prog := []unix.SockFilter{
		{Code: ld, K: offArch},
		{Code: jeq, K: arch, Jt: 1},
		{Code: ret, K: fail(unix.ENOSYS)},
		{Code: ld, K: offNr},
	}
	if runtime.GOARCH == "amd64" {
		const x32 = 0x40000000 // __X32_SYSCALL_BIT
		prog = append(prog, unix.SockFilter{Code: jge, K: x32, Jf: 1}, unix.SockFilter{Code: ret, K: fail(unix.ENOSYS)})
	}
	for _, d := range []struct {
		nr    uintptr
		errno syscall.Errno
	}{
		{unix.SYS_SOCKET, unix.EACCES},
		{unix.SYS_SOCKETPAIR, unix.EACCES},
		{unix.SYS_IO_URING_SETUP, unix.EPERM},
		{unix.SYS_UNSHARE, unix.EPERM},
		{unix.SYS_CLONE3, unix.ENOSYS},
	} {
		prog = append(prog, unix.SockFilter{Code: jeq, K: uint32(d.nr), Jf: 1}, unix.SockFilter{Code: ret, K: fail(d.errno)})
	}
	prog = append(prog,
		unix.SockFilter{Code: jeq, K: uint32(unix.SYS_CLONE), Jf: 3},
		unix.SockFilter{Code: ld, K: offArg0},
		unix.SockFilter{Code: jset, K: cloneNamespaces, Jf: 1},
		unix.SockFilter{Code: ret, K: fail(unix.EPERM)},
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW},
	)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	tid, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	switch {
	case errno != 0:
		return fmt.Errorf("seccomp filter failed: %w", errno)
	case tid != 0: // with TSYNC, the thread that could not take the filter
		return fmt.Errorf("seccomp filter failed: thread %d could not take it", tid)
	}
	runtime.KeepAlive(prog)
	return nil
}
