// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"

	"ubns.dev/netauth/internal/handoff"
	"ubns.dev/netauth/internal/record"
	"ubns.dev/netauth/internal/trace"
)

// IsWorker reports whether this process was started by netauthd as a worker: it inherited
// netauthd's control socket and receives its connections from it.
func IsWorker() bool { return os.Getenv(handoff.Env) != "" }

// workerSource receives the connections netauthd hands to this worker process.
type workerSource struct {
	ch    *handoff.Channel
	log   *slog.Logger
	trace *trace.Writer // nil unless netauthd traces (netauthd -trace)

	mu     sync.Mutex
	active map[uint64]*Conn
}

// listenWorker returns a Listener of the connections netauthd hands over on the inherited
// control socket.
func listenWorker(cfg *ServerConfig) (*Listener, error) {
	fd, err := strconv.Atoi(os.Getenv(handoff.Env))
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("netauth: %s=%q is not a descriptor number", handoff.Env, os.Getenv(handoff.Env))
	}
	ch, err := handoff.FromFile(os.NewFile(uintptr(fd), "netauth-control"))
	if err != nil {
		return nil, fmt.Errorf("netauth: control socket from netauthd: %w", err)
	}
	l := &Listener{
		ready: make(chan *Conn),
		done:  make(chan struct{}),
		log:   slog.New(slog.DiscardHandler),
	}
	if cfg != nil && cfg.Logger != nil {
		l.log = cfg.Logger
	}
	w := &workerSource{ch: ch, log: l.log, active: make(map[uint64]*Conn), trace: trace.FromEnv()}
	l.worker = w
	l.wg.Add(1)
	go w.receive(l)
	return l, nil
}

// receive adopts connections until netauthd says to exit or the control socket closes.
func (w *workerSource) receive(l *Listener) {
	defer l.wg.Done()
	defer l.Close()
	for {
		m, f, err := w.ch.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				w.log.Error("netauth: control socket", "err", err)
			}
			return
		}
		switch m.Type {
		case handoff.TypeConn:
			c, err := w.adopt(m, f)
			if err != nil {
				w.log.Error("netauth: adopting a connection from netauthd", "err", err)
				// The connection is over (most often the client reset it before the verdict
				// could be sent): say so, or netauthd waits for the adoption, stops this
				// worker with every session in it, and hands the dead connection to another.
				_ = w.ch.Send(&handoff.Message{Type: handoff.TypeAck, ID: m.ID}, nil)
				_ = w.ch.Send(&handoff.Message{Type: handoff.TypeDone, ID: m.ID}, nil)
				continue
			}
			select {
			case l.ready <- c:
			case <-l.done:
				c.Close()
				return
			}
		case handoff.TypeExit:
			return
		case handoff.TypeRevoke:
			w.revoke(string(m.Payload))
		}
	}
}

// adopt turns a handed-over descriptor and state into a Conn and acknowledges it.
func (w *workerSource) adopt(m *handoff.Message, f *os.File) (*Conn, error) {
	var tr *workerTrace
	if w.trace != nil {
		tr = &workerTrace{w: w.trace}
		tr.rec.Mark(trace.Received)
	}
	hc, err := handoff.ParseConn(m.Payload)
	clear(m.Payload)
	if err != nil {
		f.Close()
		return nil, err
	}
	defer hc.Zero()
	var nc net.Conn
	if fc, ok := newFileConn(f, hc.LocalAddr, hc.RemoteAddr); ok {
		nc = fc // f is the connection's now
	} else {
		defer f.Close()
		if nc, err = net.FileConn(f); err != nil {
			return nil, fmt.Errorf("descriptor: %w", err)
		}
	}
	rc, err := record.Import(nc, hc.State)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if len(hc.Pending) > 0 {
		// netauthd decided and handed the connection over in one step: the verdict is ours
		// to send, before anything else.
		rc.QueueRaw(hc.Pending)
		if err := rc.Flush(); err != nil {
			rc.Close()
			return nil, fmt.Errorf("sending the verdict: %w", err)
		}
	}
	c := &Conn{rc: rc, id: hc.Identity}
	if tr != nil {
		tr.rec.Mark(trace.VerdictSent)
		tr.rec.SetKey(hc.Identity.HandshakeHash)
		tr.rec.SetKind(hc.Identity.Resumed)
	}
	id := m.ID
	c.cleanup = func() {
		c.trace.write()
		w.mu.Lock()
		delete(w.active, id)
		w.mu.Unlock()
		done := &handoff.Message{Type: handoff.TypeDone, ID: id}
		if c.authFailed.Load() {
			done.Payload = []byte{handoff.DoneAuthFailed}
		}
		_ = w.ch.Send(done, nil)
	}
	w.mu.Lock()
	w.active[id] = c
	w.mu.Unlock()
	if err := w.ch.Send(&handoff.Message{Type: handoff.TypeAck, ID: id}, nil); err != nil {
		rc.Close()
		return nil, err
	}
	c.trace = tr
	return c, nil
}

// workerTrace is a connection's steps in this worker, written when the first application
// data is read (or, without any, when the connection closes).
type workerTrace struct {
	w    *trace.Writer
	once sync.Once
	rec  trace.Record
}

// firstData marks the first application data read, and writes the steps.
func (t *workerTrace) firstData() {
	t.once.Do(func() {
		t.rec.Mark(trace.FirstData)
		t.rec.Write(t.w, trace.Worker)
	})
}

// write writes the steps, if they were not written.
func (t *workerTrace) write() {
	if t != nil {
		t.once.Do(func() { t.rec.Write(t.w, trace.Worker) })
	}
}

// revoke closes the connections authenticated with the key fingerprint fp (all if empty), each
// with a close record saying that access was revoked.
func (w *workerSource) revoke(fp string) {
	w.mu.Lock()
	var victims []*Conn
	for _, c := range w.active {
		if fp == "" || c.id.KeyFingerprint == fp {
			victims = append(victims, c)
		}
	}
	w.mu.Unlock()
	for _, c := range victims {
		_ = c.rc.CloseWithReason(record.CloseRevoked) // the client reads ErrRevoked
		c.release()
	}
}

// Serve accepts connections and runs handler for each in its own goroutine until the
// listener is closed (for a worker: until netauthd tells it to exit or goes away), then waits
// for the handlers to return. Each connection is closed when its handler returns.
func (l *Listener) Serve(handler func(*Conn)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.AcceptNetauth()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			handler(c)
		}()
	}
}
