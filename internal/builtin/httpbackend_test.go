// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/net/websocket"
	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/testutil"
)

// httpSeen is what the test HTTP backend reports about a request.
type httpSeen struct {
	Header     map[string][]string
	Host       string
	RemoteAddr string
	Path       string
}

// testHTTPBackend serves on ln: /echo answers with the httpSeen of the request; /stream sends
// "first\n", flushes, and sends "second\n" once release is closed; /ws is a WebSocket
// echo that prefixes each message with the X-Netauth-User of its handshake.
func testHTTPBackend(t *testing.T, ln net.Listener) (release chan struct{}) {
	t.Helper()
	release = make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(httpSeen{Header: r.Header, Host: r.Host, RemoteAddr: r.RemoteAddr, Path: r.URL.Path})
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		_, _ = io.WriteString(w, "second\n")
	})
	mux.Handle("/ws", websocket.Server{Handler: func(ws *websocket.Conn) {
		user := ws.Request().Header.Get("X-Netauth-User")
		for {
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(ws, user+": "+msg); err != nil {
				return
			}
		}
	}})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return release
}

// httpBackendServer serves the http-backend worker forwarding to addr with the given identity
// headers (none: the defaults).
func httpBackendServer(t *testing.T, addr string, headers ...string) *server {
	t.Helper()
	stderr := &testutil.Buffer{}
	b, err := httpBackendHandler(append([]string{addr}, headers...), NewLogger(stderr))
	if err != nil {
		t.Fatal(err)
	}
	s := newListenerServer(t, func(ln *netauth.Listener) error { return b.serve(ln) })
	s.stderr = stderr
	return s
}

// roundTrip writes the raw request req on c and reads the response.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, req string) *http.Response {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return resp
}

// echoed reads the test backend's /echo answer.
func echoed(t *testing.T, resp *http.Response) httpSeen {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s: %s", resp.Status, body)
	}
	var seen httpSeen
	if err := json.Unmarshal(body, &seen); err != nil {
		t.Fatalf("backend answered %q: %v", body, err)
	}
	return seen
}

// spoofed is the start of a request whose client claims to be root in every identity header,
// in several spellings, and lists Remote-User in Connection; spoof ends it.
const spoofed = "GET /echo HTTP/1.1\r\n" +
	"Host: app.example\r\n" +
	"Remote-User: root\r\n" +
	"remote-user: root\r\n" +
	"Remote_User: root\r\n" +
	"REMOTE_USER: root\r\n" +
	"X-Forwarded-User: root\r\n" +
	"X-Netauth-User: root\r\n" +
	"x_netauth_user: root\r\n" +
	"X-Netauth-Key-Fingerprint: SHA256:forged-root\r\n" +
	"X-Netauth-Resumed: root\r\n" +
	"X-Netauth-Other: root\r\n" +
	"X-Forwarded-For: 10.9.9.9\r\n" +
	"X-Forwarded-Host: root.example\r\n" +
	"X-Forwarded-Proto: https\r\n" +
	"Forwarded: for=10.9.9.9;host=root.example\r\n" +
	"Connection: keep-alive, Remote-User, X-Netauth-User\r\n"

// spoof returns the spoofed request, with the given headers also claimed in several spellings.
func spoof(headers []string) string {
	out := spoofed
	for _, h := range headers {
		out += h + ": root\r\n" + strings.ToLower(h) + ": root\r\n" + strings.ReplaceAll(h, "-", "_") + ": root\r\n"
	}
	return out + "\r\n"
}

// plain is a request without any identity header.
const plain = "GET /echo HTTP/1.1\r\nHost: app.example\r\n\r\n"

