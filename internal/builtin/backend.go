// SPDX-License-Identifier: Apache-2.0

package builtin

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"ubns.dev/netauth"
	"ubns.dev/netauth/internal/policy"
	"ubns.dev/netauth/internal/proxyproto"
)

// dialTimeout bounds connecting to the backend.
const dialTimeout = 10 * time.Second

// backendWorker forwards each connection to a local service, after a PROXY protocol version 2
// header naming the client and carrying its identity.
type backendWorker struct {
	network, address string
	log              *slog.Logger
}

// backendHandler returns the connection handler of "backend tcp:HOST:PORT|unix:/PATH".
func backendHandler(args []string, log *slog.Logger) (func(*netauth.Conn), error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("backend: want one address, tcp:HOST:PORT or unix:/PATH, got %q", args)
	}
	network, address, err := policy.ParseBackend(args[0])
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	b := &backendWorker{network: network, address: address, log: log}
	return b.serve, nil
}

// backendHeader returns the PROXY protocol header netauthd's backend mode sends ahead of connection
// c: command PROXY, the client's and the service's addresses, and the identity TLVs.
func backendHeader(c *netauth.Conn) (*proxyproto.Header, error) {
	id := c.Identity()
	h := &proxyproto.Header{Command: proxyproto.Proxy, TLVs: proxyproto.TLVs(&id)}
	switch src, dst := c.RemoteAddr(), c.LocalAddr(); {
	case isTCP(src) && isTCP(dst):
		s, d := src.(*net.TCPAddr).AddrPort(), dst.(*net.TCPAddr).AddrPort()
		if s.Addr().Unmap().Is4() && d.Addr().Unmap().Is4() {
			h.Family = proxyproto.TCP4
			h.Source = netip.AddrPortFrom(s.Addr().Unmap(), s.Port())
			h.Destination = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
		} else {
			h.Family = proxyproto.TCP6
			h.Source = netip.AddrPortFrom(s.Addr().WithZone(""), s.Port())
			h.Destination = netip.AddrPortFrom(d.Addr().WithZone(""), d.Port())
		}
	case isUnix(src) && isUnix(dst):
		h.Family = proxyproto.UnixStream
		h.SourcePath, h.DestinationPath = src.(*net.UnixAddr).Name, dst.(*net.UnixAddr).Name
	default:
		return nil, fmt.Errorf("backend: connection from %v to %v: want TCP or Unix addresses", src, dst)
	}
	return h, nil
}

func isTCP(a net.Addr) bool {
	_, ok := a.(*net.TCPAddr)
	return ok
}

func isUnix(a net.Addr) bool {
	_, ok := a.(*net.UnixAddr)
	return ok
}

// serve forwards one connection: it connects to the backend, sends the header, then copies
// both ways, passing on each side's close of its sending half. If either connection fails,
// both are closed.
func (b *backendWorker) serve(c *netauth.Conn) {
	client := ""
	if a := c.RemoteAddr(); a != nil {
		client = a.String()
	}
	backend := b.network + ":" + b.address
	user := c.Identity().User
	h, err := backendHeader(c)
	if err != nil {
		b.log.Error("backend: no PROXY header for the connection", "user", user, "client", client, "err", err)
		return
	}
	hdr, err := h.Marshal()
	if err != nil {
		b.log.Error("backend: writing the PROXY header", "user", user, "client", client, "err", err)
		return
	}
	d := net.Dialer{Timeout: dialTimeout}
	bc, err := d.Dial(b.network, b.address)
	if err != nil {
		b.log.Warn("backend: connecting to the backend failed", "backend", backend, "user", user, "client", client, "err", err)
		return
	}
	defer bc.Close()
	if _, err := bc.Write(hdr); err != nil {
		b.log.Warn("backend: sending the PROXY header failed", "backend", backend, "user", user, "client", client, "err", err)
		return
	}
	b.log.Debug("backend: forwarding a connection", "backend", backend, "user", user, "client", client)
	relay(c, bc)
}

// relay copies both ways between c and bc, passing on each side's close of its sending half;
// if either fails, both are closed.
func relay(c *netauth.Conn, bc net.Conn) {
	var abortOnce sync.Once
	abort := func() {
		abortOnce.Do(func() {
			bc.Close()
			c.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := pump(bc, c); err != nil {
			abort()
			return
		}
		if cw, ok := bc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		if err := pump(c, bc); err != nil {
			abort()
			return
		}
		_ = c.CloseWrite()
	}()
	wg.Wait()
}

// pump copies src to dst until src ends cleanly (nil) or either fails (the error).
func pump(dst io.Writer, src io.Reader) error {
	_, err := io.Copy(dst, src)
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
