// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/builtin"
	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/trace"
)

// The test binary as a worker: "identity" (identityWorker), and as a spare ("-spare"), which
// runs what it is assigned as the test binary would run it from its command line. This runs
// before TestMain.
func init() {
	if spec := os.Getenv(unprivilegedSpareEnv); spec != "" {
		os.Exit(runUnprivilegedSpareDaemon(spec))
	}
	if !netauth.IsWorker() || len(os.Args) != 2 {
		return
	}
	switch os.Args[1] {
	case "identity":
		os.Exit(identityWorker())
	case handoff.SpareArg:
		os.Exit(builtin.Spare(runAssignedTestWorker, os.Stderr))
	}
}

// runAssignedTestWorker runs the test worker a spare was assigned, as the test binary runs
// the one its command line names (TestMain, and the init functions of the test files).
func runAssignedTestWorker(args []string) int {
	switch {
	case len(args) == 1 && args[0] == "identity":
		return identityWorker()
	case len(args) == 1:
		return runTestWorker(args[0])
	case args[0] == "exec" || args[0] == "backend" || args[0] == "http-backend" || args[0] == "instance":
		return builtin.Run(args[0], args[1:], os.Stderr)
	}
	return 2
}

// identityWorker serves each connection with identityReport, then waits for the client to
// close. It says on its standard error that it serves.
func identityWorker() int {
	ln, err := netauth.Listen("", "", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "identity worker serving")
	_ = ln.Serve(func(c *netauth.Conn) {
		_, _ = io.WriteString(c, identityReport())
		_, _ = io.Copy(io.Discard, c)
	})
	return 0
}

// identityReport is everything the program can see of the process it runs in that a worker
// started afresh and one that was a spare could differ in, one "key value" line each, ending
// with "end".
func identityReport() string {
	var b strings.Builder
	status, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Umask":
			fmt.Fprintf(&b, "%s %s\n", k, strings.Join(strings.Fields(v), ","))
		}
	}
	env := os.Environ()
	slices.Sort(env)
	fmt.Fprintf(&b, "env %s\n", strings.Join(env, "|"))
	wd, err := os.Getwd()
	fmt.Fprintf(&b, "cwd %s %v\n", wd, err)
	sid, _ := unix.Getsid(0)
	pgid, _ := unix.Getpgid(0)
	fmt.Fprintf(&b, "leads %v %v\n", sid == os.Getpid(), pgid == os.Getpid())
	fmt.Fprintf(&b, "pid %d\nppid %d\n", os.Getpid(), os.Getppid())
	for r := range 16 {
		var l unix.Rlimit
		err := unix.Getrlimit(r, &l)
		fmt.Fprintf(&b, "rlimit%d %d %d %v\n", r, l.Cur, l.Max, err)
	}
	nice, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	fmt.Fprintf(&b, "priority %d %v\n", nice, err)
	if attr, err := unix.SchedGetAttr(0, 0); err == nil {
		fmt.Fprintf(&b, "sched %d %d %d\n", attr.Policy, attr.Nice, attr.Priority)
	}
	oom, _ := os.ReadFile("/proc/self/oom_score_adj")
	fmt.Fprintf(&b, "oom_score_adj %s\n", strings.TrimSpace(string(oom)))
	dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	fmt.Fprintf(&b, "dumpable %d %v\n", dumpable, err)
	// Raw system calls, on this thread only (the unix package's change every thread): should
	// one succeed, the report says so.
	zero := []uint32{0}
	fmt.Fprintf(&b, "setuid0 %v\n", rawErr(unix.SYS_SETUID, 0, 0, 0))
	fmt.Fprintf(&b, "setresuid0 %v\n", rawErr(unix.SYS_SETRESUID, 0, 0, 0))
	fmt.Fprintf(&b, "setgid0 %v\n", rawErr(unix.SYS_SETGID, 0, 0, 0))
	fmt.Fprintf(&b, "setgroups0 %v\n", rawErr(unix.SYS_SETGROUPS, 1, uintptr(unsafe.Pointer(&zero[0])), 0))
	runtime.KeepAlive(zero)
	entries, _ := os.ReadDir("/proc/self/fd")
	var fds []string
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		switch {
		case err != nil: // the listing's own descriptor
		case strings.HasPrefix(target, "socket:"), strings.HasPrefix(target, "pipe:"):
			fds = append(fds, target[:strings.IndexByte(target, ':')])
		default:
			fds = append(fds, target)
		}
	}
	slices.Sort(fds)
	fmt.Fprintf(&b, "fds %s\n", strings.Join(fds, "|"))
	b.WriteString("end\n")
	return b.String()
}

