// SPDX-License-Identifier: Apache-2.0

//go:build unix

package netauth

// Benchmarks of netauth against its baselines, measured in the same run (docs/BENCHMARKS.md
// explains the methods and records results). They only run with -bench:
//
//	go test -run XXX -bench . -count 5 .
//
//   - BenchmarkServerHandshakeCPU: server CPU per handshake (full, resumed), with the client's
//     messages recorded beforehand so that only the server runs while the CPU clock runs.
//   - BenchmarkServerProcessCPU: CPU of a separate server process per connection over TCP
//     (plain TCP, netauth full, netauth resumed), read from the server process's getrusage.
//   - BenchmarkConnectCompare: 128-byte connect-send-recv for plain TCP, TLS 1.3 mutual
//     (full, resumed) and netauth (full, resumed) alternated in one loop; medians, p99 and
//     ratios to plain TCP.
//   - BenchmarkConnect: the same, one system per sub-benchmark (for ns/op, allocs, profiles).
//   - BenchmarkBulk and BenchmarkBulkCompare: one-way bulk transfer (64 MiB per op, 256 KiB
//     writes and reads) over plain TCP, TLS 1.3 (AES-GCM) and netauth.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/kem"
	"ubns.dev/netauth/internal/keys"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/x25519"
)

// ---------------------------------------------------------------------------------------------
// CPU accounting

// processCPU returns the user+system CPU time consumed so far by this process (all threads,
// including the garbage collector's and the kernel's work in system calls).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func usPerOp(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }

// ---------------------------------------------------------------------------------------------
// 1. Server CPU per handshake, client messages recorded in advance

// benchSigner signs authenticators in process (what the agent would do).
type benchSigner struct{ s ssh.Signer }

func (k benchSigner) PublicKey() ssh.PublicKey { return k.s.PublicKey() }
func (k benchSigner) SignStatement(stmt []byte) ([]byte, error) {
	return keys.Sign(k.s, handshake.Namespace, stmt)
}

// recordingConn is the client end of a net.Pipe that remembers every Write: each Flush of the
// client's record layer is one Write, so each element is one client flight.
type recordingConn struct {
	net.Conn
	flights [][]byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.flights = append(c.flights, bytes.Clone(p))
	return c.Conn.Write(p)
}

// scriptConn replays recorded client flights to a server: each Read returns (the rest of)
// the next flight, as TCP would deliver it; writes are discarded. Nothing blocks and no other
// goroutine runs, so the server's CPU is all the process spends.
type scriptConn struct {
	flights [][]byte
	written int
}

func (c *scriptConn) Read(p []byte) (int, error) {
	for len(c.flights) > 0 && len(c.flights[0]) == 0 {
		c.flights = c.flights[1:]
	}
	if len(c.flights) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.flights[0])
	c.flights[0] = c.flights[0][n:]
	return n, nil
}

