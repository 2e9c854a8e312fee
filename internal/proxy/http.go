// SPDX-License-Identifier: Apache-2.0

package proxy

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"ubns.dev/netauth"
)

// An HTTP proxy (Options.HTTP) serves the local connections it accepts as HTTP, for a web
// browser, and forwards each request it lets through to the server over netauth connections
// (kept alive and reused, resuming with tickets). The uid check on every accepted connection is
// the same as the byte relay's; on top of it each request is checked, because every page the
// browser shows can make it send requests to the proxy's address, and those arrive as the
// proxy's user's own:
//
//   - a request whose Host is not the proxy's own loopback address (127.0.0.1:PORT,
//     localhost:PORT or [::1]:PORT) is answered 421: a site that rebinds its name to
//     127.0.0.1 sends its own name, so it can neither reach the server nor read the answers;
//   - a cross-origin request that is not a GET, HEAD or OPTIONS (net/http's
//     CrossOriginProtection: Sec-Fetch-Site, else Origin against Host) is answered 403;
//   - an Upgrade request (WebSocket) is answered 403 unless both its Sec-Fetch-Site and its
//     Origin, when present, say the request comes from the proxy's own origin: browsers let any
//     page open a WebSocket to any address, with a GET that CrossOriginProtection lets pass.
//
// Each refusal is logged. The request forwarded keeps its Host (the app builds its links and
// redirects from it, and they must lead back through the proxy); responses are streamed as
// they come (server-sent events), and upgraded connections are relayed both ways.

const (
	// httpReadHeaderTimeout bounds the reading of a request's header from a local client.
	httpReadHeaderTimeout = 30 * time.Second
	// httpIdleTimeout closes a local keep-alive connection idle for this long, so that a
	// browser holding idle connections does not keep an idle proxy running.
	httpIdleTimeout = 2 * time.Minute
	// httpServerIdleConns is how many idle netauth connections to the server are kept.
	httpServerIdleConns = 8
	// httpServerIdleTimeout closes an idle netauth connection to the server.
	httpServerIdleTimeout = 90 * time.Second
)

// httpFront is the HTTP side of a proxy in HTTP mode.
type httpFront struct {
	p     *Proxy
	hosts map[string]bool // the Host values accepted, lower case
	cop   *http.CrossOriginProtection
	srv   *http.Server
	tr    *http.Transport
	ln    *chanListener
}

// newHTTPFront prepares HTTP mode for a proxy listening on loopback TCP port port.
func newHTTPFront(p *Proxy, port int) *httpFront {
	f := &httpFront{p: p, cop: http.NewCrossOriginProtection()}
	ps := strconv.Itoa(port)
	f.hosts = map[string]bool{"127.0.0.1:" + ps: true, "localhost:" + ps: true, "[::1]:" + ps: true}
	f.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.refuse(w, r, http.StatusForbidden, "a cross-origin request that may change something",
			"This page was asked for by another site: the proxy forwards only requests from its own pages (and GET requests).")
	}))
	f.tr = &http.Transport{
		Proxy:                 nil, // never a proxy from the environment: the dial is netauth's
		DialContext:           f.dial,
		MaxIdleConns:          httpServerIdleConns,
		MaxIdleConnsPerHost:   httpServerIdleConns,
		IdleConnTimeout:       httpServerIdleTimeout,
		ExpectContinueTimeout: time.Second,
	}
	target := &url.URL{Scheme: "http", Host: p.hostport}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // 127.0.0.1:PORT, as the app's links and redirects need
		},
		Transport:     f.tr,
		FlushInterval: -1,
		ErrorLog:      nil,
		ErrorHandler:  f.badGateway,
	}
	f.ln = &chanListener{conns: make(chan net.Conn), done: p.done, addr: p.ln.Addr()}
	f.srv = &http.Server{
		Handler:           f.guard(rp),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		IdleTimeout:       httpIdleTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if lc, ok := c.(*localConn); ok {
				return context.WithValue(ctx, clientKey{}, lc.desc)
			}
			return ctx
		},
		ErrorLog: nil,
	}
	return f
}

// clientKey is the context key of the description of the local client ("127.0.0.1:PORT").
type clientKey struct{}

func clientOf(r *http.Request) string {
	s, _ := r.Context().Value(clientKey{}).(string)
	return s
}

// guard refuses the requests described above and passes the rest to next.
func (f *httpFront) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.hosts[strings.ToLower(r.Host)] {
			f.refuse(w, r, http.StatusMisdirectedRequest, "a request for another host name (DNS rebinding?)",
				"This proxy serves only its own loopback address: browse "+html.EscapeString(f.home())+".")
			return
		}
		if isUpgrade(r) && !sameOrigin(r) {
			f.refuse(w, r, http.StatusForbidden, "a cross-origin upgrade (WebSocket) request",
				"Another site's page asked to open a connection here: the proxy opens them only for its own pages.")
			return
		}
		f.cop.Handler(next).ServeHTTP(w, r)
	})
}

// home is the proxy's own URL.
func (f *httpFront) home() string {
	return "http://" + f.p.ln.Addr().String() + "/"
}

