// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"golang.org/x/sys/unix"
	"ubns.dev/netauth"
)

// httpBackendService is a web application behind netauth in http-backend mode, on a Unix
// socket, reading X-WEBAUTH-USER (as Grafana and Gitea do by default).
const httpBackendService = `service app {
    listen 127.0.0.1:0
    mode http-backend
    backend unix:WORKER-http.sock
    identity-headers X-WEBAUTH-USER
    run-as account netauth-carol
    users netauth-alice netauth-bob
}
`

// appSeen is what the test application answers: the identity headers it got, and the uid
// and pid of the process that connected to it (from the kernel).
type appSeen struct {
	Webauth, RemoteUser, NetauthUser, Fingerprint, Resumed, XFF string
	UID, PID                                                    int32
}

// startHTTPApp serves the test application on the Unix socket path.
func startHTTPApp(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil { // the worker runs as the service account
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Server{Handler: func(ws *websocket.Conn) {
		user := ws.Request().Header.Get("X-Webauth-User")
		for {
			var msg string
			if websocket.Message.Receive(ws, &msg) != nil || websocket.Message.Send(ws, user+": "+msg) != nil {
				return
			}
		}
	}})
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, _ := r.Context().Value(credKey{}).(*unix.Ucred)
		seen := appSeen{Webauth: r.Header.Get("X-Webauth-User"), RemoteUser: r.Header.Get("Remote-User"),
			NetauthUser: r.Header.Get("X-Netauth-User"), Fingerprint: r.Header.Get("X-Netauth-Key-Fingerprint"),
			Resumed: r.Header.Get("X-Netauth-Resumed"), XFF: r.Header.Get("X-Forwarded-For")}
		if cred != nil {
			seen.UID, seen.PID = int32(cred.Uid), cred.Pid
		}
		_ = json.NewEncoder(w).Encode(seen)
	}))
	srv := &http.Server{
		Handler: mux,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			raw, err := c.(*net.UnixConn).SyscallConn()
			if err != nil {
				return ctx
			}
			var cred *unix.Ucred
			_ = raw.Control(func(fd uintptr) { cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
			return context.WithValue(ctx, credKey{}, cred)
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

type credKey struct{}

// TestHTTPBackendMode: netauthd runs one http-backend worker, as the service account, for
// every user; curl through alice's netauth proxy, claiming to be root in the identity headers,
// reaches the application as alice; bob's requests (raw HTTP on a netauth connection) reach
// it as bob through the same worker; each has a WebSocket through it, and revoking bob closes
// his and leaves alice's working.
func TestHTTPBackendMode(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is missing: %v", err)
	}
	tb := newTestbed(t, httpBackendService)
	tb.useBuiltinWorker()
	startHTTPApp(t, tb.workerBin+"-http.sock")

	port := tb.startProxy("app", "netauth-alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", "--silent", "--show-error", "--fail", "--max-time", "20",
		"-H", "X-WEBAUTH-USER: root", "-H", "X_WEBAUTH_USER: root", "-H", "Remote-User: root", "-H", "X-Netauth-User: root",
		"-H", "Connection: X-Webauth-User",
		"http://127.0.0.1:"+port+"/").Output()
	if err != nil {
		t.Fatalf("curl through alice's proxy: %v (%s)", err, out)
	}
	var alice appSeen
	if err := json.Unmarshal(out, &alice); err != nil {
		t.Fatalf("curl got %q: %v", out, err)
	}
	carol, _ := strconv.Atoi(uidOf(t, "netauth-carol"))
	if alice.Webauth != "netauth-alice" || alice.NetauthUser != "netauth-alice" || alice.RemoteUser != "" ||
		alice.Fingerprint == "" || alice.XFF != "127.0.0.1" || int(alice.UID) != carol {
		t.Fatalf("alice's request reached the application as %+v; want X-WEBAUTH-USER and X-Netauth-User netauth-alice, no Remote-User, from uid %d", alice, carol)
	}

	c, err := netauth.Dial("tcp", tb.addr("app"), tb.config("netauth-bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: app\r\nx-webauth-user: root\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("bob's request %d: %v", i+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var bob appSeen
		if err := json.Unmarshal(body, &bob); err != nil {
			t.Fatalf("bob's request %d: %s %q: %v", i+1, resp.Status, body, err)
		}
		if bob.Webauth != "netauth-bob" || bob.PID != alice.PID || bob.Resumed != "false" {
			t.Fatalf("bob's request %d reached the application as %+v; want netauth-bob, from alice's worker (pid %d)", i+1, bob, alice.PID)
		}
	}

	// A WebSocket each; revoking bob closes his and leaves alice's.
	openWS := func(user string) *websocket.Conn {
		t.Helper()
		c, err := netauth.Dial("tcp", tb.addr("app"), tb.config(user))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		cfg, err := websocket.NewConfig("ws://app/ws", "http://app/")
		if err != nil {
			t.Fatal(err)
		}
		ws, err := websocket.NewClient(cfg, c)
		if err != nil {
			t.Fatalf("%s's WebSocket: %v", user, err)
		}
		return ws
	}
	echo := func(ws *websocket.Conn, msg string) (string, error) {
		if err := websocket.Message.Send(ws, msg); err != nil {
			return "", err
		}
		var got string
		err := websocket.Message.Receive(ws, &got)
		return got, err
	}
	wsAlice, wsBob := openWS("netauth-alice"), openWS("netauth-bob")
	for ws, want := range map[*websocket.Conn]string{wsAlice: "netauth-alice: hi", wsBob: "netauth-bob: hi"} {
		if got, err := echo(ws, "hi"); err != nil || got != want {
			t.Fatalf("WebSocket echo: %q, %v; want %q", got, err, want)
		}
	}
	tb.setKey("netauth-bob", nil)
	var got string
	if err := websocket.Message.Receive(wsBob, &got); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("bob's WebSocket after his key was removed: %q, %v; want it closed", got, err)
	}
	if got, err := echo(wsAlice, "still"); err != nil || got != "netauth-alice: still" {
		t.Fatalf("alice's WebSocket after bob's revocation: %q, %v", got, err)
	}

	tb.d.mu.Lock()
	w := tb.d.workers[workerKey{service: "app"}]
	n := len(tb.d.workers)
	tb.d.mu.Unlock()
	if n != 1 || w == nil || int32(w.pid) != alice.PID {
		t.Fatalf("%d workers (app's: %v), want one shared worker, pid %d", n, w, alice.PID)
	}
}
