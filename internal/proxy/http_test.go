// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"ubns.dev/netauth"
)

// httpApp is an in-process netauth server that serves HTTP: it records every request that
// reaches it, answers "user=USER host=HOST method=METHOD path=PATH body=BODY\n", streams
// /stream (one line, then a second once release is closed), and echoes WebSocket messages on
// /ws, prefixed with the user's name.
type httpApp struct {
	*testServer
	release chan struct{}

	mu   sync.Mutex
	seen []string // "METHOD PATH"
}

type appConnKey struct{}

func newHTTPApp(t *testing.T) *httpApp {
	t.Helper()
	ts, ln := listenTestServer(t)
	app := &httpApp{testServer: ts, release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Server{Handler: func(ws *websocket.Conn) {
		user := ws.Request().Context().Value(appConnKey{}).(*netauth.Conn).Identity().User
		for {
			var msg string
			if websocket.Message.Receive(ws, &msg) != nil || websocket.Message.Send(ws, user+": "+msg) != nil {
				return
			}
		}
	}})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-app.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		id := r.Context().Value(appConnKey{}).(*netauth.Conn).Identity()
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1024))
		fmt.Fprintf(w, "user=%s host=%s method=%s path=%s body=%s\n", id.User, r.Host, r.Method, r.URL.Path, body)
	})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			app.mu.Lock()
			app.seen = append(app.seen, r.Method+" "+r.URL.Path)
			app.mu.Unlock()
			mux.ServeHTTP(w, r)
		}),
		ConnContext:       func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, appConnKey{}, c) },
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-served })
	return app
}

// requests returns the requests that reached the app, "METHOD PATH".
func (app *httpApp) requests() []string {
	app.mu.Lock()
	defer app.mu.Unlock()
	return append([]string(nil), app.seen...)
}

// reached reports whether a request for path reached the app.
func (app *httpApp) reached(path string) bool {
	for _, r := range app.requests() {
		if strings.HasSuffix(r, " "+path) {
			return true
		}
	}
	return false
}

// startHTTPProxy starts an HTTP-mode proxy on loopback TCP for app, and returns it with
// its port's host:port.
func startHTTPProxy(t *testing.T, app *httpApp, opts Options) (*Proxy, string, fmt.Stringer) {
	t.Helper()
	opts.Listen, opts.Remote, opts.Config, opts.HTTP = "tcp:127.0.0.1:0", testUserName+"@"+app.addr, app.config(), true
	p, logs := startProxy(t, opts)
	return p, strings.TrimPrefix(p.Addr(), "tcp:"), logs
}

// do sends one request through the proxy at hostport with the given Host and header, and
// returns the status and body.
func do(t *testing.T, hostport, method, host, path string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+hostport+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s) through the proxy: %v", method, path, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHTTPHost: the HTTP proxy serves requests whose Host is its own loopback address, by any
// of its names, and passes that Host to the app unchanged; it answers 421 to any other Host
// (a DNS-rebinding site sends its own name), which never reaches the app, and logs it.
func TestHTTPHost(t *testing.T) {
	app := newHTTPApp(t)
	_, hp, logs := startHTTPProxy(t, app, Options{})
	_, port, _ := net.SplitHostPort(hp)
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "LocalHost:" + port, "[::1]:" + port} {
		status, body := do(t, hp, "GET", host, "/ok", nil, "")
		if want := fmt.Sprintf("user=%s host=%s method=GET path=/ok body=\n", testUserName, host); status != 200 || body != want {
			t.Errorf("Host %s: %d %q; want 200 %q", host, status, body, want)
		}
	}
	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1", "localhost:1", "127.0.0.2:" + port, "localhost.:" + port, "127.0.0.1:" + port + ".evil.example"} {
		status, body := do(t, hp, "GET", host, "/rebound", nil, "")
		if status != http.StatusMisdirectedRequest || !strings.Contains(body, "netauth proxy: 421") || strings.Contains(body, "evil") {
			t.Errorf("Host %s: %d %q; want 421 and a page that does not repeat the Host", host, status, body)
		}
	}
	if app.reached("/rebound") {
		t.Errorf("a request for another Host reached the app: %q", app.requests())
	}
	if !strings.Contains(logs.String(), `refused a request for another host name (DNS rebinding?): GET /rebound, Host \"evil.example:`+port) {
		t.Errorf("the refusal is not logged:\n%s", logs)
	}
}

