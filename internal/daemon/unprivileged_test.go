// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/testutil"
)

// unprivilegedEnv makes the test binary run a daemon (TestUnprivilegedDaemon's) instead of
// tests: its value is "CONFIG ACCEPTOR".
const unprivilegedEnv = "NETAUTH_TEST_UNPRIVILEGED_DAEMON"

// runUnprivilegedDaemon runs a daemon with the configuration and acceptor named by
// unprivilegedEnv, as whatever user started it, and prints "addr ADDR", "acceptor PID" and
// "dumpable N" (this process's PR_GET_DUMPABLE once the daemon started); it stops at the end
// of its standard input.
func runUnprivilegedDaemon(spec string) int {
	conf, acceptor, _ := strings.Cut(spec, " ")
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "unprivileged daemon:", err); return 1 }
	cfg, err := policy.Load(conf)
	if err != nil {
		return fail(err)
	}
	d, err := New(Options{Config: cfg, Acceptor: []string{acceptor},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		return fail(err)
	}
	if err := d.Start(context.Background()); err != nil {
		return fail(err)
	}
	defer d.Shutdown(2 * time.Second)
	dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("addr %s\nacceptor %d\ndumpable %d\n", d.Addrs("whoami")[0], d.AcceptorPid(), dumpable)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// procStatus returns the fields of /proc/PID/status, and the owner of that file.
func procStatus(t *testing.T, pid int) (map[string][]string, uint32) {
	t.Helper()
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			out[strings.TrimSuffix(f[0], ":")] = f[1:]
		}
	}
	return out, st.Uid
}

// TestUnprivilegedDaemon: a daemon run by a user other than root runs the same privilege
// split as root's, under its own uid: an acceptor process (its child, with its uid, confined
// and non-dumpable) parses the connections, the daemon itself is non-dumpable, and the user's
// whoami is served by a worker with that uid, which the acceptor's uid does not prevent (there
// is only one uid). Another user, whose keys it cannot read, is not authorized.
func TestUnprivilegedDaemon(t *testing.T) {
	u := newUnprivilegedRun(t, "netauthd-unprivileged-")
	acct, alice, dir := u.acct, u.alice, u.dir
	if err := os.WriteFile(filepath.Join(u.keysDir, "netauth-bob"), ssh.MarshalAuthorizedKey(u.alice.PublicKey()), 0o600); err != nil {
		t.Fatal(err) // root's: the daemon, as netauth-alice, cannot read it
	}
	text := fmt.Sprintf("host-key %[1]s/host_key\naudit-log %[1]s/audit.log\nauthorized-keys-dir %[2]s\n\n"+
		"service whoami {\n  listen 127.0.0.1:0\n  program %[3]s\n  args whoami\n  users %[4]s\n}\n", u.state, u.keysDir, u.bin, u.acct.Name)
	out := u.start(t, unprivilegedEnv, text, 3)
	cmd := u.cmd
	if len(out) < 3 {
		t.Fatalf("the daemon did not start: %v", out)
	}
	if out["dumpable"] != "0" {
		t.Errorf("the daemon (monitor): PR_GET_DUMPABLE = %s, want 0", out["dumpable"])
	}
	monitorStatus, monitorOwner := procStatus(t, cmd.Process.Pid)
	if monitorStatus["Uid"][0] != strconv.Itoa(int(acct.UID)) {
		t.Fatalf("the daemon runs as uid %v, want %d", monitorStatus["Uid"], acct.UID)
	}
	if monitorOwner != 0 {
		t.Errorf("the daemon (uid %d) is dumpable: its /proc files belong to uid %d", acct.UID, monitorOwner)
	}

	addr := out["addr"]
	key, _, err := netauth.FetchHostKey(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(dir, "known_hosts")
	if err := netauth.Trust(known, addr, key); err != nil {
		t.Fatal(err)
	}
	cfg := &netauth.Config{User: acct.Name, Signer: alice, KnownHostsFile: known, TicketCache: netauth.NewMemoryTicketCache(2)}
	var workerPid string
	for i, want := range []string{"resumed=false", "resumed=true"} {
		c, err := netauth.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		fmt.Fprintln(c, "?")
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		if !strings.Contains(line, "user="+acct.Name+" ") || !strings.Contains(line, fmt.Sprintf("uid=%d ", acct.UID)) || !strings.Contains(line, want) {
			t.Fatalf("connection %d: whoami answered %q", i+1, line)
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "pid="); ok {
				workerPid = v
			}
		}
	}
	// A user whose keys the daemon cannot read (as /root/.ssh/authorized_keys for root) is not
	// authorized, and the log says why; it used to be an internal server error.
	cfg.User, cfg.TicketCache = "netauth-bob", nil
	var refused *netauth.RefusedError
	c, err := netauth.Dial("tcp", addr, cfg)
	if err == nil {
		err = c.Handshake()
		c.Close()
	}
	if !errors.As(err, &refused) || refused.Code != netauth.CodeNotAuthorized {
		t.Fatalf("netauth-bob, whose keys the daemon cannot read: %v, want not authorized", err)
	}
	wpid, _ := strconv.Atoi(workerPid)
	if st, _ := procStatus(t, wpid); st["PPid"][0] != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("the worker %d is not the daemon's child: %v", wpid, st["PPid"])
	}

	apid, _ := strconv.Atoi(out["acceptor"])
	if apid == 0 {
		t.Fatal("no acceptor runs")
	}
	st, owner := procStatus(t, apid)
	if st["PPid"][0] != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("the acceptor %d is not the daemon's child: %v", apid, st["PPid"])
	}
	for _, field := range []string{"Uid", "Gid"} {
		want := acct.UID
		if field == "Gid" {
			want = acct.GID
		}
		for _, id := range st[field] {
			if id != strconv.Itoa(int(want)) {
				t.Errorf("the acceptor's %s is %v, want the daemon's %d", field, st[field], want)
				break
			}
		}
	}
	if st["NoNewPrivs"][0] != "1" {
		t.Errorf("the acceptor runs without no_new_privs: %v", st["NoNewPrivs"])
	}
	if owner != 0 {
		t.Errorf("the acceptor (uid %d) is dumpable: its /proc files belong to uid %d", acct.UID, owner)
	}
}

