// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	sshagent "golang.org/x/crypto/ssh/agent"
	"golang.org/x/sys/unix"
)

// maxIdleAgentConns is how many idle connections to one agent socket a process keeps open
// between Dials. Concurrent Dials beyond it open (and then close) connections of their own.
const maxIdleAgentConns = 4

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
	mu   sync.Mutex
	idle map[agentPoolKey][]*agentConn
}

// agentConn is one connection to an agent, used by one Dial at a time.
type agentConn struct {
	key    agentPoolKey
	uc     *net.UnixConn
	ag     sshagent.ExtendedAgent
	broken atomic.Bool // an I/O error happened: the request/response stream may be out of step
}

func (c *agentConn) Read(p []byte) (int, error) {
	n, err := c.uc.Read(p)
	if err != nil {
		c.broken.Store(true)
	}
	return n, err
}

func (c *agentConn) Write(p []byte) (int, error) {
	n, err := c.uc.Write(p)
	if err != nil {
		c.broken.Store(true)
	}
	return n, err
}

// get returns an open connection to the agent at path: an idle one that is still alive, or
// a new one.
func (p *agentPool) get(path string) (*agentConn, error) {
	key := agentPoolKey{path: path, euid: os.Geteuid()}
	for {
		p.mu.Lock()
		list := p.idle[key]
		var c *agentConn
		if n := len(list); n > 0 {
			c = list[n-1]
			list[n-1] = nil
			p.idle[key] = list[:n-1]
		}
		p.mu.Unlock()
		if c == nil {
			break
		}
		if c.alive() {
			return c, nil
		}
		// The agent closed it (it stopped, or restarted): drop it and try the next.
		c.uc.Close()
	}
	nc, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: dial: %w", err)
	}
	c := &agentConn{key: key, uc: nc.(*net.UnixConn)}
	c.ag = sshagent.NewClient(c)
	return c, nil
}

// put returns c to the pool, or closes it if it is broken or the pool is full.
func (p *agentPool) put(c *agentConn) {
	if !c.broken.Load() {
		p.mu.Lock()
		if list := p.idle[c.key]; len(list) < maxIdleAgentConns {
			p.idle[c.key] = append(list, c)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	c.uc.Close()
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