// isUpgrade reports whether r asks to switch protocols (WebSocket, h2c).
func isUpgrade(r *http.Request) bool {
	if len(r.Header.Values("Upgrade")) > 0 {
		return true
	}
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// sameOrigin reports whether neither Sec-Fetch-Site nor Origin says that r comes from another
// origin than the proxy's own (Host has been checked already). A request with neither header
// (not from a browser) passes.
func sameOrigin(r *http.Request) bool {
	for _, v := range r.Header.Values("Sec-Fetch-Site") {
		if v != "same-origin" {
			return false
		}
	}
	for _, v := range r.Header.Values("Origin") {
		if !strings.EqualFold(v, "http://"+r.Host) {
			return false
		}
	}
	return true
}

// refuse answers a request the proxy does not forward with status and a short page, and logs
// it. Nothing the request carried is put in the page.
func (f *httpFront) refuse(w http.ResponseWriter, r *http.Request, status int, what, explain string) {
	// The request is any web page's: what it carried is logged quoted and cut short.
	f.p.log.Warn(fmt.Sprintf("refused %s: %s %s, Host %q, Origin %q, Sec-Fetch-Site %q", what, clip(r.Method), clip(r.URL.Path),
		clip(r.Host), clip(r.Header.Get("Origin")), clip(r.Header.Get("Sec-Fetch-Site"))),
		"client", clientOf(r), "status", status)
	writePage(w, status, explain)
}

// badGateway answers a request the server could not be asked, and logs why.
func (f *httpFront) badGateway(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the browser went away
	}
	var refused *netauth.RefusedError
	if errors.As(err, &refused) {
		f.p.log.Error(fmt.Sprintf("the server %s refused the connection: %v", f.p.hostport, err),
			"client", clientOf(r), "remote", f.p.hostport, "err", err)
		writePage(w, http.StatusBadGateway, "The server "+html.EscapeString(f.p.hostport)+" refused the netauth connection: "+
			html.EscapeString(refused.Code.String())+". The proxy's log says more.")
		return
	}
	f.p.log.Error(fmt.Sprintf("forwarding %s %s to %s failed: %v", r.Method, r.URL.Path, f.p.hostport, err),
		"client", clientOf(r), "remote", f.p.hostport, "err", err)
	writePage(w, http.StatusBadGateway, "The proxy could not reach "+html.EscapeString(f.p.hostport)+" through netauth; the proxy's log says why.")
}

// writePage writes a small HTML page for a status; explain is HTML.
func writePage(w http.ResponseWriter, status int, explain string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	text := fmt.Sprintf("%d %s", status, http.StatusText(status))
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>%s</title></head>\n<body><h1>netauth proxy: %s</h1>\n<p>%s</p></body></html>\n", text, text, explain)
}

// dial makes a netauth connection to the server for the Transport. Close, and Proxy.Close,
// end it.
func (f *httpFront) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, err := f.p.dial(ctx)
	if err != nil {
		return nil, err
	}
	rc := &remoteConn{Conn: c, p: f.p}
	if !f.p.track(rc, false) {
		c.Close()
		return nil, net.ErrClosed
	}
	id := c.Identity()
	f.p.log.Debug("connected to the server", "remote", f.p.hostport, "user", id.User, "resumed", id.Resumed)
	return rc, nil
}

// remoteConn is a netauth connection to the server that the proxy tracks until it is closed.
type remoteConn struct {
	*netauth.Conn
	p    *Proxy
	once sync.Once
}

func (c *remoteConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.p.untrack(c) })
	return err
}

// localConn is an accepted local connection, handed to the HTTP server, that the proxy
// tracks until it is closed, and counts as activity for the idle timeout.
type localConn struct {
	net.Conn
	desc string
	p    *Proxy
	once sync.Once
}

func (c *localConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.p.untrack(c)
		c.p.busy(-1)
	})
	return err
}

// serveConn hands a local connection whose owner has been checked to the HTTP server.
func (f *httpFront) serveConn(c net.Conn, desc string) {
	lc := &localConn{Conn: c, desc: desc, p: f.p}
	if !f.p.track(lc, false) {
		abort(c)
		return
	}
	f.p.busy(1)
	select {
	case f.ln.conns <- lc:
	case <-f.p.done:
		lc.Close()
	}
}

// serve runs the HTTP server until the proxy closes, then closes its connections.
func (f *httpFront) serve() {
	err := f.srv.Serve(f.ln)
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
		f.p.log.Error("the HTTP server stopped", "err", err)
	}
	f.srv.Close()
	f.tr.CloseIdleConnections()
}

// chanListener is the HTTP server's listener: the connections the proxy's accept loop has
// checked.
type chanListener struct {
	conns chan net.Conn
	done  <-chan struct{}
	addr  net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return nil } // the proxy closes the real listener
func (l *chanListener) Addr() net.Addr { return l.addr }

// maxLogged bounds each request field the proxy logs about a request it refuses.
const maxLogged = 128

// clip cuts s to maxLogged bytes, saying so.
func clip(s string) string {
	if len(s) <= maxLogged {
		return s
	}
	return s[:maxLogged] + "...(cut)"
}