// TestHTTPBackendIdentityHeaders: through a TCP and a Unix backend, with the default and with
// configured identity headers, every identity header the client sent (in any case, with '_'
// for '-', or listed in Connection) is gone and the worker's are set from the connection's
// identity; X-Forwarded-* name the client; two requests on one netauth connection both reach
// the backend, over one kept-alive backend connection; a resumed connection says so.
func TestHTTPBackendIdentityHeaders(t *testing.T) {
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testHTTPBackend(t, tcpLn)
	sock := filepath.Join(t.TempDir(), "app.sock")
	unixLn, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	testHTTPBackend(t, unixLn)
	for _, tt := range []struct {
		addr    string
		headers []string
		want    []string // headers set to the user's name
		unset   []string // headers that must be absent
	}{
		{addr: "tcp:" + tcpLn.Addr().String(), want: []string{"Remote-User", "X-Forwarded-User", "X-Netauth-User"}},
		{addr: "unix:" + sock, want: []string{"Remote-User", "X-Forwarded-User", "X-Netauth-User"}},
		{addr: "tcp:" + tcpLn.Addr().String(), headers: []string{"X-Grafana-User", "X-WEBAUTH-USER"}, want: []string{"X-Grafana-User", "X-Webauth-User", "X-Netauth-User"}, unset: []string{"Remote-User", "X-Forwarded-User"}},
	} {
		s := httpBackendServer(t, tt.addr, tt.headers...)
		fp := ssh.FingerprintSHA256(s.client.Signer.PublicKey())
		for conn, resumed := range []bool{false, true} {
			c := s.dial(t)
			r := bufio.NewReader(c)
			first := echoed(t, roundTrip(t, c, r, spoof(tt.headers)))
			second := echoed(t, roundTrip(t, c, r, plain))
			clientHost, _, _ := net.SplitHostPort(c.LocalAddr().String())
			for i, seen := range []httpSeen{first, second} {
				where := tt.addr + " " + strings.Join(tt.headers, ",") + ": connection " + string(rune('1'+conn)) + " request " + string(rune('1'+i))
				for name, vals := range seen.Header {
					for _, v := range vals {
						if strings.Contains(v, "root") || strings.Contains(v, "10.9.9.9") {
							t.Errorf("%s: the backend got the client's %s: %q", where, name, v)
						}
					}
					if strings.Contains(name, "_") {
						t.Errorf("%s: the backend got header %s: %q", where, name, vals)
					}
				}
				want := map[string]string{
					"X-Netauth-Key-Fingerprint": fp,
					"X-Netauth-Resumed":         map[bool]string{false: "false", true: "true"}[resumed],
					"X-Forwarded-For":           clientHost,
					"X-Forwarded-Host":          "app.example",
					"X-Forwarded-Proto":         "http",
				}
				for _, h := range tt.want {
					want[h] = "alice"
				}
				for h, v := range want {
					if got := seen.Header[h]; len(got) != 1 || got[0] != v {
						t.Errorf("%s: %s = %q, want %q", where, h, got, v)
					}
				}
				for _, h := range append(tt.unset, "Forwarded", "X-Netauth-Other") {
					if got, ok := seen.Header[h]; ok {
						t.Errorf("%s: %s = %q, want it absent", where, h, got)
					}
				}
				if seen.Host != "app.example" || seen.Path != "/echo" {
					t.Errorf("%s: Host %q, path %q", where, seen.Host, seen.Path)
				}
			}
			if strings.HasPrefix(tt.addr, "tcp:") && first.RemoteAddr != second.RemoteAddr {
				t.Errorf("%s: the two requests reached the backend from %s and %s, want one kept-alive connection", tt.addr, first.RemoteAddr, second.RemoteAddr)
			}
			c.Close()
		}
	}
}

// TestHTTPBackendStreaming: a response the backend sends in pieces reaches the client piece by
// piece, before the backend has finished it.
func TestHTTPBackendStreaming(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := testHTTPBackend(t, ln)
	s := httpBackendServer(t, "tcp:"+ln.Addr().String())
	c := s.dial(t)
	r := bufio.NewReader(c)
	resp := roundTrip(t, c, r, "GET /stream HTTP/1.1\r\nHost: app\r\n\r\n")
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("the first piece, before the backend finished: %q, %v", line, err)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("the rest: %q, %v", rest, err)
	}
}

