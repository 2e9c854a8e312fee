// SPDX-License-Identifier: Apache-2.0

// Package limits bounds unauthenticated connections, the way OpenSSH's MaxStartups and
// PerSourceMaxStartups do: a cap on the handshakes in progress in total, a cap per source
// (one IPv4 address, or one IPv6 /64 network: what one host or one customer of a provider
// typically holds), and random early drop as the total approaches its cap. A connection that
// is refused a slot should be refused before anything of it is read.
package limits

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// IPv6PrefixLen is the length of the IPv6 prefix counted as one source: a /64 is the smallest
// network a site is normally given, so one host can use every address in it.
const IPv6PrefixLen = 64

// Reasons a connection is refused a slot. Each message says "too many handshakes", so a log
// reader sees one cause with three variants.
var (
	ErrFull      = errors.New("too many handshakes in progress")
	ErrSource    = errors.New("too many handshakes in progress from this source")
	ErrEarlyDrop = errors.New("too many handshakes in progress (random early drop)")
)

// Config sets a Limiter's bounds. The zero Config limits nothing.
type Config struct {
	// MaxPending bounds the handshakes in progress in total ("full" in OpenSSH's
	// start:rate:full). Zero or negative: no total bound.
	MaxPending int

	// PerSource bounds the handshakes in progress from one source: one IPv4 address (also
	// when written as an IPv4-mapped IPv6 address) or one IPv6 /64 network. Zero or negative:
	// no per-source bound. Addresses that are not IP (Unix sockets, pipes) count only against
	// the total.
	PerSource int

	// EarlyDropStart and EarlyDropRate are OpenSSH's "start" and "rate": once EarlyDropStart
	// handshakes are in progress, a new connection is refused with probability
	// EarlyDropRate percent, rising linearly to 100% at MaxPending. EarlyDropStart zero or
	// negative, or not below MaxPending, disables early drop.
	EarlyDropStart int
	EarlyDropRate  int
}

// Limiter hands out handshake slots. It is safe for concurrent use.
type Limiter struct {
	cfg  Config
	intn func(n int) int // random source for early drop (tests replace it)

	mu     sync.Mutex
	total  int
	source map[netip.Prefix]int
}

// New returns a Limiter with the bounds in cfg.
func New(cfg Config) *Limiter {
	if cfg.EarlyDropRate < 0 {
		cfg.EarlyDropRate = 0
	}
	if cfg.EarlyDropRate > 100 {
		cfg.EarlyDropRate = 100
	}
	return &Limiter{cfg: cfg, intn: rand.IntN, source: make(map[netip.Prefix]int)}
}

// Acquire takes a slot for a connection from addr. If ok, the caller must call release once
// the handshake is over (calling it again does nothing); if not, the connection should be
// refused as overloaded.
func (l *Limiter) Acquire(addr net.Addr) (release func(), ok bool) {
	release, err := l.Admit(addr)
	return release, err == nil
}

// Admit is Acquire saying why a slot is refused: ErrFull, ErrSource or ErrEarlyDrop.
func (l *Limiter) Admit(addr net.Addr) (release func(), err error) {
	src, isIP := Source(addr)
	perSource := isIP && l.cfg.PerSource > 0
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.cfg.MaxPending > 0 && l.total >= l.cfg.MaxPending:
		return nil, ErrFull
	case perSource && l.source[src] >= l.cfg.PerSource:
		return nil, ErrSource
	case l.dropLocked():
		return nil, ErrEarlyDrop
	}
	l.total++
	if perSource {
		l.source[src]++
	}
	var done atomic.Bool
	return func() {
		if !done.CompareAndSwap(false, true) {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		if perSource {
			if l.source[src]--; l.source[src] <= 0 {
				delete(l.source, src)
			}
		}
	}, nil
}

// dropLocked decides random early drop for one more connection, as OpenSSH's drop_connection
// does: with start <= pending < full, the probability is rate% at start rising linearly to
// 100% at full. Callers hold l.mu.
func (l *Limiter) dropLocked() bool {
	start, full := l.cfg.EarlyDropStart, l.cfg.MaxPending
	if start <= 0 || full <= 0 || start >= full || l.total < start {
		return false
	}
	rate := l.cfg.EarlyDropRate
	p := rate + (100-rate)*(l.total-start)/(full-start)
	return l.intn(100) < p
}

// Pending returns the number of slots taken.
func (l *Limiter) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// PendingFrom returns the number of slots taken by addr's source (0 for an address that is
// not IP, or without a per-source bound).
func (l *Limiter) PendingFrom(addr net.Addr) int {
	src, ok := Source(addr)
	if !ok {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.source[src]
}

// Source returns the prefix a connection from addr counts against: the /32 of an IPv4
// address (also when written as an IPv4-mapped IPv6 address) or the /64 of an IPv6 address,
// without zone. ok is false if addr is not an IP address.
func Source(addr net.Addr) (prefix netip.Prefix, ok bool) {
	var ip netip.Addr
	switch a := addr.(type) {
	case nil:
		return netip.Prefix{}, false
	case *net.TCPAddr:
		if a == nil {
			return netip.Prefix{}, false
		}
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		if a == nil {
			return netip.Prefix{}, false
		}
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.IPAddr:
		if a == nil {
			return netip.Prefix{}, false
		}
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		}
	}
	return SourceOf(ip)
}

// SourceOf is Source for an address already parsed.
func SourceOf(ip netip.Addr) (prefix netip.Prefix, ok bool) {
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap().WithZone("")
	bits := IPv6PrefixLen
	if ip.Is4() {
		bits = 32
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p, true
}

// Throttle lets an event through at most once per interval and counts those it held back, so
// that a flood of refused connections makes one log line a second, not one per connection.
type Throttle struct {
	Every time.Duration

	mu   sync.Mutex
	last time.Time
	held int
}

// Allow reports whether the event at now may be reported, and if so how many were held back
// since the last one reported.
func (t *Throttle) Allow(now time.Time) (ok bool, held int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.IsZero() && now.Sub(t.last) < t.Every {
		t.held++
		return false, 0
	}
	t.last = now
	held, t.held = t.held, 0
	return true, held
}