func (c *scriptConn) Write(p []byte) (int, error)      { c.written += len(p); return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// transcript is one recorded handshake: the seed of the server's ephemeral key and, for a full
// handshake, the ML-KEM-768 shared secret and ciphertext of the server's encapsulation (the
// client's second flight depends on both, through the handshake hash), and the client's
// flights.
type transcript struct {
	seed       [32]byte
	kemShared  []byte
	kemCT      []byte
	flights    [][]byte
	clientSent int // bytes of all flights
}

// hsBench is a server identity with a ticket key set, a user, and the client configuration.
type hsBench struct {
	hostKey ed25519.PrivateKey
	hostPub ssh.PublicKey
	user    benchSigner
	keys    StaticKeys
	tickets *handshake.TicketKeys
	session []byte // a marshaled session to resume
}

func newHSBench(b *testing.B) *hsBench {
	_, hk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	u := newTestUser(b, "alice")
	h := &hsBench{hostKey: hk, user: benchSigner{u.signer}, keys: StaticKeys{"alice": {u.signer.PublicKey()}},
		tickets: handshake.NewTicketKeys(time.Hour, rand.Reader)}
	h.hostPub, _ = ssh.NewPublicKey(hk.Public())
	tr, sess, err := h.record(nil)
	if err != nil {
		b.Fatal(err)
	}
	if sess == nil || len(tr.flights) != 2 {
		b.Fatalf("full handshake recorded %d flights, session %v", len(tr.flights), sess != nil)
	}
	h.session = sess.Marshal()
	return h
}

// serverConfig is the server side as Listener configures it; ephemeral supplies its key.
func (h *hsBench) serverConfig(ephemeral func() (x25519.KeyPair, error), replay bool) *handshake.ServerConfig {
	cfg := &handshake.ServerConfig{
		HostKey: h.hostKey,
		Service: "bench",
		Tickets: h.tickets,
		Eligible: func(res *handshake.Result) error {
			return handshake.FindKey(context.Background(), h.keys, res)
		},
		Authorize: func(*handshake.Result) (any, error) { return nil, nil },
		Ephemeral: ephemeral,
	}
	if replay {
		cfg.Replay = handshake.NewReplayCache(0)
	}
	return cfg
}

// record runs one handshake over net.Pipe (resuming session when not nil) and returns the
// client's flights and, for a full handshake, the session the client would cache.
func (h *hsBench) record(session []byte) (transcript, *handshake.Session, error) {
	var tr transcript
	_, _ = rand.Read(tr.seed[:])
	seed := tr.seed
	scfg := h.serverConfig(func() (x25519.KeyPair, error) { return x25519.Generate(bytes.NewReader(seed[:])) }, false)
	scfg.Encapsulate = func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		shared, ct := ek.Encapsulate()
		tr.kemShared, tr.kemCT = bytes.Clone(shared), bytes.Clone(ct)
		return shared, ct, nil
	}
	ccfg := &handshake.ClientConfig{
		User:         "alice",
		Signer:       h.user,
		CheckHostKey: func(ssh.PublicKey, string) error { return nil },
		Ephemeral:    func() (x25519.KeyPair, error) { return x25519.Generate(rand.Reader) },
	}
	if session != nil {
		s, err := handshake.ParseSession(session)
		if err != nil {
			return tr, nil, err
		}
		ccfg.Session = s
	}
	cp, sp := net.Pipe()
	defer cp.Close()
	defer sp.Close()
	rec := &recordingConn{Conn: cp}
	var srvErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		src := record.NewConn(sp)
		_, srvErr = handshake.RunServer(src, scfg)
		_ = src.Flush()
	}()
	rc := record.NewConn(rec)
	hc, err := handshake.RunClient(rc, ccfg)
	if err != nil {
		return tr, nil, fmt.Errorf("recording client: %w", err)
	}
	var sess *handshake.Session
	if hc.Pending() {
		if sess, err = hc.ReadVerdict(time.Now()); err != nil {
			return tr, nil, fmt.Errorf("recording verdict: %w", err)
		}
	}
	<-done
	if srvErr != nil {
		return tr, nil, fmt.Errorf("recording server: %w", srvErr)
	}
	if (session != nil) != hc.Result.Resumed {
		return tr, nil, fmt.Errorf("recorded handshake resumed=%v", hc.Result.Resumed)
	}
	tr.flights = rec.flights
	for _, f := range tr.flights {
		tr.clientSent += len(f)
	}
	return tr, sess, nil
}