// TestHTTPCrossOrigin: the HTTP proxy refuses with 403 a request that changes something and
// that a page of another origin made (Origin or Sec-Fetch-Site say so), and forwards the
// same request from its own origin, or from a client that is not a browser; a cross-origin
// GET (a link) passes.
func TestHTTPCrossOrigin(t *testing.T) {
	app := newHTTPApp(t)
	_, hp, logs := startHTTPProxy(t, app, Options{})
	for _, h := range []map[string]string{
		{"Origin": "http://evil.example"},
		{"Origin": "null"},
		{"Origin": "http://localhost:" + strings.Split(hp, ":")[1]}, // another origin for the browser
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"}, // another port of 127.0.0.1
		{"Sec-Fetch-Site": "cross-site", "Origin": "http://" + hp},
	} {
		for _, method := range []string{"POST", "PUT", "DELETE"} {
			status, body := do(t, hp, method, hp, "/csrf", h, "transfer=all")
			if status != http.StatusForbidden || !strings.Contains(body, "netauth proxy: 403") {
				t.Errorf("%s with %v: %d %q; want 403", method, h, status, body)
			}
		}
	}
	if app.reached("/csrf") {
		t.Errorf("a cross-origin request reached the app: %q", app.requests())
	}
	if !strings.Contains(logs.String(), "refused a cross-origin request that may change something: POST /csrf") {
		t.Errorf("the refusal is not logged:\n%s", logs)
	}
	for _, h := range []map[string]string{
		{"Origin": "http://" + hp, "Sec-Fetch-Site": "same-origin"},
		{"Origin": "http://" + hp},
		{"Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "none"}, // typed by the user
		nil,                        // curl
	} {
		status, body := do(t, hp, "POST", hp, "/same", h, "x=1")
		if want := fmt.Sprintf("user=%s host=%s method=POST path=/same body=x=1\n", testUserName, hp); status != 200 || body != want {
			t.Errorf("POST with %v: %d %q; want 200 %q", h, status, body, want)
		}
	}
	status, _ := do(t, hp, "GET", hp, "/link", map[string]string{"Sec-Fetch-Site": "cross-site"}, "")
	if status != 200 || !app.reached("/link") {
		t.Errorf("cross-site GET: %d; want it forwarded", status)
	}
}

// dialWS opens a WebSocket to /ws through the proxy at hostport, with origin and extra
// header.
func dialWS(hostport, origin string, header http.Header) (*websocket.Conn, error) {
	cfg, err := websocket.NewConfig("ws://"+hostport+"/ws", origin)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		cfg.Header[k] = v
	}
	cfg.Dialer = &net.Dialer{Timeout: 10 * time.Second}
	return websocket.DialConfig(cfg)
}

// TestHTTPWebSocket: a WebSocket from the proxy's own origin is relayed to the app and echoes;
// one that another origin's page opens (a GET, which cross-origin protection lets pass) is
// refused with 403 and never reaches the app.
func TestHTTPWebSocket(t *testing.T) {
	app := newHTTPApp(t)
	_, hp, logs := startHTTPProxy(t, app, Options{})
	for _, c := range []struct {
		origin string
		header http.Header
	}{
		{"http://evil.example", nil},
		{"http://127.0.0.1:1", nil},
		{"http://" + hp, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"http://" + hp, http.Header{"Sec-Fetch-Site": {"same-site"}}},
	} {
		ws, err := dialWS(hp, c.origin, c.header)
		if err == nil {
			ws.Close()
			t.Errorf("WebSocket from %s %v: opened; want it refused", c.origin, c.header)
		} else if !strings.Contains(err.Error(), "bad status") {
			t.Errorf("WebSocket from %s %v: %v; want a refusal (bad status)", c.origin, c.header, err)
		}
	}
	if app.reached("/ws") {
		t.Fatalf("a cross-origin WebSocket reached the app: %q", app.requests())
	}
	if !strings.Contains(logs.String(), "refused a cross-origin upgrade (WebSocket) request: GET /ws") {
		t.Errorf("the refusal is not logged:\n%s", logs)
	}

	ws, err := dialWS(hp, "http://"+hp, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	if err != nil {
		t.Fatalf("same-origin WebSocket: %v", err)
	}
	defer ws.Close()
	_ = ws.SetDeadline(time.Now().Add(20 * time.Second))
	for _, msg := range []string{"hello", "again"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil || got != testUserName+": "+msg {
			t.Fatalf("echo of %q: %q, %v", msg, got, err)
		}
	}
}

// TestHTTPKeepAliveAndStreaming: requests through the HTTP proxy reuse the netauth connection
// (one handshake for several requests, even from several local connections), and a response
// is passed on as the app writes it.
func TestHTTPKeepAliveAndStreaming(t *testing.T) {
	app := newHTTPApp(t)
	_, hp, _ := startHTTPProxy(t, app, Options{})
	for i := range 3 {
		if status, _ := do(t, hp, "GET", hp, fmt.Sprintf("/r%d", i), nil, ""); status != 200 {
			t.Fatalf("request %d: %d", i, status)
		}
	}
	if n := app.tcp.N.Load(); n != 1 {
		t.Errorf("3 requests from 3 local connections made %d netauth connections, want 1 kept alive", n)
	}

	c, err := net.DialTimeout("tcp", hp, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET /stream HTTP/1.1\r\nHost: %s\r\n\r\n", hp)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first streamed line: %q, %v (before the app finished the response)", line, err)
	}
	close(app.release)
	if line, err := r.ReadString('\n'); err != nil || line != "second\n" {
		t.Fatalf("second streamed line: %q, %v", line, err)
	}
}

