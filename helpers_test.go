// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"ubns.dev/netauth/internal/testutil"

	"golang.org/x/crypto/ssh"
)

// testUser is a user key held in process memory.
type testUser struct {
	name   string
	signer ssh.Signer
}

func newTestUser(t testing.TB, name string) *testUser {
	t.Helper()
	return &testUser{name: name, signer: testutil.Signer(t)}
}

// testServer is an in-process netauth server on loopback with its trusting client config.
type testServer struct {
	ln         *Listener
	hostKey    ed25519.PrivateKey
	hostPub    ssh.PublicKey
	keys       StaticKeys
	knownHosts string
	addr       string
}

// newTestServer starts a server whose users and keys are in ts.keys, and writes a
// known_hosts file that trusts it. modify, if not nil, adjusts the config before Listen.
func newTestServer(t testing.TB, modify func(*ServerConfig)) *testServer {
	t.Helper()
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{hostKey: hostKey, keys: StaticKeys{}}
	ts.hostPub, _ = ssh.NewPublicKey(hostKey.Public())
	cfg := &ServerConfig{
		HostKey: hostKey,
		Service: "test",
		Keys:    ts.keys,
		Logger:  slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if modify != nil {
		modify(cfg)
	}
	ts.ln, err = Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.ln.Close() })
	ts.addr = ts.ln.Addr().String()
	ts.knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	if err := Trust(ts.knownHosts, ts.addr, ts.hostPub); err != nil {
		t.Fatal(err)
	}
	return ts
}

// allow lets u authenticate with its key.
func (ts *testServer) allow(u *testUser) {
	ts.keys[u.name] = append(ts.keys[u.name], u.signer.PublicKey())
}

// clientConfig returns a config that signs as u in process and trusts ts (reading no other
// known_hosts file).
func (ts *testServer) clientConfig(u *testUser) *Config {
	return &Config{
		User:            u.name,
		Signer:          u.signer,
		KnownHostsFile:  ts.knownHosts,
		KnownHostsFiles: []KnownHostsFile{},
		TicketCache:     NewMemoryTicketCache(16),
	}
}

// serveEcho accepts connections and echoes each one until EOF.
func (ts *testServer) serveEcho() {
	go func() {
		for {
			c, err := ts.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// testWriter sends log output to the test log until the test ends: a server goroutine may
// still log (a connection closing) after that, when t.Log would fail the run.
type testWriter struct{ w *testLog }

type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

// newTestWriter returns a writer to t's log that drops what comes after t ended.
func newTestWriter(t testing.TB) testWriter {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return testWriter{l}
}

func (w testWriter) Write(p []byte) (int, error) {
	w.w.mu.Lock()
	defer w.w.mu.Unlock()
	if !w.w.done {
		w.w.t.Log(string(p))
	}
	return len(p), nil
}
