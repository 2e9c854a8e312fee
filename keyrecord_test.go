// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth/agent"
)

// TestKeyRecordBoundToHostAndVerifiedServer: the record of the key a server accepted is
// written only for the address and service dialed, only after the server proved its host
// key and accepted; a remembered key does not make the client sign, or send data, before the
// server's host key is verified: a server whose host key is not trusted gets neither.
func TestKeyRecordBoundToHostAndVerifiedServer(t *testing.T) {
	// No server log: the handshake the client abandons ends after the test.
	ts := newTestServer(t, func(c *ServerConfig) { c.Logger = nil })
	ts.serveEcho()
	refused, _ := newAgentKey(t)
	accepted, pub := newAgentKey(t)
	ts.keys["alice"] = []ssh.PublicKey{pub}
	ta := startCountingAgent(t, refused, accepted)
	cache := NewMemoryTicketCache(16)
	cfg := &Config{User: "alice", AgentSocket: ta.sock, KnownHostsFile: ts.knownHosts, TicketCache: cache, DisableResumption: true, Service: "test"}
	dialEcho(t, ts.addr, cfg)
	rec := "netauth-key-v1 alice@" + ts.addr + " test"
	if b, ok := cache.Get(rec); !ok || !bytes.Equal(b, pub.Marshal()) {
		t.Fatal("the accepted key was not remembered for the address and service dialed")
	}
	for _, other := range []string{
		"netauth-key-v1 alice@" + ts.addr + " ",
		"netauth-key-v1 alice@localhost" + ts.addr[len("127.0.0.1"):] + " test",
	} {
		if _, ok := cache.Get(other); ok {
			t.Errorf("a record was written under %q", other)
		}
	}

	// The same address, now with a host key the client does not trust (an impostor, or a
	// changed key): the remembered key must not lead to a signature or to data.
	untrusted := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(untrusted, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	signs := ta.signCount()
	cfg2 := *cfg
	cfg2.KnownHostsFile = untrusted
	c, err := Dial("tcp", ts.addr, &cfg2)
	var he *HostKeyError
	if !errors.As(err, &he) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("Dial to an untrusted host key: %v, want a *HostKeyError", err)
	}
	if n := ta.signCount(); n != signs {
		t.Errorf("the agent signed %d statements for a server whose host key failed", n-signs)
	}
	if b, ok := cache.Get(rec); !ok || !bytes.Equal(b, pub.Marshal()) {
		t.Error("a failed host key check changed the record")
	}
}

// countingAgent is a netauth agent that counts the signatures it is asked for.
type countingAgent struct {
	*agent.Agent
	signs *atomic.Int64
}

func (a countingAgent) Sign(k ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	a.signs.Add(1)
	return a.Agent.Sign(k, data)
}

func (a countingAgent) SignWithFlags(k ssh.PublicKey, data []byte, f sshagent.SignatureFlags) (*ssh.Signature, error) {
	a.signs.Add(1)
	return a.Agent.SignWithFlags(k, data, f)
}

func (a countingAgent) Extension(ext string, contents []byte) ([]byte, error) {
	if ext == agent.ExtSign {
		a.signs.Add(1)
	}
	return a.Agent.Extension(ext, contents)
}

type countingTestAgent struct {
	sock  string
	signs atomic.Int64
}

func (ta *countingTestAgent) signCount() int64 { return ta.signs.Load() }

func startCountingAgent(t *testing.T, keys ...any) *countingTestAgent {
	t.Helper()
	ag := agent.New(agent.Options{})
	for _, k := range keys {
		if err := ag.Add(sshagent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	ta := &countingTestAgent{sock: filepath.Join(t.TempDir(), "agent.sock")}
	ln, err := net.Listen("unix", ta.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ca := countingAgent{Agent: ag, signs: &ta.signs}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = sshagent.ServeAgent(ca, c)
			}()
		}
	}()
	return ta
}
