// SPDX-License-Identifier: Apache-2.0

package limits

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// AcceptLoop is the accept loop of every netauth server (the library's Listener and
// netauthd's acceptor): each connection is admitted against the handshake
// limits before anything of it is read; one refused a slot is answered by Refuse and logged
// at most once a second; an admitted one goes to Handle with the function that gives its slot
// back.
type AcceptLoop struct {
	Limiter *Limiter
	Service string       // for the log
	Log     *slog.Logger // where refusals and accept errors go
	// Refusals lets the log line of a refused connection through at most once per its
	// interval (a flood would otherwise make one line per connection).
	Refusals *Throttle
	// Refuse answers a connection refused a slot, without reading from it; it runs in a
	// goroutine of its own.
	Refuse func(net.Conn)
	// Handle takes an admitted connection and the function that gives its slot back; it
	// must not block (it starts the handshake's goroutine).
	Handle func(nc net.Conn, release func())
	// Closed reports whether the listener was closed on purpose, which ends the loop.
	Closed func() bool
}

// acceptRetry is how long the loop waits after an accept error other than a timeout (out of
// descriptors, say) before it tries again.
const acceptRetry = 100 * time.Millisecond

// Run accepts connections from ln until Closed reports true after an accept error. It may run
// on several listeners at once.
func (a *AcceptLoop) Run(ln net.Listener) {
	failures := &Throttle{Every: time.Second} // of "accept failed" lines (EMFILE repeats)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if a.Closed() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if ok, held := failures.Allow(time.Now()); ok {
				a.Log.Error("accept failed", "service", a.Service, "err", err, "unlogged_failures", held)
			}
			time.Sleep(acceptRetry)
			continue
		}
		release, err := a.Limiter.Admit(nc.RemoteAddr())
		if err != nil {
			if ok, held := a.Refusals.Allow(time.Now()); ok {
				a.Log.Warn("refusing connection: "+err.Error(), "service", a.Service, "client", nc.RemoteAddr().String(), "unlogged_refusals", held)
			}
			go a.Refuse(nc)
			continue
		}
		a.Handle(nc, release)
	}
}
