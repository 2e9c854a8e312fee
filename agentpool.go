// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	sshagent "golang.org/x/crypto/ssh/agent"
	"golang.org/x/sys/unix"
)

// maxIdleAgentConns is how many idle connections to one agent socket a process keeps open
// between Dials. Concurrent Dials beyond it open (and then close) connections of their own.
const maxIdleAgentConns = 4

// maxIdleAgentConnsTotal bounds the idle connections a process keeps in all, over every
// socket path and uid it dialed through (a server dialing for many users, each with an agent
// socket of their own, must not keep connections to all of them open): beyond it the
// connection idle longest is closed.
const maxIdleAgentConnsTotal = 8

// agentIdleTimeout is how long an idle connection is kept: a process that stops dialing
// does not keep its agent connections (and the agent its goroutines for them) for ever.
const agentIdleTimeout = time.Minute

// agentCallTimeout bounds one request to the agent and its answer (a Dial's context bounds it
// further while the handshake runs): an agent that stopped answering fails the Dial instead of
// holding it for ever. A variable for tests.
var agentCallTimeout = 30 * time.Second

// poolEUID returns the effective uid the pool files connections under (a variable for tests).
var poolEUID = os.Geteuid

// agentConns keeps the process's idle agent connections, so that a Dial does not connect to
// the agent (and the agent does not accept, check the peer's credentials and start serving)
// every time: connecting, asking and closing cost about as much as a whole TCP exchange on
// loopback (docs/BENCHMARKS.md, "The client's agent path").
var agentConns = &agentPool{idle: make(map[agentPoolKey][]*agentConn)}

// agentPoolKey names whose agent a connection reaches: connections are shared only by Dials
// that name the same socket path under the same effective uid, never across users or across
// values of $NETAUTH_AUTH_SOCK / $SSH_AUTH_SOCK.
type agentPoolKey struct {
	path string
	euid int
}

type agentPool struct {
	mu    sync.Mutex
	idle  map[agentPoolKey][]*agentConn
	total int         // idle connections in all
	timer *time.Timer // closes connections idle longer than agentIdleTimeout
	// idleTimeout replaces agentIdleTimeout if not zero (for tests).
	idleTimeout time.Duration
}

// agentConn is one connection to an agent, used by one Dial at a time.
type agentConn struct {
	key    agentPoolKey
	uc     *net.UnixConn
	ag     sshagent.ExtendedAgent
	broken atomic.Bool // an I/O error happened: the request/response stream may be out of step
	// file identifies the socket file the connection was made through; 0 if unknown (the
	// path changed while connecting): such a connection is not kept.
	file      socketFile
	idleSince time.Time
	// limit, if not zero, is the latest deadline (Unix nanoseconds) of a request: the
	// deadline of the Dial's context while the handshake runs.
	limit atomic.Int64
	// The answer to the last request, as read so far: its 4-byte length prefix (hdr, got
	// bytes of it and of the answer) and its whole length with the prefix (want; -1 until
	// the prefix is read). A connection is kept only when the answer was read whole (the
	// agent client stops reading an answer it finds too large, without an I/O error).
	mu   sync.Mutex
	hdr  [4]byte
	got  int64
	want int64
}

// inStep reports whether every answer was read whole: nothing of one is left unread.
func (c *agentConn) inStep() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.want == c.got
}

// socketFile identifies a socket file (device and inode).
type socketFile struct{ dev, ino uint64 }

// statSocket returns the identity of the file at path, or the zero value.
func statSocket(path string) socketFile {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return socketFile{}
	}
	return socketFile{dev: uint64(st.Dev), ino: st.Ino}
}

func (c *agentConn) Read(p []byte) (int, error) {
	n, err := c.uc.Read(p)
	if err != nil {
		c.broken.Store(true)
	}
	c.mu.Lock()
	rest := p[:n]
	for c.got < 4 && len(rest) > 0 {
		c.hdr[c.got] = rest[0]
		c.got++
		rest = rest[1:]
		if c.got == 4 {
			c.want = 4 + int64(binary.BigEndian.Uint32(c.hdr[:]))
		}
	}
	c.got += int64(len(rest))
	c.mu.Unlock()
	return n, err
}

// Write starts a request (the agent client writes each request whole, then reads its
// answer): the request and its answer must be done by the deadline it sets.
func (c *agentConn) Write(p []byte) (int, error) {
	dl := time.Now().Add(agentCallTimeout)
	if l := c.limit.Load(); l != 0 && l < dl.UnixNano() {
		dl = time.Unix(0, l)
	}
	if c.broken.Load() || !c.inStep() {
		// An earlier request failed, or its answer was not read whole: what is left of it
		// would be taken for this one's answer.
		c.broken.Store(true)
		return 0, errors.New("agent: connection unusable after an earlier error")
	}
	c.mu.Lock()
	c.got, c.want = 0, -1
	c.mu.Unlock()
	_ = c.uc.SetDeadline(dl)
	n, err := c.uc.Write(p)
	if err != nil {
		c.broken.Store(true)
	}
	return n, err
}

