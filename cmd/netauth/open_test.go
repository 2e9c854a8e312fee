// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	sshagent "golang.org/x/crypto/ssh/agent"
	"ubns.dev/netauth"
	"ubns.dev/netauth/agent"
)

// connKey is the context key of the netauth connection an HTTP request came on.
type connKey struct{}

// openTestServer starts an in-process netauth server that serves HTTP, answering every
// request with "user=USER host=HOST path=PATH\n": who netauth authenticated, and the Host
// header and path the request carried. Like proxyTestServer it starts an agent holding
// alice's key, named by $NETAUTH_AUTH_SOCK. It returns the server's address and a
// known_hosts file that trusts it.
func openTestServer(t *testing.T) (addr, knownHosts string) {
	t.Helper()
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	_, userKey, _ := ed25519.GenerateKey(rand.Reader)
	userPub, _ := ssh.NewPublicKey(userKey.Public())
	hostPub, _ := ssh.NewPublicKey(hostKey.Public())
	a := agent.New(agent.Options{})
	if err := a.Add(sshagent.AddedKey{PrivateKey: userKey}); err != nil {
		t.Fatal(err)
	}
	aln, sock, err := agent.Listen(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Serve(ctx, aln) }()
	t.Cleanup(func() { cancel(); <-agentDone; os.RemoveAll(filepath.Dir(sock)) })
	t.Setenv(agent.SockEnv, sock)

	ln, err := netauth.Listen("tcp", "127.0.0.1:0", &netauth.ServerConfig{
		HostKey: hostKey, Service: "web", Keys: netauth.StaticKeys{proxyTestUser: {userPub}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := r.Context().Value(connKey{}).(*netauth.Conn)
			fmt.Fprintf(w, "user=%s host=%s path=%s\n", c.Identity().User, r.Host, r.URL.RequestURI())
		}),
		ConnContext:       func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-served })
	addr = ln.Addr().String()
	knownHosts = filepath.Join(t.TempDir(), "known_hosts")
	if err := netauth.Trust(knownHosts, addr, hostPub); err != nil {
		t.Fatal(err)
	}
	return addr, knownHosts
}

var openStarted = regexp.MustCompile(`^netauth open: started a proxy for \S+ \(pid (\d+), log (\S+)\); stop it with: netauth open -stop \S+\n$`)

// openURL runs netauth open with args and returns the URL it printed and the pid of the
// proxy it started (0 if it reused one). A proxy it starts is stopped when the test ends.
func openURL(t *testing.T, args ...string) (url string, pid int) {
	t.Helper()
	code, out, errOut := runCLI(append([]string{"open"}, args...)...)
	if code != 0 || !strings.HasPrefix(out, "http://127.0.0.1:") || strings.Count(out, "\n") != 1 {
		t.Fatalf("netauth open %q: exit %d, stdout %q, stderr %q; want exit 0 and one URL", args, code, out, errOut)
	}
	if errOut != "" {
		m := openStarted.FindStringSubmatch(errOut)
		if m == nil {
			t.Fatalf("netauth open %q wrote %q on standard error", args, errOut)
		}
		pid, _ = strconv.Atoi(m[1])
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	}
	return strings.TrimSuffix(out, "\n"), pid
}

// curl fetches url with curl and returns the body.
func curl(t *testing.T, url string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (CI installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-sS", "--fail", "--max-time", "15", url).CombinedOutput()
	return string(out), err
}

// alive reports whether the process pid still exists (the test process reaps the proxies
// netauth open starts, as their parent, so an exited one does not linger as a zombie).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

// waitExit waits until process pid has gone.
func waitExit(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d is still running", pid)
		}
	}
}

