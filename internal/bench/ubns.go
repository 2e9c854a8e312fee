// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
)

// scaleClients is the number of users that connect at once in the scale run.
const scaleClients = 8

// probeUser is the account-less user that finds out whether netauthd serves users that
// exist only in its key files (for services that run as a fixed account).
const probeUser = "bench-probe"

// startDaemon starts a server process running netauthd with the run's configuration, and
// pins its host key for every service.
func (r *run) startDaemon() (*serverProc, error) {
	p, err := startServerProc(r.opts.Self, &serverSpec{Daemon: r.conf, Acceptor: r.acceptor, WorkerSelf: r.workerSelf})
	if err != nil {
		return nil, err
	}
	for _, a := range p.addrs.Daemon {
		if err := netauth.Trust(r.known, a, r.m.hostPub); err != nil {
			p.stop()
			return nil, err
		}
	}
	return p, nil
}

// scaleAccounts creates the keys of the scale run's users and writes their key files with
// put: account-less users (bench-user-00001, ...) and, in case netauthd does not serve
// those, the real accounts of the user database other than root and nobody.
func (r *run) scaleAccounts(put func(string, ssh.Signer) error) error {
	r.scaleKeys = make(map[string]ssh.Signer)
	add := func(name string) error {
		s, err := newUserSigner()
		if err != nil {
			return err
		}
		r.scaleKeys[name] = s
		return put(name, s)
	}
	if err := add(probeUser); err != nil {
		return err
	}
	for i := range r.n.scaleUsers {
		name := fmt.Sprintf("bench-user-%05d", i+1)
		if err := add(name); err != nil {
			return err
		}
		r.virtualNames = append(r.virtualNames, name)
	}
	for _, name := range passwdNames() {
		if len(r.realNames) == r.n.scaleUsers {
			break
		}
		if name == workerAccount || keys.ValidName(name) != nil {
			continue
		}
		if a, err := policy.LookupAccount(name); err != nil || a.UID == 0 {
			continue
		}
		if err := add(name); err != nil {
			return err
		}
		r.realNames = append(r.realNames, name)
	}
	return nil
}

// passwdNames lists the user names in /etc/passwd.
func passwdNames() []string {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && name != "" && !strings.HasPrefix(name, "#") {
			names = append(names, name)
		}
	}
	return names
}

// memory measures an idle per-user worker: a worker of service "idle" that served one
// connection and has none, and the "echo" worker that served the latency part (if it ran).
func (r *run) memory() error {
	if r.d == nil {
		return nil // skipped: recorded in Run
	}
	r.prog.phase("per-user worker memory")
	if err := echoNetauth(r.d.addrs.Daemon["idle"], r.memoryConfig(false), mustBeFull, nil)(); err != nil {
		return fmt.Errorf("connecting to the idle service: %w", err)
	}
	time.Sleep(500 * time.Millisecond) // let the worker finish the connection and go idle
	mem := &MemoryResult{}
	workers, err := daemonWorkers(r.d)
	if err != nil {
		return err
	}
	for _, w := range workers {
		switch w.service {
		case "idle":
			mem.IdleWorker = w.mem
		case "echo":
			mem.EchoWorker = w.mem
		}
	}
	if mem.IdleWorker.RSSKB == 0 {
		return errors.New("found no worker of the idle service")
	}
	d, err := procMemory(r.d.pid())
	if err != nil {
		return err
	}
	mem.Daemon = d
	if mem.Acceptor, err = procMemory(r.d.addrs.AcceptorPid); err != nil {
		return fmt.Errorf("netauthd's acceptor: %w", err)
	}
	r.rep.Memory = mem
	return nil
}

