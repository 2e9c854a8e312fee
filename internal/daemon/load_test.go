// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
)

// Load test size: loadUsers users with loadConns connections each, all open at once, each
// exchanging loadMsg bytes twice.
const (
	loadUsers    = 1000
	loadConns    = 10
	loadMsg      = 1024
	loadInFlight = 8 // handshakes the clients run at once (below maxPendingPerSource)
)

// loadService serves users known only by their keys (load0000...), each with a worker of
// their own, all running as one service account.
const loadService = `service load {
    listen 127.0.0.1:0
    program DIR/netauthd
    args -worker echo
    run-as account netauth-alice
    users *
    max-workers 100000
    max-connections-per-user 64
    idle-timeout 10m
}
`

// TestLoad: 1,000 users with 10 concurrent connections each, every connection exchanging
// 1 KiB echoed back and compared byte for byte, twice (the second time while all 10,000 are
// open): no exchange fails or is corrupted, and each user has exactly one worker, serving
// their 10 connections (from the daemon's table, checked against /proc: the worker runs as
// the service account with the user's name in its environment). The users exist only in the
// key files: the service runs as a service account, so they need no system account. It logs
// the handshake latencies, the time, the RSS of the monitor (the test process, which also
// holds the clients' ends) and of the acceptor, and the workers' memory.
//
// Measured on 2 cores: about 47 s with -race (15 s without); the monitor process 2.2 GiB
// with -race (280 MiB without), the acceptor 9 MiB, the 1,000 workers 7.5 MiB RSS and
// 1.3 MiB PSS each (1.3 GiB in all). The full size fits CI, so it is not reduced.
//
// The clients run at most loadInFlight handshakes at once: they all connect from 127.0.0.1,
// and the daemon bounds the handshakes in progress from one address; a handshake refused as
// overloaded (the daemon still counts one whose verdict the client already has) is retried
// after 10 ms, as a client would, and counted.
func TestLoad(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// This process holds the clients' ends, and three descriptors per worker.
	if need := uint64(loadUsers*loadConns + 4*loadUsers + 512); lim.Cur < need {
		t.Skipf("the load test needs %d open files; RLIMIT_NOFILE is %d (hard %d)", need, lim.Cur, lim.Max)
	}
	start := time.Now()
	// The workers are netauthd's built-in echo, built as it ships (the test binary, built
	// with -race in CI, costs three times the memory and ten times the start-up time).
	tb := newTestbedOpts(t, loadService, testbedOpts{files: map[string][]byte{"netauthd": buildNetauthd(t)}})
	addr := tb.addr("load")
	baseRSS := procKB(os.Getpid(), "status", "VmRSS:")
	names := make([]string, loadUsers)
	signers := make([]ssh.Signer, loadUsers)
	for i := range names {
		names[i] = fmt.Sprintf("load%04d", i)
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		signers[i], _ = ssh.NewSignerFromKey(priv)
		tb.setKey(names[i], signers[i].PublicKey())
	}

	var (
		sem                          = make(chan struct{}, loadInFlight)
		opened                       sync.WaitGroup // every connection open and exchanged once
		release                      = make(chan struct{})
		done                         sync.WaitGroup
		failures                     atomic.Int32
		resumed                      atomic.Int32
		overloaded                   atomic.Int32
		latMu                        sync.Mutex
		lat                          []time.Duration // of each handshake
		errMu                        sync.Mutex
		firstErrs                    []string
		connectStart                 = time.Now()
		connectDone, exchangeDoneDur time.Duration
	)
	fail := func(format string, args ...any) {
		failures.Add(1)
		errMu.Lock()
		if len(firstErrs) < 10 {
			firstErrs = append(firstErrs, fmt.Sprintf(format, args...))
		}
		errMu.Unlock()
	}
	// exchange sends loadMsg random bytes and checks they come back unchanged.
	exchange := func(c *netauth.Conn, user string, n, round int) bool {
		msg := make([]byte, loadMsg)
		_, _ = rand.Read(msg)
		got := make([]byte, loadMsg)
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := c.Write(msg); err != nil {
			fail("%s conn %d round %d: write: %v", user, n, round, err)
			return false
		}
		if _, err := io.ReadFull(c, got); err != nil {
			fail("%s conn %d round %d: read: %v", user, n, round, err)
			return false
		}
		if !bytes.Equal(got, msg) {
			fail("%s conn %d round %d: echo corrupted", user, n, round)
			return false
		}
		return true
	}
	// dial opens connection n of user i, with at most loadInFlight handshakes at once. A
	// refusal as overloaded (the clients all connect from 127.0.0.1, and the daemon bounds
	// the handshakes in progress from one address) is retried, as a client would, and counted.
	dial := func(i, n int, cfg *netauth.Config) *netauth.Conn {
		for attempt := 1; ; attempt++ {
			sem <- struct{}{}
			t0 := time.Now()
			c, err := netauth.Dial("tcp", addr, cfg)
			if err == nil {
				if err = c.Handshake(); err != nil {
					c.Close()
				}
			}
			latMu.Lock()
			lat = append(lat, time.Since(t0))
			latMu.Unlock()
			<-sem
			var re *netauth.RefusedError
			if errors.As(err, &re) && re.Code == netauth.CodeOverloaded && attempt < 100 {
				overloaded.Add(1)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if err != nil {
				fail("%s conn %d: %v", names[i], n, err)
				return nil
			}
			if c.Identity().Resumed {
				resumed.Add(1)
			}
			return c
		}
	}
	// serve exchanges on a connection, waits for every connection to be open, exchanges
	// again and closes it.
	serve := func(c *netauth.Conn, i, n int) {
		defer done.Done()
		if c == nil {
			opened.Done()
			return
		}
		defer c.Close()
		ok := exchange(c, names[i], n, 1)
		opened.Done()
		if !ok {
			return
		}
		<-release
		exchange(c, names[i], n, 2)
	}
	opened.Add(loadUsers * loadConns)
	done.Add(loadUsers * loadConns)
	// Whatever happens, the clients let go of their connections when the test ends.
	stopClients := sync.OnceFunc(func() { close(release) })
	t.Cleanup(stopClients)
	for i := range loadUsers {
		// All users at once; each opens their connections one after another (the first
		// makes the worker and gets the ticket the others resume with), keeping them open.
		// The usual client state: one known_hosts, one ticket cache for the user.
		go func() {
			cfg := &netauth.Config{User: names[i], Signer: signers[i], KnownHostsFile: tb.known,
				TicketCache: netauth.NewMemoryTicketCache(4)}
			for n := range loadConns {
				c := dial(i, n, cfg)
				go serve(c, i, n)
			}
		}()
	}
	// Generous limits: they only keep a broken daemon from hanging the run.
	waitOrFail(t, &opened, 3*time.Minute, "connections to open")
	connectDone = time.Since(connectStart)

	// Every connection is open: the workers, as the daemon sees them and as /proc does.
	tb.d.mu.Lock()
	type wsnap struct {
		user   string
		pid    int
		active int
	}
	var ws []wsnap
	for k, w := range tb.d.workers {
		if k.service == "load" && !w.dead && !w.retired {
			ws = append(ws, wsnap{k.user, w.pid, w.active})
		}
	}
	tb.d.mu.Unlock()
	perUser := map[string]int{}
	pids := map[int]bool{}
	var rss, pss int64
	acctUID := uidOf(t, "netauth-alice")
	for _, w := range ws {
		perUser[w.user]++
		pids[w.pid] = true
		if w.active != loadConns {
			t.Errorf("worker %d of %s has %d connections, want %d", w.pid, w.user, w.active, loadConns)
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w.pid))
		if err != nil || !bytes.Contains(env, []byte("\x00NETAUTH_USER="+w.user+"\x00")) {
			t.Errorf("worker %d: not %s's (%v)", w.pid, w.user, err)
		}
		if uid := procField(w.pid, "status", "Uid:"); uid != acctUID {
			t.Errorf("worker %d of %s runs as uid %s, want the service account's %s", w.pid, w.user, uid, acctUID)
		}
		rss += procKB(w.pid, "status", "VmRSS:")
		pss += procKB(w.pid, "smaps_rollup", "Pss:")
	}
	for _, name := range names {
		if perUser[name] != 1 {
			t.Errorf("%s has %d workers, want exactly 1", name, perUser[name])
		}
	}
	if len(ws) != loadUsers || len(pids) != loadUsers {
		t.Errorf("%d workers with %d distinct pids for %d users", len(ws), len(pids), loadUsers)
	}
	monitorRSS := procKB(os.Getpid(), "status", "VmRSS:")
	acceptorRSS := procKB(tb.d.AcceptorPid(), "status", "VmRSS:")

	exchangeStart := time.Now()
	stopClients()
	waitOrFail(t, &done, 2*time.Minute, "the second exchanges")
	exchangeDoneDur = time.Since(exchangeStart)
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d connections failed; first errors:\n%s", n, loadUsers*loadConns, strings.Join(firstErrs, "\n"))
	}
	total := loadUsers * loadConns
	t.Logf("%d users x %d connections = %d connections (%d full handshakes, %d resumed), each echoing %d bytes twice: 0 failures",
		loadUsers, loadConns, total, total-int(resumed.Load()), resumed.Load(), loadMsg)
	slices.Sort(lat)
	t.Logf("handshakes: median %v, p99 %v, max %v; refused as overloaded and retried: %d",
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), overloaded.Load())
	t.Logf("open and first exchange: %v (%.0f connections/s); second exchange with all open: %v; whole test so far: %v",
		connectDone.Round(time.Millisecond), float64(total)/connectDone.Seconds(), exchangeDoneDur.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	t.Logf("RSS with every connection open: monitor %d MiB (%d MiB before; the test process, which also holds the %d clients' ends), acceptor %d MiB",
		monitorRSS>>10, baseRSS>>10, total, acceptorRSS>>10)
	t.Logf("workers: %d (one per user), RSS sum %d MiB (%d KiB each), PSS sum %d MiB (%d KiB each)",
		len(ws), rss>>10, rss/int64(max(len(ws), 1)), pss>>10, pss/int64(max(len(ws), 1)))
}

// buildNetauthd builds cmd/netauthd as it is normally built and returns the executable.
func buildNetauthd(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "netauthd")
	if msg, err := exec.Command("go", "build", "-o", out, "ubns.dev/netauth/cmd/netauthd").CombinedOutput(); err != nil {
		t.Fatalf("building netauthd: %v: %s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// waitOrFail waits for wg for at most limit.
func waitOrFail(t *testing.T, wg *sync.WaitGroup, limit time.Duration, what string) {
	t.Helper()
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	select {
	case <-c:
	case <-time.After(limit):
		t.Fatalf("timed out after %v waiting for %s", limit, what)
	}
}

// procField returns the first field after key in /proc/pid/file.
func procField(pid int, file, key string) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

// procKB returns a "key: N kB" value of /proc/pid/file in KiB (0 if absent).
func procKB(pid int, file, key string) int64 {
	n, _ := strconv.ParseInt(procField(pid, file, key), 10, 64)
	return n
}
