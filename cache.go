// SPDX-License-Identifier: Apache-2.0

package netauth

import (
	"sync"
	"time"
)

// TicketCache stores a client's resumption sessions (ticket, secret and identity, as opaque
// secret bytes) under an id naming the user, server and service ("netauth-v1 user@host:port
// service"). It also stores, under "netauth-key-v1 user@host:port service", the public key
// blob of the key that server last accepted (kept 30 days). Implementations must be safe for
// concurrent use and should wipe what they evict.
type TicketCache interface {
	// Get returns a copy of the session stored under id.
	Get(id string) (session []byte, ok bool)
	// Put stores session under id until expiry.
	Put(id string, session []byte, expiry time.Time)
	// Delete forgets id.
	Delete(id string)
}

// NewMemoryTicketCache returns a TicketCache in process memory holding at most max sessions
// (the ones expiring soonest are evicted first).
func NewMemoryTicketCache(max int) TicketCache {
	if max <= 0 {
		max = 1
	}
	return &memoryCache{max: max, m: make(map[string]memoryEntry)}
}

type memoryEntry struct {
	session []byte
	expiry  time.Time
}

type memoryCache struct {
	mu  sync.Mutex
	max int
	m   map[string]memoryEntry
}

func (c *memoryCache) Get(id string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok {
		return nil, false
	}
	if !time.Now().Before(e.expiry) {
		c.deleteLocked(id)
		return nil, false
	}
	return append([]byte(nil), e.session...), true
}

func (c *memoryCache) Put(id string, session []byte, expiry time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteLocked(id)
	for len(c.m) >= c.max {
		var victim string
		var soonest time.Time
		for k, e := range c.m {
			if victim == "" || e.expiry.Before(soonest) {
				victim, soonest = k, e.expiry
			}
		}
		c.deleteLocked(victim)
	}
	c.m[id] = memoryEntry{session: append([]byte(nil), session...), expiry: expiry}
}

func (c *memoryCache) Delete(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteLocked(id)
}

func (c *memoryCache) deleteLocked(id string) {
	if e, ok := c.m[id]; ok {
		clear(e.session)
		delete(c.m, id)
	}
}
