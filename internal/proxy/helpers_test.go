// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
	"ubns.dev/netauth"
)

// testUserName is the user the tests authenticate as; the in-process server knows it without
// a system account.
const testUserName = "alice"

// testServer is an in-process netauth server on loopback. For each connection it writes
// "hello USER resumed=BOOL\n", then echoes lines until the client's end of input, then writes
// "bye\n" and closes. The line "cut\n" makes it drop the TCP connection without a close record.
type testServer struct {
	addr       string
	knownHosts string
	signer     ssh.Signer // the user's key, held in process
	tcp        *testutil.CountingListener

	mu  sync.Mutex
	ids []netauth.Identity
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ts, ln := listenTestServer(t)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptNetauth()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ts.serve(c)
			}()
		}
	}()
	return ts
}

// listenTestServer makes the keys of a test server, listens on loopback and trusts it; the
// caller serves the listener and closes it.
func listenTestServer(t *testing.T) (*testServer, *netauth.Listener) {
	t.Helper()
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, userKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(userKey)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{signer: signer, tcp: &testutil.CountingListener{Listener: inner}}
	ln, err := netauth.NewListener(ts.tcp, &netauth.ServerConfig{
		HostKey: hostKey,
		Service: "test",
		Keys:    netauth.StaticKeys{testUserName: {signer.PublicKey()}},
	})
	if err != nil {
		inner.Close()
		t.Fatal(err)
	}
	ts.addr = ln.Addr().String()
	hostPub, err := ssh.NewPublicKey(hostKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	ts.knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	if err := netauth.Trust(ts.knownHosts, ts.addr, hostPub); err != nil {
		t.Fatal(err)
	}
	return ts, ln
}

func (ts *testServer) serve(c *netauth.Conn) {
	defer c.Close()
	id := c.Identity()
	ts.mu.Lock()
	ts.ids = append(ts.ids, id)
	ts.mu.Unlock()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(c, "hello %s resumed=%v\n", id.User, id.Resumed); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if line == "cut\n" {
			c.NetConn().Close()
			return
		}
		if _, werr := io.WriteString(c, line); werr != nil {
			return
		}
		if err == io.EOF {
			_, _ = io.WriteString(c, "bye\n")
			return
		}
		if err != nil {
			return
		}
	}
}

// identities returns the identities the server has seen.
func (ts *testServer) identities() []netauth.Identity {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]netauth.Identity(nil), ts.ids...)
}

// config returns a client config signing in process and trusting the server. Tickets go to
// the process-wide memory cache, as they do with a stock ssh-agent.
func (ts *testServer) config() *netauth.Config {
	return &netauth.Config{Signer: ts.signer, KnownHostsFile: ts.knownHosts}
}

// startProxy listens with opts and serves until the test ends. The log is kept in the
// returned buffer and shown if the test fails.
func startProxy(t *testing.T, opts Options) (*Proxy, *testutil.Buffer) {
	t.Helper()
	p, logs := listenProxy(t, opts)
	serveProxy(t, p)
	return p, logs
}

// listenProxy is Listen with a logger writing to a buffer.
func listenProxy(t *testing.T, opts Options) (*Proxy, *testutil.Buffer) {
	t.Helper()
	logs := &testutil.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := Listen(opts)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs)
		}
	})
	return p, logs
}

// serveProxy runs p.Serve until the test ends and checks that it returns nil.
func serveProxy(t *testing.T, p *Proxy) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after its context was cancelled")
		}
	})
}

// dialProxy connects to a proxy address ("unix:PATH" or "tcp:HOST:PORT").
func dialProxy(t *testing.T, addr string) net.Conn {
	t.Helper()
	network, address, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("bad proxy address %q", addr)
	}
	c, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		t.Fatalf("dialing the proxy at %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// exchange sends msg through the proxy at addr, closes the sending side, and returns all it
// reads until the end of stream. A proxy that refuses a TCP connection may reset it before
// the dial returns, so a failed dial is returned as an error too.
func exchange(t *testing.T, addr, msg string) (string, error) {
	t.Helper()
	network, address, _ := strings.Cut(addr, ":")
	c, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("dialing the proxy: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", fmt.Errorf("writing: %w", err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return "", fmt.Errorf("closing the sending side: %w", err)
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// waitFor polls until cond holds, failing the test after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
