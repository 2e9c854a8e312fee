// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"ubns.dev/netauth/internal/testutil"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/proxy"
)

// quietB is a *testing.B whose Log and Logf write to a file instead of the benchmark's
// output: for benchmarks, the testing package always prints logged text, and the testbed logs
// every connection at debug level (and Dovecot's imap logs each session on standard error,
// which netauthd logs too). The file is kept, and its path printed, when the benchmark fails.
type quietB struct {
	*testing.B
	mu sync.Mutex
	f  *os.File
}

func newQuietB(b *testing.B) *quietB {
	f, err := os.CreateTemp("", "netauth-imap-bench-*.log")
	if err != nil {
		b.Fatal(err)
	}
	q := &quietB{B: b, f: f}
	b.Cleanup(func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.f.Close()
		if b.Failed() {
			b.Logf("the testbed's log is in %s", q.f.Name())
		} else {
			os.Remove(q.f.Name())
		}
	})
	return q
}

func (q *quietB) Log(args ...any) { q.write(fmt.Sprintln(args...)) }

func (q *quietB) Logf(format string, args ...any) { q.write(fmt.Sprintf(format, args...) + "\n") }

func (q *quietB) write(s string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, _ = q.f.WriteString(s)
}

// startProxyConfig starts a netauth client proxy listening on listen ("tcp:127.0.0.1:0" or
// "unix:PATH") that connects to service with cfg (startProxy with the caller's choice of
// address and configuration). It returns the proxy's network and address, and counts the
// proxy's connections to the server by how they were authenticated.
func (tb *testbed) startProxyConfig(service, listen string, cfg *netauth.Config) (network, addr string, n *proxyCount) {
	t := tb.t
	t.Helper()
	n = &proxyCount{}
	h := &countingHandler{Handler: slog.NewTextHandler(newTestLog(t), &slog.HandlerOptions{Level: slog.LevelDebug}), n: n}
	p, err := proxy.Listen(proxy.Options{Listen: listen, Remote: tb.addr(service), Config: cfg, Logger: slog.New(h).With("proxy", service)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		p.Close()
		<-done
	})
	network, addr, ok := strings.Cut(p.Addr(), ":")
	if !ok {
		t.Fatalf("proxy address %q is not NETWORK:ADDRESS", p.Addr())
	}
	return network, addr, n
}

// proxyCount counts a proxy's connections to the server, resumed and full.
type proxyCount struct{ resumed, full atomic.Int64 }

// countingHandler counts the proxy's "forwarding a local connection" records (one per
// connection, at debug level) by their "resumed" attribute.
type countingHandler struct {
	slog.Handler
	n *proxyCount
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "forwarding a local connection" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key != "resumed" {
				return true
			}
			if a.Value.Bool() {
				h.n.resumed.Add(1)
			} else {
				h.n.full.Add(1)
			}
			return false
		})
	}
	return h.Handler.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithAttrs(attrs), n: h.n}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{Handler: h.Handler.WithGroup(name), n: h.n}
}

// benchMaildir gives user a fresh ~/Maildir holding n small messages in cur/, owned by the
// user, and removes it when the benchmark ends. Both IMAP servers of the benchmark serve it.
func benchMaildir(b testing.TB, user string, n int) {
	b.Helper()
	a, err := policy.LookupAccount(user)
	if err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(a.Home, "Maildir")
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().Unix()
	for i := range n {
		msg := imapMessage(user+"@example.org", fmt.Sprintf("bench message %d", i),
			strings.Repeat("A line of a message body of ordinary length, to make it ordinary.\r\n", 30))
		name := fmt.Sprintf("%d.M%dP%d.bench,S=%d:2,S", now, i, os.Getpid(), len(msg))
		if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte(msg), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	err = filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(a.UID), int(a.GID))
	})
	if err != nil {
		b.Fatal(err)
	}
}

// dovecotMaster is where Debian's dovecot-core installs Dovecot's master process.
const dovecotMaster = "/usr/sbin/dovecot"

// privateDovecot is a Dovecot instance of the benchmark's own: its configuration, sockets,
// state and log are in its directory, so it never touches the system's Dovecot configuration
// or a running system instance.
type privateDovecot struct {
	dir  string
	addr string // the imaps listener, 127.0.0.1:PORT
	pass string // the test account's password
	ca   *x509.CertPool
	log  string
}

