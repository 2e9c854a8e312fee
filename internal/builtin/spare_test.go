// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/testutil"
)

// spareArg marks the test binary started as a spare whose assigned program is spareReport.
const spareArg = "builtin-test-spare"

func init() {
	if len(os.Args) == 2 && os.Args[1] == spareArg {
		os.Exit(Spare(spareReport, os.Stderr))
	}
}

// spareReport prints what the process became: its arguments, IDs, groups, environment and
// working directory, what trying to become root again gives (raw system calls on this
// thread), and the credentials of each of its threads.
func spareReport(args []string) int {
	r, e, s := unix.Getresuid()
	fmt.Printf("args %s\n", strings.Join(args, " "))
	fmt.Printf("uids %d %d %d\n", r, e, s)
	r, e, s = unix.Getresgid()
	fmt.Printf("gids %d %d %d\n", r, e, s)
	groups, _ := unix.Getgroups()
	slices.Sort(groups)
	fmt.Printf("groups %v\n", groups)
	env := os.Environ()
	slices.Sort(env)
	fmt.Printf("env %s\n", strings.Join(env, "|"))
	wd, _ := os.Getwd()
	fmt.Printf("cwd %s\n", wd)
	// Raw system calls, on this thread only (the unix package's change every thread).
	zero := []uint32{0}
	_, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 0, 0, 0)
	fmt.Printf("setresuid0 %v\n", errno)
	_, _, errno = unix.RawSyscall(unix.SYS_SETGROUPS, 1, uintptr(unsafe.Pointer(&zero[0])), 0)
	runtime.KeepAlive(zero)
	fmt.Printf("setgroups0 %v\n", errno)
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, t := range tasks {
		data, _ := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "Uid" || k == "Gid" || k == "CapEff" || k == "CapPrm") {
				fmt.Printf("thread %s %s\n", k, strings.Join(strings.Fields(v), ","))
			}
		}
	}
	return 0
}

// startSpare starts the test binary as a spare and returns the daemon's end of its channel,
// and its standard output and error.
func startSpare(t *testing.T) (*handoff.Channel, *exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	ch, wf, err := handoff.Pair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, spareArg)
	cmd.Env = []string{handoff.Env + "=3"}
	cmd.ExtraFiles = []*os.File{wf}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wf.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return ch, cmd, &stdout, &stderr
}

// assign sends a to the spare and returns its answer (nil when it closed the channel).
func assign(t *testing.T, ch *handoff.Channel, a *handoff.Assignment) *handoff.Message {
	t.Helper()
	payload, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Send(&handoff.Message{Type: handoff.TypeAssign, Payload: payload}, nil); err != nil {
		t.Fatal(err)
	}
	_ = ch.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, _, err := ch.Recv()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSpareTakesCredentials: assigned as root, a spare takes the assigned uid, gid and groups
// on every thread, keeps no capability and cannot become root again, has exactly the assigned
// environment and working directory, answers TypeAssigned, and runs what it was assigned.
func TestSpareTakesCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the spare takes another uid (CI runs as root)")
	}
	ch, cmd, stdout, stderr := startSpare(t)
	dir := testutil.OpenDir(t, "netauth-spare-") // not t.TempDir(): its parent is private
	a := &handoff.Assignment{SetCredentials: true, UID: 65534, GID: 65533, Groups: []uint32{65533, 100, 4242},
		Dir: dir, Env: []string{"HOME=" + dir, "NETAUTH_USER=alice", handoff.Env + "=3"}, Args: []string{"report", "x y"}}
	m := assign(t, ch, a)
	if m == nil || m.Type != handoff.TypeAssigned {
		t.Fatalf("the spare answered %+v; stderr: %s", m, stderr)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("spare: %v; stderr: %s", err, stderr)
	}
	got := map[string][]string{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		got[k] = append(got[k], v)
	}
	want := map[string]string{
		"args":       "report x y",
		"uids":       "65534 65534 65534",
		"gids":       "65533 65533 65533",
		"groups":     "[100 4242 65533]",
		"env":        "HOME=" + dir + "|NETAUTH_CONTROL_FD=3|NETAUTH_USER=alice",
		"cwd":        dir,
		"setresuid0": unix.EPERM.Error(),
		"setgroups0": unix.EPERM.Error(),
	}
	for k, v := range want {
		if len(got[k]) != 1 || got[k][0] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if len(got["thread"]) < 4 {
		t.Fatalf("thread credentials: %q", got["thread"])
	}
	for _, line := range got["thread"] {
		switch line {
		case "Uid 65534,65534,65534,65534", "Gid 65533,65533,65533,65533", "CapEff 0000000000000000", "CapPrm 0000000000000000":
		default:
			t.Errorf("a thread: %s", line)
		}
	}
}

// TestSpareRefusesWrongCredentials: a spare told to keep its credentials (a netauthd that is
// not root) but whose uid is not the assigned one runs nothing: it exits with status 1 without
// answering, and says why.
func TestSpareRefusesWrongCredentials(t *testing.T) {
	ch, cmd, stdout, stderr := startSpare(t)
	a := &handoff.Assignment{UID: uint32(os.Getuid()) + 1, GID: 1, Dir: "/", Args: []string{"report"}}
	if m := assign(t, ch, a); m != nil {
		t.Fatalf("the spare answered %+v", m)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("spare exited with %v, want status 1", err)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "user IDs") {
		t.Errorf("stdout %q stderr %q", stdout, stderr)
	}
}

// TestSpareRefusals: without its control descriptor a spare refuses to run; one whose channel
// closes before any assignment exits with status 0; one sent anything but an assignment, or
// assigned to be a spare again, exits with status 1; none of them runs anything.
func TestSpareRefusals(t *testing.T) {
	ran := func([]string) int { t.Error("a refused spare ran its program"); return 0 }
	t.Setenv(handoff.Env, "")
	var stderr bytes.Buffer
	if got := Spare(ran, &stderr); got != 2 {
		t.Errorf("without a control descriptor: status %d", got)
	}
	for _, c := range []struct {
		name string
		send func(d *handoff.Channel) error
		want int
	}{
		{"closed", func(d *handoff.Channel) error { return d.Close() }, 0},
		{"exit message", func(d *handoff.Channel) error { return d.Send(&handoff.Message{Type: handoff.TypeExit}, nil) }, 1},
		{"spare again", func(d *handoff.Channel) error {
			p, err := (&handoff.Assignment{UID: 1, Dir: "/", Args: []string{SpareArg}}).Marshal()
			if err != nil {
				return err
			}
			return d.Send(&handoff.Message{Type: handoff.TypeAssign, Payload: p}, nil)
		}, 1},
	} {
		d, f, err := handoff.Pair()
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(handoff.Env, fmt.Sprint(f.Fd()))
		if err := c.send(d); err != nil {
			t.Fatal(err)
		}
		stderr.Reset()
		if got := Spare(ran, &stderr); got != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, got, c.want, stderr.String())
		}
		d.Close()
		f.Close()
	}
}
