// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
)

// Limits of the http-backend worker. Only authenticated connections reach it, and each counts
// against its user's max-connections-per-user, so its timeouts need not fend off slow
// unauthenticated clients: they are generous for a person's browser and bound only what a
// forgotten connection may hold.
const (
	// httpMaxHeaderBytes bounds a request's header (request line and fields): a browser's
	// cookies fit, a runaway client is answered 431.
	httpMaxHeaderBytes = 64 << 10
	// httpReadHeaderTimeout bounds reading a request's header once its first byte came.
	httpReadHeaderTimeout = 30 * time.Second
	// httpIdleTimeout is how long a kept-alive client connection waits for its next request.
	httpIdleTimeout = 2 * time.Minute
	// httpFlushInterval is how often a response with a known length is flushed to the client
	// while the backend sends it; responses of unknown length and event streams
	// (text/event-stream) are flushed after every write.
	httpFlushInterval = 100 * time.Millisecond
	// httpMaxResponseHeaderBytes bounds a backend response's header.
	httpMaxResponseHeaderBytes = 256 << 10
	// httpBackendIdleConns bounds the kept-alive connections to the backend.
	httpBackendIdleConns = 64
	// httpBackendIdleTimeout is how long an idle kept-alive backend connection is kept.
	httpBackendIdleTimeout = 90 * time.Second
)

// badGatewayBody is the answer to a request the backend did not answer; the reason is in the
// worker's log, not sent to the client.
const badGatewayBody = "502 Bad Gateway: netauth could not reach this service's backend; the server's log says why\n"

// httpBackendWorker serves the connections of an http-backend service as HTTP/1.1 and
// forwards each request to the backend with a reverse proxy, with the identity headers of the
// connection's user in place of any the client sent.
type httpBackendWorker struct {
	network, address string
	// userHeaders are set to the user's name; removed are the header keys (policy.HeaderKey)
	// the worker removes from every request, besides every X-Netauth-* one.
	userHeaders []string
	removed     map[string]bool
	log         *slog.Logger
	proxy       *httputil.ReverseProxy
	// handlers counts the requests being served, upgraded ones (WebSocket) included, which
	// the server no longer tracks once it hands them over.
	handlers sync.WaitGroup
}

// connKey is the context key of a request's *netauth.Conn.
type connKey struct{}

// httpBackendHandler returns the worker of "http-backend tcp:HOST:PORT|unix:/PATH [HEADER...]":
// HEADER are the headers set to the user's name (policy.DefaultIdentityHeaders if none).
func httpBackendHandler(args []string, log *slog.Logger) (*httpBackendWorker, error) {
	if len(args) < 1 {
		return nil, errors.New("http-backend: want an address, tcp:HOST:PORT or unix:/PATH, and the identity headers")
	}
	network, address, err := policy.ParseBackend(args[0])
	if err != nil {
		return nil, fmt.Errorf("http-backend: %w", err)
	}
	headers := args[1:]
	if len(headers) == 0 {
		headers = policy.DefaultIdentityHeaders
	}
	if msgs := policy.IdentityHeadersProblems(headers); len(msgs) > 0 {
		return nil, fmt.Errorf("http-backend: %s", strings.Join(msgs, "; "))
	}
	b := &httpBackendWorker{network: network, address: address, userHeaders: headers, log: log, removed: map[string]bool{}}
	for _, h := range append(append(append([]string{}, headers...), policy.DefaultIdentityHeaders...), clientAddressHeaders...) {
		b.removed[policy.HeaderKey(h)] = true
	}
	target := &url.URL{Scheme: "http", Host: address}
	if network == "unix" {
		target.Host = "localhost"
	}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the name the client asked for, as the application's links need
			onlyWebSocket(pr.Out.Header)
			pr.SetXForwarded()
			b.setIdentity(pr.Out, pr.In.Context().Value(connKey{}).(*netauth.Conn).Identity())
		},
		Transport: &http.Transport{
			Proxy: nil, // never a proxy from the environment: the backend is local
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				d := net.Dialer{Timeout: dialTimeout}
				return d.DialContext(ctx, network, address)
			},
			MaxIdleConns:           httpBackendIdleConns,
			MaxIdleConnsPerHost:    httpBackendIdleConns,
			IdleConnTimeout:        httpBackendIdleTimeout,
			ExpectContinueTimeout:  time.Second,
			MaxResponseHeaderBytes: httpMaxResponseHeaderBytes,
			DisableCompression:     true, // pass the client's Accept-Encoding and the answer as they are
		},
		FlushInterval: httpFlushInterval,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandler:  b.badGateway,
	}
	return b, nil
}

