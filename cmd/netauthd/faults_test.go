// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
)

// procInfo is what /proc says of a process: its state, real uid and session.
type procInfo struct {
	state byte
	uid   int
	sid   int
}

// readProc returns the process's /proc facts; ok is false once it no longer exists.
func readProc(pid int) (info procInfo, ok bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return info, false
	}
	// pid (comm) state ppid pgrp session ...: comm may hold spaces, so cut at the last ')'.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 4 {
		return info, false
	}
	info.state = f[0][0]
	info.sid, _ = strconv.Atoi(f[3])
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return info, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, found := strings.CutPrefix(line, "Uid:"); found {
			info.uid, _ = strconv.Atoi(strings.Fields(v)[0])
		}
	}
	return info, true
}

// running reports whether pid exists and is not a zombie (an exited process whose parent,
// here init after netauthd died, has not reaped it yet).
func running(pid int) bool {
	info, ok := readProc(pid)
	return ok && info.state != 'Z' && info.state != 'X'
}

// sessionMembers returns the live processes of uid in session sid.
func sessionMembers(uid, sid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if info, ok := readProc(pid); ok && info.uid == uid && info.sid == sid && info.state != 'Z' && info.state != 'X' {
			out = append(out, pid)
		}
	}
	return out
}

// startNetauthd runs the built netauthd on a configuration file and waits until it serves.
func startNetauthd(t *testing.T, e *e2e, confPath string) (*exec.Cmd, *logWatcher) {
	t.Helper()
	cmd := exec.Command(e.bin, "-config", confPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	logs := watch(stderr)
	logs.wait(t, `netauthd running" host_key=`, 10*time.Second)
	return cmd, logs
}

// TestMonitorKilled: netauthd (the root monitor) is SIGKILLed while alice has a live
// session: her worker and the acceptor die with it within 2 seconds (they have
// Pdeathsig SIGKILL) and nothing of that instance is left running as alice; her session ends
// with an error; netauthd started again on the same configuration serves a new connection.
func TestMonitorKilled(t *testing.T) {
	e := setup(t)
	keysDir, signers := e.keys(t, "netauth-alice")
	alice := signers[0]
	addr := freePort(t)
	confPath := filepath.Join(e.dir, "netauthd.conf")
	os.WriteFile(confPath, []byte(fmt.Sprintf("host-key %s/host_key\naudit-log %s/audit.log\nauthorized-keys-dir %s\n\n"+
		"service whoami {\n  listen %s\n  program %s\n  args -worker whoami\n  users netauth-alice\n}\n",
		e.dir, e.dir, keysDir, addr, e.bin)), 0o644)
	acct, err := policy.LookupAccount("netauth-alice")
	if err != nil {
		t.Fatal(err)
	}

	cmd, logs := startNetauthd(t, e, confPath)
	acceptorPid, _ := strconv.Atoi(logs.seen(t, `acceptor started" pid=(\d+)`)[1])
	key, _, err := netauth.FetchHostKey(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(e.dir, "known_hosts")
	netauth.Trust(known, addr, key)
	cfg := &netauth.Config{User: "netauth-alice", Signer: alice, KnownHostsFile: known, TicketCache: netauth.NewMemoryTicketCache(2)}

	live, err := netauth.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	liveR := bufio.NewReader(live)
	fmt.Fprintln(live, "?")
	line, err := liveR.ReadString('\n')
	if err != nil || !strings.Contains(line, "user=netauth-alice") {
		t.Fatalf("whoami: %q %v", line, err)
	}
	workerPid, _ := strconv.Atoi(regexp.MustCompile(`pid=(\d+)`).FindStringSubmatch(line)[1])
	if !running(workerPid) || !running(acceptorPid) {
		t.Fatalf("worker %d or acceptor %d not running before the kill", workerPid, acceptorPid)
	}
	if info, _ := readProc(workerPid); info.uid != int(acct.UID) || info.sid != workerPid {
		t.Fatalf("worker %d: %+v, want uid %d leading its own session", workerPid, info, acct.UID)
	}

	// SIGKILL: no chance to clean up; the kernel's parent-death signal does it.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed := time.Now()
	deadline := killed.Add(2 * time.Second)
	for (running(workerPid) || running(acceptorPid) || len(sessionMembers(int(acct.UID), workerPid)) > 0) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if running(workerPid) {
		t.Fatalf("alice's worker %d still running 2s after netauthd was killed", workerPid)
	}
	if running(acceptorPid) {
		t.Fatalf("the acceptor %d still running 2s after netauthd was killed", acceptorPid)
	}
	if left := sessionMembers(int(acct.UID), workerPid); len(left) > 0 {
		t.Fatalf("processes of alice's worker session still running as alice: %v", left)
	}
	t.Logf("worker and acceptor gone %v after the kill", time.Since(killed).Round(time.Millisecond))
	_ = live.SetReadDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintln(live, "?")
	if _, err := liveR.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("alice's session after her worker died: %v, want a closed connection", err)
	}

	// The same configuration again: same port, same host key, a new worker.
	startNetauthd(t, e, confPath)
	c, err := netauth.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("after restarting netauthd: %v", err)
	}
	defer c.Close()
	fmt.Fprintln(c, "?")
	line, err = bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "user=netauth-alice") || strings.Contains(line, fmt.Sprintf("pid=%d ", workerPid)) {
		t.Fatalf("after restarting netauthd: %q %v", line, err)
	}
}