// startPrivateDovecot starts a private Dovecot (`dovecot -F -c CONF`) serving IMAP only, with
// implicit TLS on a free loopback port and a password login for user from a passwd-file whose
// userdb fields run the session as the user with the user's home. loginService is added
// to the service imap-login block (empty: Dovecot's defaults). The instance is stopped, its
// whole process group killed, when the benchmark ends.
func startPrivateDovecot(b testing.TB, name, user, loginService string) *privateDovecot {
	b.Helper()
	a, err := policy.LookupAccount(user)
	if err != nil {
		b.Fatal(err)
	}
	// The login processes chroot into base_dir/login and the auth process runs as dovecot.
	dir := testutil.OpenDir(b, "netauth-bench-dovecot-")
	d := &privateDovecot{dir: dir, log: filepath.Join(dir, "dovecot.log")}
	certPEM, keyPEM := selfSignedCert(b)
	d.ca = x509.NewCertPool()
	if !d.ca.AppendCertsFromPEM(certPEM) {
		b.Fatal("cannot parse the generated certificate")
	}
	write := func(file string, data []byte, mode os.FileMode) string {
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, data, mode); err != nil {
			b.Fatal(err)
		}
		return path
	}
	certFile := write("cert.pem", certPEM, 0o644)
	keyFile := write("key.pem", keyPEM, 0o600)
	pw := make([]byte, 16)
	rand.Read(pw)
	d.pass = hex.EncodeToString(pw)
	// passwd-file: user:password:uid:gid:gecos:home:shell:extra
	passwd := write("passwd", []byte(fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s::\n", user, d.pass, a.UID, a.GID, a.Home)), 0o640)
	g, err := groupID("dovecot")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.Chown(passwd, 0, g); err != nil {
		b.Fatal(err)
	}
	port := freePort(b)
	d.addr = "127.0.0.1:" + strconv.Itoa(port)
	conf := fmt.Sprintf(`# A private Dovecot for BenchmarkIMAPSession: Dovecot's standard path (imap-login, TLS,
# a password checked by the auth process, then the imap process as the user).
instance_name = %[1]s
base_dir = %[2]s/run
state_dir = %[2]s/state
log_path = %[2]s/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <%[3]s
ssl_key = <%[4]s
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[5]s
}
userdb {
  driver = passwd-file
  args = username_format=%%u %[5]s
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = %[6]d
    ssl = yes
  }
%[7]s}
`, name, dir, certFile, keyFile, passwd, port, loginService)
	confFile := write("dovecot.conf", []byte(conf), 0o644)
	for _, sub := range []string{"run", "state"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	cmd := exec.Command(dovecotMaster, "-F", "-c", confFile)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		// The master stops its children on SIGTERM; then kill whatever is left of the group.
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			logText, _ := os.ReadFile(d.log)
			b.Fatalf("dovecot exited: %s\n%s\n%s", cmd.ProcessState, out.String(), logText)
		default:
		}
		if time.Now().After(deadline) {
			logText, _ := os.ReadFile(d.log)
			b.Fatalf("dovecot is not listening on %s after 10s:\n%s\n%s", d.addr, out.String(), logText)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

// groupID returns the gid of group name.
func groupID(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(g.Gid)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(b testing.TB) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// selfSignedCert returns a self-signed ECDSA P-256 certificate for 127.0.0.1 and its key, in
// PEM.
func selfSignedCert(b testing.TB) (certPEM, keyPEM []byte) {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// imapConn is the client side of one IMAP session, reading lines.
type imapConn struct {
	c net.Conn
	r *bufio.Reader
}

func newIMAPConn(c net.Conn) *imapConn {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &imapConn{c: c, r: bufio.NewReader(c)}
}

// greeting reads the server's greeting and checks that it starts with want ("* OK" or
// "* PREAUTH").
func (ic *imapConn) greeting(want string) error {
	line, err := ic.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the greeting: %w", err)
	}
	if !strings.HasPrefix(line, want+" ") {
		return fmt.Errorf("greeting %q, want %s", strings.TrimSpace(line), want)
	}
	return nil
}

// command sends "TAG CMD" and reads responses until the tagged one, which must be OK. It
// returns the untagged responses.
func (ic *imapConn) command(tag, cmd string) ([]string, error) {
	if _, err := io.WriteString(ic.c, tag+" "+cmd+"\r\n"); err != nil {
		return nil, err
	}
	var untagged []string
	for {
		line, err := ic.r.ReadString('\n')
		if err != nil {
			return untagged, fmt.Errorf("%s: %w", strings.Fields(cmd)[0], err)
		}
		line = strings.TrimRight(line, "\r\n")
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return untagged, fmt.Errorf("%s: %q", strings.Fields(cmd)[0], line)
			}
			return untagged, nil
		}
		untagged = append(untagged, line)
	}
}

// selectInbox runs SELECT INBOX and checks that it reports want messages.
func (ic *imapConn) selectInbox(tag string, want int) error {
	untagged, err := ic.command(tag, "SELECT INBOX")
	if err != nil {
		return err
	}
	exists := "* " + strconv.Itoa(want) + " EXISTS"
	for _, l := range untagged {
		if l == exists {
			return nil
		}
	}
	return fmt.Errorf("SELECT INBOX: no %q in %q", exists, untagged)
}
