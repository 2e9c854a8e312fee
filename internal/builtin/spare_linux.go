// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/trace"
)

// processText holds the command line and environment blocks that /proc shows for a spare
// once it is assigned (setProcessText). The kernel reads them from this memory for as long
// as the process lives, so it is never freed (Go's heap does not move objects).
var processText []byte

// become turns a spare worker into the worker a fresh start would have made, as execve(2) of
// the built-in worker as the user would:
//
//   - The command line and environment /proc shows become the worker's (setProcessText), while
//     the spare may still set them (it needs CAP_SYS_RESOURCE: a spare of a netauthd that is
//     not root keeps showing its own).
//   - Every inherited descriptor but standard input, output and error, the control descriptor
//     fd and the trace descriptor the assigned environment names is closed (there should be
//     none).
//   - With a.SetCredentials, the supplementary groups, then the real, effective and saved group
//     ID, then the user ID become the assignment's, for every thread of the process at once
//     (the syscall package's Setgroups, Setresgid and Setresuid do so). Then the credentials
//     are checked (checkCredentials): all user IDs and group IDs, the groups, and, for a user
//     other than root, no capability left. A user other than root must not be able to
//     regain root: setresuid(0), setresgid(0) and setgroups must fail. Without
//     a.SetCredentials (netauthd is not root: its workers keep its credentials), the spare's
//     user IDs must already all be a.UID.
//   - The parent-death signal, which the kernel clears when credentials change, is set again
//     (SIGKILL, as netauthd starts its workers with), and netauthd must still be the parent.
//   - The process becomes dumpable again as execve makes it: when the user may read its
//     program (the kernel makes a process whose credentials changed non-dumpable).
//   - The environment becomes exactly a.Env, and the working directory a.Dir.
//
// Any failure is returned; the caller then exits without serving anything.
func become(a *handoff.Assignment, fd, ppid int, log *slog.Logger) error {
	setProcessText(a)
	if err := closeExtraFiles(a, fd); err != nil {
		return err
	}
	if a.SetCredentials {
		groups := make([]int, len(a.Groups))
		for i, g := range a.Groups {
			groups[i] = int(g)
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setresgid(int(a.GID), int(a.GID), int(a.GID)); err != nil {
			return fmt.Errorf("setresgid %d: %w", a.GID, err)
		}
		if err := syscall.Setresuid(int(a.UID), int(a.UID), int(a.UID)); err != nil {
			return fmt.Errorf("setresuid %d: %w", a.UID, err)
		}
	}
	if err := checkCredentials(a); err != nil {
		return err
	}
	if a.UID != 0 {
		if err := cannotRegainRoot(log); err != nil {
			return err
		}
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("setting the parent-death signal: %w", err)
	}
	if os.Getppid() != ppid {
		return errors.New("netauthd exited")
	}
	if a.SetCredentials {
		if exe, err := unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			unix.Close(exe)
			if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
				return fmt.Errorf("making the process dumpable: %w", err)
			}
		}
	}
	os.Clearenv()
	for _, kv := range a.Env {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("setting the environment: %w", err)
		}
	}
	if err := os.Chdir(a.Dir); err != nil {
		return fmt.Errorf("changing to the working directory: %w", err)
	}
	return nil
}

// prepare does, while the spare waits, what become will do that does not depend on the
// assignment, so that the kernel's and the runtime's first-time costs (/proc entries, code
// paged in) are not paid while a user waits: it reads its credentials, its descriptors and
// its program, and keeps nothing of what it read.
func prepare() {
	_ = checkCredentials(&handoff.Assignment{SetCredentials: true})
	_, _ = os.ReadDir("/proc/self/fd")
	if exe, err := unix.Open("/proc/self/exe", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		unix.Close(exe)
	}
}