// recordMany records n handshakes on all cores.
func (h *hsBench) recordMany(b *testing.B, n int, resume bool) []transcript {
	out := make([]transcript, n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				var s []byte
				if resume {
					s = h.session
				}
				out[i], _, errs[w] = h.record(s)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkServerHandshakeCPU measures the CPU the server spends on one handshake. The
// client's messages are recorded before the timer starts (the server's ephemeral key is
// derived from a recorded seed, and its ML-KEM-768 encapsulation's outputs are recorded, which
// fixes the transcript), then the server handshakes against the recording through an
// in-memory connection: while the clock runs only server code runs, so the process's CPU time
// (getrusage RUSAGE_SELF: all threads, garbage collector included) divided by b.N is the
// server's CPU per handshake. A full handshake's encapsulation is run for real in the timed
// loop (crypto/mlkem draws its own randomness) and its outputs discarded for the recorded
// ones: the CPU is the real encapsulation's, the transcript the recorded one.
//
// "keygen-inline" derives the server's ephemeral key on the critical path (the same key
// generation the key pool runs in the background), so its CPU is counted;
// "keygen-pooled" hands over a key generated before the timer, the critical path when the
// pool keeps up. Each op includes record.NewConn, the key lookup (StaticKeys), the replay
// cache, the ticket (sealed on a full handshake, opened on a resumed one) and the result.
//
// "floor/full" and "floor/resumed" run only the public-key operations a server handshake
// cannot avoid (ephemeral key generation and one X25519; for a full handshake also the
// host's Ed25519 signature and the verification of the user's), measured the same way in the
// same run: the distance to the floor is what the protocol code, allocation and GC add.
// "floor/mlkem768-encapsulate" is what a hybrid full handshake adds to a server's floor:
// parsing (and checking) the client's encapsulation key and encapsulating to it;
// "floor/mlkem768-keygen" and "floor/mlkem768-decapsulate" are the client's ML-KEM work.
//
// c2s-bytes/op and s2c-bytes/op are the bytes each way on the wire per handshake (the
// server's Verdict included).
func BenchmarkServerHandshakeCPU(b *testing.B) {
	h := newHSBench(b)
	dk, _ := mlkem.GenerateKey768()
	ekb := dk.EncapsulationKey().Bytes()
	_, ct := dk.EncapsulationKey().Encapsulate()
	for _, op := range []string{"encapsulate", "keygen", "decapsulate"} {
		b.Run("floor/mlkem768-"+op, func(b *testing.B) {
			b.ReportAllocs()
			runtime.GC()
			b.ResetTimer()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				switch op {
				case "encapsulate":
					ek, err := kem.ParseEncapsulationKey(ekb)
					if err != nil {
						b.Fatal(err)
					}
					_, _, _ = kem.Encapsulate(ek)
				case "keygen":
					if _, err := mlkem.GenerateKey768(); err != nil {
						b.Fatal(err)
					}
				case "decapsulate":
					if _, err := dk.Decapsulate(ct); err != nil {
						b.Fatal(err)
					}
				}
			}
			cpu := processCPU() - cpu0
			b.StopTimer()
			b.ReportMetric(usPerOp(cpu, b.N), "server-cpu-us/op")
		})
	}
	for _, mode := range []string{"full", "resumed"} {
		b.Run("floor/"+mode, func(b *testing.B) {
			peer, _ := x25519.Generate(rand.Reader)
			_, userPriv, _ := ed25519.GenerateKey(rand.Reader)
			userPub := userPriv.Public().(ed25519.PublicKey)
			msg := make([]byte, 200)
			userSig := ed25519.Sign(userPriv, msg)
			b.ReportAllocs()
			runtime.GC()
			b.ResetTimer()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				kp, _ := x25519.Generate(rand.Reader)
				if _, err := kp.DH(peer.Public); err != nil {
					b.Fatal(err)
				}
				if mode == "full" {
					_ = ed25519.Sign(h.hostKey, msg[:64])
					if !ed25519.Verify(userPub, msg, userSig) {
						b.Fatal("verify")
					}
				}
			}
			cpu := processCPU() - cpu0
			b.StopTimer()
			b.ReportMetric(usPerOp(cpu, b.N), "server-cpu-us/op")
		})
	}
	for _, mode := range []string{"full", "resumed"} {
		for _, kg := range []string{"keygen-inline", "keygen-pooled"} {
			b.Run(mode+"/"+kg, func(b *testing.B) {
				trs := h.recordMany(b, b.N, mode == "resumed")
				pre := make([]x25519.KeyPair, b.N)
				if kg == "keygen-pooled" {
					for i := range trs {
						pre[i], _ = x25519.Generate(bytes.NewReader(trs[i].seed[:]))
					}
				}
				var cur int
				eph := func() (x25519.KeyPair, error) {
					if kg == "keygen-pooled" {
						return pre[cur], nil
					}
					return x25519.Generate(bytes.NewReader(trs[cur].seed[:]))
				}
				cfg := h.serverConfig(eph, true)
				cfg.Encapsulate = func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
					_, _ = ek.Encapsulate() // the real work, whose outputs the recording fixes
					return bytes.Clone(trs[cur].kemShared), bytes.Clone(trs[cur].kemCT), nil
				}
				var c2s, s2c int
				for i := range trs {
					c2s += trs[i].clientSent
				}
				b.ReportAllocs()
				runtime.GC()
				b.ResetTimer()
				cpu0 := processCPU()
				for i := 0; i < b.N; i++ {
					cur = i
					sc := &scriptConn{flights: trs[i].flights}
					rc := record.NewConn(sc)
					res, err := handshake.RunServer(rc, cfg)
					if err != nil {
						b.Fatal(err)
					}
					if res.Resumed != (mode == "resumed") {
						b.Fatalf("resumed=%v", res.Resumed)
					}
					_ = res.Identity
					s2c += sc.written
				}
				cpu := processCPU() - cpu0
				b.StopTimer()
				b.ReportMetric(usPerOp(cpu, b.N), "server-cpu-us/op")
				b.ReportMetric(float64(c2s)/float64(b.N), "c2s-bytes/op")
				b.ReportMetric(float64(s2c)/float64(b.N), "s2c-bytes/op")
			})
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Echo, sink and TLS servers

// serveConns accepts connections from ln and runs handle on each until ln is closed.
func serveConns(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// echo writes back what it reads until EOF (the same loop for every system).
func echo(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

const (
	bulkPerOp = 64 << 20  // bytes sent per bulk op
	bulkBuf   = 256 << 10 // size of each Write and Read
)

// sink reads with 256 KiB reads and acknowledges every bulkPerOp bytes with one byte.
func sink(c net.Conn) {
	buf := make([]byte, bulkBuf)
	got := 0
	for {
		n, err := c.Read(buf)
		got += n
		for got >= bulkPerOp {
			got -= bulkPerOp
			if _, err := c.Write([]byte{1}); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// benchTLS returns TLS 1.3 configurations with ECDSA P-256 certificates from a private CA:
// the server requires and verifies a client certificate (mutual TLS).
func benchTLS(b testing.TB) (server, client *tls.Config) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		b.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) tls.Certificate {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{cn},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			b.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	server = &tls.Config{Certificates: []tls.Certificate{leaf(2, "localhost", x509.ExtKeyUsageServerAuth)},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{leaf(3, "alice", x509.ExtKeyUsageClientAuth)},
		RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	return server, client
}

// listenTCP listens on loopback and closes the listener when the benchmark ends.
func listenTCP(b testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	return ln
}

// newBenchNetauth starts an in-process netauth server (logging off) and returns it with an
// allowed user.
func newBenchNetauth(b testing.TB) (*testServer, *testUser) {
	ts := newTestServer(b, func(c *ServerConfig) { c.Logger = nil })
	u := newTestUser(b, "alice")
	ts.allow(u)
	return ts, u
}

// ---------------------------------------------------------------------------------------------
// 2. Connect-send-recv latency

// system is one way to make a connection; dial returns it ready for I/O.
type system struct {
	name string
	dial func() (net.Conn, error)
	// check, if set, verifies a finished connection (e.g. that it resumed).
	check func(net.Conn) error
}

// connectSystems starts the servers (with handle on every connection) and returns the
// systems in a fixed order, plain TCP first.
func connectSystems(b testing.TB, handle func(net.Conn)) []system {
	tcpLn := listenTCP(b)
	serveConns(tcpLn, handle)

	stls, ctls := benchTLS(b)
	tlsLn := tls.NewListener(listenTCP(b), stls)
	serveConns(tlsLn, handle)
	ctlsRes := ctls.Clone()
	ctlsRes.ClientSessionCache = tls.NewLRUClientSessionCache(16)

	ts, u := newBenchNetauth(b)
	serveConns(ts.ln, handle)
	cfgFull := ts.clientConfig(u)
	cfgFull.DisableResumption = true
	cfgRes := ts.clientConfig(u)

	tlsDial := func(cfg *tls.Config) func() (net.Conn, error) {
		return func() (net.Conn, error) { return tls.Dial("tcp", tlsLn.Addr().String(), cfg) }
	}
	tlsResumed := func(c net.Conn) error {
		if !c.(*tls.Conn).ConnectionState().DidResume {
			return errors.New("TLS session not resumed")
		}
		return nil
	}
	netauthDial := func(cfg *Config) func() (net.Conn, error) {
		return func() (net.Conn, error) { return Dial("tcp", ts.addr, cfg) }
	}
	netauthResumed := func(want bool) func(net.Conn) error {
		return func(c net.Conn) error {
			if c.(*Conn).Identity().Resumed != want {
				return fmt.Errorf("netauth connection resumed=%v, want %v", !want, want)
			}
			return nil
		}
	}
	return []system{
		{name: "tcp", dial: func() (net.Conn, error) { return net.Dial("tcp", tcpLn.Addr().String()) }},
		{name: "tls-full", dial: tlsDial(ctls), check: func(c net.Conn) error {
			if c.(*tls.Conn).ConnectionState().DidResume {
				return errors.New("TLS session resumed")
			}
			return nil
		}},
		{name: "tls-resumed", dial: tlsDial(ctlsRes), check: tlsResumed},
		{name: "netauth-full", dial: netauthDial(cfgFull), check: netauthResumed(false)},
		{name: "netauth-resumed", dial: netauthDial(cfgRes), check: netauthResumed(true)},
	}
}

// connectSendRecv dials, sends msg, reads as many bytes back into buf, checks and closes.
func (s *system) connectSendRecv(msg, buf []byte) error {
	c, err := s.dial()
	if err != nil {
		return fmt.Errorf("%s: dial: %w", s.name, err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("%s: write: %w", s.name, err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("%s: read: %w", s.name, err)
	}
	if !bytes.Equal(msg, buf) {
		return fmt.Errorf("%s: echo mismatch", s.name)
	}
	if s.check != nil {
		if err := s.check(c); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return c.Close()
}

// warm makes a few connections so caches hold a session and code paths are warm.
func warm(b testing.TB, systems []system, msg, buf []byte) {
	for range 3 {
		for i := range systems {
			if err := systems[i].connectSendRecv(msg, buf); err != nil && !strings.Contains(err.Error(), "resumed") {
				b.Fatal(err)
			}
		}
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// BenchmarkConnectCompare alternates the systems round-robin in one loop (each iteration
// connects once with each, starting with a different one each time) so that drift and
// interference hit all alike. It reports each system's median and p99 latency in
// microseconds and the ratio of its median to plain TCP's. ns/op is one connection of each
// system.
func BenchmarkConnectCompare(b *testing.B) {
	systems := connectSystems(b, echo)
	b.ReportAllocs()
	compareRoundRobin(b, systems, "tcp")
}

// compareRoundRobin runs b.N rounds of a 128-byte connect-send-recv on each system, in turn
// and starting with a different one each round, and reports each system's median and p99
// latency in microseconds and the ratio of its median to the first system's (named base).
func compareRoundRobin(b *testing.B, systems []system, base string) {
	msg, buf := bytes.Repeat([]byte{'x'}, 128), make([]byte, 128)
	warm(b, systems, msg, buf)
	lat := make([][]time.Duration, len(systems))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range systems {
			j := (i + k) % len(systems)
			t0 := time.Now()
			if err := systems[j].connectSendRecv(msg, buf); err != nil {
				b.Fatal(err)
			}
			lat[j] = append(lat[j], time.Since(t0))
		}
	}
	b.StopTimer()
	var first float64
	for j, s := range systems {
		slices.Sort(lat[j])
		med := float64(percentile(lat[j], 0.5).Nanoseconds()) / 1e3
		if j == 0 {
			first = med
		}
		b.ReportMetric(med, s.name+"-p50-us")
		b.ReportMetric(float64(percentile(lat[j], 0.99).Nanoseconds())/1e3, s.name+"-p99-us")
		if j > 0 {
			b.ReportMetric(med/first, s.name+"/"+base)
		}
	}
}

// BenchmarkConnect measures one system per sub-benchmark, for ns/op, allocations and
// profiles (-cpuprofile with -bench 'Connect/netauth-resumed').
func BenchmarkConnect(b *testing.B) {
	systems := connectSystems(b, echo)
	msg, buf := bytes.Repeat([]byte{'x'}, 128), make([]byte, 128)
	warm(b, systems, msg, buf)
	for i := range systems {
		s := &systems[i]
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := s.connectSendRecv(msg, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------------------------
// 3. Bulk throughput

// bulkConns opens one long-lived connection per system to a sink server.
func bulkConns(b testing.TB) (names []string, conns []net.Conn) {
	tcpLn := listenTCP(b)
	serveConns(tcpLn, sink)
	stls, ctls := benchTLS(b)
	tlsLn := tls.NewListener(listenTCP(b), stls)
	serveConns(tlsLn, sink)
	ts, u := newBenchNetauth(b)
	serveConns(ts.ln, sink)

	tc, err := net.Dial("tcp", tcpLn.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	sc, err := tls.Dial("tcp", tlsLn.Addr().String(), ctls)
	if err != nil {
		b.Fatal(err)
	}
	nc, err := Dial("tcp", ts.addr, ts.clientConfig(u))
	if err != nil {
		b.Fatal(err)
	}
	if err := nc.Handshake(); err != nil {
		b.Fatal(err)
	}
	conns = []net.Conn{tc, sc, nc}
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return []string{"tcp", "tls", "netauth"}, conns
}

// bulkOp sends bulkPerOp bytes in 256 KiB writes and waits for the sink's acknowledgment.
func bulkOp(c net.Conn, data []byte) error {
	for sent := 0; sent < bulkPerOp; sent += len(data) {
		if _, err := c.Write(data); err != nil {
			return err
		}
	}
	var ack [1]byte
	_, err := io.ReadFull(c, ack[:])
	return err
}

func bulkData() []byte {
	data := make([]byte, bulkBuf)
	_, _ = rand.Read(data)
	return data
}

// BenchmarkBulk sends 64 MiB per op one way over one long-lived connection per system
// (MB/s is the throughput).
func BenchmarkBulk(b *testing.B) {
	names, conns := bulkConns(b)
	data := bulkData()
	for i, name := range names {
		c := conns[i]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(bulkPerOp)
			cpu0 := processCPU()
			for b.Loop() {
				if err := bulkOp(c, data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N)/bulkPerOp, "cpu-ns/B")
		})
	}
}

// BenchmarkBulkCompare alternates the systems round-robin (64 MiB each per iteration) and
// reports each one's median throughput in MB/s, netauth's ratios to TLS and plain TCP, and
// each one's CPU time (sender and receiver together, both in this process) per byte, which
// shared machines disturb less than throughput.
func BenchmarkBulkCompare(b *testing.B) {
	names, conns := bulkConns(b)
	data := bulkData()
	for i := range conns { // warm up
		if err := bulkOp(conns[i], data); err != nil {
			b.Fatal(err)
		}
	}
	mbps := make([][]float64, len(conns))
	cpu := make([]time.Duration, len(conns))
	b.SetBytes(int64(bulkPerOp * len(conns)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range conns {
			j := (i + k) % len(conns)
			c0, t0 := processCPU(), time.Now()
			if err := bulkOp(conns[j], data); err != nil {
				b.Fatal(err)
			}
			mbps[j] = append(mbps[j], float64(bulkPerOp)/time.Since(t0).Seconds()/1e6)
			cpu[j] += processCPU() - c0
		}
	}
	b.StopTimer()
	med := make(map[string]float64)
	for j, name := range names {
		slices.Sort(mbps[j])
		med[name] = mbps[j][(len(mbps[j])-1)/2]
		b.ReportMetric(med[name], name+"-MB/s")
		b.ReportMetric(float64(cpu[j].Nanoseconds())/float64(b.N)/bulkPerOp, name+"-cpu-ns/B")
	}
	b.ReportMetric(med["netauth"]/med["tls"], "netauth/tls")
	b.ReportMetric(med["netauth"]/med["tcp"], "netauth/tcp")
}

// ---------------------------------------------------------------------------------------------
// 1b. CPU of a separate server process

const helperEnv = "NETAUTH_BENCH_SERVER"

// TestBenchServerProcess is not a test: BenchmarkServerProcessCPU runs the test binary again
// with this function as a netauth and plain-TCP echo server. It is skipped otherwise.
func TestBenchServerProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process for BenchmarkServerProcessCPU")
	}
	// spec: hex(host key seed) + " " + the user's authorized_keys line.
	seedHex, userLine, _ := strings.Cut(spec, " ")
	seed, err := hex.DecodeString(seedHex)
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatal("bad host key seed")
	}
	userKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(userLine))
	if err != nil {
		t.Fatal(err)
	}
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()
	serveConns(tcpLn, echo)
	ln, err := Listen("tcp", "127.0.0.1:0", &ServerConfig{HostKey: ed25519.NewKeyFromSeed(seed), Service: "bench",
		Keys: StaticKeys{"alice": {userKey}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serveConns(ln, echo)
	if path := os.Getenv(helperEnv + "_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("tcp=%s netauth=%s\n", tcpLn.Addr(), ln.Addr())
	// Each line on stdin asks for the process's CPU time so far; EOF ends the server.
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Printf("cpu=%d\n", processCPU().Nanoseconds())
	}
}

// serverProcess is a running helper server.
type serverProcess struct {
	cmd         *exec.Cmd
	in          io.WriteCloser
	out         *bufio.Reader
	tcp, netaut string
}

func (p *serverProcess) line() string {
	s, err := p.out.ReadString('\n')
	if err != nil {
		panic(fmt.Sprintf("helper server: %v", err))
	}
	return strings.TrimSpace(s)
}

// cpu returns the helper's CPU time so far.
func (p *serverProcess) cpu() time.Duration {
	fmt.Fprintln(p.in)
	for {
		l := p.line()
		if v, ok := strings.CutPrefix(l, "cpu="); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(n)
		}
	}
}

func startServerProcess(b *testing.B, hostSeed []byte, user ssh.PublicKey) *serverProcess {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServerProcess$", "-test.bench=^$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+hex.EncodeToString(hostSeed)+" "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(user))))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	b.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, p.out); _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	for {
		l := p.line()
		if strings.HasPrefix(l, "tcp=") {
			f := strings.Fields(l)
			p.tcp, p.netaut = strings.TrimPrefix(f[0], "tcp="), strings.TrimPrefix(f[1], "netauth=")
			return p
		}
	}
}

// BenchmarkServerProcessCPU runs the server in a separate process (the test binary running
// TestBenchServerProcess: a plain TCP echo server and a netauth echo server behind Listen)
// and makes 128-byte connect-send-recv connections to it. server-cpu-us/op is the server
// process's CPU time (its own getrusage, user+system, all threads: accept, handshake, the
// echo, close, garbage collection, kernel TCP work done in its system calls) per connection;
// client-cpu-us/op is this process's. With NETAUTH_BENCH_SERVER_CPUPROFILE=file set, the
// server process writes a CPU profile of its whole life to file.
func BenchmarkServerProcessCPU(b *testing.B) {
	seed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(seed)
	u := newTestUser(b, "alice")
	p := startServerProcess(b, seed, u.signer.PublicKey())
	hostPub, _ := ssh.NewPublicKey(ed25519.NewKeyFromSeed(seed).Public())
	base := &Config{User: "alice", Signer: u.signer, TicketCache: NewMemoryTicketCache(16),
		HostKeyCallback: func(_ string, k ssh.PublicKey) error {
			if !bytes.Equal(k.Marshal(), hostPub.Marshal()) {
				return errors.New("wrong host key")
			}
			return nil
		}}
	full, resumed := *base, *base
	full.DisableResumption = true
	systems := []system{
		{name: "tcp", dial: func() (net.Conn, error) { return net.Dial("tcp", p.tcp) }},
		{name: "netauth-full", dial: func() (net.Conn, error) { return Dial("tcp", p.netaut, &full) }},
		{name: "netauth-resumed", dial: func() (net.Conn, error) { return Dial("tcp", p.netaut, &resumed) },
			check: func(c net.Conn) error {
				if !c.(*Conn).Identity().Resumed {
					return errors.New("not resumed")
				}
				return nil
			}},
	}
	msg, buf := bytes.Repeat([]byte{'x'}, 128), make([]byte, 128)
	for i := range systems {
		s := &systems[i]
		b.Run(s.name, func(b *testing.B) {
			for range 3 {
				if err := s.connectSendRecv(msg, buf); err != nil && !strings.Contains(err.Error(), "resumed") {
					b.Fatal(err)
				}
			}
			time.Sleep(20 * time.Millisecond)
			srv0, cli0 := p.cpu(), processCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.connectSendRecv(msg, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cli := processCPU() - cli0
			time.Sleep(20 * time.Millisecond) // let the server finish the last close
			srv := p.cpu() - srv0
			b.ReportMetric(usPerOp(srv, b.N), "server-cpu-us/op")
			b.ReportMetric(usPerOp(cli, b.N), "client-cpu-us/op")
		})
	}
}