// rawErr makes a raw system call on this thread and returns its error ("<nil>" if none).
func rawErr(trap, a1, a2, a3 uintptr) string {
	if _, _, errno := unix.RawSyscall(trap, a1, a2, a3); errno != 0 {
		return errno.Error()
	}
	return "<nil>"
}

// identity connects to service as user and returns the worker's identityReport and what
// /proc shows of the worker while the connection is open (procView), then closes.
func (tb *testbed) identity(t *testing.T, service, user string) (report, proc map[string]string) {
	t.Helper()
	c, err := netauth.Dial("tcp", tb.addr(service), tb.config(user))
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	report = map[string]string{}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("identity report: %v (so far %v)", err, report)
		}
		if line == "end\n" {
			break
		}
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		report[k] = v
	}
	pid, _ := strconv.Atoi(report["pid"])
	return report, procView(t, pid)
}

// procView is what /proc shows of process pid to others: its credentials, command line,
// environment, working directory, program, and the owner of its /proc directory (root when it
// is not dumpable).
func procView(t *testing.T, pid int) map[string]string {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid)
	out := map[string]string{}
	st, owner := procStatus(t, pid)
	for _, k := range []string{"Uid", "Gid", "Groups", "CapPrm", "CapEff"} {
		out[k] = strings.Join(st[k], ",")
	}
	out["owner"] = strconv.Itoa(int(owner))
	for _, f := range []string{"cmdline", "environ"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		out[f] = strings.ReplaceAll(string(bytes.TrimSuffix(data, []byte{0})), "\x00", " ")
	}
	for _, l := range []string{"cwd", "exe"} {
		v, err := os.Readlink(filepath.Join(dir, l))
		if err != nil {
			t.Fatal(err)
		}
		out[l] = v
	}
	return out
}

// useSpares gives the testbed's daemon its built-in worker command (the test binary), starts
// its spares and returns the pid of a ready one.
func (tb *testbed) useSpares(t *testing.T) int {
	t.Helper()
	tb.useBuiltinWorker()
	go tb.d.fillSpares()
	return tb.readySpare(t, 0)
}

