// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/testutil"
)

// webConnKey is the context key of the netauth connection an HTTP request came on.
type webConnKey struct{}

// runHTTPWhoami is the worker "httpwhoami": an HTTP server on netauth.Listen that answers
// every request with a page naming the user netauth authenticated, the uid and pid of the
// worker serving it, and the Host header the request carried.
func runHTTPWhoami() int {
	ln, err := netauth.Listen("", "", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Context().Value(webConnKey{}).(*netauth.Conn).Identity()
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!DOCTYPE html>
<html><head><title>whoami</title></head>
<body><h1 id="user">%s</h1>
<p>uid <span id="uid">%d</span>, pid <span id="pid">%d</span>, Host <span id="host">%s</span></p>
</body></html>
`, html.EscapeString(id.User), os.Getuid(), os.Getpid(), html.EscapeString(r.Host))
		}),
		ConnContext:       func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, webConnKey{}, c) },
		ReadHeaderTimeout: 10 * time.Second,
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

const httpWhoamiService = `service web {
    listen 127.0.0.1:0
    program WORKER
    args httpwhoami
    users netauth-alice netauth-bob
    idle-timeout 1m
}
`

var (
	netauthOnce sync.Once
	netauthBin  string
	netauthErr  error
)

// buildNetauth builds the netauth command into a directory every test account may read
// (removed with the acceptor's, at the end of the tests).
func buildNetauth(t testing.TB) string {
	buildAcceptor(t)
	netauthOnce.Do(func() {
		netauthBin = filepath.Join(acceptorDir, "netauth")
		cmd := exec.Command("go", "build", "-o", netauthBin, "ubns.dev/netauth/cmd/netauth")
		if out, err := cmd.CombinedOutput(); err != nil {
			netauthErr = fmt.Errorf("building netauth: %v: %s", err, out)
		}
	})
	if netauthErr != nil {
		t.Fatal(netauthErr)
	}
	return netauthBin
}

// webUser is a test account with what its own browser needs: a home directory, an
// ssh-agent holding a key netauthd knows, and the URL netauth open printed for the web
// service.
type webUser struct {
	name     string
	acct     *policy.Account
	home     string // XDG_RUNTIME_DIR is home/run
	url      string
	proxyPid int
}

// newWebUser sets up name's side: a private home owned by the account, OpenSSH's ssh-agent
// running as the account with a new key that tb authorizes, and `netauth open` run as the
// account for the service at addr, whose proxy is stopped when the test ends.
func newWebUser(t *testing.T, tb *testbed, name, addr string) *webUser {
	t.Helper()
	acct, err := policy.LookupAccount(name)
	if err != nil {
		t.Fatal(err)
	}
	u := &webUser{name: name, acct: acct, home: filepath.Join(testutil.OpenDir(t, "netauth-web-"), "home")}
	for _, d := range []string{u.home, filepath.Join(u.home, "run")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, int(acct.UID), int(acct.GID)); err != nil {
			t.Fatal(err)
		}
	}
	known, err := os.ReadFile(tb.known)
	if err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(u.home, "known_hosts")
	if err := os.WriteFile(knownHosts, known, 0o644); err != nil {
		t.Fatal(err)
	}

	// The user's agent, run as the user; the test (root) may add a key to it.
	sock := filepath.Join(u.home, "agent.sock")
	agentCmd := exec.Command("ssh-agent", "-D", "-a", sock)
	agentCmd.SysProcAttr = u.sysProcAttr()
	if err := agentCmd.Start(); err != nil {
		t.Skipf("starting OpenSSH's ssh-agent (CI installs openssh-client): %v", err)
	}
	t.Cleanup(func() { agentCmd.Process.Kill(); agentCmd.Wait() })
	var ac net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ac, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's ssh-agent does not accept connections: %v", name, err)
		}
	}
	defer ac.Close()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if err := sshagent.NewClient(ac).Add(sshagent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	tb.setKey(name, pub)

	env := []string{"HOME=" + u.home, "XDG_RUNTIME_DIR=" + filepath.Join(u.home, "run"), "SSH_AUTH_SOCK=" + sock, "PATH=/usr/bin:/bin"}
	out, errOut, err := u.run(env, "open", "-known-hosts", knownHosts, "-service", "web", addr+"/hello")
	m := regexp.MustCompile(`\(pid (\d+),`).FindStringSubmatch(errOut)
	if m != nil {
		u.proxyPid, _ = strconv.Atoi(m[1])
		t.Cleanup(func() {
			if _, errOut, err := u.run(env, "open", "-stop", addr); err != nil {
				t.Errorf("netauth open -stop as %s: %v: %s", name, err, errOut)
			}
			_ = syscall.Kill(u.proxyPid, syscall.SIGKILL)
		})
	}
	if err != nil || m == nil || !strings.HasPrefix(out, "http://127.0.0.1:") {
		t.Fatalf("netauth open as %s: %v, stdout %q, stderr %q; want a URL and the proxy it started", name, err, out, errOut)
	}
	u.url = strings.TrimSpace(out)
	return u
}

func (u *webUser) sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.acct.UID, Gid: u.acct.GID, Groups: []uint32{}}}
}

// run runs the netauth command as the user with env, bounded, and returns its output.
func (u *webUser) run(env []string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, netauthBin, args...)
	cmd.Env, cmd.Dir, cmd.SysProcAttr = env, u.home, u.sysProcAttr()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// hostPort returns the host:port of an http:// URL.
func hostPort(url string) string {
	rest := strings.TrimPrefix(url, "http://")
	hp, _, _ := strings.Cut(rest, "/")
	return hp
}

// TestChromiumPerUserWorker: two users, each with headless Chromium running as them, load the
// local URL `netauth open` (run as them) printed for a web service whose per-user worker
// answers HTTP. Each page shows that user's name, served by a worker running with that user's
// uid, with the Host header the browser sent (127.0.0.1:PORT, as the local proxy relays it);
// bob's browser cannot use alice's proxy (it refuses processes of other uids, and says so in
// its log). Screenshots of both pages are written (under $NETAUTH_TEST_ARTIFACTS when set).
func TestChromiumPerUserWorker(t *testing.T) {
	tb := newTestbed(t, httpWhoamiService)
	buildNetauth(t)
	addr := tb.addr("web")
	users := map[string]*webUser{}
	for _, name := range []string{"netauth-alice", "netauth-bob"} {
		users[name] = newWebUser(t, tb, name, addr)
	}
	alice, bob := users["netauth-alice"], users["netauth-bob"]
	if alice.url == bob.url {
		t.Fatalf("alice and bob were given the same URL %s", alice.url)
	}
	field := func(dom, id string) string {
		m := regexp.MustCompile(`<[a-z0-9]+ id="` + id + `">([^<]*)<`).FindStringSubmatch(dom)
		if m == nil {
			return ""
		}
		return html.UnescapeString(m[1])
	}
	for _, u := range []*webUser{alice, bob} {
		browser := testutil.NewBrowser(t, int(u.acct.UID), int(u.acct.GID))
		dom, err := browser.DOM(u.url)
		if err != nil {
			t.Fatalf("%s's browser on %s: %v", u.name, u.url, err)
		}
		if got := field(dom, "user"); got != u.name {
			t.Errorf("%s's page names user %q, want %q; DOM:\n%s", u.name, got, u.name, dom)
		}
		if got, want := field(dom, "uid"), strconv.Itoa(int(u.acct.UID)); got != want {
			t.Errorf("%s's page was served by uid %s, want %s (the user's own worker)", u.name, got, want)
		}
		if got, want := field(dom, "host"), hostPort(u.url); got != want {
			t.Errorf("%s's page saw Host %q, want %q (what the browser sent, relayed unchanged)", u.name, got, want)
		}
		shot, err := browser.Screenshot(u.url, strings.TrimPrefix(u.name, "netauth-")+".png", 800, 400)
		if err != nil {
			t.Fatalf("screenshot of %s's page: %v", u.name, err)
		}
		t.Logf("%s's page: %s", u.name, shot)

		if u == bob {
			// Bob's browser on alice's proxy: refused before anything reaches the server.
			dom, err := browser.DOM(alice.url)
			var le *testutil.LoadError
			if !errors.As(err, &le) || strings.Contains(dom, alice.name) {
				t.Errorf("bob's browser on alice's proxy %s: %v, DOM %q; want the page to fail to load", alice.url, err, dom)
			}
			logFile := filepath.Join(alice.home, "run", "netauth", "open-"+strings.ReplaceAll(hostPort("http://"+addr), ":", "-")+".log")
			log, _ := os.ReadFile(logFile)
			if want := fmt.Sprintf("refused local connection from uid %d", bob.acct.UID); !strings.Contains(string(log), want) {
				t.Errorf("alice's proxy log %s does not say %q:\n%s", logFile, want, log)
			}
		}
	}
}
