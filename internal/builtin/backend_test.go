// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"ubns.dev/netauth/internal/identity"
	"ubns.dev/netauth/internal/testutil"

	"ubns.dev/netauth/internal/proxyproto"
)

// seen is what the test backend reports about a connection: the PROXY header it parsed and
// what the client sent after it.
type seen struct {
	Err      string
	Family   string
	Source   string
	Dest     string
	Identity *identity.Identity
	Data     string
}

// testBackend accepts connections on ln; for each it parses the PROXY header with the strict
// parser, reads the rest of the stream to its end, and answers with a JSON seen.
func testBackend(t *testing.T, ln net.Listener) {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var rep seen
				r := bufio.NewReader(c)
				h, _, err := proxyproto.Read(r)
				if err == nil {
					rep.Family, rep.Source, rep.Dest = h.Family.String(), h.Source.String(), h.Destination.String()
					rep.Identity, err = proxyproto.IdentityOf(h)
				}
				if err != nil {
					rep.Err = err.Error()
				} else {
					data, _ := io.ReadAll(r)
					rep.Data = string(data)
				}
				_ = json.NewEncoder(c).Encode(rep)
			}()
		}
	}()
}

// backendServer serves the backend worker forwarding to addr.
func backendServer(t *testing.T, addr string) *server {
	t.Helper()
	stderr := &testutil.Buffer{}
	h, err := backendHandler([]string{addr}, NewLogger(stderr))
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, h)
	s.stderr = stderr
	return s
}

// exchange sends msg, closes the sending side and returns what the backend saw.
func (s *server) exchange(t *testing.T, msg string) (seen, string) {
	t.Helper()
	c := s.dial(t)
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the backend's answer: %v (worker: %s)", err, s.stderr.String())
	}
	var rep seen
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("backend answered %q: %v", out, err)
	}
	return rep, c.LocalAddr().String()
}

func TestBackendTCPAndUnix(t *testing.T) {
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testBackend(t, tcpLn)
	sock := filepath.Join(t.TempDir(), "backend.sock")
	unixLn, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	testBackend(t, unixLn)
	for _, addr := range []string{"tcp:" + tcpLn.Addr().String(), "unix:" + sock} {
		s := backendServer(t, addr)
		msg := strings.Repeat("forwarded bytes\n", 10000)
		for i, resumed := range []bool{false, true} {
			rep, clientAddr := s.exchange(t, msg)
			if rep.Err != "" {
				t.Fatalf("%s: the backend refused the header: %s", addr, rep.Err)
			}
			id := rep.Identity
			if rep.Family != "TCP4" || rep.Source != clientAddr || rep.Dest != s.addr {
				t.Errorf("%s: header %s %s -> %s; want TCP4 %s -> %s", addr, rep.Family, rep.Source, rep.Dest, clientAddr, s.addr)
			}
			if id.User != "alice" || id.Service != "svc" || id.KeyType != "ssh-ed25519" || !strings.HasPrefix(id.KeyFingerprint, "SHA256:") ||
				id.Resumed != resumed || len(id.HandshakeHash) != 32 || time.Since(id.AuthTime) > time.Minute {
				t.Errorf("%s: connection %d: identity %+v", addr, i, id)
			}
			if rep.Data != msg {
				t.Errorf("%s: the backend got %d bytes, want the %d sent", addr, len(rep.Data), len(msg))
			}
		}
	}
}

// TestBackendUnavailable: with no backend listening, the client's connection is closed and
// the worker says why.
func TestBackendUnavailable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	s := backendServer(t, "unix:"+sock)
	c := s.dial(t)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if out, _ := io.ReadAll(c); len(out) != 0 {
		t.Fatalf("read %q", out)
	}
	waitFor(t, 5*time.Second, "no log of the failed connection: "+s.stderr.String(), func() bool {
		return s.hasRecord(t, "WARN", "backend: connecting to the backend failed",
			map[string]any{"backend": "unix:" + sock, "user": "alice", "client": c.LocalAddr().String()})
	})
}

// TestBackendClosesWhenBackendDoes: the backend closing its side ends the client's stream,
// while the client's side stays open.
func TestBackendClosesWhenBackendDoes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, _, err := proxyproto.Read(c); err != nil {
			return
		}
		_, _ = io.WriteString(c, "* BYE\r\n")
	}()
	s := backendServer(t, "tcp:"+ln.Addr().String())
	c := s.dial(t)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, err := io.ReadAll(c)
	if err != nil || string(out) != "* BYE\r\n" {
		t.Fatalf("read %q, %v", out, err)
	}
}