// get returns an open connection to the agent at path: an idle one that is still alive and
// was made through the socket file the path names now, or a new one.
func (p *agentPool) get(path string) (*agentConn, error) {
	key := agentPoolKey{path: path, euid: poolEUID()}
	file := statSocket(path)
	for {
		p.mu.Lock()
		p.dropOtherUIDsLocked(key.euid)
		list := p.idle[key]
		var c *agentConn
		if n := len(list); n > 0 {
			c = list[n-1]
			list[n-1] = nil
			p.setLocked(key, list[:n-1])
		}
		p.mu.Unlock()
		if c == nil {
			break
		}
		// The path may name another agent now (its file was replaced): a fresh connection
		// would reach that one, and so must this Dial.
		if file != (socketFile{}) && c.file == file && c.alive() {
			return c, nil
		}
		// The agent closed it (it stopped, or restarted), or it leads elsewhere: drop it
		// and try the next.
		c.uc.Close()
	}
	nc, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: dial: %w", err)
	}
	c := &agentConn{key: key, uc: nc.(*net.UnixConn)}
	if after := statSocket(path); after == file {
		c.file = file
	}
	c.ag = sshagent.NewClient(c)
	return c, nil
}

// put returns c to the pool, or closes it if it is broken, was made under another effective
// uid than the process has now, or the pool is full.
func (p *agentPool) put(c *agentConn) {
	c.limit.Store(0)
	if c.broken.Load() || !c.inStep() || c.file == (socketFile{}) {
		c.uc.Close()
		return
	}
	p.mu.Lock()
	euid := poolEUID()
	p.dropOtherUIDsLocked(euid)
	list := p.idle[c.key]
	if c.key.euid != euid || len(list) >= maxIdleAgentConns {
		p.mu.Unlock()
		c.uc.Close()
		return
	}
	if p.total >= maxIdleAgentConnsTotal {
		p.evictOldestLocked()
	}
	c.idleSince = time.Now()
	p.setLocked(c.key, append(list, c))
	if p.timer == nil {
		p.timer = time.AfterFunc(p.timeout(), p.sweep)
	}
	p.mu.Unlock()
}

func (p *agentPool) timeout() time.Duration {
	if p.idleTimeout > 0 {
		return p.idleTimeout
	}
	return agentIdleTimeout
}

// setLocked replaces the idle list of key, keeping total in step and no empty lists.
func (p *agentPool) setLocked(key agentPoolKey, list []*agentConn) {
	p.total += len(list) - len(p.idle[key])
	if len(list) == 0 {
		delete(p.idle, key)
		return
	}
	p.idle[key] = list
}

// dropOtherUIDsLocked closes the idle connections made under another effective uid: once a
// process has changed uid (a program that dropped privileges) it keeps no connection
// authenticated as the uid it had.
func (p *agentPool) dropOtherUIDsLocked(euid int) {
	for k, list := range p.idle {
		if k.euid != euid {
			for _, c := range list {
				c.uc.Close()
			}
			p.setLocked(k, nil)
		}
	}
}

// evictOldestLocked closes the connection idle longest.
func (p *agentPool) evictOldestLocked() {
	var victim agentPoolKey
	idx := -1
	var since time.Time
	for k, list := range p.idle {
		for i, c := range list {
			if idx < 0 || c.idleSince.Before(since) {
				victim, idx, since = k, i, c.idleSince
			}
		}
	}
	if idx < 0 {
		return
	}
	list := p.idle[victim]
	list[idx].uc.Close()
	p.setLocked(victim, append(list[:idx:idx], list[idx+1:]...))
}

// sweep closes the connections idle longer than the timeout, and runs again while any are
// left.
func (p *agentPool) sweep() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := time.Now().Add(-p.timeout())
	for k, list := range p.idle {
		kept := list[:0:0]
		for _, c := range list {
			if c.idleSince.After(cutoff) {
				kept = append(kept, c)
			} else {
				c.uc.Close()
			}
		}
		p.setLocked(k, kept)
	}
	p.timer = nil
	if p.total > 0 {
		p.timer = time.AfterFunc(p.timeout(), p.sweep)
	}
}

// closeIdle closes every idle connection.
func (p *agentPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, list := range p.idle {
		for _, c := range list {
			c.uc.Close()
		}
		p.setLocked(k, nil)
	}
}

// alive reports whether an idle connection is still usable: nothing to read and no end of
// stream (the agent sends nothing unasked, so anything there means the agent closed the
// connection or the stream is out of step). It costs one non-blocking system call.
func (c *agentConn) alive() bool {
	raw, err := c.uc.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ok = errors.Is(rerr, unix.EAGAIN)
		return true
	})
	return err == nil && ok
}
