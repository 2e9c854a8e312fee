// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/x25519"
)

// cpuClients is the number of clients that connect at once in the CPU part, so that the
// server process is kept busy as a loaded server is, rather than waking for each connection.
const cpuClients = 2

// cpu measures the server's CPU time per connection and per handshake, and signature
// verifications per core-second.
//
// The servers run in the server process, which reports its own CPU time (getrusage
// RUSAGE_SELF: user and system time of all its threads, garbage collection included) before
// and after each block of connections; nothing else runs there meanwhile. The workload is the
// same 128-byte connect-send-recv for plain TCP, netauth full and netauth resumed (the
// in-process server), in blocks alternated round-robin. A netauth connection's server CPU
// minus a plain TCP connection's is what the handshake (and the record layer's two records)
// costs the server; handshakes per core-second are one second over that.
func (r *run) cpu() error {
	res := r.clientConfig(true)
	systems := []*system{
		{name: "tcp", label: "plain TCP", op: echoTCP(r.srv.addrs.TCP)},
		{name: "netauth-full", label: "netauth full", op: echoNetauth(r.srv.addrs.Netauth, r.clientConfig(false), mustBeFull)},
		{name: "netauth-resumed", label: "netauth resumed", op: echoNetauth(r.srv.addrs.Netauth, res, mustResume),
			prime: echoNetauth(r.srv.addrs.Netauth, res, eitherWay)},
	}
	server := make([]time.Duration, len(systems))
	client := make([]time.Duration, len(systems))
	done := make([]int, len(systems))
	r.prog.phase(fmt.Sprintf("server CPU per handshake (%d clients at once)", cpuClients))
	for _, s := range systems { // warm up, and fill the ticket cache
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
	total := r.n.cpuConns * len(systems)
	for done[len(done)-1] < r.n.cpuConns {
		for j, s := range systems {
			n := min(r.n.cpuBlock, r.n.cpuConns-done[j])
			srv0, err := r.srv.cpu()
			if err != nil {
				return err
			}
			cli0, err := processCPU()
			if err != nil {
				return err
			}
			if err := concurrently(n, cpuClients, s.op); err != nil {
				return fmt.Errorf("%s: %w", s.label, err)
			}
			cli1, err := processCPU()
			if err != nil {
				return err
			}
			srv1, err := r.srv.cpu()
			if err != nil {
				return err
			}
			server[j] += srv1 - srv0
			client[j] += cli1 - cli0
			done[j] += n
			r.prog.count(done[0]+done[1]+done[2], total)
		}
	}
	per := func(d time.Duration, n int) float64 { return us(d) / float64(n) }
	tcp := per(server[0], done[0])
	out := &CPUResult{Clients: cpuClients}
	for j, s := range systems {
		row := CPURow{Name: s.name, Label: s.label, Conns: done[j], ServerUS: per(server[j], done[j]),
			ClientUS: per(client[j], done[j])}
		if j > 0 {
			row.HandshakeUS = row.ServerUS - tcp
			row.PerCoreSecond = ratio(1e6, row.HandshakeUS)
		}
		row.ConnsPerCoreSecond = ratio(1e6, row.ServerUS)
		out.Rows = append(out.Rows, row)
	}
	floor, err := r.floor()
	if err != nil {
		return err
	}
	out.Rows = append(out.Rows, floor...)
	r.rep.CPU = out
	return nil
}

// floor measures, in this process and on one goroutine, the public-key operations a server
// cannot avoid per handshake: an ephemeral key generation and one X25519 for a resumed
// handshake, plus, for a full one (hybrid), parsing the client's ML-KEM-768 encapsulation key
// and encapsulating to it, the host's Ed25519 signature and the verification of the user's.
// Their handshakes per core-second bound what any implementation could reach here.
func (r *run) floor() ([]CPURow, error) {
	peer, err := x25519.Generate(rand.Reader)
	if err != nil {
		return nil, err
	}
	msg := make([]byte, 200)
	userPub, userPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	userSig := ed25519.Sign(userPriv, msg)
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, err
	}
	ekb := dk.EncapsulationKey().Bytes()
	n := r.n.cpuConns
	var rows []CPURow
	for _, full := range []bool{false, true} {
		c0, err := processCPU()
		if err != nil {
			return nil, err
		}
		for range n {
			kp, err := x25519.Generate(rand.Reader)
			if err != nil {
				return nil, err
			}
			if _, err := kp.DH(peer.Public); err != nil {
				return nil, err
			}
			if full {
				ek, err := kem.ParseEncapsulationKey(ekb)
				if err != nil {
					return nil, err
				}
				if _, _, err := kem.Encapsulate(ek); err != nil {
					return nil, err
				}
				_ = ed25519.Sign(r.m.hostKey, msg[:64])
				if !ed25519.Verify(userPub, msg, userSig) {
					return nil, errors.New("Ed25519 verification failed")
				}
			}
		}
		c1, err := processCPU()
		if err != nil {
			return nil, err
		}
		row := CPURow{Name: "floor-resumed", Label: "floor: keygen + X25519", Conns: n, HandshakeUS: us(c1-c0) / float64(n)}
		if full {
			row.Name, row.Label = "floor-full", "floor: keygen + X25519 + ML-KEM-768 encaps + Ed25519 sign + verify"
		}
		row.PerCoreSecond = ratio(1e6, row.HandshakeUS)
		rows = append(rows, row)
	}
	return rows, nil
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
