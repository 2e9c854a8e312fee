// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
)

// spares returns the pids of the unassigned spare workers of netauthd process pid: its
// children whose command line ends with "-spare".
func spares(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child)); strings.HasSuffix(string(cmdline), "\x00-spare\x00") {
			out = append(out, child)
		}
	}
	return out
}

// TestMonitorKilledSpare: the built-in worker netauthd runs itself (netauthd-acceptor -worker)
// is started from a spare worker, which takes alice's uid; when netauthd is SIGKILLed, that
// worker and the spare that replaced it in the pool die with it within 2 seconds (the spare
// sets its parent-death signal again once it has the user's credentials, which clears it).
func TestMonitorKilledSpare(t *testing.T) {
	e := setup(t)
	keysDir, signers := e.keys(t, "netauth-alice")
	alice := signers[0]
	addr := freePort(t)
	confPath := filepath.Join(e.dir, "netauthd.conf")
	os.WriteFile(confPath, []byte(fmt.Sprintf("host-key %s/host_key\naudit-log %s/audit.log\nauthorized-keys-dir %s\nspare-workers 1\n\n"+
		"service whoami {\n  listen %s\n  mode per-connection\n  program %s\n  args -worker whoami\n  users netauth-alice\n}\n",
		e.dir, e.dir, keysDir, addr, filepath.Join(e.dir, "netauthd-acceptor"))), 0o644)
	acct, err := policy.LookupAccount("netauth-alice")
	if err != nil {
		t.Fatal(err)
	}
	cmd, logs := startNetauthd(t, e, confPath)
	key, _, err := netauth.FetchHostKey(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(e.dir, "known_hosts")
	netauth.Trust(known, addr, key)
	cfg := &netauth.Config{User: "netauth-alice", Signer: alice, KnownHostsFile: known, TicketCache: netauth.NewMemoryTicketCache(2)}

	// The first connection may come before the first spare is ready: connect until one is
	// served by a worker that was a spare, and keep that session open.
	var live *netauth.Conn
	var workerPid int
	for attempt := 0; live == nil; attempt++ {
		if attempt == 20 {
			t.Fatalf("no connection served by a spare worker; log:\n%s", logs.all.String())
		}
		time.Sleep(100 * time.Millisecond)
		c, err := netauth.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(c, "?")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.Contains(line, fmt.Sprintf("uid=%d ", acct.UID)) {
			t.Fatalf("whoami: %q %v", line, err)
		}
		pid := regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(line)[1]
		m := logs.wait(t, `msg="worker started" service=whoami user=netauth-alice uid=\d+ pid=`+pid+`( spare=true)?$`, 5*time.Second)
		if m[1] == "" {
			c.Close()
			continue
		}
		live, workerPid = c, atoi(pid)
	}
	defer live.Close()
	var spare int
	for deadline := time.Now().Add(5 * time.Second); spare == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if s := spares(cmd.Process.Pid); len(s) > 0 {
			spare = s[0]
		}
	}
	if spare == 0 {
		t.Fatal("no spare worker replaced the one assigned")
	}
	if info, _ := readProc(workerPid); info.uid != int(acct.UID) || info.sid != workerPid {
		t.Fatalf("worker %d: %+v, want uid %d leading its own session", workerPid, info, acct.UID)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed := time.Now()
	for (running(workerPid) || running(spare)) && time.Since(killed) < 2*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if running(workerPid) {
		t.Fatalf("alice's worker %d (a spare before) still running 2s after netauthd was killed", workerPid)
	}
	if running(spare) {
		t.Fatalf("the spare worker %d still running 2s after netauthd was killed", spare)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
