// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/keys"
)

// cpuClients is the number of clients that connect at once in the CPU part, so that the
// server process is kept busy as a loaded server is, rather than waking for each connection.
const cpuClients = 2

// cpu measures the server's CPU time per connection and per handshake, against the
// server's public-key floor.
//
// The workload is the same 128-byte connect-send-recv for plain TCP, netauth full and
// resumed to the in-process server and, as root, netauth full and resumed to an existing
// netauthd worker, with clients through the agent, in blocks alternated round-robin. Each
// block's server CPU is read before and after it: the Go servers' process reports its own
// (getrusage RUSAGE_SELF: all threads, garbage collection and system calls included;
// nothing else runs there meanwhile); netauthd's is that of all its processes together, the
// monitor's (its own getrusage) plus its acceptor's and its workers' of the service
// (procCPU, from /proc). A netauth connection's server CPU minus a plain TCP connection's is
// what the handshake (and the record layer's two records) costs the server. The client CPU
// is the benchmark process's and the agent's.
//
// Blocks of the server's public-key floor (serverOps, on one goroutine in this process,
// timed by its CPU time) alternate with the others.
func (r *run) cpu() error {
	type cpuSystem struct {
		*system
		server func() (time.Duration, error) // the server's CPU so far
		floor  bool                          // serverOps in this process, not a server
	}
	goServers := r.srv.cpu
	systems := []cpuSystem{
		{system: &system{name: "tcp", label: "plain TCP", op: echoTCP(r.srv.addrs.TCP)}, server: goServers},
		{system: &system{name: "netauth-full", label: "netauth in-process server, full",
			op: echoNetauth(r.srv.addrs.Netauth, r.agentConfig(true), mustBeFull, nil)}, server: goServers},
		{system: &system{name: "netauth-resumed", label: "netauth in-process server, resumed",
			op:    echoNetauth(r.srv.addrs.Netauth, r.agentConfig(false), mustResume, nil),
			prime: echoNetauth(r.srv.addrs.Netauth, r.agentConfig(false), eitherWay, nil)}, server: goServers},
	}
	if r.d != nil {
		addr := r.d.addrs.Daemon["echo"]
		// The echo service's worker must exist before the first block reads its CPU.
		if err := echoNetauth(addr, r.agentConfig(true), mustBeFull, nil)(); err != nil {
			return fmt.Errorf("netauthd: %w", err)
		}
		daemon := func() (time.Duration, error) { return r.daemonCPU("echo") }
		systems = append(systems,
			cpuSystem{system: &system{name: "ubns-full", label: "netauthd full, existing worker (monitor + acceptor + worker)",
				op: echoNetauth(addr, r.agentConfig(true), mustBeFull, nil)}, server: daemon},
			cpuSystem{system: &system{name: "ubns-resumed", label: "netauthd resumed, existing worker (monitor + acceptor + worker)",
				op:    echoNetauth(addr, r.agentConfig(false), mustResume, nil),
				prime: echoNetauth(addr, r.agentConfig(false), eitherWay, nil)}, server: daemon})
	}
	ops, err := newServerOps(r.m.hostKey)
	if err != nil {
		return err
	}
	systems = append(systems,
		cpuSystem{system: &system{name: "floor-resumed", label: "server public-key floor, resumed: keygen + X25519",
			op: func() error { return ops.run(false) }}, floor: true},
		cpuSystem{system: &system{name: "floor-full", label: "server public-key floor, full: keygen + X25519 + ML-KEM-768 encaps + Ed25519 sign + verify",
			op: func() error { return ops.run(true) }}, floor: true})

	server := make([]time.Duration, len(systems))
	client := make([]time.Duration, len(systems))
	done := make([]int, len(systems))
	r.prog.phase(fmt.Sprintf("server CPU per handshake (%d clients at once)", cpuClients))
	for _, s := range systems { // warm up, and fill the ticket caches
		if s.prime != nil {
			if err := s.prime(); err != nil {
				return fmt.Errorf("%s: %w", s.label, err)
			}
		}
		for range r.n.warm {
			if err := s.op(); err != nil {
				return fmt.Errorf("%s: %w", s.label, err)
			}
		}
	}
	clientCPU := func() (time.Duration, error) {
		self, err := processCPU()
		if err != nil {
			return 0, err
		}
		ag, err := procCPU(r.agent.pid())
		if err != nil {
			return 0, fmt.Errorf("the agent: %w", err)
		}
		return self + ag, nil
	}
	total := r.n.cpuConns * len(systems)
	for done[len(done)-1] < r.n.cpuConns {
		for j, s := range systems {
			n := min(r.n.cpuBlock, r.n.cpuConns-done[j])
			if s.floor {
				c0, err := processCPU()
				if err != nil {
					return err
				}
				for range n {
					if err := s.op(); err != nil {
						return fmt.Errorf("%s: %w", s.label, err)
					}
				}
				c1, err := processCPU()
				if err != nil {
					return err
				}
				server[j] += c1 - c0
			} else {
				srv0, err := s.server()
				if err != nil {
					return err
				}
				cli0, err := clientCPU()
				if err != nil {
					return err
				}
				if err := concurrently(n, cpuClients, s.op); err != nil {
					return fmt.Errorf("%s: %w", s.label, err)
				}
				cli1, err := clientCPU()
				if err != nil {
					return err
				}
				srv1, err := s.server()
				if err != nil {
					return err
				}
				server[j] += srv1 - srv0
				client[j] += cli1 - cli0
			}
			done[j] += n
			sum := 0
			for _, d := range done {
				sum += d
			}
			r.prog.count(sum, total)
		}
	}
	per := func(d time.Duration, n int) float64 { return us(d) / float64(n) }
	tcp := per(server[0], done[0])
	floors := map[string]float64{}
	out := &CPUResult{Clients: cpuClients}
	for j, s := range systems {
		row := CPURow{Name: s.name, Label: s.label, Conns: done[j]}
		if s.floor {
			row.HandshakeUS = per(server[j], done[j])
			floors[s.name] = row.HandshakeUS
		} else {
			row.ServerUS, row.ClientUS = per(server[j], done[j]), per(client[j], done[j])
			row.ConnsPerCoreSecond = ratio(1e6, row.ServerUS)
			if j > 0 {
				row.HandshakeUS = row.ServerUS - tcp
			}
		}
		if row.HandshakeUS > 0 {
			row.PerCoreSecond = ratio(1e6, row.HandshakeUS)
		}
		out.Rows = append(out.Rows, row)
	}
	for i, s := range systems {
		if s.floor || i == 0 {
			continue
		}
		floor := floors["floor-resumed"]
		if strings.HasSuffix(s.name, "-full") {
			floor = floors["floor-full"]
		}
		out.Rows[i].PerFloor = ratio(out.Rows[i].HandshakeUS, floor)
	}
	r.rep.CPU = out
	return nil
}