// TestHTTPBackendWebSocket: a WebSocket upgrade goes through (101 Switching Protocols), with
// the user's identity in the handshake the backend sees, and messages go both ways.
func TestHTTPBackendWebSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ws.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	testHTTPBackend(t, ln)
	s := httpBackendServer(t, "unix:"+sock)
	c := s.dial(t)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cfg, err := websocket.NewConfig("ws://app.example/ws", "http://app.example/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Header = http.Header{"X-Netauth-User": {"root"}, "Remote_User": {"root"}}
	ws, err := websocket.NewClient(cfg, c)
	if err != nil {
		t.Fatalf("WebSocket handshake through the worker: %v", err)
	}
	for _, msg := range []string{"hello", strings.Repeat("x", 100000)} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if got != "alice: "+msg {
			t.Fatalf("echo of %d bytes: got %d bytes starting %.20q, want \"alice: \" and the message", len(msg), len(got), got)
		}
	}
}

// TestHTTPBackendDown: with no backend listening, the client gets 502 and a body saying so
// (without the reason), at once, on a connection that stays usable; the worker logs a warning
// naming the backend and the user.
func TestHTTPBackendDown(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	s := httpBackendServer(t, "unix:"+sock)
	c := s.dial(t)
	r := bufio.NewReader(c)
	start := time.Now()
	for i := 0; i < 2; i++ {
		resp := roundTrip(t, c, r, plain)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusBadGateway || string(body) != badGatewayBody {
			t.Fatalf("request %d: %s %q, %v; want 502 %q", i+1, resp.Status, body, err, badGatewayBody)
		}
		if strings.Contains(string(body), sock) {
			t.Fatalf("the body names the socket: %q", body)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the 502s took %v", d)
	}
	waitFor(t, 5*time.Second, "no warning logged: "+s.stderr.String(), func() bool {
		return s.hasRecord(t, "WARN", "http-backend: the backend did not answer", map[string]any{"user": "alice", "backend": "unix:" + sock})
	})
}

// TestHTTPBackendLimits: a request whose header is larger than the worker's limit gets 431
// from the worker.
func TestHTTPBackendLimits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testHTTPBackend(t, ln)
	s := httpBackendServer(t, "tcp:"+ln.Addr().String())
	c := s.dial(t)
	r := bufio.NewReader(c)
	big := "GET /echo HTTP/1.1\r\nHost: app\r\nX-Big: " + strings.Repeat("b", httpMaxHeaderBytes+4096) + "\r\n\r\n"
	resp := roundTrip(t, c, r, big)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a %d-byte header: %s, want 431", len(big), resp.Status)
	}
}

// TestHTTPBackendArgs: the worker refuses identity headers the configuration would refuse.
func TestHTTPBackendArgs(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"tcp:example.org:80"},
		{"tcp:127.0.0.1:80", "Remote_User"},
		{"tcp:127.0.0.1:80", "X-Netauth-User"},
		{"tcp:127.0.0.1:80", "Host"},
		{"tcp:127.0.0.1:80", "A", "B", "C", "D", "E", "F", "G", "H", "I"},
		{"tcp:127.0.0.1:80", "Remote-User", "remote-user"},
	} {
		if _, err := httpBackendHandler(args, NewLogger(io.Discard)); err == nil {
			t.Errorf("http-backend %q: accepted", args)
		}
	}
	b, err := httpBackendHandler([]string{"unix:/run/app.sock"}, NewLogger(io.Discard))
	if err != nil || strings.Join(b.userHeaders, " ") != "Remote-User X-Forwarded-User" {
		t.Fatalf("http-backend without headers: %v, %v; want the defaults", b, err)
	}
}
