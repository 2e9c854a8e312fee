// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
)

// TestStatusBinaries: the built netauthd -status and netauth status, asked as root about a
// running netauthd, both list its service, the worker serving alice's open connection (her
// user, a pid that exists, one connection) and the counters; asked as another user, both
// exit 1 with "permission denied: run as root", whether the socket's directory keeps them
// out or netauthd itself (by the peer's uid) does.
func TestStatusBinaries(t *testing.T) {
	e := setup(t)
	cli := filepath.Join(e.dir, "netauth")
	if out, err := exec.Command("go", "build", "-o", cli, "ubns.dev/netauth/cmd/netauth").CombinedOutput(); err != nil {
		t.Fatalf("go build netauth: %v: %s", err, out)
	}
	keysDir, signers := e.keys(t, "netauth-alice")
	addr := freePort(t)
	confPath := filepath.Join(e.dir, "netauthd.conf")
	os.WriteFile(confPath, []byte(fmt.Sprintf("host-key %s/host_key\naudit-log %s/audit.log\nauthorized-keys-dir %s\n\n"+
		"service whoami {\n  listen %s\n  program %s\n  args -worker whoami\n  users netauth-alice\n}\n",
		e.dir, e.dir, keysDir, addr, e.bin)), 0o644)
	sock := filepath.Join(e.dir, "run", "control")
	cmd := exec.Command(e.bin, "-config", confPath, "-control", sock)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	logs := watch(stderr)
	logs.wait(t, `netauthd running" host_key=`, 10*time.Second)

	known := filepath.Join(e.dir, "known_hosts")
	key, _, err := netauth.FetchHostKey(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	netauth.Trust(known, addr, key)
	live, err := netauth.Dial("tcp", addr, &netauth.Config{User: "netauth-alice", Signer: signers[0], KnownHostsFile: known})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	live.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(live, "?")
	line, err := bufio.NewReader(live).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("whoami: %q", line)
	}
	workerPid := m[1]

	for _, argv := range [][]string{{e.bin, "-status", "-control", sock}, {cli, "status", "-control", sock}} {
		name := filepath.Base(argv[0]) + " " + argv[1]
		var out, errb bytes.Buffer
		c := exec.Command(argv[0], argv[1:]...)
		c.Stdout, c.Stderr = &out, &errb
		if err := c.Run(); err != nil || errb.Len() != 0 {
			t.Fatalf("%s as root: %v, stderr %q", name, err, errb.String())
		}
		text := out.String()
		if !regexp.MustCompile(`(?m)^  whoami\s+per-user\s+` + regexp.QuoteMeta(addr) + `$`).MatchString(text) {
			t.Errorf("%s does not list the service whoami at %s:\n%s", name, addr, text)
		}
		w := regexp.MustCompile(`(?m)^  whoami\s+netauth-alice\s+(\d+)\s+\S+\s+(\d+)$`).FindStringSubmatch(text)
		if w == nil || w[1] != workerPid || w[2] != "1" {
			t.Errorf("%s: worker line %q, want alice's worker pid %s with 1 connection:\n%s", name, w, workerPid, text)
		} else if _, err := os.Stat("/proc/" + w[1]); err != nil {
			t.Errorf("%s: worker pid %s does not exist: %v", name, w[1], err)
		}
		if !strings.Contains(text, fmt.Sprintf("netauthd pid %d,", cmd.Process.Pid)) || !strings.Contains(text, "connections accepted 1, refused 0") {
			t.Errorf("%s: want netauthd's pid %d and the counters:\n%s", name, cmd.Process.Pid, text)
		}
	}

	bob, err := policy.LookupAccount("netauth-bob")
	if err != nil {
		t.Fatal(err)
	}
	asBob := func(why string) {
		t.Helper()
		for _, argv := range [][]string{{e.bin, "-status", "-control", sock}, {cli, "status", "-control", sock}} {
			name := filepath.Base(argv[0]) + " " + argv[1]
			var out, errb bytes.Buffer
			c := exec.Command(argv[0], argv[1:]...)
			c.Dir = "/"
			c.Env = []string{"PATH=/usr/bin:/bin"}
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: bob.UID, Gid: bob.GID}}
			c.Stdout, c.Stderr = &out, &errb
			err := c.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || out.Len() != 0 ||
				!strings.HasPrefix(errb.String(), name+": permission denied: run as root") || strings.Count(errb.String(), "\n") != 1 {
				t.Errorf("%s as netauth-bob (%s): %v, stdout %q, stderr %q; want exit 1 and %q", name, why, err, out.String(), errb.String(),
					name+": permission denied: run as root")
			}
		}
	}
	asBob("the socket's directory is private")
	// Open the way, as a mistaken chmod would: netauthd still answers only root.
	for _, p := range []string{filepath.Dir(sock), sock} {
		if err := os.Chmod(p, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	asBob("netauthd refuses the peer")
	logs.wait(t, `control socket: peer refused.*uid=`+fmt.Sprint(bob.UID), 5*time.Second)
}
