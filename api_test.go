// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"ubns.dev/netauth/internal/handshake"
	"ubns.dev/netauth/internal/testutil"
)

// newAPIServerConfig returns a server config that lets u in, and the server's public host key.
func newAPIServerConfig(t *testing.T, u *testUser) (*ServerConfig, ssh.PublicKey) {
	t.Helper()
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _ := ssh.NewPublicKey(hostKey.Public())
	return &ServerConfig{
		HostKey: hostKey,
		Service: "test",
		Keys:    StaticKeys{u.name: {u.signer.PublicKey()}},
		Logger:  slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, hostPub
}

// exchange runs one connection between Client(cc, ccfg) and Server(sc, scfg): the client sends
// a line, the server answers with the user it authenticated, and both Identities are returned.
func exchange(t *testing.T, cc, sc net.Conn, ccfg *Config, scfg *ServerConfig) (client, server Identity) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		id  Identity
		err error
	}
	done := make(chan result, 1)
	go func() {
		s := Server(sc, scfg)
		defer s.Close()
		line := make([]byte, 5)
		if _, err := io.ReadFull(s, line); err != nil { // the first Read runs the handshake
			done <- result{err: err}
			return
		}
		_, err := io.WriteString(s, "hello "+s.Identity().User)
		if err == nil {
			err = s.CloseWrite()
		}
		done <- result{id: s.Identity(), err: err}
	}()
	c := Client(cc, ccfg)
	defer c.Close()
	if id := c.Identity(); id.User != "" {
		t.Fatalf("Identity before the handshake: %+v", id)
	}
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatalf("client write: %v", err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("server: %v", r.err)
	}
	if want := "hello " + ccfg.User; string(reply) != want {
		t.Fatalf("client read %q, want %q", reply, want)
	}
	return c.Identity(), r.id
}

// TestClientServerPipe: Client and Server run the handshake on connections made elsewhere
// (net.Pipe, which has no address to name the server by: Config.ServerAddr does), a full one
// and then a resumed one, with the ticket issued on the first.
func TestClientServerPipe(t *testing.T) {
	u := newTestUser(t, "alice")
	scfg, hostPub := newAPIServerConfig(t, u)
	var checked atomic.Int32
	ccfg := &Config{
		User:        u.name,
		Signer:      u.signer,
		ServerAddr:  "server.example:4000",
		TicketCache: NewMemoryTicketCache(16),
		SSHHostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			checked.Add(1)
			if hostname != "server.example:4000" {
				t.Errorf("host key callback given %q", hostname)
			}
			if !bytes.Equal(key.Marshal(), hostPub.Marshal()) {
				return errors.New("wrong host key")
			}
			return nil
		},
	}
	for i, wantResumed := range []bool{false, true} {
		cc, sc := net.Pipe()
		cid, sid := exchange(t, cc, sc, ccfg, scfg)
		if sid.User != u.name || cid.Resumed != wantResumed || sid.Resumed != wantResumed {
			t.Fatalf("connection %d: client %+v, server %+v; want user %s, resumed %v", i, cid, sid, u.name, wantResumed)
		}
	}
	if checked.Load() == 0 {
		t.Fatal("the host key callback was not called")
	}

	// Without ServerAddr, a net.Pipe gives no name for the server.
	cc, sc := net.Pipe()
	defer sc.Close()
	c := Client(cc, &Config{User: u.name, Signer: u.signer})
	defer c.Close()
	if err := c.Handshake(); err == nil || !strings.Contains(err.Error(), "ServerAddr") {
		t.Fatalf("handshake without a server address: %v", err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after a failed handshake succeeded")
	}
}

// TestClientServerTCP: Client and Server over TCP pairs, the server's host key checked by
// knownhosts.New's callback (which needs a TCP remote address), full then resumed; without
// Config.ServerAddr the server is named by the connection's remote address.
func TestClientServerTCP(t *testing.T) {
	u := newTestUser(t, "alice")
	scfg, hostPub := newAPIServerConfig(t, u)
	cb, err := knownhosts.New(writeKnownHosts(t, "server.example:4000", hostPub))
	if err != nil {
		t.Fatal(err)
	}
	ccfg := &Config{User: u.name, Signer: u.signer, TicketCache: NewMemoryTicketCache(16),
		ServerAddr: "server.example:4000", SSHHostKeyCallback: cb}
	for i, wantResumed := range []bool{false, true} {
		cc, sc := testutil.TCPPair(t)
		cid, sid := exchange(t, cc, sc, ccfg, scfg)
		if sid.User != u.name || cid.Resumed != wantResumed || sid.Resumed != wantResumed {
			t.Fatalf("connection %d: client %+v, server %+v; want resumed %v", i, cid, sid, wantResumed)
		}
	}

	cc, sc := testutil.TCPPair(t)
	var named string
	ccfg.ServerAddr = ""
	ccfg.SSHHostKeyCallback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		named = hostname
		return ssh.FixedHostKey(hostPub)(hostname, remote, key)
	}
	exchange(t, cc, sc, ccfg, scfg)
	if named != cc.RemoteAddr().String() {
		t.Fatalf("without ServerAddr the server was named %q, want %q", named, cc.RemoteAddr())
	}
}

