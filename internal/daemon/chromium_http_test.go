// SPDX-License-Identifier: Apache-2.0

package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"ubns.dev/netauth/internal/testutil"
)

// browserAppService is a shared web application behind netauthd in http-backend mode, on a
// Unix socket, reading the default identity headers (Remote-User, X-Forwarded-User). The
// service is named web, as newWebUser's netauth open expects.
const browserAppService = `service web {
    listen 127.0.0.1:0
    mode http-backend
    backend unix:WORKER-http.sock
    run-as account netauth-carol
    users netauth-alice netauth-bob
}
`

// appRequest is a request that reached the browser test's application.
type appRequest struct {
	method, path, user, origin string
}

func (r appRequest) String() string {
	return fmt.Sprintf("%s %s as %q from origin %q", r.method, r.path, r.user, r.origin)
}

// heldPages lets a test page's HTML stay unfinished until the page's own script reports
// that it is done: Chromium's --dump-dom and --screenshot take the page once it has loaded,
// and a document whose response has not ended has not loaded. So what the script writes into
// the DOM (after fetches and a WebSocket) is in the DOM they take.
type heldPages struct {
	mu      sync.Mutex
	waiting map[string]chan struct{}
}

// serve writes head, then waits (at most 30s) until release is called with the token it
// passed to head, then writes tail.
func (h *heldPages) serve(w http.ResponseWriter, r *http.Request, head func(token string) string, tail string) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	done := make(chan struct{})
	h.mu.Lock()
	if h.waiting == nil {
		h.waiting = map[string]chan struct{}{}
	}
	h.waiting[token] = done
	h.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, head(token))
	w.(http.Flusher).Flush()
	select {
	case <-done:
	case <-r.Context().Done():
	case <-time.After(30 * time.Second):
	}
	io.WriteString(w, tail)
}

// release ends the page of token.
func (h *heldPages) release(token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.waiting[token]; ok {
		close(c)
		delete(h.waiting, token)
	}
}

// browserApp is the shared application of the browser tests. It greets the user the
// Remote-User header names; its page's script fetches /whoami claiming to be root (the app
// answers with the Remote-User it saw), POSTs to /post, and echoes a message over a WebSocket
// on /ws, writing each answer into the page. It records every request that reaches it.
type browserApp struct {
	held heldPages
	mu   sync.Mutex
	reqs []appRequest
}

