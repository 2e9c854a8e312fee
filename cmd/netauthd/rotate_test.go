// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/audit"
)

// TestAuditRotationUnderLoad runs the real netauthd and rotates its audit log as logrotate
// does (rename, then SIGUSR1) again and again while clients connect without pause: every
// file ends with its closing checkpoint and continues the chain of the file before it, the
// files hold one accepted record for each connection the clients made (none lost, none
// twice), and the records of connections given to a running worker name its pid.
func TestAuditRotationUnderLoad(t *testing.T) {
	e := setup(t)
	keysDir, signers := e.keys(t, "netauth-alice")
	alice := signers[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	lf, _ := ln.(*net.TCPListener).File()
	ln.Close()
	logDir := filepath.Join(e.dir, "log")
	logPath := filepath.Join(logDir, "audit.log")
	confPath := filepath.Join(e.dir, "netauthd.conf")
	os.WriteFile(confPath, []byte(fmt.Sprintf("host-key %s/host_key\naudit-log %s\nauthorized-keys-dir %s\n\n"+
		"service whoami {\n  listen %s\n  program %s\n  args -worker whoami\n  users netauth-alice\n}\n",
		e.dir, logPath, keysDir, addr, e.bin)), 0o644)
	cmd, logs := startActivated(t, e, confPath, []*os.File{lf})
	lf.Close()
	logs.wait(t, `netauthd running`, 10*time.Second)
	host, _, err := netauth.FetchHostKey(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(e.dir, "known_hosts")
	netauth.Trust(known, addr, host)

	// Clients connect, one connection after another each, until told to stop; full
	// handshakes and resumptions both.
	var mu sync.Mutex
	served := make(map[int]int) // connections by the worker pid whoami reported
	stop := make(chan struct{})
	var wg sync.WaitGroup
	pidRE := regexp.MustCompile(`pid=(\d+)`)
	for g := range 4 {
		cfg := &netauth.Config{User: "netauth-alice", Signer: alice, KnownHostsFile: known}
		if g%2 == 0 {
			cfg.TicketCache = netauth.NewMemoryTicketCache(2)
		}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := whoami(addr, cfg)
				if err != nil {
					t.Errorf("connection during rotations: %v", err)
					return
				}
				m := pidRE.FindStringSubmatch(out)
				if m == nil {
					t.Errorf("whoami said %q", out)
					return
				}
				pid, _ := strconv.Atoi(m[1])
				mu.Lock()
				served[pid]++
				mu.Unlock()
			}
		})
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range served {
			n += c
		}
		return n
	}
	const rotations = 6
	var files []string
	for i := range rotations {
		for since, deadline := count(), time.Now().Add(20*time.Second); count() < since+20; {
			if time.Now().After(deadline) || t.Failed() {
				close(stop)
				wg.Wait()
				t.Fatalf("the clients stopped connecting; log:\n%s", logs.all.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		rotated := fmt.Sprintf("%s.%d", logPath, rotations-i)
		if err := os.Rename(logPath, rotated); err != nil {
			t.Fatal(err)
		}
		files = append(files, rotated)
		cmd.Process.Signal(syscall.SIGUSR1)
		logs.wait(t, `audit log reopened`, 10*time.Second)
	}
	for since := count(); count() < since+20 && !t.Failed(); {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	cmd.Process.Signal(syscall.SIGTERM)
	logs.wait(t, `stopping`, 10*time.Second)
	go func() {
		for range logs.lines {
		}
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("netauthd exit: %v", err)
	}
	files = append(files, logPath)

	var hs audit.Handshakes
	var prev *audit.Report
	logged := make(map[int]int) // accepted records by the worker pid they name
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := audit.VerifyWith(bytes.NewReader(data), host, audit.VerifyOptions{RequireSigned: true, Handshakes: &hs, Name: f})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Signed() || !rep.Closed {
			t.Fatalf("%s: problems %v, uncovered %v, closed %v", f, rep.Problems, rep.UncoveredRuns, rep.Closed)
		}
		if prev != nil {
			if err := rep.Continues(prev, nil); err != nil {
				t.Fatalf("%s does not continue the file before it: %v", f, err)
			}
		}
		prev = rep
		for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
			var r audit.Record
			if err := json.Unmarshal(l, &r); err != nil {
				t.Fatal(err)
			}
			if r.Checkpoint == nil && r.Decision == audit.Accepted {
				logged[r.Worker]++
			}
		}
	}
	// A record names the worker when it was running already; a connection that found none
	// ready (the first, and those arriving while it started: at most one per client) was
	// logged before its worker was started, naming none.
	total, named := 0, 0
	for pid, n := range logged {
		total += n
		if pid != 0 {
			named += n
			if n > served[pid] {
				t.Errorf("%d accepted records name worker %d, which served %d connections", n, pid, served[pid])
			}
		}
	}
	if total != count() || logged[0] > 4*len(served) || named == 0 {
		t.Fatalf("accepted records by worker pid %v, connections served by worker pid %v", logged, served)
	}
	t.Logf("%d connections over %d rotations: %v served, %v logged", count(), rotations, served, logged)
}