// TestOpen: netauth open starts a proxy on loopback TCP and prints its URL with the path;
// curl through it reaches the web app as alice, which sees the Host header the client sent
// (127.0.0.1:PORT, unchanged); a second netauth open reuses the proxy and prints the same
// URL, and with -b starts $BROWSER on it; -stop stops it; a new proxy takes the same port again, also after the previous one
// was killed without a chance to clean up.
func TestOpen(t *testing.T) {
	addr, knownHosts := openTestServer(t)
	t.Setenv("XDG_RUNTIME_DIR", privateDir(t))
	target := proxyTestUser + "@" + addr
	url, pid := openURL(t, "-known-hosts", knownHosts, "-service", "web", target+"/page?x=1")
	if pid == 0 {
		t.Fatal("the first netauth open did not start a proxy")
	}
	hostport := strings.TrimPrefix(url[:strings.Index(url[len("http://"):], "/")+len("http://")], "http://")
	if want := "http://" + hostport + "/page?x=1"; url != want {
		t.Errorf("netauth open printed %q, want %q", url, want)
	}
	body, err := curl(t, url)
	if want := fmt.Sprintf("user=%s host=%s path=/page?x=1\n", proxyTestUser, hostport); err != nil || body != want {
		t.Errorf("curl %s: %v, %q; want %q", url, err, body, want)
	}

	// Reuse: the same URL (another path), nothing started.
	again, pid2 := openURL(t, "-known-hosts", knownHosts, target+"/other")
	if pid2 != 0 || again != "http://"+hostport+"/other" {
		t.Errorf("second netauth open: %q, started pid %d; want http://%s/other from the running proxy", again, pid2, hostport)
	}
	if !alive(pid) {
		t.Errorf("the first proxy (pid %d) is gone", pid)
	}

	// -b starts the first program of $BROWSER that exists, with the URL.
	dir := t.TempDir()
	script := filepath.Join(dir, "browser")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" > "+dir+"/opened.tmp && mv "+dir+"/opened.tmp "+dir+"/opened\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BROWSER", "netauth-no-such-browser:"+script)
	if url, _ := openURL(t, "-b", target+"/b"); url != "http://"+hostport+"/b" {
		t.Errorf("netauth open -b printed %q", url)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(dir, "opened"))
		if err == nil {
			if got, want := string(b), "http://"+hostport+"/b\n"; got != want {
				t.Errorf("-b started $BROWSER with %q, want %q", got, want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("-b did not start $BROWSER")
		}
	}

	// -stop stops it; the port then refuses connections.
	code, out, errOut := runCLI("open", "-stop", target)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("stopped the proxy for %s on %s (pid %d)", target, hostport, pid)) {
		t.Fatalf("netauth open -stop: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	waitExit(t, pid)
	if c, err := net.DialTimeout("tcp", hostport, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after -stop", hostport)
	}
	code, _, errOut = runCLI("open", "-stop", target)
	if want := "netauth open: no proxy runs for " + target + "\n"; code != 1 || errOut != want {
		t.Errorf("second -stop: exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}

	// A new proxy takes the port of the last one; killed with SIGKILL (no clean-up), it is
	// replaced by another, on that port again.
	for _, how := range []string{"stopped", "killed"} {
		url, pid3 := openURL(t, "-known-hosts", knownHosts, target)
		if pid3 == 0 || pid3 == pid || url != "http://"+hostport+"/" {
			t.Fatalf("netauth open after the proxy was %s: %q, pid %d; want a new proxy on http://%s/", how, url, pid3, hostport)
		}
		if body, err := curl(t, url); err != nil || !strings.HasPrefix(body, "user="+proxyTestUser+" host="+hostport+" ") {
			t.Errorf("curl %s: %v, %q", url, err, body)
		}
		if err := syscall.Kill(pid3, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitExit(t, pid3)
		pid = pid3
	}
}

// curlStatus runs curl on url with extra arguments and returns the HTTP status and body.
func curlStatus(t *testing.T, url string, args ...string) (int, string) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (CI installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args = append([]string{"-sS", "--max-time", "15", "-w", "\n%{http_code}"}, append(args, url)...)
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		t.Fatalf("curl %q: %v (%s)", args, err, out)
	}
	i := strings.LastIndex(string(out), "\n")
	n, _ := strconv.Atoi(string(out[i+1:]))
	return n, string(out[:i])
}

// TestOpenGuardsBrowser: the proxy netauth open starts serves HTTP and refuses what another
// site's page could make the browser send: a request for another Host (DNS rebinding) and a
// cross-origin POST; its own origin's POST is forwarded. With -idle it stops once no
// connection has been open that long, releasing its state, and the next netauth open starts
// another.
func TestOpenGuardsBrowser(t *testing.T) {
	addr, knownHosts := openTestServer(t)
	t.Setenv("XDG_RUNTIME_DIR", privateDir(t))
	target := proxyTestUser + "@" + addr
	url, pid := openURL(t, "-known-hosts", knownHosts, "-idle", "1s", target)
	hostport := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	_, port, _ := net.SplitHostPort(hostport)

	if code, body := curlStatus(t, url, "-H", "Host: rebound.example:"+port); code != 421 {
		t.Errorf("request for Host rebound.example:%s: %d %q; want 421", port, code, body)
	}
	if code, body := curlStatus(t, url, "-d", "x=1", "-H", "Origin: http://evil.example"); code != 403 {
		t.Errorf("cross-origin POST: %d %q; want 403", code, body)
	}
	want := fmt.Sprintf("user=%s host=%s path=/\n", proxyTestUser, hostport)
	if code, body := curlStatus(t, url, "-d", "x=1", "-H", "Origin: http://"+hostport); code != 200 || body != want {
		t.Errorf("same-origin POST: %d %q; want 200 %q", code, body, want)
	}
	logPath := filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "netauth", "open-127.0.0.1-"+strings.Split(addr, ":")[1]+"-as-"+proxyTestUser+".log")
	log, _ := os.ReadFile(logPath)
	for _, w := range []string{"refused a request for another host name", "refused a cross-origin request that may change something"} {
		if !strings.Contains(string(log), w) {
			t.Errorf("the proxy's log does not say %q:\n%s", w, log)
		}
	}

	waitExit(t, pid)
	if log, _ := os.ReadFile(logPath); !strings.Contains(string(log), "no local connection for 1s; stopping") {
		t.Errorf("the idle proxy did not log why it stopped:\n%s", log)
	}
	if again, pid2 := openURL(t, "-known-hosts", knownHosts, target); pid2 == 0 || again != url {
		t.Errorf("netauth open after the idle proxy stopped: %q, pid %d; want a new proxy on %s", again, pid2, url)
	}
}
