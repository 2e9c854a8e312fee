// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/policy"
)

// sandboxProbeEnv makes a test binary, built without cgo, confine itself as the acceptor does
// and report what it can still do (sandboxProbe), instead of running tests.
const sandboxProbeEnv = "NETAUTH_TEST_SANDBOX_PROBE"

// sandboxSiblingEnv gives the probe the pid of a process of its own uid, not confined and
// dumpable: what a worker is to the acceptor of a netauthd that does not run as root.
const sandboxSiblingEnv = "NETAUTH_TEST_SANDBOX_SIBLING"

func init() {
	if os.Getenv(sandboxProbeEnv) == "1" {
		os.Exit(sandboxProbe())
	}
}

// sandboxProbe confines this process with the acceptor's sandbox, then tries what an acceptor
// taken over would try, printing a line "name: result" for each ("ok" or the error). Its
// descriptor 3 is a listening TCP socket, as the acceptor inherits its services' sockets; it
// accepts one connection on it, as the acceptor must still be able to.
func sandboxProbe() int {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Println("listener:", err)
		return 1
	}
	status, complete := sandbox()
	fmt.Printf("sandbox: %v: %s\n", complete, status)
	try := func(name string, err error) {
		if err == nil {
			fmt.Printf("%s: ok\n", name)
		} else {
			fmt.Printf("%s: %v\n", name, err)
		}
	}
	socket := func(domain, typ, proto int) error {
		fd, err := unix.Socket(domain, typ, proto)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	try("udp", socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
	try("udp6", socket(unix.AF_INET6, unix.SOCK_DGRAM, 0))
	try("tcp", socket(unix.AF_INET, unix.SOCK_STREAM, 0))
	try("unix stream", socket(unix.AF_UNIX, unix.SOCK_STREAM, 0))
	try("unix datagram", socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0))
	try("netlink", socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE))
	try("socketpair", func() error {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
		return err
	}())
	try("unshare user namespace", unix.Unshare(unix.CLONE_NEWUSER))
	try("io_uring", func() error {
		var params [120]byte // struct io_uring_params
		fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		if errno != 0 {
			return errno
		}
		unix.Close(int(fd))
		return nil
	}())
	// Arguments the kernel refuses (EINVAL) after the filter has had its say: nothing is
	// created either way.
	try("clone3", func() error {
		_, _, errno := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
		return errno
	}())
	try("clone new user namespace", func() error {
		_, _, errno := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_THREAD, 0, 0, 0, 0, 0)
		return errno
	}())
	// A process of the same uid, outside the sandbox: without Landlock, ptrace and
	// process_vm_readv would be allowed (it is dumpable), and so would signals.
	sibling, _ := strconv.Atoi(os.Getenv(sandboxSiblingEnv))
	try("ptrace sibling", func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := unix.PtraceAttach(sibling); err != nil {
			return err
		}
		return unix.PtraceDetach(sibling)
	}())
	try("read sibling memory", func() error {
		buf := make([]byte, 8)
		_, err := unix.ProcessVMReadv(sibling, []unix.Iovec{{Base: &buf[0], Len: 8}}, []unix.RemoteIovec{{Base: 0x400000, Len: 8}}, 0)
		return err
	}())
	try("open sibling mem", func() error {
		f, err := os.Open("/proc/" + strconv.Itoa(sibling) + "/mem")
		if err == nil {
			f.Close()
		}
		return err
	}())
	try("signal sibling", unix.Kill(sibling, 0))
	try("accept", func() error {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("accepted\n"))
		return err
	}())
	return 0
}

// TestAcceptorSandbox: confined as the acceptor confines itself, a process of the acceptor's
// account can still accept connections on the socket it inherited, but create no socket of
// any kind (UDP, TCP, Unix to a path or an abstract address, netlink, socket pairs), no io_uring
// and no namespace. Landlock stops TCP bind and connect and file access, but an acceptor taken
// over could create UDP, Unix and netlink sockets: reach every local service listening on a
// Unix socket it may connect to (the system D-Bus, a resolver, syslog, an abstract socket) and
// send datagrams anywhere, and make a user namespace. And it cannot trace, read the memory of,
// or (from Landlock ABI 6) signal a process of its own uid outside its sandbox, as the workers
// of a netauthd that does not run as root are.
func TestAcceptorSandbox(t *testing.T) {
	requireRoot(t)
	acct, err := policy.LookupAccount(acceptorAccount)
	if err != nil {
		t.Fatal(err)
	}
	// This package's tests, built as the acceptor is built (without cgo, so that the sandbox
	// reaches every thread), where the acceptor's account can run them.
	dir, err := os.MkdirTemp("", "netauthd-sandbox-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "daemon.test")
	build := exec.Command("go", "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the tests without cgo: %v: %s", err, out)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cred := &syscall.Credential{Uid: acct.UID, Gid: acct.GID, Groups: []uint32{}}
	sibling := exec.Command("/bin/sleep", "60")
	sibling.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := sibling.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sibling.Process.Kill(); sibling.Wait() }()
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = []string{sandboxProbeEnv + "=1", sandboxSiblingEnv + "=" + strconv.Itoa(sibling.Process.Pid)}
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "accepted\n" {
		t.Fatalf("the confined process on the inherited socket: %q %v", line, err)
	}
	results := make(map[string]string)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		name, result, _ := strings.Cut(sc.Text(), ": ")
		results[name] = result
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("probe: %v (%v)", err, results)
	}
	t.Logf("sandbox: %s", results["sandbox"])
	if !strings.Contains(results["sandbox"], "seccomp: no new sockets") {
		t.Errorf("no seccomp filter applied: %s", results["sandbox"])
	}
	want := map[string]error{
		"udp":                      unix.EACCES,
		"udp6":                     unix.EACCES,
		"tcp":                      unix.EACCES,
		"unix stream":              unix.EACCES,
		"unix datagram":            unix.EACCES,
		"netlink":                  unix.EACCES,
		"socketpair":               unix.EACCES,
		"unshare user namespace":   unix.EPERM,
		"io_uring":                 unix.EPERM,
		"clone3":                   unix.ENOSYS,
		"clone new user namespace": unix.EPERM,
	}
	for name, errno := range want {
		if got := results[name]; got != errno.Error() {
			t.Errorf("%s: %q, want %q", name, got, errno.Error())
		}
	}
	// What keeps the acceptor from a process of its own uid is Landlock's: a sandboxed
	// process may trace only processes in its own domain, and (ABI 6) signal only those.
	if strings.Contains(results["sandbox"], "Landlock ABI") {
		for _, name := range []string{"ptrace sibling", "read sibling memory"} {
			if got := results[name]; got != unix.EPERM.Error() {
				t.Errorf("%s: %q, want %q", name, got, unix.EPERM.Error())
			}
		}
		if got := results["open sibling mem"]; got == "ok" {
			t.Errorf("open sibling mem: ok, want refused")
		}
	} else {
		t.Logf("no Landlock on this kernel: a process of the acceptor's uid is not kept from it (%s)", results["ptrace sibling"])
	}
	if strings.Contains(results["sandbox"], "signals outside") {
		if got := results["signal sibling"]; got != unix.EPERM.Error() {
			t.Errorf("signal sibling: %q, want %q", got, unix.EPERM.Error())
		}
	}
	if results["accept"] != "ok" {
		t.Errorf("accept on the inherited socket: %q", results["accept"])
	}
}