// TestHTTPOtherUID: in HTTP mode too, a connection of another uid (or whose owner is unknown)
// is reset before any HTTP is served, and nothing reaches the server.
func TestHTTPOtherUID(t *testing.T) {
	app := newHTTPApp(t)
	p, logs := listenProxy(t, Options{Listen: "tcp:127.0.0.1:0", Remote: testUserName + "@" + app.addr, Config: app.config(), HTTP: true})
	p.tcpOwner = func(client, server netip.AddrPort) (int, error) { return os.Getuid() + 1, nil }
	serveProxy(t, p)
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.Addr(), "tcp:"), 5*time.Second)
	if err == nil {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", strings.TrimPrefix(p.Addr(), "tcp:"))
		b, err := io.ReadAll(c)
		if len(b) != 0 || err == nil {
			t.Errorf("another uid's connection read %q, %v; want a reset", b, err)
		}
	}
	waitFor(t, "the refusal to be logged", func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf("refused local connection from uid %d", os.Getuid()+1))
	})
	if n := app.tcp.N.Load(); n != 0 {
		t.Errorf("the server saw %d connections, want 0", n)
	}
}

// TestHTTPNeedsTCP: HTTP mode is for browsers, which need a TCP address.
func TestHTTPNeedsTCP(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	_, err := Listen(Options{Remote: "alice@127.0.0.1:1", HTTP: true})
	if err == nil || !strings.Contains(err.Error(), "use -listen tcp:127.0.0.1:PORT") {
		t.Errorf("Listen in HTTP mode on a Unix socket: %v; want an error", err)
	}
}

// TestIdleTimeout: with IdleTimeout the proxy stops once no local connection has been open for
// that long, and not while one is open.
func TestIdleTimeout(t *testing.T) {
	for _, httpMode := range []bool{false, true} {
		t.Run(fmt.Sprintf("http=%v", httpMode), func(t *testing.T) {
			app := newHTTPApp(t)
			p, logs := listenProxy(t, Options{Listen: "tcp:127.0.0.1:0", Remote: testUserName + "@" + app.addr, Config: app.config(),
				HTTP: httpMode, IdleTimeout: 300 * time.Millisecond})
			done := make(chan error, 1)
			go func() { done <- p.Serve(context.Background()) }()
			hp := strings.TrimPrefix(p.Addr(), "tcp:")
			c, err := net.DialTimeout("tcp", hp, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			// A request on the connection, so that it is served (and counted) before the wait.
			fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: %s\r\n\r\n", hp)
			if _, err := c.Read(make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				t.Fatalf("the proxy stopped (%v) while a connection was open", err)
			case <-time.After(time.Second):
			}
			c.Close()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				p.Close()
				t.Fatal("the proxy did not stop after its idle timeout")
			}
			if !strings.Contains(logs.String(), "no local connection for 300ms; stopping") {
				t.Errorf("the stop is not logged:\n%s", logs)
			}
			if c, err := net.DialTimeout("tcp", hp, time.Second); err == nil {
				c.Close()
				t.Errorf("%s still accepts connections", hp)
			}
		})
	}
}

// TestHTTPRefusalLogBounded: what a refused request carried (any web page chooses it) is
// logged cut short, so a page cannot write long lines into the user's proxy log.
func TestHTTPRefusalLogBounded(t *testing.T) {
	app := newHTTPApp(t)
	_, hp, logs := startHTTPProxy(t, app, Options{})
	long := "/" + strings.Repeat("a", 8000)
	if status, _ := do(t, hp, "GET", "evil.example", long, nil, ""); status != http.StatusMisdirectedRequest {
		t.Fatalf("status %d, want 421", status)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > 2000 {
			t.Fatalf("a log line of %d bytes about a refused request: %.200s...", len(line), line)
		}
	}
	if !strings.Contains(logs.String(), "...(cut)") {
		t.Errorf("the refusal's path is not logged cut short:\n%.500s", logs)
	}
}
