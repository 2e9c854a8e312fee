// SPDX-License-Identifier: Apache-2.0

package limits

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func tcp(s string) net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s))
}

// otherAddr is a net.Addr of a type Source does not know, written like host:port.
type otherAddr string

func (a otherAddr) Network() string { return "other" }
func (a otherAddr) String() string  { return string(a) }

func TestSource(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string // "" for not IP
	}{
		{tcp("192.0.2.7:22"), "192.0.2.7/32"},
		{tcp("[::ffff:192.0.2.7]:22"), "192.0.2.7/32"}, // IPv4-mapped: the same source
		{tcp("[2001:db8:1:2:3:4:5:6]:22"), "2001:db8:1:2::/64"},
		{tcp("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1"), "2001:db8:1:2::/64"},
		{tcp("[2001:db8:1:3::1]:1"), "2001:db8:1:3::/64"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"}, "fe80::/64"},
		{&net.UDPAddr{IP: net.ParseIP("10.1.2.3")}, "10.1.2.3/32"},
		{&net.IPAddr{IP: net.ParseIP("::1")}, "::/64"},
		{otherAddr("198.51.100.1:443"), "198.51.100.1/32"},
		{otherAddr("[2001:db8::9%lo]:443"), "2001:db8::/64"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, ""},
		{&net.TCPAddr{}, ""}, // no IP
		{(*net.TCPAddr)(nil), ""},
		{nil, ""},
		{otherAddr("pipe"), ""},
	}
	for _, tt := range tests {
		p, ok := Source(tt.addr)
		got := ""
		if ok {
			got = p.String()
		}
		if got != tt.want {
			t.Errorf("Source(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestTotalAndPerSource(t *testing.T) {
	l := New(Config{MaxPending: 5, PerSource: 2})
	a1, a2 := tcp("192.0.2.1:1000"), tcp("192.0.2.1:1001") // one source, two connections
	var releases []func()
	for _, a := range []net.Addr{a1, a2} {
		r, err := l.Admit(a)
		if err != nil {
			t.Fatalf("slot %v: %v", a, err)
		}
		releases = append(releases, r)
	}
	if _, err := l.Admit(tcp("192.0.2.1:1002")); !errors.Is(err, ErrSource) {
		t.Fatalf("third from one source: %v, want ErrSource", err)
	}
	// Another address of the same IPv6 /64 is the same source; another /64 is not.
	for _, s := range []string{"[2001:db8:0:1::1]:1", "[2001:db8:0:1::2]:1"} {
		r, err := l.Admit(tcp(s))
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	if _, err := l.Admit(tcp("[2001:db8:0:1:ffff::3]:1")); !errors.Is(err, ErrSource) {
		t.Fatalf("third from one /64: %v, want ErrSource", err)
	}
	r, err := l.Admit(tcp("[2001:db8:0:2::1]:1"))
	if err != nil {
		t.Fatalf("another /64: %v", err)
	}
	releases = append(releases, r)
	if n := l.Pending(); n != 5 {
		t.Fatalf("Pending = %d, want 5", n)
	}
	if _, err := l.Admit(tcp("203.0.113.9:1")); !errors.Is(err, ErrFull) {
		t.Fatalf("sixth in total: %v, want ErrFull", err)
	}
	// Releasing twice gives back one slot only.
	releases[0]()
	releases[0]()
	if n, m := l.Pending(), l.PendingFrom(a1); n != 4 || m != 1 {
		t.Fatalf("after one release: pending %d, from the source %d; want 4 and 1", n, m)
	}
	if _, ok := l.Acquire(tcp("192.0.2.1:1003")); !ok {
		t.Fatal("the released slot was not given again")
	}
	for _, r := range releases[1:] {
		r()
	}
	if n := l.Pending(); n != 1 {
		t.Fatalf("Pending = %d after releasing all but one, want 1", n)
	}
	if len(l.source) != 1 {
		t.Fatalf("%d sources remembered, want 1: entries of finished sources must be dropped", len(l.source))
	}
}

// TestNonIPCountsOnlyAgainstTotal: Unix-socket peers share no per-source bound.
func TestNonIPCountsOnlyAgainstTotal(t *testing.T) {
	l := New(Config{MaxPending: 3, PerSource: 1})
	u := &net.UnixAddr{Name: "@", Net: "unix"}
	for i := range 3 {
		if _, ok := l.Acquire(u); !ok {
			t.Fatalf("unix connection %d refused", i)
		}
	}
	if _, err := l.Admit(u); !errors.Is(err, ErrFull) {
		t.Fatalf("fourth: %v, want ErrFull", err)
	}
}

func TestZeroConfigLimitsNothing(t *testing.T) {
	l := New(Config{})
	for range 10000 {
		if _, ok := l.Acquire(tcp("192.0.2.1:1")); !ok {
			t.Fatal("refused without any bound")
		}
	}
}

// TestEarlyDrop checks OpenSSH's start:rate:full curve with a fixed random draw: with 10:30:20
// the probability is 30% at 10 pending, 65% at 15, 100% at 20.
func TestEarlyDrop(t *testing.T) {
	l := New(Config{MaxPending: 20, EarlyDropStart: 10, EarlyDropRate: 30})
	var draw int
	l.intn = func(n int) int {
		if n != 100 {
			t.Fatalf("intn(%d), want percent", n)
		}
		return draw
	}
	fill := func(n int) {
		for l.Pending() < n {
			draw = 99
			if _, err := l.Admit(tcp("192.0.2.1:1")); err != nil {
				t.Fatalf("filling to %d: %v", n, err)
			}
		}
	}
	tests := []struct {
		pending, draw int
		drop          bool
	}{
		{9, 0, false}, // below start: never
		{10, 29, true},
		{10, 30, false},
		{15, 64, true},
		{15, 65, false},
		{19, 92, true}, // 30 + 70*9/10 = 93
		{19, 93, false},
	}
	for _, tt := range tests {
		fill(tt.pending)
		draw = tt.draw
		r, err := l.Admit(tcp("192.0.2.2:1"))
		if dropped := errors.Is(err, ErrEarlyDrop); dropped != tt.drop {
			t.Errorf("pending %d, draw %d: %v, want drop %v", tt.pending, tt.draw, err, tt.drop)
		}
		if r != nil {
			r()
		}
	}
	fill(20)
	draw = 99
	if _, err := l.Admit(tcp("192.0.2.2:1")); !errors.Is(err, ErrFull) {
		t.Fatalf("at full: %v, want ErrFull", err)
	}
}

// TestEarlyDropRandom: with the real random source, about rate% are dropped at start.
func TestEarlyDropRandom(t *testing.T) {
	l := New(Config{MaxPending: 100, EarlyDropStart: 1, EarlyDropRate: 30})
	hold, _ := l.Acquire(tcp("192.0.2.1:1"))
	defer hold()
	dropped := 0
	const n = 10000
	for range n {
		r, ok := l.Acquire(tcp("192.0.2.2:1"))
		if !ok {
			dropped++
			continue
		}
		r()
	}
	if dropped < n*25/100 || dropped > n*35/100 {
		t.Fatalf("%d of %d dropped at the start of early drop, want about 30%%", dropped, n)
	}
}

func TestConcurrent(t *testing.T) {
	l := New(Config{MaxPending: 50, PerSource: 5, EarlyDropStart: 25, EarlyDropRate: 10})
	var wg sync.WaitGroup
	var mu sync.Mutex
	maxSeen := 0
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := tcp(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(g % 4)}), 1).String())
			for range 2000 {
				r, ok := l.Acquire(a)
				if !ok {
					continue
				}
				if n := l.PendingFrom(a); n > 5 {
					mu.Lock()
					maxSeen = max(maxSeen, n)
					mu.Unlock()
				}
				r()
			}
		}()
	}
	wg.Wait()
	if maxSeen > 0 {
		t.Fatalf("a source held %d slots, bound 5", maxSeen)
	}
	if n := l.Pending(); n != 0 || len(l.source) != 0 {
		t.Fatalf("after all released: %d pending, %d sources", n, len(l.source))
	}
}

