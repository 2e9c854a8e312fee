// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/policy"
)

// benchSize is the request and reply size of the paper's Table 3 workload.
const benchSize = 128

// benchSystem is one server the benchmark connects to.
type benchSystem struct {
	name string
	op   func() error // connect, send benchSize bytes, receive benchSize bytes, close
	lat  []time.Duration
}

func echoOverTCP(addr string) func() error {
	req, resp := make([]byte, benchSize), make([]byte, benchSize)
	return func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write(req); err != nil {
			return err
		}
		_, err = io.ReadFull(c, resp)
		return err
	}
}

func echoOverNetauth(addr string, cfg *netauth.Config) func() error {
	req, resp := make([]byte, benchSize), make([]byte, benchSize)
	return func() error {
		c, err := netauth.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write(req); err != nil {
			return err
		}
		_, err = io.ReadFull(c, resp)
		return err
	}
}

// startForkSetuid compiles and starts the C fork-setuid server, serving as uid/gid.
func startForkSetuid(b *testing.B, dir string, uid, gid uint32) string {
	bin := filepath.Join(dir, "forksetuid")
	if out, err := exec.Command("cc", "-O2", "-o", bin, "../bench/csrc/forksetuid.c").CombinedOutput(); err != nil {
		b.Fatalf("compiling the fork-setuid baseline: %v: %s", err, out)
	}
	portFile := filepath.Join(dir, "port")
	cmd := exec.Command(bin, portFile, strconv.Itoa(int(uid)), strconv.Itoa(int(gid)), strconv.Itoa(benchSize))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 500; i++ {
		if data, err := os.ReadFile(portFile); err == nil && strings.HasSuffix(string(data), "\n") {
			return "127.0.0.1:" + strings.TrimSpace(string(data))
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("fork-setuid server did not start")
	return ""
}

// startTCPEcho serves the workload with a plain TCP echo server: the limit.
func startTCPEcho(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, benchSize)
				if _, err := io.ReadFull(c, buf); err == nil {
					c.Write(buf)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// cachesOff runs op with the monitor's caches off.
func cachesOff(d *Daemon, op func() error) func() error {
	return func() error {
		d.caches.off.Store(true)
		defer d.caches.off.Store(false)
		return op()
	}
}

// BenchmarkUBNS is the paper's Table 3 workload (connect, send 128 bytes, receive 128 bytes,
// close) against, in one run and alternating round-robin so drift hits all alike: a plain
// TCP server, a C accept-fork-setuid server, and netauthd with the first connection of a
// user (a new worker and a full handshake), a full handshake to an existing worker, and a
// resumed connection to an existing worker, the last two also with the monitor's caches off
// (the "-nocache" rows). Each round runs every system once, in a random order; it reports
// medians and p99 in microseconds and each median's ratio to the fork-setuid server.
//
//	sudo go test -run '^$' -bench UBNS -benchtime 300x ./internal/daemon/
func BenchmarkUBNS(b *testing.B) {
	tb := newTestbed(b, `service first {
    listen 127.0.0.1:0
    mode per-connection
    program WORKER
    args echo
    users netauth-alice
    max-workers 100000
}

service echo {
    listen 127.0.0.1:0
    program WORKER
    args echo
    users netauth-alice
    idle-timeout 1h
}
`)
	// The worker program is the daemon's built-in worker command, as netauthd's echo is: a
	// first connection is served by a spare worker (spare-workers, default 1).
	tb.useBuiltinWorker()
	go tb.d.fillSpares()
	alice, err := policy.LookupAccount("netauth-alice")
	if err != nil {
		b.Fatal(err)
	}
	full := tb.config("netauth-alice")
	full.DisableResumption = true
	resumed := tb.config("netauth-alice")
	systems := []*benchSystem{
		{name: "tcp", op: echoOverTCP(startTCPEcho(b))},
		{name: "fork-setuid", op: echoOverTCP(startForkSetuid(b, tb.dir, alice.UID, alice.GID))},
		{name: "netauth-first", op: echoOverNetauth(tb.addr("first"), full)},
		{name: "netauth-full", op: echoOverNetauth(tb.addr("echo"), full)},
		{name: "netauth-resumed", op: echoOverNetauth(tb.addr("echo"), resumed)},
		// The same with the monitor's caches of key files and user database answers off: every
		// lookup reads the files and asks the user database, as before it had them.
		{name: "netauth-full-nocache", op: cachesOff(tb.d, echoOverNetauth(tb.addr("echo"), full))},
		{name: "netauth-resumed-nocache", op: cachesOff(tb.d, echoOverNetauth(tb.addr("echo"), resumed))},
	}
	// The key files were written just now: the caches keep only what was read at least
	// keys.RacyWindow after a file's last change.
	time.Sleep(keys.RacyWindow)
	// Warm up: start the per-user worker, fill the ticket cache, page everything in.
	for range 20 {
		for _, s := range systems {
			if err := s.op(); err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// In an order of its own each round: what runs before a system (a worker exiting
		// after netauth-first, say) does not weigh on one of them only.
		for _, j := range rand.Perm(len(systems)) {
			s := systems[j]
			start := time.Now()
			if err := s.op(); err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
			s.lat = append(s.lat, time.Since(start))
		}
	}
	b.StopTimer()
	base := median(systems[1].lat)
	for _, s := range systems {
		m := median(s.lat)
		b.ReportMetric(us(m), s.name+"-median-us")
		b.ReportMetric(us(percentile(s.lat, 99)), s.name+"-p99-us")
		b.ReportMetric(float64(m)/float64(base), s.name+"/fork-setuid")
		b.Logf("%-16s median %8.1f us  p99 %8.1f us  %.2fx fork-setuid", s.name, us(m), us(percentile(s.lat, 99)), float64(m)/float64(base))
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func median(d []time.Duration) time.Duration { return percentile(d, 50) }

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}
