// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// upgradingBackend serves on ln a backend that switches protocols (101) for any Upgrade it is
// asked for, and then reads HTTP/1.1 requests from the switched connection, as an h2c server
// reads HTTP/2 ones: each request's Remote-User, the one of the upgrade request first, is
// sent on users.
func upgradingBackend(t *testing.T, ln net.Listener) (users chan string) {
	t.Helper()
	users = make(chan string, 16)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				switched := false
				for {
					req, err := http.ReadRequest(r)
					if err != nil {
						return
					}
					users <- req.Header.Get("Remote-User")
					_, _ = io.Copy(io.Discard, req.Body)
					if up := req.Header.Get("Upgrade"); up != "" && !switched {
						switched = true
						_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+up+"\r\n\r\n")
						continue
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	return users
}

// TestRedteamHTTPBackendUpgradeSmuggling: a client may not switch its connection to the
// backend to a protocol other than WebSocket (h2c, or anything the backend offers): past a
// 101 the worker relays bytes it no longer reads, so the client could then send the backend
// requests with identity headers of its choosing. The upgrade is not passed on, and the
// backend never sees a request claiming another user.
func TestRedteamHTTPBackendUpgradeSmuggling(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	users := upgradingBackend(t, ln)
	s := httpBackendServer(t, "tcp:"+ln.Addr().String())
	for _, proto := range []string{"h2c", "smuggle/1", "WebSocket2"} {
		c := s.dial(t)
		r := bufio.NewReader(c)
		resp := roundTrip(t, c, r, "GET / HTTP/1.1\r\nHost: app.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: "+proto+"\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusSwitchingProtocols {
			// What a client past the switch can send the backend.
			_, _ = io.WriteString(c, "GET /admin HTTP/1.1\r\nHost: app.example\r\nRemote-User: root\r\n\r\n")
			_, _ = http.ReadResponse(r, nil)
		}
		c.Close()
		if resp.StatusCode == http.StatusSwitchingProtocols {
			t.Errorf("Upgrade: %s: the client got %s", proto, resp.Status)
		}
	drain:
		for {
			select {
			case u := <-users:
				if u != "alice" {
					t.Errorf("Upgrade: %s: the backend got a request from Remote-User %q", proto, u)
				}
			case <-time.After(200 * time.Millisecond):
				break drain
			}
		}
	}
}

// TestRedteamHTTPBackendClientIP: the client's claims about its address in X-Real-IP and
// True-Client-IP, which applications (and their frameworks' "real IP" middleware) trust from a
// proxy as they trust X-Forwarded-For, do not reach the backend.
func TestRedteamHTTPBackendClientIP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testHTTPBackend(t, ln)
	s := httpBackendServer(t, "tcp:"+ln.Addr().String())
	c := s.dial(t)
	seen := echoed(t, roundTrip(t, c, bufio.NewReader(c), "GET /echo HTTP/1.1\r\nHost: app.example\r\nX-Real-IP: 10.9.9.9\r\nx_real_ip: 10.9.9.9\r\nTrue-Client-IP: 10.9.9.9\r\n\r\n"))
	for name, vals := range seen.Header {
		for _, v := range vals {
			if strings.Contains(v, "10.9.9.9") {
				t.Errorf("the backend got the client's %s: %q", name, v)
			}
		}
	}
}