// setProcessText makes the command line and environment that /proc/PID/cmdline and
// /proc/PID/environ show (and so ps, and tools that find netauthd's workers by their
// NETAUTH_USER and NETAUTH_SERVICE) those of a worker started afresh: the spare's own command
// line with its last argument (SpareArg) replaced by a.Args, and a.Env. It needs
// CAP_SYS_RESOURCE (prctl PR_SET_MM); without it the spare's own stay, and nothing else
// depends on them.
func setProcessText(a *handoff.Assignment) {
	var b bytes.Buffer
	for _, s := range append(slices.Clone(os.Args[:len(os.Args)-1]), a.Args...) {
		b.WriteString(s)
		b.WriteByte(0)
	}
	argEnd := b.Len()
	for _, s := range a.Env {
		b.WriteString(s)
		b.WriteByte(0)
	}
	processText = b.Bytes()
	base := uintptr(unsafe.Pointer(&processText[0]))
	// The kernel checks start <= end after each change: the end goes first when the new range
	// ends at or after the old start, the start first otherwise (then it starts at or before
	// the old end). A call that fails changes nothing.
	set := func(startOpt, endOpt int, lo, hi uintptr) {
		prctl := func(opt int, v uintptr) error { return unix.Prctl(unix.PR_SET_MM, uintptr(opt), v, 0, 0) }
		if prctl(endOpt, hi) == nil {
			_ = prctl(startOpt, lo)
		} else if prctl(startOpt, lo) == nil {
			_ = prctl(endOpt, hi)
		}
	}
	set(unix.PR_SET_MM_ARG_START, unix.PR_SET_MM_ARG_END, base, base+uintptr(argEnd))
	set(unix.PR_SET_MM_ENV_START, unix.PR_SET_MM_ENV_END, base+uintptr(argEnd), base+uintptr(len(processText)))
}

// checkCredentials checks the credentials of the process against a: those of the thread
// running it with system calls (getresuid, getresgid, getgroups), and the process's as the
// kernel reports them in /proc/self/status, file system IDs and capabilities included. The
// syscall package's Setgroups, Setresgid and Setresuid change every thread of the process at
// once (with cgo the C library does, without it the runtime's AllThreadsSyscall), and end the
// program should the change fail on one thread after succeeding on another; so every thread
// has the credentials checked here.
func checkCredentials(a *handoff.Assignment) error {
	if r, e, s := unix.Getresuid(); !allAre([]int{r, e, s}, a.UID) {
		return fmt.Errorf("user IDs %d %d %d, want %d", r, e, s, a.UID)
	}
	want := slices.Clone(a.Groups)
	slices.Sort(want)
	want = slices.Compact(want)
	if a.SetCredentials {
		if r, e, s := unix.Getresgid(); !allAre([]int{r, e, s}, a.GID) {
			return fmt.Errorf("group IDs %d %d %d, want %d", r, e, s, a.GID)
		}
		if err := sameGroups(unix.Getgroups, want); err != nil {
			return err
		}
	}
	data, err := readProcFile("/proc/self/status", make([]byte, 8<<10))
	if err != nil {
		return fmt.Errorf("reading the process's credentials: %w", err)
	}
	fields := map[string][]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Fields(v)
		}
	}
	if !allAre(atois(fields["Uid"], 4), a.UID) {
		return fmt.Errorf("the process has user IDs %v, want %d", fields["Uid"], a.UID)
	}
	if !a.SetCredentials {
		return nil
	}
	if !allAre(atois(fields["Gid"], 4), a.GID) {
		return fmt.Errorf("the process has group IDs %v, want %d", fields["Gid"], a.GID)
	}
	if err := sameGroups(func() ([]int, error) { return atois(fields["Groups"], -1), nil }, want); err != nil {
		return fmt.Errorf("the process: %w", err)
	}
	if a.UID != 0 {
		for _, c := range []string{"CapPrm", "CapEff", "CapAmb"} {
			if v := fields[c]; len(v) != 1 || strings.Trim(v[0], "0") != "" {
				return fmt.Errorf("the process keeps capabilities: %s %v", c, v)
			}
		}
	}
	return nil
}