// startBrowserApp serves the application on the Unix socket path (mode 0666: the worker runs
// as the service account).
func startBrowserApp(t *testing.T, path string) *browserApp {
	t.Helper()
	app := &browserApp{}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Server{Handler: func(ws *websocket.Conn) {
		for {
			var msg string
			if websocket.Message.Receive(ws, &msg) != nil || websocket.Message.Send(ws, "echo: "+msg) != nil {
				return
			}
		}
	}})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("Remote-User"))
	})
	mux.HandleFunc("/post", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "posted as "+r.Header.Get("Remote-User"))
	})
	mux.HandleFunc("/done", func(w http.ResponseWriter, r *http.Request) {
		app.held.release(r.URL.Query().Get("t"))
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		user := html.EscapeString(r.Header.Get("Remote-User"))
		app.held.serve(w, r, func(token string) string {
			return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>app</title></head>
<body><h1>Hello, <span id="greeted">` + user + `</span></h1>
<p>The app saw a request claiming to be root as: <b id="seen">pending</b></p>
<p>POST: <b id="post">pending</b></p>
<p>WebSocket: <b id="echo">pending</b></p>
<script>
(async () => {
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  try {
    const r = await fetch('/whoami', {headers: {'Remote-User': 'root', 'X-Forwarded-User': 'root'}});
    set('seen', await r.text());
  } catch (e) { set('seen', 'error: ' + e); }
  try {
    const r = await fetch('/post', {method: 'POST', body: 'same-origin'});
    set('post', r.status + ' ' + await r.text());
  } catch (e) { set('post', 'error: ' + e); }
  await new Promise(done => {
    const ws = new WebSocket('ws://' + location.host + '/ws');
    ws.onopen = () => ws.send('hello from ` + token + `');
    ws.onmessage = ev => { set('echo', ev.data); ws.close(); done(); };
    ws.onerror = () => { set('echo', 'WebSocket error'); done(); };
  });
  await fetch('/done?t=` + token + `');
})();
</script>
`
		}, "</body></html>\n")
	})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			app.mu.Lock()
			app.reqs = append(app.reqs, appRequest{r.Method, r.URL.Path, r.Header.Get("Remote-User"), r.Header.Get("Origin")})
			app.mu.Unlock()
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return app
}

// requests returns the requests that reached the application.
func (app *browserApp) requests() []appRequest {
	app.mu.Lock()
	defer app.mu.Unlock()
	return append([]appRequest(nil), app.reqs...)
}

// domField returns the text of the element with id in dom.
func domField(dom, id string) string {
	m := regexp.MustCompile(`<[a-z0-9]+ id="` + id + `">([^<]*)<`).FindStringSubmatch(dom)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// startBrowserAppTestbed starts netauthd with the http-backend service in front of the
// application, and alice's and bob's sides (agent, netauth open).
func startBrowserAppTestbed(t *testing.T) (*browserApp, *webUser, *webUser) {
	requireRoot(t)
	tb := newTestbed(t, browserAppService)
	tb.useBuiltinWorker()
	app := startBrowserApp(t, tb.workerBin+"-http.sock")
	buildNetauth(t)
	addr := tb.addr("web")
	return app, newWebUser(t, tb, "netauth-alice", addr), newWebUser(t, tb, "netauth-bob", addr)
}

// TestChromiumHTTPBackend: a shared application behind netauthd in http-backend mode, two
// users, each with headless Chromium running as them through the proxy netauth open (run as
// them) started. Each page greets its own user; the page's script claims to be root in the
// identity headers and the application still sees the page's user; a same-origin POST and a
// WebSocket echo work through the proxy and the worker. Screenshots of both pages are
// written (alice-http.png, bob-http.png).
func TestChromiumHTTPBackend(t *testing.T) {
	app, alice, bob := startBrowserAppTestbed(t)
	for _, u := range []*webUser{alice, bob} {
		browser := testutil.NewBrowser(t, int(u.acct.UID), int(u.acct.GID))
		dom, err := browser.DOM(u.url)
		if err != nil {
			t.Fatalf("%s's browser on %s: %v", u.name, u.url, err)
		}
		for id, want := range map[string]string{
			"greeted": u.name,
			"seen":    u.name,
			"post":    "200 posted as " + u.name,
			"echo":    "echo: hello from ",
		} {
			if got := domField(dom, id); !strings.HasPrefix(got, want) || (id != "echo" && got != want) {
				t.Errorf("%s's page shows %s %q, want %q; DOM:\n%s", u.name, id, got, want, dom)
			}
		}
		shot, err := browser.Screenshot(u.url, strings.TrimPrefix(u.name, "netauth-")+"-http.png", 800, 400)
		if err != nil {
			t.Fatalf("screenshot of %s's page: %v", u.name, err)
		}
		t.Logf("%s's page: %s", u.name, shot)
	}
	users := map[string]bool{}
	for _, r := range app.requests() {
		users[r.user] = true
		if r.user != alice.name && r.user != bob.name {
			t.Errorf("the application got a request as %q, not as alice or bob: %v", r.user, r)
		}
	}
	if !users[alice.name] || !users[bob.name] {
		t.Errorf("the application saw requests from %v; want alice's and bob's", users)
	}
}

// TestChromiumCrossOrigin: a page of another local origin (a plain web server on another
// loopback port) that alice's Chromium shows submits a form, a no-cors fetch POST and a
// WebSocket to the URL of alice's netauth open proxy. Her browser sends them, authenticated
// as her by the proxy if it let them through; none reaches the application (the proxy refuses
// each and logs it), while her own page's POST and WebSocket do.
func TestChromiumCrossOrigin(t *testing.T) {
	app, alice, _ := startBrowserAppTestbed(t)
	target := strings.TrimSuffix(alice.url, "/hello")
	proxyHost := hostPort(alice.url)

	var held heldPages
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/done", func(w http.ResponseWriter, r *http.Request) { held.release(r.URL.Query().Get("t")) })
	mux.HandleFunc("/evil", func(w http.ResponseWriter, r *http.Request) {
		held.serve(w, r, func(token string) string {
			return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>another site</title></head>
<body><h1>Another site</h1>
<form id="form" method="POST" action="` + target + `/csrf-form" target="sink"><input name="transfer" value="all"></form>
<iframe name="sink"></iframe>
<p>fetch: <b id="fetch">pending</b></p>
<p>WebSocket: <b id="ws">pending</b></p>
<script>
(async () => {
  const set = (id, text) => { document.getElementById(id).textContent = text; };
  document.getElementById('form').submit();
  try {
    await fetch('` + target + `/csrf-fetch', {method: 'POST', mode: 'no-cors', body: 'transfer=all'});
    set('fetch', 'sent');
  } catch (e) { set('fetch', 'error: ' + e); }
  await new Promise(done => {
    const ws = new WebSocket('ws://` + proxyHost + `/ws');
    ws.onopen = () => { set('ws', 'open'); ws.send('from another site'); ws.close(); done(); };
    ws.onerror = () => { set('ws', 'refused'); done(); };
  });
  await new Promise(r => setTimeout(r, 500)); // the form's submission
  await fetch('/done?t=` + token + `');
})();
</script>
`
		}, "</body></html>\n")
	})
	evil := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = evil.Serve(ln) }()
	t.Cleanup(func() { _ = evil.Close() })

	browser := testutil.NewBrowser(t, int(alice.acct.UID), int(alice.acct.GID))
	evilURL := "http://" + ln.Addr().String() + "/evil"
	dom, err := browser.DOM(evilURL)
	if err != nil {
		t.Fatalf("alice's browser on %s: %v", evilURL, err)
	}
	if got := domField(dom, "fetch"); got != "sent" {
		t.Errorf("the other site's fetch: %q, want sent; DOM:\n%s", got, dom)
	}
	if got := domField(dom, "ws"); got != "refused" {
		t.Errorf("the other site's WebSocket: %q, want refused; DOM:\n%s", got, dom)
	}
	// Her own page, through the same proxy.
	if dom, err := browser.DOM(alice.url); err != nil {
		t.Fatalf("alice's browser on %s: %v", alice.url, err)
	} else if got := domField(dom, "echo"); !strings.HasPrefix(got, "echo: hello from ") {
		t.Errorf("alice's own page's WebSocket: %q; DOM:\n%s", got, dom)
	}

	var own []string
	for _, r := range app.requests() {
		if strings.HasPrefix(r.path, "/csrf") || r.origin == "http://"+ln.Addr().String() {
			t.Errorf("a request from the other site reached the application: %v", r)
		}
		if r.origin == "http://"+proxyHost && (r.method == "POST" && r.path == "/post" || r.path == "/ws") {
			own = append(own, r.method+" "+r.path)
		}
	}
	if strings.Join(own, ",") != "POST /post,GET /ws" {
		t.Errorf("alice's own page's requests that reached the application: %q; want POST /post and GET /ws (%v)", own, app.requests())
	}
	logFile := openLog(t, alice)
	log, _ := os.ReadFile(logFile)
	for _, want := range []string{
		"refused a cross-origin request that may change something: POST /csrf-form",
		"refused a cross-origin request that may change something: POST /csrf-fetch",
		"refused a cross-origin upgrade (WebSocket) request: GET /ws",
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("alice's proxy log %s does not say %q:\n%s", logFile, want, log)
		}
	}
}

// openLog returns the path of the log of the user's netauth open proxy.
func openLog(t *testing.T, u *webUser) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(u.home, "run", "netauth", "open-*.log"))
	if len(m) != 1 {
		t.Fatalf("want one netauth open log for %s, found %q", u.name, m)
	}
	return m[0]
}
