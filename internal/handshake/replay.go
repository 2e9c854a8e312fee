// SPDX-License-Identifier: Apache-2.0

package handshake

import (
	"crypto/sha256"
	"errors"
	"sync"
	"time"
)

// Replay cache errors.
var (
	ErrReplayed        = errors.New("authenticator already used")
	ErrReplayCacheFull = errors.New("replay cache full of live entries")
)

// DefaultReplayCapacity bounds a ReplayCache.
const DefaultReplayCapacity = 1 << 16

// replayUserShare is the fraction of a cache's capacity one user's entries may hold.
const replayUserShare = 64

// ReplayCache remembers the authenticators accepted within the clock-skew window, so none is
// accepted twice. Each authenticator is also bound to its connection's handshake hash, so a
// replay fails the signature check anyway; the cache is a second, independent barrier (it
// matters if both sides' ephemeral keys ever repeated).
//
// Only authenticators that verified and whose keys are authorized reach the cache, so only
// users can fill it; and no user can fill it for the others: each user holds at most
// 1/64 of the capacity, and a user at that share has their own oldest entry forgotten to make
// room. When the whole cache is full of live entries (64 users at their share at once) it
// refuses new entries (fails closed) rather than forget another user's. Safe for concurrent
// use.
type ReplayCache struct {
	mu       sync.Mutex
	seen     map[[32]byte]replayEntry // hash of the SSHSIG blob -> entry
	users    map[string][][32]byte    // a user's entries, oldest first (some maybe gone)
	capacity int
	perUser  int
}

type replayEntry struct {
	forget time.Time // when it can be forgotten
	user   string
}

// NewReplayCache returns a cache holding at most capacity entries
// (DefaultReplayCapacity if capacity <= 0).
func NewReplayCache(capacity int) *ReplayCache {
	if capacity <= 0 {
		capacity = DefaultReplayCapacity
	}
	return &ReplayCache{seen: make(map[[32]byte]replayEntry), users: make(map[string][][32]byte),
		capacity: capacity, perUser: max(1, capacity/replayUserShare)}
}

// Add records user's authenticator sig until forget. It returns ErrReplayed if sig is
// already recorded and live, and ErrReplayCacheFull when the cache is full of live entries.
func (c *ReplayCache) Add(user string, sig []byte, forget, now time.Time) error {
	k := sha256.Sum256(sig)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.seen[k]; ok && now.Before(e.forget) {
		return ErrReplayed
	}
	if len(c.seen) >= c.capacity {
		c.sweep(now)
		if len(c.seen) >= c.capacity {
			return ErrReplayCacheFull
		}
	}
	q := c.users[user]
	for len(q) >= c.perUser {
		// The user's share is full: forget their oldest entry (or its stale handle).
		if e, ok := c.seen[q[0]]; ok && e.user == user {
			delete(c.seen, q[0])
		}
		q = q[1:]
	}
	c.seen[k] = replayEntry{forget: forget, user: user}
	c.users[user] = append(q, k)
	return nil
}

// sweep forgets every entry that is no longer live, and the users left without entries.
func (c *ReplayCache) sweep(now time.Time) {
	for h, e := range c.seen {
		if !now.Before(e.forget) {
			delete(c.seen, h)
		}
	}
	for u, q := range c.users {
		live := q[:0]
		for _, h := range q {
			if e, ok := c.seen[h]; ok && e.user == u {
				live = append(live, h)
			}
		}
		if len(live) == 0 {
			delete(c.users, u)
		} else {
			c.users[u] = live
		}
	}
}

// Len returns the number of entries held, live or not yet swept.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
