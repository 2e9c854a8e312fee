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
	"sync/atomic"
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
	// seen, if set, counts the netauth connections op makes, resumed and full.
	seen *tally
	// client says how a netauth row's client signs and keeps tickets (clientKind).
	client string
	lat    []time.Duration
}

// tally counts a netauth row's connections by kind.
type tally struct{ resumed, full atomic.Int64 }

func (t *tally) count(resumed bool) {
	if t == nil {
		return
	}
	if resumed {
		t.resumed.Add(1)
	} else {
		t.full.Add(1)
	}
}

func (t *tally) reset() {
	if t != nil {
		t.resumed.Store(0)
		t.full.Store(0)
	}
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

// clientKind says how a client with cfg signs and keeps its tickets: "agent" (through the
// agent, netauth.Dial's default path) or "in-process signer" (with a memory cache, or none).
func clientKind(cfg *netauth.Config) string {
	if cfg.Signer == nil && cfg.TicketCache == nil {
		return "agent"
	}
	return "in-process signer"
}

// echoNetauth is the workload over netauth; seen (if not nil) counts the connections.
func echoNetauth(addr string, cfg *netauth.Config, want resumption, seen *tally) func() error {
	return func() error {
		c, err := netauth.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		return exchange(c, func() error {
			resumed := c.Identity().Resumed
			seen.count(resumed)
			return want.check(resumed)
		})
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
	for _, s := range systems {
		s.seen.reset() // count the measured connections only
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

// latency runs the paper's Table 3 workload against every system that can run here, and the
// floors' parts in the same rounds.
func (r *run) latency() error {
	var systems []*system
	add := func(name, label string, op func() error, limit int) {
		systems = append(systems, &system{name: name, label: label, op: op, limit: limit})
	}
	primed := func(prime func() error) { systems[len(systems)-1].prime = prime }
	// netauthRow adds a netauth row: its connections are counted by kind and checked by want.
	netauthRow := func(name, label, addr string, cfg *netauth.Config, want resumption) {
		seen := &tally{}
		add(name, label, echoNetauth(addr, cfg, want, seen), 0)
		systems[len(systems)-1].seen = seen
		systems[len(systems)-1].client = clientKind(cfg)
		if want == mustResume {
			primed(echoNetauth(addr, cfg, eitherWay, nil))
		}
	}
	add("tcp", "plain TCP (the limit)", echoTCP(r.srv.addrs.TCP), 0)
	pk, err := newPKOps(r.m.hostKey)
	if err != nil {
		return err
	}
	add("tcp-1rt", "floor part: plain TCP + 1 round trip", echoTwice(r.srv.addrs.TCPEcho), 0)
	add("pk-resumed", "floor part: resumed handshake's public-key ops (2 X25519), in process", pk.resumed, 0)
	add("pk-full", "floor part: full handshake's public-key ops, in process", pk.full, 0)

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

	na := r.srv.addrs.Netauth
	netauthRow("netauth-full", "netauth in-process server, full, through the agent", na, r.agentConfig(true), mustBeFull)
	netauthRow("netauth-resumed", "netauth in-process server, resumed, through the agent", na, r.agentConfig(false), mustResume)
	netauthRow("netauth-full-memory", "netauth in-process server, full, in-process signer", na, r.memoryConfig(false), mustBeFull)
	netauthRow("netauth-resumed-memory", "netauth in-process server, resumed, in-process signer, memory cache", na, r.memoryConfig(true), mustResume)
	if r.d != nil {
		d := r.d.addrs.Daemon
		netauthRow("ubns-first", "netauthd first connection (new worker), through the agent", d["first"], r.agentConfig(true), mustBeFull)
		netauthRow("ubns-full", "netauthd full, existing worker, through the agent", d["echo"], r.agentConfig(true), mustBeFull)
		netauthRow("ubns-resumed", "netauthd resumed, existing worker, through the agent", d["echo"], r.agentConfig(false), mustResume)
		netauthRow("ubns-resumed-memory", "netauthd resumed, existing worker, in-process signer, memory cache", d["echo"], r.memoryConfig(true), mustResume)
	}

	r.prog.phase(fmt.Sprintf("connect-send-recv %d B, %d systems round-robin", msgSize, len(systems)))
	if err := roundRobin(systems, r.n.warm, r.n.rounds, func(i int) { r.prog.count(i, r.n.rounds) }); err != nil {
		return err
	}
	for _, s := range systems {
		row := LatencyRow{Name: s.name, Label: s.label, Stats: summarize(s.lat)}
		if s.seen != nil {
			row.Resumed, row.Full = int(s.seen.resumed.Load()), int(s.seen.full.Load())
		}
		row.Client = s.client
		r.rep.Latency = append(r.rep.Latency, row)
	}
	r.rep.addFloors()
	r.rep.ratios()
	return nil
}