// scale connects many users, each several times, to a fresh netauthd whose "scale" service
// runs every user's worker as nobody: each user's first connection starts its worker (full
// handshake), the others resume to it. Up to scaleClients users connect at once; every
// connection stays open until all are made. It reports latency percentiles and the memory
// of the daemon and the workers with every connection open.
func (r *run) scale() error {
	if r.d == nil {
		return nil // skipped: recorded in Run
	}
	// A fresh daemon, so that its memory is the scale run's alone.
	r.d.stop()
	var err error
	if r.d, err = r.startDaemon(); err != nil {
		return err
	}
	addr := r.d.addrs.Daemon["scale"]
	cache := netauth.NewMemoryTicketCache(r.n.scaleUsers + 16)
	cfg := func(user string) *netauth.Config {
		return &netauth.Config{User: user, Signer: r.scaleKeys[user], KnownHostsFile: r.known, TicketCache: cache}
	}
	res := &ScaleResult{Users: r.n.scaleUsers, Conns: r.n.scaleConns, Clients: scaleClients, VirtualUsers: true}
	users := r.virtualNames
	probe, err := netauth.Dial("tcp", addr, cfg(probeUser))
	if err == nil {
		err = probe.Handshake()
		probe.Close()
	}
	var refused *netauth.RefusedError
	switch {
	case errors.As(err, &refused) && refused.Code == netauth.CodeNotAuthorized:
		res.VirtualUsers = false
		users = r.realNames
		r.skip(fmt.Sprintf("scale run with %d users", r.n.scaleUsers),
			fmt.Sprintf("this netauthd does not serve users that exist only in its key files, so the scale run used the %d real accounts other than root and nobody (their workers run as nobody)", len(users)))
		if len(users) == 0 {
			return nil
		}
		res.Users = len(users)
	case err != nil:
		return fmt.Errorf("probing the scale service: %w", err)
	}
	if before, err := procMemory(r.d.pid()); err == nil {
		res.DaemonBefore = before
	}
	r.prog.phase(fmt.Sprintf("scale: %d users x %d connections", len(users), r.n.scaleConns))
	var (
		mu           sync.Mutex
		first, later []time.Duration
		open         []*netauth.Conn
		done         int
	)
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	total := len(users) * r.n.scaleConns
	t0 := time.Now()
	next := 0
	err = concurrently(len(users), scaleClients, func() error {
		mu.Lock()
		user := users[next]
		next++
		mu.Unlock()
		c := cfg(user)
		for i := range r.n.scaleConns {
			start := time.Now()
			conn, retries, err := scaleConnectRetrying(addr, c, i > 0)
			d := time.Since(start)
			if err != nil {
				return fmt.Errorf("user %s, connection %d: %w", user, i+1, err)
			}
			mu.Lock()
			res.Overloaded += retries
			open = append(open, conn)
			if i == 0 {
				first = append(first, d)
			} else {
				later = append(later, d)
			}
			done++
			r.prog.count(done, total)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	res.Seconds = time.Since(t0).Seconds()
	all := append(slices.Clone(first), later...)
	res.All, res.First, res.Later = summarize(all), summarize(first), summarize(later)
	if res.DaemonPeak, err = procMemory(r.d.pid()); err != nil {
		return err
	}
	workers, err := daemonWorkers(r.d)
	if err != nil {
		return err
	}
	var rss []float64
	for _, w := range workers {
		if w.service == "scale" {
			res.Workers++
			res.WorkersPssKB += w.mem.PssKB
			rss = append(rss, float64(w.mem.RSSKB))
		}
	}
	res.WorkerRSSMedianKB = int(medianFloat(rss))
	r.rep.Scale = res
	return nil
}

// Overload retries in the scale run: a connection refused as overloaded is tried again after
// a pause, as the refusal asks ("try again later"), doubling from scaleRetryFirst up to
// scaleRetryMax, for at most scaleRetryFor.
const (
	scaleRetryFirst = time.Millisecond
	scaleRetryMax   = 50 * time.Millisecond
	scaleRetryFor   = 10 * time.Second
)

// scaleConnectRetrying is scaleConnect, retrying a connection netauthd refuses as overloaded.
// It returns how many refusals it retried.
func scaleConnectRetrying(addr string, cfg *netauth.Config, resumed bool) (*netauth.Conn, int, error) {
	deadline := time.Now().Add(scaleRetryFor)
	pause := scaleRetryFirst
	for retries := 0; ; retries++ {
		c, err := scaleConnect(addr, cfg, resumed)
		var refused *netauth.RefusedError
		if err == nil || !errors.As(err, &refused) || refused.Code != netauth.CodeOverloaded || time.Now().After(deadline) {
			return c, retries, err
		}
		time.Sleep(pause)
		pause = min(2*pause, scaleRetryMax)
	}
}

// scaleConnect makes one connection of the scale run and leaves it open.
func scaleConnect(addr string, cfg *netauth.Config, resumed bool) (*netauth.Conn, error) {
	c, err := netauth.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	var req, resp [msgSize]byte
	if _, err = c.Write(req[:]); err == nil {
		_, err = io.ReadFull(c, resp[:])
	}
	if err == nil && c.Identity().Resumed != resumed {
		err = fmt.Errorf("resumed=%v, want %v", !resumed, resumed)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// workerInfo is one of netauthd's worker processes.
type workerInfo struct {
	pid           int
	service, user string
	mem           ProcMemory
}

// daemonWorkers lists the worker processes of netauthd (the server process d), with their
// memory.
func daemonWorkers(d *serverProc) ([]workerInfo, error) {
	ws, err := d.workers()
	if err != nil {
		return nil, err
	}
	var out []workerInfo
	for _, w := range ws {
		wi := workerInfo{pid: w.Pid, service: w.Service, user: w.User}
		if wi.mem, err = procMemory(w.Pid); err != nil {
			continue // it exited meanwhile
		}
		out = append(out, wi)
	}
	return out, nil
}

// procMemory reads a process's memory use from /proc/PID/status and smaps_rollup.
func procMemory(pid int) (ProcMemory, error) {
	var m ProcMemory
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	fields := map[string]*int{"VmRSS": &m.RSSKB, "VmHWM": &m.HWMKB, "RssAnon": &m.AnonKB}
	if err := readKB(filepath.Join(dir, "status"), fields); err != nil {
		return m, err
	}
	_ = readKB(filepath.Join(dir, "smaps_rollup"), map[string]*int{"Pss": &m.PssKB})
	return m, nil
}

// meminfo returns one field of /proc/meminfo, in kB.
func meminfo(field string) (int, error) {
	var v int
	err := readKB("/proc/meminfo", map[string]*int{field: &v})
	return v, err
}

// readKB reads "Name: N kB" lines of a /proc file into fields.
func readKB(path string, fields map[string]*int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if p := fields[k]; ok && p != nil {
			*p, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return sc.Err()
}
