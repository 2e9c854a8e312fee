// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
)

// msgSize is the request and reply size of the paper's Table 3 workload.
const msgSize = 128

// system is one server the connect-send-recv workload runs against.
type system struct {
	name  string // short name, used in JSON and -only
	label string // what the table prints
	// op connects, sends msgSize bytes, receives them back, checks, and closes.
	op func() error
	// prime, if set, is op without the check that the connection resumed: it makes the
	// first connection, which fills the ticket or session cache.
	prime func() error
	// limit caps the measured connections of a slow system (0: every round); its
	// connections are spread evenly over the rounds.
	limit int
	lat   []time.Duration
}

// due reports whether s runs in round i of n.
func (s *system) due(i, n int) bool {
	if s.limit <= 0 || s.limit >= n {
		return true
	}
	every := n / s.limit
	return i%every == 0 && i/every < s.limit
}

// echoTCP is the workload over plain TCP.
func echoTCP(addr string) func() error {
	return func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		return exchange(c, nil)
	}
}

// resumption is what a connection must be: a full handshake, resumed, or either.
type resumption int

const (
	mustBeFull resumption = iota
	mustResume
	eitherWay
)

// check returns an error if resumed is not what r wants.
func (r resumption) check(resumed bool) error {
	if r != eitherWay && resumed != (r == mustResume) {
		return fmt.Errorf("the connection resumed=%v, want %v", resumed, r == mustResume)
	}
	return nil
}

// echoTLS is the workload over TLS 1.3.
func echoTLS(addr string, cfg *tls.Config, want resumption) func() error {
	return func() error {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		return exchange(c, func() error { return want.check(c.ConnectionState().DidResume) })
	}
}

// echoNetauth is the workload over netauth.
func echoNetauth(addr string, cfg *netauth.Config, want resumption) func() error {
	return func() error {
		c, err := netauth.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		return exchange(c, func() error { return want.check(c.Identity().Resumed) })
	}
}

// exchange sends msgSize bytes on c, reads as many back, checks them (and runs check, if
// set) and closes c.
func exchange(c net.Conn, check func() error) error {
	defer c.Close()
	var req, resp [msgSize]byte
	for i := range req {
		req[i] = byte(i)
	}
	if _, err := c.Write(req[:]); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !bytes.Equal(req[:], resp[:]) {
		return errors.New("the reply differs from the request")
	}
	if check != nil {
		if err := check(); err != nil {
			return err
		}
	}
	return c.Close()
}

// roundRobin runs warm rounds unmeasured and then n measured rounds. Each round runs every
// due system once, starting with a different one each round, so that drift and interference
// from the rest of the machine hit all systems alike.
func roundRobin(systems []*system, warm, n int, tick func(i int)) error {
	for _, s := range systems {
		if s.prime != nil {
			if err := s.prime(); err != nil {
				return fmt.Errorf("%s (first connection): %w", s.label, err)
			}
		}
	}
	for i := range warm {
		for k := range systems {
			s := systems[(i+k)%len(systems)]
			if s.limit > 0 && i >= 2 {
				continue // slow systems warm up twice
			}
			if err := s.op(); err != nil {
				return fmt.Errorf("%s (warm-up): %w", s.label, err)
			}
		}
	}
	for i := range n {
		for k := range systems {
			s := systems[(i+k)%len(systems)]
			if !s.due(i, n) {
				continue
			}
			t0 := time.Now()
			if err := s.op(); err != nil {
				return fmt.Errorf("%s: %w", s.label, err)
			}
			s.lat = append(s.lat, time.Since(t0))
		}
		tick(i + 1)
	}
	return nil
}

// latency runs the paper's Table 3 workload against every system that can run here.
func (r *run) latency() error {
	var systems []*system
	add := func(name, label string, op func() error, limit int) {
		systems = append(systems, &system{name: name, label: label, op: op, limit: limit})
	}
	primed := func(prime func() error) { systems[len(systems)-1].prime = prime }
	add("tcp", "plain TCP (the limit)", echoTCP(r.srv.addrs.TCP), 0)

	uid, gid := os.Getuid(), os.Getgid()
	if r.root {
		acct, err := policy.LookupAccount(workerAccount)
		if err != nil {
			return fmt.Errorf("the fork-setuid server changes to %s: %w", workerAccount, err)
		}
		uid, gid = int(acct.UID), int(acct.GID)
	}
	fs, skip, err := startForkSetuid(r.dir, uid, gid)
	if err != nil {
		return err
	}
	if skip != "" {
		r.skip("fork-setuid server (the ratios to it)", skip)
	} else {
		defer fs.stop()
		label := "fork-setuid (C, setuid " + workerAccount + ")"
		if !r.root {
			label = "fork-setuid (C, own uid: not root)"
		}
		add("fork-setuid", label, echoTCP(fs.addr), 0)
	}

	tlsFull, tlsRes := r.m.tlsClientConfig(false), r.m.tlsClientConfig(true)
	add("tls-full", "TLS 1.3 mutual, full", echoTLS(r.srv.addrs.TLS, tlsFull, mustBeFull), 0)
	add("tls-resumed", "TLS 1.3 mutual, resumed", echoTLS(r.srv.addrs.TLS, tlsRes, mustResume), 0)
	primed(echoTLS(r.srv.addrs.TLS, tlsRes, eitherWay))

	o, skip, err := startOpenSSH(r.dir, r.root)
	if err != nil {
		return err
	}
	if skip != "" {
		r.skip("OpenSSH rows", skip)
	} else {
		defer o.stop()
		add("ssh", "OpenSSH login + command", o.op(false), r.n.sshLogins)
		add("ssh-mux", "OpenSSH, multiplexed session", o.op(true), r.n.sshMux)
	}

	add("netauth-full", "netauth in-process server, full", echoNetauth(r.srv.addrs.Netauth, r.clientConfig(false), mustBeFull), 0)
	res := r.clientConfig(true)
	add("netauth-resumed", "netauth in-process server, resumed", echoNetauth(r.srv.addrs.Netauth, res, mustResume), 0)
	primed(echoNetauth(r.srv.addrs.Netauth, res, eitherWay))
	if r.d != nil {
		d := r.d.addrs.Daemon
		add("ubns-first", "netauthd first connection (new worker)", echoNetauth(d["first"], r.clientConfig(false), mustBeFull), 0)
		add("ubns-full", "netauthd full, existing worker", echoNetauth(d["echo"], r.clientConfig(false), mustBeFull), 0)
		res := r.clientConfig(true)
		add("ubns-resumed", "netauthd resumed, existing worker", echoNetauth(d["echo"], res, mustResume), 0)
		primed(echoNetauth(d["echo"], res, eitherWay))
	}

	r.prog.phase(fmt.Sprintf("connect-send-recv %d B, %d systems round-robin", msgSize, len(systems)))
	if err := roundRobin(systems, r.n.warm, r.n.rounds, func(i int) { r.prog.count(i, r.n.rounds) }); err != nil {
		return err
	}
	for _, s := range systems {
		r.rep.Latency = append(r.rep.Latency, LatencyRow{Name: s.name, Label: s.label, Stats: summarize(s.lat)})
	}
	r.rep.ratios()
	return nil
}