// daemonCPU returns the CPU time netauthd's processes have used so far: the monitor's (the
// daemon's server process answers with its getrusage), its acceptor's and that of the
// workers of service (from /proc).
func (r *run) daemonCPU(service string) (time.Duration, error) {
	total, err := r.d.cpu()
	if err != nil {
		return 0, err
	}
	acc, err := procCPU(r.d.addrs.AcceptorPid)
	if err != nil {
		return 0, fmt.Errorf("netauthd's acceptor: %w", err)
	}
	total += acc
	workers, err := daemonWorkers(r.d)
	if err != nil {
		return 0, err
	}
	found := false
	for _, w := range workers {
		if w.service != service {
			continue
		}
		c, err := procCPU(w.pid)
		if err != nil {
			return 0, fmt.Errorf("netauthd's worker: %w", err)
		}
		total += c
		found = true
	}
	if !found {
		return 0, fmt.Errorf("netauthd has no worker of service %q", service)
	}
	return total, nil
}

// concurrently runs op n times from k goroutines and returns the first error.
func concurrently(n, k int, op func() error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
		errs []error
	)
	for range k {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= n || len(errs) > 0 {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				if err := op(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// verify measures how many user authenticators one core verifies per second: the SSHSIG
// check the server makes on every full handshake (keys.Verify, Ed25519 user key, over a
// statement as the client makes it), in a loop on one goroutine, timed by this process's
// CPU time. The bare Ed25519 verification of the same size is measured alongside as its
// floor.
func (r *run) verify() error {
	hh := make([]byte, keys.HandshakeHashSize)
	_, _ = rand.Read(hh)
	stmt, err := (&keys.Statement{HandshakeHash: hh, HostKey: r.m.hostPub, Service: "bench", User: workerAccount,
		Time: time.Now()}).Marshal()
	if err != nil {
		return err
	}
	blob, err := keys.Sign(r.m.user, handshake.Namespace, stmt)
	if err != nil {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signed := keys.SignedData(handshake.Namespace, stmt)
	sig := ed25519.Sign(priv, signed)
	r.prog.phase("user signature verification")
	measure := func(n int, check func() error) (float64, error) {
		c0, err := processCPU()
		if err != nil {
			return 0, err
		}
		for i := range n {
			if err := check(); err != nil {
				return 0, err
			}
			if i%1000 == 0 {
				r.prog.count(i, n)
			}
		}
		c1, err := processCPU()
		return us(c1-c0) / float64(n), err
	}
	n := r.n.verify
	sshsig, err := measure(n, func() error {
		_, err := keys.Verify(blob, handshake.Namespace, stmt)
		return err
	})
	if err != nil {
		return fmt.Errorf("SSHSIG verification: %w", err)
	}
	bare, err := measure(n, func() error {
		if !ed25519.Verify(pub, signed, sig) {
			return errors.New("Ed25519 verification failed")
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.rep.Verify = &VerifyResult{N: n, SSHSIGUS: sshsig, PerCoreSecond: ratio(1e6, sshsig), Ed25519US: bare,
		Ed25519PerCoreSecond: ratio(1e6, bare)}
	return nil
}