// writeKnownHosts writes an OpenSSH known_hosts file trusting key for hostport.
func writeKnownHosts(t *testing.T, hostport string, key ssh.PublicKey) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"
	if err := os.WriteFile(f, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSSHHostKeyCallbackKnownHosts: Dial accepts a server that knownhosts.New's callback
// trusts, on a full and a resumed handshake, and refuses it once the callback no longer
// does, the cached ticket included.
func TestSSHHostKeyCallbackKnownHosts(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.serveEcho()
	u := newTestUser(t, "alice")
	ts.allow(u)
	good, err := knownhosts.New(writeKnownHosts(t, ts.addr, ts.hostPub))
	if err != nil {
		t.Fatal(err)
	}
	other := testutil.Signer(t).PublicKey()
	bad, err := knownhosts.New(writeKnownHosts(t, ts.addr, other))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{User: u.name, Signer: u.signer, TicketCache: NewMemoryTicketCache(16),
		KnownHostsFile: filepath.Join(t.TempDir(), "empty"), SSHHostKeyCallback: good}
	for i, wantResumed := range []bool{false, true} {
		c, err := Dial("tcp", ts.addr, cfg)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		checkEcho(t, c)
		if c.Identity().Resumed != wantResumed {
			t.Fatalf("dial %d: resumed %v, want %v", i, c.Identity().Resumed, wantResumed)
		}
		c.Close()
	}
	cfg.SSHHostKeyCallback = bad
	_, err = Dial("tcp", ts.addr, cfg)
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) || len(ke.Want) != 1 {
		t.Fatalf("dial with a known_hosts naming another key: %v, want a *knownhosts.KeyError", err)
	}
}

// checkEcho checks that c echoes a line.
func checkEcho(t *testing.T, c *Conn) {
	t.Helper()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping\n" {
		t.Fatalf("echo: %q, %v", b, err)
	}
}

// TestDialContextUsed: Dial makes its connections with Config.DialContext, here one that sets
// the source address, which the server sees.
func TestDialContextUsed(t *testing.T) {
	ts := newTestServer(t, nil)
	u := newTestUser(t, "alice")
	ts.allow(u)
	source := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	var calls atomic.Int32
	cfg := ts.clientConfig(u)
	cfg.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		calls.Add(1)
		if addr != ts.addr {
			t.Errorf("DialContext given %q, want %q", addr, ts.addr)
		}
		return (&net.Dialer{LocalAddr: source}).DialContext(ctx, network, addr)
	}
	accepted := make(chan net.Addr, 1)
	go func() {
		c, err := ts.ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		defer c.Close()
		accepted <- c.RemoteAddr()
		_, _ = io.Copy(c, c)
	}()
	c, err := Dial("tcp", u.name+"@"+ts.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkEcho(t, c)
	if n := calls.Load(); n != 1 {
		t.Fatalf("DialContext called %d times, want 1", n)
	}
	if got, ok := (<-accepted).(*net.TCPAddr); !ok || !got.IP.Equal(source.IP) {
		t.Fatalf("server saw the client at %v, want %v", got, source.IP)
	}
}

// TestServerSharesLimits: the connections given to Server take the handshake slots of their
// config, as a Listener's do: beyond MaxPendingHandshakes one is refused as overloaded.
func TestServerSharesLimits(t *testing.T) {
	u := newTestUser(t, "alice")
	scfg, hostPub := newAPIServerConfig(t, u)
	scfg.MaxPendingHandshakes = 1
	// A client that connects and sends nothing holds the only slot.
	idle, held := testutil.TCPPair(t)
	defer idle.Close()
	hs := Server(held, scfg)
	defer hs.Close()
	go hs.Handshake()
	time.Sleep(100 * time.Millisecond) // the handshake above has taken its slot

	cc, sc := testutil.TCPPair(t)
	s := Server(sc, scfg)
	defer s.Close()
	serr := make(chan error, 1)
	go func() { serr <- s.Handshake() }()
	c := Client(cc, &Config{User: u.name, Signer: u.signer, SSHHostKeyCallback: ssh.FixedHostKey(hostPub)})
	defer c.Close()
	err := c.Handshake()
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != handshake.CodeOverloaded {
		t.Fatalf("client over the bound: %v, want an overloaded refusal", err)
	}
	if err := <-serr; err == nil {
		t.Fatal("Server handshake over the bound succeeded")
	}
}