// TestNewNeedsAcceptor: a daemon without an acceptor program is refused (there is no mode in
// which it parses network bytes itself), and so, as root, is one without an account for the
// acceptor or with root's; nothing is created before the refusal.
func TestNewNeedsAcceptor(t *testing.T) {
	dir := t.TempDir()
	cfg := policy.Default("/bin/true")
	cfg.HostKey = filepath.Join(dir, "host_key")
	cfg.AuditLog = filepath.Join(dir, "audit.log")
	type refusal struct {
		name string
		opts Options
		want string
	}
	cases := []refusal{
		{"no acceptor", Options{Config: cfg}, "no acceptor program"},
		{"empty acceptor", Options{Config: cfg, Acceptor: []string{""}}, "no acceptor program"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases,
			refusal{"root without an account", Options{Config: cfg, Acceptor: []string{"/bin/true"}}, "account of its own"},
			refusal{"root with root's account", Options{Config: cfg, Acceptor: []string{"/bin/true"}, AcceptorAccount: &policy.Account{Name: "root"}}, "must not run as root"})
	} else {
		cases = append(cases, refusal{"another uid", Options{Config: cfg, Acceptor: []string{"/bin/true"},
			AcceptorAccount: &policy.Account{Name: "other", UID: uint32(os.Geteuid()) + 1}}, "cannot start its acceptor as other"})
	}
	for _, c := range cases {
		d, err := New(c.opts)
		if err == nil {
			d.Shutdown(0)
			t.Errorf("%s: New succeeded", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want it to say %q", c.name, err, c.want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("New created files before refusing: %v", ents)
	}
}

// TestTransientAcceptorAccount: the transient account is in systemd's dynamic range, with
// the gid of its uid, and neither is known to the user database or used by a process.
func TestTransientAcceptorAccount(t *testing.T) {
	a, err := TransientAcceptorAccount()
	if err != nil {
		t.Fatal(err)
	}
	if a.UID < transientFirst || a.UID > transientLast || a.GID != a.UID {
		t.Fatalf("uid %d gid %d, want equal, in %d-%d", a.UID, a.GID, transientFirst, transientLast)
	}
	id := strconv.Itoa(int(a.UID))
	if u, err := user.LookupId(id); !errors.As(err, new(user.UnknownUserIdError)) {
		t.Errorf("uid %s: %v %v, want unknown", id, u, err)
	}
	if g, err := user.LookupGroupId(id); !errors.As(err, new(user.UnknownGroupIdError)) {
		t.Errorf("gid %s: %v %v, want unknown", id, g, err)
	}
	if idInUse(a.UID) {
		t.Errorf("a process runs with id %s", id)
	}
	// And idInUse sees this process's ids.
	if !idInUse(uint32(os.Getuid())) {
		t.Errorf("idInUse(%d) is false although this process has that uid", os.Getuid())
	}
}

// unprivilegedRun is a daemon started by netauth-alice rather than root, in a test binary of
// its own: its state (host key, audit log) in a directory of hers, her key in keysDir.
type unprivilegedRun struct {
	acct                *policy.Account
	dir, state, keysDir string
	bin, acceptor       string
	alice               ssh.Signer
	cmd                 *exec.Cmd
}

// newUnprivilegedRun prepares the directories, the test binary and alice's key file.
func newUnprivilegedRun(t *testing.T, prefix string) *unprivilegedRun {
	t.Helper()
	requireRoot(t)
	acct, err := policy.LookupAccount("netauth-alice")
	if err != nil {
		t.Fatal(err)
	}
	u := &unprivilegedRun{acct: acct, acceptor: buildAcceptor(t), dir: testutil.OpenDir(t, prefix), alice: testutil.Signer(t)}
	u.bin = testutil.SelfCopy(t, u.dir, "daemon.test")
	// The host key and the audit log in a directory of the user's, as a user's own netauthd
	// keeps them.
	u.state = filepath.Join(u.dir, "state")
	if err := os.Mkdir(u.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(u.state, int(acct.UID), int(acct.GID)); err != nil {
		t.Fatal(err)
	}
	u.keysDir = filepath.Join(u.dir, "keys")
	if err := os.Mkdir(u.keysDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.keysDir, acct.Name), ssh.MarshalAuthorizedKey(u.alice.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return u
}

// start writes the configuration text, runs the test binary as alice with env set to the
// configuration's path and the acceptor (the helper process reads it), and returns the first
// n "KEY VALUE" lines it prints. The daemon stops when the test ends.
func (u *unprivilegedRun) start(t *testing.T, env, text string, n int) map[string]string {
	t.Helper()
	conf := filepath.Join(u.dir, "netauthd.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(u.bin, "-test.run=^$")
	cmd.Env = []string{env + "=" + conf + " " + u.acceptor, "HOME=" + u.acct.Home, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.acct.UID, Gid: u.acct.GID, Groups: u.acct.Groups}}
	cmd.Stderr = newTestLog(t)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	u.cmd = cmd
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	out := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for len(out) < n && sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		out[k] = v
	}
	return out
}