// sameGroups checks that the groups get returns are want (sorted, without duplicates), in any
// order.
func sameGroups(get func() ([]int, error), want []uint32) error {
	got, err := get()
	if err != nil {
		return fmt.Errorf("reading the groups: %w", err)
	}
	slices.Sort(got)
	got = slices.Compact(got)
	if !slices.EqualFunc(got, want, func(g int, w uint32) bool { return g >= 0 && uint64(g) == uint64(w) }) {
		return fmt.Errorf("groups %v, want %v", got, want)
	}
	return nil
}

// atois parses the decimal numbers of v; it returns nil if one is not a number, or if v does
// not hold n of them (n < 0: any number).
func atois(v []string, n int) []int {
	if n >= 0 && len(v) != n {
		return nil
	}
	out := make([]int, 0, len(v))
	for _, s := range v {
		i, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil
		}
		out = append(out, int(i))
	}
	return out
}

// readProcFile reads the file at path (a /proc file, smaller than buf) into buf with plain
// system calls: os.ReadFile takes several times as long (the runtime's poller, a buffer per
// call), and this runs while a user waits for their first connection.
func readProcFile(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
	return nil, fmt.Errorf("%s is larger than %d bytes", path, len(buf))
}

// allAre reports whether ids is not empty and each of its IDs is id.
func allAre(ids []int, id uint32) bool {
	for _, v := range ids {
		if v < 0 || uint64(v) != uint64(id) {
			return false
		}
	}
	return len(ids) > 0
}

// cannotRegainRoot checks that the process cannot take back root's user or group ID or
// groups. Each attempt is a raw system call on this thread alone (the syscall and unix
// packages' functions change every thread); should one succeed, this thread is root again,
// and the process exits at once, saying so in log.
func cannotRegainRoot(log *slog.Logger) error {
	type attempt struct {
		name         string
		trap, a1, a2 uintptr
	}
	zero := []uint32{0}
	tries := []attempt{
		{"setresuid(0, 0, 0)", unix.SYS_SETRESUID, 0, 0},
		{"setgroups([0])", unix.SYS_SETGROUPS, 1, uintptr(unsafe.Pointer(&zero[0]))},
	}
	// Group 0 is only to be refused to a process none of whose group IDs is 0 already.
	if r, e, s := unix.Getresgid(); r != 0 && e != 0 && s != 0 {
		tries = append(tries, attempt{"setresgid(0, 0, 0)", unix.SYS_SETRESGID, 0, 0})
	}
	for _, try := range tries {
		_, _, errno := unix.RawSyscall(try.trap, try.a1, try.a2, 0)
		runtime.KeepAlive(zero)
		if errno == 0 {
			log.Error("spare worker: regaining root succeeded after dropping it; exiting", "call", try.name)
			unix.Exit(1)
		}
		if errno != unix.EPERM {
			return fmt.Errorf("%s failed with %w, want EPERM", try.name, errno)
		}
	}
	return nil
}

// closeExtraFiles closes every descriptor the spare inherited (one without the close-on-exec
// flag) but 0, 1, 2, the control descriptor fd and the trace descriptor a.Env names: those a
// worker started afresh inherits. netauthd starts spares with nothing else, so there should
// be nothing to close. Descriptors with the flag were opened by this process (Go opens every
// file close-on-exec): the runtime keeps some open (its poller's, the cgroup files it reads
// the CPU limit from), and they stay.
func closeExtraFiles(a *handoff.Assignment, fd int) error {
	keep := []int{0, 1, 2, fd}
	for _, kv := range a.Env {
		if v, ok := strings.CutPrefix(kv, trace.Env+"="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 2 {
				keep = append(keep, n)
			}
		}
	}
	// The listing's own descriptor is close-on-exec, and closed by the time the loop runs.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("listing descriptors: %w", err)
	}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || slices.Contains(keep, n) {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue // gone, or this process's own
		}
		if err := unix.Close(n); err != nil {
			return fmt.Errorf("closing inherited descriptor %d: %w", n, err)
		}
	}
	return nil
}