// readySpare waits until the pool holds a spare other than pid not, and returns its pid.
func (tb *testbed) readySpare(t *testing.T, not int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, pid := range tb.sparePids() {
			if pid != not {
				return pid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no spare worker ready (other than %d) within 10s", not)
	return 0
}

// sparePids returns the pids of the spares in the pool.
func (tb *testbed) sparePids() []int {
	p := &tb.d.spares
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for _, sp := range p.ready {
		out = append(out, sp.pid)
	}
	return out
}

// logBuffer collects a daemon's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitLog waits until the log holds a line containing every one of parts.
func (l *logBuffer) waitLog(t *testing.T, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for line := range strings.SplitSeq(l.String(), "\n") {
			if containsAll(line, parts) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no log line with %q", parts)
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

const identityService = `spare-workers 1

service identity {
    listen 127.0.0.1:0
    mode per-connection
    program WORKER
    args identity
    users netauth-alice netauth-carol
    max-workers 1000
}
`

// TestSpareWorkerBecomesTheWorker: a first connection served by a spare worker runs in a
// process that neither the program nor anyone looking at /proc can tell from a worker
// started afresh: same uid, gid and supplementary groups (checked against the account and
// /proc/PID/status, with the user in a second group), no capabilities, same environment,
// working directory, command line, session, limits, dumpability and descriptors; it cannot
// become root again; its output is logged as the worker's; and a new spare replaces it.
func TestSpareWorkerBecomesTheWorker(t *testing.T) {
	requireRoot(t)
	const group = "netauth-sparegrp"
	exec.Command("groupdel", group).Run()
	if out, err := exec.Command("groupadd", group).CombinedOutput(); err != nil {
		t.Fatalf("groupadd: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	if out, err := exec.Command("gpasswd", "-a", "netauth-carol", group).CombinedOutput(); err != nil {
		t.Fatalf("gpasswd -a: %v: %s", err, out)
	}
	carol, err := policy.LookupAccount("netauth-carol")
	if err != nil {
		t.Fatal(err)
	}
	if len(carol.Groups) < 2 {
		t.Fatalf("netauth-carol's groups %v: want her own and %s", carol.Groups, group)
	}
	logs := &logBuffer{}
	tb := newTestbedOpts(t, identityService, testbedOpts{log: logs})

	// Without a built-in worker command, no spare: the worker starts afresh.
	fresh, freshProc := tb.identity(t, "identity", "netauth-carol")
	spare := tb.useSpares(t)
	if st, _ := procStatus(t, spare); strings.Join(st["Uid"], ",") != "0,0,0,0" {
		t.Fatalf("the spare %d runs as %v before its assignment, want root (it takes the user's credentials when assigned)", spare, st["Uid"])
	}
	if v := procView(t, spare); v["environ"] != handoff.Env+"=3" || !strings.HasSuffix(v["cmdline"], " "+handoff.SpareArg) {
		t.Fatalf("the spare before its assignment: %v", v)
	}
	got, gotProc := tb.identity(t, "identity", "netauth-carol")
	if got["pid"] != strconv.Itoa(spare) {
		t.Fatalf("the connection was served by pid %s, not by the spare %d", got["pid"], spare)
	}
	if fresh["pid"] == got["pid"] {
		t.Fatal("the same process served both connections")
	}
	logs.waitLog(t, `msg="worker started"`, "service=identity", "user=netauth-carol", fmt.Sprintf("uid=%d", carol.UID), "pid="+got["pid"], "spare=true")
	logs.waitLog(t, `msg="worker output"`, "service=identity", "user=netauth-carol", "pid="+got["pid"], `line="identity worker serving"`)

	var groups []string
	for _, g := range carol.Groups {
		groups = append(groups, strconv.Itoa(int(g)))
	}
	uid, gid := strconv.Itoa(int(carol.UID)), strconv.Itoa(int(carol.GID))
	want := map[string]string{
		"Uid":    strings.Repeat(uid+",", 3) + uid,
		"Gid":    strings.Repeat(gid+",", 3) + gid,
		"Groups": strings.Join(groups, ","),
		"CapPrm": "0000000000000000",
		"CapEff": "0000000000000000",
		"owner":  uid, // dumpable, as a program the user may read and runs as them
		"cwd":    carol.Home,
	}
	for name, view := range map[string]map[string]string{"fresh": freshProc, "spare": gotProc} {
		for k, v := range want {
			if view[k] != v {
				t.Errorf("%s worker: /proc shows %s %q, want %q", name, k, view[k], v)
			}
		}
	}
	// The command line and environment /proc shows are the worker's if netauthd has
	// CAP_SYS_RESOURCE (a root daemon normally does), else the spare's; its program has its own
	// environment all the same (the report, below).
	if !canSetProcessText() {
		t.Logf("without CAP_SYS_RESOURCE: /proc shows the spare's command line and environment")
		if !strings.HasSuffix(gotProc["cmdline"], " "+handoff.SpareArg) || gotProc["environ"] != handoff.Env+"=3" {
			t.Errorf("/proc shows the command line %q and environment %q of a worker from a spare, want the spare's", gotProc["cmdline"], gotProc["environ"])
		}
		gotProc["cmdline"], gotProc["environ"] = freshProc["cmdline"], freshProc["environ"]
	}
	for k, v := range freshProc {
		if gotProc[k] != v {
			t.Errorf("/proc shows %s %q for the worker started afresh, %q for the spare", k, v, gotProc[k])
		}
	}
	if len(got) != len(fresh) {
		t.Errorf("reports of %d and %d lines:\n%v\n%v", len(fresh), len(got), fresh, got)
	}
	for k, v := range fresh {
		if k != "pid" && got[k] != v {
			t.Errorf("the program sees %s %q started afresh, %q from a spare", k, v, got[k])
		}
	}
	for _, k := range []string{"setuid0", "setresuid0", "setgid0", "setgroups0"} {
		if got[k] != unix.EPERM.Error() {
			t.Errorf("the worker from a spare: %s: %q, want %q", k, got[k], unix.EPERM.Error())
		}
	}
	if got["leads"] != "true true" || got["ppid"] != strconv.Itoa(os.Getpid()) {
		t.Errorf("the worker from a spare: session and group leader %q, parent %s (want the daemon, %d)", got["leads"], got["ppid"], os.Getpid())
	}
	if !strings.Contains(got["env"], "NETAUTH_USER=netauth-carol") || !strings.Contains(got["cwd"], carol.Home+" <nil>") {
		t.Errorf("the worker from a spare: env %q cwd %q", got["env"], got["cwd"])
	}
	// Replenished: another spare is ready, and serves the next first connection.
	next := tb.readySpare(t, spare)
	if third, _ := tb.identity(t, "identity", "netauth-alice"); third["pid"] != strconv.Itoa(next) {
		t.Errorf("the next first connection was served by pid %s, not by the new spare %d", third["pid"], next)
	} else if !strings.Contains(third["env"], "NETAUTH_USER=netauth-alice") || !strings.Contains(third["Uid"], uidOf(t, "netauth-alice")) {
		t.Errorf("alice's worker from a spare: %v", third)
	}
}

// TestSpareKilledBeforeAssignment: a spare that dies before its assignment costs no connection:
// killed while idle, the pool replaces it; stopped (it cannot answer its assignment), the
// worker is started afresh once the assignment times out, and the spare is killed.
func TestSpareKilledBeforeAssignment(t *testing.T) {
	logs := &logBuffer{}
	tb := newTestbedOpts(t, identityService, testbedOpts{log: logs})
	spare := tb.useSpares(t)

	if err := syscall.Kill(spare, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got, _ := tb.identity(t, "identity", "netauth-alice") // by a spare or afresh, but served
	if got["pid"] == strconv.Itoa(spare) {
		t.Fatalf("served by the killed spare %d", spare)
	}
	waitGone(t, spare, 5*time.Second)

	old := spareAssignTimeout
	spareAssignTimeout = 300 * time.Millisecond
	t.Cleanup(func() { spareAssignTimeout = old })
	stopped := tb.readySpare(t, spare)
	if err := syscall.Kill(stopped, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	got, _ = tb.identity(t, "identity", "netauth-alice")
	if got["pid"] == strconv.Itoa(stopped) {
		t.Fatalf("served by the stopped spare %d", stopped)
	}
	if !strings.Contains(got["env"], "NETAUTH_USER=netauth-alice") {
		t.Fatalf("the worker started afresh: %v", got)
	}
	logs.waitLog(t, "a spare worker could not become the worker; starting it afresh", "service=identity", "user=netauth-alice", fmt.Sprintf("spare worker %d", stopped))
	waitGone(t, stopped, 5*time.Second)
}

// TestSpareAssignDead: assigning a spare that has died fails at once, not after the timeout.
func TestSpareAssignDead(t *testing.T) {
	tb := newTestbed(t, identityService)
	tb.useSpares(t)
	sp := tb.d.takeSpare()
	if sp == nil {
		t.Fatal("no spare")
	}
	if err := syscall.Kill(sp.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		if st, _ := procStatus(t, sp.pid); st["State"][0] == "Z" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	alice, err := policy.LookupAccount("netauth-alice")
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{d: tb.d, svc: tb.cfg.Services[0], user: alice.Name}
	start := time.Now()
	err = w.assign(sp, alice, []string{"identity"}, workerEnv(alice, alice.Name, "identity"), alice.Home)
	if err == nil {
		t.Fatal("a dead spare took its assignment")
	}
	if d := time.Since(start); d > spareAssignTimeout/2 {
		t.Errorf("assigning a dead spare took %v", d)
	}
	waitGone(t, sp.pid, 5*time.Second)
}

// TestSpareWorkerRevokedAndIdle: a per-user worker that was a spare is stopped like any other
// when the user's key is removed (its connection closes), and retires when idle.
func TestSpareWorkerRevokedAndIdle(t *testing.T) {
	tb := newTestbed(t, `spare-workers 1

service echo {
    listen 127.0.0.1:0
    program WORKER
    args echo
    users netauth-alice netauth-bob
    idle-timeout 300ms
}
`)
	spare := tb.useSpares(t)
	alice := tb.echoSession(t, "echo", "netauth-alice")
	if pid := tb.liveWorkerPid("echo", "netauth-alice"); pid != spare {
		t.Fatalf("alice's worker is %d, not the spare %d", pid, spare)
	}
	tb.setKey("netauth-alice", nil)
	_ = alice.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := alice.c.Read(make([]byte, 1)); err == nil {
		t.Fatal("alice's connection still open after her key was removed")
	}
	waitGone(t, spare, 5*time.Second)

	next := tb.readySpare(t, spare)
	bob := tb.echoSession(t, "echo", "netauth-bob")
	if pid := tb.liveWorkerPid("echo", "netauth-bob"); pid != next {
		t.Fatalf("bob's worker is %d, not the spare %d", pid, next)
	}
	bob.c.Close()
	waitGone(t, next, 5*time.Second) // idle-timeout 300ms
}

// TestSparesStoppedAtReloadAndShutdown: a reload replaces the pool's spares with new ones, and
// shutdown stops them; "spare-workers 0" keeps none.
func TestSparesStoppedAtReloadAndShutdown(t *testing.T) {
	tb := newTestbed(t, identityService)
	first := tb.useSpares(t)
	if err := tb.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, first, 5*time.Second)
	second := tb.readySpare(t, first)

	conf := tb.cfg.Path
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, bytes.Replace(data, []byte("spare-workers 1"), []byte("spare-workers 0"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tb.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitGone(t, second, 5*time.Second)
	got, _ := tb.identity(t, "identity", "netauth-alice")
	time.Sleep(100 * time.Millisecond)
	if pids := tb.sparePids(); len(pids) != 0 {
		t.Errorf("spare-workers 0: spares %v", pids)
	}
	if !strings.Contains(got["env"], "NETAUTH_USER=netauth-alice") {
		t.Errorf("with spare-workers 0: %v", got)
	}

	if err := os.WriteFile(conf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tb.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	third := tb.readySpare(t, 0)
	tb.d.Shutdown(2 * time.Second)
	waitGone(t, third, 5*time.Second)
}

// unprivilegedSpareEnv makes the test binary run a daemon with spares
// (TestUnprivilegedSpare's) instead of tests: its value is "CONFIG ACCEPTOR".
const unprivilegedSpareEnv = "NETAUTH_TEST_UNPRIVILEGED_SPARE"

// runUnprivilegedSpareDaemon runs a daemon with the configuration and acceptor named by
// unprivilegedSpareEnv and this program as its built-in worker command, as whatever user
// started it; it prints "addr ADDR" and, once its pool holds one, "spare PID", and stops at
// the end of its standard input.
func runUnprivilegedSpareDaemon(spec string) int {
	conf, acceptor, _ := strings.Cut(spec, " ")
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "unprivileged daemon:", err); return 1 }
	cfg, err := policy.Load(conf)
	if err != nil {
		return fail(err)
	}
	d, err := New(Options{Config: cfg, Acceptor: []string{acceptor}, Self: []string{os.Args[0]},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		return fail(err)
	}
	if err := d.Start(context.Background()); err != nil {
		return fail(err)
	}
	defer d.Shutdown(2 * time.Second)
	fmt.Printf("addr %s\n", d.Addrs("identity")[0])
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		d.spares.mu.Lock()
		var pid int
		if len(d.spares.ready) > 0 {
			pid = d.spares.ready[0].pid
		}
		d.spares.mu.Unlock()
		if pid != 0 {
			fmt.Printf("spare %d\n", pid)
			break
		}
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestUnprivilegedSpare: a daemon run by a user other than root starts its spares as that
// user, and a spare becomes the user's worker keeping its credentials (it cannot change
// them), with the worker's environment and directory.
func TestUnprivilegedSpare(t *testing.T) {
	u := newUnprivilegedRun(t, "netauthd-unprivileged-spare-")
	acct, alice, dir := u.acct, u.alice, u.dir
	text := fmt.Sprintf("host-key %[1]s/host_key\naudit-log %[1]s/audit.log\nauthorized-keys-dir %[2]s\nspare-workers 1\n\n"+
		"service identity {\n  listen 127.0.0.1:0\n  mode per-connection\n  program %[3]s\n  args identity\n  users %[4]s\n}\n", u.state, u.keysDir, u.bin, u.acct.Name)
	out := u.start(t, unprivilegedSpareEnv, text, 2)
	cmd := u.cmd
	if out["spare"] == "" {
		t.Fatalf("the daemon started no spare: %v", out)
	}
	spare, _ := strconv.Atoi(out["spare"])
	st, _ := procStatus(t, spare)
	uid := strconv.Itoa(int(acct.UID))
	if strings.Join(st["Uid"], ",") != strings.Repeat(uid+",", 3)+uid || st["PPid"][0] != strconv.Itoa(cmd.Process.Pid) {
		t.Fatalf("the spare %d: uid %v, parent %v; want the daemon's uid %s and the daemon as its parent", spare, st["Uid"], st["PPid"], uid)
	}
	key, _, err := netauth.FetchHostKey(t.Context(), "tcp", out["addr"])
	if err != nil {
		t.Fatal(err)
	}
	tb := &testbed{t: t, users: map[string]ssh.Signer{acct.Name: alice}, known: filepath.Join(dir, "known_hosts")}
	if err := netauth.Trust(tb.known, out["addr"], key); err != nil {
		t.Fatal(err)
	}
	c, err := netauth.Dial("tcp", out["addr"], tb.config(acct.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	report := map[string]string{}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("identity report: %v (so far %v)", err, report)
		}
		if line == "end\n" {
			break
		}
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		report[k] = v
	}
	gid := strconv.Itoa(int(acct.GID))
	for k, want := range map[string]string{
		"pid":     out["spare"],
		"ppid":    strconv.Itoa(cmd.Process.Pid),
		"Uid":     strings.Repeat(uid+",", 3) + uid,
		"Gid":     strings.Repeat(gid+",", 3) + gid,
		"cwd":     acct.Home + " <nil>",
		"leads":   "true true",
		"setuid0": unix.EPERM.Error(),
	} {
		if report[k] != want {
			t.Errorf("the worker from a spare: %s %q, want %q", k, report[k], want)
		}
	}
	if !strings.Contains(report["env"], "NETAUTH_USER="+acct.Name+"|") || !strings.Contains(report["env"], "NETAUTH_SERVICE=identity|") {
		t.Errorf("the worker from a spare: env %q", report["env"])
	}
}

// TestBuiltinArgs: only a worker command that is the built-in worker command, followed by a
// service, is run by a spare.
func TestBuiltinArgs(t *testing.T) {
	self := []string{"/usr/sbin/netauthd-acceptor", "-worker"}
	for _, c := range []struct {
		path string
		args []string
		want []string
	}{
		{"/usr/sbin/netauthd-acceptor", []string{"-worker", "whoami"}, []string{"whoami"}},
		{"/usr/sbin/netauthd-acceptor", []string{"-worker", "exec", "--", "/bin/cat"}, []string{"exec", "--", "/bin/cat"}},
		{"/usr/sbin/netauthd-acceptor", []string{"-worker"}, nil},
		{"/usr/sbin/netauthd-acceptor", []string{"-worker", handoff.SpareArg}, nil},
		{"/usr/sbin/netauthd-acceptor", []string{"whoami"}, nil},
		{"/usr/sbin/netauthd", []string{"-worker", "whoami"}, nil},
		{"/usr/local/bin/whoami", nil, nil},
	} {
		got, ok := builtinArgs(self, c.path, c.args)
		if ok != (c.want != nil) || !slices.Equal(got, c.want) {
			t.Errorf("builtinArgs(%q, %q) = %q, %v; want %q", c.path, c.args, got, ok, c.want)
		}
	}
	if _, ok := builtinArgs(nil, "/usr/sbin/netauthd-acceptor", []string{"-worker", "whoami"}); ok {
		t.Error("builtinArgs without a built-in worker command")
	}
}

// BenchmarkSpareFirstConnection is a user's first connection (a new worker, in per-connection
// mode, and a full handshake; netauth-first of BenchmarkUBNS) with spare workers off and on,
// one connection at a time 10 ms apart, with netauthd's trace on: besides the median and p99
// it logs the median time of each step of the connections (docs/BENCHMARKS.md, "Spare
// workers: the first connection").
//
//	sudo go test -run '^$' -bench SpareFirstConnection -benchtime 200x -v ./internal/daemon/
func BenchmarkSpareFirstConnection(b *testing.B) {
	for _, n := range []int{0, 2} {
		b.Run(fmt.Sprintf("spare-workers=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "trace")
			tb := newTestbedOpts(b, fmt.Sprintf(`spare-workers %d

service first {
    listen 127.0.0.1:0
    mode per-connection
    program WORKER
    args echo
    users netauth-alice
    max-workers 100000
}
`, n), testbedOpts{trace: path})
			tb.useBuiltinWorker()
			go tb.d.fillSpares()
			cfg := tb.config("netauth-alice")
			cfg.DisableResumption = true
			op := echoOverNetauth(tb.addr("first"), cfg)
			const warm = 10
			for range warm {
				time.Sleep(10 * time.Millisecond)
				if err := op(); err != nil {
					b.Fatal(err)
				}
			}
			var lat []time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				time.Sleep(10 * time.Millisecond)
				b.StartTimer()
				start := time.Now()
				if err := op(); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			b.ReportMetric(us(median(lat)), "first-median-us")
			b.ReportMetric(us(percentile(lat, 99)), "first-p99-us")
			tb.d.Shutdown(2 * time.Second) // writes out the trace
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			conns, err := trace.Join(f)
			if err != nil {
				b.Fatal(err)
			}
			var table bytes.Buffer
			trace.WriteTable(&table, conns[min(warm, len(conns)):])
			b.Logf("spare-workers %d: median %.0f us, p99 %.0f us\n%s", n, us(median(lat)), us(percentile(lat, 99)), table.String())
		})
	}
}