// clientAddressHeaders are headers besides X-Forwarded-For (which the reverse proxy sets) in
// which applications, and the "real IP" middleware of their frameworks, trust a proxy to name
// the client's address: the worker removes the client's.
var clientAddressHeaders = []string{"X-Real-IP", "True-Client-IP"}

// onlyWebSocket removes from h, a request on its way to the backend, an Upgrade to any
// protocol but WebSocket (and the Connection: Upgrade that asks for it): once the backend
// switched protocols, the worker relays bytes it does not read, and a client that switched its
// backend connection to HTTP/2 (h2c), or to anything else the backend speaks, could send the
// backend requests with identity headers of its choosing. A WebSocket carries messages, not
// requests. The backend then gets an ordinary request; a 101 it answers anyway is refused (502).
func onlyWebSocket(h http.Header) {
	up := h.Get("Upgrade")
	if up == "" || strings.EqualFold(up, "websocket") {
		return
	}
	h.Del("Upgrade")
	h.Del("Connection")
}

// setIdentity removes from h every identity header the client sent and sets the user's.
func (b *httpBackendWorker) setIdentity(h *http.Request, id netauth.Identity) {
	b.strip(h.Header)
	b.strip(h.Trailer)
	for _, name := range b.userHeaders {
		h.Header.Set(name, id.User)
	}
	h.Header.Set(policy.NetauthUserHeader, id.User)
	h.Header.Set(policy.NetauthKeyFingerprintHeader, id.KeyFingerprint)
	h.Header.Set(policy.NetauthResumedHeader, strconv.FormatBool(id.Resumed))
}

// netauthPrefix is policy.NetauthHeaderPrefix as policy.HeaderKey writes it.
var netauthPrefix = policy.HeaderKey(policy.NetauthHeaderPrefix)

// strip removes the fields of h whose names are identity headers, in any case and with '_'
// for '-' (policy.HeaderKey), and every X-Netauth-* one.
func (b *httpBackendWorker) strip(h http.Header) {
	for name := range h {
		k := policy.HeaderKey(name)
		if b.removed[k] || strings.HasPrefix(k, netauthPrefix) {
			delete(h, name)
		}
	}
}

// ServeHTTP forwards one request of an authenticated connection.
func (b *httpBackendWorker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := r.Context().Value(connKey{}).(*netauth.Conn); !ok {
		// Not a netauth connection: nobody to name, so nothing is forwarded.
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	b.handlers.Add(1)
	defer b.handlers.Done()
	b.proxy.ServeHTTP(w, r)
}

// badGateway answers a request the backend did not answer with 502, and logs why (a warning,
// unless the client went away first).
func (b *httpBackendWorker) badGateway(w http.ResponseWriter, r *http.Request, err error) {
	user, client := "", r.RemoteAddr
	if c, ok := r.Context().Value(connKey{}).(*netauth.Conn); ok {
		user = c.Identity().User
	}
	backend := b.network + ":" + b.address
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		b.log.Debug("http-backend: the client left before the backend answered", "backend", backend, "user", user, "client", client, "err", err)
	} else {
		b.log.Warn("http-backend: the backend did not answer", "backend", backend, "user", user, "client", client, "method", r.Method, "err", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = io.WriteString(w, badGatewayBody)
}

// serve serves the connections ln hands over (each a *netauth.Conn) until ln is closed, then
// waits for the requests being served to end.
func (b *httpBackendWorker) serve(ln net.Listener) error {
	backend := b.network + ":" + b.address
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if nc, ok := c.(*netauth.Conn); ok {
				b.log.Debug("http-backend: serving a connection", "backend", backend, "user", nc.Identity().User, "client", nc.RemoteAddr().String())
				return context.WithValue(ctx, connKey{}, nc)
			}
			return ctx
		},
	}
	err := srv.Serve(ln)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	_ = srv.Shutdown(context.Background())
	b.handlers.Wait()
	return err
}