func TestThrottle(t *testing.T) {
	th := Throttle{Every: time.Second}
	t0 := time.Unix(1000, 0)
	if ok, held := th.Allow(t0); !ok || held != 0 {
		t.Fatalf("first: %v %d", ok, held)
	}
	for i := range 5 {
		if ok, _ := th.Allow(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatalf("event %d within the interval let through", i)
		}
	}
	if ok, held := th.Allow(t0.Add(time.Second)); !ok || held != 5 {
		t.Fatalf("after the interval: %v, held %d; want true, 5", ok, held)
	}
}

// FuzzSource: the source of any IP address is the masked /32 or /64 containing it, the same
// whichever way the address is written (bytes, IPv4-mapped, string, with a zone); anything
// else is not IP.
func FuzzSource(f *testing.F) {
	f.Add([]byte{192, 0, 2, 1}, "192.0.2.1:22")
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1}, "[::ffff:192.0.2.1]:22")
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, "[2001:db8:1:2::1%eth0]:0")
	f.Add([]byte{}, "pipe")
	f.Add([]byte{1, 2, 3}, "/tmp/sock")
	f.Add([]byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "[fe80::1%25lo]:65535")
	f.Fuzz(func(t *testing.T, raw []byte, text string) {
		check := func(ip netip.Addr, p netip.Prefix, ok bool) {
			t.Helper()
			if !ok {
				t.Fatalf("%v: not counted as a source", ip)
			}
			u := ip.Unmap().WithZone("")
			want := IPv6PrefixLen
			if u.Is4() {
				want = 32
			}
			if p.Bits() != want || p != p.Masked() || !p.Contains(u) {
				t.Fatalf("%v: source %v, want the masked /%d containing it", ip, p, want)
			}
			if p2, ok2 := SourceOf(p.Addr()); !ok2 || p2 != p {
				t.Fatalf("%v: the source of the source's address is %v", p, p2)
			}
			// The same address written as IPv4-mapped IPv6 is the same source.
			if u.Is4() {
				if p2, _ := SourceOf(netip.AddrFrom16(u.As16())); p2 != p {
					t.Fatalf("%v: mapped form gives %v, plain %v", ip, p2, p)
				}
			}
		}
		ip, isIP := netip.AddrFromSlice(raw)
		p, ok := Source(&net.TCPAddr{IP: raw, Port: 1})
		if ok != isIP {
			t.Fatalf("Source(% x) ok=%v, IP=%v", raw, ok, isIP)
		}
		if isIP {
			check(ip, p, ok)
			if p2, _ := Source(otherAddr(netip.AddrPortFrom(ip, 7).String())); p2 != p {
				t.Fatalf("%v: as text %v, as bytes %v", ip, p2, p)
			}
		}
		// Any text: never panics; if it is an address, the same invariants.
		p, ok = Source(otherAddr(text))
		if ap, err := netip.ParseAddrPort(text); err == nil {
			check(ap.Addr(), p, ok)
		} else if ok {
			t.Fatalf("%q is not host:port but got source %v", text, p)
		}
		if a, err := netip.ParseAddr(text); err == nil {
			p, ok := SourceOf(a)
			check(a, p, ok)
			if p2, _ := Source(&net.TCPAddr{IP: a.AsSlice(), Zone: a.Zone()}); p2 != p {
				t.Fatalf("%v: as TCPAddr %v, parsed %v", a, p2, p)
			}
		}
	})
}
